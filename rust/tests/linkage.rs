//! Which jemalloc the phases live in. build.rs tells how the crate was
//! linked (cfg zkalloc_link: shared libzkalloc.so, static libzkalloc.a from
//! pkg-config, or bundled) and the jemalloc's symbol prefix (cfg zkalloc_je).
//! With the shared library, libzkalloc.so and Debian's libjemalloc.so are
//! mapped; otherwise neither is (one jemalloc, in the binary). Either way
//! zkalloc's phase arenas must be created in the jemalloc this binary calls:
//! that jemalloc's arenas.lookup finds a pool block in one of its manual
//! arenas.

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

/// The arena of the binary's jemalloc that made block p, and that
/// jemalloc's count of automatic arenas; None if its prefix has no
/// declaration here. A block that jemalloc did not make is not found.
fn arena_of(p: *const u8) -> Option<(u32, u32)> {
    #[cfg(not(zkalloc_je = "other"))]
    {
        let mut ind: c_uint = 0;
        let mut len = std::mem::size_of::<c_uint>();
        let mut ptr = p as *mut c_void;
        // SAFETY: arenas.lookup takes a pointer and gives an unsigned.
        let rc = unsafe {
            mallctl(
                c"arenas.lookup".as_ptr(),
                (&mut ind as *mut c_uint).cast(),
                &mut len,
                (&mut ptr as *mut *mut c_void).cast(),
                std::mem::size_of::<*mut c_void>(),
            )
        };
        assert_eq!(rc, 0, "the binary's jemalloc does not know a pool block");
        let mut auto: c_uint = 0;
        len = std::mem::size_of::<c_uint>();
        // SAFETY: opt.narenas is an unsigned; auto has its size.
        let rc = unsafe {
            mallctl(
                c"opt.narenas".as_ptr(),
                (&mut auto as *mut c_uint).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0);
        Some((ind, auto))
    }
    #[cfg(zkalloc_je = "other")]
    {
        let _ = p;
        None
    }
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
    // Another test of this binary may have made this thread's arena
    // already: what is checked is where the block lives, not how many
    // arenas this test made.
    let found = zkalloc::phase(|| {
        let v = vec![1u8; 4 << 20];
        assert!(zkalloc::owns(v.as_ptr()));
        arena_of(v.as_ptr())
    });
    assert!(
        zkalloc::stats().arenas_created >= 1,
        "no phase arena was created"
    );
    match found {
        Some((ind, auto)) => assert!(
            ind >= auto,
            "a pool block is in automatic arena {ind} of the jemalloc this binary calls"
        ),
        None => println!("linkage: jemalloc prefix not _rjem_ or none: arena NOT CHECKED"),
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
