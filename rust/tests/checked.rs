//! Checked mode (ZK_ALLOC_CHECK=1) under the Rust global allocator. It
//! reports proven misuse of pool memory and aborts: a write to a freed pool
//! block (its pages are PROT_NONE until the begin after next) and a second
//! free of a pool block. A correct prover loop, including caches built
//! lazily in the first proof and kept for good, runs clean. Each case runs
//! in a child process (the library reads its options once).

use std::alloc::{alloc, dealloc, Layout};
use std::sync::OnceLock;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::{assert_child, run_child, text};

const MIB: usize = 1 << 20;
const REPORT: &str = "zkalloc: ZK_ALLOC_CHECK: ";

fn check_env(check: bool) -> [(&'static str, Option<&'static str>); 2] {
    [
        ("ZK_ALLOC_CHECK", Some(if check { "1" } else { "0" })),
        ("ZK_ALLOC_MIN_BYTES", None),
    ]
}

// ---------------------------------------------------- a correct prover loop

static TWIDDLES: OnceLock<Vec<u64>> = OnceLock::new();

fn twiddle(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7
}

#[test]
#[ignore = "run by correct_prover_loop_runs_clean_in_checked_mode"]
fn child_prover_loop() {
    assert_child();
    assert!(zkalloc::stats().quarantined_bytes == 0);
    let mut results = Vec::new();
    for proof in 0..6u64 {
        let r = zkalloc::phase(|| {
            // A 16 MiB cache built lazily in the first proof, kept for good.
            let tw = TWIDDLES.get_or_init(|| (0..2 * MIB).map(twiddle).collect());
            // Per-proof buffers, written, read, freed; one grown by push.
            let lde: Vec<u64> = tw.iter().map(|&w| w ^ proof).collect();
            let mut grown = Vec::new();
            for i in 0..MIB as u64 {
                grown.push(i + proof);
            }
            let small: Vec<Box<[u8; 48]>> = (0..1000).map(|i| Box::new([i as u8; 48])).collect();
            let acc = lde
                .iter()
                .zip(&grown)
                .fold(0u64, |a, (x, y)| a.wrapping_mul(31).wrapping_add(x ^ y));
            acc ^ small.len() as u64
        });
        results.push(r);
    }
    let tw = TWIDDLES.get().unwrap();
    assert!(zkalloc::owns(tw.as_ptr()), "the cache is not pool memory");
    assert!(tw.iter().enumerate().all(|(i, &w)| w == twiddle(i)));
    let st = zkalloc::stats();
    assert!(st.kept_bytes >= (16 * MIB) as u64, "{st:?}");
    // Checked mode holds freed pool extents out of reuse for two begins.
    assert!(st.quarantined_bytes > 0, "nothing quarantined: {st:?}");
    println!("child_prover_loop: clean, results {results:?}");
}

#[test]
fn correct_prover_loop_runs_clean_in_checked_mode() {
    let out = run_child("child_prover_loop", &check_env(true));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{}:\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("child_prover_loop: clean"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains(REPORT),
        "a report on a correct program:\n{stderr}"
    );
}

// ----------------------------------------------------------- use after free

#[test]
#[ignore = "run by use_after_free_* in a child process"]
fn child_use_after_free() {
    assert_child();
    zkalloc::phase(|| {
        let v = vec![1u8; MIB];
        assert!(zkalloc::owns(v.as_ptr()));
        let p = v.as_ptr() as *mut u8;
        drop(v);
        println!("child_use_after_free: writing");
        // SAFETY: none: the write after free that checked mode exists to
        // catch. Without checked mode the page is still mapped and writable
        // (the pool keeps freed pages resident), so nothing faults.
        unsafe { p.add(4096).write_volatile(2) };
    });
    println!("child_use_after_free: survived");
}

#[test]
fn use_after_free_is_caught_in_checked_mode() {
    let out = run_child("child_use_after_free", &check_env(true));
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("child_use_after_free: writing"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !out.status.success(),
        "checked mode let a use after free pass:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{REPORT}use after free")),
        "no use-after-free report:\n{stderr}"
    );
    assert!(!stdout.contains("child_use_after_free: survived"));
}

#[test]
fn use_after_free_is_silent_without_checked_mode() {
    let out = run_child("child_use_after_free", &check_env(false));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("child_use_after_free: survived"),
        "{stdout}"
    );
}

// --------------------------------------------------------------- double free

#[test]
#[ignore = "run by double_free_is_caught_in_checked_mode in a child process"]
fn child_double_free() {
    assert_child();
    let l = Layout::from_size_align(4 * MIB, 64).unwrap();
    zkalloc::phase(|| {
        // SAFETY: none for the second dealloc: the double free under test.
        unsafe {
            let p = alloc(l);
            assert!(zkalloc::owns(p));
            p.write_bytes(7, l.size());
            dealloc(p, l);
            println!("child_double_free: freeing again");
            dealloc(p, l);
        }
    });
    println!("child_double_free: survived");
}

#[test]
fn double_free_is_caught_in_checked_mode() {
    let out = run_child("child_double_free", &check_env(true));
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("child_double_free: freeing again"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !out.status.success(),
        "checked mode let a double free pass:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(REPORT) && stderr.contains("double free"),
        "no double-free report:\n{stderr}"
    );
    assert!(!stdout.contains("child_double_free: survived"));
}
