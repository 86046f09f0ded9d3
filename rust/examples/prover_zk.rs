//! The example prover on zkalloc: one phase per proof.

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

#[path = "common/workload.rs"]
mod workload;

fn main() {
    workload::main_with(workload::Allocator {
        label: "zkalloc",
        begin: zkalloc::begin_phase,
        end: zkalloc::end_phase,
        extra: || {
            let (c, b) = zkalloc::overflow_stats();
            let s = zkalloc::stats();
            let mib = |x: u64| x as f64 / (1 << 20) as f64;
            format!(
                " overflow_count={c} overflow_bytes={b} phase_resident_mib={:.1} kept_mib={:.1}",
                mib(s.resident_bytes as u64),
                mib(s.kept_bytes)
            )
        },
    });
}
