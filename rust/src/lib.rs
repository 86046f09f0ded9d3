//! Resident memory across proofs for Rust provers: a global allocator over
//! zkalloc.
//!
//! ```
//! use std::sync::OnceLock;
//! use zkalloc::ZkAllocator; // was: use zk_alloc::ZkAllocator;
//!
//! #[global_allocator]
//! static ALLOC: ZkAllocator = ZkAllocator;
//!
//! // Built lazily inside the first proof and kept: valid for good.
//! static TWIDDLES: OnceLock<Vec<u32>> = OnceLock::new();
//!
//! fn prove(input: &[u32]) -> Vec<u32> {
//!     let tw = TWIDDLES.get_or_init(|| (0..1u32 << 16).map(|i| i.wrapping_mul(31)).collect());
//!     // 4 MiB, freed at the end of the proof: the next proof reuses its pages.
//!     let lde: Vec<u32> = input.iter().zip(tw).map(|(x, w)| x.wrapping_mul(*w)).collect();
//!     lde[..8].to_vec()
//! }
//!
//! fn main() {
//!     let input = vec![7u32; 1 << 20];
//!     let mut kept = Vec::new();
//!     for _ in 0..3 {
//!         kept.push(zkalloc::phase(|| prove(&input))); // one phase per proof
//!     }
//!     assert!(kept.iter().all(|p| *p == kept[0]));
//! }
//! ```
//!
//! While a phase (one proof) is active, a thread's allocations come from
//! zkalloc's jemalloc arenas over one reserved region, the pool; a freed
//! block's pages go back to the pool still resident, and the next proof's
//! allocations take them again, whichever thread makes them: warm proofs
//! take (almost) no page faults. Outside phases, and in a program that never
//! begins one, plain jemalloc serves everything.
//!
//! # Safety
//!
//! [`phase`] is as safe as any allocator: every block, made in a phase or
//! not, is valid until it is dropped. [`begin_phase`] reclaims nothing, so
//! whatever outlives a proof (a `static`/`OnceLock` cache filled lazily
//! inside the first proof, a thread pool's scratch, a result returned from
//! the phase) stays valid and in place, and its pages are never handed out
//! twice. Such blocks cost the memory they occupy, nothing else;
//! [`Stats::kept_blocks`] and [`Stats::kept_bytes`] count them at each begin.
//!
//! The one rule: one phase at a time. [`phase`] and [`PhaseGuard`] join a
//! phase that is already active; [`begin_phase`] panics on one, and
//! [`try_begin_phase`] returns [`PhaseBusy`]. A phase may begin while other
//! threads allocate and free.
//!
//! Nothing aborts: when the pool cannot serve a request (region full), a
//! mapping of its own serves it and [`overflow_stats`] counts it. Checked
//! mode (`ZK_ALLOC_CHECK=1`, for tests) reports a use after free or a double
//! free of pool memory and aborts.
//!
//! # Configuration
//!
//! The C library reads `ZK_ALLOC_REGION_GB` (address space of the pool),
//! `ZK_ALLOC_ARENAS`, `ZK_ALLOC_MIN_BYTES` (0, the default: every in-phase
//! request comes from the pool; N: only requests of at least N bytes),
//! `ZK_ALLOC_TRIM_PHASES`, `ZK_ALLOC_THP`, `ZK_ALLOC_CHECK` and
//! `ZK_ALLOC_VERBOSE` once, when it initialises (no later than the first
//! phase): set them in the process's environment, not with
//! `std::env::set_var` from the program. The variables of 0.1
//! (`ZK_ALLOC_SLAB_GB`, `ZK_ALLOC_SLABS`, `ZK_ALLOC_SHARED_BYTES`,
//! `ZK_ALLOC_PROMOTE_BYTES`, `ZK_ALLOC_SMALL`) are ignored with a warning.
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
/// `zk_rallocx`, `alloc_zeroed` to `zk_mallocx(.., MALLOCX_ZERO)` (pool
/// pages never written since they were fresh or given back are known to be
/// zero and are not cleared again).
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

/// Starts a phase (one proof): from now on this process's allocations come
/// from the pool. Frees nothing and moves nothing: every block stays valid
/// until dropped. Gives back to the kernel free pool pages beyond the recent
/// proofs' peak that none of the last `ZK_ALLOC_TRIM_PHASES` phases used.
/// Panics if a phase is already active, as the original bump allocator
/// does; nothing changes in that case. Use [`phase`] or [`PhaseGuard`] to end the phase on every way out,
/// and [`try_begin_phase`] for an error instead of a panic.
pub fn begin_phase() {
    if try_begin_phase().is_err() {
        panic!("zkalloc::begin_phase() called while a phase is active: phases must not nest (phase() and PhaseGuard join the active phase instead)");
    }
}

/// Starts a phase, or returns [`PhaseBusy`] (and changes nothing) if one is
/// active.
pub fn try_begin_phase() -> Result<(), PhaseBusy> {
    // SAFETY: zk_begin_phase has no preconditions (it may run while other
    // threads allocate and free).
    match unsafe { ffi::zk_begin_phase() } {
        0 => Ok(()),
        EBUSY => Err(PhaseBusy),
        rc => unreachable!("zk_begin_phase returned {rc}"),
    }
}

/// Ends the active phase (idempotent): threads go back to jemalloc's own
/// arenas. Blocks made in the phase stay valid until dropped.
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
/// Whatever `f` allocates and keeps stays valid after the phase.
pub fn phase<R, F: FnOnce() -> R>(f: F) -> R {
    let _guard = PhaseGuard::new();
    f()
}

/// True iff `p` points into zkalloc's pool region: an address test that says
/// where a block's pages come from, nothing about its lifetime.
pub fn owns<T: ?Sized>(p: *const T) -> bool {
    // SAFETY: zk_owns only compares the address.
    unsafe { ffi::zk_owns(p.cast()) }
}

// ------------------------------------------------------------------- stats

/// A snapshot of zkalloc's counters: `zk_stats_t` of include/zkalloc.h
/// (version 3) field for field, filled by the library itself
/// (tests/stats_layout.rs checks the layout against the C header). Fields
/// are only ever appended; a field marked "unused" belonged to 0.1's slabs
/// and reads 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// In: the size of this struct (set by [`stats`]).
    size: usize,
    /// `ZK_STATS_VERSION` of the library.
    pub version: u32,
    /// The pool's region could be reserved (else phases run on plain
    /// jemalloc).
    pub region_reserved: bool,
    pub phase_active: bool,
    /// Phases begun.
    pub epoch: u64,
    /// Unused (0).
    pub slab_size: usize,
    /// zkalloc arenas that threads take in turn (`ZK_ALLOC_ARENAS`).
    pub nslabs: u32,
    /// Of which created so far.
    pub slabs_in_use: u32,
    /// Pool bytes resident now.
    pub resident_bytes: usize,
    /// Unused (0).
    pub max_slab_resident: usize,
    /// Requests of zkalloc's arenas the pool could not serve (region full, a
    /// refused commit, no region): a mapping of their own served them.
    pub overflow_count: u64,
    pub overflow_bytes: u64,
    /// zkalloc arenas created.
    pub arenas_created: u64,
    /// Unused (0): arenas live for good.
    pub arenas_destroyed: u64,
    /// Every byte zkalloc cleared (zeroed requests on pages that held data).
    pub hook_zeroed_bytes: u64,
    /// Unused (0).
    pub small_resident_bytes: usize,
    /// Unused (0).
    pub small_overflow_count: u64,
    // Version 2.
    /// Unused (0).
    pub shared_count: u64,
    /// Unused (0): nothing is reset.
    pub arenas_reset: u64,
    /// Ranges the decay gave back to the kernel, and their resident bytes.
    pub trims: u64,
    pub trimmed_bytes: u64,
    /// How long the last begin took, in nanoseconds.
    pub begin_ns_last: u64,
    /// Region bytes made writable (resident only where touched).
    pub committed_bytes: usize,
    /// Address space: region + bookkeeping.
    pub reserved_bytes: usize,
    /// The largest block the pool can hold (the region's size); 0 before it
    /// is reserved.
    pub max_block: usize,
    // Version 3.
    /// At the last begin: extents still allocated from the pool (a large
    /// block, or a jemalloc slab of small ones), made earlier and kept. They
    /// stay valid and in place.
    pub kept_blocks: u64,
    pub kept_bytes: u64,
    /// Pool bytes allocated now.
    pub live_bytes: u64,
    /// jemalloc's metadata for zkalloc's arenas: mapped apart from the pool
    /// (not in `live_bytes`), kept for the process.
    pub metadata_bytes: u64,
    /// Pool bytes free now (resident or not).
    pub free_bytes: usize,
    /// Pool bytes ever handed out (high water).
    pub top_bytes: usize,
    /// Threads bound to an arena at a begin, and those jemalloc refused.
    pub binds: u64,
    pub bind_failures: u64,
    /// Refused madvise, mprotect and commit calls.
    pub madvise_failures: u64,
    pub mprotect_failures: u64,
    pub commit_failures: u64,
    /// Checked mode: freed bytes held out of reuse.
    pub quarantined_bytes: usize,
    /// A fork caught the pool mid-update in another thread: this process
    /// gets fresh pages only.
    pub pool_degraded: bool,
    /// Of `hook_zeroed_bytes`, cleared with memset (resident pages; the
    /// others were given back instead).
    pub zeroed_memset_bytes: u64,
    /// Freed ranges jemalloc had to keep (a piece above them was in use).
    pub dalloc_refused: u64,
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

/// `(count, bytes)` of in-phase requests the pool could not serve (region
/// full), served by mappings of their own, since the start or the last
/// [`reset_overflow_stats`].
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

/// Bytes of address space of the pool's region (`ZK_ALLOC_REGION_GB`).
pub fn region_size() -> usize {
    mallctl_read(c"zk.opt.region_size")
}

/// The original bump allocator's name for the phase memory a thread could
/// use; 0.2 has one pool for all threads: [`region_size`].
pub fn slab_size() -> usize {
    region_size()
}

/// In a phase, requests of at least this many bytes come from the pool
/// (`ZK_ALLOC_MIN_BYTES`; 0, the default: every request).
pub fn min_arena_bytes() -> usize {
    mallctl_read(c"zk.opt.min_bytes")
}

/// Reads the options now (otherwise the first phase or stats call does).
/// Kept for code written against the original bump allocator.
pub fn init() {
    let _ = region_size();
}
