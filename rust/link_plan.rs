//! The decisions of build.rs that need no compiler and no file system:
//! reading `pkg-config --libs zkalloc`, src/meson.build's lists, and a
//! jemalloc header's prefix, and turning them into cargo directives, C
//! compiler arguments and link arguments. build.rs includes this file as a
//! module; tests/link_plan.rs includes it too and checks each decision.
#![allow(dead_code)]

/// Library directories the dynamic loader searches without help: no rpath
/// for them.
pub const SYSTEM_LIB_DIRS: [&str; 6] = [
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
];

/// How the crate is linked in pkg-config mode, from `pkg-config --libs`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PkgPlan {
    /// `cargo:` directives, in order (link-search, link-lib, link-arg).
    pub directives: Vec<String>,
    /// Linker arguments a final binary needs besides the libraries: the
    /// rpath of private library directories and libzkalloc's own `-Wl,`
    /// flags. Cargo gives them to this package's tests and examples only;
    /// other binaries get them as DEP_ZKALLOC_LINK_ARGS.
    pub link_args: Vec<String>,
    /// Directories that got an rpath (each holds a shared library named).
    pub rpath_dirs: Vec<String>,
    /// Set only when libzkalloc asks for --wrap flags (a libzkalloc built for
    /// a prefixed jemalloc), which a Rust binary outside this package does
    /// not get from cargo.
    pub warning: Option<String>,
    /// "shared" when a named directory holds libzkalloc.so, else "static".
    pub link: &'static str,
    /// The jemalloc's symbol prefix as seen in the --wrap flags: "rjem"
    /// (`_rjem_`), "other", or "plain" (no --wrap: unprefixed).
    pub je: &'static str,
}

/// Plans the link from `pkg-config --libs zkalloc` output. `rpath`: emit an
/// rpath for private directories (off with ZKALLOC_NO_RPATH). `is_file`
/// answers whether a path exists (the real file system in build.rs).
pub fn pkg_config_plan(
    libs: &str,
    rpath: bool,
    is_file: &dyn Fn(&str) -> bool,
) -> Result<PkgPlan, String> {
    let toks: Vec<&str> = libs.split_whitespace().collect();
    let dirs: Vec<&str> = toks.iter().filter_map(|t| t.strip_prefix("-L")).collect();
    let names: Vec<&str> = toks.iter().filter_map(|t| t.strip_prefix("-l")).collect();
    if !names.contains(&"zkalloc") {
        return Err(format!(
            "`pkg-config --libs zkalloc` did not name -lzkalloc: {libs}"
        ));
    }
    let mut plan = PkgPlan {
        link: "static",
        ..PkgPlan::default()
    };
    let so = |dir: &str, name: &str| is_file(&format!("{dir}/lib{name}.so"));
    for dir in &dirs {
        plan.directives
            .push(format!("cargo:rustc-link-search=native={dir}"));
        if so(dir, "zkalloc") {
            plan.link = "shared";
        }
        let system = SYSTEM_LIB_DIRS.contains(&dir.trim_end_matches('/'));
        if rpath && !system && names.iter().any(|n| so(dir, n)) {
            plan.rpath_dirs.push(dir.to_string());
            plan.link_args.push(format!("-Wl,-rpath,{dir}"));
        }
    }
    let mut wrap = Vec::new();
    for tok in &toks {
        if let Some(lib) = tok.strip_prefix("-l") {
            plan.directives.push(format!("cargo:rustc-link-lib={lib}"));
        } else if *tok == "-pthread" {
            plan.directives.push("cargo:rustc-link-lib=pthread".into());
        } else if tok.starts_with("-Wl,") {
            // Default build: `--push-state,--no-as-needed,-ljemalloc,...`
            // (jemalloc stays a DT_NEEDED of the program). Prefixed build:
            // --wrap flags.
            plan.link_args.push(tok.to_string());
            if tok.contains("--wrap=") {
                wrap.push(*tok);
            }
        }
    }
    for a in &plan.link_args {
        plan.directives.push(format!("cargo:rustc-link-arg={a}"));
    }
    if !wrap.is_empty() {
        plan.warning = Some(format!(
            "libzkalloc was built for a prefixed jemalloc (-Djemalloc_prefix) and asks for --wrap \
             linker flags ({}), which cargo passes to this package's own tests and examples only: \
             another binary must add DEP_ZKALLOC_LINK_ARGS itself (see README.md), or use \
             --features bundled",
            wrap.join(" ")
        ));
    }
    plan.je = if wrap.iter().any(|t| t.contains("--wrap=_rjem_")) {
        "rjem"
    } else if !wrap.is_empty() {
        "other"
    } else {
        "plain"
    };
    Ok(plan)
}

/// The prefix `<jemalloc/jemalloc.h>` maps jemalloc's je_ names to: the
/// `<prefix>` of its `#  define je_mallctl <prefix>mallctl` line ("" for an
/// unprefixed jemalloc). None if the header has no such line.
pub fn header_prefix(text: &str) -> Option<String> {
    for line in text.lines() {
        let mut w = line.trim_start_matches('#').split_whitespace();
        if w.next() == Some("define") && w.next() == Some("je_mallctl") {
            return w
                .next()
                .and_then(|t| t.strip_suffix("mallctl"))
                .map(String::from);
        }
    }
    None
}

/// "rjem", "plain" or "other": the cfg zkalloc_je for a prefix.
pub fn prefix_kind(prefix: &str) -> &'static str {
    match prefix {
        "_rjem_" => "rjem",
        "" => "plain",
        _ => "other",
    }
}

/// The quoted strings of a meson list that starts with `opener`, up to the
/// first line holding `close` outside a quote or comment.
pub fn meson_list(text: &str, opener: &str, close: char) -> Option<Vec<String>> {
    let start = text.find(opener)? + opener.len();
    let mut out = Vec::new();
    for line in text[start..].lines() {
        let code = line.split('#').next().unwrap();
        let mut parts = code.split('\'');
        let outside_first = parts.next().unwrap();
        let mut done = outside_first.contains(close);
        let mut quoted = true;
        for part in parts {
            if quoted {
                out.push(part.to_string());
            } else if part.contains(close) {
                done = true;
            }
            quoted = !quoted;
        }
        if done {
            return Some(out);
        }
    }
    None
}

/// What src/meson.build says about compiling the core.
#[derive(Debug, PartialEq, Eq)]
pub struct CoreBuild {
    /// `zk_sources`, then `zk_wrap_sources` (wrap.c) for a prefixed
    /// jemalloc.
    pub sources: Vec<String>,
    /// What meson passes for zk_core besides include paths and warnings:
    /// MESON_BASE_ARGS, then `zk_c_args` with the prefixed build's
    /// additions, in meson's order.
    pub c_args: Vec<String>,
    /// `zk_wrap_link_args`: what every final binary needs (empty when
    /// unprefixed).
    pub link_args: Vec<String>,
    /// The wrapped names (`zk_wrapped`), for the __real_ fallbacks.
    pub wrapped: Vec<String>,
}

/// What meson adds to every zk_core compile of this project
/// (c_std=gnu11, buildtype=debugoptimized, PIC, hidden visibility, its
/// large-file define, the threads dependency).
pub const MESON_BASE_ARGS: [&str; 7] = [
    "-D_FILE_OFFSET_BITS=64",
    "-std=gnu11",
    "-O2",
    "-g",
    "-fPIC",
    "-fvisibility=hidden",
    "-pthread",
];

/// The core's sources and arguments for a jemalloc with symbol prefix
/// `prefix`, as src/meson.build computes them: the same lists and the same
/// rules as its "prefixed jemalloc" block (JEMALLOC_NO_RENAME, ZK_JE_PREFIX,
/// je_<name> to __real_<prefix><name> for the wrapped names and to
/// <prefix><name> for the others, --wrap flags and -u).
pub fn core_build(meson: &str, prefix: &str) -> Result<CoreBuild, String> {
    let need = |opener: &str, close: char| {
        meson_list(meson, opener, close)
            .ok_or_else(|| format!("src/meson.build has no `{opener}...` list"))
    };
    let mut sources: Vec<String> = need("zk_sources = files(", ')')?
        .into_iter()
        .filter(|f| f.ends_with(".c"))
        .collect();
    if sources.is_empty() {
        return Err("zk_sources in src/meson.build names no .c file".into());
    }
    let mut c_args: Vec<String> = MESON_BASE_ARGS.iter().map(|a| a.to_string()).collect();
    c_args.extend(need("zk_c_args = [", ']')?);
    let mut link_args = Vec::new();
    let mut wrapped = Vec::new();
    if !prefix.is_empty() {
        // `zk_wrap_sources = files('wrap.c')` inside the prefixed block.
        let block = meson
            .find("if jemalloc_prefix != ''")
            .map(|i| &meson[i..])
            .ok_or("src/meson.build has no `if jemalloc_prefix != ''` block")?;
        sources.extend(
            meson_list(block, "zk_wrap_sources = files(", ')')
                .ok_or("src/meson.build's prefixed block has no zk_wrap_sources")?,
        );
        wrapped = need("zk_wrapped = [", ']')?;
        let mut names = wrapped.clone();
        names.extend(need("zk_je_names = zk_wrapped + [", ']')?);
        c_args.push("-DJEMALLOC_NO_RENAME".into());
        c_args.push(format!("-DZK_JE_PREFIX={prefix}"));
        for n in &names {
            let real = if wrapped.contains(n) { "__real_" } else { "" };
            c_args.push(format!("-Dje_{n}={real}{prefix}{n}"));
        }
        for n in &wrapped {
            link_args.push(format!("-Wl,--wrap={prefix}{n}"));
        }
        link_args.push(format!("-Wl,-u,__wrap_{prefix}mallctl"));
    }
    Ok(CoreBuild {
        sources,
        c_args,
        link_args,
        wrapped,
    })
}

/// jemalloc 5.3's prototypes of the functions src/meson.build wraps:
/// (name, return type, parameters, argument names).
const PROTOTYPES: [(&str, &str, &str, &str); 16] = [
    (
        "mallctl",
        "int",
        "const char *a, void *b, size_t *c, void *d, size_t e",
        "a, b, c, d, e",
    ),
    ("mallocx", "void *", "size_t a, int b", "a, b"),
    ("rallocx", "void *", "void *a, size_t b, int c", "a, b, c"),
    (
        "xallocx",
        "size_t",
        "void *a, size_t b, size_t c, int d",
        "a, b, c, d",
    ),
    ("sallocx", "size_t", "const void *a, int b", "a, b"),
    ("dallocx", "void", "void *a, int b", "a, b"),
    ("sdallocx", "void", "void *a, size_t b, int c", "a, b, c"),
    ("nallocx", "size_t", "size_t a, int b", "a, b"),
    ("malloc", "void *", "size_t a", "a"),
    ("calloc", "void *", "size_t a, size_t b", "a, b"),
    ("realloc", "void *", "void *a, size_t b", "a, b"),
    ("free", "void", "void *a", "a"),
    (
        "posix_memalign",
        "int",
        "void **a, size_t b, size_t c",
        "a, b, c",
    ),
    ("aligned_alloc", "void *", "size_t a, size_t b", "a, b"),
    ("memalign", "void *", "size_t a, size_t b", "a, b"),
    ("malloc_usable_size", "size_t", "const void *a", "a"),
];

/// C source defining `__real_<prefix><name>` as a call of `<prefix><name>`
/// for every wrapped name: what the core calls when the final link has no
/// --wrap flags (a binary outside this package: cargo does not pass link
/// arguments on). With --wrap, the linker binds the core's __real_
/// references to jemalloc directly and never pulls this object out of the
/// archive.
pub fn real_fallback_source(prefix: &str, wrapped: &[String]) -> Result<String, String> {
    let mut c = String::from(
        "/* Generated by rust/build.rs (link_plan.rs): jemalloc's entry points\n \
         * under the __real_ names the core is compiled to call, for a link\n \
         * without --wrap flags. */\n#include <stddef.h>\n",
    );
    for n in wrapped {
        let (_, ret, params, args) = PROTOTYPES.iter().find(|p| p.0 == n).ok_or_else(|| {
            format!("src/meson.build wraps `{n}`: add its prototype to rust/link_plan.rs")
        })?;
        let ret_kw = if *ret == "void" { "" } else { "return " };
        c.push_str(&format!(
            "{ret} {prefix}{n}({params});\n{ret} __real_{prefix}{n}({params});\n\
             {ret} __real_{prefix}{n}({params}) {{ {ret_kw}{prefix}{n}({args}); }}\n"
        ));
    }
    Ok(c)
}
