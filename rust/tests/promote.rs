//! ZK_ALLOC_PROMOTE_BYTES through the Rust realloc path: a Vec that starts
//! small inside a phase and grows by push past the threshold moves into
//! phase memory (without the variable it stays ordinary: tests/phase.rs).
//! Options are read once, by the first phase at the latest, so it runs in a
//! child process (this binary again, running the ignored `child_promote`).

use std::process::Command;

use zkalloc::ZkAllocator;

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

const MIB: usize = 1 << 20;

fn run_child(promote: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child_promote",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ZKALLOC_TEST_CHILD", "1")
    .env_remove("ZK_ALLOC_PROMOTE_BYTES");
    if let Some(p) = promote {
        cmd.env("ZK_ALLOC_PROMOTE_BYTES", p);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn growing_vec_is_promoted_past_the_threshold() {
    let out = run_child(Some("1M"));
    assert!(out.contains("child_promote: phase memory"), "{out}");
}

#[test]
fn growing_vec_stays_ordinary_without_promotion() {
    let out = run_child(None);
    assert!(out.contains("child_promote: ordinary memory"), "{out}");
}

#[test]
#[ignore = "run by the tests above in a child process"]
fn child_promote() {
    assert_eq!(
        std::env::var("ZKALLOC_TEST_CHILD").as_deref(),
        Ok("1"),
        "run me through the parent tests"
    );
    let (owned, ok) = zkalloc::phase(|| {
        let mut v: Vec<u32> = Vec::new();
        for i in 0..(16 * MIB / 4) as u32 {
            v.push(i.wrapping_mul(2654435761));
        }
        let ok = v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u32).wrapping_mul(2654435761));
        (zkalloc::owns(v.as_ptr()), ok)
    });
    assert!(ok, "data lost while growing");
    println!(
        "child_promote: {}",
        if owned {
            "phase memory"
        } else {
            "ordinary memory"
        }
    );
}
