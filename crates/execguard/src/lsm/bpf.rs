//! Loading, pinning and driving the BPF LSM programs of `src/bpf/execguard.bpf.c`.
//!
//! Everything lives under [`PIN_DIR`]: one pinned link per program (the programs stay
//! attached while the pins exist, whatever happens to the daemon) and one pinned map per map
//! (so a restarted daemon re-attaches to the same state). [`Pinned::open`] opens an existing
//! set; [`Pinned::load`] loads, attaches and pins a new one.
//!
//! Map keys and values and the ring-buffer event are the skeleton's generated [`types`]
//! (from `src/bpf/execguard.h`), read and written as `plain::Plain` bytes: no offset is
//! written down twice.

use crate::identity::Hash;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use plain::Plain;
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

/// The Rust types libbpf-cargo generates from `src/bpf/execguard.h`: map keys and values
/// and the ring-buffer event are read and written through these, so their layout is the C
/// definition's.
pub use skel::types;

// Why the `Plain` impls below are sound: these are the skeleton's `#[repr(C)]` copies of the
// structs of `execguard.h`, made of integers and integer arrays only (every bit pattern is a
// valid value; no pointers, bools or enums), with every padding byte spelled out as a field
// in the C header (`pad`) or by the generator, so none is uninitialised when sent as bytes.
// SAFETY: see above.
unsafe impl Plain for types::wg_global {}
// SAFETY: see above.
unsafe impl Plain for types::wg_session {}
// SAFETY: see above.
unsafe impl Plain for types::wg_rule_key {}
// SAFETY: see above.
unsafe impl Plain for types::wg_rule {}
// SAFETY: see above.
unsafe impl Plain for types::wg_ident_key {}
// SAFETY: see above.
unsafe impl Plain for types::wg_ident {}
// SAFETY: see above.
unsafe impl Plain for types::wg_event {}

/// A failure loading, pinning or writing the BPF programs' maps.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("{0} is not a BPF file system; mount it first (`mount -t bpf bpf {0}`; systemd does this at boot)")]
    NotBpffs(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Libbpf {
        what: String,
        source: libbpf_rs::Error,
    },
    #[error("program {0} has no link after attach")]
    NoLink(&'static str),
}

/// The bytes of a map key or value, to hand to the kernel.
fn bytes<T: Plain>(v: &T) -> &[u8] {
    // SAFETY: `T: Plain` here is one of the header's structs above (or an integer): no
    // uninitialised padding, every byte is part of a field.
    unsafe { plain::as_bytes(v) }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BpfError {
    let what = what.to_string();
    move |source| BpfError::Io { what, source }
}

fn lib(what: impl std::fmt::Display) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    let what = what.to_string();
    move |source| BpfError::Libbpf { what, source }
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

pub const MODE_DENYLIST: u32 = types::wg_mode::WG_MODE_DENYLIST.0;
pub const MODE_ALLOWLIST: u32 = types::wg_mode::WG_MODE_ALLOWLIST.0;
pub const F_DENY: u32 = types::wg_rule_flag::WG_F_DENY.0;
pub const F_ALLOW: u32 = types::wg_rule_flag::WG_F_ALLOW.0;
pub const F_BUILDER: u32 = types::wg_rule_flag::WG_F_BUILDER.0;

/// Per-session settings (`struct wg_session`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCfg {
    pub mode: u32,
    pub enforce: bool,
    pub allow_memfd: bool,
    pub transitive: bool,
}

impl SessionCfg {
    fn to_c(self) -> types::wg_session {
        types::wg_session {
            mode: self.mode,
            enforce: self.enforce.into(),
            allow_memfd: self.allow_memfd.into(),
            transitive: self.transitive.into(),
        }
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

/// A NUL-terminated C string in a fixed array (`char[]`, generated as `i8`).
fn cstr(b: &[i8]) -> String {
    let bytes: Vec<u8> = b.iter().map(|c| *c as u8).take_while(|c| *c != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Event {
    /// Decodes one ring-buffer record; `None` when it is shorter than `struct wg_event`.
    pub fn parse(b: &[u8]) -> Option<Event> {
        let mut e = types::wg_event::default();
        plain::copy_from_bytes(&mut e, b).ok()?;
        Some(Event {
            session: e.session,
            ino: e.ino,
            pid: e.pid,
            kind: e.kind,
            verdict: e.verdict,
            reason: e.reason,
            rule: e.rule,
            hash: (e.hash != [0; 32]).then_some(e.hash),
            comm: cstr(&e.comm),
            name: cstr(&e.name),
        })
    }

    pub fn kind_str(&self) -> &'static str {
        match types::wg_kind(self.kind) {
            types::wg_kind::WG_K_EXEC => "exec",
            types::wg_kind::WG_K_MMAP => "mmap",
            types::wg_kind::WG_K_MPROTECT => "mprotect",
            _ => "?",
        }
    }

    pub fn reason_str(&self) -> &'static str {
        use types::wg_reason as R;
        match R(self.reason) {
            R::WG_R_OK => "allowed",
            R::WG_R_DENIED => "its content's hash is denied",
            R::WG_R_NOT_ALLOWED => "allowlist mode: its content's hash is not allowed",
            R::WG_R_ANONYMOUS => "it is an anonymous file (memfd, O_TMPFILE or unlinked)",
            R::WG_R_NO_HASH => {
                "the kernel (IMA) could not hash it, and enforce mode denies what cannot be hashed"
            }
            R::WG_R_NOT_SHA256 => "IMA hashes with an algorithm other than SHA-256 (boot with ima_hash=sha256)",
            R::WG_R_NOT_CACHED => "no current cached hash for a non-sleepable hook (mprotect), so it is denied",
            R::WG_R_NO_SESSION => "its session cgroup is not registered with the daemon",
            R::WG_R_NOT_HASHED => "no IMA on this kernel, and the daemon had not hashed this file (only files opened for exec in a session, the trust index and the system libraries are hashed ahead)",
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

impl Pinned {
    /// Whether a pinned set exists (the programs are attached).
    pub fn exists(dir: &Path) -> bool {
        PROGS.iter().all(|p| dir.join("links").join(p).exists())
    }

    /// Opens the pinned maps of a loaded set.
    pub fn open(dir: &Path) -> Result<Pinned, BpfError> {
        let m = |n: &str| {
            MapHandle::from_pinned_path(dir.join("maps").join(n))
                .map_err(lib(format!("pinned map {n}")))
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
    pub fn load(dir: &Path) -> Result<Pinned, BpfError> {
        Self::load_inner(dir).inspect_err(|_| {
            let _ = Self::unload(dir);
        })
    }

    fn load_inner(dir: &Path) -> Result<Pinned, BpfError> {
        if let Some(parent) = dir.parent() {
            let bpffs = rustix::fs::statfs(parent)
                .is_ok_and(|sf| sf.f_type as u64 == libc::BPF_FS_MAGIC as u64);
            if !bpffs {
                return Err(BpfError::NotBpffs(parent.display().to_string()));
            }
        }
        std::fs::create_dir_all(dir.join("links")).map_err(io(dir.display()))?;
        std::fs::create_dir_all(dir.join("maps")).map_err(io(dir.display()))?;
        let mut obj = MaybeUninit::uninit();
        let open = skel::ExecguardSkelBuilder::default()
            .open(&mut obj)
            .map_err(lib("opening the BPF object"))?;
        let mut s = open.load().map_err(lib(
            "loading the BPF programs (is BPF LSM active and IMA built in?)",
        ))?;
        s.attach().map_err(lib("attaching the BPF LSM programs"))?;
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
                .map_err(lib(format!("pinning map {name}")))?;
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
            let l = link.as_mut().ok_or(BpfError::NoLink(name))?;
            l.pin(dir.join("links").join(name))
                .map_err(lib(format!("pinning link {name}")))?;
        }
        drop(s);
        Self::open(dir)
    }

    /// Removes every pin: the programs detach once no process holds their links.
    pub fn unload(dir: &Path) -> Result<(), BpfError> {
        if !dir.exists() {
            return Ok(());
        }
        for sub in ["links", "maps"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    std::fs::remove_file(e.path()).map_err(io(e.path().display()))?;
                }
            }
            let _ = std::fs::remove_dir(dir.join(sub));
        }
        std::fs::remove_dir(dir).map_err(io(dir.display()))
    }

    pub fn set_root(&self, cgid: u64, level: u32, no_ima: bool) -> Result<(), BpfError> {
        let v = types::wg_global {
            root_cgid: cgid,
            root_level: level,
            no_ima: no_ima.into(),
        };
        self.global
            .update(&0u32.to_ne_bytes(), bytes(&v), MapFlags::ANY)
            .map_err(lib("wg_global"))
    }

    /// Feeds one identity (kernels without IMA): the file's kernel device number and inode,
    /// its ctime and size as hashed, and its SHA-256.
    pub fn put_ident(&self, md: &libc::stat, hash: &Hash) -> Result<(), BpfError> {
        // The kernel's s_dev is MKDEV(major, minor) = major << 20 | minor.
        let (maj, min) = (
            u64::from(libc::major(md.st_dev)),
            u64::from(libc::minor(md.st_dev)),
        );
        let k = types::wg_ident_key {
            dev: (maj << 20) | min,
            ino: md.st_ino,
        };
        let v = types::wg_ident {
            ctime_sec: md.st_ctime,
            // tv_nsec is below 10^9.
            ctime_nsec: md.st_ctime_nsec as u32,
            size: md.st_size as u64,
            hash: *hash,
            ..Default::default()
        };
        self.idents
            .update(bytes(&k), bytes(&v), MapFlags::ANY)
            .map_err(lib("wg_idents"))
    }

    pub fn root(&self) -> Option<(u64, u32)> {
        let b = self
            .global
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        let mut v = types::wg_global::default();
        plain::copy_from_bytes(&mut v, &b).ok()?;
        Some((v.root_cgid, v.root_level))
    }

    /// Installs a session: its rules first, then its settings (a session is enforced from the
    /// moment its cgroup exists: until the settings land, the programs deny as unknown).
    pub fn add_session(
        &self,
        cgid: u64,
        cfg: SessionCfg,
        rules: &[(Hash, u32, u32)],
    ) -> Result<(), BpfError> {
        for (h, flags, rule) in rules {
            let k = types::wg_rule_key {
                session: cgid,
                hash: *h,
            };
            let v = types::wg_rule {
                flags: *flags,
                rule: *rule,
            };
            self.rules
                .update(bytes(&k), bytes(&v), MapFlags::ANY)
                .map_err(lib("wg_rules"))?;
        }
        self.sessions
            .update(&cgid.to_ne_bytes(), bytes(&cfg.to_c()), MapFlags::ANY)
            .map_err(lib("wg_sessions"))
    }

    /// Removes a session's settings and rules.
    pub fn remove_session(&self, cgid: u64) {
        let _ = self.sessions.delete(&cgid.to_ne_bytes());
        let keys: Vec<Vec<u8>> = self
            .rules
            .keys()
            .filter(|k| {
                let mut key = types::wg_rule_key::default();
                plain::copy_from_bytes(&mut key, k).is_ok() && key.session == cgid
            })
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
        let sum = |i: types::wg_counter| -> u64 {
            self.counters
                .lookup_percpu(&i.0.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| {
                    v.iter()
                        .filter_map(|c| c.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
                        .sum()
                })
                .unwrap_or(0)
        };
        (
            sum(types::wg_counter::WG_COUNT_LOST),
            sum(types::wg_counter::WG_COUNT_DECISIONS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_decodes_through_the_generated_type() {
        let mut e = types::wg_event {
            session: 7,
            ino: 42,
            pid: 1234,
            kind: types::wg_kind::WG_K_MMAP.0,
            verdict: 1,
            reason: types::wg_reason::WG_R_DENIED.0,
            rule: 3,
            hash: [0xab; 32],
            ..Default::default()
        };
        for (d, c) in e.comm.iter_mut().zip(b"curl\0") {
            *d = *c as i8;
        }
        for (d, c) in e.name.iter_mut().zip(b"c2\0") {
            *d = *c as i8;
        }
        let b = bytes(&e);
        let got = Event::parse(b).expect("full record");
        assert_eq!((got.session, got.ino, got.pid, got.rule), (7, 42, 1234, 3));
        assert_eq!(got.kind_str(), "mmap");
        assert_eq!(got.reason_str(), "its content's hash is denied");
        assert_eq!(got.hash, Some([0xab; 32]));
        assert_eq!((got.comm.as_str(), got.name.as_str()), ("curl", "c2"));
        assert!(Event::parse(&b[..b.len() - 1]).is_none());
        let zero = types::wg_event::default();
        assert_eq!(Event::parse(bytes(&zero)).map(|e| e.hash), Some(None));
    }

    #[test]
    fn constants_come_from_the_header() {
        assert_eq!((MODE_DENYLIST, MODE_ALLOWLIST), (0, 1));
        assert_eq!((F_DENY, F_ALLOW, F_BUILDER), (1, 2, 4));
        assert_eq!(std::mem::size_of::<types::wg_rule_key>(), 40);
    }
}
