//! Checked mode (ZK_ALLOC_CHECK=1) under the Rust global allocator: a phase
//! block written after the next begin_phase is reported and the process
//! aborts; without checked mode the same stale write goes unreported. Each
//! case runs in a child process (this binary again, with the ignored test
//! `child_stale_write`), since options are read once, by the first phase at the latest.

use std::process::Command;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

fn run_child(check: &str) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_stale_write",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZK_ALLOC_CHECK", check)
        .env("ZKALLOC_TEST_CHILD", "1")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn stale_phase_write_is_caught_in_checked_mode() {
    let (status, stdout, stderr) = run_child("1");
    assert!(
        stdout.contains("child_stale_write: writing"),
        "the child did not get to the write:\n{stdout}\n{stderr}"
    );
    assert!(
        !status.success(),
        "checked mode let a stale write pass:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("use after zk_begin_phase"),
        "no checked-mode report:\n{stderr}"
    );
    assert!(!stdout.contains("child_stale_write: survived"));
}

#[test]
fn stale_phase_write_is_silent_without_checked_mode() {
    let (status, stdout, stderr) = run_child("0");
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("child_stale_write: survived"), "{stdout}");
}

#[test]
#[ignore = "run by the tests above in a child process"]
fn child_stale_write() {
    assert_eq!(
        std::env::var("ZKALLOC_TEST_CHILD").as_deref(),
        Ok("1"),
        "run me through the parent tests"
    );
    // A proof's result kept past the next begin_phase: the bug the phase
    // contract forbids and safe Rust cannot see.
    let kept: Vec<u8> = zkalloc::phase(|| vec![1u8; 1 << 20]);
    assert!(zkalloc::owns(kept.as_ptr()));
    let p = kept.as_ptr() as *mut u8;
    std::mem::forget(kept); // never freed: only the stale write is under test
    zkalloc::phase(|| {
        println!("child_stale_write: writing");
        // SAFETY: none; this is the contract violation checked mode exists
        // to catch (the pages are still mapped, so without it nothing faults).
        unsafe { p.add(4096).write_volatile(2) };
    });
    println!("child_stale_write: survived");
}
