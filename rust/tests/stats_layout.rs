//! zkalloc::Stats is zk_stats_t of include/zkalloc.h, field for field: the
//! library writes into it directly (zk_stats_get copies `size` bytes). Three
//! views must agree:
//! * the header: its field names, in order, are Stats's;
//! * the C compiler: every field's offset and size, and sizeof(zk_stats_t),
//!   equal Rust's (a C program built here with `cc` prints them);
//! * the library: every field has a zk.stats.<name> of exactly that size,
//!   with the value stats() returned.

use std::ffi::{c_char, c_int, c_void, CString};
use std::mem::{offset_of, size_of, size_of_val};
use std::path::PathBuf;
use std::process::Command;

use zkalloc::{Stats, ZkAllocator};

#[global_allocator]
static A: ZkAllocator = ZkAllocator;

mod common;
use common::lock;

extern "C" {
    fn zk_mallctl(
        name: *const c_char,
        oldp: *mut c_void,
        oldlenp: *mut usize,
        newp: *mut c_void,
        newlen: usize,
    ) -> c_int;
}

/// (name, offset, size, value as u64 from this snapshot) of every public
/// field, in declaration order.
macro_rules! fields {
    ($s:ident: $($f:ident),* $(,)?) => {
        vec![$((stringify!($f), offset_of!(Stats, $f), size_of_val(&$s.$f), $s.$f as u64)),*]
    };
}

fn rust_fields(s: &Stats) -> Vec<(&'static str, usize, usize, u64)> {
    fields!(s: version, region_reserved, phase_active, epoch, slab_size, nslabs,
        slabs_in_use, resident_bytes, max_slab_resident, overflow_count,
        overflow_bytes, arenas_created, arenas_destroyed, hook_zeroed_bytes,
        small_resident_bytes, small_overflow_count, shared_count, arenas_reset,
        trims, trimmed_bytes, begin_ns_last, committed_bytes, reserved_bytes,
        max_block, kept_blocks, kept_bytes, live_bytes, metadata_bytes,
        free_bytes, top_bytes, binds, bind_failures, madvise_failures,
        mprotect_failures, commit_failures, quarantined_bytes, pool_degraded,
        zeroed_memset_bytes, dalloc_refused)
}

fn include_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include")
}

/// The field names of `typedef struct zk_stats { ... } zk_stats_t;`.
fn header_fields() -> Vec<String> {
    let h = std::fs::read_to_string(include_dir().join("zkalloc.h")).unwrap();
    let start = h.find("typedef struct zk_stats {").expect("no zk_stats_t");
    let body = &h[start..start + h[start..].find("} zk_stats_t;").unwrap()];
    let mut names = Vec::new();
    let mut in_comment = false;
    for line in body.lines().skip(1) {
        let mut code = String::new();
        let mut rest = line;
        // Drop /* ... */ comments, which may span lines.
        loop {
            if in_comment {
                match rest.find("*/") {
                    Some(i) => {
                        rest = &rest[i + 2..];
                        in_comment = false;
                    }
                    None => break,
                }
            } else {
                match rest.find("/*") {
                    Some(i) => {
                        code.push_str(&rest[..i]);
                        rest = &rest[i + 2..];
                        in_comment = true;
                    }
                    None => {
                        code.push_str(rest);
                        break;
                    }
                }
            }
        }
        if let Some(decl) = code.trim().strip_suffix(';') {
            names.push(decl.split_whitespace().last().unwrap().to_string());
        }
    }
    names
}

#[test]
fn field_names_match_the_header() {
    let s = Stats::default();
    let mut rust: Vec<String> = vec!["size".into()];
    rust.extend(rust_fields(&s).iter().map(|f| f.0.to_string()));
    assert_eq!(header_fields(), rust);
}

#[test]
fn offsets_and_sizes_match_the_c_compiler() {
    let s = Stats::default();
    let fields = rust_fields(&s);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stats_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <zkalloc.h>\n\
         #define F(f) printf(#f \" %zu %zu\\n\", offsetof(zk_stats_t, f), sizeof(((zk_stats_t *)0)->f))\n\
         int main(void) {\n\tprintf(\"sizeof %zu\\n\", sizeof(zk_stats_t));\n\tF(size);\n",
    );
    for (name, ..) in &fields {
        c.push_str(&format!("\tF({name});\n"));
    }
    c.push_str("\treturn 0;\n}\n");
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .arg(format!("-I{}", include_dir().display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{cc}`: {e}"));
    assert!(st.success(), "`{cc}` failed on {}", src.display());
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut want = vec![
        format!("sizeof {}", size_of::<Stats>()),
        format!("size 0 {}", size_of::<usize>()),
    ];
    want.extend(
        fields
            .iter()
            .map(|(n, off, sz, _)| format!("{n} {off} {sz}")),
    );
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want, "C (left) and Rust (right) disagree");
}

#[test]
fn every_field_reads_the_same_through_mallctl() {
    let _l = lock();
    // Some activity first, so that most counters are not 0.
    zkalloc::phase(|| {
        let v = vec![1u8; 8 << 20];
        std::hint::black_box(&v);
    });
    let s = zkalloc::stats();
    assert_eq!(s.version, 3);
    // The pool was used (its high water; what it holds allocated may be 0:
    // arena metadata is mapped apart from it).
    assert!(s.epoch >= 1 && s.region_reserved && s.top_bytes > 0);
    let names: Vec<(CString, usize, u64)> = rust_fields(&s)
        .iter()
        .map(|(n, _, sz, v)| (CString::new(format!("zk.stats.{n}")).unwrap(), *sz, *v))
        .collect();
    // No allocation from here on (pool counters stay put; the names are
    // made above, outside any phase anyway).
    let mut got = Vec::with_capacity(names.len());
    for (name, size, _) in &names {
        let mut buf = [0u8; 8];
        let mut len = *size;
        // SAFETY: buf has room for `len` <= 8 bytes; a read takes no new value.
        let rc = unsafe {
            zk_mallctl(
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        got.push((rc, u64::from_ne_bytes(buf)));
    }
    for ((name, _, want), (rc, v)) in names.iter().zip(got) {
        assert_eq!(rc, 0, "{name:?}: zk_mallctl with the field's size failed");
        assert_eq!(v, *want, "{name:?}: mallctl and stats() disagree");
    }
}
