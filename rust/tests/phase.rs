//! phase(), PhaseGuard and begin/end_phase under the global allocator: ends
//! on panic, nesting, Vec growth, zeroed and over-aligned blocks, threads.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::panic::catch_unwind;
use std::sync::Barrier;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::{lock, mix};

const MIB: usize = 1 << 20;

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
        "a refused begin_phase touched phase memory"
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
        // From empty by doubling (sticky realloc: it starts as small
        // ordinary memory); every element must survive every move.
        let n = 16 * MIB / 4;
        let mut v: Vec<u32> = Vec::new();
        for i in 0..n as u32 {
            v.push(i ^ 0x5a5a);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 ^ 0x5a5a));

        // A phase vector grown past its capacity stays phase memory.
        let mut w: Vec<u64> = Vec::with_capacity(MIB / 8);
        assert!(zkalloc::owns(w.as_ptr()));
        for i in 0..(32 * MIB / 8) as u64 {
            w.push(mix(0, i));
        }
        assert!(
            zkalloc::owns(w.as_ptr()),
            "a phase block left the phase when it grew"
        );
        assert!(w.iter().enumerate().all(|(i, &x)| x == mix(0, i as u64)));
        w.truncate(10);
        w.shrink_to_fit();
        assert_eq!(w.len(), 10);
        assert!(w.iter().enumerate().all(|(i, &x)| x == mix(0, i as u64)));
    });
}

#[test]
fn ordinary_memory_survives_later_phases() {
    let _l = lock();
    // Made outside a phase, grown inside one: stays ordinary (sticky), so it
    // is still intact after the next phase reused the phase pages.
    let mut keep: Vec<u64> = Vec::with_capacity(16);
    zkalloc::phase(|| {
        for i in 0..(8 * MIB / 8) as u64 {
            keep.push(i * 3);
        }
    });
    assert!(!zkalloc::owns(keep.as_ptr()));
    // A small block made inside a phase is ordinary too.
    let small: Box<[u8; 1024]> = zkalloc::phase(|| Box::new([0xab; 1024]));
    assert!(!zkalloc::owns(small.as_ptr()));
    for _ in 0..2 {
        zkalloc::phase(|| {
            let scrub = vec![0xeeu8; 32 * MIB];
            assert!(zkalloc::owns(scrub.as_ptr()));
            std::hint::black_box(&scrub);
        });
    }
    assert!(keep.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    assert!(small.iter().all(|&b| b == 0xab));
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
    let nthreads = 3; // with main: within the default slabs (CPUs + 4)
    let (c0, _) = zkalloc::overflow_stats();
    for round in 0..3u64 {
        zkalloc::phase(|| {
            let main_buf = vec![round; 8 * MIB / 8];
            let sums: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..nthreads as u64)
                    .map(|t| {
                        s.spawn(move || {
                            let mut v: Vec<u64> = Vec::with_capacity(16 * MIB / 8);
                            assert!(zkalloc::owns(v.as_ptr()), "thread {t}: not phase memory");
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
    assert_eq!(c1, c0, "threads within the slab count overflowed");
}

#[test]
fn more_threads_than_slabs_stay_correct_and_are_counted() {
    let _l = lock();
    let nslabs = zkalloc::stats().nslabs as usize;
    assert!(nslabs > 0);
    let nthreads = nslabs + 2;
    let (c0, b0) = zkalloc::overflow_stats();
    let shared0 = zkalloc::stats().shared_count;
    let barrier = Barrier::new(nthreads);
    zkalloc::phase(|| {
        std::thread::scope(|s| {
            for t in 0..nthreads {
                let barrier = &barrier;
                s.spawn(move || {
                    let v = vec![t as u8; MIB];
                    barrier.wait(); // every thread holds its slab (or has none) now
                    assert!(v.iter().all(|&b| b == t as u8));
                });
            }
        });
    });
    let (c1, b1) = zkalloc::overflow_stats();
    let shared = (zkalloc::stats().shared_count - shared0) as usize;
    // Threads without a slab of their own either overflow to ordinary
    // memory (counted) or share another thread's arena (counted, library
    // version 2). The main thread may hold a slab too.
    assert!(
        (c1 - c0) + shared >= nthreads - nslabs,
        "{nthreads} threads on {nslabs} slabs: {} overflows, {shared} shared",
        c1 - c0
    );
    if shared == 0 {
        assert!(b1 - b0 >= (nthreads - nslabs) * MIB);
    }
}

#[test]
fn reset_overflow_stats_restarts_from_zero() {
    let _l = lock();
    zkalloc::reset_overflow_stats();
    assert_eq!(zkalloc::overflow_stats(), (0, 0));
    let s = zkalloc::stats();
    assert!(s.version >= 1);
    assert!(s.slab_size > 0 && s.nslabs > 0);
    assert!(s.overflow_count >= zkalloc::overflow_stats().0 as u64);
}
