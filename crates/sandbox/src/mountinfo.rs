//! The host's mount table (`/proc/self/mountinfo`), read to find where a bind mount shows a
//! denied path under another name.
//!
//! A hidden path is covered by a mount over it, and Landlock's rules are split around it
//! ([`crate::lock`]); both work on the path. A bind mount the host made before the session
//! (`mount --bind /opt/tool/secrets /srv/x`, or of a directory above it) shows the same files
//! at another place, which the sandbox's recursive binds of the roots carry into the view.
//! [`aliases`] gives those places, to be hidden as well.

use std::path::{Path, PathBuf};

/// One line of `mountinfo`: the device, the path of the mount's root inside its file system,
/// and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: String,
    pub root: PathBuf,
    pub point: PathBuf,
}

/// `/proc/self/mountinfo`, parsed (lines that do not parse are left out).
pub fn read() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Parses `mountinfo` text: fields 3 (major:minor), 4 (root) and 5 (mount point), with the
/// kernel's octal escapes (`\040` for a space) undone.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let dev = f.nth(2)?.to_string();
            let root = unescape(f.next()?);
            let point = unescape(f.next()?);
            (root.is_absolute() && point.is_absolute()).then_some(Mount { dev, root, point })
        })
        .collect()
}

fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount `p` lies in (the longest mount point above it; of stacked ones, the last).
fn containing<'a>(mounts: &'a [Mount], p: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if p.starts_with(&m.point)
            && best.is_none_or(|b| m.point.components().count() >= b.point.components().count())
        {
            best = Some(m);
        }
    }
    best
}

/// Every other place the host's mounts show a path of `hidden` (existing) or `absent` at,
/// with whether it came from an existing one: a mount of the same device whose root is
/// above the path (the path below its mount point), or inside it (its mount point).
pub fn aliases(mounts: &[Mount], hidden: &[PathBuf], absent: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    let all = hidden
        .iter()
        .map(|h| (h, true))
        .chain(absent.iter().map(|h| (h, false)));
    for (h, existing) in all {
        let Some(home) = containing(mounts, h) else {
            continue;
        };
        let Ok(rest) = h.strip_prefix(&home.point) else {
            continue;
        };
        let rel = home.root.join(rest);
        for m in mounts.iter().filter(|m| m.dev == home.dev) {
            let at = if let Ok(below) = rel.strip_prefix(&m.root) {
                if below.as_os_str().is_empty() {
                    m.point.clone()
                } else {
                    m.point.join(below)
                }
            } else if m.root.starts_with(&rel) {
                m.point.clone()
            } else {
                continue;
            };
            if at != *h && !out.iter().any(|(p, _)| *p == at) {
                out.push((at, existing));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_mounts_of_a_hidden_path_or_a_directory_above_it_are_its_aliases() {
        let text = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 8:1 /opt/t/dir /srv/alias rw,relatime - ext4 /dev/sda1 rw
31 22 8:1 /opt/t /mnt/up\\040x rw,relatime - ext4 /dev/sda1 rw
32 22 8:1 /opt/t/dir/inner /srv/in rw,relatime - ext4 /dev/sda1 rw
33 22 0:5 /opt/t/dir /srv/other-fs rw - tmpfs tmpfs rw
34 22 8:1 /usr /srv/usr rw,relatime - ext4 /dev/sda1 rw
";
        let m = parse(text);
        assert_eq!(m.len(), 6);
        assert_eq!(m[2].point, PathBuf::from("/mnt/up x"));
        let a = aliases(
            &m,
            &[PathBuf::from("/opt/t/dir")],
            &[PathBuf::from("/opt/t/future")],
        );
        let got: Vec<(&str, bool)> = a.iter().map(|(p, e)| (p.to_str().unwrap(), *e)).collect();
        for want in [
            ("/srv/alias", true),
            ("/mnt/up x/dir", true),
            ("/srv/in", true),
            ("/mnt/up x/future", false),
        ] {
            assert!(got.contains(&want), "{want:?} in {got:?}");
        }
        assert!(!got
            .iter()
            .any(|(p, _)| p.starts_with("/srv/other-fs") || p.starts_with("/srv/usr")));
        assert!(
            !got.iter().any(|(p, _)| *p == "/opt/t/dir"),
            "the path itself is not an alias"
        );
    }
}
