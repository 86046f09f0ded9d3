//! phase(), PhaseGuard and begin/end_phase under the global allocator: ends
//! on panic, nesting, Vec growth, zeroed and over-aligned blocks, threads,
//! blocks that outlive their phase. Expectations about which blocks are in
//! the pool follow ZK_ALLOC_MIN_BYTES (0 by default: all of a phase's).

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::panic::catch_unwind;
use std::sync::Barrier;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::{lock, mix};

const MIB: usize = 1 << 20;

/// Whether an in-phase request of `size` bytes comes from the pool.
fn pooled(size: usize) -> bool {
    size >= zkalloc::min_arena_bytes()
}

fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(prev);
    r
}

#[test]
fn panic_inside_phase_ends_the_phase() {
    let _l = lock();
    assert!(!zkalloc::phase_active());
    let e0 = zkalloc::phase_epoch();
    let r = quiet_panics(|| {
        catch_unwind(|| {
            zkalloc::phase(|| {
                let v = vec![7u8; 4 * MIB];
                assert!(zkalloc::phase_active());
                assert!(zkalloc::owns(v.as_ptr()));
                panic!("proof failed");
            })
        })
    });
    assert!(r.is_err());
    assert!(
        !zkalloc::phase_active(),
        "the unwinding phase was not ended"
    );
    assert_eq!(zkalloc::phase_epoch(), e0 + 1);

    // The same with a PhaseGuard.
    let r = quiet_panics(|| {
        catch_unwind(|| {
            let g = zkalloc::PhaseGuard::new();
            assert!(g.began());
            let _v = vec![1u64; MIB];
            panic!("again");
        })
    });
    assert!(r.is_err());
    assert!(
        !zkalloc::phase_active(),
        "PhaseGuard did not end the phase on unwind"
    );

    // The next phase begins normally.
    assert_eq!(zkalloc::try_begin_phase(), Ok(()));
    assert_eq!(zkalloc::phase_epoch(), e0 + 3);
    zkalloc::end_phase();
}

#[test]
fn nested_phase_joins_the_outer_one() {
    let _l = lock();
    zkalloc::phase(|| {
        let e = zkalloc::phase_epoch();
        let outer = vec![3u32; MIB];
        let inner_sum: u64 = zkalloc::phase(|| {
            assert!(zkalloc::phase_active());
            assert_eq!(
                zkalloc::phase_epoch(),
                e,
                "a nested phase must not begin a new one"
            );
            let v = vec![5u32; MIB];
            v.iter().map(|&x| x as u64).sum()
        });
        assert!(
            zkalloc::phase_active(),
            "the inner phase() ended the outer phase"
        );
        assert_eq!(inner_sum, 5 * MIB as u64);
        assert!(outer.iter().all(|&x| x == 3));
        // A guard made inside joins too.
        let g = zkalloc::PhaseGuard::new();
        assert!(!g.began());
        drop(g);
        assert!(zkalloc::phase_active());
        // A panic in a nested phase, caught inside the outer one.
        let r = quiet_panics(|| catch_unwind(|| zkalloc::phase(|| panic!("inner"))));
        assert!(r.is_err());
        assert!(
            zkalloc::phase_active(),
            "an inner panic ended the outer phase"
        );
        assert_eq!(zkalloc::try_begin_phase(), Err(zkalloc::PhaseBusy));
    });
    assert!(!zkalloc::phase_active());
}

#[test]
fn begin_phase_twice_panics_and_changes_nothing() {
    let _l = lock();
    zkalloc::begin_phase();
    let e = zkalloc::phase_epoch();
    let v = vec![9u8; 2 * MIB];
    let r = quiet_panics(|| catch_unwind(zkalloc::begin_phase));
    assert!(r.is_err(), "a second begin_phase must panic");
    assert!(zkalloc::phase_active());
    assert_eq!(zkalloc::phase_epoch(), e);
    assert!(
        v.iter().all(|&b| b == 9),
        "a refused begin_phase touched a block"
    );
    drop(v);
    zkalloc::end_phase();
    zkalloc::end_phase(); // idempotent
    assert!(!zkalloc::phase_active());
}

#[test]
fn vec_growth_inside_a_phase() {
    let _l = lock();
    zkalloc::phase(|| {
        // From empty by doubling: every element must survive every move,
        // and the grown vector ends in the pool (a move goes where a new
        // block of the new size would go).
        let n = 16 * MIB / 4;
        let mut v: Vec<u32> = Vec::new();
        for i in 0..n as u32 {
            v.push(i ^ 0x5a5a);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 ^ 0x5a5a));
        assert!(zkalloc::owns(v.as_ptr()), "a grown vector left the pool");

        // A pool vector grown past its capacity stays in the pool.
        let mut w: Vec<u64> = Vec::with_capacity(MIB / 8);
        assert!(zkalloc::owns(w.as_ptr()));
        for i in 0..(32 * MIB / 8) as u64 {
            w.push(mix(0, i));
        }
        assert!(
            zkalloc::owns(w.as_ptr()),
            "a pool block left the pool when it grew"
        );
        assert!(w.iter().enumerate().all(|(i, &x)| x == mix(0, i as u64)));
        w.truncate(10);
        w.shrink_to_fit();
        assert_eq!(w.len(), 10);
        assert!(w.iter().enumerate().all(|(i, &x)| x == mix(0, i as u64)));
    });
}

#[test]
fn blocks_outlive_their_phase() {
    let _l = lock();
    // Made outside a phase and grown inside one.
    let mut before: Vec<u64> = Vec::with_capacity(16);
    // A small box, a large vector and a vector grown from empty, all made
    // inside a phase and kept: the next begins reclaim none of them.
    let (small, large, grown) = zkalloc::phase(|| {
        for i in 0..(8 * MIB / 8) as u64 {
            before.push(i * 3);
        }
        let small: Box<[u8; 1024]> = Box::new([0xab; 1024]);
        let large = vec![0x5au8; 24 * MIB];
        let grown: Vec<u32> = (0..(2 * MIB / 4) as u32).collect();
        (small, large, grown)
    });
    assert_eq!(zkalloc::owns(small.as_ptr()), pooled(1024));
    assert!(zkalloc::owns(large.as_ptr()));
    assert!(zkalloc::owns(before.as_ptr()) && zkalloc::owns(grown.as_ptr()));
    let kept0 = zkalloc::stats();
    for round in 0..3 {
        zkalloc::phase(|| {
            if round == 0 {
                let st = zkalloc::stats();
                assert!(
                    st.kept_bytes >= (24 + 8 + 2) as u64 * MIB as u64,
                    "kept at the begin: {} bytes; before {}",
                    st.kept_bytes,
                    kept0.kept_bytes
                );
            }
            // Requests of the same sizes, written over: they must get other
            // pages.
            let scrub = vec![0xeeu8; 32 * MIB];
            let same = vec![0x11u8; 24 * MIB];
            let boxes: Vec<Box<[u8; 1024]>> = (0..64).map(|_| Box::new([0x22; 1024])).collect();
            assert!(zkalloc::owns(scrub.as_ptr()));
            std::hint::black_box((&scrub, &same, &boxes));
        });
    }
    assert!(before.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    assert!(small.iter().all(|&b| b == 0xab));
    assert!(large.iter().all(|&b| b == 0x5a));
    assert!(grown.iter().enumerate().all(|(i, &x)| x == i as u32));
}

#[test]
fn zeroed_memory_is_zero_on_reused_pages() {
    let _l = lock();
    for round in 0..3 {
        zkalloc::phase(|| {
            let z = vec![0u64; 32 * MIB / 8];
            assert!(zkalloc::owns(z.as_ptr()));
            assert!(
                z.iter().all(|&x| x == 0),
                "round {round}: vec![0; n] not zero"
            );
            drop(z);
            // Dirty the pages the next round's zeroed vector will get.
            let d = vec![0xffu8; 32 * MIB];
            std::hint::black_box(&d);
        });
    }
}

#[test]
fn over_aligned_blocks() {
    let _l = lock();
    zkalloc::phase(|| {
        for &(size, align) in &[
            (MIB, 4096),
            (4 * MIB, 2 * MIB),
            (100, 64),
            (64 * 1024, 32 * 1024),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: l has a non-zero size; every block is freed with its layout.
            unsafe {
                let p = alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "alloc({size}, {align})");
                p.write_bytes(0x11, size);
                let q = realloc(p, l, size * 3);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0, "realloc keeps alignment {align}");
                assert!((0..size).all(|i| *q.add(i) == 0x11));
                dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                let z = alloc_zeroed(l);
                assert_eq!(z as usize % align, 0);
                assert!((0..size).all(|i| *z.add(i) == 0));
                dealloc(z, l);
            }
        }
    });
}

#[test]
fn threads_inside_a_phase() {
    let _l = lock();
    let nthreads = 3;
    let (c0, _) = zkalloc::overflow_stats();
    for round in 0..3u64 {
        zkalloc::phase(|| {
            let main_buf = vec![round; 8 * MIB / 8];
            let sums: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..nthreads as u64)
                    .map(|t| {
                        s.spawn(move || {
                            let mut v: Vec<u64> = Vec::with_capacity(16 * MIB / 8);
                            assert!(zkalloc::owns(v.as_ptr()), "thread {t}: not from the pool");
                            for i in 0..(16 * MIB / 8) as u64 {
                                v.push(mix(t + round, i));
                            }
                            // Small bookkeeping and a growing vector too.
                            let names: Vec<String> =
                                (0..1000).map(|i| format!("{t}-{i}")).collect();
                            let mut g = Vec::new();
                            for i in 0..MIB as u64 {
                                g.push(i as u8);
                            }
                            v.iter()
                                .fold(names.len() as u64 + g.len() as u64, |a, &x| mix(a, x))
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (t, &s) in sums.iter().enumerate() {
                let t = t as u64;
                let want = (0..(16 * MIB / 8) as u64)
                    .fold(1000 + MIB as u64, |a, i| mix(a, mix(t + round, i)));
                assert_eq!(s, want, "round {round}, thread {t}");
            }
            assert!(main_buf.iter().all(|&x| x == round));
        });
    }
    let (c1, _) = zkalloc::overflow_stats();
    assert_eq!(c1, c0, "threads in a phase overflowed the pool");
}

#[test]
fn more_threads_than_arenas_share_them() {
    let _l = lock();
    let narenas = zkalloc::stats().nslabs as usize;
    assert!(narenas > 0);
    let nthreads = narenas + 2;
    let (c0, _) = zkalloc::overflow_stats();
    let barrier = Barrier::new(nthreads);
    zkalloc::phase(|| {
        std::thread::scope(|s| {
            for t in 0..nthreads {
                let barrier = &barrier;
                s.spawn(move || {
                    let v = vec![t as u8; MIB];
                    assert!(zkalloc::owns(v.as_ptr()), "thread {t}: not from the pool");
                    barrier.wait(); // all threads hold their block now
                    assert!(v.iter().all(|&b| b == t as u8));
                });
            }
        });
    });
    // Threads take the arenas in turn: more threads than arenas share them,
    // all from the one pool, none overflows.
    let st = zkalloc::stats();
    assert!(st.arenas_created as usize <= narenas, "{st:?}");
    assert_eq!(zkalloc::overflow_stats().0, c0);
}

#[test]
fn reset_overflow_stats_restarts_from_zero() {
    let _l = lock();
    zkalloc::reset_overflow_stats();
    assert_eq!(zkalloc::overflow_stats(), (0, 0));
    let s = zkalloc::stats();
    assert_eq!(s.version, 3);
    assert!(s.nslabs > 0);
    assert!(s.overflow_count >= zkalloc::overflow_stats().0 as u64);
}
