//! Which jemalloc the phases live in. build.rs tells how the crate was
//! linked (cfg zkalloc_link: shared libzkalloc.so, static libzkalloc.a from
//! pkg-config, or bundled) and the jemalloc's symbol prefix (cfg zkalloc_je).
//! With the shared library, libzkalloc.so and Debian's libjemalloc.so are
//! mapped; otherwise neither is (one jemalloc, in the binary). Either way
//! zkalloc's phase arenas must be created in the jemalloc this binary calls:
//! its arenas.narenas grows.

#[cfg(not(zkalloc_je = "other"))]
use std::ffi::{c_char, c_int, c_uint, c_void};

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::lock;

#[cfg(not(zkalloc_je = "other"))]
extern "C" {
    #[cfg_attr(zkalloc_je = "rjem", link_name = "_rjem_mallctl")]
    fn mallctl(
        name: *const c_char,
        oldp: *mut c_void,
        oldlenp: *mut usize,
        newp: *mut c_void,
        newlen: usize,
    ) -> c_int;
}

/// The binary's jemalloc's arena count, or None if its prefix has no
/// declaration here.
fn narenas() -> Option<u32> {
    #[cfg(not(zkalloc_je = "other"))]
    {
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
        Some(n)
    }
    #[cfg(zkalloc_je = "other")]
    None
}

fn mapped(name: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains(name)
}

#[test]
fn phase_arenas_live_in_the_linked_jemalloc() {
    let _l = lock();
    if cfg!(zkalloc_link = "shared") {
        assert!(mapped("libzkalloc.so"));
        assert!(mapped("libjemalloc.so"));
    } else {
        assert!(
            !mapped("libzkalloc.so"),
            "a static build maps libzkalloc.so"
        );
        assert!(
            !mapped("libjemalloc.so"),
            "a static build maps a shared jemalloc: two jemallocs"
        );
    }
    let before = narenas();
    let created0 = zkalloc::stats().arenas_created;
    zkalloc::phase(|| {
        let v = vec![1u8; 4 << 20];
        assert!(zkalloc::owns(v.as_ptr()));
    });
    let created = zkalloc::stats().arenas_created - created0;
    assert!(created >= 1, "no phase arena was created");
    match (before, narenas()) {
        (Some(b), Some(a)) => assert!(
            a > b,
            "phase arenas are not in the jemalloc this binary calls ({b} -> {a})"
        ),
        _ => println!("linkage: jemalloc prefix not _rjem_ or none: arena count NOT CHECKED"),
    }
}

#[cfg(zkalloc_je = "rjem")]
extern "C" {
    fn _rjem_mallocx(size: usize, flags: c_int) -> *mut c_void;
    fn _rjem_sdallocx(p: *mut c_void, size: usize, flags: c_int);
}

/// With a `_rjem_` jemalloc (bundled, or a -Djemalloc_prefix libzkalloc),
/// this package's binaries are linked with zkalloc's --wrap flags: the
/// program's own `_rjem_*` calls (tikv-jemallocator's) reach zkalloc.
#[cfg(zkalloc_je = "rjem")]
#[test]
fn prefixed_entry_points_are_wrapped() {
    let _l = lock();
    let mut v: *const c_char = std::ptr::null();
    let mut len = std::mem::size_of_val(&v);
    // SAFETY: zk.version is a const char *; v has its size.
    let rc = unsafe {
        mallctl(
            c"zk.version".as_ptr(),
            (&mut v as *mut *const c_char).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0, "_rjem_mallctl(\"zk.version\") did not reach zkalloc");
    // SAFETY: v points to the library's static version string.
    let version = unsafe { std::ffi::CStr::from_ptr(v) };
    assert!(version.to_bytes().starts_with(b"0.2"), "{version:?}");
    zkalloc::phase(|| {
        // SAFETY: a plain allocation, freed with its size.
        unsafe {
            let p = _rjem_mallocx(4 << 20, 0);
            assert!(!p.is_null());
            assert!(
                zkalloc::owns(p),
                "_rjem_mallocx in a phase is not pool memory"
            );
            _rjem_sdallocx(p, 4 << 20, 0);
        }
    });
}
