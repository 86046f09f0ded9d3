//! The example prover on the seed algorithm (common/bump.rs: bump slabs,
//! no-op free, reset per phase), measured in the same run as zkalloc.

#[path = "common/bump.rs"]
mod bump;
#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static A: bump::BumpAllocator = bump::BumpAllocator;

fn main() {
    workload::main_with(workload::Allocator {
        label: "bump",
        begin: bump::begin_phase,
        end: bump::end_phase,
        extra: || {
            use std::sync::atomic::Ordering::Relaxed;
            format!(
                " overflow_count={} overflow_bytes={}",
                bump::OVERFLOW_COUNT.load(Relaxed),
                bump::OVERFLOW_BYTES.load(Relaxed)
            )
        },
    });
}
