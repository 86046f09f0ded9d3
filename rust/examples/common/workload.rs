//! An FFT/Merkle-shaped proof (Plonky3-like, smaller than tests/bench/prover.c)
//! to compare allocators on the same work. Per proof:
//!   * a main trace (2^log_n rows x width u32 BabyBear elements) and an aux
//!     trace (width/4 columns), each `vec![0; 2 * rows * width]` (zeroed
//!     allocation), first half filled, then a low-degree extension in place
//!     by strided butterfly passes over whole rows, one pass per level;
//!   * a Merkle tree over each extended trace (leaf digests, halving layers);
//!   * a quotient vector computed by tasks that each allocate and free a
//!     64 KiB temporary;
//!   * FRI: the first input collected per thread by push-doubling (the
//!     `collect()` pattern) and concatenated, then fold rounds, each a new
//!     vector and its Merkle tree, the previous round freed;
//!   * per-thread hash maps of 16 B - 4 KiB records (bookkeeping), half of
//!     them replaced during the proof.
//!
//! Threads: a persistent pool of `--threads` (std::thread::scope around all
//! proofs, like a rayon pool), stages split into tasks.
//! Every proof's checksum covers all of it and is the same for every
//! allocator; the program prints one line per proof and a RESULT line.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Instant;

// --------------------------------------------------------------- field

/// BabyBear: p = 15 * 2^27 + 1, elements in Montgomery form (R = 2^32).
const P: u32 = 2013265921;
const P_NEG_INV: u32 = 0x77ff_ffff; // -p^-1 mod 2^32

#[inline(always)]
fn f_add(a: u32, b: u32) -> u32 {
    let s = a.wrapping_add(b);
    s.min(s.wrapping_sub(P))
}

#[inline(always)]
fn f_sub(a: u32, b: u32) -> u32 {
    let d = a.wrapping_sub(b);
    d.min(d.wrapping_add(P))
}

#[inline(always)]
fn f_mul(a: u32, b: u32) -> u32 {
    let t = a as u64 * b as u64;
    let m = (t as u32).wrapping_mul(P_NEG_INV);
    let u = ((t + m as u64 * P as u64) >> 32) as u32;
    u.min(u.wrapping_sub(P))
}

fn pow_plain(mut b: u64, mut e: u64) -> u64 {
    let mut r = 1u64;
    b %= P as u64;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % P as u64;
        }
        b = b * b % P as u64;
        e >>= 1;
    }
    r
}

fn to_mont(x: u64) -> u32 {
    ((x << 32) % P as u64) as u32
}

#[inline(always)]
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[inline(always)]
fn f_rand(seed: u64, a: u64, b: u64) -> u32 {
    (mix64(seed ^ mix64(a.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(b))) % P as u64) as u32
}

// -------------------------------------------------------------- digest

/// Not cryptographic: 8 lanes of multiply-rotate over the input words.
fn digest(x: &[u32]) -> [u32; 8] {
    let mut h = [0u32; 8];
    for (l, v) in h.iter_mut().enumerate() {
        *v = 0x6a09_e667u32.wrapping_add((l as u32).wrapping_mul(0x3c6e_f372)) ^ x.len() as u32;
    }
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            h[l] = ((h[l] ^ c[l]).wrapping_mul(0x9e37_79b1)).rotate_left(13);
        }
    }
    for (j, &w) in chunks.remainder().iter().enumerate() {
        h[j] = ((h[j] ^ w).wrapping_mul(0x85eb_ca6b)).rotate_left(11);
    }
    for _ in 0..2 {
        for l in 0..8 {
            h[l] = (h[l] ^ h[(l + 1) & 7].wrapping_mul(0xc2b2_ae35)).rotate_left(7);
        }
    }
    h
}

fn root_word(d: &[u32; 8]) -> u64 {
    d.iter().fold(0u64, |s, &w| mix64(s ^ w as u64))
}

// ----------------------------------------------------------- parallel

/// A persistent pool, like a prover's rayon pool: `threads - 1` workers
/// spawned once (std::thread::scope around all proofs) plus the calling
/// thread. A stage is `ntasks` tasks claimed from a counter; after each task
/// the thread adds a few bookkeeping records to its own map.
pub struct Pool {
    threads: usize,
    go: Barrier,
    done: Barrier,
    job: Mutex<Option<JobRef>>,
    ntasks: AtomicUsize,
    next: AtomicUsize,
    quit: AtomicBool,
    book: Mutex<Option<&'static Book>>,
}

type JobRef = &'static (dyn Fn(usize) + Sync);

impl Pool {
    fn new(threads: usize) -> Pool {
        Pool {
            threads,
            go: Barrier::new(threads),
            done: Barrier::new(threads),
            job: Mutex::new(None),
            ntasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            book: Mutex::new(None),
        }
    }

    fn drain(&self, tid: usize) {
        let job = self.job.lock().unwrap().expect("no job");
        let book = *self.book.lock().unwrap();
        let n = self.ntasks.load(Ordering::Acquire);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            job(i);
            if let Some(b) = book {
                b.records(tid);
            }
        }
    }

    fn worker(&self, tid: usize) {
        loop {
            self.go.wait();
            if self.quit.load(Ordering::Acquire) {
                return;
            }
            self.drain(tid);
            self.done.wait();
        }
    }

    /// Runs f(0..ntasks) on all threads; returns when every task is done.
    fn run(&self, ntasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if ntasks == 0 {
            return;
        }
        // SAFETY: the reference is only used between the two barriers
        // below, and run() does not return before the second one, so it
        // never outlives f.
        let f: JobRef = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), JobRef>(f) };
        *self.job.lock().unwrap() = Some(f);
        self.ntasks.store(ntasks, Ordering::Release);
        self.next.store(0, Ordering::Release);
        self.go.wait();
        self.drain(0);
        self.done.wait();
        *self.job.lock().unwrap() = None;
    }

    fn stop(&self) {
        self.quit.store(true, Ordering::Release);
        self.go.wait();
    }

    /// f(i, item) over items, one task each.
    fn each<T: Send, F: Fn(usize, T) + Sync>(&self, items: Vec<T>, f: F) {
        let cells: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
        self.run(cells.len(), &|i| {
            let t = cells[i].lock().unwrap().take().unwrap();
            f(i, t)
        });
    }
}

// --------------------------------------------------------- bookkeeping

/// Per-thread maps of 16 B - 4 KiB records, like a tracing registry or a
/// prover's hash maps: keys collide, so about half of the records are
/// replaced (freed) during the proof, the rest at its end. Every record is
/// consumed once into a commutative sum, so the result does not depend on
/// which thread ran which task.
struct Book {
    maps: Vec<Mutex<HashMap<u32, Vec<u8>>>>,
    next: AtomicU64,
    limit: u64,
    per_task: u64,
    sum: AtomicU64,
    seed: u64,
}

fn consume(key: u32, r: &[u8]) -> u64 {
    mix64(r.iter().fold(key as u64, |a, &b| {
        a.wrapping_mul(31).wrapping_add(b as u64)
    }))
}

impl Book {
    fn new(threads: usize, limit: u64, seed: u64) -> Book {
        Book {
            maps: (0..threads).map(|_| Mutex::new(HashMap::new())).collect(),
            next: AtomicU64::new(0),
            limit,
            per_task: 8,
            sum: AtomicU64::new(0),
            seed,
        }
    }

    fn records(&self, tid: usize) {
        let mut map = self.maps[tid].lock().unwrap();
        for _ in 0..self.per_task {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            if id >= self.limit {
                return;
            }
            let h = mix64(id ^ self.seed ^ 0xabcdef);
            let lo = 16usize << (h % 9);
            let len = (lo + (h >> 8) as usize % lo).min(4096);
            let rec: Vec<u8> = (0..len)
                .map(|j| (h >> (8 * (j & 7))) as u8 ^ j as u8)
                .collect();
            let key = mix64(id % (self.limit / 2 + 1)) as u32;
            if let Some(old) = map.insert(key, rec) {
                self.sum.fetch_add(consume(key, &old), Ordering::Relaxed);
            }
        }
    }

    /// Consumes what is left; records the stages did not reach are made
    /// here so that every proof has `limit` of them.
    fn finish(&self) -> u64 {
        while self.next.load(Ordering::Relaxed) < self.limit {
            self.records(0);
        }
        for m in &self.maps {
            let m = std::mem::take(&mut *m.lock().unwrap());
            for (k, r) in m {
                self.sum.fetch_add(consume(k, &r), Ordering::Relaxed);
            }
        }
        self.sum.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------- LDE

const TASK_ROWS: usize = 256;

/// One butterfly per row pair (a[r], b[r]), twiddle tw[(i0 + r) * stride].
fn butterflies(a: &mut [u32], b: &mut [u32], i0: usize, width: usize, tw: &[u32], stride: usize) {
    for (r, (ra, rb)) in a
        .chunks_exact_mut(width)
        .zip(b.chunks_exact_mut(width))
        .enumerate()
    {
        let w = tw[(i0 + r) * stride];
        for (x, y) in ra.iter_mut().zip(rb.iter_mut()) {
            let (u, v) = (*x, *y);
            *x = f_add(u, v);
            *y = f_mul(f_sub(u, v), w);
        }
    }
}

/// Forward NTT over the rows of a row-major `rows x width` matrix, in place:
/// log2(rows) strided passes, each butterfly on two whole rows. A task covers
/// about 2 * TASK_ROWS rows: part of one block, or several small blocks.
fn ntt_rows(m: &mut [u32], rows: usize, width: usize, tw: &[u32], pool: &Pool) {
    let mut h = rows / 2;
    while h >= 1 {
        let stride = rows / (2 * h); // twiddle step for this level
        if h >= TASK_ROWS {
            let mut jobs = Vec::new();
            for block in m.chunks_mut(2 * h * width) {
                let (top, bot) = block.split_at_mut(h * width);
                let piece = TASK_ROWS * width;
                for (k, (a, b)) in top.chunks_mut(piece).zip(bot.chunks_mut(piece)).enumerate() {
                    jobs.push((a, b, k * TASK_ROWS));
                }
            }
            pool.each(jobs, |_, (a, b, i0)| {
                butterflies(a, b, i0, width, tw, stride)
            });
        } else {
            let jobs: Vec<_> = m.chunks_mut(2 * TASK_ROWS * width).collect();
            pool.each(jobs, |_, seg| {
                for block in seg.chunks_mut(2 * h * width) {
                    let (a, b) = block.split_at_mut(h * width);
                    butterflies(a, b, 0, width, tw, stride);
                }
            });
        }
        h /= 2;
    }
}

fn twiddles(rows: usize) -> Vec<u32> {
    let log = rows.trailing_zeros() as u64;
    let w = pow_plain(31, (P as u64 - 1) >> log);
    let mut tw = Vec::with_capacity((rows / 2).max(1));
    let mut x = 1u64;
    for _ in 0..(rows / 2).max(1) {
        tw.push(to_mont(x));
        x = x * w % P as u64;
    }
    tw
}

/// A trace of `n` rows, extended to 2n, LDE'd in place.
fn extended_trace(n: usize, width: usize, seed: u64, tw: &[u32], pool: &Pool) -> Vec<u32> {
    let rows = 2 * n;
    let mut t = vec![0u32; rows * width];
    let jobs: Vec<&mut [u32]> = t[..n * width].chunks_mut(TASK_ROWS * width).collect();
    pool.each(jobs, |k, chunk| {
        for (r, row) in chunk.chunks_exact_mut(width).enumerate() {
            let r = (k * TASK_ROWS + r) as u64;
            for (j, x) in row.iter_mut().enumerate() {
                *x = f_rand(seed, r, j as u64);
            }
        }
    });
    ntt_rows(&mut t, rows, width, tw, pool);
    t
}

// ------------------------------------------------------------- Merkle

struct Merkle {
    layers: Vec<Vec<[u32; 8]>>,
}

impl Merkle {
    fn build(m: &[u32], width: usize, pool: &Pool) -> Merkle {
        let rows = m.len() / width;
        let mut leaves = vec![[0u32; 8]; rows];
        let jobs: Vec<(&mut [[u32; 8]], &[u32])> = leaves
            .chunks_mut(TASK_ROWS)
            .zip(m.chunks(TASK_ROWS * width))
            .collect();
        pool.each(jobs, |_, (out, rows)| {
            for (d, row) in out.iter_mut().zip(rows.chunks_exact(width)) {
                *d = digest(row);
            }
        });
        let mut layers = vec![leaves];
        while layers.last().unwrap().len() > 1 {
            let prev = layers.last().unwrap();
            let mut next = vec![[0u32; 8]; prev.len() / 2];
            let hash_pairs = |out: &mut [[u32; 8]], inp: &[[u32; 8]]| {
                for (d, pair) in out.iter_mut().zip(inp.chunks_exact(2)) {
                    let mut buf = [0u32; 16];
                    buf[..8].copy_from_slice(&pair[0]);
                    buf[8..].copy_from_slice(&pair[1]);
                    *d = digest(&buf);
                }
            };
            if next.len() >= 8192 {
                let jobs: Vec<_> = next.chunks_mut(4096).zip(prev.chunks(8192)).collect();
                pool.each(jobs, |_, (o, i)| hash_pairs(o, i));
            } else {
                hash_pairs(&mut next, prev);
            }
            layers.push(next);
        }
        Merkle { layers }
    }

    fn root(&self) -> u64 {
        root_word(&self.layers.last().unwrap()[0])
    }
}

// -------------------------------------------------------------- proof

pub struct Params {
    pub log_n: u32,
    pub width: usize,
    pub threads: usize,
    pub small: usize, // bookkeeping records per proof
}

const QTASK_ROWS: usize = 2048;
const FRI_FINAL: usize = 64;

fn prove(p: &Params, pool: &Pool, seed: u64) -> u64 {
    let n = 1usize << p.log_n;
    let rows = 2 * n;
    let ps = mix64(seed + 0x1234);
    let mut ck = seed;

    let book = Book::new(pool.threads, p.small as u64, ps);
    // SAFETY: the pool's reference to book is removed below, before book
    // is dropped, and no stage runs in between.
    *pool.book.lock().unwrap() =
        Some(unsafe { std::mem::transmute::<&Book, &'static Book>(&book) });

    let tw = twiddles(rows);
    let aux_w = (p.width / 4).max(1);
    let main = extended_trace(n, p.width, ps, &tw, pool);
    let aux = extended_trace(n, aux_w, ps ^ 1, &tw, pool);
    let tm = Merkle::build(&main, p.width, pool);
    let am = Merkle::build(&aux, aux_w, pool);
    ck = mix64(ck ^ tm.root());
    ck = mix64(ck ^ am.root());

    // Quotient: 4 lanes per row, tasks with a 64 KiB temporary each.
    let mut q = vec![0u32; rows * 4];
    let alpha: Vec<u32> = (0..16).map(|l| f_rand(ps, 1, l)).collect();
    let jobs: Vec<_> = q.chunks_mut(QTASK_ROWS * 4).collect();
    let (w, main_ref, alpha_ref) = (p.width, &main, &alpha);
    pool.each(jobs, |k, out| {
        let mut tmp: Vec<u32> = vec![0; QTASK_ROWS * 8];
        let r0 = k * QTASK_ROWS;
        for (r, t) in tmp.chunks_exact_mut(8).enumerate().take(out.len() / 4) {
            let x = &main_ref[(r0 + r) * w..(r0 + r + 1) * w];
            let mut acc = [0u32; 16];
            for c in x.chunks_exact(16) {
                for l in 0..16 {
                    acc[l] = f_add(f_mul(acc[l], alpha_ref[l]), c[l]);
                }
            }
            for l in 0..4 {
                t[l] = f_add(f_add(acc[l], acc[l + 4]), f_add(acc[l + 8], acc[l + 12]));
                t[4 + l] = f_add(f_mul(t[l], alpha_ref[l]), 1);
            }
        }
        for (o, t) in out.chunks_exact_mut(4).zip(tmp.chunks_exact(8)) {
            for l in 0..4 {
                o[l] = f_mul(t[l], t[4 + l]);
            }
        }
    });
    drop((main, aux, tm, am));

    // FRI input, collected per task by pushing (vectors that grow by
    // doubling, the collect() pattern), then concatenated.
    let segs = pool.threads * 2;
    let per = rows.div_ceil(segs);
    let gamma: Vec<u32> = (0..4).map(|l| f_rand(ps, 2, l)).collect();
    let parts: Vec<Mutex<Vec<u32>>> = (0..segs).map(|_| Mutex::new(Vec::new())).collect();
    let (q_ref, gamma_ref, parts_ref) = (&q, &gamma, &parts);
    pool.run(segs, &|t| {
        let mut v = Vec::new();
        for r in (t * per)..((t + 1) * per).min(rows) {
            for l in 0..4 {
                v.push(f_mul(q_ref[r * 4 + l], gamma_ref[l]));
            }
        }
        *parts_ref[t].lock().unwrap() = v;
    });
    let mut f: Vec<u32> = Vec::with_capacity(rows * 4);
    for part in parts {
        f.extend_from_slice(&part.into_inner().unwrap());
    }
    drop(q);

    // Fold rounds: each a new vector and its Merkle tree; the previous
    // round's vector is freed.
    let mut round = 0u64;
    while f.len() / 4 > FRI_FINAL {
        let beta: Vec<u32> = (0..4).map(|l| f_rand(ps, 3 + round, l)).collect();
        let mut g = vec![0u32; f.len() / 2];
        let jobs: Vec<_> = g.chunks_mut(4096 * 4).zip(f.chunks(8192 * 4)).collect();
        let beta_ref = &beta;
        pool.each(jobs, |_, (out, inp)| {
            for (o, pair) in out.chunks_exact_mut(4).zip(inp.chunks_exact(8)) {
                for l in 0..4 {
                    o[l] = f_add(pair[l], f_mul(pair[4 + l], beta_ref[l]));
                }
            }
        });
        let fm = Merkle::build(&g, 4, pool);
        ck = mix64(ck ^ fm.root());
        f = g;
        round += 1;
    }
    ck = mix64(ck ^ f.iter().fold(0u64, |a, &x| mix64(a ^ x as u64)));

    *pool.book.lock().unwrap() = None;
    mix64(ck ^ book.finish())
}

// -------------------------------------------------------- measurement

#[repr(C)]
struct Rusage {
    utime: [c_long; 2],
    stime: [c_long; 2],
    maxrss: c_long,
    _ix: [c_long; 3],
    minflt: c_long,
    _rest: [c_long; 9],
}

#[repr(C)]
struct DlInfo {
    fname: *const c_char,
    fbase: *mut c_void,
    sname: *const c_char,
    saddr: *mut c_void,
}

extern "C" {
    fn getrusage(who: c_int, r: *mut Rusage) -> c_int;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    fn malloc(n: usize) -> *mut c_void;
}

struct Usage {
    cpu: f64,
    minflt: u64,
    maxrss_kib: u64,
}

fn usage() -> Usage {
    // SAFETY: Rusage matches struct rusage on 64-bit Linux.
    let r = unsafe {
        let mut r: Rusage = std::mem::zeroed();
        getrusage(0, &mut r);
        r
    };
    let tv = |t: [c_long; 2]| t[0] as f64 + t[1] as f64 * 1e-6;
    Usage {
        cpu: tv(r.utime) + tv(r.stime),
        minflt: r.minflt as u64,
        maxrss_kib: r.maxrss as u64,
    }
}

/// The shared object that provides `malloc` in this process (the System
/// allocator's backend): libc, or a jemalloc that interposes it.
fn malloc_provider() -> String {
    // SAFETY: dladdr only reads the dynamic linker's tables.
    unsafe {
        let mut i: DlInfo = std::mem::zeroed();
        if dladdr(malloc as *const c_void, &mut i) == 0 || i.fname.is_null() {
            return "unknown".into();
        }
        let s = CStr::from_ptr(i.fname).to_string_lossy();
        s.rsplit('/').next().unwrap_or(&s).to_string()
    }
}

pub struct Allocator {
    pub label: &'static str,
    pub begin: fn(),
    pub end: fn(),
    /// Extra fields for the RESULT line (overflow counters).
    pub extra: fn() -> String,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1).map(|v| v.parse()) {
            Some(Ok(v)) => v,
            _ => {
                eprintln!("prover: {name} needs a valid value");
                std::process::exit(2);
            }
        },
        None => default,
    }
}

pub fn main_with(a: Allocator) {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|x| x == "-h" || x == "--help") {
        println!(
            "usage: {} [--proofs K] [--threads T] [--log-n L] [--width W] [--small S]",
            args[0]
        );
        return;
    }
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let p = Params {
        log_n: arg(&args, "--log-n", 15),
        width: arg(&args, "--width", 256),
        threads: arg(&args, "--threads", ncpu).max(1),
        small: arg(&args, "--small", 20000),
    };
    let proofs: usize = arg(&args, "--proofs", 6);
    if proofs < 2 || p.log_n < 8 || p.log_n > 24 || p.width < 16 {
        eprintln!("prover: need --proofs >= 2, 8 <= --log-n <= 24, --width >= 16");
        std::process::exit(2);
    }
    let mut total = 0u64;
    let (mut wcpu, mut wwall, mut wflt) = (0f64, 0f64, 0u64);
    let (mut cold_cpu, mut cold_flt) = (0f64, 0u64);
    let pool = &Pool::new(p.threads);
    std::thread::scope(|s| {
        for t in 1..p.threads {
            s.spawn(move || pool.worker(t));
        }
        for k in 0..proofs {
            let u0 = usage();
            let t0 = Instant::now();
            (a.begin)();
            let ck = prove(&p, pool, 1000 + k as u64 % 3);
            (a.end)();
            let wall = t0.elapsed().as_secs_f64();
            let u1 = usage();
            let (cpu, flt) = (u1.cpu - u0.cpu, u1.minflt - u0.minflt);
            println!("proof {k}: wall {wall:.3} s, cpu {cpu:.3} s, minor faults {flt}, checksum {ck:016x}");
            total = mix64(total ^ ck);
            if k == 0 {
                cold_cpu = cpu;
                cold_flt = flt;
            } else {
                wcpu += cpu;
                wwall += wall;
                wflt += flt;
            }
        }
        pool.stop();
    });
    let warm = (proofs - 1) as f64;
    let u = usage();
    println!(
        "RESULT allocator={} malloc={} threads={} log_n={} width={} proofs={} cold_cpu_s={:.3} cold_faults={} \
         warm_cpu_s={:.3} warm_wall_s={:.3} warm_faults={:.0} peak_rss_mib={:.1} checksum={:016x}{}",
        a.label,
        malloc_provider(),
        p.threads,
        p.log_n,
        p.width,
        proofs,
        cold_cpu,
        cold_flt,
        wcpu / warm,
        wwall / warm,
        wflt as f64 / warm,
        u.maxrss_kib as f64 / 1024.0,
        total,
        (a.extra)()
    );
}
