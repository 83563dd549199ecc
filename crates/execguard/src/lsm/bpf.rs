//! Loading, pinning and driving the BPF LSM programs of `src/bpf/execguard.bpf.c`.
//!
//! Everything lives under [`PIN_DIR`]: one pinned link per program (the programs stay
//! attached while the pins exist, whatever happens to the daemon) and one pinned map per map
//! (so a restarted daemon re-attaches to the same state). [`Pinned::open`] opens an existing
//! set; [`Pinned::load`] loads, attaches and pins a new one.

// Deferred lints (issue 17): this file was being rewritten in parallel; fix and remove.
#![allow(clippy::undocumented_unsafe_blocks, clippy::unnecessary_cast)]

use crate::identity::Hash;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

#[allow(
    clippy::all,
    clippy::restriction,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/execguard.skel.rs"));
}

/// Where the daemon pins its programs' links and maps.
pub const PIN_DIR: &str = "/sys/fs/bpf/warden";
pub const MAPS: &[&str] = &[
    "wg_global",
    "wg_sessions",
    "wg_rules",
    "wg_inodes",
    "wg_tasks",
    "wg_events",
    "wg_counters",
];
pub const PROGS: &[&str] = &[
    "wg_bprm_check",
    "wg_mmap_file",
    "wg_file_mprotect",
    "wg_file_open",
    "wg_path_truncate",
    "wg_bprm_committed",
];

pub const MODE_DENYLIST: u32 = 0;
pub const MODE_ALLOWLIST: u32 = 1;
pub const F_DENY: u32 = 1;
pub const F_ALLOW: u32 = 2;
pub const F_BUILDER: u32 = 4;

/// Per-session settings (`struct wg_session`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCfg {
    pub mode: u32,
    pub enforce: bool,
    pub allow_memfd: bool,
    pub transitive: bool,
}

impl SessionCfg {
    fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (i, v) in [
            self.mode,
            self.enforce as u32,
            self.allow_memfd as u32,
            self.transitive as u32,
        ]
        .iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// One decision from the ring buffer (`struct wg_event`).
#[derive(Debug, Clone)]
pub struct Event {
    pub session: u64,
    pub ino: u64,
    pub pid: u32,
    pub kind: u32,
    pub verdict: u32,
    pub reason: u32,
    pub rule: u32,
    pub hash: Option<Hash>,
    pub comm: String,
    pub name: String,
}

pub const EVENT_SIZE: usize = 8 + 8 + 4 * 6 + 32 + 16 + 64;

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
}

impl Event {
    pub fn parse(b: &[u8]) -> Option<Event> {
        if b.len() < EVENT_SIZE {
            return None;
        }
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let hash: Hash = b[40..72].try_into().ok()?;
        Some(Event {
            session: u64_at(0),
            ino: u64_at(8),
            pid: u32_at(16),
            kind: u32_at(20),
            verdict: u32_at(24),
            reason: u32_at(28),
            rule: u32_at(32),
            hash: if hash == [0; 32] { None } else { Some(hash) },
            comm: cstr(&b[72..88]),
            name: cstr(&b[88..152]),
        })
    }

    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            1 => "exec",
            2 => "mmap",
            3 => "mprotect",
            _ => "?",
        }
    }

    pub fn reason_str(&self) -> &'static str {
        match self.reason {
            0 => "allowed",
            1 => "its content's hash is denied",
            2 => "allowlist mode: its content's hash is not allowed",
            3 => "it is an anonymous file (memfd, O_TMPFILE or unlinked)",
            4 => {
                "the kernel (IMA) could not hash it, and enforce mode denies what cannot be hashed"
            }
            5 => "IMA hashes with an algorithm other than SHA-256 (boot with ima_hash=sha256)",
            6 => "no current cached hash for a non-sleepable hook (mprotect), so it is denied",
            7 => "its session cgroup is not registered with the daemon",
            8 => "no IMA on this kernel, and the daemon had not hashed this file (only files opened for exec in a session, the trust index and the system libraries are hashed ahead)",
            _ => "unknown reason",
        }
    }
}

/// The pinned programs and maps.
pub struct Pinned {
    pub dir: PathBuf,
    pub global: MapHandle,
    pub sessions: MapHandle,
    pub rules: MapHandle,
    pub events: MapHandle,
    pub counters: MapHandle,
    pub idents: MapHandle,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Pinned {
    /// Whether a pinned set exists (the programs are attached).
    pub fn exists(dir: &Path) -> bool {
        PROGS.iter().all(|p| dir.join("links").join(p).exists())
    }

    /// Opens the pinned maps of a loaded set.
    pub fn open(dir: &Path) -> Result<Pinned, String> {
        let m = |n: &str| {
            MapHandle::from_pinned_path(dir.join("maps").join(n))
                .map_err(|e| err(&format!("pinned map {n}"), e))
        };
        Ok(Pinned {
            dir: dir.to_path_buf(),
            global: m("wg_global")?,
            sessions: m("wg_sessions")?,
            rules: m("wg_rules")?,
            events: m("wg_events")?,
            counters: m("wg_counters")?,
            idents: m("wg_idents")?,
        })
    }

    /// Loads, attaches and pins the programs (the caller checked none are pinned). On failure
    /// nothing is left pinned.
    pub fn load(dir: &Path) -> Result<Pinned, String> {
        Self::load_inner(dir).inspect_err(|_| {
            let _ = Self::unload(dir);
        })
    }

    fn load_inner(dir: &Path) -> Result<Pinned, String> {
        if let Some(parent) = dir.parent() {
            let c = std::ffi::CString::new(parent.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: statfs into a zeroed struct.
            let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
            const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
            if unsafe { libc::statfs(c.as_ptr(), &mut sf) } != 0 || sf.f_type as i64 != BPF_FS_MAGIC
            {
                return Err(format!("{} is not a BPF file system; mount it first (`mount -t bpf bpf {}`; systemd does this at boot)", parent.display(), parent.display()));
            }
        }
        std::fs::create_dir_all(dir.join("links"))
            .map_err(|e| err(&format!("{}", dir.display()), e))?;
        std::fs::create_dir_all(dir.join("maps"))
            .map_err(|e| err(&format!("{}", dir.display()), e))?;
        let mut obj = MaybeUninit::uninit();
        let open = skel::ExecguardSkelBuilder::default()
            .open(&mut obj)
            .map_err(|e| err("opening the BPF object", e))?;
        let mut s = open.load().map_err(|e| {
            err(
                "loading the BPF programs (is BPF LSM active and IMA built in?)",
                e,
            )
        })?;
        s.attach()
            .map_err(|e| err("attaching the BPF LSM programs", e))?;
        let maps = &mut s.maps;
        for (name, map) in [
            ("wg_global", &mut maps.wg_global),
            ("wg_sessions", &mut maps.wg_sessions),
            ("wg_rules", &mut maps.wg_rules),
            ("wg_inodes", &mut maps.wg_inodes),
            ("wg_idents", &mut maps.wg_idents),
            ("wg_tasks", &mut maps.wg_tasks),
            ("wg_events", &mut maps.wg_events),
            ("wg_counters", &mut maps.wg_counters),
        ] {
            map.pin(dir.join("maps").join(name))
                .map_err(|e| err(&format!("pinning map {name}"), e))?;
        }
        let links = &mut s.links;
        for (name, link) in [
            ("wg_bprm_check", &mut links.wg_bprm_check),
            ("wg_mmap_file", &mut links.wg_mmap_file),
            ("wg_file_mprotect", &mut links.wg_file_mprotect),
            ("wg_file_open", &mut links.wg_file_open),
            ("wg_path_truncate", &mut links.wg_path_truncate),
            ("wg_bprm_committed", &mut links.wg_bprm_committed),
        ] {
            let l = link
                .as_mut()
                .ok_or_else(|| format!("program {name} has no link after attach"))?;
            l.pin(dir.join("links").join(name))
                .map_err(|e| err(&format!("pinning link {name}"), e))?;
        }
        drop(s);
        Self::open(dir)
    }

    /// Removes every pin: the programs detach once no process holds their links.
    pub fn unload(dir: &Path) -> Result<(), String> {
        if !dir.exists() {
            return Ok(());
        }
        for sub in ["links", "maps"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    std::fs::remove_file(e.path())
                        .map_err(|e2| err(&format!("{}", e.path().display()), e2))?;
                }
            }
            let _ = std::fs::remove_dir(dir.join(sub));
        }
        std::fs::remove_dir(dir).map_err(|e| err(&format!("{}", dir.display()), e))
    }

    pub fn set_root(&self, cgid: u64, level: u32, no_ima: bool) -> Result<(), String> {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&cgid.to_ne_bytes());
        v[8..12].copy_from_slice(&level.to_ne_bytes());
        v[12..16].copy_from_slice(&(no_ima as u32).to_ne_bytes());
        self.global
            .update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
            .map_err(|e| err("wg_global", e))
    }

    /// Feeds one identity (kernels without IMA): the file's kernel device number and inode,
    /// its ctime and size as hashed, and its SHA-256.
    pub fn put_ident(&self, md: &libc::stat, hash: &Hash) -> Result<(), String> {
        // The kernel's s_dev is MKDEV(major, minor) = major << 20 | minor.
        let (maj, min) = (libc::major(md.st_dev) as u64, libc::minor(md.st_dev) as u64);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&((maj << 20) | min).to_ne_bytes());
        k[8..].copy_from_slice(&(md.st_ino as u64).to_ne_bytes());
        let mut v = [0u8; 56];
        v[..8].copy_from_slice(&(md.st_ctime as i64).to_ne_bytes());
        v[8..12].copy_from_slice(&(md.st_ctime_nsec as u32).to_ne_bytes());
        v[16..24].copy_from_slice(&(md.st_size as u64).to_ne_bytes());
        v[24..56].copy_from_slice(hash);
        self.idents
            .update(&k, &v, MapFlags::ANY)
            .map_err(|e| err("wg_idents", e))
    }

    pub fn root(&self) -> Option<(u64, u32)> {
        let v = self
            .global
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        Some((
            u64::from_ne_bytes(v[..8].try_into().ok()?),
            u32::from_ne_bytes(v[8..12].try_into().ok()?),
        ))
    }

    /// Installs a session: its rules first, then its settings (a session is enforced from the
    /// moment its cgroup exists: until the settings land, the programs deny as unknown).
    pub fn add_session(
        &self,
        cgid: u64,
        cfg: SessionCfg,
        rules: &[(Hash, u32, u32)],
    ) -> Result<(), String> {
        for (h, flags, rule) in rules {
            let mut k = [0u8; 40];
            k[..8].copy_from_slice(&cgid.to_ne_bytes());
            k[8..].copy_from_slice(h);
            let mut v = [0u8; 8];
            v[..4].copy_from_slice(&flags.to_ne_bytes());
            v[4..].copy_from_slice(&rule.to_ne_bytes());
            self.rules
                .update(&k, &v, MapFlags::ANY)
                .map_err(|e| err("wg_rules", e))?;
        }
        self.sessions
            .update(&cgid.to_ne_bytes(), &cfg.bytes(), MapFlags::ANY)
            .map_err(|e| err("wg_sessions", e))
    }

    /// Removes a session's settings and rules.
    pub fn remove_session(&self, cgid: u64) {
        let _ = self.sessions.delete(&cgid.to_ne_bytes());
        let keys: Vec<Vec<u8>> = self
            .rules
            .keys()
            .filter(|k| k.len() == 40 && k[..8] == cgid.to_ne_bytes())
            .collect();
        for k in keys {
            let _ = self.rules.delete(&k);
        }
    }

    pub fn sessions(&self) -> Vec<u64> {
        self.sessions
            .keys()
            .filter_map(|k| k.try_into().ok().map(u64::from_ne_bytes))
            .collect()
    }

    /// (events lost, decisions made), summed over CPUs.
    pub fn counters(&self) -> (u64, u64) {
        let sum = |i: u32| -> u64 {
            self.counters
                .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| {
                    v.iter()
                        .map(|c| u64::from_ne_bytes(c[..8].try_into().unwrap_or([0; 8])))
                        .sum()
                })
                .unwrap_or(0)
        };
        (sum(0), sum(1))
    }
}
