//! Which parts of which file systems the agent can write, whatever name it reaches them by.
//!
//! Landlock's rules sit on inodes: a write root grants writes to every file below it in its
//! file system, through any mount that shows that part. A file reached by a name outside
//! every write root may still be one of those files: a bind mount the host made elsewhere of
//! the workspace, of a workspace subdirectory or of one workspace file; a file system mounted
//! inside the workspace and also elsewhere (attack reviews 85 and 86). [`Reach`] answers, for
//! a mount met while climbing from such a name by `..`, whether the part of its file system
//! that mount shows lies in a part the agent can write: below a write root in the same file
//! system (the root's path there, from `mountinfo`), or shown by a mount whose mount point is
//! inside a write root. Paths are compared as the kernel writes them in the agent's
//! `/proc/PID/mountinfo` (in the agent's root), file systems by the device `mountinfo`
//! names (the superblock's, also for btrfs subvolumes).

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One mount as the agent's `mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device of its file system (`major:minor`, as `makedev` packs it).
    pub sb: u64,
    /// The part of the file system it shows (its root there).
    pub shows: PathBuf,
    /// Where it is mounted, in the agent's root.
    pub at: PathBuf,
    /// Files whose bytes are its files' bytes: an overlay's layer directories, a loop
    /// device's backing file (see [`backing`]); as the mounter named them.
    pub backing: Vec<PathBuf>,
    /// Read-only: the mount (`ro` in its own options) or its file system (`ro` in the super
    /// options). Nothing is written through it: the agent can neither remount nor unmount
    /// (the sandbox refuses the mount family, and it holds no capability).
    pub read_only: bool,
    /// A file system whose bytes may change with no write through this kernel (FUSE, a
    /// network or host-shared one): what it is made of is not known.
    pub opaque: bool,
    /// The mount it is mounted on (`mountinfo`'s parent id).
    pub parent: u64,
}

/// `/proc/PID/mountinfo` by mount id. `None` when unreadable or malformed.
pub fn mountinfo(pid: u32) -> Option<HashMap<u64, Mount>> {
    parse_mountinfo(&std::fs::read(format!("/proc/{pid}/mountinfo")).ok()?)
}

/// Parses `mountinfo` text (see [`mountinfo`]).
pub fn parse_mountinfo(text: &[u8]) -> Option<HashMap<u64, Mount>> {
    let mut out = HashMap::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut f = line.split(|&b| b == b' ');
        let id: u64 = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
        let parent: u64 = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
        let dev = std::str::from_utf8(f.next()?).ok()?;
        let (major, minor) = dev.split_once(':')?;
        let sb = libc::makedev(major.parse().ok()?, minor.parse().ok()?);
        let shows = unescape(f.next()?);
        let at = unescape(f.next()?);
        if !shows.is_absolute() || !at.is_absolute() {
            return None;
        }
        let ro = |opts: &[u8]| opts.split(|&b| b == b',').any(|o| o == b"ro");
        let own_ro = ro(f.next()?);
        // Optional fields up to `-`, then the type, the source and the super options.
        let mut rest = f.skip_while(|x| *x != b"-").skip(1);
        let (fstype, source) = (rest.next()?, rest.next().unwrap_or_default());
        let options = rest.next().unwrap_or_default();
        let read_only = own_ro || ro(options);
        let opaque = fstype.starts_with(b"fuse")
            || [
                &b"nfs"[..],
                b"nfs4",
                b"cifs",
                b"smb3",
                b"9p",
                b"virtiofs",
                b"ceph",
                b"afs",
                b"glusterfs",
            ]
            .contains(&fstype);
        let backing = backing(
            fstype,
            source,
            options,
            major.parse().ok()?,
            minor.parse().ok()?,
        );
        out.insert(
            id,
            Mount {
                sb,
                shows,
                at,
                backing,
                read_only,
                opaque,
                parent,
            },
        );
    }
    Some(out)
}

/// A backing that cannot be named now (a loop device's unlinked file, a mount source that
/// no longer leads to a file): taken as writable, as a descriptor of the mounter's is
/// ([`backed_by_root`]).
const UNKNOWN_BACKING: &str = "/proc/self/fd/-";

/// `LOOP_MAJOR`: a loop device's block major.
const LOOP_MAJOR: u32 = 7;

/// What a mount's files are made of, besides its own device: an overlay's layers
/// (`lowerdir`, `lowerdir+`, `datadir+`, `upperdir` in its super options); a loop device's
/// backing file (`/sys/block/loopN/loop/backing_file`, by the mount's source `/dev/loopN` or
/// its device number; btrfs shows an anonymous one); a regular file mounted as it is (a
/// file-backed EROFS). A write root there makes the whole mount writable for the agent,
/// whatever the names (attack reviews 87 and 88: an overlay with a layer in the workspace,
/// an image in the workspace mounted elsewhere). Paths as the mounter gave them, in its
/// view (see [`Reach`] for how they are judged); a relative one is not known.
fn backing(fstype: &[u8], source: &[u8], options: &[u8], major: u32, minor: u32) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // A loop device's file, or [`UNKNOWN_BACKING`] when it has none that leads anywhere
    // now (unlinked, ` (deleted)`; renamed; no `/sys`).
    let loop_file = |dev: &str| {
        let f = std::fs::read(format!("/sys/{dev}/loop/backing_file")).ok()?;
        let f = PathBuf::from(OsString::from_vec(
            f.strip_suffix(b"\n").unwrap_or(&f).to_vec(),
        ));
        std::fs::metadata(&f)
            .is_ok_and(|m| m.is_file())
            .then_some(f)
    };
    let unknown = || PathBuf::from(UNKNOWN_BACKING);
    if fstype == b"overlay" {
        for o in options.split(|&b| b == b',') {
            let Some(eq) = o.iter().position(|&b| b == b'=') else {
                continue;
            };
            if matches!(
                &o[..eq],
                b"lowerdir" | b"lowerdir+" | b"datadir+" | b"upperdir"
            ) {
                out.extend(layers(&o[eq + 1..]));
            }
        }
    } else if let Some(name) = source.strip_prefix(b"/dev/loop") {
        let name = String::from_utf8_lossy(name);
        out.push(loop_file(&format!("block/loop{name}")).unwrap_or_else(unknown));
    } else if major == LOOP_MAJOR {
        out.push(loop_file(&format!("dev/block/{major}:{minor}")).unwrap_or_else(unknown));
    } else if source.starts_with(b"/proc/") || source.starts_with(b"/dev/fd/") {
        out.push(unescape(source));
    } else if source.starts_with(b"/") && !source.starts_with(b"/dev/") {
        // A file mounted as it is; a name that leads to no directory now may have been one
        // (the agent renamed its image between sessions: attack review 90).
        let f = unescape(source);
        match std::fs::metadata(&f) {
            Ok(m) if m.is_file() => out.push(f),
            Ok(m) if m.is_dir() => {}
            _ => out.push(unknown()),
        }
    }
    out
}

/// An overlay's layer list as `mountinfo` shows it: `:`-separated, a `:` inside a name
/// written `\:` by overlayfs (whose backslash `mountinfo` then writes `\134`).
fn layers(list: &[u8]) -> Vec<PathBuf> {
    let raw = unescape(list);
    let raw = raw.as_os_str().as_bytes();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\\' if i + 1 < raw.len() => {
                cur.push(raw[i + 1]);
                i += 2;
                continue;
            }
            b':' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut cur))));
                }
            }
            c => cur.push(c),
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(OsString::from_vec(cur)));
    }
    out
}

/// A `mountinfo` path field: space, tab, newline and backslash are written as `\ooo`.
fn unescape(b: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// What the climb needs of a file: its (device, inode), its mount (by the id `mountinfo`
/// gives it) and whether it is that mount's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub id: (u64, u64),
    pub mount: u64,
    pub mount_root: bool,
}

/// `statx` of `name` in `dir` (empty: `dir` itself), not following a last symbolic link.
/// `None` when the kernel does not tell the mount or whether it is its root.
pub fn place_at(dir: BorrowedFd<'_>, name: &CStr) -> Option<Place> {
    const MOUNT_ROOT: u64 = libc::STATX_ATTR_MOUNT_ROOT as u64;
    let want = libc::STATX_INO | libc::STATX_MNT_ID;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx relative to a descriptor we hold, a valid C string; `sx` is writable.
    let r = unsafe { libc::statx(dir.as_raw_fd(), name.as_ptr(), flags, want, &mut sx) };
    if r != 0 || sx.stx_mask & want != want || sx.stx_attributes_mask & MOUNT_ROOT == 0 {
        return None;
    }
    Some(Place {
        id: (
            libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
            sx.stx_ino,
        ),
        mount: sx.stx_mnt_id,
        mount_root: sx.stx_attributes & MOUNT_ROOT != 0,
    })
}

/// `path` in the root `root` with every symbolic link resolved (component by component,
/// `O_PATH|O_NOFOLLOW`, `..` kept at the root): the name the kernel would give it there. The
/// file is returned open. Errors: the file is missing (`ENOENT`), too many links (`ELOOP`),
/// or a component could not be looked at.
pub fn canonical_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
) -> std::io::Result<(PathBuf, Option<OwnedFd>)> {
    walk_in_root(root, path, &mut |_| false)
}

/// [`canonical_in_root`], calling `stop` with each file met that is not a link (every
/// directory on the way, then the file): `true` ends the walk there, with the path so far.
fn walk_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    stop: &mut dyn FnMut(BorrowedFd<'_>) -> bool,
) -> std::io::Result<(PathBuf, Option<OwnedFd>)> {
    use rustix::fs::{openat, readlinkat, Mode, OFlags};
    let comps = |p: &[u8]| -> Vec<OsString> {
        p.split(|&b| b == b'/')
            .rev()
            .map(|c| OsString::from_vec(c.to_vec()))
            .collect()
    };
    let mut todo = comps(path.as_os_str().as_bytes());
    let mut names: Vec<OsString> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            names.pop();
            fds.pop();
            continue;
        }
        let dir = fds.last().map_or(root, |d| d.as_fd());
        let fd = openat(
            dir,
            c.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            links += 1;
            if links > 40 {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = readlinkat(&fd, "", Vec::new())?;
            if target.as_bytes().starts_with(b"/") {
                names.clear();
                fds.clear();
            }
            todo.extend(comps(target.as_bytes()));
            continue;
        }
        let done = stop(fd.as_fd());
        names.push(c);
        fds.push(fd);
        if done {
            break;
        }
    }
    let mut p = PathBuf::from("/");
    p.extend(names);
    Ok((p, fds.pop()))
}

/// A write root as [`Reach`] compares it.
#[derive(Debug, Clone)]
pub struct Root {
    /// Its (device, inode).
    pub id: (u64, u64),
    /// Its path in the agent's root, links resolved.
    pub view: PathBuf,
    /// Its file system's device and its path there.
    pub fs: (u64, PathBuf),
    /// Whether warden's own view has the same directory at `view` (the workspace, bound at
    /// its own path; not the agent's private `/tmp` or home): a path the host named there
    /// is in it.
    pub host_same: bool,
}

/// The write roots of a session in one agent's view. `None` when one that is there could not
/// be looked at (missing ones are left out).
pub fn roots_in(pid: u32, roots: &[PathBuf]) -> Option<Vec<Root>> {
    let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
    let mut table = None;
    let mut out = Vec::new();
    for r in roots {
        let (view, fd) = match canonical_in_root(root.as_fd(), r) {
            Ok(found) => found,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(_) => return None,
        };
        let place = place_at(fd.as_ref().map_or(root.as_fd(), |f| f.as_fd()), c"")?;
        if table
            .as_ref()
            .is_none_or(|t: &HashMap<u64, Mount>| !t.contains_key(&place.mount))
        {
            table = Some(mountinfo(pid)?);
        }
        let m = table.as_ref()?.get(&place.mount)?;
        let fs = in_fs(m, &view)?;
        let host_same =
            std::fs::symlink_metadata(&view).is_ok_and(|h| (h.dev(), h.ino()) == place.id);
        out.push(Root {
            id: place.id,
            view,
            fs: (m.sb, fs),
            host_same,
        });
    }
    Some(out)
}

/// The agent's mount table and the parts of file systems it can write, kept for a session:
/// read again when the kernel reports a change (`poll` on `mountinfo` gives `POLLPRI` once
/// per change of the mount namespace), or names a mount it does not list yet. Each read
/// moves [`Reach::generation`], so answers derived from an older table can be dropped. The
/// agent's processes share one mount namespace (the sandbox refuses new ones): the first
/// process asked about names it.
#[derive(Debug, Default)]
pub struct Reach {
    src: Option<std::fs::File>,
    table: HashMap<u64, Mount>,
    parts: Option<Vec<(u64, PathBuf)>>,
    /// Every part ever found writable this session: it stays so. What a backing's name
    /// leads to is the agent's to change when the name passes through the workspace (a
    /// rename, a link, an unlink of an image it holds open), and `git init` makes the guard
    /// mount, which has the table read and judged again (attack review 89); the mount
    /// itself, and what it is made of, is the host's and does not change.
    ever: Vec<(u64, PathBuf)>,
    generation: u64,
    /// A writable mount inside a write root is made of bytes this could not place (see
    /// [`backing_parts`]): a file on a read-only mount may be written through it.
    hidden_writer: bool,
}

impl Reach {
    /// The table's generation after looking for a change (read when there is one). A
    /// failed look or read leaves the table empty, which [`Reach::writable`] reads again.
    pub fn generation(&mut self, pid: u32) -> u64 {
        let changed = match &self.src {
            None => true,
            Some(f) => {
                let mut p = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLPRI,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, no wait.
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                r != 0
            }
        };
        if changed {
            self.read(pid);
        }
        self.generation
    }

    fn read(&mut self, pid: u32) {
        use std::io::{Read, Seek};
        self.generation += 1;
        self.parts = None;
        self.table.clear();
        if self.src.is_none() {
            self.src = std::fs::File::open(format!("/proc/{pid}/mountinfo")).ok();
        }
        let mut text = Vec::new();
        let read = self
            .src
            .as_mut()
            .is_some_and(|f| f.rewind().is_ok() && f.read_to_end(&mut text).is_ok());
        match parse_mountinfo(&text).filter(|_| read) {
            Some(t) => self.table = t,
            None => self.src = None,
        }
    }

    /// Whether mount `mount` shows a part of its file system the agent can write through a
    /// write root (`roots`): below a root's path in that file system, or below what a mount
    /// inside a write root shows. `None` when the mount table is unreadable or does not list
    /// `mount`.
    pub fn writable(&mut self, pid: u32, roots: &[Root], mount: u64) -> Option<bool> {
        self.writable_below(pid, roots, mount, None)
    }

    /// The same for the file `name` (the kernel's name for it in the agent's root) on mount
    /// `mount`: its path in its file system (what the mount shows, joined with the rest of the
    /// name below the mount point) lies in a part the agent can write. This catches a
    /// directory or file the host bound *into* the workspace, reached by its own name
    /// outside (attack review 87): its mount there shows more than the part, not less.
    /// `None` also when `name` is not below the mount point.
    pub fn writable_file(
        &mut self,
        pid: u32,
        roots: &[Root],
        mount: u64,
        name: &Path,
    ) -> Option<bool> {
        self.writable_below(pid, roots, mount, Some(name))
    }

    /// Whether mount `mount` is read-only ([`Mount::read_only`]). `None` when the table
    /// does not list it.
    pub fn read_only(&mut self, pid: u32, mount: u64) -> Option<bool> {
        if !self.table.contains_key(&mount) {
            self.read(pid);
        }
        Some(self.table.get(&mount)?.read_only)
    }

    /// Whether a writable mount inside a write root is made of bytes that could not be placed
    /// ([`backing_parts`]): nothing on a read-only mount can be vouched for then.
    pub fn hidden_writer(&mut self, pid: u32, roots: &[Root]) -> Option<bool> {
        if self.table.is_empty() {
            self.read(pid);
        }
        let first = *self.table.keys().next()?;
        self.writable_below(pid, roots, first, None)?;
        Some(self.hidden_writer)
    }

    /// Every writable mount (id, mount point) that shows the file `name` on mount `mount`:
    /// one of its file system whose part holds the file's path there. The ways to write a
    /// file named on a read-only mount. `None` when the table does not list `mount` or
    /// `name` is not below its mount point.
    pub fn writable_mounts_showing(
        &mut self,
        pid: u32,
        mount: u64,
        name: &Path,
    ) -> Option<Vec<(u64, PathBuf)>> {
        if !self.table.contains_key(&mount) {
            self.read(pid);
        }
        let m = self.table.get(&mount)?;
        let path = in_fs(m, name)?;
        // A mount another one covers at its mount point is out of reach (no path leads
        // into it; the agent has no descriptor from before: the sandbox made the cover
        // before it ran): the host's home when it is a mount of its own, under the
        // agent's private home (attack review 91).
        Some(
            self.table
                .iter()
                .filter(|(_, o)| !o.read_only && o.sb == m.sb && path.starts_with(&o.shows))
                .filter(|(id, o)| !covered(&self.table, **id, o))
                .map(|(id, o)| (*id, o.at.clone()))
                .collect(),
        )
    }

    fn writable_below(
        &mut self,
        pid: u32,
        roots: &[Root],
        mount: u64,
        name: Option<&Path>,
    ) -> Option<bool> {
        if !self.table.contains_key(&mount) {
            self.read(pid);
        }
        if self.parts.is_none() {
            let ids = if self.table.values().any(|m| !m.backing.is_empty()) {
                ids_inside(pid, roots, &self.table)
            } else {
                HashSet::new()
            };
            let judge = |b: &Path| backed_by_root(b, roots, &ids);
            let mut found = parts(roots, &self.table, &self.ever, &judge);
            let (backed, unknown) = backing_parts(pid, roots, &self.table);
            self.hidden_writer = unknown;
            found.extend(backed);
            self.ever.clone_from(&found);
            self.parts = Some(found);
        }
        let m = self.table.get(&mount)?;
        let at = match name {
            Some(n) => in_fs(m, n)?,
            None => m.shows.clone(),
        };
        let parts = self.parts.as_ref()?;
        Some(parts.iter().any(|(sb, p)| *sb == m.sb && at.starts_with(p)))
    }
}

/// What the writable mounts inside a write root are made of (an overlay's layers, a loop
/// device's file), as parts of their own file systems: writing through such a mount writes
/// there (an overlay in the workspace whose upper layer is a directory the sandbox binds
/// read-only elsewhere; an image loop-mounted in the workspace: attack review 91). A name is
/// placed both in warden's view (a mount the host made) and in the agent's (one the sandbox
/// made: the package caches' overlays), each through its own mount table. `true` when one is
/// placed in neither, or the mount is [`Mount::opaque`].
fn backing_parts(
    pid: u32,
    roots: &[Root],
    table: &HashMap<u64, Mount>,
) -> (Vec<(u64, PathBuf)>, bool) {
    let agent_root = std::fs::File::open(format!("/proc/{pid}/root")).ok();
    let host_root = std::fs::File::open("/").ok();
    // Inside a root by its mount point's name, or by identity: a mount on a bind alias of
    // the workspace is written through the workspace's own inodes (attack review 92).
    let ids: HashSet<(u64, u64)> = roots.iter().map(|r| r.id).collect();
    let inside = |m: &Mount| {
        !m.read_only
            && (!m.backing.is_empty() || m.opaque)
            && (roots.iter().any(|r| m.at.starts_with(&r.view))
                // (One warden cannot open, the agent cannot reach either.)
                || agent_root.as_ref().is_some_and(|root| {
                    warden_sys::open_in_root(root, &m.at, warden_sys::OFlags::PATH)
                        .is_ok_and(|fd| climb(fd, &mut |p| Some(ids.contains(&p.id))) != Some(false))
                }))
    };
    // Roots warden sees at the same place (the workspace), by identity: a backing named
    // through one may have been renamed or relinked by the agent since the mount was made
    // (attack review 92: in an earlier session).
    let host_ids: HashSet<(u64, u64)> =
        roots.iter().filter(|r| r.host_same).map(|r| r.id).collect();
    let mut out = Vec::new();
    let mut unknown = false;
    let mut own: Option<Option<HashMap<u64, Mount>>> = None;
    for m in table.values().filter(|m| inside(m)) {
        unknown |= m.opaque;
        for b in &m.backing {
            let mut placed = false;
            if let Some(root) = &host_root {
                let mut through = false;
                let _ = walk_in_root(root.as_fd(), b, &mut |fd| {
                    through = place_at(fd, c"").is_some_and(|p| host_ids.contains(&p.id));
                    through
                });
                unknown |= through;
            }
            if b.is_absolute() && !b.starts_with("/proc") && !b.starts_with("/dev/fd") {
                if let Some(root) = &host_root {
                    let own = own.get_or_insert_with(|| mountinfo(std::process::id()));
                    if let Some(p) = own.as_ref().and_then(|t| place_part(root.as_fd(), b, t)) {
                        out.push(p);
                        placed = true;
                    }
                }
                if let Some(root) = &agent_root {
                    if let Some(p) = place_part(root.as_fd(), b, table) {
                        out.push(p);
                        placed = true;
                    }
                }
            }
            unknown |= !placed;
        }
    }
    (out, unknown)
}

/// Climbs by `..` from `cur` (across mounts) to the top of its root, asking `hit` of each
/// place met: `Some(true)` when it answers yes, `Some(false)` at the top without;
/// `None` when a step cannot be looked at, `hit` does not know, or after 4,096 steps.
pub fn climb(mut cur: OwnedFd, hit: &mut dyn FnMut(&Place) -> Option<bool>) -> Option<bool> {
    use rustix::fs::{openat, Mode, OFlags};
    let mut at = place_at(cur.as_fd(), c"")?;
    for _ in 0..4096 {
        if hit(&at)? {
            return Some(true);
        }
        let up = openat(
            &cur,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let above = place_at(up.as_fd(), c"")?;
        if above.id == at.id {
            return Some(false);
        }
        (cur, at) = (up, above);
    }
    None
}

/// The (file system, path there) of `b` in the root `root`, whose mounts are `table`.
fn place_part(
    root: BorrowedFd<'_>,
    b: &Path,
    table: &HashMap<u64, Mount>,
) -> Option<(u64, PathBuf)> {
    let (view, fd) = canonical_in_root(root, b).ok()?;
    let place = place_at(fd.as_ref().map_or(root, |f| f.as_fd()), c"")?;
    let m = table.get(&place.mount)?;
    Some((m.sb, in_fs(m, &view)?))
}

/// Whether mount `m` (id `id`) is covered at its mount point by another mount stacked on
/// it (the host's home when it is a mount of its own, under the agent's private home:
/// attack review 91). A mount below a covered place is not looked for (residual: it still
/// counts, which can only make files count as writable).
fn covered(table: &HashMap<u64, Mount>, id: u64, m: &Mount) -> bool {
    table.values().any(|t| t.parent == id && t.at == m.at)
}

/// The path in its file system of the file `name` (in the agent's root) on mount `m`: what
/// the mount shows, joined with the rest of the name below its mount point. `None` when
/// `name` is not below the mount point.
fn in_fs(m: &Mount, name: &Path) -> Option<PathBuf> {
    let below = name.strip_prefix(&m.at).ok()?;
    Some(if below.as_os_str().is_empty() {
        m.shows.clone()
    } else {
        m.shows.join(below)
    })
}

/// The (device, inode) of each write root and of each mount's root inside one (a directory
/// or file bound into the workspace), in the agent's view; one that cannot be looked at is
/// left out.
fn ids_inside(pid: u32, roots: &[Root], table: &HashMap<u64, Mount>) -> HashSet<(u64, u64)> {
    let mut ids: HashSet<(u64, u64)> = roots.iter().map(|r| r.id).collect();
    let Ok(root) = std::fs::File::open(format!("/proc/{pid}/root")) else {
        return ids;
    };
    for m in table.values() {
        if roots.iter().any(|r| m.at.starts_with(&r.view)) {
            let found = warden_sys::open_in_root(&root, &m.at, warden_sys::OFlags::PATH)
                .ok()
                .and_then(|fd| place_at(fd.as_fd(), c""));
            ids.extend(found.map(|p| p.id));
        }
    }
    ids
}

/// Whether the backing path `b` (named by the mounter, in warden's own view) lies in a write
/// root: below a root warden sees at the same path (by name: a layer the agent renamed away
/// and replaced by a link still counts), or, by identity, below a directory whose (device,
/// inode) is in `ids` (climbing by `..` from what the name leads to now: a layer named
/// through a bind alias of the workspace). A private tree of the agent's (`/tmp`, home) is no
/// such root: the host's `/tmp/x` is not the agent's (attack review 88 had `/usr` killed on
/// an overlay whose layer the host named under `/tmp`). A relative name, or one that leads
/// nowhere now, is not known.
fn backed_by_root(b: &Path, roots: &[Root], ids: &HashSet<(u64, u64)>) -> bool {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    if !b.is_absolute() {
        return false;
    }
    // A descriptor of the mounter's (`/proc/self/fd/N`, `/dev/fd/N`: a file system mounted
    // from an open file) names nothing here: taken as writable (attack review 89).
    if b.starts_with("/proc") || b.starts_with("/dev/fd") {
        return true;
    }
    if roots.iter().any(|r| r.host_same && b.starts_with(&r.view)) {
        return true;
    }
    // Each directory on the way, before any link past it is followed: a layer named
    // through a bind alias of the workspace whose last part the agent turned into a link to
    // elsewhere (between sessions: attack review 90) still passes through the alias.
    let mut hit = false;
    if let Ok(root) = std::fs::File::open("/") {
        let _ = walk_in_root(root.as_fd(), b, &mut |fd| {
            hit = place_at(fd, c"").is_some_and(|p| ids.contains(&p.id));
            hit
        });
    }
    if hit {
        return true;
    }
    let Ok(mut cur) = openat(CWD, b, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) else {
        return false;
    };
    if rustix::fs::fstat(&cur).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR) {
        // A file (a loop device's image): itself, then the directory holding it.
        if place_at(cur.as_fd(), c"").is_some_and(|p| ids.contains(&p.id)) {
            return true;
        }
        let Some(dir) = b.parent() else {
            return false;
        };
        match openat(
            CWD,
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => cur = d,
            Err(_) => return false,
        }
    }
    for _ in 0..4096 {
        let Some(at) = place_at(cur.as_fd(), c"") else {
            return false;
        };
        if ids.contains(&at.id) {
            return true;
        }
        let Ok(up) = openat(
            &cur,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        if place_at(up.as_fd(), c"").is_none_or(|u| u.id == at.id) {
            return false;
        }
        cur = up;
    }
    false
}

/// [`Reach`]'s parts: each root's; what each writable mount inside a root shows; and all of a mount
/// whose backing (an overlay's layer, a loop device's file: [`backing`]) lies in a root, as
/// `judge` tells ([`backed_by_root`]), or on a file system already writable whole (an
/// overlay whose layer is another overlay with a workspace layer: attack review 88), until
/// no more is found.
fn parts(
    roots: &[Root],
    table: &HashMap<u64, Mount>,
    ever: &[(u64, PathBuf)],
    judge: &dyn Fn(&Path) -> bool,
) -> Vec<(u64, PathBuf)> {
    // A read-only mount inside a root (a toolchain bound into the private home) shows
    // nothing the agent can write through it.
    let inside = |m: &Mount| !m.read_only && roots.iter().any(|r| m.at.starts_with(&r.view));
    let mut out: Vec<(u64, PathBuf)> = ever.to_vec();
    out.extend(roots.iter().map(|r| r.fs.clone()));
    // (One covered at its mount point is out of reach: the host's home when it is a mount
    // of its own, under the agent's private home.)
    out.extend(
        table
            .iter()
            .filter(|(id, m)| inside(m) && !covered(table, **id, m))
            .map(|(_, m)| (m.sb, m.shows.clone())),
    );
    let whole_of = |parts: &[(u64, PathBuf)]| -> HashSet<u64> {
        parts
            .iter()
            .filter(|(_, p)| p == Path::new("/"))
            .map(|(sb, _)| *sb)
            .collect()
    };
    let mut pending: Vec<&Mount> = table
        .values()
        .filter(|m| !inside(m) && !m.backing.is_empty())
        .collect();
    loop {
        let whole = whole_of(&out);
        let on_whole = |b: &Path| std::fs::metadata(b).is_ok_and(|m| whole.contains(&m.dev()));
        let (found, rest): (Vec<&Mount>, Vec<&Mount>) = pending
            .into_iter()
            .partition(|m| m.backing.iter().any(|b| judge(b) || on_whole(b)));
        if found.is_empty() {
            break;
        }
        out.extend(found.into_iter().map(|m| (m.sb, m.shows.clone())));
        pending = rest;
    }
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let text = b"22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                     68 22 0:40 /a\\040b\\134c\\012d /mnt/x\\040y rw - tmpfs t rw\n\
                     71 47 0:41 / /m rw shared:5 - overlay ov rw,lowerdir=l1:/x/l2,upperdir=/u,workdir=/w\n\
                     72 22 254:0 /t /t ro,relatime - ext4 /dev/vda rw\n\
                     73 22 7:0 / /sq rw,nosuid - squashfs /dev/loop0 ro,errors=continue\n\
                     74 22 254:0 /rox /rox rw,rox - ext4 /dev/vda rw\n";
        let t = parse_mountinfo(text).expect("parsed");
        assert_eq!(
            t[&22],
            Mount {
                sb: libc::makedev(254, 0),
                shows: "/".into(),
                at: "/".into(),
                backing: Vec::new(),
                read_only: false,
                opaque: false,
                parent: 1,
            }
        );
        assert_eq!(
            t[&71].backing,
            vec![PathBuf::from("l1"), "/x/l2".into(), "/u".into()]
        );
        assert_eq!(t[&68].shows, PathBuf::from("/a b\\c\nd"));
        assert!(t[&72].read_only && t[&73].read_only);
        assert!(!t[&74].read_only && !t[&71].read_only);
        assert_eq!(t[&68].at, PathBuf::from("/mnt/x y"));
        assert_eq!(unescape(b"/x\\04"), PathBuf::from("/x\\04"));
        // A `:` inside a layer's name (overlayfs writes `\:`, mountinfo its backslash `\134`).
        assert_eq!(
            layers(b"/a\\134:b::/c"),
            vec![PathBuf::from("/a:b"), PathBuf::from("/c")]
        );
        for bad in [
            &b"x 1 0:1 / / rw"[..],
            b"1 1 01 / / rw",
            b"1 1 0:1 rel / rw",
            b"1 1",
        ] {
            assert_eq!(
                parse_mountinfo(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let own = mountinfo(std::process::id()).expect("own mountinfo");
        let root = std::fs::File::open("/").expect("/");
        let place = place_at(root.as_fd(), c"").expect("statx mount id");
        assert!(place.mount_root);
        assert!(own.contains_key(&place.mount), "{place:?} not in {own:?}");
    }

    #[test]
    fn canonical_paths_resolve_links_and_dotdot_in_the_root() {
        let d = std::env::temp_dir().join(format!("warden-canon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::os::unix::fs::symlink("a/b", d.join("rel")).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        let root = std::fs::File::open(&d).unwrap();
        let canon = |p: &str| canonical_in_root(root.as_fd(), Path::new(p)).map(|(p, _)| p);
        assert_eq!(canon("/rel").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(canon("/../../rel/..//./b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(canon("/").unwrap(), PathBuf::from("/"));
        // An absolute link points into the root, not the host: `d/a` is not there.
        assert_eq!(
            canon("/abs").unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            canon("/loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn parts_cover_roots_and_mounts_inside_them() {
        let roots = vec![Root {
            id: (1, 2),
            view: "/home/u/ws".into(),
            fs: (7, "/home/u/ws".into()),
            host_same: true,
        }];
        let mut table = HashMap::new();
        let m = |sb, shows: &str, at: &str| Mount {
            sb,
            shows: shows.into(),
            at: at.into(),
            backing: Vec::new(),
            read_only: false,
            opaque: false,
            parent: 0,
        };
        table.insert(1, m(7, "/home/u/ws", "/home/u/ws"));
        table.insert(2, m(9, "/", "/home/u/ws/data"));
        table.insert(3, m(7, "/usr", "/usr"));
        table.insert(4, m(9, "/", "/home/u/wsx"));
        // Read-only inside the workspace: nothing written through it.
        let mut ro = m(13, "/", "/home/u/ws/ro");
        ro.read_only = true;
        table.insert(7, ro);
        // An overlay with a layer in the workspace (named through a link), one with none.
        let mut ov = m(11, "/", "/usr/local/src");
        ov.backing = vec!["/lower".into(), "/link/upper".into()];
        table.insert(5, ov);
        let mut ov = m(12, "/", "/opt");
        ov.backing = vec!["/lower".into(), "rel".into()];
        table.insert(6, ov);
        let judge = |p: &Path| p == Path::new("/link/upper");
        let mut p = parts(&roots, &table, &[], &judge);
        p.sort();
        assert_eq!(
            p,
            vec![
                (7, PathBuf::from("/home/u/ws")),
                (9, PathBuf::from("/")),
                (11, PathBuf::from("/"))
            ]
        );
    }
}
