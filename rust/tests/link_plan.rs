//! build.rs's decisions (link_plan.rs, included here as it is there):
//! reading pkg-config output (rpath for private directories, issue 13; the
//! --wrap warning only when libzkalloc asks for --wrap flags), a jemalloc
//! header's prefix, and src/meson.build's lists for the bundled build. The
//! bundled build must compile what meson compiles for -Djemalloc_prefix,
//! with the same defines: `compile_args_match_meson` compares with the
//! compile_commands.json of a meson build configured that way (rust/test.sh
//! configures one and names it in ZKALLOC_MESON_RJEM_BUILD).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "../link_plan.rs"]
mod link_plan;
use link_plan::*;

const BUILD_SRC: &str = "/home/u/zkalloc/build/src";
const DEFAULT_PC: &str = "-L/home/u/zkalloc/build/src -lzkalloc \
     -Wl,--push-state,--no-as-needed,-ljemalloc,--pop-state -ljemalloc \n";

fn files(present: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |p: &str| present.contains(&p)
}

#[test]
fn default_build_gets_an_rpath_and_no_warning() {
    let so = files(&["/home/u/zkalloc/build/src/libzkalloc.so"]);
    let plan = pkg_config_plan(DEFAULT_PC, true, &so).unwrap();
    assert_eq!(plan.warning, None, "a warning for the default build");
    assert_eq!(plan.link, "shared");
    assert_eq!(plan.je, "plain");
    assert_eq!(plan.rpath_dirs, vec![BUILD_SRC.to_string()]);
    assert_eq!(
        plan.link_args,
        vec![
            format!("-Wl,-rpath,{BUILD_SRC}"),
            "-Wl,--push-state,--no-as-needed,-ljemalloc,--pop-state".to_string()
        ]
    );
    for d in [
        format!("cargo:rustc-link-search=native={BUILD_SRC}"),
        "cargo:rustc-link-lib=zkalloc".into(),
        "cargo:rustc-link-lib=jemalloc".into(),
        format!("cargo:rustc-link-arg=-Wl,-rpath,{BUILD_SRC}"),
    ] {
        assert!(plan.directives.contains(&d), "{d} missing: {plan:?}");
    }
}

#[test]
fn installed_private_prefix_gets_an_rpath() {
    let pc = "-L/opt/zk/lib/x86_64-linux-gnu -lzkalloc -Wl,--push-state,--no-as-needed,-ljemalloc,--pop-state -ljemalloc";
    let so = files(&["/opt/zk/lib/x86_64-linux-gnu/libzkalloc.so"]);
    let plan = pkg_config_plan(pc, true, &so).unwrap();
    assert_eq!(plan.rpath_dirs, vec!["/opt/zk/lib/x86_64-linux-gnu"]);
    assert_eq!(plan.warning, None);
    // ZKALLOC_NO_RPATH
    let plan = pkg_config_plan(pc, false, &so).unwrap();
    assert!(plan.rpath_dirs.is_empty());
    assert!(!plan.link_args.iter().any(|a| a.contains("rpath")));
}

#[test]
fn system_and_empty_directories_get_no_rpath() {
    let pc = "-L/usr/lib/x86_64-linux-gnu/ -L/home/u/empty -lzkalloc -ljemalloc";
    let so = files(&["/usr/lib/x86_64-linux-gnu//libzkalloc.so"]);
    let plan = pkg_config_plan(pc, true, &so).unwrap();
    assert!(plan.rpath_dirs.is_empty(), "{plan:?}");
    assert_eq!(plan.link, "shared");
}

#[test]
fn prefixed_libzkalloc_warns_about_its_wrap_flags() {
    let pc = "-L/opt/zk/lib -lzkalloc -Wl,--wrap=_rjem_mallctl -Wl,--wrap=_rjem_mallocx \
              -Wl,-u,__wrap__rjem_mallctl -L/opt/je/lib -ljemalloc -lpthread";
    let plan = pkg_config_plan(pc, true, &files(&[])).unwrap();
    let w = plan.warning.expect("no warning for --wrap flags");
    assert!(w.contains("--wrap=_rjem_mallocx"), "{w}");
    assert_eq!(plan.je, "rjem");
    assert_eq!(plan.link, "static");
    assert!(plan.rpath_dirs.is_empty(), "static libraries need no rpath");
    assert!(plan
        .link_args
        .contains(&"-Wl,-u,__wrap__rjem_mallctl".to_string()));
    assert!(plan
        .directives
        .contains(&"cargo:rustc-link-lib=pthread".to_string()));
}

#[test]
fn pkg_config_without_zkalloc_is_an_error() {
    assert!(pkg_config_plan("-L/x -ljemalloc", true, &files(&[])).is_err());
}

#[test]
fn header_prefixes() {
    assert_eq!(
        header_prefix("#  define je_mallctl _rjem_mallctl\n").as_deref(),
        Some("_rjem_")
    );
    assert_eq!(
        header_prefix("#  define je_mallctl mallctl\n").as_deref(),
        Some("")
    );
    assert_eq!(header_prefix("int x;\n"), None);
    assert_eq!(prefix_kind("_rjem_"), "rjem");
    assert_eq!(prefix_kind(""), "plain");
    assert_eq!(prefix_kind("je_"), "other");
    // The installed headers, where present.
    for (h, want) in [
        ("/usr/include/jemalloc/jemalloc.h", ""),
        (
            "../build-deps/jemalloc-rjem/include/jemalloc/jemalloc.h",
            "_rjem_",
        ),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(h);
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert_eq!(
                header_prefix(&text).as_deref(),
                Some(want),
                "{}",
                path.display()
            );
        }
    }
}

fn meson_build() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/meson.build"))
        .unwrap()
}

#[test]
fn core_build_follows_src_meson_build() {
    let meson = meson_build();
    let plain = core_build(&meson, "").unwrap();
    let rjem = core_build(&meson, "_rjem_").unwrap();
    for must in ["pool.c", "hooks.c", "route.c", "phase.c", "check.c"] {
        assert!(plain.sources.iter().any(|s| s == must), "{must}: {plain:?}");
    }
    assert!(!plain.sources.iter().any(|s| s == "slab.c" || s == "wrap.c"));
    assert!(plain.link_args.is_empty() && plain.wrapped.is_empty());
    assert!(!plain.c_args.iter().any(|a| a.starts_with("-Dje_")));
    assert_eq!(rjem.sources.last().map(String::as_str), Some("wrap.c"));
    for a in [
        "-DZK_BUILDING_LIBRARY",
        "-DJEMALLOC_NO_RENAME",
        "-DZK_JE_PREFIX=_rjem_",
        "-Dje_mallocx=__real__rjem_mallocx",
        "-Dje_malloc_conf=_rjem_malloc_conf",
    ] {
        assert!(
            rjem.c_args.iter().any(|x| x == a),
            "{a} missing: {:?}",
            rjem.c_args
        );
    }
    assert!(rjem
        .link_args
        .contains(&"-Wl,--wrap=_rjem_sdallocx".to_string()));
    assert_eq!(
        rjem.link_args.last().unwrap(),
        "-Wl,-u,__wrap__rjem_mallctl"
    );
    // Every wrapped name has a __real_ fallback.
    let c = real_fallback_source("_rjem_", &rjem.wrapped).unwrap();
    for n in &rjem.wrapped {
        assert!(c.contains(&format!("__real__rjem_{n}(")), "{n}");
    }
}

/// The compile command meson wrote for `file` (a path ending), split into
/// arguments.
fn meson_command(json: &str, file: &str) -> Option<Vec<String>> {
    // compile_commands.json: {"directory": ..., "command": "...", "file": "...", ...}
    for entry in json.split("\n  {").skip(1) {
        let field = |k: &str| -> Option<String> {
            let i = entry.find(&format!("\"{k}\": \""))? + k.len() + 5;
            let mut out = String::new();
            let mut chars = entry[i..].chars();
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' => out.push(chars.next()?),
                    '"' => return Some(out),
                    _ => out.push(ch),
                }
            }
            None
        };
        if field("file")?.ends_with(file) && field("output")?.contains("zkalloc") {
            return Some(
                field("command")?
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            );
        }
    }
    None
}

#[test]
#[ignore = "needs ZKALLOC_MESON_RJEM_BUILD (rust/test.sh sets it)"]
fn compile_args_match_meson() {
    let dir = PathBuf::from(std::env::var("ZKALLOC_MESON_RJEM_BUILD").expect(
        "ZKALLOC_MESON_RJEM_BUILD: a meson build dir configured with -Djemalloc_prefix=_rjem_",
    ));
    let json = std::fs::read_to_string(dir.join("compile_commands.json")).unwrap();
    let core = core_build(&meson_build(), "_rjem_").unwrap();
    // The same files.
    for f in &core.sources {
        assert!(
            meson_command(&json, &format!("src/{f}")).is_some(),
            "build.rs compiles {f}, meson does not"
        );
    }
    let listed: BTreeSet<String> = json
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"file\": \""))
        .filter_map(|f| {
            f.trim_end_matches(['"', ','])
                .rsplit("src/")
                .next()
                .map(String::from)
        })
        .filter(|f| f.ends_with(".c") && !f.contains('/'))
        .collect();
    for f in &listed {
        if f != "override.c" {
            assert!(
                core.sources.contains(f),
                "meson compiles src/{f}, build.rs does not"
            );
        }
    }
    // The same code-affecting arguments, defines in the same order.
    let relevant = |a: &&String| {
        (a.starts_with("-D") || a.starts_with("-f") || a.starts_with("-O") || a.starts_with("-std"))
            && !a.starts_with("-fdiagnostics")
            || *a == "-g"
            || *a == "-pthread"
    };
    for f in &core.sources {
        let cmd = meson_command(&json, &format!("src/{f}")).unwrap();
        let theirs: Vec<&String> = cmd.iter().filter(relevant).collect();
        let ours: Vec<&String> = core.c_args.iter().filter(relevant).collect();
        let defines = |v: &[&String]| -> Vec<String> {
            v.iter()
                .filter(|a| a.starts_with("-D"))
                .map(|a| a.to_string())
                .collect()
        };
        assert_eq!(
            defines(&ours),
            defines(&theirs),
            "{f}: -D (build.rs left, meson right)"
        );
        let set = |v: &[&String]| -> BTreeSet<String> { v.iter().map(|a| a.to_string()).collect() };
        assert_eq!(
            set(&ours),
            set(&theirs),
            "{f}: flags (build.rs left, meson right)"
        );
    }
}
