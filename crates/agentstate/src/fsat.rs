//! File operations relative to a directory fd that never follow a symlink: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, `fstat` of what was
//! opened, bounded reads, and atomic replacement (temp file created `O_EXCL|O_NOFOLLOW`,
//! fsync, `renameat`, fsync of the directory).

use crate::filter::StateError;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An opened directory (a real directory, checked by fstat) and its display name.
pub struct Dir {
    pub fd: OwnedFd,
    pub shown: String,
    pub dev: u64,
    pub ino: u64,
}

fn cstr(name: &str) -> Result<CString, StateError> {
    CString::new(name).map_err(|_| StateError::Refused {
        what: name.into(),
        msg: "NUL in a file name".into(),
    })
}

pub fn fstat(fd: &impl AsRawFd) -> std::io::Result<libc::stat> {
    // SAFETY: fstat into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }
}

impl Dir {
    /// Opens a directory by path (a path the agent cannot write, such as `$HOME` itself or
    /// warden's state directory) and checks it is one.
    pub fn open(path: &Path, shown: &str) -> Result<Dir, StateError> {
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(StateError::Refused {
                what: shown.into(),
                msg: "NUL in the path".into(),
            });
        }
        let fd = warden_sys::open_dir(path).map_err(|e| StateError::io(shown, e.into()))?;
        let st = fstat(&fd).map_err(|e| StateError::io(shown, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(StateError::Refused {
                what: shown.into(),
                msg: "not a directory".into(),
            });
        }
        Ok(Dir {
            fd,
            shown: shown.into(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// `openat2(dir, name, flags)` beneath this directory, following no symlink.
    fn openat2(&self, name: &str, flags: i32, mode: u64) -> std::io::Result<OwnedFd> {
        if name.contains('\0') {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(warden_sys::open_beneath(
            &self.fd,
            Path::new(name),
            warden_sys::OFlags::from_bits_retain(flags as u32),
            warden_sys::Mode::from_raw_mode(mode as u32),
        )?)
    }

    /// Reads the regular file `name` in this directory, at most `max` bytes. None when it
    /// does not exist. A symlink, a directory or any other type is refused.
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<FileRead>, StateError> {
        let what = format!("{}/{name}", self.shown);
        let fd = match self.openat2(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(StateError::Refused {
                what,
                msg: "it is a symlink; warden reads and writes agent state only in a regular file"
                    .into(),
            }),
            Err(e) => return Err(StateError::io(what, e)),
        };
        let st = fstat(&fd).map_err(|e| StateError::io(&what, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(StateError::Refused {
                what,
                msg: "not a regular file".into(),
            });
        }
        if st.st_size as u64 > max {
            return Err(StateError::TooLarge {
                what,
                size: st.st_size as u64,
                max,
            });
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StateError::io(&what, e))?;
        if bytes.len() as u64 > max {
            return Err(StateError::TooLarge {
                what,
                size: bytes.len() as u64,
                max,
            });
        }
        Ok(Some(FileRead {
            bytes,
            mode: st.st_mode & 0o777,
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
        }))
    }

    /// Replaces `name` atomically with `bytes`: a temp file next to it (created with
    /// `O_EXCL|O_NOFOLLOW`, so nothing planted there is followed), fsync, `renameat` (which
    /// replaces the directory entry itself, never a symlink's target), fsync of the directory.
    /// `like` gives the mode and owner to keep (else 0600).
    pub fn replace_file(
        &self,
        name: &str,
        tmp_tag: &str,
        bytes: &[u8],
        like: Option<&FileRead>,
    ) -> Result<(), StateError> {
        let what = format!("{}/{name}", self.shown);
        let tmp = format!("{name}.warden-{tmp_tag}.tmp");
        let mode = like.map(|l| l.mode).unwrap_or(0o600);
        let fd = self
            .openat2(
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                mode as u64,
            )
            .map_err(|e| StateError::io(format!("{}/{tmp}", self.shown), e))?;
        let ctmp = cstr(&tmp)?;
        let cname = cstr(name)?;
        let mine = fstat(&fd).map(|st| (st.st_dev, st.st_ino)).ok();
        // What is at `n` in this directory now (not following a link).
        let at = |n: &std::ffi::CStr| -> Option<(u64, u64)> {
            // SAFETY: fstatat relative to our directory fd, into a zeroed struct.
            unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                (libc::fstatat(
                    self.fd.as_raw_fd(),
                    n.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                ) == 0)
                    .then_some((st.st_dev, st.st_ino))
            }
        };
        let swapped = |when: &str| {
            StateError::Refused {
            what: what.clone(),
            msg: format!(
                "another process replaced warden's temporary file {tmp} {when}; nothing of it was kept (attack review 80: an agent that can write this directory)"
            ),
        }
        };
        let res = (|| -> Result<(), StateError> {
            // SAFETY: fchmod/fchown on our own fresh fd.
            unsafe {
                libc::fchmod(fd.as_raw_fd(), mode);
                if let Some(l) = like {
                    if libc::geteuid() == 0 {
                        libc::fchown(fd.as_raw_fd(), l.uid, l.gid);
                    }
                }
            }
            let mut f = File::from(fd);
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| StateError::io(&what, e))?;
            if mine.is_none() || at(&ctmp) != mine {
                return Err(swapped("before it was renamed into place"));
            }
            // SAFETY: renameat within one directory fd, with valid C strings.
            let r = unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    ctmp.as_ptr(),
                    self.fd.as_raw_fd(),
                    cname.as_ptr(),
                )
            };
            if r != 0 {
                return Err(StateError::io(&what, std::io::Error::last_os_error()));
            }
            if at(&cname) != mine {
                // Swapped between the check and the rename: what now has the file's name is
                // not warden's. Moved aside (by name, in this directory), never left for the
                // host's agent to load.
                let aside = cstr(&format!("{name}.warden-swapped-{tmp_tag}"))?;
                // SAFETY: renameat within one directory fd, with valid C strings.
                unsafe {
                    libc::renameat(
                        self.fd.as_raw_fd(),
                        cname.as_ptr(),
                        self.fd.as_raw_fd(),
                        aside.as_ptr(),
                    )
                };
                return Err(swapped(&format!(
                    "as it was renamed into place; the file found there is kept aside as {name}.warden-swapped-{tmp_tag}"
                )));
            }
            // SAFETY: fsync of our directory fd.
            unsafe { libc::fsync(self.fd.as_raw_fd()) };
            Ok(())
        })();
        if res.is_err() {
            // SAFETY: unlinkat of the temp name we created, relative to our directory fd.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), ctmp.as_ptr(), 0) };
        }
        res
    }

    /// Creates the new file `name` (`O_EXCL|O_NOFOLLOW`, mode 0600) holding `bytes`, without
    /// fsync: for scratch files (the session's copies) whose loss in a crash costs nothing.
    pub fn create_scratch(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let what = format!("{}/{name}", self.shown);
        let fd = self
            .openat2(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)
            .map_err(|e| StateError::io(&what, e))?;
        File::from(fd)
            .write_all(bytes)
            .map_err(|e| StateError::io(&what, e))
    }

    /// Removes `name` (a regular file) from this directory; absent is fine.
    pub fn remove_file(&self, name: &str) -> Result<(), StateError> {
        let c = cstr(name)?;
        // SAFETY: unlinkat relative to our directory fd (never follows a symlink).
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(StateError::io(format!("{}/{name}", self.shown), e));
            }
        }
        Ok(())
    }

    /// Opens (creating if needed, mode 0700) the subdirectory `name`, following no symlink.
    pub fn subdir(&self, name: &str) -> Result<Dir, StateError> {
        let shown = format!("{}/{name}", self.shown);
        let c = cstr(name)?;
        // SAFETY: mkdirat relative to our directory fd.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(StateError::io(shown, e));
            }
        }
        let fd = self
            .openat2(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| StateError::io(&shown, e))?;
        let st = fstat(&fd).map_err(|e| StateError::io(&shown, e))?;
        Ok(Dir {
            fd,
            shown,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Opens the existing subdirectory `name` (following no symlink); None when absent.
    pub fn child(&self, name: &str) -> Result<Option<Dir>, StateError> {
        let shown = if name == "." {
            self.shown.clone()
        } else {
            format!("{}/{name}", self.shown)
        };
        let fd = match self.openat2(name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StateError::Refused {
                    what: shown,
                    msg: "it is a symlink; warden follows none here".into(),
                })
            }
            Err(e) => return Err(StateError::io(shown, e)),
        };
        let st = fstat(&fd).map_err(|e| StateError::io(&shown, e))?;
        Ok(Some(Dir {
            fd,
            shown,
            dev: st.st_dev,
            ino: st.st_ino,
        }))
    }

    /// For `rel` = `a/b/name`: the directory `a/b` beneath this one (None when absent) and
    /// `name`.
    pub fn parent_of<'r>(&self, rel: &'r str) -> Result<Option<(Dir, &'r str)>, StateError> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or((".", rel));
        if name.is_empty() || name == "." || name == ".." || rel.split('/').any(|c| c == "..") {
            return Err(StateError::Refused {
                what: rel.into(),
                msg: "not a plain relative path".into(),
            });
        }
        Ok(self.child(dir)?.map(|d| (d, name)))
    }

    /// `mkdirat(name, 0700)` in this directory; an existing entry is left alone.
    pub fn mkdir(&self, name: &str) {
        if let Ok(c) = CString::new(name) {
            // SAFETY: mkdirat relative to our directory fd (never follows a final symlink).
            unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) };
        }
    }

    /// Names of the entries of this directory.
    pub fn names(&self) -> Result<Vec<String>, StateError> {
        let p = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let rd = std::fs::read_dir(&p).map_err(|e| StateError::io(&self.shown, e))?;
        let mut v: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        v.sort();
        Ok(v)
    }
}

/// A held `<file>.lock` directory (the proper-lockfile convention Claude Code uses for
/// `~/.claude.json`); removed on drop.
pub struct DirLock<'a> {
    dir: &'a Dir,
    name: CString,
}

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        // SAFETY: rmdir of the lock directory we created, relative to our directory fd.
        unsafe {
            libc::unlinkat(
                self.dir.fd.as_raw_fd(),
                self.name.as_ptr(),
                libc::AT_REMOVEDIR,
            )
        };
    }
}

impl Dir {
    /// Takes the `<name>.lock` directory lock, waiting up to 3 s. A lock older than 10 s is
    /// stale (proper-lockfile's default) and not waited for. None when not taken: the caller
    /// proceeds, as a writer that does not lock would.
    pub fn lock(&self, name: &str) -> Option<DirLock<'_>> {
        let c = CString::new(format!("{name}.lock")).ok()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            // SAFETY: mkdirat relative to our directory fd.
            if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) } == 0 {
                return Some(DirLock { dir: self, name: c });
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return None;
            }
            // SAFETY: fstatat without following, into a zeroed struct.
            let stale = unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstatat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                ) == 0
                    && (libc::time(std::ptr::null_mut()) - st.st_mtime) > 10
            };
            if stale || std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A regular file read through [`Dir::read_file`], with what was fstat'ed.
#[derive(Debug, Clone)]
pub struct FileRead {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
}
