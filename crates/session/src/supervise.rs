//! Launching the sandbox and supervising it: signal forwarding, the session's runtime
//! (`on_launch`), the hook relay, the proxy, the exec guard (seccomp supervisor thread or the
//! BPF daemon's session), the pty relay and the limits monitor. Threads start only after
//! the sandbox is forked.

use crate::error::StartError;
use crate::exec::ExecSetup;
use crate::runtime::OnLaunch;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use warden_sandbox::Launch;

/// The proxy's part of the launch.
pub(crate) struct ProxyStart {
    /// Read end of the hook-event pipe.
    pub hook_events: OwnedFd,
    /// No network namespace: the host-loopback listener and the bridge's end of the pair.
    pub host_bridge: Option<(std::net::TcpListener, OwnedFd)>,
    pub policy: warden_policy::Policy,
    pub ctl: Option<OwnedFd>,
    pub hosts_file: Option<PathBuf>,
    /// The bridge forwards allowed host loopback ports (network namespace only).
    pub gateway: bool,
    /// `[network] ask` hosts wait here for a human.
    pub approver: Arc<dyn warden_proxy::server::Approver>,
    /// Gate asks from the hook-report socket (`[approvals] gate = "warden"` only).
    pub gate_asker: Option<warden_event::relay::Asker>,
}

/// Everything the launch needs.
pub(crate) struct Start {
    pub launch: Launch,
    pub tty: bool,
    pub exec: ExecSetup,
    pub session_id: String,
    pub pids_max: u64,
    pub hash_cache: PathBuf,
    pub proxy: ProxyStart,
    pub on_launch: OnLaunch,
    pub watch: warden_sandbox::limits::Watch,
    pub escape: Option<warden_sandbox::pty::EscapeHandler>,
    /// Records the workspace guard's placeholders of init's early report (in the session's
    /// manifest), once the agent process exists and before it is released.
    pub record_guard_placeholders: RecordGuardPlaceholders,
    /// A warm spare's wait for its claim (`crate::warm`): runs once everything that must see
    /// the agent's first exec is attached, before the terminal and the agent's release; it
    /// releases the agent itself (`release_with`). An error ends the sandbox unstarted.
    pub hold: Option<Hold>,
}

/// See [`Start::hold`].
pub type Hold = Box<dyn FnOnce(&warden_sandbox::launch::Session) -> Result<(), String> + Send>;

/// See [`Start::record_guard_placeholders`]: init's early report (workspace-relative path,
/// whether a directory, whether marked).
pub(crate) type RecordGuardPlaceholders = Box<dyn FnMut(Vec<(PathBuf, bool, bool)>) + Send>;

/// A launched sandbox whose agent runs.
pub(crate) struct Launched {
    session: warden_sandbox::launch::Session,
    tracer: Option<Tracer>,
    out: Option<JoinHandle<()>>,
    monitor: warden_sandbox::limits::Monitor,
    raw: Option<warden_sandbox::pty::RawMode>,
    hook_relay: warden_event::relay::Handle,
    hook_socket: Option<warden_event::relay::Forwarder>,
    _proxy: Option<warden_proxy::ProxyHandle>,
    _bpf_session: Option<warden_daemon::client::Session>,
}

fn setup_error(e: warden_sandbox::LaunchError) -> StartError {
    match e {
        warden_sandbox::LaunchError::NotFound(why) => return StartError::NotFound(why),
        warden_sandbox::LaunchError::Stage { stage, reason } if stage == "exec" => {
            return StartError::NotFound(reason)
        }
        // The workspace guard refused a layout it cannot lock (a protected path that is a
        // symlink out of the workspace, a non-regular file): what the user's files are, not
        // what the machine lacks (exit 3, as the plan's own layout refusals).
        warden_sandbox::LaunchError::Stage { stage, reason }
            if stage == "mounts" && reason.starts_with(warden_sandbox::guard::PROTECTED_PREFIX) =>
        {
            return StartError::Policy(format!("the workspace's layout: {reason}"))
        }
        _ => {}
    }
    let hint = if e.stage() == Some("namespaces") {
        "\nthis machine cannot create the sandbox's namespaces; `warden doctor` explains, `--best-effort` runs without them"
    } else {
        ""
    };
    StartError::Unsupported(format!("sandbox setup failed: {e}{hint}"))
}

/// Forks the sandbox and starts everything that supervises it; returns once the agent's
/// exec succeeded (or with why it did not).
pub(crate) fn launch(s: Start) -> Result<Launched, StartError> {
    let Start {
        launch: l,
        tty,
        exec,
        session_id,
        pids_max,
        hash_cache,
        proxy,
        on_launch,
        mut watch,
        mut escape,
        mut record_guard_placeholders,
        hold,
    } = s;
    let mut session = warden_sandbox::launch(l).map_err(setup_error)?;
    warden_event::timing::mark("sup: forked");
    let set = block_signals();
    // The signal thread first: a signal sent while the sandbox is built ends it (the start
    // is abandoned); from the agent's release on, it is the agent's.
    let agent_for_signals = Arc::new(AgentSlot::default());
    handle_signals(&session, set, agent_for_signals.clone());
    // Threads may start from here on (they inherit the mask), while the sandbox is built:
    // the risk monitor and the session's control socket, the hook relay, the host-loopback
    // bridge and the exec guard's thread, which waits for its listener.
    on_launch(session.stage1_pid);
    warden_event::timing::mark("sup: on_launch done");
    // Hook decisions from inside: bounded frames, rate-limited, counted (warden_event::relay).
    let ProxyStart {
        hook_events,
        host_bridge,
        policy,
        ctl,
        hosts_file,
        gateway,
        approver,
        gate_asker,
    } = proxy;
    let hook_relay = warden_event::relay::spawn(hook_events);
    if let Some((l, theirs)) = host_bridge {
        std::thread::spawn(move || warden_proxy::bridge::serve(l, theirs));
    }
    let (guard, bpf_rules) = match exec {
        ExecSetup::Off => (None, None),
        ExecSetup::Seccomp(g) => (Some(g), None),
        ExecSetup::Bpf(r) => (None, Some(r)),
    };
    // The exec guard: one thread answers the filter's notifications and verifies each
    // allowed exec at its exec stop; it also reaps the sandbox and returns its status.
    let (tracer, listener_to) = match guard {
        Some(g) => {
            let (tx, t) = start_exec_guard(g, session.stage1_pid, hash_cache);
            (Some(t), Some(tx))
        }
        None => (None, None),
    };
    // The sandbox's view is built: the exec guard computes ahead, as stage 1 (which sees
    // what the agent will see), what the agent's first exec would otherwise wait for,
    // while init forks and confines the agent.
    if session.wait_view() {
        if let Some(tx) = &listener_to {
            let _ = tx.send(TracerMsg::Warm(session.stage1_pid));
        }
    }
    if let Err(e) = session.wait_agent() {
        // Stage 1 is reaped; the guard's thread ends without a listener. What init's guard
        // made goes with the session's end.
        let made = session.guard_placeholders();
        if !made.is_empty() {
            record_guard_placeholders(made);
        }
        drop(listener_to);
        if let Some(t) = tracer {
            let _ = t.handle.join();
        }
        return Err(match agent_for_signals.abandoned() {
            Some(sig) => StartError::Interrupted(sig),
            None => setup_error(e),
        });
    }
    warden_event::timing::mark("sup: launched");
    // Before the agent may run: a session killed from here on still has them swept.
    let early = session.guard_placeholders();
    if !early.is_empty() {
        record_guard_placeholders(early);
    }
    if let Some(fd) = session.agent_pidfd() {
        if let Err((sig, fd)) = agent_for_signals.register(fd) {
            // A signal abandoned the start first: the agent is never let run. It is killed
            // while it waits for its release, so init ends the sandbox as after any exit
            // (its guard's last pass, its report with the placeholders it made). The
            // guard's thread ends without a listener; init's report is read, stage 1
            // reaped and the namespace waited out here.
            if warden_sys::pidfd::send_signal(&fd, libc::SIGKILL).is_err() {
                session.kill_sandbox();
            }
            drop(listener_to);
            if let Some(t) = tracer {
                let _ = t.handle.join();
            }
            reap_unstarted(None, &session, &mut record_guard_placeholders);
            return Err(StartError::Interrupted(sig));
        }
    }
    // The hook-report socket inside, for hooks that did not inherit the pipe.
    let hook_socket = match (session.hook_listener.take(), session.hook_pipe.take()) {
        (Some(l), Some(w)) => Some(warden_event::relay::forward(l, w, gate_asker)),
        _ => None,
    };
    if let Some(tx) = listener_to {
        // The thread holds the receiver until it got this (or the session failed).
        let _ = tx.send(TracerMsg::Listener(
            session.agent_fds.remove(0),
            session.agent_pid,
        ));
    }
    // BPF backend: the daemon places the whole sandbox (it waits for "go" and forks nothing
    // until then) in an enforced session cgroup before the agent may exec.
    let bpf_session = match bpf_rules {
        Some(rules) => match warden_daemon::client::open_session(
            Path::new(warden_daemon::SOCKET),
            session.stage1_pid,
            &rules,
            &rules.build_tool_hashes(),
            &session_id,
            pids_max,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                session.kill_sandbox();
                reap_unstarted(tracer, &session, &mut record_guard_placeholders);
                return Err(StartError::Unsupported(format!(
                    "the BPF exec guard could not take the session: {e}"
                )));
            }
        },
        None => None,
    };
    warden_event::timing::mark("sup: guard+bpf");
    if let Some(hold) = hold {
        if let Err(e) = hold(&session) {
            session.kill_sandbox();
            reap_unstarted(tracer, &session, &mut record_guard_placeholders);
            return Err(StartError::Internal(format!("warm spare: {e}")));
        }
        warden_event::timing::mark("sup: claimed");
    }
    let raw = if tty {
        warden_sandbox::pty::RawMode::enter()
    } else {
        None
    };
    let out = session
        .pty_master
        .as_ref()
        .map(|m| warden_sandbox::pty::relay_with(m, escape.take()));
    // The limits monitor opens the agent's private tmpfs through its pid: before the agent
    // may exec (and exit).
    watch.agent_pid = session.agent_pid;
    let monitor = warden_sandbox::limits::Monitor::start(watch);
    warden_event::timing::mark("sup: monitor started");
    // Everything that must see the agent's first exec is attached: it may exec now, while
    // the rest starts. Its connections wait in the bridge's socket until the proxy serves
    // them, its hook reports in their pipe.
    if let Err(e) = session.release() {
        session.kill_sandbox();
        drop(raw);
        reap_unstarted(tracer, &session, &mut record_guard_placeholders);
        return Err(StartError::Internal(format!(
            "the agent was not started: {e}; run again (`warden run -v` shows the guard's messages)"
        )));
    }
    warden_event::timing::mark("sup: released");
    let proxy_handle = ctl.map(|ctl| {
        warden_proxy::start(
            &policy,
            warden_proxy::ProxyOptions {
                hosts_file,
                loopback_gateway: gateway,
                approver: Some(approver),
            },
            ctl,
        )
        .map_err(|e| StartError::Policy(format!("proxy: {e}")))
    });
    let proxy_handle = match proxy_handle.transpose() {
        Ok(h) => h,
        Err(e) => {
            session.kill_sandbox();
            drop(raw);
            reap_unstarted(tracer, &session, &mut record_guard_placeholders);
            return Err(e);
        }
    };
    warden_event::timing::mark("sup: proxy started");
    if let Err(e) = session.wait_started() {
        drop(raw);
        reap_unstarted(tracer, &session, &mut record_guard_placeholders);
        // The agent's own execve failing is not a missing kernel feature: report it as a
        // shell would (127 not found, 126 not executable).
        if let warden_sandbox::StartFailure::Exec { message, errno } = &e {
            let msg = format!("cannot run {message}");
            return Err(if *errno == libc::EACCES {
                StartError::NotExecutable(msg)
            } else {
                StartError::NotFound(msg)
            });
        }
        return Err(StartError::Unsupported(format!(
            "sandbox setup failed: {e}"
        )));
    }
    Ok(Launched {
        session,
        tracer,
        out,
        monitor,
        raw,
        hook_relay,
        hook_socket,
        _proxy: proxy_handle,
        _bpf_session: bpf_session,
    })
}

impl Launched {
    /// Waits for the sandbox's processes to end; returns the agent's exit status and what is
    /// left to reap (see [`Reaper`]). `on_gone` runs as soon as they are: it tells threads
    /// that wait for that to finish, so their wake-ups overlap the rest of the end.
    /// `on_emptied` runs as soon as init says nothing of the sandbox runs any more (before
    /// its guard's last pass; not when init died first).
    pub(crate) fn wait(
        self,
        on_emptied: impl FnOnce(),
        on_gone: impl FnOnce(),
    ) -> Result<(i32, Reaper), StartError> {
        let Launched {
            session,
            tracer,
            out,
            mut monitor,
            raw,
            hook_relay,
            hook_socket,
            _proxy,
            _bpf_session,
        } = self;
        warden_event::timing::mark("sup: agent started");
        // Init reports the agent's status once nothing of the sandbox runs any more; the
        // kernel's teardown of the namespaces goes on while the session ends (`Reaper`).
        let reported = session.wait_reported_then(on_emptied);
        // Those of init's early report alone when it died without its exit report.
        let guard_placeholders = session.guard_placeholders();
        let (code, tracer) = match reported {
            Some(c) => (c, tracer),
            None => {
                let code = match tracer {
                    Some(t) => t.join(),
                    None => session.wait(),
                };
                // Stage 1 is reaped; init died without its report, and the kernel may
                // still be killing the rest of the namespace.
                session.wait_sandbox_gone();
                (code, None)
            }
        };
        warden_event::timing::mark("sup: agent tree gone");
        // The threads that wait for the sandbox's end are told now and joined later
        // (`Closing::join`), so their wake-ups overlap the rest of the end.
        let mut hook_socket = hook_socket;
        monitor.signal();
        if let Some(f) = &mut hook_socket {
            f.signal();
        }
        on_gone();
        if let Some(t) = out {
            let _ = t.join();
        }
        session.join_output();
        warden_event::timing::mark("sup: output joined");
        drop(raw);
        Ok((
            code,
            Reaper {
                tracer,
                session: reported.is_some().then_some(session),
                guard_placeholders,
                _bpf_session,
                closing: Some(Closing {
                    monitor,
                    hook_socket,
                    hook_relay,
                }),
            },
        ))
    }
}

/// The threads that report what they saw until the sandbox's end, told to finish: joined
/// before the session's last decisions, so what they report is in its log.
struct Closing {
    monitor: warden_sandbox::limits::Monitor,
    hook_socket: Option<warden_event::relay::Forwarder>,
    hook_relay: warden_event::relay::Handle,
}

impl Closing {
    fn join(self) {
        self.monitor.finish();
        warden_event::timing::mark("sup: limits monitor finished");
        // The forwarder closes its pipe end, the pipe closes and the relay writes its drop
        // counts.
        if let Some(f) = self.hook_socket {
            f.finish();
        }
        self.hook_relay.finish(std::time::Duration::from_secs(2));
        warden_event::timing::mark("sup: hook relay finished");
    }
}

/// What is left of a session whose processes are all gone: the stage-1 process, which the
/// kernel is still tearing down (mount trees, namespaces: an RCU grace period or more), and
/// the exec guard's thread that reaps it. Neither is in the session's cgroups (the agent
/// process joins them alone), so the session ends without waiting for the teardown.
pub(crate) struct Reaper {
    tracer: Option<Tracer>,
    session: Option<warden_sandbox::Session>,
    guard_placeholders: Vec<(std::path::PathBuf, bool, bool)>,
    _bpf_session: Option<warden_daemon::client::Session>,
    closing: Option<Closing>,
}

impl Reaper {
    /// The placeholders the sandbox's workspace guard made (workspace-relative, whether a
    /// directory, whether marked with the plan's token), as init reported them before the
    /// agent started and with its status (only the first when init died without a report).
    pub(crate) fn guard_placeholders(&self) -> Vec<(std::path::PathBuf, bool, bool)> {
        self.guard_placeholders.clone()
    }

    /// Joins the threads told to finish when the sandbox ended (see [`Closing`]).
    pub(crate) fn join_reporters(&mut self) {
        if let Some(c) = self.closing.take() {
            c.join();
        }
    }

    /// Reaps on a thread of its own (the process may exit first: stage 1 then dies with
    /// its parent, `PR_SET_PDEATHSIG`, and is reaped by the system).
    pub(crate) fn reap_in_background(mut self) {
        self.join_reporters();
        if let Some(t) = &self.tracer {
            t.save_cache();
        }
        std::thread::spawn(move || self.reap());
    }

    pub(crate) fn reap(mut self) {
        match self.tracer.take() {
            Some(t) => {
                let _ = t.handle.join();
            }
            None => {
                if let Some(s) = self.session.take() {
                    s.wait();
                }
            }
        }
    }
}

/// Blocks the forwarded signals (and SIGCHLD, which the exec guard reads through a
/// signalfd) in this thread and every thread started later; returns the forwarded set.
pub(crate) fn block_signals() -> libc::sigset_t {
    warden_sandbox::launch::save_start_mask();
    // SAFETY: building and applying a signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
        ] {
            // One warden was started with ignored (`nohup`, a shell's background job) stays
            // ignored, for warden and, inherited, for the agent: never passed on, never
            // a reason to end the sandbox.
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(s, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            libc::sigaddset(&mut set, s);
        }
        let mut all = set;
        libc::sigaddset(&mut all, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        set
    }
}

/// How long an agent has, after a SIGTERM, SIGINT, SIGHUP or SIGQUIT passed on to it, to
/// exit before warden ends its processes itself.
const SIGNAL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A signal after the first one passed on ends the agent's processes at once from this long
/// after it (a human's second ^C); sooner, it is one sender's burst (systemd's SIGTERM then
/// SIGHUP, a shell's SIGHUP then the terminal's own): passed on, the grace running.
const SECOND_SIGNAL_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the sandbox's build may go on after a signal abandoned the start (the agent has
/// not run: nothing of it to check) before warden kills stage 1 and with it the sandbox.
const ABANDON_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// The signal thread. SIGWINCH resizes the agent's pty. SIGTERM, SIGINT, SIGHUP, SIGQUIT:
/// before the agent process is registered, they abandon the start: `launch` kills the
/// agent process at its registration, before its release (it never runs a thing), and init
/// ends the sandbox in order; a build still going `ABANDON_BOUND` later is ended by
/// stage 1's SIGKILL. Then they go to the agent (through its
/// pidfd: it alone, never a process that got its pid later). One not followed by the
/// agent's exit within `SIGNAL_GRACE`, or another of them `SECOND_SIGNAL_AFTER` or more
/// after it (a SIGHUP never counts: a closed terminal sends it twice), ends the agent: a
/// SIGKILL to the agent process, which init sees as the agent's exit, so init ends the
/// sandbox as after any exit: SIGKILL to every process left in the namespace, the
/// workspace guard's last pass (what undoes a git config rewritten behind its lock), the
/// exit report with the placeholders it made. Killing stage 1 instead would take init down
/// before that pass (attack review 71: a planted `core.fsmonitor` survived a `timeout`
/// and ran in the host's `git status`). That end has no deadline, as after any exit: the
/// agent's processes are gone, only warden's own last pass runs, and a deadline there is
/// one the agent can reach on purpose (attack review 72: 20,000 repositories made in the
/// grace kept the pass busy past a 10 s bound, stage 1 was killed, the planted config
/// stayed). A signal meanwhile is answered on stderr, not acted on. Once the agent process
/// has exited, nothing is armed (init ends what is left). SIGUSR1/SIGUSR2 go to the agent.
fn handle_signals(
    session: &warden_sandbox::launch::Session,
    set: libc::sigset_t,
    agent: Arc<AgentSlot>,
) {
    let stage1 = session.stage1_pidfd();
    // A copy: the thread outlives the session's own.
    let master = session.pty_master.as_ref().and_then(|m| m.try_clone().ok());
    let readable = |a: &OwnedFd| {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one fd of ours, no waiting.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    };
    let end = move |why: &str| {
        if let Some(s) = &stage1 {
            if warden_sys::pidfd::send_signal(s, libc::SIGKILL).is_ok() {
                eprintln!("warden: {why}: ending the sandbox");
            }
        }
    };
    let stage1_gone = {
        let s = session.stage1_pidfd();
        move || s.as_ref().is_none_or(readable)
    };
    std::thread::spawn(move || {
        // When the first signal was passed on, while the agent has not exited.
        let mut first: Option<std::time::Instant> = None;
        // When a signal abandoned the start, while the sandbox is not gone.
        let mut abandoned: Option<std::time::Instant> = None;
        // The agent process was killed or has exited: the sandbox ends (init's last pass).
        let mut ending = false;
        loop {
            let sig = if first.is_none() && abandoned.is_none() {
                let mut sig = 0;
                // SAFETY: sigwait on the blocked set.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                sig
            } else {
                if let Some(at) = abandoned {
                    if stage1_gone() {
                        abandoned = None;
                        continue;
                    }
                    if at.elapsed() >= ABANDON_BOUND {
                        end(&format!(
                            "the sandbox's build did not end within {} s of the start's abandon",
                            ABANDON_BOUND.as_secs()
                        ));
                        abandoned = None;
                        continue;
                    }
                }
                if let Some(at) = first {
                    if agent.fd.get().is_none_or(readable) {
                        first = None;
                        continue;
                    }
                    if at.elapsed() >= SIGNAL_GRACE {
                        first = None;
                        ending = kill_agent(
                            &agent,
                            &format!(
                                "the agent did not exit within {} s of the signal passed on to it",
                                SIGNAL_GRACE.as_secs()
                            ),
                            &end,
                        );
                        continue;
                    }
                }
                // Short waits: the agent's exit is seen within 50 ms.
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                // SAFETY: sigtimedwait on the blocked set, no siginfo wanted.
                let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
                if r < 0 {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                        _ => return,
                    }
                }
                r
            };
            match sig {
                libc::SIGWINCH => {
                    if let Some(m) = &master {
                        use std::os::fd::AsRawFd;
                        // SAFETY: ioctl with a winsize struct.
                        unsafe {
                            let mut ws: libc::winsize = std::mem::zeroed();
                            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                                libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws);
                            }
                        }
                    }
                }
                libc::SIGUSR1 | libc::SIGUSR2 => {
                    if let Some(a) = agent.fd.get() {
                        let _ = warden_sys::pidfd::send_signal(a, sig);
                    }
                }
                // Being ended: a start abandoned (bounded above), or the agent gone and
                // init's last pass running (never cut short: see above).
                _ if abandoned.is_some() => {}
                _ if ending || agent.fd.get().is_some_and(readable) => {
                    ending = true;
                    eprintln!(
                        "warden: {}: the session is ending (the workspace guard checks what the agent left); this is not cut short",
                        signal_name(sig)
                    );
                }
                _ => match agent.take_or_abandon(sig) {
                    // The start ends at the agent's registration (see `launch`), or when
                    // the build fails; a build still going ABANDON_BOUND later is ended
                    // here.
                    None => {
                        eprintln!(
                            "warden: {} while the sandbox was being built: the start is abandoned",
                            signal_name(sig)
                        );
                        abandoned = Some(std::time::Instant::now());
                    }
                    // Its end is under way: init ends what is left.
                    Some(a) if readable(a) => {}
                    Some(_)
                        if sig != libc::SIGHUP
                            && first.is_some_and(|at| at.elapsed() >= SECOND_SIGNAL_AFTER) =>
                    {
                        first = None;
                        ending =
                            kill_agent(&agent, &format!("a second {}", signal_name(sig)), &end);
                    }
                    Some(a) => {
                        let _ = warden_sys::pidfd::send_signal(a, sig);
                        first.get_or_insert_with(std::time::Instant::now);
                    }
                },
            }
        }
    });
}

/// Ends the agent process with SIGKILL (init then ends the rest, see [`handle_signals`]);
/// when that cannot be sent, the sandbox at once (`end`). Whether the sandbox is ending
/// now (always, one way or the other).
fn kill_agent(agent: &AgentSlot, why: &str, end: &dyn Fn(&str)) -> bool {
    match agent
        .fd
        .get()
        .map(|a| warden_sys::pidfd::send_signal(a, libc::SIGKILL))
    {
        Some(Ok(())) => eprintln!("warden: {why}: ending the agent's processes"),
        // Exited meanwhile: init's end is under way.
        Some(Err(e)) if e.errno() == Some(warden_sys::Errno::SRCH) => {}
        _ => end(why),
    }
    true
}

/// The agent's pidfd for the signal thread, once the agent is known, and whether a signal
/// abandoned the start before that. One lock decides between the two: a signal either ends
/// a start whose agent was not registered (so never let run: registration comes before its
/// release) or goes to the registered agent, never both and never neither.
#[derive(Default)]
struct AgentSlot {
    fd: std::sync::OnceLock<OwnedFd>,
    abandoned: std::sync::Mutex<Option<i32>>,
}

impl AgentSlot {
    /// Registers the agent's pidfd, unless a signal abandoned the start first: its number
    /// (and the pidfd back).
    fn register(&self, fd: OwnedFd) -> Result<(), (i32, OwnedFd)> {
        let g = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sig) = *g {
            return Err((sig, fd));
        }
        let _ = self.fd.set(fd);
        Ok(())
    }

    /// The registered agent; with none, the start is abandoned by `sig` (the first such
    /// signal is the one reported).
    fn take_or_abandon(&self, sig: i32) -> Option<&OwnedFd> {
        let mut g = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
        let a = self.fd.get();
        if a.is_none() && g.is_none() {
            *g = Some(sig);
        }
        a
    }

    /// The signal that abandoned the start, if one did.
    fn abandoned(&self) -> Option<i32> {
        *self.abandoned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        _ => "a signal",
    }
}

/// The seccomp exec guard's supervisor thread (returns the sandbox's exit status) and a
/// thread refreshing its rules every 30 s.
/// What the exec guard's thread is sent before it supervises.
enum TracerMsg {
    /// The sandbox's view is built: warm up as this process (stage 1), which sees the
    /// agent's root and mount table ([`warden_sandbox::Session::wait_view`]).
    Warm(i32),
    /// The filter's listener and the agent's pid: supervise.
    Listener(OwnedFd, i32),
}

fn start_exec_guard(
    g: Box<warden_execguard::unotify::Guard>,
    stage1: i32,
    cache_path: PathBuf,
) -> (std::sync::mpsc::SyncSender<TracerMsg>, Tracer) {
    let g: Arc<warden_execguard::unotify::Guard> = Arc::from(g);
    let refresher = g.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let fresh = refresher
            .rules
            .read()
            .map(|r| r.clone())
            .ok()
            .and_then(|mut r| r.refresh().ok().map(|_| r));
        if let (Some(r), Ok(mut w)) = (fresh, refresher.rules.write()) {
            *w = r;
        }
    });
    let guard = g.clone();
    // The listener arrives once the sandbox is built; no listener: the launch failed and
    // stage 1 is reaped already.
    let (tx, rx) = std::sync::mpsc::sync_channel::<TracerMsg>(2);
    let t = Tracer {
        handle: std::thread::spawn(move || {
            let mut warmed = false;
            loop {
                match rx.recv() {
                    Ok(TracerMsg::Warm(pid)) => {
                        g.warm(pid);
                        warmed = true;
                    }
                    Ok(TracerMsg::Listener(listener, agent)) => {
                        // Not warmed yet (no early report): while the supervisor releases
                        // the agent.
                        if !warmed {
                            g.warm(agent);
                        }
                        return g.supervise(listener, stage1);
                    }
                    Err(_) => return 1,
                }
            }
        }),
        guard,
        cache_path,
    };
    (tx, t)
}

/// Waits for a sandbox whose agent never started (or was killed before it could run) to
/// be gone: the exec guard's thread reaps it when there is one. Init's exit report is read
/// first (it comes when the agent's exec failed): one larger than the pipe holds would
/// otherwise block init, stage 1 and this wait for good. Its placeholders are recorded
/// with the early report's, so the session's end removes them.
fn reap_unstarted(
    tracer: Option<Tracer>,
    session: &warden_sandbox::Session,
    record: &mut RecordGuardPlaceholders,
) {
    let before = session.guard_placeholders().len();
    let _ = session.wait_reported();
    let later = session.guard_placeholders().split_off(before);
    if !later.is_empty() {
        record(later);
    }
    match tracer {
        Some(t) => {
            let _ = t.handle.join();
        }
        None => {
            session.wait();
        }
    }
    session.wait_sandbox_gone();
}

/// The seccomp exec guard's thread, which reaps stage 1, and what it learnt: the hash
/// cache, saved by the session once the agent's tree is gone (no exec can come any more),
/// not by the thread, which may still be waiting for the kernel's namespace teardown.
pub(crate) struct Tracer {
    handle: JoinHandle<i32>,
    guard: Arc<warden_execguard::unotify::Guard>,
    cache_path: PathBuf,
}

impl Tracer {
    fn save_cache(&self) {
        Tracer::save(&self.guard, &self.cache_path);
    }

    fn join(self) -> i32 {
        let Tracer {
            handle,
            guard,
            cache_path,
        } = self;
        let code = handle.join().unwrap_or(1);
        Tracer::save(&guard, &cache_path);
        code
    }

    fn save(guard: &warden_execguard::unotify::Guard, path: &std::path::Path) {
        if let Err(e) = guard.cache.save_if_dirty(path) {
            tracing::warn!("hash cache {}: {e}", path.display());
        }
    }
}
