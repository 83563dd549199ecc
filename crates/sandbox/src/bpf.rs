//! Seccomp programs compiled ahead of time: libseccomp generates the BPF in the supervisor
//! ([`Program::export`], the very program `seccomp_load` would generate: both call its one
//! generator), and the agent process only hands the finished program to `seccomp(2)`
//! ([`Program::load`]) — no libseccomp, no allocation, no feature probes in the child.
//!
//! [`Program::load`] does what `seccomp_load` does for warden's filters (libseccomp 2.5,
//! default attributes): `PR_SET_NO_NEW_PRIVS`, then `seccomp(SECCOMP_SET_MODE_FILTER)` with
//! no flag, or `SECCOMP_FILTER_FLAG_NEW_LISTENER` for a filter with notify rules (then the
//! listener fd is returned). No TSYNC: the agent is single-threaded when it loads.
//!
//! [`Pending`] builds a program on a thread while the supervisor does other set-up work.

use libseccomp::ScmpFilterContext;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread::JoinHandle;

/// A compiled seccomp BPF program (native architecture).
#[derive(Clone)]
pub struct Program {
    insns: Vec<libc::sock_filter>,
}

/// Exporting a libseccomp filter failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("seccomp: export: {0}")]
    Seccomp(#[from] libseccomp::error::SeccompError),
    #[error("seccomp: export buffer: {0}")]
    Io(#[from] std::io::Error),
    #[error("seccomp: export: {0} bytes is not a whole BPF program")]
    Length(usize),
}

impl Program {
    /// The BPF program libseccomp generates for `ctx` (what `ctx.load()` would load).
    pub fn export(ctx: &ScmpFilterContext) -> Result<Program, ExportError> {
        // libseccomp 2.5 exports to an fd only (`seccomp_export_bpf_mem` is 2.6).
        // SAFETY: memfd_create with a static NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"warden-bpf".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a fresh fd we own.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        ctx.export_bpf(&file)?;
        file.rewind()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Program::from_bytes(&bytes)
    }

    /// A program from its raw bytes (`struct sock_filter` array, native endian).
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ExportError> {
        const N: usize = std::mem::size_of::<libc::sock_filter>();
        if bytes.is_empty() || !bytes.len().is_multiple_of(N) || bytes.len() / N > u16::MAX as usize
        {
            return Err(ExportError::Length(bytes.len()));
        }
        let insns = bytes
            .chunks_exact(N)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Program { insns })
    }

    /// The raw bytes (`struct sock_filter` array, native endian), as [`Program::from_bytes`]
    /// takes them and the kernel returns them (`PTRACE_SECCOMP_GET_FILTER`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * 8);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Loads the program into the calling thread as `seccomp_load` would: sets no_new_privs,
    /// then `seccomp(SECCOMP_SET_MODE_FILTER)`; with `listener`, asks for a user-notification
    /// listener and returns it. Safe to call in a forked child: it allocates nothing.
    pub fn load(&self, listener: bool) -> std::io::Result<Option<OwnedFd>> {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let prog = libc::sock_fprog {
            // `from_bytes` bounds the length to u16.
            len: self.insns.len() as libc::c_ushort,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        let flags: libc::c_ulong = if listener {
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            0
        };
        // SAFETY: `prog` points at our instructions, alive for the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if !listener {
            return Ok(None);
        }
        // SAFETY: with NEW_LISTENER, a non-negative return is a fresh listener fd we own.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }))
    }
}

/// Serializes the libseccomp builds of [`Pending`] threads.
static LIBSECCOMP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where finished programs are kept between sessions ([`set_cache_dir`]); unset: none are.
static CACHE_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Keeps the programs [`Pending::cached`] builds in `dir` (warden's state directory, which
/// no sandbox can write), so later sessions load them instead of building them again:
/// libseccomp's build of warden's two filters costs ~0.7 ms of CPU per session. A program
/// is used only by the very binary that wrote it, on the kernel it was written on (see
/// [`identity`]); anything else about the file (owner, mode, a link, a size) that is not as
/// written makes it a miss, and the program is built as before.
pub fn set_cache_dir(dir: std::path::PathBuf) {
    let _ = CACHE_DIR.set(dir);
}

const CACHE_MAGIC: &[u8; 8] = b"wbpf\x02\0\0\0";

/// SHA-256 of a cache entry's identity and program: a file cut short (even at an
/// instruction boundary) or changed in any bit is a miss, never a shorter filter. (An
/// integrity check, not a signature: what keeps the agent from writing a matching file is
/// that no sandbox can write warden's state directory; the policy loader refuses a writable
/// root there, `warden_session::config::check_writable_roots`.)
fn cache_digest(id: &[u8], prog: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update((id.len() as u64).to_le_bytes());
    h.update(id);
    h.update((prog.len() as u64).to_le_bytes());
    h.update(prog);
    h.finalize().into()
}

/// What a cached program is valid for: this executable (device, inode, size, change time:
/// any rebuild or replacement differs) and the running kernel's release.
fn identity() -> Option<&'static [u8]> {
    static ID: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe").ok()?;
        // SAFETY: uname fills the struct we pass.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::uname(&mut u) } != 0 {
            return None;
        }
        // SAFETY: uname NUL-terminates its fields.
        let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
        Some(
            format!(
                "exe {}:{}:{}:{}.{} kernel {}",
                m.dev(),
                m.ino(),
                m.size(),
                m.ctime(),
                m.ctime_nsec(),
                rel.to_string_lossy()
            )
            .into_bytes(),
        )
    })
    .as_deref()
}

fn cache_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.bpf"))
}

/// The program cached as `name` in `dir` for this binary and kernel, if the file is one
/// this user wrote and no one else can have changed.
pub fn cache_load(dir: &std::path::Path, name: &str) -> Option<Program> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let id = identity()?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(cache_file(dir, name))
        .ok()?;
    let m = f.metadata().ok()?;
    // SAFETY: trivial getter.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_file() || m.uid() != me || m.mode() & 0o022 != 0 || m.len() > 1 << 20 {
        return None;
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut bytes).ok()?;
    let rest = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (n, rest) = rest.split_first_chunk::<4>()?;
    let n = u32::from_le_bytes(*n) as usize;
    if rest.len() < n || &rest[..n] != id {
        return None;
    }
    let (plen, rest) = rest[n..].split_first_chunk::<4>()?;
    let (digest, prog) = rest.split_first_chunk::<32>()?;
    if prog.len() != u32::from_le_bytes(*plen) as usize || *digest != cache_digest(id, prog) {
        return None;
    }
    Program::from_bytes(prog).ok()
}

/// Keeps `p` as `name` in `dir` for [`cache_load`] (written aside, then renamed: a reader
/// sees the old file or the new one). Failures only cost the next session a build.
pub fn cache_store(dir: &std::path::Path, name: &str, p: &Program) {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(id) = identity() else { return };
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let prog = p.to_bytes();
    let mut out = Vec::with_capacity(48 + id.len() + prog.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&(prog.len() as u32).to_le_bytes());
    out.extend_from_slice(&cache_digest(id, &prog));
    out.extend_from_slice(&prog);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&out));
    if written.is_err() || std::fs::rename(&tmp, cache_file(dir, name)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// A program being built on a thread; [`Pending::wait`] joins it. Join before forking:
/// the launcher forks with the supervisor's one thread.
pub struct Pending<K> {
    key: K,
    state: State,
}

enum State {
    Running(JoinHandle<Result<Program, String>>),
    /// No thread could be started: built inline.
    Done(Result<Program, String>),
}

impl<K: PartialEq> Pending<K> {
    /// Builds `build()` on a new thread (inline if no thread can be started); `key`
    /// identifies what was asked for.
    pub fn spawn(
        key: K,
        build: impl FnOnce() -> Result<Program, String> + Send + Clone + 'static,
    ) -> Self {
        // libseccomp keeps process-wide state (its feature probes): one build at a time.
        let locked = move || {
            let _one = LIBSECCOMP.lock().unwrap_or_else(|p| p.into_inner());
            build()
        };
        let state = match std::thread::Builder::new()
            .name("warden-bpf".into())
            .spawn(locked.clone())
        {
            Ok(h) => State::Running(h),
            Err(_) => State::Done(locked()),
        };
        Pending { key, state }
    }

    /// [`Pending::spawn`], through the program cache ([`set_cache_dir`]): a program cached
    /// as `name` for this binary is taken at once, without a thread; one built is kept.
    /// `name` must say everything the program depends on besides the binary (`key` too).
    pub fn cached(
        key: K,
        name: String,
        build: impl FnOnce() -> Result<Program, String> + Send + Clone + 'static,
    ) -> Self {
        let Some(dir) = CACHE_DIR.get() else {
            return Pending::spawn(key, build);
        };
        if let Some(p) = cache_load(dir, &name) {
            return Pending {
                key,
                state: State::Done(Ok(p)),
            };
        }
        let dir = dir.clone();
        Pending::spawn(key, move || {
            let p = build()?;
            cache_store(&dir, &name, &p);
            Ok(p)
        })
    }

    /// Whether this is the program for `key`.
    pub fn is_for(&self, key: &K) -> bool {
        &self.key == key
    }

    /// The built program, or the build's error (a panicked build is an error too).
    pub fn wait(self) -> Result<Program, String> {
        match self.state {
            State::Running(h) => h
                .join()
                .unwrap_or_else(|_| Err("seccomp: the filter build panicked".into())),
            State::Done(r) => r,
        }
    }
}

/// The filters a child process ends up with after `load` (most recent first), read back
/// from the kernel (`PTRACE_SECCOMP_GET_FILTER`, needs `CAP_SYS_ADMIN`); `None` when that
/// is not possible here. For tests that compare a precompiled load with libseccomp's own.
#[doc(hidden)]
pub fn loaded_filters(load: &dyn Fn() -> bool) -> Option<Vec<Vec<u8>>> {
    // SAFETY: the child only runs `load` and syscalls, then _exits; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        // SAFETY: child side of the fork; never returns.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            let ok = load();
            libc::raise(libc::SIGSTOP);
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut out = Vec::new();
    if libc::WIFSTOPPED(status) {
        let mut buf = vec![
            libc::sock_filter {
                code: 0,
                jt: 0,
                jf: 0,
                k: 0
            };
            4096
        ];
        for idx in 0.. {
            // SAFETY: the child is stopped under our trace; buf holds 4096 instructions.
            let n = unsafe {
                libc::ptrace(
                    0x420c, // PTRACE_SECCOMP_GET_FILTER
                    pid,
                    idx as *mut libc::c_void,
                    buf.as_mut_ptr() as *mut libc::c_void,
                )
            };
            if n <= 0 {
                break;
            }
            out.push(
                Program {
                    insns: buf[..n as usize].to_vec(),
                }
                .to_bytes(),
            );
        }
    }
    // SAFETY: our child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached program comes back as stored, for this binary only, and a file anyone but
    /// its writer could have changed, a link, or a truncated one is a miss.
    #[test]
    fn the_program_cache_serves_only_what_this_binary_stored() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("warden-bpfcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let prog = crate::filter::compile(false).expect("compile");
        assert!(cache_load(&d, "t").is_none(), "nothing stored yet");
        cache_store(&d, "t", &prog);
        let back = cache_load(&d, "t").expect("stored program loads");
        assert_eq!(back.to_bytes(), prog.to_bytes());
        let f = d.join("t.bpf");
        let bytes = std::fs::read(&f).unwrap();
        // Another binary's (or kernel's) identity.
        let mut other = bytes.clone();
        let at = CACHE_MAGIC.len() + 4;
        other[at] ^= 1;
        std::fs::write(&f, &other).unwrap();
        assert!(cache_load(&d, "t").is_none(), "another identity is a miss");
        // Truncated mid-instruction, and at an instruction boundary (a shorter program that
        // would still parse: the length and digest refuse it).
        std::fs::write(&f, &bytes[..bytes.len() - 3]).unwrap();
        assert!(cache_load(&d, "t").is_none(), "a torn program is a miss");
        std::fs::write(&f, &bytes[..bytes.len() - 8 * 5]).unwrap();
        assert!(
            cache_load(&d, "t").is_none(),
            "a shortened program is a miss"
        );
        // One instruction changed (RET ALLOW where it said otherwise), length kept.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x7f;
        std::fs::write(&f, &flipped).unwrap();
        assert!(cache_load(&d, "t").is_none(), "a changed program is a miss");
        // The same cut with the length field adjusted: the digest still refuses it.
        let mut cut = bytes[..bytes.len() - 8].to_vec();
        let at_len = CACHE_MAGIC.len() + 4 + identity().unwrap().len();
        let n = u32::from_le_bytes(cut[at_len..at_len + 4].try_into().unwrap()) - 8;
        cut[at_len..at_len + 4].copy_from_slice(&n.to_le_bytes());
        std::fs::write(&f, &cut).unwrap();
        assert!(
            cache_load(&d, "t").is_none(),
            "a re-lengthed program is a miss"
        );
        // Writable by the group.
        std::fs::write(&f, &bytes).unwrap();
        assert!(cache_load(&d, "t").is_some());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(
            cache_load(&d, "t").is_none(),
            "a group-writable file is a miss"
        );
        // A link to a good copy.
        std::fs::write(d.join("good"), &bytes).unwrap();
        std::fs::set_permissions(d.join("good"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(d.join("good"), &f).unwrap();
        assert!(cache_load(&d, "t").is_none(), "a symlink is a miss");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The precompiled sandbox filter is, instruction for instruction, what libseccomp's
    /// own load puts in the kernel, for both variants.
    #[test]
    fn precompiled_sandbox_filter_is_what_libseccomp_loads() {
        for deny_udp in [false, true] {
            let prog = crate::filter::compile(deny_udp).expect("compile");
            let ours = loaded_filters(&|| prog.load(false).is_ok());
            let theirs = loaded_filters(&|| {
                // SAFETY: plain prctl (libseccomp sets it too; explicit for clarity).
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                crate::filter::install(deny_udp).is_ok()
            });
            let Some(theirs) = theirs else {
                eprintln!("skipped: PTRACE_SECCOMP_GET_FILTER unavailable");
                return;
            };
            let ours = ours.expect("the precompiled program loads");
            assert_eq!(ours.len(), 1);
            assert_eq!(ours, theirs, "deny_udp={deny_udp}");
            assert_eq!(ours[0], prog.to_bytes());
            assert!(prog.len() > 100, "{}", prog.len());
        }
        // The two variants differ (the UDP rules).
        assert_ne!(
            crate::filter::compile(false).expect("compile").to_bytes(),
            crate::filter::compile(true).expect("compile").to_bytes()
        );
    }

    #[test]
    fn from_bytes_round_trips_and_refuses_partial_programs() {
        let p = crate::filter::compile(true).expect("compile");
        let b = p.to_bytes();
        assert_eq!(Program::from_bytes(&b).expect("bytes").to_bytes(), b);
        assert!(Program::from_bytes(&b[..b.len() - 3]).is_err());
        assert!(Program::from_bytes(&[]).is_err());
    }
}
