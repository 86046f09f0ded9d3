//! Slab exhaustion with a small ZK_ALLOC_SLAB_GB. The library reads its
//! options once, by the first phase at the latest, so the work runs in
//! a child process: this test binary again, with the variable set, running
//! the ignored test `child_small_slab` only.

use std::process::Command;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::lock;

const MIB: usize = 1 << 20;

#[test]
fn small_slab_overflows_are_counted() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_small_slab",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZK_ALLOC_SLAB_GB", "0.03") // rounded up to 32 MiB
        // a thread slab's capacity: no shared arena for the big vectors
        .env("ZK_ALLOC_SHARED_BYTES", "0")
        .env("ZKALLOC_TEST_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "child failed: {}", out.status);
    // libtest exits 0 when no test matched: make sure the child really ran.
    assert!(
        stdout.contains("child_small_slab: checked"),
        "the child test did not run"
    );
}

#[test]
#[ignore = "run by small_slab_overflows_are_counted in a child process"]
fn child_small_slab() {
    assert_eq!(
        std::env::var("ZKALLOC_TEST_CHILD").as_deref(),
        Ok("1"),
        "run me through the parent test"
    );
    let _l = lock();
    let slab = zkalloc::slab_size();
    assert!(
        slab <= 32 * MIB,
        "ZK_ALLOC_SLAB_GB=0.03 gave a {slab}-byte slab"
    );
    zkalloc::reset_overflow_stats();
    // Three live 12 MiB vectors: the third (at least) does not fit.
    let bufs: Vec<Vec<u32>> = zkalloc::phase(|| {
        let bufs: Vec<Vec<u32>> = (0..3u32).map(|k| vec![k + 1; 12 * MIB / 4]).collect();
        for (k, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == k as u32 + 1), "buffer {k} corrupted");
        }
        bufs
    });
    let (count, bytes) = zkalloc::overflow_stats();
    assert!(
        count >= 1 && bytes >= 12 * MIB,
        "no overflow counted: ({count}, {bytes})"
    );
    assert!(
        !zkalloc::owns(bufs[2].as_ptr()),
        "the overflowing buffer should be ordinary memory"
    );
    assert!(zkalloc::owns(bufs[0].as_ptr()));
    drop(bufs); // before the next phase: phase memory dies there
                // The next phase has the whole slab again.
    zkalloc::phase(|| {
        let v = vec![9u8; 12 * MIB];
        assert!(zkalloc::owns(v.as_ptr()));
        let w = vec![8u8; 12 * MIB];
        assert!(zkalloc::owns(w.as_ptr()));
    });
    assert_eq!(
        zkalloc::overflow_stats(),
        (count, bytes),
        "a fresh slab overflowed"
    );
    println!("child_small_slab: checked (overflow count {count}, bytes {bytes}, slab {slab})");
}
