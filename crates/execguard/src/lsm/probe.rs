//! Can this kernel run BPF LSM programs? Probed by loading a trivial program (`return 0`)
//! of type `BPF_PROG_TYPE_LSM` against `bpf_lsm_file_open` found in the kernel's BTF, and
//! attaching it — never assumed from the kernel version or the LSM list. The probe's link is
//! closed at once (nothing stays attached).

use serde::Serialize;
use std::os::fd::{FromRawFd, OwnedFd};

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

fn btf_func_id(name: &str) -> Result<u32, String> {
    let b = std::fs::read("/sys/kernel/btf/vmlinux")
        .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
    let u32_at = |o: usize| -> Option<u32> {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != 0xeb9f {
        return Err("BTF: bad magic".into());
    }
    let hdr_len = u32_at(4).ok_or("BTF: short")? as usize;
    let type_off = u32_at(8).ok_or("BTF: short")? as usize;
    let type_len = u32_at(12).ok_or("BTF: short")? as usize;
    let str_off = u32_at(16).ok_or("BTF: short")? as usize;
    let types = hdr_len + type_off;
    let strs = hdr_len + str_off;
    let mut p = types;
    let mut id = 1u32;
    while p + 12 <= types + type_len {
        let name_off = u32_at(p).ok_or("BTF: short")? as usize;
        let info = u32_at(p + 4).ok_or("BTF: short")?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        if kind == 12 {
            // BTF_KIND_FUNC
            let s = b.get(strs + name_off..).ok_or("BTF: bad string")?;
            let end = s.iter().position(|&c| c == 0).unwrap_or(0);
            if &s[..end] == name.as_bytes() {
                return Ok(id);
            }
        }
        p += 12
            + match kind {
                1 => 4,             // INT
                3 => 12,            // ARRAY
                4 | 5 => 12 * vlen, // STRUCT, UNION
                6 => 8 * vlen,      // ENUM
                13 => 8 * vlen,     // FUNC_PROTO
                14 => 4,            // VAR
                15 => 12 * vlen,    // DATASEC
                17 => 4,            // DECL_TAG
                19 => 12 * vlen,    // ENUM64
                _ => 0,
            };
        id += 1;
    }
    Err(format!("BTF: no function {name}"))
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct RawTpAttr {
    name: u64,
    prog_fd: u32,
    _pad: [u64; 8],
}

const BPF_PROG_LOAD: i32 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i32 = 17;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LSM_MAC: u32 = 27;

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
                detail: e,
                lsm_list: lsm,
            }
        }
    };
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_LSM,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type: BPF_LSM_MAC,
        attach_btf_id: id,
        ..Default::default()
    };
    // SAFETY: bpf(2) with a correctly laid out attribute union prefix.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const _ as *const libc::c_void,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return LsmProbe {
            bpf_in_lsm_list,
            btf: true,
            loads: false,
            detail: format!("BPF_PROG_LOAD (LSM, file_open): refused: {e}"),
            lsm_list: lsm,
        };
    }
    // SAFETY: fresh fd.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let tp = RawTpAttr {
        name: 0,
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        ..Default::default()
    };
    // SAFETY: bpf(2); attaching a program that always returns 0 (allow) and detaching at once.
    let link = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_RAW_TRACEPOINT_OPEN,
            &tp as *const _ as *const libc::c_void,
            std::mem::size_of::<RawTpAttr>(),
        )
    };
    if link < 0 {
        let e = std::io::Error::last_os_error();
        return LsmProbe {
            bpf_in_lsm_list,
            btf: true,
            loads: false,
            detail: format!("loaded, but attach refused: {e}"),
            lsm_list: lsm,
        };
    }
    // SAFETY: closing the link detaches the probe program.
    unsafe { libc::close(link as i32) };
    LsmProbe {
        bpf_in_lsm_list,
        btf: true,
        loads: true,
        detail: "a trivial BPF LSM program loaded and attached".into(),
        lsm_list: lsm,
    }
}
