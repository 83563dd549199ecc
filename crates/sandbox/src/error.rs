//! Typed errors of the sandbox's system-call wrappers ([`SysError`]), shared by the modules
//! that set the sandbox up (mounts, cgroups, seccomp, the user namespace). Each carries the
//! failing call (with its path or arguments) and the errno as an [`std::io::Error`] source,
//! so callers decide on [`SysError::errno`], never on message text. Their text is what the
//! string errors of earlier versions said, and they convert into `String` where a
//! setup stage still reports text (the launcher's error pipe).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// `call` (naming its path or arguments, e.g. `mount(none, /x, tmpfs)`) failed.
    #[error("{call}: {source}")]
    Os {
        call: String,
        #[source]
        source: std::io::Error,
    },
    /// A path with a NUL byte cannot be passed to the kernel.
    #[error("{0}: path contains NUL")]
    Nul(PathBuf),
    /// A `warden-sys` call (it names the call and errno itself).
    #[error(transparent)]
    Sys(#[from] warden_sys::Error),
    /// More descriptors than one launch message carries.
    #[error("sendmsg: {n} descriptors (at most {max})")]
    TooManyFds { n: usize, max: usize },
}

impl SysError {
    /// `call` failed with the calling thread's current errno.
    pub fn last(call: impl Into<String>) -> SysError {
        SysError::Os {
            call: call.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    /// `call` failed with `source`.
    pub fn io(call: impl Into<String>, source: std::io::Error) -> SysError {
        SysError::Os {
            call: call.into(),
            source,
        }
    }

    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Os { source, .. } => source.raw_os_error(),
            SysError::Sys(e) => e.errno().map(|e| e.raw_os_error()),
            SysError::Nul(_) | SysError::TooManyFds { .. } => None,
        }
    }
}

/// The text, for setup stages that still report a `String`.
impl From<SysError> for String {
    fn from(e: SysError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_and_text_are_kept() {
        let e = SysError::io(
            "mount(none, /x, tmpfs)",
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert_eq!(
            String::from(e),
            "mount(none, /x, tmpfs): Operation not permitted (os error 1)"
        );
        assert_eq!(SysError::Nul("/a".into()).errno(), None);
    }
}
