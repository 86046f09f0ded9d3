//! Phase memory is reused across proofs: the first proof faults its pages in,
//! later proofs of the same shape find them resident. Its own test binary, so
//! the first proof is the pool's first use in the process.

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::{lock, minflt, mix};

const BIG: usize = 64 << 20;
const PAGES: u64 = (BIG / 4096) as u64;

/// A proof's worth of large allocations: a 64 MiB vector written and read
/// back, and a few 1 MiB temporaries allocated and freed inside.
fn proof(seed: u64) -> u64 {
    let n = BIG / 8;
    let mut v: Vec<u64> = Vec::with_capacity(n);
    assert!(
        zkalloc::owns(v.as_ptr()),
        "a 64 MiB vector in a phase must be pool memory"
    );
    for i in 0..n as u64 {
        v.push(i.wrapping_mul(seed | 1));
    }
    let mut acc = seed;
    for k in 0..8u64 {
        let t = vec![k as u8 + 1; 1 << 20];
        acc = mix(acc, t.iter().map(|&b| b as u64).sum());
    }
    v.iter().fold(acc, |a, &x| mix(a, x))
}

fn expected(seed: u64) -> u64 {
    let n = (BIG / 8) as u64;
    let mut acc = seed;
    for k in 0..8u64 {
        acc = mix(acc, (k + 1) << 20);
    }
    (0..n).fold(acc, |a, i| mix(a, i.wrapping_mul(seed | 1)))
}

#[test]
fn phase_memory_is_reused_across_proofs() {
    let _l = lock();
    let mut faults = Vec::new();
    for k in 0..5u64 {
        let want = expected(k + 7);
        let f0 = minflt();
        let got = zkalloc::phase(|| proof(k + 7));
        faults.push(minflt() - f0);
        assert_eq!(got, want, "proof {k}: data changed");
    }
    let st = zkalloc::stats();
    println!(
        "faults per proof (64 MiB = {PAGES} pages): {faults:?}; resident pool bytes {}",
        st.resident_bytes
    );
    assert!(st.region_reserved, "the phase region was not reserved");
    assert!(
        st.resident_bytes >= BIG,
        "phase pages should stay resident: {st:?}"
    );
    // The cold proof touches every page of the vector for the first time.
    assert!(
        faults[0] >= PAGES * 9 / 10,
        "cold proof faulted only {} of {PAGES} pages",
        faults[0]
    );
    // Warm proofs reuse them: near zero, far below the cold one.
    for (i, &f) in faults.iter().enumerate().skip(1) {
        assert!(
            f < PAGES / 20,
            "warm proof {i} faulted {f} pages (cold: {})",
            faults[0]
        );
    }
}
