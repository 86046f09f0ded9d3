//! Links zkalloc's C library into the crate, one of two ways:
//!
//! * default: the installed libzkalloc.so, found with the `pkg-config` binary
//!   (`pkg-config --libs zkalloc`, which also names Debian's libjemalloc).
//!   PKG_CONFIG_PATH=<repo>/build/meson-uninstalled picks an uninstalled meson
//!   build instead. Library directories outside the system ones get an rpath
//!   for this package's own tests and examples.
//! * feature `bundled`: the core sources (../src, the list in src/meson.build)
//!   compiled with the system C compiler into a static library, against the
//!   header of a prefixed jemalloc (tikv-jemallocator's `_rjem_` build) in
//!   $ZKALLOC_JEMALLOC_DIR/include, and that jemalloc's static library from
//!   $ZKALLOC_JEMALLOC_DIR/lib linked too, unless ZKALLOC_JEMALLOC_LINK=0 (the
//!   binary already links it, e.g. through tikv-jemalloc-sys).
//!
//! No crates: std::process::Command only, so the crate builds offline.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // How the crate ended up linked, for tests/linkage.rs: zkalloc_link is
    // bundled, shared (libzkalloc.so) or static (libzkalloc.a from
    // pkg-config); zkalloc_je is the jemalloc's symbol prefix (rjem:
    // _rjem_, plain: none, other).
    println!(
        "cargo:rustc-check-cfg=cfg(zkalloc_link, values(\"bundled\", \"shared\", \"static\"))"
    );
    println!("cargo:rustc-check-cfg=cfg(zkalloc_je, values(\"rjem\", \"plain\", \"other\"))");
    let (link, je) = if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        bundled()
    } else {
        pkg_config()
    };
    println!("cargo:rustc-cfg=zkalloc_link=\"{link}\"");
    println!("cargo:rustc-cfg=zkalloc_je=\"{je}\"");
}

fn fail(msg: &str) -> ! {
    panic!("zkalloc build: {msg}");
}

// ---------------------------------------------------------------- pkg-config

fn pkg_config() -> (&'static str, &'static str) {
    for v in [
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "ZKALLOC_NO_RPATH",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let pc = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(&pc)
        .args(["--libs", "zkalloc"])
        .output()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `{pc}` ({e}); install pkg-config, or build with --features bundled"
            ))
        });
    if !out.status.success() {
        fail(&format!(
            "`{pc} --libs zkalloc` failed: {}\n  Install libzkalloc (meson install), or point PKG_CONFIG_PATH at \
             a meson build's meson-uninstalled/ directory, or build with --features bundled.",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let libs =
        String::from_utf8(out.stdout).unwrap_or_else(|_| fail("pkg-config printed non-UTF-8"));
    let system_dirs = [
        "/lib",
        "/usr/lib",
        "/lib64",
        "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
    ];
    let rpath = env::var_os("ZKALLOC_NO_RPATH").is_none();
    let mut saw_zkalloc = false;
    let mut wl = Vec::new();
    let mut shared = false;
    for tok in libs.split_whitespace() {
        if let Some(dir) = tok.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
            shared |= Path::new(dir).join("libzkalloc.so").exists();
            if rpath && !system_dirs.contains(&dir.trim_end_matches('/')) {
                // Only this package's tests and examples get it (cargo
                // applies link-arg to the package's own final artifacts).
                println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            }
        } else if let Some(lib) = tok.strip_prefix("-l") {
            saw_zkalloc |= lib == "zkalloc";
            println!("cargo:rustc-link-lib={lib}");
        } else if tok == "-pthread" {
            println!("cargo:rustc-link-lib=pthread");
        } else if tok.starts_with("-Wl,") {
            // A meson build with -Djemalloc_prefix links with --wrap flags.
            // Cargo passes link-arg only to this package's own binaries.
            println!("cargo:rustc-link-arg={tok}");
            wl.push(tok);
        }
    }
    if !wl.is_empty() {
        println!(
            "cargo:warning=libzkalloc asks for linker flags ({}), which cargo passes to this package's own \
             tests and examples only; a libzkalloc built for a prefixed jemalloc (-Djemalloc_prefix) is meant \
             for C/C++: Rust programs with tikv's _rjem_ jemalloc use --features bundled",
            wl.join(" ")
        );
    }
    if !saw_zkalloc {
        fail(&format!(
            "`{pc} --libs zkalloc` did not name -lzkalloc: {libs}"
        ));
    }
    let je = if wl.iter().any(|t| t.contains("--wrap=_rjem_")) {
        "rjem"
    } else if wl.iter().any(|t| t.contains("--wrap=")) {
        "other"
    } else {
        "plain"
    };
    (if shared { "shared" } else { "static" }, je)
}

// ------------------------------------------------------------------- bundled

fn bundled() -> (&'static str, &'static str) {
    for v in [
        "ZKALLOC_JEMALLOC_DIR",
        "ZKALLOC_JEMALLOC_LINK",
        "ZKALLOC_SRC_DIR",
        "CC",
        "AR",
        "CFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = env::var_os("ZKALLOC_SRC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join(".."));
    let src = root.join("src");
    let include = root.join("include");
    let je = match env::var_os("ZKALLOC_JEMALLOC_DIR") {
        Some(d) => PathBuf::from(d),
        None => fail(
            "feature `bundled` needs ZKALLOC_JEMALLOC_DIR: the install prefix of a prefixed jemalloc 5.3 \
             (include/jemalloc/jemalloc.h and lib/libjemalloc_pic.a), e.g. the `_rjem_` build of \
             scripts/jemalloc-rjem (build-deps/jemalloc-rjem) or of a tikv-jemalloc-sys build",
        ),
    };
    let je_header = je.join("include/jemalloc/jemalloc.h");
    if !je_header.is_file() {
        fail(&format!(
            "{} not found (ZKALLOC_JEMALLOC_DIR)",
            je_header.display()
        ));
    }
    println!("cargo:rerun-if-changed={}", je_header.display());
    let je_kind = header_prefix(&je_header);

    let (sources, core_args) = core_sources(&src);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let ar = env::var("AR").unwrap_or_else(|_| "ar".into());
    let extra: Vec<String> = env::var("CFLAGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();

    let mut objects = Vec::new();
    for name in &sources {
        let c = src.join(name);
        println!("cargo:rerun-if-changed={}", c.display());
        let obj = out.join(name.replace(".c", ".o"));
        // zk_c_args of src/meson.build, plus what meson adds for zk_core
        // itself (-std=gnu11, PIC, hidden visibility).
        let status = Command::new(&cc)
            .args([
                "-std=gnu11",
                "-O2",
                "-g",
                "-fPIC",
                "-fvisibility=hidden",
                "-pthread",
            ])
            .args(&core_args)
            .arg(format!("-I{}", je.join("include").display()))
            .arg(format!("-I{}", include.display()))
            .arg("-iquote")
            .arg(&src)
            .args(&extra)
            .arg("-c")
            .arg(&c)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| fail(&format!("cannot run C compiler `{cc}`: {e}")));
        if !status.success() {
            fail(&format!("`{cc}` failed on {}", c.display()));
        }
        objects.push(obj);
    }
    for h in fs::read_dir(&src).unwrap().flatten() {
        if h.path().extension().is_some_and(|e| e == "h") {
            println!("cargo:rerun-if-changed={}", h.path().display());
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        include.join("zkalloc.h").display()
    );

    let lib = out.join("libzkalloc_bundled.a");
    let _ = fs::remove_file(&lib);
    let status = Command::new(&ar)
        .arg("crs")
        .arg(&lib)
        .args(&objects)
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run `{ar}`: {e}")));
    if !status.success() {
        fail(&format!("`{ar}` failed"));
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=zkalloc_bundled");

    if env::var("ZKALLOC_JEMALLOC_LINK")
        .map(|v| v != "0")
        .unwrap_or(true)
    {
        let libdir = je.join("lib");
        let name = ["jemalloc_pic", "jemalloc"]
            .into_iter()
            .find(|n| libdir.join(format!("lib{n}.a")).is_file())
            .unwrap_or_else(|| {
                fail(&format!(
                    "no libjemalloc_pic.a or libjemalloc.a in {} (set ZKALLOC_JEMALLOC_LINK=0 if the binary \
                     links the jemalloc itself)",
                    libdir.display()
                ))
            });
        println!(
            "cargo:rerun-if-changed={}",
            libdir.join(format!("lib{name}.a")).display()
        );
        println!("cargo:rustc-link-search=native={}", libdir.display());
        println!("cargo:rustc-link-lib=static={name}");
    }
    for l in ["pthread", "dl", "m"] {
        println!("cargo:rustc-link-lib={l}");
    }
    ("bundled", je_kind)
}

/// The symbol prefix jemalloc.h maps the je_ names to: its
/// `#  define je_mallctl <prefix>mallctl` line.
fn header_prefix(header: &Path) -> &'static str {
    let text = fs::read_to_string(header).unwrap_or_default();
    for line in text.lines() {
        let mut w = line.trim_start_matches('#').split_whitespace();
        if w.next() == Some("define") && w.next() == Some("je_mallctl") {
            return match w.next().and_then(|t| t.strip_suffix("mallctl")) {
                Some("_rjem_") => "rjem",
                Some("") => "plain",
                _ => "other",
            };
        }
    }
    fail(&format!(
        "{} has no je_mallctl define: not a jemalloc 5 header",
        header.display()
    ))
}

/// The core's C files and compiler arguments, as src/meson.build lists them
/// (`zk_sources = files(...)`, `zk_c_args = [...]`), so the bundled build
/// follows the library's own lists.
fn core_sources(src: &Path) -> (Vec<String>, Vec<String>) {
    let mb = src.join("meson.build");
    println!("cargo:rerun-if-changed={}", mb.display());
    let text = fs::read_to_string(&mb).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read {} ({e}): feature `bundled` compiles zkalloc's C sources, which live next to rust/ \
             in the zkalloc repository (or set ZKALLOC_SRC_DIR to that repository)",
            mb.display()
        ))
    });
    let files: Vec<String> = meson_list(&text, "zk_sources = files(", ')')
        .unwrap_or_else(|| fail(&format!("no `zk_sources = files(...)` in {}", mb.display())))
        .into_iter()
        .filter(|f| f.ends_with(".c"))
        .collect();
    if files.is_empty() {
        fail(&format!("zk_sources in {} names no .c file", mb.display()));
    }
    let args = meson_list(&text, "zk_c_args = [", ']').unwrap_or_else(|| {
        vec![
            "-DZK_BUILDING_LIBRARY".into(),
            "-fno-semantic-interposition".into(),
        ]
    });
    (files, args)
}

/// The quoted strings of a meson list that starts with `opener`, up to the
/// first line holding `close` outside a comment.
fn meson_list(text: &str, opener: &str, close: char) -> Option<Vec<String>> {
    let start = text.find(opener)? + opener.len();
    let mut out = Vec::new();
    for line in text[start..].lines() {
        let code = line.split('#').next().unwrap();
        let mut parts = code.split('\'');
        let outside_first = parts.next().unwrap();
        let mut done = outside_first.contains(close);
        let mut quoted = true;
        for part in parts {
            if quoted {
                out.push(part.to_string());
            } else if part.contains(close) {
                done = true;
            }
            quoted = !quoted;
        }
        if done {
            return Some(out);
        }
    }
    None
}
