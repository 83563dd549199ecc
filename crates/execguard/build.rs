//! Compiles `src/bpf/execguard.bpf.c` with clang (CO-RE) and generates its libbpf-rs
//! skeleton into OUT_DIR. `vmlinux.h` is vendored (`src/bpf/vmlinux.h`), so the build does
//! not depend on the build machine's kernel; CO-RE relocations make the object run on other
//! kernels (the VM tests use Debian's stock 6.12). `WARDEN_VMLINUX_BTF=<btf file>` dumps a
//! header from that BTF with bpftool instead and puts it first on the include path.

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "src/bpf/execguard.bpf.c";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut include = Vec::new();
    if let Some(btf) = std::env::var_os("WARDEN_VMLINUX_BTF") {
        let btf = btf.to_string_lossy().into_owned();
        let dir = out.join("vmlinux");
        std::fs::create_dir_all(&dir).expect("create OUT_DIR/vmlinux");
        let o = Command::new("bpftool").args(["btf", "dump", "file", &btf, "format", "c"]).output().unwrap_or_else(|e| {
            panic!("cannot run bpftool to generate vmlinux.h from {btf}: {e} (run scripts/bootstrap.sh)")
        });
        if !o.status.success() || o.stdout.is_empty() {
            panic!(
                "bpftool btf dump {btf} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::fs::write(dir.join("vmlinux.h"), &o.stdout).expect("write vmlinux.h");
        include.push(format!("-I{}", dir.display()));
    }
    include.push("-Isrc/bpf".to_string());
    libbpf_cargo::SkeletonBuilder::new()
        .source(SRC)
        .clang_args(include)
        .build_and_generate(out.join("execguard.skel.rs"))
        .unwrap_or_else(|e| panic!("building {SRC}: {e:#}"));
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf/execguard.h");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
    println!("cargo:rerun-if-env-changed=WARDEN_VMLINUX_BTF");
}
