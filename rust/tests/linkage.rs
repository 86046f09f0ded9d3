//! Which jemalloc the phases live in. Default build: the shared libzkalloc
//! and Debian's libjemalloc are mapped. Feature `bundled`: neither is; the
//! binary carries one (prefixed) jemalloc, and zkalloc's phase arenas are
//! created in that instance (its arenas.narenas grows).

use std::ffi::{c_char, c_int, c_uint, c_void};

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::lock;

extern "C" {
    #[cfg_attr(feature = "bundled", link_name = "_rjem_mallctl")]
    fn mallctl(
        name: *const c_char,
        oldp: *mut c_void,
        oldlenp: *mut usize,
        newp: *mut c_void,
        newlen: usize,
    ) -> c_int;
}

fn narenas() -> c_uint {
    let mut n: c_uint = 0;
    let mut len = std::mem::size_of::<c_uint>();
    // SAFETY: arenas.narenas is an unsigned; n has its size.
    let rc = unsafe {
        mallctl(
            c"arenas.narenas".as_ptr(),
            (&mut n as *mut c_uint).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0);
    n
}

fn mapped(name: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains(name)
}

#[test]
fn phase_arenas_live_in_the_linked_jemalloc() {
    let _l = lock();
    if cfg!(feature = "bundled") {
        assert!(!mapped("libzkalloc.so"), "bundled build maps libzkalloc.so");
        assert!(
            !mapped("libjemalloc.so"),
            "bundled build maps a shared jemalloc: two jemallocs"
        );
    } else {
        assert!(mapped("libzkalloc.so"));
        assert!(mapped("libjemalloc.so"));
    }
    let before = narenas();
    let created0 = zkalloc::stats().arenas_created;
    zkalloc::phase(|| {
        let v = vec![1u8; 4 << 20];
        assert!(zkalloc::owns(v.as_ptr()));
    });
    let created = zkalloc::stats().arenas_created - created0;
    assert!(created >= 1, "no phase arena was created");
    assert!(
        narenas() > before,
        "phase arenas are not in the jemalloc this binary calls ({before} -> {})",
        narenas()
    );
}
