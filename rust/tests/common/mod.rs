//! Shared by the integration tests: fault counting, the lock that keeps the
//! phase-using tests of one binary apart (phases are process-wide: one
//! test's begin would land in the middle of another's phase), and child
//! processes (the library reads its options once, so a test of an option
//! runs this test binary again with the variable set).
#![allow(dead_code)]

use std::ffi::{c_int, c_long};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

#[repr(C)]
struct Rusage {
    utime: [c_long; 2],
    stime: [c_long; 2],
    maxrss: c_long,
    ixrss: c_long,
    idrss: c_long,
    isrss: c_long,
    minflt: c_long,
    majflt: c_long,
    rest: [c_long; 8],
}

extern "C" {
    fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
}

/// Minor page faults of the whole process so far.
pub fn minflt() -> u64 {
    // SAFETY: Rusage matches struct rusage on 64-bit Linux; RUSAGE_SELF = 0.
    unsafe {
        let mut r: Rusage = std::mem::zeroed();
        assert_eq!(getrusage(0, &mut r), 0);
        r.minflt as u64
    }
}

static PHASES: Mutex<()> = Mutex::new(());

/// Held by every test that begins phases. A test that panics while holding
/// it poisons it; the next test still runs.
pub fn lock() -> MutexGuard<'static, ()> {
    PHASES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value that depends on every element, so a lost or overwritten byte
/// changes it.
pub fn mix(acc: u64, x: u64) -> u64 {
    let mut h = (acc ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h
}

/// Runs the ignored test `name` of this test binary alone in a child
/// process, with `env` set (None: removed) and ZKALLOC_TEST_CHILD=1.
pub fn run_child(name: &str, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ZKALLOC_TEST_CHILD", "1");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

/// Panics unless this process is a child started by run_child.
pub fn assert_child() {
    assert_eq!(
        std::env::var("ZKALLOC_TEST_CHILD").as_deref(),
        Ok("1"),
        "run me through the parent test (common::run_child)"
    );
}

/// stdout and stderr of a child, for messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
