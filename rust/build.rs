//! Links zkalloc's C library into the crate, one of two ways:
//!
//! * default: the installed libzkalloc.so, found with the `pkg-config` binary
//!   (`pkg-config --libs zkalloc`, which also names Debian's libjemalloc).
//!   PKG_CONFIG_PATH=<repo>/build/meson-uninstalled picks an uninstalled meson
//!   build instead. A library directory outside the system ones gets an
//!   rpath (issue 13: no LD_LIBRARY_PATH needed) in this package's tests and
//!   examples; other binaries take it from DEP_ZKALLOC_LINK_ARGS (cargo
//!   passes a library's link arguments to no other package).
//! * feature `bundled`: the core sources compiled with the system C compiler
//!   into a static library, against the header of a jemalloc with a symbol
//!   prefix (tikv-jemallocator's `_rjem_` build) in
//!   $ZKALLOC_JEMALLOC_DIR/include, exactly as src/meson.build compiles them
//!   for `-Djemalloc_prefix` (same files, same -D defines, wrap.c), and that
//!   jemalloc's static library from $ZKALLOC_JEMALLOC_DIR/lib linked too,
//!   unless ZKALLOC_JEMALLOC_LINK=0 (the binary already links it, e.g.
//!   through tikv-jemalloc-sys).
//!
//! Metadata for the build scripts of packages that depend on this one
//! (`links = "zkalloc"`): DEP_ZKALLOC_LINK (bundled, shared, static) and
//! DEP_ZKALLOC_LINK_ARGS (space-separated linker arguments a final binary
//! should get: the rpath; in bundled mode the --wrap flags).
//!
//! No crates: std::process::Command only, so the crate builds offline.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "link_plan.rs"]
mod link_plan;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link_plan.rs");
    // How the crate ended up linked, for the tests: zkalloc_link is bundled,
    // shared (libzkalloc.so) or static (libzkalloc.a from pkg-config);
    // zkalloc_je is the jemalloc's symbol prefix (rjem: _rjem_, plain: none,
    // other).
    println!(
        "cargo:rustc-check-cfg=cfg(zkalloc_link, values(\"bundled\", \"shared\", \"static\"))"
    );
    println!("cargo:rustc-check-cfg=cfg(zkalloc_je, values(\"rjem\", \"plain\", \"other\"))");
    let (link, je, link_args) = if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        bundled()
    } else {
        pkg_config()
    };
    println!("cargo:rustc-cfg=zkalloc_link=\"{link}\"");
    println!("cargo:rustc-cfg=zkalloc_je=\"{je}\"");
    println!("cargo:link={link}");
    println!("cargo:link_args={}", link_args.join(" "));
}

fn fail(msg: &str) -> ! {
    panic!("zkalloc build: {msg}");
}

// ---------------------------------------------------------------- pkg-config

fn pkg_config() -> (&'static str, &'static str, Vec<String>) {
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
    let rpath = env::var_os("ZKALLOC_NO_RPATH").is_none();
    let plan = link_plan::pkg_config_plan(&libs, rpath, &|p| Path::new(p).is_file())
        .unwrap_or_else(|e| fail(&e));
    for d in &plan.directives {
        println!("{d}");
    }
    if let Some(w) = &plan.warning {
        println!("cargo:warning={w}");
    }
    // For tests/rpath.rs: where libzkalloc.so is expected to be loaded from.
    println!(
        "cargo:rustc-env=ZKALLOC_RPATH_DIRS={}",
        plan.rpath_dirs.join(":")
    );
    (plan.link, plan.je, plan.link_args)
}

// ------------------------------------------------------------------- bundled

fn bundled() -> (&'static str, &'static str, Vec<String>) {
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
    println!("cargo:rerun-if-changed={}", je_header.display());
    let prefix = fs::read_to_string(&je_header)
        .ok()
        .and_then(|t| link_plan::header_prefix(&t))
        .unwrap_or_else(|| {
            fail(&format!(
                "{} is missing or has no je_mallctl define: not a jemalloc 5 header (ZKALLOC_JEMALLOC_DIR)",
                je_header.display()
            ))
        });

    let mb = src.join("meson.build");
    println!("cargo:rerun-if-changed={}", mb.display());
    let meson = fs::read_to_string(&mb).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read {} ({e}): feature `bundled` compiles zkalloc's C sources, which live next to rust/ \
             in the zkalloc repository (or set ZKALLOC_SRC_DIR to that repository)",
            mb.display()
        ))
    });
    let core = link_plan::core_build(&meson, &prefix).unwrap_or_else(|e| fail(&e));

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let ar = env::var("AR").unwrap_or_else(|_| "ar".into());
    let extra: Vec<String> = env::var("CFLAGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut args = core.c_args.clone();
    args.push(format!("-I{}", je.join("include").display()));
    args.push(format!("-I{}", include.display()));
    args.push("-iquote".into());
    args.push(src.display().to_string());
    args.extend(extra);

    let mut files: Vec<PathBuf> = core.sources.iter().map(|n| src.join(n)).collect();
    if !core.wrapped.is_empty() {
        let text =
            link_plan::real_fallback_source(&prefix, &core.wrapped).unwrap_or_else(|e| fail(&e));
        let f = out.join("real_fallback.c");
        fs::write(&f, text).unwrap();
        files.push(f);
    }
    let mut objects = Vec::new();
    for c in &files {
        println!("cargo:rerun-if-changed={}", c.display());
        let stem = c.file_stem().unwrap().to_string_lossy();
        let obj = out.join(format!("{stem}.o"));
        let status = Command::new(&cc)
            .args(&args)
            .arg("-c")
            .arg(c)
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
    // The --wrap flags route the binary's own <prefix>mallocx, mallctl, ...
    // calls (tikv-jemallocator's) to zkalloc, as zkalloc.pc does for C.
    // This package's tests and examples get them; without them the core
    // still reaches jemalloc (real_fallback.c) and only those direct calls
    // bypass zkalloc.
    for a in &core.link_args {
        println!("cargo:rustc-link-arg={a}");
    }
    ("bundled", link_plan::prefix_kind(&prefix), core.link_args)
}
