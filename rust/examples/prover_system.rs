//! The example prover on Rust's System allocator (the process's malloc:
//! glibc unless something interposes it; the RESULT line names it).

use std::alloc::System;

#[global_allocator]
static A: System = System;

#[path = "common/workload.rs"]
mod workload;

fn main() {
    workload::main_with(workload::Allocator {
        label: "system",
        begin: || {},
        end: || {},
        extra: String::new,
    });
}
