//! The guarantees the sandbox delivers on this machine, as data: `warden run` refuses to
//! start when a required one is missing (unless `--best-effort`), `warden doctor` prints
//! them as a table.

use crate::probe::Features;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Guarantee {
    pub id: &'static str,
    pub what: &'static str,
    pub holds: bool,
    /// Required for the default policy (missing ⇒ refuse without --best-effort).
    pub required: bool,
    pub mechanism: String,
}

pub fn guarantees(f: &Features) -> Vec<Guarantee> {
    let ns = f.user_namespaces;
    let ll = f.landlock_abi;
    let g = |id, what, holds, required, mechanism: String| Guarantee {
        id,
        what,
        holds,
        required,
        mechanism,
    };
    vec![
        g("files.read", "credentials, other projects and $HOME unreadable", ll >= 1 && ns, true,
          format!("private tmpfs over $HOME,/tmp,/run (mount namespace: {}) + Landlock (ABI {ll})", yes(ns))),
        g("files.write", "writes only to workspace, private TMPDIR, agent state", ll >= 1, true, format!("Landlock ABI {ll}")),
        g("files.protect", "protected paths read-only even when absent", ns, true, format!("read-only bind mounts (mount namespace: {})", yes(ns))),
        g("files.warden", "warden's own directories (policy, audit store, hash cache, compiled seccomp programs) never writable", ns, true,
          format!("writable roots at, inside or aliasing them refused by the policy loader; read-only bind mounts inside broader roots (mount namespace: {})", yes(ns))),
        g("files.hide", "denied files inside readable roots hidden (/etc/shadow, ...)", ns, true, "empty bind mounts".into()),
        g("files.sockets", "no host unix socket reachable by path outside the policy's roots", ns, true,
          format!("a root of the sandbox's own (pivot_root): only the policy's roots bound in, private tmpfs over what holds them (Landlock does not govern connect; mount namespace: {})", yes(ns))),
        g("proc.nnp", "no new privileges; all capabilities dropped", true, true, "prctl(PR_SET_NO_NEW_PRIVS), capset, securebits".into()),
        g("proc.seccomp", "ptrace, process_vm_*, io_uring, bpf, perf, modules, kexec, mount, new namespaces, keyctl, TIOCSTI/TIOCLINUX, raw/packet/vsock/netlink sockets denied", f.seccomp, true, "seccomp filter (libseccomp)".into()),
        g("proc.signals", "no signals or abstract-socket connections to processes outside", ll >= 6 || ns, true,
          format!("Landlock scoping (ABI 6+: {}), pid + network namespaces ({})", yes(ll >= 6), yes(ns))),
        g("proc.pidns", "outside processes invisible (/proc/<pid>/environ, kill)", ns, true, "pid namespace + fresh /proc".into()),
        g("proc.session", "no terminal injection into the user's terminal", true, true, "new session, private pty, seccomp TIOCSTI".into()),
        g("proc.pids", "fork bombs contained", (ns && crate::pidns_pid_max_supported()) || f.cgroup_pids.is_some() || f.uid != 0, true,
          if ns && crate::pidns_pid_max_supported() { "pid_max of the sandbox's pid namespace (Linux 6.14+)".into() }
          else { match &f.cgroup_pids { Some(c) => format!("pids.max in {c}"), None => "RLIMIT_NPROC (per-uid)".into() } }),
        g("proc.identity", "the agent never holds host root's identity", f.uid != 0 || ns, true,
          if f.uid != 0 { format!("warden runs as uid {}: the agent keeps that unprivileged uid", f.uid) }
          else { format!("user namespace mapping the agent to host uid {} (no groups); writable roots through idmapped mounts (a file system without them is refused at run); chmod of set-id bits denied", crate::idmap::agent_ids().map_or(crate::idmap::DEFAULT_AGENT_ID, |i| i.uid)) }),
        g("proc.memory", "session memory bounded; private tmpfs sizes bounded", f.cgroup_memory.is_some(), false,
          match &f.cgroup_memory { Some(c) => format!("memory limit in {c}; tmpfs size= (process.*_size)"),
            None => "tmpfs size= only: no writable memory cgroup (RLIMIT_AS is not used: it bounds address space per process, not the session's memory)".into() }),
        g("proc.inotify", "the agent takes at most a quarter of the user's inotify watches and half of its instances", ns, false,
          "limits of the sandbox's user namespace (/proc/sys/user/max_inotify_*); warden's own watches on instances made outside, bounded".into()),
        g("dev.allowlist", "only allowlisted device nodes in the sandbox's /dev", ns, true,
          format!("tmpfs /dev with {} bound in, private devpts", crate::mounts::DEV_NODES.join(", "))),
        g("net.isolated", "no direct network; egress only via warden's proxy", ns || ll >= 4, true,
          if ns { "network namespace with loopback only".into() } else { format!("Landlock TCP rules (ABI {ll})") }),
        g("exec.notify", "seccomp user notification available for the exec guard", f.seccomp_user_notif, false, "SECCOMP_RET_USER_NOTIF".into()),
    ]
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Required guarantees that do not hold.
pub fn missing(f: &Features) -> Vec<Guarantee> {
    guarantees(f)
        .into_iter()
        .filter(|g| g.required && !g.holds)
        .collect()
}
