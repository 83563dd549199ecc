//! Can this kernel run BPF LSM programs? Probed by loading a trivial program (`return 0`)
//! of type `BPF_PROG_TYPE_LSM` against `bpf_lsm_file_open` found in the kernel's BTF, and
//! attaching it — never assumed from the kernel version or the LSM list. The probe's link is
//! closed at once (nothing stays attached).
//!
//! The BTF lookup is libbpf's (`Btf::from_vmlinux`), the load and attach libbpf's typed
//! low-level calls (`bpf_prog_load` with `bpf_prog_load_opts`, `bpf_raw_tracepoint_open`):
//! no hand-parsed BTF, no hand-laid `bpf_attr`.

use libbpf_rs::btf::{types::Func, Btf};
use serde::Serialize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, Clone, Serialize)]
pub struct LsmProbe {
    /// `bpf` in the active LSM list (from securityfs, when mounted).
    pub bpf_in_lsm_list: Option<bool>,
    /// The kernel exposes BTF (/sys/kernel/btf/vmlinux).
    pub btf: bool,
    /// A trivial BPF LSM program loaded and attached.
    pub loads: bool,
    /// Why not, in words (errno included).
    pub detail: String,
    /// The active LSM list, when readable.
    pub lsm_list: Option<String>,
}

/// Why the kernel's BTF could not name the probe's attach point.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("/sys/kernel/btf/vmlinux: {0}")]
    Load(libbpf_rs::Error),
    #[error("BTF: no function {0}")]
    NoFunction(String),
}

/// The BTF type id of the kernel function `name`.
fn btf_func_id(name: &str) -> Result<u32, BtfError> {
    let btf = Btf::from_vmlinux().map_err(BtfError::Load)?;
    btf.type_by_name::<Func<'_>>(name)
        .map(|f| u32::from(f.type_id()))
        .ok_or_else(|| BtfError::NoFunction(name.to_string()))
}

/// A libbpf low-level call's result: a new descriptor, or the errno it failed with.
fn fd_or_errno(ret: std::os::raw::c_int) -> Result<OwnedFd, std::io::Error> {
    if ret < 0 {
        // libbpf 1.x returns -errno.
        return Err(std::io::Error::from_raw_os_error(-ret));
    }
    // SAFETY: a non-negative return of these calls is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Loads `r0 = 0; exit` as an LSM program on `file_open` (BTF id `attach_btf_id`).
fn load_probe(attach_btf_id: u32) -> Result<OwnedFd, std::io::Error> {
    use libbpf_sys as sys;
    let mov_r0_0 = sys::bpf_insn {
        code: (sys::BPF_ALU64 | sys::BPF_MOV | sys::BPF_K) as u8,
        ..Default::default()
    };
    let exit = sys::bpf_insn {
        code: (sys::BPF_JMP | sys::BPF_EXIT) as u8,
        ..Default::default()
    };
    let insns = [mov_r0_0, exit];
    let mut opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as sys::size_t,
        expected_attach_type: sys::BPF_LSM_MAC,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: the name and license are NUL-terminated, `insns` holds `insns.len()`
    // instructions, `opts` is sized for this libbpf; all outlive the call, which copies them.
    let ret = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_LSM,
            c"warden_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as sys::size_t,
            &mut opts,
        )
    };
    fd_or_errno(ret)
}

/// Attaches the probe program (it always returns 0: allow); the link is closed, and the
/// program detached, when the returned descriptor drops.
fn attach_probe(prog: &OwnedFd) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: a NULL name is how an LSM program's BTF attach point is used; `prog` is open.
    fd_or_errno(unsafe { libbpf_sys::bpf_raw_tracepoint_open(std::ptr::null(), prog.as_raw_fd()) })
}

/// The active LSM list. When securityfs is not mounted (and we are root), it is read in a
/// private mount namespace, leaving the host's mounts untouched.
pub fn lsm_list() -> Option<String> {
    if let Ok(s) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        return Some(s.trim().to_string());
    }
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lsm",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn probe() -> LsmProbe {
    let lsm = lsm_list();
    let bpf_in_lsm_list = lsm
        .as_ref()
        .map(|l| l.split(',').any(|x| x.trim() == "bpf"));
    let id = match btf_func_id("bpf_lsm_file_open") {
        Ok(id) => id,
        Err(e) => {
            return LsmProbe {
                bpf_in_lsm_list,
                btf: false,
                loads: false,
                detail: e.to_string(),
                lsm_list: lsm,
            }
        }
    };
    let prog = match load_probe(id) {
        Ok(p) => p,
        Err(e) => {
            return LsmProbe {
                bpf_in_lsm_list,
                btf: true,
                loads: false,
                detail: format!("BPF_PROG_LOAD (LSM, file_open): refused: {e}"),
                lsm_list: lsm,
            }
        }
    };
    if let Err(e) = attach_probe(&prog) {
        return LsmProbe {
            bpf_in_lsm_list,
            btf: true,
            loads: false,
            detail: format!("loaded, but attach refused: {e}"),
            lsm_list: lsm,
        };
    }
    LsmProbe {
        bpf_in_lsm_list,
        btf: true,
        loads: true,
        detail: "a trivial BPF LSM program loaded and attached".into(),
        lsm_list: lsm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_names_the_attach_point_or_says_why_not() {
        match btf_func_id("bpf_lsm_file_open") {
            Ok(id) => {
                assert!(id > 0);
                // A name that is no kernel function is an error, not a wrong id.
                assert!(matches!(
                    btf_func_id("warden_no_such_function"),
                    Err(BtfError::NoFunction(_))
                ));
            }
            Err(e) => assert!(
                !std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
                "{e}"
            ),
        }
    }
}
