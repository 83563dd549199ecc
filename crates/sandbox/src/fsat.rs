//! File operations for warden code that runs with more authority than the agent (the
//! sandbox's init, which holds every capability of the user namespace; the supervisor on the
//! host) and acts on paths the agent can write.
//!
//! The rule this module enforces: never resolve an agent-writable path. Everything starts
//! from a directory fd opened once (the workspace, before the agent runs) and walks down with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`; what was opened
//! is `fstat`ed and checked (a real directory or a regular file, on the expected device);
//! files are removed only with `unlinkat` relative to such a verified directory fd; and
//! mounts are made with the new mount API on fds (`open_tree` + `move_mount`), so no path is
//! resolved at mount time either.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A relative path with only normal components (no `..`, no root, no `.`), or an error.
pub fn relative(p: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a plain relative path", p.display()),
                ))
            }
        }
    }
    Ok(out)
}

/// Opens a directory by absolute path (once, before the agent can race it).
pub fn open_root(p: &Path) -> io::Result<OwnedFd> {
    let c = cstr(p.as_os_str())?;
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`open_root`], then held to the (device, inode) the plan recorded for `p`
/// ([`crate::plan::Plan::root_id`]; `None`: not recorded, no check): a root swapped since
/// the plan was checked (by a concurrent session's agent) is refused, so nothing is locked,
/// pinned or created in the directory put there instead.
pub fn open_root_as(p: &Path, want: Option<(u64, u64)>) -> io::Result<OwnedFd> {
    let fd = open_root(p)?;
    if let Some((dev, ino)) = want {
        let st = fstat(fd.as_fd())?;
        if (st.st_dev, st.st_ino) != (dev, ino) {
            return Err(io::Error::other(format!(
                "{} is not the directory the plan checked (another was put there while the session started: by a concurrent session's agent?)",
                p.display()
            )));
        }
    }
    Ok(fd)
}

/// `openat2` beneath `dir`, refusing symlinks and magic links anywhere in `rel`.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let mut rel = relative(rel)?;
    if rel.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "NUL"));
    }
    if rel.as_os_str().is_empty() {
        rel = PathBuf::from(".");
    }
    Ok(warden_sys::open_beneath(
        dir,
        &rel,
        warden_sys::OFlags::from_bits_retain(flags as u32),
        warden_sys::Mode::from_raw_mode(mode),
    )?)
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a borrowed open fd and `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` for a single component.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat> {
    let c = single(name)?;
    // SAFETY: fstatat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is a borrowed open fd, `c` a NUL-terminated name, `st` a writable stat.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn single(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a single file name", name.to_string_lossy()),
        ));
    }
    cstr(name)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn wrong(what: &str, rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: not {what}", rel.display()),
    )
}

/// Opens a real directory beneath `dir` (`O_PATH` when `path_only`), on device `dev` if given.
pub fn open_dir(
    dir: BorrowedFd<'_>,
    rel: &Path,
    path_only: bool,
    dev: Option<u64>,
) -> io::Result<OwnedFd> {
    let flags = libc::O_DIRECTORY
        | if path_only {
            libc::O_PATH
        } else {
            libc::O_RDONLY
        };
    let fd = open_beneath(dir, rel, flags, 0)?;
    let st = fstat(fd.as_fd())?;
    if !is_dir(&st) {
        return Err(wrong("a directory", rel));
    }
    if dev.is_some_and(|d| d != st.st_dev) {
        return Err(wrong("on the workspace's file system", rel));
    }
    Ok(fd)
}

/// Opens a regular file beneath `dir` with `flags` (no O_CREAT), on device `dev` if given.
pub fn open_file(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: i32,
    dev: Option<u64>,
) -> io::Result<OwnedFd> {
    // (openat2 refuses any flag beyond O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC with O_PATH.)
    let nb = if flags & libc::O_PATH != 0 {
        0
    } else {
        libc::O_NONBLOCK
    };
    let fd = open_beneath(dir, rel, flags | nb, 0)?;
    let st = fstat(fd.as_fd())?;
    if !is_reg(&st) {
        return Err(wrong("a regular file", rel));
    }
    if dev.is_some_and(|d| d != st.st_dev) {
        return Err(wrong("on the workspace's file system", rel));
    }
    Ok(fd)
}

/// Creates (`mkdirat`) every missing directory of `rel` beneath `dir`, one verified
/// component at a time; returns the innermost directory's fd and the paths it made
/// (relative to `dir`, outermost first).
pub fn mkdir_all(
    dir: BorrowedFd<'_>,
    rel: &Path,
    dev: Option<u64>,
) -> io::Result<(OwnedFd, Vec<PathBuf>)> {
    let (fd, made) = mkdir_all_as(dir, rel, dev, None)?;
    Ok((fd, made.into_iter().map(|(p, _)| p).collect()))
}

/// [`mkdir_all`], each directory it makes marked with `token` as it appears ([`make_marked`]);
/// with each path made, whether it carries the mark.
pub fn mkdir_all_marked(
    dir: BorrowedFd<'_>,
    rel: &Path,
    dev: Option<u64>,
    token: &str,
) -> io::Result<(OwnedFd, Vec<(PathBuf, bool)>)> {
    mkdir_all_as(dir, rel, dev, Some(token))
}

fn mkdir_all_as(
    dir: BorrowedFd<'_>,
    rel: &Path,
    dev: Option<u64>,
    token: Option<&str>,
) -> io::Result<(OwnedFd, Vec<(PathBuf, bool)>)> {
    let rel = relative(rel)?;
    let mut cur = open_dir(dir, Path::new(""), true, dev)?;
    let mut made = Vec::new();
    let mut sofar = PathBuf::new();
    for c in rel.components() {
        let name = c.as_os_str();
        sofar.push(name);
        let r = match token {
            // A directory already there is opened as it is (no temporary name made and
            // removed for nothing).
            Some(t) => match open_dir(cur.as_fd(), Path::new(name), true, dev) {
                Ok(d) => {
                    cur = d;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    make_marked(cur.as_fd(), name, true, t)
                }
                Err(e) => Err(e),
            },
            None => match mkdir_at(cur.as_fd(), name, 0o755) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(None),
                r => r.map(|()| Some(false)),
            },
        };
        match r {
            Ok(Some(marked)) => made.push((sofar.clone(), marked)),
            Ok(None) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("mkdir {}: {e}", sofar.display()),
                ))
            }
        }
        cur = open_dir(cur.as_fd(), Path::new(name), true, dev)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", sofar.display())))?;
    }
    Ok((cur, made))
}

/// Creates an empty regular file `name` in `dir` (`O_EXCL`); false when it already existed.
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match open_beneath(
        dir,
        Path::new(name),
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
        0o644,
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The extended attribute that marks what warden made as a placeholder; its value is the
/// session's token ([`token`]). The agent cannot set or copy one (the sandbox's seccomp filter
/// refuses every xattr write), so a marked path was made by warden.
pub const MARK: &str = "user.warden.placeholder";

/// 16 random hex digits: a session's token for [`make_marked`] (names and marks the agent
/// cannot make in advance).
pub fn token() -> String {
    format!("{:016x}", random64())
}

/// The name under which [`make_marked`] makes `name` before renaming it into place.
pub fn marked_temp(name: &OsStr, token: &str) -> OsString {
    // Within NAME_MAX (255 bytes): a long name is cut (two long names that share the cut
    // prefix are never made at once: each is renamed away before the next is made).
    let suffix = format!(".warden-{token}");
    let keep = 255usize.saturating_sub(1 + suffix.len());
    let b = name.as_bytes();
    let mut s = OsString::from(".");
    s.push(OsStr::from_bytes(&b[..b.len().min(keep)]));
    s.push(suffix);
    s
}

fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = single(name)?;
    // SAFETY: mkdirat relative to a verified directory fd, a NUL-terminated single name.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks the open file or directory `fd` with `token` ([`MARK`]); `Ok(false)` on a file
/// system without user xattrs.
fn mark(fd: BorrowedFd<'_>, token: &str) -> io::Result<bool> {
    let n = cstr(OsStr::new(MARK))?;
    // SAFETY: fsetxattr on an open fd with a NUL-terminated name and a buffer of its length.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            token.as_ptr().cast(),
            token.len(),
            0,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

/// `/proc/self/fd/<dir>/<name>`: `name` in the verified directory fd `dir`, for the
/// `*xattr` calls, which have no `*at` form before Linux 6.13. Used only with the `l`
/// variants (the last component is not followed).
fn proc_fd_path(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<CString> {
    let n = single(name)?;
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(n.as_bytes());
    CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
}

/// Makes `name` in `dir` (an empty regular file, or a directory) already marked with `token`
/// when it appears: made as [`marked_temp`], marked ([`MARK`]), then renamed into place
/// without replacing anything (`RENAME_NOREPLACE`). A process killed at any point leaves
/// either a temporary name or a marked placeholder, both of which a later sweep can tell from
/// the user's own files. `Ok(None)`: `name` already existed (nothing made); `Ok(Some(m))`:
/// made, and `m` whether it carries the mark (a file system without user xattrs: not).
pub fn make_marked(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    is_dir: bool,
    token: &str,
) -> io::Result<Option<bool>> {
    let tmp = marked_temp(name, token);
    // Made here (a clash on the temporary name is an error, and what is there is not ours).
    let marked = if is_dir {
        mkdir_at(dir, &tmp, 0o755)?;
        // Marked through a descriptor, and only while empty: a directory swapped in under
        // the temporary name (by a concurrent session's agent that can write here, which
        // can read the token from the name) is not marked and not placed.
        open_dir(dir, Path::new(&tmp), false, None).and_then(|fd| {
            if !list(fd.as_fd())?.is_empty() {
                return Err(io::Error::other(format!(
                    "{}: another process put files in it while warden made it",
                    Path::new(&tmp).display()
                )));
            }
            mark(fd.as_fd(), token)
        })
    } else {
        let fd = open_beneath(
            dir,
            Path::new(&tmp),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
        )?;
        mark(fd.as_fd(), token)
    };
    let placed = marked.and_then(|m| rename_noreplace(dir, &tmp, name).map(|()| m));
    let e = match placed {
        Ok(m) => return Ok(Some(m)),
        Err(e) => e,
    };
    let _ = unlink_at(dir, &tmp, is_dir);
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(None),
        // A file system without RENAME_NOREPLACE: made in place, then marked (a process
        // killed between the two leaves an unmarked placeholder, which no sweep removes: the
        // user's own empty file looks the same).
        Some(libc::EINVAL) => {
            let made = if is_dir {
                match mkdir_at(dir, name, 0o755) {
                    Ok(()) => true,
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
                    Err(e) => return Err(e),
                }
            } else {
                create_file(dir, name)?
            };
            if !made {
                return Ok(None);
            }
            let fd = if is_dir {
                open_dir(dir, Path::new(name), false, None)?
            } else {
                open_file(dir, Path::new(name), libc::O_WRONLY, None)?
            };
            mark(fd.as_fd(), token).map(Some)
        }
        _ => Err(e),
    }
}

/// Whether `name` in `dir` carries [`MARK`] with the value `token` (read without following
/// a symlink there; any error reads as unmarked).
pub fn is_marked(dir: BorrowedFd<'_>, name: &OsStr, token: &str) -> bool {
    mark_of(dir, name).is_some_and(|m| m == token)
}

/// The [`MARK`] `name` in `dir` carries (read without following a symlink there); `None`
/// when unmarked or unreadable.
pub fn mark_of(dir: BorrowedFd<'_>, name: &OsStr) -> Option<String> {
    let path = proc_fd_path(dir, name).ok()?;
    let attr = cstr(OsStr::new(MARK)).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: lgetxattr with NUL-terminated strings into a buffer of its length.
    let r = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            attr.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (r > 0)
        .then(|| String::from_utf8(buf[..r as usize].to_vec()).ok())
        .flatten()
}

/// `renameat2(dir, from, dir, to, RENAME_NOREPLACE)`: `EEXIST` when `to` exists.
pub fn rename_noreplace(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rename2_in(dir, from, to, libc::RENAME_NOREPLACE)
}

/// `renameat2(dir, a, dir, b, flags)` for two single names in a verified directory fd.
fn rename2_in(dir: BorrowedFd<'_>, a: &OsStr, b: &OsStr, flags: libc::c_uint) -> io::Result<()> {
    let (x, y) = (single(a)?, single(b)?);
    // SAFETY: renameat2 relative to one directory fd, NUL-terminated single names.
    let r = unsafe {
        libc::renameat2(
            dir.as_raw_fd(),
            x.as_ptr(),
            dir.as_raw_fd(),
            y.as_ptr(),
            flags,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `renameat(dir, from, dir, to)` for two single names in a verified directory fd (nothing
/// is resolved through a path; `to` is replaced).
pub fn rename_in(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    let (f, t) = (single(from)?, single(to)?);
    // SAFETY: renameat relative to one directory fd, NUL-terminated single names.
    if unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `renameat2(dir, a, dir, b, RENAME_EXCHANGE)`: the two names swap atomically.
pub fn exchange_in(dir: BorrowedFd<'_>, a: &OsStr, b: &OsStr) -> io::Result<()> {
    rename2_in(dir, a, b, libc::RENAME_EXCHANGE)
}

/// A name in `dir` for a file or directory warden makes before renaming it into place, or
/// for one it moves aside: `.<name>.warden-<16 random hex digits>`, which the agent cannot
/// make in advance (attack review 62: with the pid and a counter, it made them all first,
/// and every replacement failed).
pub fn aside_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".warden-{:016x}", random64()));
    s
}

fn random64() -> u64 {
    let mut r = [0u8; 8];
    // SAFETY: getrandom into a local buffer of its length.
    let n = unsafe { libc::getrandom(r.as_mut_ptr() as *mut libc::c_void, r.len(), 0) };
    if n != r.len() as isize {
        // No randomness: a name that still differs per call (the caller fails closed on a
        // clash).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        r = (t.as_nanos() as u64).to_le_bytes();
    }
    u64::from_le_bytes(r)
}

/// Replaces the regular file `name` in `dir` by a new file (a new inode) holding `content`,
/// renamed into place: whatever another process holds of the old file (an open fd, a hard
/// link elsewhere) no longer reaches what is at `name`. Returns the new file, opened
/// read-write.
pub fn replace_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    content: &[u8],
    mode: u32,
) -> io::Result<OwnedFd> {
    let tmp = aside_name(name);
    let f = open_beneath(
        dir,
        Path::new(&tmp),
        libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
        mode & 0o777,
    )?;
    let done = rewrite(f.as_fd(), content).and_then(|()| rename_in(dir, &tmp, name));
    if let Err(e) = done {
        let _ = unlink_at(dir, &tmp, false);
        return Err(e);
    }
    Ok(f)
}

/// Empties the directory `dir` (an fd on it): every entry removed, directories first emptied
/// through fds opened beneath it (no symlink followed, nothing on another device), at most
/// `depth` levels. Best effort: what cannot be removed stays.
pub fn empty_dir(dir: BorrowedFd<'_>, dev: Option<u64>, depth: usize) {
    let Ok(entries) = list_typed(dir) else { return };
    for (name, dt) in entries {
        let is_dir = match dt {
            DT_DIR => true,
            DT_UNKNOWN => lstat_at(dir, &name).is_ok_and(|st| is_dir(&st)),
            _ => false,
        };
        if is_dir && depth > 0 {
            if let Ok(sub) = open_dir(dir, Path::new(&name), false, dev) {
                empty_dir(sub.as_fd(), dev, depth - 1);
            }
        }
        let _ = unlink_at(dir, &name, is_dir);
    }
}

/// `unlinkat(dir, name)` (`AT_REMOVEDIR` for a directory): `dir` must be a verified fd.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let c = single(name)?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: unlinkat relative to a directory fd.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the entry `name` in `dir` (not followed) is the root of a mount: a bind mount of
/// the sandbox's locks and pins, which no removal may descend into. An error when the kernel
/// does not say.
pub fn is_mount_root_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let c = single(name)?;
    // SAFETY: statx into a zeroed struct, relative to a borrowed directory fd, a single name.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            &mut sx,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if sx.stx_attributes_mask & bit == 0 {
        return Err(io::Error::other("the kernel does not report mount roots"));
    }
    Ok(sx.stx_attributes & bit != 0)
}

/// Whether the directory `name` in `parent` may be removed whole by [`remove_tree`]: no
/// entry in it is a mount root ([`is_mount_root_at`]) and `keep` accepts no directory's
/// [`identity`] in it (its own included). Read-only, descriptor-relative, bounded as
/// [`remove_tree`] is; any error is a no.
pub fn tree_is_removable(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    dev: u64,
    budget: &mut usize,
    keep: &dyn Fn((u64, u64, i64, u32)) -> bool,
) -> bool {
    fn at(
        parent: BorrowedFd<'_>,
        name: &OsStr,
        dev: u64,
        budget: &mut usize,
        keep: &dyn Fn((u64, u64, i64, u32)) -> bool,
        depth: usize,
    ) -> io::Result<bool> {
        if depth > 64 || is_mount_root_at(parent, name)? {
            return Ok(false);
        }
        let d = open_dir(parent, Path::new(name), false, Some(dev))?;
        if keep(identity(d.as_fd())?) {
            return Ok(false);
        }
        for (n, t) in list_typed(d.as_fd())? {
            if *budget == 0 {
                return Ok(false);
            }
            *budget -= 1;
            let sub = match t {
                DT_DIR => true,
                DT_UNKNOWN => lstat_at(d.as_fd(), &n).is_ok_and(|st| is_dir(&st)),
                _ => false,
            };
            let ok = if sub {
                at(d.as_fd(), &n, dev, budget, keep, depth + 1)?
            } else {
                !is_mount_root_at(d.as_fd(), &n)?
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
    at(parent, name, dev, budget, keep, 0).unwrap_or(false)
}

/// Removes the directory `name` in `parent` and everything in it, descriptor-relative: each
/// directory is opened beneath its parent by its single name, no symlink followed, on `dev`;
/// each entry is unlinked by name in the directory it was listed from (a symlink itself,
/// never what it names). At most `*budget` entries (counted down), 64 levels deep; past
/// either, an error with what was removed so far gone.
pub fn remove_tree(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    dev: u64,
    budget: &mut usize,
) -> io::Result<()> {
    remove_tree_at(parent, name, dev, budget, 0)
}

fn remove_tree_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    dev: u64,
    budget: &mut usize,
    depth: usize,
) -> io::Result<()> {
    if depth > 64 {
        return Err(io::Error::other("deeper than 64 levels"));
    }
    let d = open_dir(parent, Path::new(name), false, Some(dev))?;
    for (n, t) in list_typed(d.as_fd())? {
        if *budget == 0 {
            return Err(io::Error::other("more entries than the budget"));
        }
        *budget -= 1;
        let sub = match t {
            DT_DIR => true,
            DT_UNKNOWN => lstat_at(d.as_fd(), &n).is_ok_and(|st| is_dir(&st)),
            _ => false,
        };
        if sub {
            remove_tree_at(d.as_fd(), &n, dev, budget, depth + 1)?;
        } else {
            unlink_at(d.as_fd(), &n, false)?;
        }
    }
    unlink_at(parent, name, true)
}

/// The entry names of a directory opened for reading (not `O_PATH`), without `.`/`..`.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    Ok(list_typed(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// Entry type from `readdir` (`d_type`); `DT_UNKNOWN` means: stat it to know.
pub const DT_DIR: u8 = libc::DT_DIR;
pub const DT_REG: u8 = libc::DT_REG;
pub const DT_UNKNOWN: u8 = libc::DT_UNKNOWN;

/// Like [`list`], with each entry's `d_type` (saves a stat per entry where the file system
/// reports it).
pub fn list_typed(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, u8)>> {
    // getdents64 straight on the fd (no dup + fdopendir + closedir: four syscalls fewer per
    // directory, which the workspace walks make thousands of times), from its start.
    // SAFETY: lseek on a borrowed open fd.
    if unsafe { libc::lseek(dir.as_raw_fd(), 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // One buffer per thread, reused: a fresh 32 KiB per directory was 8 pages to fault in
    // (and, in the supervisor right after the fork, to copy) thousands of times per walk.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 32 * 1024]);
    }
    BUF.with(|b| {
        let mut fresh = Vec::new();
        // (A nested call cannot happen today; it would get its own buffer.)
        let mut held = b.try_borrow_mut();
        let buf: &mut Vec<u8> = match held.as_deref_mut() {
            Ok(v) => v,
            Err(_) => {
                fresh.resize(32 * 1024, 0);
                &mut fresh
            }
        };
        let mut out = Vec::new();
        loop {
            // SAFETY: getdents64 writes at most buf.len() bytes into buf.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(out);
            }
            parse_dirents(&buf[..n as usize], &mut out)?;
        }
    })
}

/// The entries of a `getdents64` buffer (`struct linux_dirent64`: `d_ino` u64, `d_off` i64,
/// `d_reclen` u16, `d_type` u8, then the NUL-terminated name), without `.`/`..`. A record
/// that does not fit is an error, never a read past the buffer.
fn parse_dirents(buf: &[u8], out: &mut Vec<(OsString, u8)>) -> io::Result<()> {
    const NAME: usize = 19;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed getdents64 record");
    let mut off = 0;
    while off < buf.len() {
        let rec = buf.get(off..off + NAME).ok_or_else(bad)?;
        let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
        let d_type = rec[18];
        let name = buf.get(off + NAME..off + reclen).ok_or_else(bad)?;
        let len = name.iter().position(|&b| b == 0).ok_or_else(bad)?;
        let name = &name[..len];
        if name != b"." && name != b".." {
            out.push((OsStr::from_bytes(name).to_os_string(), d_type));
        }
        off += reclen;
    }
    Ok(())
}

/// Reads at most `max` bytes of an open file from its start.
pub fn read_to_vec(fd: BorrowedFd<'_>, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut off: i64 = 0;
    while out.len() < max {
        let want = buf.len().min(max - out.len());
        // SAFETY: pread into a stack buffer.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                want,
                off,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
        off += n as i64;
    }
    Ok(out)
}

/// Replaces the content of a file opened read-write (through its fd, never a path).
pub fn rewrite(fd: BorrowedFd<'_>, content: &[u8]) -> io::Result<()> {
    // SAFETY: ftruncate/pwrite on an open fd.
    unsafe {
        if libc::ftruncate(fd.as_raw_fd(), 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut off = 0usize;
        while off < content.len() {
            let n = libc::pwrite(
                fd.as_raw_fd(),
                content[off..].as_ptr() as *const libc::c_void,
                content.len() - off,
                off as i64,
            );
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            off += n as usize;
        }
    }
    Ok(())
}

/// Bind-mounts what `src` refers to onto what `target` refers to (both fds, no paths):
/// `open_tree(src, "", AT_EMPTY_PATH | OPEN_TREE_CLONE)`, optionally read-only
/// (`mount_setattr` on the detached copy), then `move_mount` onto `target`.
pub fn bind_fd(
    src: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> io::Result<()> {
    let empty = c"";
    let mut flags =
        OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as libc::c_uint | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: open_tree with an fd and an empty path.
    let tree = check(unsafe {
        libc::syscall(libc::SYS_open_tree, src.as_raw_fd(), empty.as_ptr(), flags)
    })?;
    // SAFETY: fresh fd.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    if readonly {
        mount_setattr(tree.as_fd(), MOUNT_ATTR_RDONLY, None, recursive)?;
    }
    // SAFETY: move_mount between two fds with empty paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Binds a directory or file onto itself (a mount point cannot be renamed or removed:
/// EBUSY), optionally read-only.
pub fn bind_self(fd: BorrowedFd<'_>, readonly: bool) -> io::Result<()> {
    bind_fd(fd, fd, false, readonly)
}

/// An inode's identity that survives inode-number reuse: (inode, birth time) where the file
/// system records birth times (ext4, xfs, btrfs, tmpfs), else (inode, 0).
pub fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, i64, u32)> {
    // SAFETY: statx into a zeroed struct on an fd with an empty path.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a borrowed open fd, the path is an empty C string (AT_EMPTY_PATH), `sx` a writable statx.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_INO | libc::STATX_BTIME,
            &mut sx,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let dev = libc::makedev(sx.stx_dev_major, sx.stx_dev_minor);
    let (bs, bn) = if sx.stx_mask & libc::STATX_BTIME != 0 {
        (sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec)
    } else {
        (0, 0)
    };
    Ok((dev, sx.stx_ino, bs, bn))
}

/// Opens the symlink `rel` itself beneath `dir` (`O_PATH`, never followed, no link on the way),
/// on device `dev` if given; returns it with its content. A mount can stand on it
/// ([`bind_fd`] with the same fd on both sides): the agent can then neither remove nor
/// rename it, nor put anything else in its place.
pub fn open_link(
    dir: BorrowedFd<'_>,
    rel: &Path,
    dev: Option<u64>,
) -> io::Result<(OwnedFd, PathBuf)> {
    let fd = open_beneath(dir, rel, libc::O_PATH, 0)?;
    let st = fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return Err(wrong("a symlink", rel));
    }
    if dev.is_some_and(|d| d != st.st_dev) {
        return Err(wrong("on the workspace's file system", rel));
    }
    let mut buf = [0u8; 4096];
    // SAFETY: readlinkat of the O_PATH fd itself (empty path) into a stack buffer.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, PathBuf::from(OsStr::from_bytes(&buf[..n as usize]))))
}

/// Reads a symlink's target (`readlinkat` on a verified parent fd), at most 4 KiB.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<PathBuf> {
    let c = single(name)?;
    let mut buf = [0u8; 4096];
    // SAFETY: readlinkat into a stack buffer.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PathBuf::from(OsStr::from_bytes(&buf[..n as usize])))
}

/// `statx` of what `fd` names itself (no symlink followed), asking for `mask`.
fn statx_fd(fd: BorrowedFd<'_>, mask: u32) -> io::Result<libc::statx> {
    // SAFETY: statx into a zeroed struct of the right type.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx on a borrowed fd with AT_EMPTY_PATH.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            mask,
            &mut st,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The id of the mount `fd` is on (`STATX_MNT_ID`).
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(statx_fd(fd, libc::STATX_MNT_ID)?.stx_mnt_id)
}

/// Whether what `fd` names is the root of a mount (`STATX_ATTR_MOUNT_ROOT`; `false` on a
/// kernel that does not report it, before 5.8).
pub fn is_mount_root(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = statx_fd(fd, libc::STATX_BASIC_STATS)?;
    let root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(st.stx_attributes_mask & root != 0 && st.stx_attributes & root != 0)
}

/// Makes the mount at `path` and every mount below it read-only, when `path` is a mount's
/// root (on any other path `mount_setattr` would act on the enclosing mount, here `/` and
/// every bind below it). `Ok(false)`: not a mount root, or a kernel without
/// `mount_setattr` (before 5.12).
pub fn readonly_tree(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: open with a valid C string; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if !is_mount_root(fd.as_fd())? {
        return Ok(false);
    }
    if let Err(e) = mount_setattr(fd.as_fd(), MOUNT_ATTR_RDONLY, None, true) {
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(true)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE])` setting `attr` (with `userns`,
/// the user namespace fd of an idmapping) on the mount `fd` is the root of, or on a
/// detached tree.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    attr: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> io::Result<()> {
    let a = MountAttr {
        attr_set: attr,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr on a borrowed fd with an empty path and a correctly sized struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_links_not_what_they_name() {
        let d = std::env::temp_dir().join(format!("warden-fsat-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("t/a/b")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/keep"), "x").unwrap();
        std::fs::write(d.join("t/a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("t/a/link")).unwrap();
        let root = open_root(&d).unwrap();
        let dev = fstat(root.as_fd()).unwrap().st_dev;
        let mut b = 100;
        assert!(tree_is_removable(
            root.as_fd(),
            OsStr::new("t"),
            dev,
            &mut b,
            &|_| false
        ));
        let keep = identity(
            open_dir(root.as_fd(), Path::new("t/a"), true, None)
                .unwrap()
                .as_fd(),
        )
        .unwrap();
        let mut b = 100;
        assert!(!tree_is_removable(
            root.as_fd(),
            OsStr::new("t"),
            dev,
            &mut b,
            &|id| id == keep
        ));
        // A budget too small: an error, never a partial walk past it.
        let mut small = 2;
        assert!(remove_tree(root.as_fd(), OsStr::new("t"), dev, &mut small).is_err());
        let mut budget = 100;
        remove_tree(root.as_fd(), OsStr::new("t"), dev, &mut budget).unwrap();
        assert!(!d.join("t").exists());
        assert!(d.join("outside/keep").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn beneath_refuses_symlinks_and_dotdot() {
        let d = std::env::temp_dir().join(format!("warden-fsat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("l")).unwrap();
        let root = open_root(&d).unwrap();
        assert!(open_dir(root.as_fd(), Path::new("a"), true, None).is_ok());
        assert!(open_dir(root.as_fd(), Path::new("l"), true, None).is_err());
        assert!(open_file(root.as_fd(), Path::new("l/passwd"), libc::O_RDONLY, None).is_err());
        assert!(open_dir(root.as_fd(), Path::new("../"), true, None).is_err());
        let (_, made) = mkdir_all(root.as_fd(), Path::new("a/b/c"), None).unwrap();
        assert_eq!(made, vec![PathBuf::from("a/b"), PathBuf::from("a/b/c")]);
        assert!(mkdir_all(root.as_fd(), Path::new("l/x"), None).is_err());
        assert!(!Path::new("/etc/x").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn list_typed_reads_every_entry_past_one_buffer() {
        let d = std::env::temp_dir().join(format!("warden-fsat-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        // More names than one 32 KiB getdents64 buffer holds.
        let long = "n".repeat(200);
        for i in 0..400 {
            std::fs::write(d.join(format!("{long}{i}")), b"").unwrap();
        }
        let dir = open_dir(open_root(&d).unwrap().as_fd(), Path::new(""), false, None).unwrap();
        for _ in 0..2 {
            // Twice: a second listing of the same fd starts from the beginning again.
            let mut got = list_typed(dir.as_fd()).unwrap();
            got.sort();
            let mut want: Vec<(OsString, u8)> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let t = if e.file_type().unwrap().is_dir() {
                        DT_DIR
                    } else {
                        DT_REG
                    };
                    (e.file_name(), t)
                })
                .collect();
            want.sort();
            assert_eq!(got, want);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn malformed_dirent_records_are_errors() {
        let mut out = Vec::new();
        // Too short for a header; a zero record length; a name without its NUL.
        assert!(parse_dirents(&[0u8; 10], &mut out).is_err());
        assert!(parse_dirents(&[0u8; 24], &mut out).is_err());
        let mut rec = [b'x'; 24];
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        assert!(parse_dirents(&rec, &mut out).is_err());
        rec[23] = 0;
        rec[18] = DT_REG;
        parse_dirents(&rec, &mut out).unwrap();
        assert_eq!(out, vec![(OsString::from("xxxx"), DT_REG)]);
    }
}
