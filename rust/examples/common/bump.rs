//! The seed algorithm, re-implemented for comparison (the original Rust bump
//! allocator for provers, as published: one reserved MAP_NORESERVE region cut
//! into per-thread slabs of ZK_ALLOC_SLAB_GB GiB (default 8), CPUs + 4 slabs,
//! MADV_NOHUGEPAGE; during a phase, requests of at least 4096 bytes bump this
//! thread's pointer; frees of region memory do nothing; begin_phase() bumps a
//! generation so every thread rewinds its slab at its next allocation; a
//! region pointer that grows is copied to a fresh bump block; everything else
//! (small, outside a phase, overflow) goes to the System allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_long, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

extern "C" {
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: i64,
    ) -> *mut c_void;
    fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    fn getenv(name: *const c_char) -> *const c_char;
    fn strtod(s: *const c_char, end: *mut *mut c_char) -> f64;
    fn sysconf(name: c_int) -> c_long;
}

const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_PRIVATE: c_int = 0x02;
const MAP_ANONYMOUS: c_int = 0x20;
const MAP_NORESERVE: c_int = 0x4000;
const MADV_NOHUGEPAGE: c_int = 15;
const SC_NPROCESSORS_ONLN: c_int = 84;
const MIN_BYTES: usize = 4096;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static BASE: AtomicUsize = AtomicUsize::new(0);
static SIZE: AtomicUsize = AtomicUsize::new(0);
static SLAB: AtomicUsize = AtomicUsize::new(0);
static NSLABS: AtomicUsize = AtomicUsize::new(0);
static NEXT_SLAB: AtomicUsize = AtomicUsize::new(0);
static RESERVE: Once = Once::new();
pub static OVERFLOW_COUNT: AtomicUsize = AtomicUsize::new(0);
pub static OVERFLOW_BYTES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CUR: Cell<usize> = const { Cell::new(0) };
    static END: Cell<usize> = const { Cell::new(0) };
    static MY_SLAB: Cell<usize> = const { Cell::new(0) }; // base, 0 = none yet
    static MY_GEN: Cell<usize> = const { Cell::new(0) };
    static NO_SLAB: Cell<bool> = const { Cell::new(false) };
}

/// Reserves the region (no allocation here: libc calls only). Like the
/// original, a failed reservation is fatal.
fn reserve() {
    RESERVE.call_once(|| {
        // SAFETY: plain libc calls on a NUL-terminated name.
        let gb = unsafe {
            let v = getenv(c"ZK_ALLOC_SLAB_GB".as_ptr());
            if v.is_null() {
                8.0
            } else {
                strtod(v, std::ptr::null_mut())
            }
        };
        let gb = if gb > 0.0 { gb } else { 8.0 };
        let slab = ((gb * (1u64 << 30) as f64) as usize + (2 << 20) - 1) & !((2 << 20) - 1);
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { sysconf(SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let nslabs = cpus + 4;
        let size = slab * nslabs;
        // SAFETY: an anonymous private mapping; only this module uses it.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                size,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p as isize == -1 {
            std::process::abort();
        }
        // SAFETY: advice on the mapping just made.
        unsafe { madvise(p, size, MADV_NOHUGEPAGE) };
        SLAB.store(slab, Ordering::Relaxed);
        NSLABS.store(nslabs, Ordering::Relaxed);
        SIZE.store(size, Ordering::Relaxed);
        BASE.store(p as usize, Ordering::Release);
    });
}

pub fn begin_phase() {
    reserve();
    let was = ACTIVE.swap(true, Ordering::AcqRel);
    assert!(!was, "bump: phases must not nest");
    GENERATION.fetch_add(1, Ordering::Release);
}

pub fn end_phase() {
    ACTIVE.store(false, Ordering::Release);
}

fn in_region(p: *mut u8) -> bool {
    let base = BASE.load(Ordering::Relaxed);
    base != 0 && (p as usize).wrapping_sub(base) < SIZE.load(Ordering::Relaxed)
}

pub struct BumpAllocator;

impl BumpAllocator {
    /// A bump block, or None when this request is not the arena's.
    #[inline]
    fn bump(&self, size: usize, align: usize) -> Option<*mut u8> {
        if !ACTIVE.load(Ordering::Relaxed) || size < MIN_BYTES {
            return None;
        }
        let gen = GENERATION.load(Ordering::Relaxed);
        if MY_GEN.get() != gen {
            if NO_SLAB.get() {
                return self.overflow(size);
            }
            if MY_SLAB.get() == 0 {
                let i = NEXT_SLAB.fetch_add(1, Ordering::Relaxed);
                if i >= NSLABS.load(Ordering::Relaxed) {
                    NO_SLAB.set(true); // for good: the original never returns slabs
                    return self.overflow(size);
                }
                let s = BASE.load(Ordering::Acquire) + i * SLAB.load(Ordering::Relaxed);
                MY_SLAB.set(s);
                END.set(s + SLAB.load(Ordering::Relaxed));
            }
            CUR.set(MY_SLAB.get());
            MY_GEN.set(gen);
        }
        let at = (CUR.get() + align - 1) & !(align - 1);
        if at + size > END.get() {
            return self.overflow(size);
        }
        CUR.set(at + size);
        Some(at as *mut u8)
    }

    #[cold]
    fn overflow(&self, size: usize) -> Option<*mut u8> {
        OVERFLOW_COUNT.fetch_add(1, Ordering::Relaxed);
        OVERFLOW_BYTES.fetch_add(size, Ordering::Relaxed);
        None
    }
}

unsafe impl GlobalAlloc for BumpAllocator {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match self.bump(l.size(), l.align()) {
            Some(p) => p,
            // SAFETY: forwarded with the caller's layout.
            None => unsafe { System.alloc(l) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match self.bump(l.size(), l.align()) {
            Some(p) => {
                // Slab memory is reused dirty: always clear.
                // SAFETY: p has l.size() bytes.
                unsafe { p.write_bytes(0, l.size()) };
                p
            }
            // SAFETY: forwarded with the caller's layout.
            None => unsafe { System.alloc_zeroed(l) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if !in_region(p) {
            // SAFETY: p is System's, with this layout.
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if !in_region(p) {
            // Sticky: System memory stays System memory.
            // SAFETY: p is System's, with this layout.
            return unsafe { System.realloc(p, l, new_size) };
        }
        if new_size <= l.size() {
            return p;
        }
        // SAFETY: new_size > 0, align from a valid layout.
        let nl = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        // SAFETY: as alloc.
        let q = unsafe { self.alloc(nl) };
        if !q.is_null() {
            // May overlap if the slab was rewound meanwhile (contract
            // violation), so memmove.
            // SAFETY: both blocks hold at least l.size() bytes.
            unsafe { std::ptr::copy(p, q, l.size()) };
        }
        q
    }
}
