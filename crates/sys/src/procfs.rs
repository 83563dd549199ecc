//! `/proc` parsing: the fields of `/proc/<pid>/status` and the lines of
//! `/proc/<pid>/cgroup`. Parsing is on text the caller already has, so it is tested on
//! samples; [`Status::read`] and [`cgroup`] read the files.

use crate::Error;

/// Whose `/proc` entry: ours (`self`) or a pid's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// `/proc/self`.
    Me,
    /// `/proc/<pid>`.
    Pid(i32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Me => format!("/proc/self/{file}"),
            Proc::Pid(p) => format!("/proc/{p}/{file}"),
        }
    }
}

impl From<i32> for Proc {
    fn from(p: i32) -> Self {
        Proc::Pid(p)
    }
}

impl From<u32> for Proc {
    fn from(p: u32) -> Self {
        Proc::Pid(p as i32)
    }
}

fn read(p: Proc, file: &str) -> Result<String, Error> {
    let path = p.path(file);
    std::fs::read_to_string(&path).map_err(|source| Error::Proc { path, source })
}

/// `/proc/<pid>/status`.
#[derive(Debug, Clone)]
pub struct Status(String);

impl Status {
    /// Reads `/proc/<pid>/status`.
    pub fn read(p: impl Into<Proc>) -> Result<Status, Error> {
        read(p.into(), "status").map(Status)
    }

    /// Wraps status text already read.
    pub fn parse(text: impl Into<String>) -> Status {
        Status(text.into())
    }

    /// The value of field `name` (without its colon), trimmed: `field("PPid")`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.0.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim())
        })
    }

    /// The first number of field `name` (`Uid:` lists real, effective, saved, fs).
    fn first_number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.field(name)?.split_whitespace().next()?.parse().ok()
    }

    /// `PPid`.
    pub fn ppid(&self) -> Option<i32> {
        self.first_number("PPid")
    }

    /// The real uid (first of `Uid`).
    pub fn uid(&self) -> Option<u32> {
        self.first_number("Uid")
    }

    /// `TracerPid` (0: not traced).
    pub fn tracer_pid(&self) -> Option<i32> {
        self.first_number("TracerPid")
    }

    /// The pid in the innermost pid namespace (last of `NSpid`).
    pub fn ns_pid(&self) -> Option<i32> {
        self.field("NSpid")?.split_whitespace().last()?.parse().ok()
    }

    /// `NoNewPrivs`.
    pub fn no_new_privs(&self) -> Option<bool> {
        match self.field("NoNewPrivs")? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        }
    }

    /// `Seccomp` mode (0 none, 1 strict, 2 filter).
    pub fn seccomp(&self) -> Option<u32> {
        self.first_number("Seccomp")
    }
}

/// Reads `/proc/<pid>/cgroup`.
/// A process's start time: field 22 of `/proc/<pid>/stat` (clock ticks after boot), which a
/// reused pid does not share. `None` when the process is gone or the line does not parse.
pub fn start_time(p: impl Into<Proc>) -> Option<u64> {
    start_time_of(&read(p.into(), "stat").ok()?)
}

/// [`start_time`] from a `stat` line (the command name, in parentheses, may hold spaces and
/// parentheses: the fields start after the last `)`).
pub fn start_time_of(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `started` ([`start_time`]; 0: not recorded)
/// still runs: it exists (EPERM is another user's process: it exists) and, when recorded,
/// started then (a reused pid is another process).
pub fn running(pid: i32, started: u64) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    exists && (started == 0 || start_time(pid) == Some(started))
}

/// The process name (`comm`) a warm spare carries until a run claims it: its agent has not
/// run. Shown by `ps`; read by [`waiting_spare`].
pub const SPARE_COMM: &str = "warden-spare";

/// Names this process (its thread group leader's `comm`, which `ps` shows).
pub fn set_own_name(name: &str) -> std::io::Result<()> {
    std::fs::write("/proc/self/comm", name)
}

/// Whether `pid` is a warm spare whose agent was not released (yet): its name is
/// [`SPARE_COMM`]. Informational only (a same-user process may rename another): it keeps
/// a waiting spare out of "other sessions could write here" warnings.
pub fn waiting_spare(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == SPARE_COMM.as_bytes())
}

pub fn cgroup(p: impl Into<Proc>) -> Result<String, Error> {
    read(p.into(), "cgroup")
}

/// The cgroup v2 path in `/proc/<pid>/cgroup` text (the `0::/path` line), trimmed.
pub fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// The cgroup v1 path of `controller` in `/proc/<pid>/cgroup` text (the
/// `N:ctl,ctl:/path` line that lists it).
pub fn cgroup_v1_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let _ = it.next()?;
        let ctl = it.next()?;
        let path = it.next()?;
        ctl.split(',').any(|c| c == controller).then_some(path)
    })
}

/// Every path in `/proc/<pid>/cgroup` text (v1 and v2).
pub fn cgroup_paths(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.splitn(3, ':').nth(2).unwrap_or(""))
}

#[cfg(test)]
mod tests {

    #[test]
    fn start_time_is_field_22_after_the_command_name() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(super::start_time_of(line), Some(987654));
        assert_eq!(super::start_time_of("42 (x) S 1"), None);
        let me = std::process::id() as i32;
        let t = super::start_time(super::Proc::Me).unwrap();
        assert!(super::running(me, t) && super::running(me, 0));
        assert!(
            !super::running(me, t + 1),
            "a reused pid taken for the process"
        );
        assert!(super::running(1, 0), "another process (init) exists");
    }

    use super::*;

    const STATUS: &str = "Name:\tbash
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
Ngid:\t0
Pid:\t4242
PPid:\t4100
TracerPid:\t0
Uid:\t1000\t1001\t1002\t1003
Gid:\t1000\t1000\t1000\t1000
NSpid:\t4242\t17\t1
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t3
";

    #[test]
    fn status_fields() {
        let s = Status::parse(STATUS);
        assert_eq!(s.ppid(), Some(4100));
        assert_eq!(s.uid(), Some(1000));
        assert_eq!(s.tracer_pid(), Some(0));
        assert_eq!(s.ns_pid(), Some(1));
        assert_eq!(s.no_new_privs(), Some(true));
        assert_eq!(s.seccomp(), Some(2));
        assert_eq!(s.field("State"), Some("S (sleeping)"));
        // A field name is matched whole: "Seccomp" is not "Seccomp_filters", "Pid" not "PPid".
        assert_eq!(s.field("Seccomp_filters"), Some("3"));
        assert_eq!(s.field("Pid"), Some("4242"));
        assert_eq!(s.field("Missing"), None);
    }

    #[test]
    fn status_bad_values() {
        let s = Status::parse("PPid:\tx\nNoNewPrivs:\t7\nNSpid:\n");
        assert_eq!(s.ppid(), None);
        assert_eq!(s.no_new_privs(), None);
        assert_eq!(s.ns_pid(), None);
        assert_eq!(s.uid(), None);
    }

    #[test]
    fn status_of_self() {
        let s = Status::read(Proc::Me).unwrap();
        assert!(s.ppid().is_some());
        let s = Status::read(std::process::id()).unwrap();
        assert_eq!(
            s.field("Pid").and_then(|p| p.parse::<u32>().ok()),
            Some(std::process::id())
        );
        let e = Status::read(Proc::Pid(-5)).unwrap_err();
        assert_eq!(e.errno(), Some(crate::Errno::NOENT));
    }

    #[test]
    fn cgroup_lines() {
        let v2 = "0::/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(
            cgroup_v2_path(v2),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(cgroup_v1_path(v2, "memory"), None);
        let hybrid = "12:cpu,cpuacct:/a\n11:memory:/user.slice\n1:name=systemd:/x\n0::/y \n";
        assert_eq!(cgroup_v1_path(hybrid, "memory"), Some("/user.slice"));
        assert_eq!(cgroup_v1_path(hybrid, "cpu"), Some("/a"));
        assert_eq!(cgroup_v1_path(hybrid, "cpuacct"), Some("/a"));
        assert_eq!(cgroup_v1_path(hybrid, "cpuset"), None);
        assert_eq!(cgroup_v2_path(hybrid), Some("/y"));
        assert_eq!(
            cgroup_paths(hybrid).collect::<Vec<_>>(),
            ["/a", "/user.slice", "/x", "/y "]
        );
        assert_eq!(cgroup_v2_path(""), None);
        assert!(cgroup(Proc::Me).is_ok());
    }
}
