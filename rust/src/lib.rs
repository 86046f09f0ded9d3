//! Resident phase memory for Rust provers: a global allocator over zkalloc.
//!
//! ```
//! use zkalloc::ZkAllocator; // was: use zk_alloc::ZkAllocator;
//!
//! #[global_allocator]
//! static ALLOC: ZkAllocator = ZkAllocator;
//!
//! fn prove(input: &[u32]) -> Vec<u32> {
//!     // 4 MiB: phase memory, gone at the next begin_phase()
//!     let lde: Vec<u32> = input.iter().map(|x| x.wrapping_mul(3)).collect();
//!     lde[..8].to_vec()
//! }
//!
//! fn main() {
//!     let input = vec![7u32; 1 << 20]; // made before any phase: ordinary
//!     let mut kept = Vec::new();
//!     for _ in 0..3 {
//!         let proof = zkalloc::phase(|| prove(&input)); // one phase per proof
//!         kept.push(proof.clone()); // copied outside the phase: ordinary
//!     }
//!     assert_eq!(kept[2], vec![21; 8]);
//! }
//! ```
//!
//! During a phase, allocations of at least `ZK_ALLOC_MIN_BYTES` (default
//! jemalloc's `arenas.tcache_max` + 1, 32 KiB + 1) come from the calling
//! thread's phase arena over one reserved region; the next phase discards
//! them and reuses the same, already resident, pages. Everything else is
//! ordinary jemalloc memory. Frees are real (a phase needs its live peak, not
//! the sum of its allocations), exited threads give their slab back, nested
//! phases join the active one, and nothing aborts: when phase memory cannot
//! serve a request, ordinary memory does and [`overflow_stats`] counts it.
//!
//! # Safety rule (the phase contract)
//!
//! Memory allocated inside phase N is **invalid once phase N+1 begins**, and
//! safe Rust cannot see this. A value that outlives the proof is only safe if
//! it is *ordinary* memory, which it is when:
//!
//! * it was allocated outside any phase (a `static`, a `OnceLock`, a thread
//!   pool, a cache: create and warm these *before* the first phase), or
//! * it is small (below `ZK_ALLOC_MIN_BYTES`): small blocks never become
//!   phase memory by default, so library bookkeeping made inside a proof
//!   (hash-map entries, queue nodes, registry slots) stays valid, or
//! * it started as ordinary memory and grew inside the phase (`realloc` is
//!   sticky: an ordinary `Vec` stays ordinary; only `ZK_ALLOC_PROMOTE_BYTES`
//!   changes that, for vectors you know to be per-proof).
//!
//! What dies: a large buffer first allocated inside a proof and kept past the
//! next [`begin_phase`] (a lazily grown pool first filled in proof 1, a
//! result `Vec` returned from the phase and used after the next one began).
//! Copy such results out (`to_vec()` after the phase ends) or drop them in
//! time. [`owns`] tells whether a pointer is phase memory;
//! `ZK_ALLOC_CHECK=1` (checked mode) reports a use of a dead phase block and
//! aborts, for testing.
//!
//! Phases are process-wide: [`begin_phase`] must not run while another
//! thread allocates or frees phase memory, and one phase is active at a time.
//!
//! # Configuration
//!
//! The C library reads `ZK_ALLOC_SLAB_GB`, `ZK_ALLOC_MIN_BYTES`,
//! `ZK_ALLOC_SLABS`, `ZK_ALLOC_PROMOTE_BYTES`, `ZK_ALLOC_THP`,
//! `ZK_ALLOC_SMALL`, `ZK_ALLOC_CHECK` and `ZK_ALLOC_VERBOSE` once, when it
//! initialises (no later than the first phase): set them in the process's
//! environment, not with `std::env::set_var` from the program.
//!
//! # Linking
//!
//! By default the crate links the installed `libzkalloc.so` (pkg-config
//! `zkalloc`, which brings Debian's jemalloc). With the `bundled` feature it
//! compiles zkalloc's C core into the crate against a prefixed static
//! jemalloc (tikv-jemallocator's `_rjem_` build), so a binary that already
//! carries that jemalloc keeps one jemalloc instance. See README.md.

#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, CStr};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

mod ffi {
    use std::ffi::{c_char, c_int, c_void};


    extern "C" {
        pub fn zk_begin_phase() -> c_int;
        pub fn zk_end_phase() -> c_int;
        pub fn zk_phase_active() -> bool;
        pub fn zk_phase_epoch() -> u64;
        pub fn zk_mallocx(size: usize, flags: c_int) -> *mut c_void;
        pub fn zk_rallocx(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void;
        pub fn zk_sdallocx(p: *mut c_void, size: usize, flags: c_int);
        pub fn zk_owns(p: *const c_void) -> bool;
        pub fn zk_stats_get(out: *mut super::Stats) -> c_int;
        pub fn zk_mallctl(
            name: *const c_char,
            oldp: *mut c_void,
            oldlenp: *mut usize,
            newp: *mut c_void,
            newlen: usize,
        ) -> c_int;
    }
}

const EBUSY: c_int = 16;
/// jemalloc's MALLOCX_ZERO.
const MALLOCX_ZERO: c_int = 0x40;
/// The alignment jemalloc gives every block of at least this size without
/// being asked (its quantum on x86_64 and aarch64).
const MIN_ALIGN: usize = 16;

/// MALLOCX_LG_ALIGN(log2 align) when the layout needs more than jemalloc
/// gives by default, else 0 (as tikv-jemallocator decides).
#[inline(always)]
fn align_flags(align: usize, size: usize) -> c_int {
    if align <= MIN_ALIGN && align <= size {
        0
    } else {
        align.trailing_zeros() as c_int
    }
}

/// The global allocator: `#[global_allocator] static A: ZkAllocator = ZkAllocator;`
///
/// Every call goes to zkalloc's jemalloc-style entry points: `alloc` to
/// `zk_mallocx`, `dealloc` to the sized `zk_sdallocx`, `realloc` to
/// `zk_rallocx`, `alloc_zeroed` to `zk_mallocx(.., MALLOCX_ZERO)` (fresh
/// phase pages are known to be zero and are not cleared again).
#[derive(Debug, Default, Clone, Copy)]
pub struct ZkAllocator;

unsafe impl GlobalAlloc for ZkAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let flags = align_flags(layout.align(), layout.size());
        // SAFETY: size > 0 by GlobalAlloc's contract; flags hold only an
        // alignment.
        unsafe { ffi::zk_mallocx(layout.size(), flags).cast() }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let flags = align_flags(layout.align(), layout.size()) | MALLOCX_ZERO;
        // SAFETY: as alloc.
        unsafe { ffi::zk_mallocx(layout.size(), flags).cast() }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let flags = align_flags(layout.align(), layout.size());
        // SAFETY: ptr came from this allocator with this layout.
        unsafe { ffi::zk_sdallocx(ptr.cast(), layout.size(), flags) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let flags = align_flags(layout.align(), new_size);
        // SAFETY: ptr came from this allocator; new_size > 0. On failure
        // zk_rallocx returns NULL and leaves ptr untouched, as required.
        unsafe { ffi::zk_rallocx(ptr.cast(), new_size, flags).cast() }
    }
}

// ------------------------------------------------------------------ phases

/// [`try_begin_phase`]'s error: a phase is already active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseBusy;

impl fmt::Display for PhaseBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a zkalloc phase is already active (phases do not nest)")
    }
}

impl std::error::Error for PhaseBusy {}

/// Starts a phase: earlier phases' memory is discarded (its pages stay
/// resident and are reused). Panics if a phase is already active, as the
/// original bump allocator does; nothing changes in that case. Use
/// [`phase`] or [`PhaseGuard`] to end the phase on every way out, and
/// [`try_begin_phase`] for an error instead of a panic.
pub fn begin_phase() {
    if try_begin_phase().is_err() {
        panic!("zkalloc::begin_phase() called while a phase is active: phases must not nest (phase() and PhaseGuard join the active phase instead)");
    }
}

/// Starts a phase, or returns [`PhaseBusy`] (and changes nothing) if one is
/// active.
pub fn try_begin_phase() -> Result<(), PhaseBusy> {
    // SAFETY: no preconditions beyond the documented phase contract.
    match unsafe { ffi::zk_begin_phase() } {
        0 => Ok(()),
        EBUSY => Err(PhaseBusy),
        rc => unreachable!("zk_begin_phase returned {rc}"),
    }
}

/// Ends the active phase (idempotent). Phase memory stays valid, and may be
/// freed, until the next [`begin_phase`].
pub fn end_phase() {
    // SAFETY: always safe; returns 0.
    unsafe { ffi::zk_end_phase() };
}

/// True between [`begin_phase`] and [`end_phase`].
pub fn phase_active() -> bool {
    // SAFETY: a plain read.
    unsafe { ffi::zk_phase_active() }
}

/// Phases begun so far in this process.
pub fn phase_epoch() -> u64 {
    // SAFETY: a plain read.
    unsafe { ffi::zk_phase_epoch() }
}

/// Ends the phase it began when dropped, on return and on panic unwinding.
///
/// If a phase was already active when the guard was made, the guard joins
/// it and does not end it (like the C `ZK_PHASE` block).
#[must_use = "the phase ends when the guard is dropped"]
#[derive(Debug)]
pub struct PhaseGuard {
    began: bool,
}

impl PhaseGuard {
    /// Begins a phase, or joins the active one.
    pub fn new() -> Self {
        PhaseGuard {
            began: try_begin_phase().is_ok(),
        }
    }

    /// True if this guard began the phase (and will end it), false if it
    /// joined one already active.
    pub fn began(&self) -> bool {
        self.began
    }
}

impl Default for PhaseGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if self.began {
            end_phase();
        }
    }
}

/// Runs `f` inside a phase, ended when `f` returns or unwinds. Called inside
/// an active phase, `f` runs in that phase, which stays active afterwards.
pub fn phase<R, F: FnOnce() -> R>(f: F) -> R {
    let _guard = PhaseGuard::new();
    f()
}

/// True iff `p` points into zkalloc's phase region, i.e. is phase memory
/// (valid only until the next [`begin_phase`]). An address test.
pub fn owns<T: ?Sized>(p: *const T) -> bool {
    // SAFETY: zk_owns only compares the address.
    unsafe { ffi::zk_owns(p.cast()) }
}

// ------------------------------------------------------------------- stats

/// A snapshot of zkalloc's counters: `zk_stats_t` of include/zkalloc.h
/// (version 2), filled by the library itself. Fields are only ever appended,
/// so a version 1 library leaves the version 2 fields zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// In: the size of this struct (set by [`stats`]).
    size: usize,
    /// `ZK_STATS_VERSION` of the library.
    pub version: u32,
    /// The phase region could be reserved (else phases run on plain jemalloc).
    pub region_reserved: bool,
    pub phase_active: bool,
    /// Phases begun.
    pub epoch: u64,
    /// Bytes of address space per thread slab.
    pub slab_size: usize,
    /// Slabs in the region (threads that can hold phase memory at once).
    pub nslabs: u32,
    /// Slabs held by live threads.
    pub slabs_in_use: u32,
    /// Phase slab bytes resident now (never returned to the OS).
    pub resident_bytes: usize,
    /// The most resident bytes of one slab.
    pub max_slab_resident: usize,
    /// In-phase large requests that ordinary memory served instead.
    pub overflow_count: u64,
    pub overflow_bytes: u64,
    pub arenas_created: u64,
    pub arenas_destroyed: u64,
    /// Recycled bytes the extent hooks cleared for zeroed requests.
    pub hook_zeroed_bytes: u64,
    /// With `ZK_ALLOC_SMALL=resident`: bytes of its arenas resident now.
    pub small_resident_bytes: usize,
    /// Small requests those arenas refused.
    pub small_overflow_count: u64,
    // The fields below are 0 from a version 1 library.
    /// Times a thread found no free slab and shared another thread's arena.
    pub shared_count: u64,
    /// Phase arenas emptied by begin_phase.
    pub arenas_reset: u64,
    /// Phase-decay trims, and the bytes they gave back to the OS.
    pub trims: u64,
    pub trimmed_bytes: u64,
    /// How long the last begin_phase took, in nanoseconds.
    pub begin_ns_last: u64,
    /// Bytes of the phase regions made writable, and their address space.
    pub committed_bytes: usize,
    pub reserved_bytes: usize,
    /// The largest single phase block a slab can hold (0 before the first
    /// phase).
    pub max_block: usize,
}

/// The library's counters now.
pub fn stats() -> Stats {
    let mut s = Stats {
        size: std::mem::size_of::<Stats>(),
        ..Stats::default()
    };
    // SAFETY: s is a valid, writable zk_stats_t of s.size bytes.
    let rc = unsafe { ffi::zk_stats_get(&mut s) };
    assert_eq!(rc, 0, "zk_stats_get failed");
    s
}

// The library's overflow counters only grow; reset_overflow_stats() moves
// this baseline instead.
static OVERFLOW_BASE_COUNT: AtomicU64 = AtomicU64::new(0);
static OVERFLOW_BASE_BYTES: AtomicU64 = AtomicU64::new(0);

fn mallctl_read<T: Copy + Default>(name: &CStr) -> T {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>();
    // SAFETY: v is a T of len bytes; a read-only name takes no new value.
    let rc = unsafe {
        ffi::zk_mallctl(
            name.as_ptr(),
            (&mut v as *mut T).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0, "zk_mallctl({name:?}) failed with {rc}");
    v
}

/// `(count, bytes)` of in-phase large requests that ordinary memory served
/// because phase memory could not (slab full, more threads than slabs),
/// since the start or the last [`reset_overflow_stats`].
pub fn overflow_stats() -> (usize, usize) {
    let c: u64 = mallctl_read(c"zk.stats.overflow_count");
    let b: u64 = mallctl_read(c"zk.stats.overflow_bytes");
    (
        c.wrapping_sub(OVERFLOW_BASE_COUNT.load(Ordering::Relaxed)) as usize,
        b.wrapping_sub(OVERFLOW_BASE_BYTES.load(Ordering::Relaxed)) as usize,
    )
}

/// Restarts [`overflow_stats`] from zero ([`stats`] keeps the totals).
pub fn reset_overflow_stats() {
    let c: u64 = mallctl_read(c"zk.stats.overflow_count");
    let b: u64 = mallctl_read(c"zk.stats.overflow_bytes");
    OVERFLOW_BASE_COUNT.store(c, Ordering::Relaxed);
    OVERFLOW_BASE_BYTES.store(b, Ordering::Relaxed);
}

/// Bytes of address space per thread slab (`ZK_ALLOC_SLAB_GB`).
pub fn slab_size() -> usize {
    mallctl_read(c"zk.opt.slab_size")
}

/// In-phase requests of at least this many bytes are phase memory
/// (`ZK_ALLOC_MIN_BYTES`).
pub fn min_arena_bytes() -> usize {
    mallctl_read(c"zk.opt.min_bytes")
}

/// Reads the options now (otherwise the first phase or stats call does).
/// Kept for code written against the original bump allocator.
pub fn init() {
    let _ = slab_size();
}
