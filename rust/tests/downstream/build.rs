//! The one build-script line a binary needs for zkalloc's linker arguments
//! (cargo passes a library's link arguments to no other package): the rpath
//! of a privately installed libzkalloc.so, or, in bundled mode, the --wrap
//! flags that route the binary's own `_rjem_*` calls to zkalloc.
//! DOWNSTREAM_NO_LINK_ARGS=1 (non-empty) leaves them out (a binary without this line).
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=DOWNSTREAM_NO_LINK_ARGS");
    println!("cargo:rustc-check-cfg=cfg(link_args)");
    if env::var("DOWNSTREAM_NO_LINK_ARGS")
        .unwrap_or_default()
        .is_empty()
    {
        // The line:
        for a in env::var("DEP_ZKALLOC_LINK_ARGS")
            .unwrap_or_default()
            .split_whitespace()
        {
            println!("cargo:rustc-link-arg={a}");
        }
        println!("cargo:rustc-cfg=link_args");
    }
}
