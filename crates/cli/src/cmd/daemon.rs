//! `warden daemon` (the work lives in the warden-daemon crate).

use super::fail;
use crate::cli::DaemonArgs;
use crate::exit;
use std::path::Path;
use warden_daemon as daemon;
use warden_execguard::lsm::bpf;

pub fn daemon(a: DaemonArgs) -> anyhow::Result<i32> {
    let sock = Path::new(daemon::SOCKET);
    if a.status {
        let pinned = bpf::Pinned::exists(Path::new(bpf::PIN_DIR));
        match daemon::client::status(sock) {
            Ok(v) => {
                println!(
                    "warden daemon: running; programs pinned under {}; {} sessions; {} decisions, {} events lost",
                    bpf::PIN_DIR,
                    v.sessions,
                    v.decisions,
                    v.lost
                );
                return Ok(exit::OK);
            }
            Err(e) => {
                println!(
                    "warden daemon: not reachable ({e}); BPF programs {}",
                    if pinned {
                        "still pinned and enforcing"
                    } else {
                        "not loaded"
                    }
                );
                return Ok(if pinned { exit::OK } else { exit::UNSUPPORTED });
            }
        }
    }
    if a.unload {
        daemon::check_privileged()
            .map_err(|e| fail(exit::DENIED, format!("warden daemon --unload: {e}")))?;
        // A running daemon unloads and exits; a dead one left its pins: remove them.
        let _ = daemon::client::unload(sock);
        bpf::Pinned::unload(Path::new(bpf::PIN_DIR))
            .map_err(|e| fail(exit::INTERNAL, format!("unload: {e}")))?;
        let _ = std::fs::remove_file(sock);
        println!("warden daemon: BPF programs detached and unpinned; sessions are no longer enforced in the kernel");
        return Ok(exit::OK);
    }
    daemon::check_privileged().map_err(|e| fail(exit::DENIED, format!("warden daemon: {e}")))?;
    let log_path = Path::new("/var/log/warden/daemon.jsonl");
    let log = warden_event::SessionLog::open(log_path).map_err(|e| {
        fail(
            exit::INTERNAL,
            format!("decision log {}: {e}", log_path.display()),
        )
    })?;
    warden_event::init_tracing(Some(log), 1);
    daemon::run(&daemon::Opts {
        userspace_hashing: a.userspace_hashing,
        ..daemon::Opts::default()
    })
    .map_err(|e| fail(exit::UNSUPPORTED, format!("warden daemon: {e}")))?;
    Ok(exit::OK)
}
