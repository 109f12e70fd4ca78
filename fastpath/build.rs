//! Compiles `bpf/fastpath.c` with Debian's clang (`-target bpf`) into
//! `$OUT_DIR/fastpath.o`. Where clang is missing or fails, an empty object
//! is written and tern builds without its fast path (it says so at start).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("fastpath.o");
    println!("cargo:rerun-if-changed=bpf/fastpath.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", "bpf/fastpath.c", "-o"])
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            println!("cargo:warning=clang failed on bpf/fastpath.c ({s}): building without the fast path");
            std::fs::write(&obj, b"").expect("write an empty BPF object");
        }
        Err(e) => {
            println!("cargo:warning=no clang ({e}): building without the fast path");
            std::fs::write(&obj, b"").expect("write an empty BPF object");
        }
    }
}
