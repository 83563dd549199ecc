//! Compiles `src/bpf/execguard.bpf.c` with clang (CO-RE) and generates its libbpf-rs
//! skeleton into OUT_DIR. `vmlinux.h` is dumped from the build machine's kernel BTF with
//! bpftool (both installed by scripts/bootstrap.sh); CO-RE relocations make the object run
//! on other kernels (the VM tests use Debian's stock 6.12).

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "src/bpf/execguard.bpf.c";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let vmlinux = out.join("vmlinux.h");
    let btf =
        std::env::var("WARDEN_VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    if !vmlinux.exists() {
        let o = Command::new("bpftool").args(["btf", "dump", "file", &btf, "format", "c"]).output().unwrap_or_else(|e| {
            panic!("cannot run bpftool to generate vmlinux.h from {btf}: {e} (run scripts/bootstrap.sh)")
        });
        if !o.status.success() || o.stdout.is_empty() {
            panic!(
                "bpftool btf dump {btf} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::fs::write(&vmlinux, &o.stdout).expect("write vmlinux.h");
    }
    libbpf_cargo::SkeletonBuilder::new()
        .source(SRC)
        .clang_args([format!("-I{}", out.display()), "-Isrc/bpf".to_string()])
        .build_and_generate(out.join("execguard.skel.rs"))
        .unwrap_or_else(|e| panic!("building {SRC}: {e:#}"));
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf/execguard.h");
    println!("cargo:rerun-if-env-changed=WARDEN_VMLINUX_BTF");
}
