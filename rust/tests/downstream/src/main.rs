//! A prover-shaped program outside the zkalloc package: a twiddle cache
//! built lazily in the first proof, per-proof buffers, five proofs. Prints
//! one line: how zkalloc was linked and loaded. Exits non-zero on any
//! mismatch.

use std::sync::OnceLock;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

static TWIDDLES: OnceLock<Vec<u32>> = OnceLock::new();

fn twiddle(i: usize) -> u32 {
    (i as u32).wrapping_mul(2654435761)
}

/// Where libzkalloc.so is mapped from ("none": linked statically).
fn libzkalloc() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libzkalloc.so"))
        .unwrap_or("none")
        .to_string()
}

/// `_rjem_mallctl("zk.version")` in bundled mode: 0 when the binary's
/// `_rjem_*` calls are wrapped (reach zkalloc), jemalloc's ENOENT when not.
#[cfg(feature = "bundled")]
fn rjem_mallctl_zk() -> i32 {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        fn _rjem_mallctl(
            name: *const c_char,
            oldp: *mut c_void,
            oldlenp: *mut usize,
            newp: *mut c_void,
            newlen: usize,
        ) -> c_int;
    }
    let mut v: *const c_char = std::ptr::null();
    let mut len = std::mem::size_of_val(&v);
    // SAFETY: zk.version is a const char *; v has its size.
    unsafe {
        _rjem_mallctl(
            c"zk.version".as_ptr(),
            (&mut v as *mut *const c_char).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    }
}

fn main() {
    let mut sums = Vec::new();
    for proof in 0..5u32 {
        let s = zkalloc::phase(|| {
            let tw = TWIDDLES.get_or_init(|| (0..(12 << 20) / 4).map(twiddle).collect());
            let lde: Vec<u32> = tw.iter().map(|&w| w ^ proof).collect();
            assert!(
                zkalloc::owns(lde.as_ptr()),
                "a proof buffer is not pool memory"
            );
            lde.iter().fold(0u32, |a, &x| a.wrapping_add(x ^ proof))
        });
        sums.push(s);
    }
    let tw = TWIDDLES.get().unwrap();
    assert!(zkalloc::owns(tw.as_ptr()));
    assert!(
        tw.iter().enumerate().all(|(i, &w)| w == twiddle(i)),
        "cache overwritten"
    );
    assert!(sums.iter().all(|&s| s == sums[0]));
    #[cfg(feature = "bundled")]
    let wrapped = {
        let rc = rjem_mallctl_zk();
        let want = if cfg!(link_args) {
            0
        } else {
            2 /* ENOENT */
        };
        assert_eq!(rc, want, "_rjem_mallctl(\"zk.version\")");
        rc == 0
    };
    #[cfg(not(feature = "bundled"))]
    let wrapped = false;
    println!(
        "downstream: ok libzkalloc={} rjem_wrapped={wrapped} kept_bytes={}",
        libzkalloc(),
        zkalloc::stats().kept_bytes
    );
}
