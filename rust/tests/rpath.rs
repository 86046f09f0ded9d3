//! Issue 13: a binary linked against a libzkalloc.so outside the system
//! library directories (a private prefix, or build/ through
//! meson-uninstalled) starts without LD_LIBRARY_PATH: build.rs gives this
//! package's binaries an rpath to the directory pkg-config named
//! (ZKALLOC_RPATH_DIRS, from build.rs). The test runs itself again with
//! LD_LIBRARY_PATH removed and checks where libzkalloc.so was loaded from.
//! (Binaries of other packages: rust/test.sh builds one from an installed
//! private prefix.)
#![cfg(zkalloc_link = "shared")]

use std::process::Command;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::{assert_child, run_child, text};

const RPATH_DIRS: &str = env!("ZKALLOC_RPATH_DIRS");

/// The path libzkalloc.so is mapped from in this process.
fn loaded_from() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libzkalloc.so"))
        .expect("libzkalloc.so is not mapped")
        .to_string()
}

#[test]
#[ignore = "run by runs_without_ld_library_path in a child process"]
fn child_rpath() {
    assert_child();
    assert!(std::env::var_os("LD_LIBRARY_PATH").is_none());
    zkalloc::phase(|| assert!(zkalloc::owns(vec![1u8; 1 << 20].as_ptr())));
    println!("child_rpath: loaded {}", loaded_from());
}

#[test]
fn runs_without_ld_library_path() {
    let out = run_child("child_rpath", &[("LD_LIBRARY_PATH", None)]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the test binary does not start without LD_LIBRARY_PATH ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("child_rpath: loaded ").nth(1))
        .unwrap_or_else(|| panic!("the child did not run:\n{stdout}\n{stderr}"));
    let from = std::path::Path::new(line).parent().unwrap();
    let from = from.canonicalize().unwrap();
    let dirs: Vec<_> = RPATH_DIRS
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).canonicalize().unwrap())
        .collect();
    if dirs.is_empty() {
        // pkg-config named a system directory: nothing to add.
        assert!(
            from.starts_with("/usr") || from.starts_with("/lib"),
            "{line}"
        );
    } else {
        assert!(dirs.contains(&from), "loaded {line}, rpath dirs {dirs:?}");
    }
}

#[test]
fn binary_has_the_rpath() {
    if RPATH_DIRS.is_empty() {
        return println!("rpath: pkg-config named system directories only");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&out.stdout);
    for d in RPATH_DIRS.split(':') {
        assert!(
            dynamic
                .lines()
                .any(|l| (l.contains("(RUNPATH)") || l.contains("(RPATH)")) && l.contains(d)),
            "no rpath {d} in {}:\n{dynamic}",
            exe.display()
        );
    }
}
