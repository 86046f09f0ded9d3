//! Shared by the integration tests: fault counting and the lock that keeps
//! phase-using tests of one binary from running at the same time (phases are
//! process-wide, and one test's begin_phase would discard another's memory).
#![allow(dead_code)]

use std::ffi::{c_int, c_long};
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
