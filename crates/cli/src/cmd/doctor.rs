//! `warden doctor`: what this machine can enforce, probed (never assumed), and which
//! guarantees hold. Exits 4 when the default policy cannot be enforced here.

use super::misc::{bold, green, red, yellow};
use crate::cli::DoctorArgs;
use crate::exit;
use warden_sandbox::report;

pub fn doctor(a: DoctorArgs) -> anyhow::Result<i32> {
    let f = warden_sandbox::probe();
    let guarantees = report::guarantees(&f);
    let missing = report::missing(&f);
    let exec = doctor_exec(&f);
    // The kill switch's mechanism (issue: say so when only the fallback exists).
    let stop_switch = match warden_sandbox::freezer::leaf_parent() {
        Some(p) => format!(
            "cgroup v2 freezer (cgroup.freeze / cgroup.kill) in a leaf under {}",
            p.display()
        ),
        None => "signals only (SIGSTOP/SIGKILL of the sandbox's processes from outside): no writable cgroup v2 directory; a process could in principle fork between two signals, the freezer has no such window".into(),
    };
    let code = if missing.is_empty() {
        exit::OK
    } else {
        exit::UNSUPPORTED
    };
    if a.json {
        let v = serde_json::json!({
            "features": f,
            "guarantees": guarantees,
            "exec_guard": exec,
            "stop_switch": stop_switch,
            "dev_nodes": warden_sandbox::mounts::DEV_NODES,
            "default_policy_enforceable": missing.is_empty(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    let yn = |b: bool| if b { green("yes") } else { red("no") };
    println!("{}", bold("Machine"));
    println!("  kernel               {}", f.kernel);
    println!("  uid                  {}", f.uid);
    let ll = match f.landlock_abi {
        0 => red("unavailable"),
        n if n >= 6 => green(&format!("ABI {n}")),
        n => yellow(&format!(
            "ABI {n} (6+ needed for signal/abstract-socket scoping)"
        )),
    };
    println!("  Landlock             {ll}");
    println!("  seccomp filter       {}", yn(f.seccomp));
    println!("  seccomp user-notif   {}", yn(f.seccomp_user_notif));
    println!(
        "  user namespaces      {}{}",
        yn(f.user_namespaces),
        f.userns_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    println!(
        "  pids cgroup          {}",
        f.cgroup_pids
            .as_deref()
            .map(green)
            .unwrap_or_else(|| yellow("none (RLIMIT_NPROC fallback)"))
    );
    println!(
        "  memory cgroup        {}",
        f.cgroup_memory
            .as_deref()
            .map(green)
            .unwrap_or_else(|| yellow("none (no session memory limit; tmpfs sizes still apply)"))
    );
    println!("  fanotify permission  {}", yn(f.fanotify));
    println!(
        "  stop switch          {}",
        if warden_sandbox::freezer::leaf_parent().is_some() {
            green(&stop_switch)
        } else {
            yellow(&stop_switch)
        }
    );
    println!(
        "  nested in a sandbox  {}",
        if f.nested { yellow("yes") } else { "no".into() }
    );
    for (k, v) in &exec.machine {
        println!("  {k:<20} {v}");
    }
    let limits = warden_sandbox::limits::from_policy(
        &Default::default(),
        std::path::Path::new("$HOME"),
        warden_sandbox::limits::ram_bytes(),
    );
    println!(
        "  default limits       memory.max {}; tmpfs {}",
        warden_policy::ByteSize(limits.memory_max).human(),
        limits
            .tmpfs
            .iter()
            .map(|t| format!(
                "{} {}",
                t.path.display(),
                warden_policy::ByteSize(t.size).human()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  sandbox /dev         {} (bound from the host); pts (private devpts), shm (tmpfs); {}",
        warden_sandbox::mounts::DEV_NODES.join(", "),
        warden_sandbox::mounts::DEV_LINKS
            .iter()
            .map(|(n, t)| format!("{n} -> {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if f.uid == 0 {
        println!(
            "  agent host uid       {} (warden runs as root; see `proc.identity`)",
            warden_sandbox::idmap::agent_ids()
                .map_or(warden_sandbox::idmap::DEFAULT_AGENT_ID, |i| i.uid)
        );
    }
    println!();
    println!("{}", bold("Sandbox guarantees (warden run)"));
    for g in &guarantees {
        let mark = if g.holds {
            green("holds  ")
        } else if g.required {
            red("MISSING")
        } else {
            yellow("absent ")
        };
        println!("  {mark} {:<14} {} — {}", g.id, g.what, g.mechanism);
    }
    println!();
    println!("{}", bold(&format!("Exec guard: backend {}", exec.backend)));
    for line in &exec.table {
        println!("  {line}");
    }
    println!();
    if missing.is_empty() {
        println!(
            "{}",
            green("The default policy can be enforced on this machine.")
        );
    } else {
        println!(
            "{}",
            red(&format!(
                "The default policy cannot be fully enforced here ({} missing); `warden run` will refuse unless --best-effort.",
                missing.len()
            ))
        );
    }
    Ok(code)
}

/// What `warden doctor` shows about the exec guard.
#[derive(serde::Serialize, Default)]
pub struct ExecDoctor {
    pub backend: String,
    /// Extra machine facts (name, value).
    pub machine: Vec<(String, String)>,
    /// Lines of the per-backend guarantees table.
    pub table: Vec<String>,
}

pub fn doctor_exec(f: &warden_sandbox::Features) -> ExecDoctor {
    let lsm = warden_execguard::lsm::probe::probe();
    let mut machine = vec![
        (
            "active LSMs".to_string(),
            lsm.lsm_list
                .clone()
                .unwrap_or_else(|| "unknown (securityfs not readable)".into()),
        ),
        (
            "BPF LSM programs".to_string(),
            if lsm.loads {
                green("load")
            } else {
                yellow(&format!("cannot load: {}", lsm.detail))
            },
        ),
    ];
    machine.push((
        "kernel BTF".to_string(),
        if lsm.btf { "yes".into() } else { "no".into() },
    ));
    let ima = lsm
        .lsm_list
        .as_deref()
        .is_some_and(|l| l.split(',').any(|x| x == "ima"));
    machine.push((
        "IMA (in-kernel SHA-256 for BPF)".to_string(),
        if ima {
            "yes".into()
        } else {
            "no (the BPF backend needs it; the seccomp backend does not)".into()
        },
    ));
    let daemon = warden_daemon::client::status(std::path::Path::new(warden_daemon::SOCKET));
    let pinned = warden_execguard::lsm::bpf::Pinned::exists(std::path::Path::new(
        warden_execguard::lsm::bpf::PIN_DIR,
    ));
    let backend = match (&daemon, pinned) {
        (Ok(v), _) => green(&format!(
            "BPF LSM (in-kernel; `warden daemon` running: {} sessions, {} decisions, {} events lost) — chosen by `warden run`",
            v.sessions, v.decisions, v.lost
        )),
        (Err(_), true) => yellow("BPF LSM programs pinned and enforcing existing sessions, but `warden daemon` is not running: new runs use the seccomp backend until it is restarted"),
        (Err(_), false) if f.seccomp_user_notif => {
            let hint = if lsm.loads { " — BPF LSM is available here: run `warden daemon` as root (systemd unit in dist/) for in-kernel enforcement" } else { "" };
            format!("seccomp user notification + exec-event tracing (no root; chosen by `warden run`){hint}")
        }
        _ => red("none: seccomp user notification is unavailable and no warden daemon runs; `warden run` refuses unless --exec-guard off"),
    };
    let table = include_str!("../../../execguard/GUARANTEES.md")
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.to_string())
        .collect();
    ExecDoctor {
        backend,
        machine,
        table,
    }
}
