//! Links GCC's unwinder statically (`libgcc_eh.a`, as `gcc -static-libgcc` does) so that
//! `warden` needs no `libgcc_s.so` at run time. Every warden process, the hook included
//! (one per tool call), then skips loading it and its CPU-feature probe, whose `cpuid`
//! traps under virtualisation: ~0.1 ms of process start. Linked ahead of std's
//! `-lgcc_s`, which `--as-needed` then drops.
fn main() {
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if gnu_linux && std::env::var_os("WARDEN_DYNAMIC_LIBGCC").is_none() {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
    println!("cargo:rerun-if-env-changed=WARDEN_DYNAMIC_LIBGCC");
}
