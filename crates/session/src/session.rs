//! [`Session`]: one supervised session's life, from a resolved [`SessionConfig`] to its end.
//!
//! [`Session::new`] compiles what the session needs without touching the host (the exec
//! rules); [`Session::describe`] is `--dry-run`; [`Session::start`] runs the side-effecting
//! steps in order and returns a [`SessionHandle`] once the agent runs;
//! [`SessionHandle::wait`] supervises it to the end and cleans up.
//!
//! Invariant: the supervisor stays single-threaded until the sandbox is forked (the steps
//! before [`launch`](warden_sandbox::launch) start no thread; `Early` holds their decisions).
//!
//! The steps of `start`, each a function below, in order:
//! 1. `hook_pipe`, `bind_host_proxy`: fds the sandbox inherits or that must exist before fork.
//! 2. `export_session_id`, `prepare_host_dirs`, `build_plan`, `check_command`.
//! 3. `start_agent_state`, `open_session_log` (+ the start decisions).
//! 4. `pids_limit`, `landlock_plan` (the memory cgroup and freezer leaf are made in 7, then
//!    the cgroup prewarm starts the grace period the agent process's join will need).
//! 5. `integrity::Inputs` (the walk itself, `integrity_baseline`, runs in `on_launch`, beside
//!    init's start; the report treats placeholders seen by it as warden's).
//! 6. `placeholder::begin` (placeholders + manifest, under the shared lock), `make_private_tmp`.
//! 7. `wire_proxy`, `hidden_watch` (opens of hidden files, `warden_sandbox::seen`),
//!    exec-guard write scope and `silent_blocks` (execs of hidden paths, EROFS'd writes),
//!    `freezer_leaf`, `on_launch` (monitor, control socket, audit writer, the hidden-file
//!    reader; started once the sandbox exists). The approval registry
//!    ([`crate::approval`]) made with the resources is handed to the proxy (`[network] ask`),
//!    the seccomp exec guard (`exec.ask_unknown`) and the control socket and key sequence.
//! 8. `supervise::launch` (the sandbox, signal forwarding, proxy, exec guard, pty relay).
//!
//! And at the end (`SessionHandle::wait`, also on a failed launch): the integrity report's
//! walk starts on a thread as soon as init says nothing of the sandbox runs (`compare_early`,
//! beside init's guard's last pass); once init reported the exit status: drain the hidden-file
//! reader, the integrity report, remove placeholders, private tmp and manifest, the agent state report, the pids-limit decision, the end decision, then `finish`
//! (risk, audit summary; every finding is in the store before it closes), then remove the
//! cgroups (only the agent's tree was in them) and leave stage 1 to a reaping thread (the
//! kernel's namespace teardown overlapped all of the above and need not be waited for).
//!
//! Start-up cost is measured per step with `WARDEN_TIMING=1` (`scripts/bench-phases.py`).

use crate::config::{ConnectScope, FreezerPlan, PidLimit, ProxyMode, SessionConfig};
use crate::error::StartError;
use crate::exec::ExecSetup;
use crate::runtime::{self, Early, Slot};
use crate::supervise::{self, Launched, ProxyStart};
use crate::ui::Ui;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_event::text::{printable, printable_lines, printable_path};
use warden_event::{Decision, Layer, Sink, Verdict};
use warden_sandbox::{cgroup::SessionCgroup, launch, plan, Launch, Plan};

/// A resolved session, ready to describe (`--dry-run`) or start.
pub struct Session {
    pub config: SessionConfig,
    exec: ExecSetup,
    /// Hashes for the gate inside (see [`crate::exec::Known`]).
    known: crate::exec::Known,
    ui: Ui,
    hold: Option<supervise::Hold>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The agent's exit status (as a shell reports it).
    pub code: i32,
    /// The risk monitor or a human killed the session.
    pub killed: bool,
}

impl Outcome {
    /// `warden run`'s exit code: the agent's, or 6 ("action denied") for a session the risk
    /// monitor or a human killed.
    pub fn exit_code(&self) -> i32 {
        if self.killed {
            6
        } else {
            self.code
        }
    }
}

/// What the end of a session cleans up and reports, whether or not the launch worked.
struct Resources {
    config: SessionConfig,
    ui: Ui,
    /// `ask` actions wait here for a human (control socket, Ctrl-] keys).
    approvals: Arc<crate::approval::Approvals>,
    who: String,
    running: Slot,
    cgroup: Option<SessionCgroup>,
    memory_cgroup: Option<warden_sandbox::cgroup::MemoryCgroup>,
    leaf: Option<warden_sandbox::freezer::SessionLeaf>,
    placeholders: Vec<warden_sandbox::placeholder::Placeholder>,
    /// What they (and the workspace guard's) are marked with (the plan's token).
    placeholder_token: String,
    private_tmp: Option<PathBuf>,
    manifest: PathBuf,
    /// The integrity baseline, taken once the sandbox is forked ([`integrity_baseline`]).
    integrity: Arc<std::sync::Mutex<Option<warden_sandbox::integrity::Snapshot>>>,
    agent_state: Option<warden_agentstate::StateSession>,
    /// The child of [`warden_sandbox::cgroup::prewarm`], reaped at the end.
    prewarm: Option<i32>,
    /// The reader of opens of hidden files ([`warden_sandbox::seen`]), once launched.
    hidden: HiddenSlot,
}

type HiddenSlot = Arc<std::sync::Mutex<Option<warden_sandbox::seen::Running>>>;

/// A running session.
pub struct SessionHandle {
    launched: Launched,
    res: Resources,
}

impl Session {
    /// Compiles the exec rules for the chosen backend (reads the hash cache and trust index,
    /// writes nothing). Errors mean no run.
    pub fn new(config: SessionConfig, ui: Ui) -> Result<Session, StartError> {
        let (exec, known) = ExecSetup::load(&config, ui)?;
        Ok(Session {
            config,
            exec,
            known,
            ui,
            hold: None,
        })
    }

    /// A warm spare (`crate::warm`): `hold` waits for the run that claims it, with the agent
    /// process built and confined, then releases the agent with that run's fds.
    pub fn hold_before_release(mut self, hold: supervise::Hold) -> Session {
        self.hold = Some(hold);
        self
    }

    /// The notices of the resolved config, printed before anything starts.
    pub fn print_notices(&self) {
        for n in &self.config.notices {
            match n {
                crate::config::Notice::Warn(w) => self.ui.warn_lines("warden: warning:", w),
                crate::config::Notice::Note(n) => eprintln!("warden: {}", printable(n)),
            }
        }
    }

    /// `--dry-run`: the decisions, the sandbox plan and the agent state's handling, and the
    /// state directories a run would create. Changes nothing on the host.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let port = match c.proxy {
            ProxyMode::HostLoopback => Some(0),
            _ => None,
        };
        let mut plan = build_plan(c, port, extra_read(c), None, &self.known);
        let refused = lock_warden_dirs(c, &mut plan)
            .err()
            .map(|e| format!("refused   {e}\n"))
            .unwrap_or_default();
        let mut s = format!(
            "{refused}{}{}{}",
            c.describe(),
            plan.describe(),
            warden_agentstate::describe(c.agent())
        );
        for d in plan::missing_state_dirs(&c.policy, &c.home, &c.workspace) {
            s.push_str(&format!("would create state dir {}\n", d.display()));
        }
        // What a run prints as notes before it starts (attack review 108: the dry run left
        // them out).
        for n in &plan.notes {
            s.push_str(&format!("note      {}\n", printable(n)));
        }
        s
    }

    /// Starts the session: every side-effecting step up to a running agent. `sinks` receive
    /// every decision of the session (with the risk monitor and the audit store).
    pub fn start(self, sinks: Vec<Arc<dyn Sink>>) -> Result<SessionHandle, StartError> {
        let Session {
            config,
            exec,
            known,
            ui,
            hold,
        } = self;
        warden_event::timing::mark("session: start");
        // The agent's user namespace and the sandbox's network namespace are made on the
        // other CPU from now on, while the plan is built (see
        // `warden_sandbox::idmap::Early`).
        let early_ns = config
            .features
            .user_namespaces
            .then(warden_sandbox::idmap::Early::start)
            .flatten();
        let (hook_r, hook_w) = hook_pipe()?;
        let host_proxy = bind_host_proxy(&config)?;
        warden_event::timing::mark("session: host proxy bound");
        export_session_id(&config.session_id);
        // The advisor (optional): takes its key out of our environment before anything
        // copies it.
        let mut advisor = warden_advisor::session::Wiring::prepare(
            &config.policy,
            &config.home,
            config.policy.agent.name.as_deref().unwrap_or(""),
        )
        .map_err(|e| StartError::Policy(format!("advisor: {e}")))?;
        if let Some(n) = advisor.as_ref().and_then(|w| w.note()) {
            ui.warn("warden: warning:", &n);
        }
        open_files_room(advisor.is_some())?;
        let extra_read = extra_read(&config);
        prepare_host_dirs(&config);
        // Attack review 80 (F6): a killed session never had its exit report; say so.
        for l in warden_sandbox::placeholder::sweep_dead(
            &config.state_dir.join("placeholders"),
            &config
                .state_dir
                .join("placeholders")
                .join(format!("{}.list", config.session_id)),
        ) {
            ui.warn_lines("warden: warning:", &l);
        }
        warden_event::timing::mark("session: advisor+host dirs");
        // The session's cgroups come first: the agent process's join of one of them waits
        // for an RCU grace period (5–38 ms here), which their prewarm starts now (see
        // `warden_sandbox::cgroup::prewarm`), so it runs while the plan is built and the
        // sandbox set up (started after the plan, it ended 3–10 ms past the agent's release).
        // They are made on the second core while the plan is built (neither reads the
        // other; a scoped thread, joined before anything else starts).
        let bpf = matches!(exec, ExecSetup::Bpf(_));
        // The machine-wide records of this user's and root's other live sessions, read once
        // for the fence and for the exec guard's "changed since" time.
        let others = trusted_other_sessions();
        let (cgroups, planned) = std::thread::scope(|s| {
            let made = std::thread::Builder::new()
                .name("warden-cgroups".into())
                .spawn_scoped(s, || session_cgroups(&config, bpf));
            let planned = (|| {
                let mut plan = build_plan(
                    &config,
                    host_proxy.as_ref().map(|(_, p)| *p),
                    extra_read,
                    advisor.as_ref(),
                    &known,
                );
                lock_warden_dirs(&config, &mut plan)?;
                fence_other_sessions(&mut plan, &others)?;
                check_command(&config, &plan)?;
                Ok::<_, StartError>(plan)
            })();
            warden_event::timing::mark("session: plan built");
            let cgroups = match made {
                Ok(h) => h.join().ok(),
                Err(_) => None,
            }
            .unwrap_or_else(|| session_cgroups(&config, bpf));
            (cgroups, planned)
        });
        warden_event::timing::mark("session: cgroups");
        // (A refused plan drops the cgroups: each removes itself.)
        let mut plan = planned?;
        // What this session's placeholders are marked with, the workspace guard's included.
        plan.placeholder_token = warden_sandbox::fsat::token();
        // Compiles while the rest is set up (or comes from the state directory's cache);
        // `launch` joins it before forking.
        warden_sandbox::bpf::set_cache_dir(config.state_dir.join("bpf"));
        let seccomp = warden_sandbox::filter::prepare(!plan.net_isolated);
        let agent_state = start_agent_state(&config, &mut plan)?;
        warden_event::timing::mark("session: agent state");
        let early = open_session_log(&config, &plan, sinks.clone())?;
        warden_event::timing::mark("session: log opened");
        let who = config.who();
        let pid_max = (config.pids == PidLimit::PidNamespace).then_some(plan.pids_max);
        let landlock = landlock_plan(&config, &plan, host_proxy.as_ref().map(|(_, p)| *p));
        // Joined by `launch` before forking, like the filter.
        let landlock_split = warden_sandbox::lock::prepare(&landlock);
        warden_event::timing::mark("session: pids+landlock plan");
        let integrity_inputs = warden_sandbox::integrity::Inputs::of(&config.workspace, &plan);
        let manifest = config
            .state_dir
            .join("placeholders")
            .join(format!("{}.list", config.session_id));
        let approvals = crate::approval::Approvals::with_id_file(
            config.policy.approvals.timeout(),
            config.state_dir.join("approval-ids"),
        );
        let mut res = Resources {
            config,
            ui,
            approvals,
            who,
            running: runtime::Running::slot(),
            cgroup: cgroups.pids,
            memory_cgroup: cgroups.memory,
            leaf: cgroups.leaf,
            placeholders: Vec::new(),
            placeholder_token: plan.placeholder_token.clone(),
            private_tmp: None,
            manifest,
            integrity: Arc::default(),
            agent_state,
            prewarm: cgroups.prewarm,
            hidden: Arc::default(),
        };
        warden_event::timing::mark("session: planned");
        // Directories removed at the end are freed after warden's exit (see `lateclose`;
        // `main` releases them).
        warden_sandbox::lateclose::enable();
        // From here on a failure still cleans up what was made.
        let prepared = (|| {
            res.placeholders = warden_sandbox::placeholder::begin(
                &res.config.state_dir.join("placeholders"),
                &res.manifest,
                &plan,
            )
            .map_err(|e| StartError::Workspace(e.to_string()))?;
            res.private_tmp = make_private_tmp(&plan)?;
            warden_event::timing::mark("session: placeholders+tmp");
            let tty = warden_event::tty::is_terminal(0);
            let (proxy, mut init_tasks) =
                wire_proxy(&res.config, host_proxy, hook_r, res.approvals.clone())?;
            // Opens of hidden files become decisions (warden_sandbox::seen).
            warden_event::timing::mark("session: proxy wired");
            let hidden = hidden_watch(&res.config, &plan, &mut init_tasks);
            warden_event::timing::mark("session: hidden watch");
            let record_writes = res.config.policy.audit.record_writes == Some(true);
            let mut exec = exec;
            // Allowlist mode: what is granted (`exec.allow` and `exec.jit` names, the build
            // tools) resolves only through places the agent cannot write, and stays as
            // resolved now (attack review 102: a link `.venv/bin/node -> python3` in a
            // workspace on `PATH` became the JIT `node` at the next refresh).
            if res.config.policy.exec.mode == Some(warden_policy::exec::ExecMode::Allowlist) {
                let writable: Vec<std::path::PathBuf> = plan
                    .writable_roots
                    .iter()
                    .chain(&plan.landlock_write)
                    .cloned()
                    .collect();
                let fixed = match &mut exec {
                    ExecSetup::Seccomp(g) => match g.rules.write() {
                        Ok(mut r) => r.distrust(writable).map_err(|e| e.to_string()),
                        Err(_) => Err("the rules' lock is poisoned".to_string()),
                    },
                    ExecSetup::Bpf(r) => r.distrust(writable).map_err(|e| e.to_string()),
                    ExecSetup::Off => Ok(()),
                };
                fixed.map_err(|e| StartError::Policy(format!("exec policy: {e}")))?;
            }
            if let ExecSetup::Seccomp(g) = &mut exec {
                silent_blocks(g, &res.config, record_writes);
                // Files the agent can write get no cached identity (see WriteScope).
                g.set_write_scope(if res.config.features.landlock_abi > 0 {
                    warden_execguard::unotify::WriteScope::confined(
                        plan.landlock_write.iter().chain(&plan.masks).cloned(),
                    )
                    .with_other_sessions(
                        warden_execguard::unotify::OtherRoots(std::sync::Arc::new(|| {
                            warden_sandbox::placeholder::other_sessions()
                                .into_iter()
                                .flat_map(|o| o.roots)
                                .collect()
                        })),
                        earliest_other_session(&others),
                        warden_sandbox::placeholder::recordable(),
                    )
                } else {
                    warden_execguard::unotify::WriteScope::unconfined()
                });
            }
            // Allowlist mode: unknown content asks a human (seccomp backend only).
            match &mut exec {
                ExecSetup::Seccomp(g) if res.config.policy.exec.ask_unknown == Some(true) => g
                    .set_approver(Arc::new(crate::approval::ExecApprover(
                        res.approvals.clone(),
                    ))),
                _ if res.config.policy.exec.ask_unknown == Some(true) => res.ui.warn(
                    "warden: note:",
                    "exec.ask_unknown needs the seccomp exec guard; unknown content is denied without asking",
                ),
                _ => {}
            }
            let ask_writes = write_asks(&res, &plan, &mut exec);
            // The cgroup the agent's tree joins: its task list is the exec guard's list of
            // the sandbox's threads (see `Guard::set_sandbox_cgroup`).
            if let ExecSetup::Seccomp(g) = &mut exec {
                let joined = res
                    .cgroup
                    .as_ref()
                    .map(|c| c.path.clone())
                    .or_else(|| res.leaf.as_ref().map(|l| l.path.clone()));
                if let Some(dir) = joined {
                    g.set_sandbox_cgroup(dir);
                }
            }
            warden_event::timing::mark("session: cgroups");
            let on_launch = on_launch(&res, early.clone());
            // The baseline before the hidden-file reader: that one waits for init's view.
            let on_launch = integrity_baseline(on_launch, integrity_inputs, &res);
            let on_launch = start_hidden_watch(on_launch, hidden, res.hidden.clone());
            let advisor_fd = advisor.as_mut().and_then(|w| w.sandbox_fd());
            let on_launch: runtime::OnLaunch = match advisor {
                Some(w) => Box::new(move |pid| {
                    on_launch(pid);
                    w.start();
                }),
                None => on_launch,
            };
            let pids_max = plan.pids_max as u64;
            let watch = warden_sandbox::limits::Watch {
                agent_pid: 0,
                tmpfs: plan.limits.tmpfs.clone(),
                memory: res
                    .memory_cgroup
                    .as_ref()
                    .map(|c| (c.path.clone(), c.v2, c.max)),
            };
            let l = Launch {
                rlimit_nproc: (res.config.pids == PidLimit::RlimitNproc
                    || (res.config.pids == PidLimit::PidsCgroup && res.cgroup.is_none()))
                .then_some(pids_max),
                pid_max,
                // Hooks that do not inherit the pipe report through a socket inside.
                hook_socket: true,
                inherit_fd: Some(hook_w),
                inherit_fds: advisor_fd.into_iter().collect(),
                cgroup_procs: res
                    .cgroup
                    .as_ref()
                    .map(|c| c.join_file())
                    .or_else(|| res.leaf.as_ref().map(|l| l.procs())),
                memory_cgroup_procs: res.memory_cgroup.as_ref().and_then(|c| c.join_file()),
                nest: session_nest(&res),
                best_effort: res.config.best_effort,
                plan,
                landlock,
                landlock_split: Some(landlock_split),
                hooks: if matches!(exec, ExecSetup::Seccomp(_)) {
                    vec![Arc::new(crate::exec::ExecHook::new(
                        record_writes,
                        ask_writes,
                        res.config.policy.exec.mode
                            == Some(warden_policy::exec::ExecMode::Allowlist),
                    )) as Arc<dyn warden_sandbox::AgentHook>]
                } else {
                    Vec::new()
                },
                init_tasks,
                namespaces: res.config.features.user_namespaces,
                pty: tty,
                seccomp: Some(seccomp),
                early_ns,
            };
            Ok::<_, StartError>(supervise::Start {
                launch: l,
                tty,
                exec,
                session_id: res.config.session_id.clone(),
                pids_max,
                hash_cache: res.config.hash_cache.clone(),
                proxy,
                on_launch,
                watch,
                escape: Some(runtime::escape_handler(res.running.clone(), ui)),
                hold,
                record_guard_placeholders: {
                    let (dir, manifest) = (
                        res.config.state_dir.join("placeholders"),
                        res.manifest.clone(),
                    );
                    let (ws, token, ui) = (
                        res.config.workspace.clone(),
                        res.placeholder_token.clone(),
                        res.ui,
                    );
                    Box::new(move |early| {
                        let early = guard_placeholders_of(&ws, &token, early);
                        if let Err(e) =
                            warden_sandbox::placeholder::add(&dir, &manifest, &token, &early)
                        {
                            ui.warn(
                                "warden: note:",
                                &format!(
                                    "the placeholders' record {}: {e} (a session killed now would leave the workspace guard's placeholders)",
                                    manifest.display()
                                ),
                            );
                        }
                    })
                },
            })
        })();
        let launched = prepared.and_then(supervise::launch);
        match launched {
            Ok(launched) => Ok(SessionHandle { launched, res }),
            Err(e) => {
                let _ = end(res, None, None, None);
                Err(e)
            }
        }
    }
}

impl SessionHandle {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.res.config.session_id
    }

    /// Freezes the whole tree (the risk monitor's stop switch), as `by` asked.
    pub fn freeze(&self, by: &str) -> Result<(), crate::MonitorError> {
        self.monitor()?.freeze(by).map(|_| ())
    }

    /// Thaws a frozen session.
    pub fn thaw(&self, by: &str) -> Result<(), crate::MonitorError> {
        self.monitor()?.thaw(by)
    }

    /// Ends the whole tree.
    pub fn kill(&self, by: &str) -> Result<(), crate::MonitorError> {
        self.monitor()?.kill(by)
    }

    fn monitor(&self) -> Result<Arc<crate::Monitor>, crate::MonitorError> {
        self.res
            .running
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.monitor.clone()))
            .ok_or(crate::MonitorError::NotRunning)
    }

    /// Supervises the session to its end, then cleans up and reports (see the module doc).
    pub fn wait(self) -> Result<Outcome, StartError> {
        // The hidden-file reader drains what is queued once the sandbox is gone: told now,
        // joined in `end`.
        let hidden = self.res.hidden.clone();
        let on_gone = move || {
            if let Some(r) = hidden.lock().ok().as_deref_mut().and_then(|h| h.as_mut()) {
                r.signal();
            }
        };
        // The integrity report's walk only reads the workspace: it starts once nothing of
        // the sandbox runs any more, beside init's guard's last pass (which can only remove
        // or neutralise what the agent left: either state of a file is reported truly),
        // instead of after it.
        let mut early = None;
        let on_emptied = || early = compare_early(&self.res);
        let waited = self.launched.wait(on_emptied, on_gone);
        match waited {
            Ok((code, reaper)) => end(self.res, Some(Ok(code)), Some(reaper), early),
            Err(e) => end(self.res, Some(Err(e)), None, early),
        }
    }
}

/// The end of a session: run after the agent exits, and after a failed launch (`result`
/// None: the launch's own error is returned by the caller).
fn end(
    res: Resources,
    result: Option<Result<i32, StartError>>,
    mut reaper: Option<supervise::Reaper>,
    early: Option<EarlyCompare>,
) -> Result<Outcome, StartError> {
    let Resources {
        config,
        ui,
        approvals,
        who,
        running,
        cgroup,
        memory_cgroup,
        leaf,
        placeholders,
        placeholder_token,
        private_tmp,
        manifest,
        integrity,
        agent_state,
        prewarm,
        hidden,
    } = res;
    // Nothing may wait for a human any more: waiting requests are denied.
    approvals.close();
    warden_event::timing::mark("end: approvals closed");
    let code = result.as_ref().and_then(|r| r.as_ref().ok().copied());
    // Nothing of the sandbox runs any more (init reported after emptying its namespace):
    // this work overlaps the kernel's teardown of the namespaces, and every finding is
    // emitted before the audit store closes (`finish`).
    // Opens still queued are read now: the sandbox is gone.
    if let Some(r) = hidden.lock().ok().and_then(|mut h| h.take()) {
        r.finish();
    }
    warden_event::timing::mark("end: hidden finished");
    // Before the placeholders go: the report skips created empty files, which is all a
    // placeholder is, and its walk then never races their removal.
    let compared = match early.map(|h| h.join()) {
        Some(Ok(Some(r))) => Some(Ok(r)),
        Some(Err(_)) => Some(Err(
            "no integrity report: the walk of the workspace after the session failed; review what host tools run or load by hand",
        )),
        Some(Ok(None)) | None => integrity
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .map(|before| Ok(warden_sandbox::integrity::compare(&before, &config.workspace))),
    };
    // A warm spare that ends unclaimed: its agent never ran, and what changed is the host's.
    let compared = compared.filter(|_| !crate::warm::unclaimed_spare());
    match compared {
        Some(Ok(r)) => {
            let sharing = warden_sandbox::placeholder::sharing(
                &config.state_dir.join("placeholders"),
                &manifest,
                &config.workspace,
            );
            report_integrity(r, &who, sharing);
        }
        Some(Err(why)) => no_integrity_report(&who, why),
        // The agent ran, but the baseline walk failed: no report is not a clean report.
        None if result.is_some() && !crate::warm::unclaimed_spare() => no_integrity_report(
            &who,
            "no integrity report: the walk of the workspace before the agent ran failed (`warden run -v` shows why); review what host tools run or load by hand",
        ),
        None => {}
    }
    warden_event::timing::mark("end: integrity reported");
    // Removing the placeholders waits on the disk (on a file system mounted with `discard`,
    // each removed directory is a synchronous discard: ~0.1-1 ms apiece), so it overlaps the
    // rest of the session's end: all of it without a state filter, the part before the
    // filter's write-back with one. Joined before `end` returns.
    // The workspace guard's placeholders (git-config targets of repositories the plan did
    // not read: nested ones) go with the session's own.
    let mut placeholders = placeholders;
    if let Some(r) = &reaper {
        placeholders.extend(guard_placeholders_of(
            &config.workspace,
            &placeholder_token,
            r.guard_placeholders(),
        ));
    }
    let mut cleanup = {
        let dir = config.state_dir.join("placeholders");
        let (manifest, placeholders) = (manifest.clone(), placeholders.clone());
        let remove = move || {
            warden_sandbox::placeholder::end(&dir, &manifest, &placeholders);
            if let Some(t) = &private_tmp {
                // Held open, it is freed after warden's exit (`lateclose`); remove_dir_all
                // never follows symlinks (openat + O_NOFOLLOW, unlinkat).
                let held = warden_sandbox::fsat::open_root(t);
                if std::fs::remove_dir_all(t).is_ok() {
                    if let Ok(fd) = held {
                        warden_sandbox::lateclose::keep(fd);
                    }
                }
            }
        };
        // Inline when no thread can be started: the same work, in order.
        Cleanup::start(remove)
    };
    // A warm spare that ends unclaimed: its agent never ran, and a host file it wrote back
    // (or an orphan it merged) would make the next spare, built meanwhile, stale.
    let agent_state = match agent_state {
        Some(s) if crate::warm::unclaimed_spare() => {
            s.discard();
            None
        }
        s => s,
    };
    if let Some(s) = agent_state {
        // The state filter's write-back meets the placeholders: an absent settings file's
        // mount point is one, and a remover that found it empty must not unlink what the
        // write-back just renamed there. They are gone first.
        cleanup.join();
        // Under the sessions' lock: no other session's agent may write where the files go
        // while they are written (attack review 80); what this one could not write back, and
        // what earlier sessions left for the same reason, is merged by whoever ends last.
        // The session's copies, removed by `finish` unless kept: freed after warden's exit
        // (see `lateclose`).
        if let Ok(fd) = warden_sandbox::fsat::open_root(
            &config.state_dir.join("agentstate").join(&config.session_id),
        ) {
            warden_sandbox::lateclose::keep(fd);
        }
        let (report, recovered) = {
            let q = quiet(&config.state_dir, &manifest);
            let busy = |p: &Path| q.busy(p);
            let report = s.finish(&busy);
            let recovered =
                warden_agentstate::session::recover_orphans(&config.state_dir, &config.home, &busy);
            (report, recovered)
        };
        eprint!("{}", printable_lines(&report.render(&config.session_id)));
        for m in recovered {
            eprintln!("warden: {}", printable_lines(&m));
        }
        // `[approvals] held = "ask"`: a human may apply them now (the control socket is up).
        if report.held_file.is_some()
            && config.policy.approvals.held() == warden_policy::approvals::HeldAsk::Ask
        {
            let (st, home, id) = (&config.state_dir, &config.home, &config.session_id);
            for l in crate::approval::ask_held(&approvals, st, home, id) {
                eprintln!("{}", printable_lines(&l));
            }
        }
    }
    if let Some(cg) = &cgroup {
        let hits = cg.max_events();
        if hits > 0 {
            Decision::new(
                Layer::Sandbox,
                &who,
                "fork",
                "process.pids_max",
                Verdict::Deny,
                format!("the pids limit was hit {hits} times"),
            )
            .emit();
        }
    }
    // What the limits monitor and the hook relay saw goes before the session's end.
    if let Some(r) = &mut reaper {
        r.join_reporters();
    }
    if let Some(code) = code {
        Decision::new(
            Layer::Sandbox,
            &who,
            config.command.join(" "),
            "session",
            Verdict::Observe,
            format!("session end, exit {code}"),
        )
        .emit();
    }
    warden_event::timing::mark("session: end reported");
    // Quiet, nothing more is printed (what closing the audit store prints is an error): a
    // claimed warm spare's run may end now, while the store is closed.
    if let (true, Some(Ok(code))) = (config.quiet, &result) {
        crate::warm::report(
            Outcome {
                code: *code,
                killed: runtime::killed(&running),
            }
            .exit_code(),
        );
    }
    let risk = runtime::finish(&running, config.quiet, &config.session_id, code, ui);
    warden_event::timing::mark("session: audit closed");
    // Everything the session prints is printed (the summary): a claimed warm spare's run
    // may end now (when quiet, it did above).
    if let Some(Ok(code)) = &result {
        crate::warm::report(
            Outcome {
                code: *code,
                killed: risk.as_ref().is_some_and(|r| r.killed),
            }
            .exit_code(),
        );
    }
    // Every process in the session's cgroups is gone (only the agent's tree joined them;
    // init reported after killing and reaping it), so they go now. Stage 1 and init, outside
    // them, may still be in the kernel's namespace teardown (a grace period or more): they
    // are reaped by a thread of their own, and nothing here waits for it.
    drop(leaf);
    drop(memory_cgroup);
    drop(cgroup);
    if let Some(r) = reaper {
        r.reap_in_background();
    }
    warden_event::timing::mark("session: cgroups removed");
    cleanup.join();
    warden_event::timing::mark("end: placeholders+tmp removed");
    warden_sandbox::cgroup::reap_prewarm(prewarm);
    let code = match result {
        Some(r) => r?,
        None => return Err(StartError::Internal("the session did not start".into())),
    };
    Ok(Outcome {
        code,
        killed: risk.is_some_and(|r| r.killed),
    })
}

/// Hook decisions made inside the sandbox (`warden hook`, run by the agent) reach this
/// session's log through a pipe: the agent holds the write end, we read, validate and
/// re-stamp every line (they are the agent side's reports, and are marked as such).
fn hook_pipe() -> Result<(OwnedFd, OwnedFd), StartError> {
    warden_sys::pipe_cloexec()
        .map_err(|e| StartError::Internal(format!("pipe: {}", std::io::Error::from(e))))
}

/// Without a network namespace the proxy listens on the host's loopback, and Landlock
/// (ABI 4+) lets the agent connect to that TCP port only. Bound now: no threads before the
/// sandbox is forked; the socket is close-on-exec, so the agent never holds it.
fn bind_host_proxy(c: &SessionConfig) -> Result<Option<(std::net::TcpListener, u16)>, StartError> {
    if c.proxy != ProxyMode::HostLoopback {
        return Ok(None);
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| StartError::Internal(format!("proxy: bind 127.0.0.1:0: {e}")))?;
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    Ok(Some((l, port)))
}

/// Single-threaded here: every Decision of this process carries the session id.
fn export_session_id(id: &str) {
    std::env::set_var("WARDEN_SESSION_ID", id);
}

/// warden's own binary stays reachable (read + exec, never write) at the same path, so the
/// agent's hooks (`warden hook ...`, as `warden install` wrote them) run inside too; and the
/// agent's install directory when it lives under `$HOME`.
fn extra_read(c: &SessionConfig) -> Vec<PathBuf> {
    let env: Vec<_> = std::env::vars_os().collect();
    let own_exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    c.command
        .first()
        .and_then(|cmd| agent_install_dir(cmd, &env, &c.home))
        .into_iter()
        .flatten()
        .chain(own_exe)
        .collect()
}

/// Warden's own directories against the plan's roots as they resolve now (after
/// [`prepare_host_dirs`]): the per-user ones are hidden wherever a root shows them
/// (`Plan::hide_within_visible`); a writable root at, inside or aliasing one refuses the
/// session, and one a writable root holds is locked read-only (`Plan::lock_within_writable`). The policy loader judged
/// the entries already (`config::check_writable_roots`); this judges what will be bound.
fn lock_warden_dirs(c: &SessionConfig, plan: &mut Plan) -> Result<(), StartError> {
    // A writable root named through a symlink, as the plan resolved it (and will bind it):
    // never in a protected or hidden path (the policy check judged it a moment earlier; a
    // concurrent agent may have swapped a link since).
    let guarded = if plan.relinked.is_empty() {
        Vec::new()
    } else {
        let mut resolver = warden_sandbox::resolve::Resolver::default();
        crate::config::guarded_paths(&c.policy, &anchors(c), &mut resolver)
    };
    if let Some(e) = &plan.unlisted_error {
        return Err(StartError::Policy(format!(
            "the sandbox's view: {e}; nothing was run (a directory no policy root shows would stay reachable by name)"
        )));
    }
    if let Some((path, landing)) = &plan.unlockable {
        return Err(StartError::Policy(format!(
            "the protected path {} is a symlink to {}, which is or holds a directory the agent can write: warden can neither lock it (the whole directory would be read-only) nor leave it writable (the host would use what the agent writes there); point the link elsewhere or make it a real directory",
            path.display(),
            landing.display()
        )));
    }
    for r in &plan.relinked {
        if let Some((_, entry, rule)) = guarded.iter().find(|(g, _, _)| r.real.starts_with(g)) {
            return Err(StartError::Policy(format!(
                "the writable root {} is reached through a symlink and lands at {}, inside `{entry}` ({rule}): a directory warden locks or hides is never made writable through a link; point the link elsewhere",
                r.spelled.display(),
                r.real.display()
            )));
        }
    }
    plan.hide_within_visible(&crate::config::user_warden_dirs(&c.home));
    plan.lock_within_writable(&crate::config::warden_dirs(&c.home))
        .map_err(|(root, dir)| {
            StartError::Policy(format!(
                "the writable root {} is at, inside, or another path to warden's own directory {} (or one above it): the agent could rewrite what later sessions trust (policy, audit store, hash cache, compiled seccomp programs); remove that root from the policy (no flag allows this)",
                root.display(),
                dir.display()
            ))
        })
}

/// What other live sessions bind read-only (their exec guards map files there without
/// sealed copies when their agents cannot write them) stays read-only here: locked when it
/// lies inside one of this session's writable roots; a writable root inside it refuses the
/// start (attack review 91: a session whose workspace was a directory another one bound
/// read-only rewrote code that session had mapped).
fn fence_other_sessions(
    plan: &mut Plan,
    others: &[warden_sandbox::placeholder::OtherSession],
) -> Result<(), StartError> {
    if others.iter().all(|o| o.fixed.is_empty()) {
        return Ok(());
    }
    let roots: Vec<PathBuf> = plan
        .writable_roots
        .iter()
        .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
        .collect();
    let mut lock = Vec::new();
    for o in others {
        for f in &o.fixed {
            if let Some(r) = roots.iter().find(|r| r.starts_with(f)) {
                return Err(StartError::Workspace(format!(
                    "the writable root {} is inside {}, which the live warden session of pid {} binds read-only and runs programs from without copies: its agent's programs would run what this agent writes there; end that session first, or make {} read-only here",
                    r.display(),
                    f.display(),
                    o.pid,
                    r.display()
                )));
            }
            if roots.iter().any(|r| f.starts_with(r)) {
                lock.push((
                    f.clone(),
                    f.is_dir(),
                    false,
                    format!(
                        "the live warden session of pid {} binds it read-only and runs programs from it",
                        o.pid
                    ),
                ));
            }
        }
    }
    plan.protect_referenced(lock);
    Ok(())
}

/// The other live sessions whose records count: this user's own and root's (a record
/// another user wrote could name anything: attack review 93 refused every session on the
/// machine with one naming `/`).
fn trusted_other_sessions() -> Vec<warden_sandbox::placeholder::OtherSession> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    warden_sandbox::placeholder::other_sessions()
        .into_iter()
        .filter(|o| o.owner == me || o.owner == 0)
        .collect()
}

/// When the earliest of `others` began, in `CLOCK_REALTIME` seconds (see
/// `WriteScope::with_other_sessions`); `None` when there is none. When the boot time cannot
/// be read, the epoch: every file then counts as changed since (nothing is vouched for).
fn earliest_other_session(others: &[warden_sandbox::placeholder::OtherSession]) -> Option<i64> {
    let first = others.iter().map(|o| o.started).min()?;
    let btime: Option<i64> = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    });
    let Some(btime) = btime else {
        return Some(0);
    };
    // SAFETY: sysconf with a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // A session recorded without its start time (0) started at boot, for this purpose.
    Some(btime + (first / hz) as i64)
}

/// Creates the agent's missing state dirs (placeholders of dead sessions are swept when
/// this one's are made: [`warden_sandbox::placeholder::begin`]).
fn prepare_host_dirs(c: &SessionConfig) {
    // Warden's state directory exists before the plan, so a writable root that holds it
    // locks it as an existing directory (`build_plan`), and nothing of the agent's can be
    // made there first.
    if let Some(parent) = c.state_dir.parent() {
        use std::os::unix::fs::DirBuilderExt;
        // Parents as any tool makes them (`~/.local` must stay traversable); the state
        // directory itself private.
        let _ = std::fs::create_dir_all(parent);
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&c.state_dir);
    }
    plan::create_state_dirs(&c.policy, &c.home, &c.workspace);
    warden_agentstate::prepare_dirs(
        c.agent(),
        &c.home,
        &c.policy.files.protect,
        warden_sandbox::plan::looks_like_file,
    );
}

/// The sandbox's view. `host_proxy_port`: the proxy's host loopback port (no network
/// namespace).
fn build_plan(
    c: &SessionConfig,
    host_proxy_port: Option<u16>,
    extra_read: Vec<PathBuf>,
    advisor: Option<&warden_advisor::session::Wiring>,
    known: &crate::exec::Known,
) -> Plan {
    let mut plan = plan::build(plan::PlanInput {
        no_link_walk: crate::config::warden_dirs(&c.home),
        policy: &c.policy,
        workspace: c.workspace.clone(),
        home: c.home.clone(),
        command: c.command.clone(),
        session_id: c.session_id.clone(),
        features: &c.features,
        extra_env: {
            let mut e = match (host_proxy_port, c.features.user_namespaces) {
                (_, true) => warden_proxy::proxy_env(warden_proxy::SANDBOX_PORT),
                (Some(port), false) => warden_proxy::proxy_env(port),
                (None, false) => Vec::new(),
            };
            e.push(("WARDEN_HOOK_FD".into(), launch::INHERITED_FD.to_string()));
            e.extend(advisor.map(|w| w.env()));
            e
        },
        extra_read,
    });
    if let Some(w) = advisor {
        w.scrub(&mut plan.env, &mut plan.scrubbed);
    }
    plan.protect_existing(&c.policy_files);
    // Files the host's agent settings run from a writable root (statusline scripts, hook
    // scripts, MCP servers): locked like `files.protect` (warden-agentstate::refs).
    let state = plan::state_roots(&c.policy, &c.home, &c.workspace);
    let (refs, warnings) = warden_agentstate::refs::host_referenced(
        &c.home,
        &c.workspace,
        &state,
        &plan.writable_roots,
    );
    plan.notes.extend(warnings);
    plan.protect_referenced(
        refs.into_iter()
            .map(|r| (r.path, r.is_dir, r.watch_only, r.from))
            .collect(),
    );
    // Claude Code's auto-memory of this project: instructions the next host session obeys,
    // locked like `~/.claude/CLAUDE.md` (when `~/.claude` is writable, i.e. the claude profile).
    // Gemini CLI's too, under the name `~/.gemini/projects.json` gives a registered project.
    let roots = project_roots(&c.workspace);
    let claude = roots
        .iter()
        .filter_map(|r| warden_agentstate::refs::claude_project_memory(&c.home, r))
        .map(|m| (m, "Claude Code"));
    // (Only where the agent could write one: reading `~/.gemini`'s markers costs a profile
    // that does not open it.)
    let gemini_tmp = c.home.join(".gemini").join("tmp");
    let gemini = if plan
        .writable_roots
        .iter()
        .any(|r| gemini_tmp.starts_with(r))
    {
        warden_agentstate::refs::gemini_project_memories(&c.home, &roots)
    } else {
        Vec::new()
    };
    let gemini = gemini.into_iter().map(|m| (m, "Gemini CLI"));
    let memories: Vec<_> = claude
        .chain(gemini)
        .map(|(m, cli)| {
            (
                m,
                true,
                false,
                format!("{cli}'s auto-memory of this project (its MEMORY.md is in every later session's instructions)"),
            )
        })
        .collect();
    plan.protect_referenced(memories);
    // The gate inside (`warden hook`) judges with this run's effective policy, read-only.
    plan.set_gate_policy(
        warden_policy::session::SessionPolicy {
            version: warden_policy::session::VERSION,
            session_id: c.session_id.clone(),
            profile: c.profile.clone(),
            workspace: c.workspace.clone(),
            home: c.home.clone(),
            policy: c.policy.clone(),
            // Only files the sandbox shows (attack review 130: the hash of a hidden file is
            // of no use to the gate, which cannot open it, and told the agent its content's
            // hash) and none the agent can write (the hash of a file changed through a
            // writable mapping it made earlier would keep its stamp, see
            // `warden_execguard::cache`).
            known: known
                .stamps
                .iter()
                .filter(|(p, _)| {
                    plan.shows(p) && !plan.writable_roots.iter().any(|r| p.starts_with(r))
                })
                .map(|(_, k)| k.clone())
                .collect(),
            // Denied contents of files the sandbox shows, writable ones included: a hash
            // says what was denied, not what a file holds now.
            pinned: known
                .pinned
                .iter()
                .filter(|(p, _)| plan.shows(p))
                .map(|(_, d)| d.clone())
                .collect(),
        }
        .to_json(),
    );
    plan
}

/// Every path Claude Code may name this project by (its auto-memory lives under that name):
/// the workspace as given and resolved, and the repository root it belongs to: the nearest
/// ancestor holding `.git`, or for a worktree (or a checkout whose `.git` file points
/// elsewhere) the main checkout, whose git dir is the common one. Attack review 78: Claude
/// Code keys memory by the canonical git root, so a worktree's or a subdirectory's session
/// locked a name Claude Code never reads.
fn project_roots(workspace: &Path) -> Vec<PathBuf> {
    let mut out = vec![workspace.to_path_buf()];
    let real = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let root = real
        .ancestors()
        .find(|a| std::fs::symlink_metadata(a.join(".git")).is_ok())
        .map(Path::to_path_buf);
    out.push(real);
    if let Some(root) = root {
        let main = warden_sandbox::gitrefs::checkout_git_dirs(&root)
            .into_iter()
            .find(|d| d.file_name().is_some_and(|n| n == ".git"))
            .and_then(|d| d.parent().map(Path::to_path_buf));
        out.push(root);
        out.extend(main);
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    out
}

/// A command the view hides fails here, saying why (not as a setup error).
fn check_command(c: &SessionConfig, plan: &Plan) -> Result<(), StartError> {
    if !c.features.user_namespaces {
        return Ok(());
    }
    plan.resolve_command()
        .map_err(|e| StartError::NotFound(e.to_string()))?;
    for n in &plan.notes {
        eprintln!("warden: note: {}", printable(n));
    }
    let hidden = plan.hidden_path_dirs();
    if !hidden.is_empty() {
        let list: Vec<String> = hidden.iter().map(|d| printable_path(d)).collect();
        eprintln!(
            "warden: note: on PATH but hidden in the sandbox (files.read shows a directory): {}",
            list.join(", ")
        );
    }
    Ok(())
}

/// The sessions' lock and what the other live sessions can write (see
/// `warden_sandbox::placeholder::Quiet`): held while a host file of the agent's state is
/// replaced.
pub(crate) fn quiet(state_dir: &Path, me: &Path) -> warden_sandbox::placeholder::Quiet {
    warden_sandbox::placeholder::quiet(&state_dir.join("placeholders"), me)
}

/// State filter (warden-agentstate): the agent works on a copy of ~/.claude.json.
fn start_agent_state(
    c: &SessionConfig,
    plan: &mut Plan,
) -> Result<Option<warden_agentstate::StateSession>, StartError> {
    // Sessions that ended without writing their state back (killed, or another session
    // could write there then), merged under the sessions' lock before this one's copies
    // are taken.
    if !warden_agentstate::filtered_files(c.agent()).is_empty() {
        // The lock is taken only when there is something to merge.
        let q = std::cell::OnceCell::new();
        let busy = |p: &Path| q.get_or_init(|| quiet(&c.state_dir, Path::new(""))).busy(p);
        for m in warden_agentstate::session::recover_orphans(&c.state_dir, &c.home, &busy) {
            eprintln!("warden: warning: {}", printable_lines(&m));
        }
    }
    let locate = |p: &Path| plan.relocate(p);
    let s = warden_agentstate::StateSession::start(
        c.agent(),
        &c.home,
        &c.state_dir,
        &c.session_id,
        &locate,
    )
    .map_err(|e| StartError::Internal(format!("agent state filter: {e}")))?;
    if let Some(s) = &s {
        s.warnings
            .iter()
            .for_each(|w| eprintln!("warden: warning: {}", printable_lines(w)));
        s.binds()
            .into_iter()
            .for_each(|(t, c)| plan.bind_copy(t, c));
    }
    Ok(s)
}

/// The JSON-lines session log, the decision sinks, and the session's first decisions
/// (start, scrubbed environment variables). Decisions before the sandbox exists are held
/// for the audit store ([`Early`]: no threads yet).
fn open_session_log(
    c: &SessionConfig,
    plan: &Plan,
    sinks: Vec<Arc<dyn Sink>>,
) -> Result<Arc<Early>, StartError> {
    let log_path = c
        .state_dir
        .join("sessions")
        .join(format!("{}.jsonl", c.session_id));
    let log = warden_event::SessionLog::open(&log_path)
        .map_err(|e| StartError::Internal(format!("session log {}: {e}", log_path.display())))?;
    warden_event::init_tracing(Some(log), c.verbose);
    let early = Arc::new(Early::default());
    warden_event::sinks::add(early.clone());
    for s in sinks {
        warden_event::sinks::add(s);
    }
    let who = c.who();
    Decision::new(
        Layer::Sandbox,
        &who,
        c.command.join(" "),
        format!("profile:{}", c.profile),
        Verdict::Observe,
        "session start",
    )
    .with("session", c.session_id.as_str())
    .with("workspace", c.workspace.display().to_string())
    .emit();
    for (k, glob) in &plan.scrubbed {
        Decision::new(
            Layer::Sandbox,
            &who,
            format!("env {k}"),
            "env.scrub",
            Verdict::Deny,
            format!("matches `{glob}`; pass it with env.pass in ~/.config/warden/policy.toml"),
        )
        .emit();
    }
    Ok(early)
}

/// Landlock rules: the plan's paths, and (no network namespace) only the proxy's port.
fn landlock_plan(
    c: &SessionConfig,
    plan: &Plan,
    host_proxy_port: Option<u16>,
) -> warden_sandbox::lock::LandlockPlan {
    // One rule per path (the plan lists a root once as spelled and once resolved, and a
    // cache as readable and writable): each rule costs the agent an open, a stat and a
    // syscall before its first instruction. A path with a write rule needs no read rule
    // (write rights include the read ones).
    let mut seen: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let mut once = |list: &[PathBuf]| -> Vec<PathBuf> {
        list.iter()
            .filter(|p| seen.insert(p.to_path_buf()))
            .cloned()
            .collect()
    };
    let write = once(&plan.landlock_write);
    let read = once(&plan.landlock_read);
    warden_sandbox::lock::LandlockPlan {
        abi: c.landlock.abi,
        read,
        write,
        root_ids: plan.root_ids.clone(),
        hidden: plan.hide.iter().chain(&plan.hide_absent).cloned().collect(),
        connect_tcp: match c.landlock.connect {
            ConnectScope::Namespace => None,
            ConnectScope::ProxyPortOnly => Some(host_proxy_port.into_iter().collect()),
        },
        hard: c.landlock.hard,
    }
}

/// The workspace's files host tools run or load, as they are before the agent runs (the end
/// compares; `warden_sandbox::integrity`). The walk (~80 ms in a 28,000-file repository)
/// runs on the supervisor's main thread right after the sandbox is forked, beside init's own
/// walk of the workspace (the guard's), and before the agent is released: on the start's
/// critical path only where it outlasts init's. (Not on a thread before the fork: the
/// supervisor forks single-threaded.)
fn integrity_baseline(
    on_launch: runtime::OnLaunch,
    inputs: warden_sandbox::integrity::Inputs,
    res: &Resources,
) -> runtime::OnLaunch {
    let slot = res.integrity.clone();
    let workspace = res.config.workspace.clone();
    Box::new(move |stage1| {
        on_launch(stage1);
        match inputs.snapshot() {
            Ok(s) => {
                if let Ok(mut g) = slot.lock() {
                    *g = Some(s);
                }
            }
            Err(e) => tracing::warn!("integrity snapshot of {}: {e}", workspace.display()),
        }
        warden_event::timing::mark("on_launch: integrity baseline");
    })
}

/// Whether the run's open-files limit leaves room for the fd numbers the agent inherits
/// (the hook pipe at 100, with an advisor its socket at 101): under a hard limit below them
/// (`ulimit -n 100`) the sandbox could not be built. Checked first, with a message that
/// says what to raise (attack review 116, F5: it failed late, as a missing kernel feature).
fn open_files_room(advisor: bool) -> Result<(), StartError> {
    let top = if advisor {
        launch::INHERITED_FD.max(warden_advisor::channel::INHERITED_FD)
    } else {
        launch::INHERITED_FD
    };
    let need = top as u64 + 1;
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 || l.rlim_max >= need {
        return Ok(());
    }
    Err(StartError::Internal(format!(
        "the open-files limit is {} (`ulimit -Hn`): warden hands the agent fds numbered up to {}, so it needs at least {need}; raise it (`ulimit -n 1024`) and run again",
        l.rlim_max,
        need - 1
    )))
}

/// The end's integrity walk, started early ([`compare_early`]): `None` when there was no
/// baseline.
type EarlyCompare = std::thread::JoinHandle<Option<warden_sandbox::integrity::Report>>;

/// Starts the end's integrity walk on a thread of its own, once nothing of the sandbox runs
/// (`None`: no thread could be started; `end` walks then, as before).
fn compare_early(res: &Resources) -> Option<EarlyCompare> {
    let slot = res.integrity.clone();
    let ws = res.config.workspace.clone();
    std::thread::Builder::new()
        .name("integrity".into())
        .spawn(move || {
            let before = slot.lock().ok().and_then(|mut g| g.take())?;
            let r = warden_sandbox::integrity::compare(&before, &ws);
            warden_event::timing::mark("end: integrity walked");
            Some(r)
        })
        .ok()
}

/// The session's private TMPDIR (mode 0700), when the plan has one.
fn make_private_tmp(plan: &Plan) -> Result<Option<PathBuf>, StartError> {
    let Some(t) = plan.private_tmp.clone() else {
        return Ok(None);
    };
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&t)
        .map_err(|e| StartError::Internal(format!("private TMPDIR {}: {e}", t.display())))?;
    Ok(Some(t))
}

/// Network: with a namespace, the agent's has only loopback and a bridge in the sandbox's
/// init hands each connection to 127.0.0.1:3128 (and each allowed host loopback port) to
/// the proxy running here; without one, the same fd-passing bridge runs as a thread of this
/// process on the host loopback listener once the sandbox is forked.
fn wire_proxy(
    c: &SessionConfig,
    host_proxy: Option<(std::net::TcpListener, u16)>,
    hook_events: OwnedFd,
    approvals: Arc<crate::approval::Approvals>,
) -> Result<(ProxyStart, Vec<warden_sandbox::InitTask>), StartError> {
    let pair = || {
        std::os::unix::net::UnixStream::pair()
            .map(|(a, b)| (OwnedFd::from(a), OwnedFd::from(b)))
            .map_err(|e| StartError::Internal(format!("socketpair: {e}")))
    };
    let mut host_bridge = None;
    let (ctl, init_tasks) = match (&c.proxy, host_proxy) {
        (ProxyMode::NetnsBridge { gateway_ports }, _) => {
            let (mine, theirs) = pair()?;
            let gateway = gateway_ports.clone();
            let task: warden_sandbox::InitTask = Box::new(move || {
                let b = warden_proxy::bridge::bind(warden_proxy::SANDBOX_PORT, &gateway)
                    .map_err(|e| e.to_string())?;
                Ok(Box::new(move || warden_proxy::bridge::serve_all(b, theirs))
                    as Box<dyn FnOnce() + Send>)
            });
            (Some(mine), vec![task])
        }
        (ProxyMode::HostLoopback, Some((l, _))) => {
            let (mine, theirs) = pair()?;
            host_bridge = Some((l, theirs));
            (Some(mine), Vec::new())
        }
        _ => (None, Vec::new()),
    };
    Ok((
        ProxyStart {
            hook_events,
            host_bridge,
            policy: c.policy.clone(),
            ctl,
            hosts_file: c.proxy_hosts_file.clone(),
            gateway: c.features.user_namespaces,
            gate_asker: (c.policy.approvals.gate() == warden_policy::approvals::GateAsk::Warden)
                .then(|| crate::approval::gate_asker(approvals.clone())),
            approver: Arc::new(crate::approval::ProxyApprover(approvals)),
        },
        init_tasks,
    ))
}

/// The stop switch: a cgroup v2 leaf per session (freeze/thaw/kill), unless the tree
/// already sits in a pids cgroup or the daemon's cgroup (a process is in one v2 cgroup
/// only); then signals from outside.
/// The fanotify watch on the sandbox's hidden files (see `warden_sandbox::seen`): its init
/// task joins `tasks`. Without it the blocks still hold; they are only not recorded.
fn hidden_watch(
    c: &SessionConfig,
    plan: &Plan,
    tasks: &mut Vec<warden_sandbox::InitTask>,
) -> Option<(
    warden_sandbox::seen::HiddenWatch,
    warden_sandbox::seen::Recorder,
)> {
    match warden_sandbox::seen::prepare(plan) {
        Ok(Some((w, t))) => {
            tasks.push(t);
            Some((
                w,
                warden_sandbox::seen::Recorder::new(&c.policy, &anchors(c)),
            ))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::info!("opens of hidden files are not recorded: {e}");
            None
        }
    }
}

fn anchors(c: &SessionConfig) -> warden_policy::Anchors {
    warden_policy::Anchors {
        home: c.home.clone(),
        workspace: c.workspace.clone(),
    }
}

/// `[files] ask_write`: writes to those protected files ask a human (seccomp exec guard
/// only; elsewhere they stay read-only without asking). Whether the filter must trap them.
fn write_asks(res: &Resources, plan: &warden_sandbox::Plan, exec: &mut ExecSetup) -> bool {
    let entries = &res.config.policy.files.ask_write;
    if entries.is_empty() {
        return false;
    }
    let ExecSetup::Seccomp(g) = exec else {
        res.ui.warn(
            "warden: note:",
            "files.ask_write needs the seccomp exec guard; those files stay read-only without asking",
        );
        return false;
    };
    let a = anchors(&res.config);
    let (files, notes) =
        crate::approval::write_asks(entries, &|e| a.expand(e), &plan.writable_roots);
    for n in notes {
        res.ui.warn("warden: note:", &n);
    }
    if files.is_empty() {
        return false;
    }
    let approver = Arc::new(crate::approval::WriteApprover(res.approvals.clone()));
    g.set_write_asks(warden_execguard::writeask::WriteAsks::new(files, approver));
    true
}

/// What the seccomp exec guard records of the sandbox's silent blocks: execs of hidden
/// paths (ENOENT), and with `[audit] record_writes` writes refused with EROFS.
fn silent_blocks(g: &mut warden_execguard::unotify::Guard, c: &SessionConfig, writes: bool) {
    let a = anchors(c);
    g.set_hidden_lookup(Arc::new(warden_sandbox::seen::hidden_lookup(&c.policy, &a)));
    if writes {
        g.set_readonly_lookup(Arc::new(warden_sandbox::seen::readonly_lookup(
            &c.policy, &a,
        )));
    }
}

/// Starts reading the hidden-file watch once the sandbox is forked (threads may start then).
fn start_hidden_watch(
    on_launch: runtime::OnLaunch,
    w: Option<(
        warden_sandbox::seen::HiddenWatch,
        warden_sandbox::seen::Recorder,
    )>,
    slot: HiddenSlot,
) -> runtime::OnLaunch {
    match w {
        None => on_launch,
        Some((w, rec)) => Box::new(move |stage1| {
            on_launch(stage1);
            if let Ok(mut g) = slot.lock() {
                *g = Some(w.start_recording(rec));
            }
        }),
    }
}

/// The v2 cgroup nest the sandbox is spawned into: the pids cgroup's (v2) or the leaf's, the
/// one whose `agent` directory the agent's tree joins.
fn session_nest(res: &Resources) -> Option<warden_sandbox::cgroup::Nest> {
    match &res.cgroup {
        Some(c) => c.nest.clone(),
        None => res.leaf.as_ref().map(|l| l.nest.clone()),
    }
}

/// The session's cgroups, made before the plan (their limits come from the policy alone).
struct Cgroups {
    pids: Option<SessionCgroup>,
    leaf: Option<warden_sandbox::freezer::SessionLeaf>,
    memory: Option<warden_sandbox::cgroup::MemoryCgroup>,
    /// The child of [`warden_sandbox::cgroup::prewarm`].
    prewarm: Option<i32>,
}

/// Makes the pids cgroup (when the policy's pids limit uses one), the stop switch's v2
/// leaf, the memory cgroup (on v2: the limit set on the one v2 cgroup the tree joins),
/// then starts the grace period the agent's join needs.
fn session_cgroups(c: &SessionConfig, bpf: bool) -> Cgroups {
    let pids_max = warden_sandbox::plan::pids_max(&c.policy.process);
    let pids = match c.pids {
        PidLimit::PidsCgroup => match SessionCgroup::create(&c.session_id, pids_max) {
            Ok(cg) => Some(cg),
            Err(e) => {
                tracing::warn!("pids cgroup unavailable ({e}); using RLIMIT_NPROC");
                None
            }
        },
        _ => None,
    };
    let leaf_planned = c.freezer == FreezerPlan::CgroupLeaf
        // The pids cgroup could not be made: the tree is in no cgroup of ours.
        || (c.pids == PidLimit::PidsCgroup && pids.is_none());
    let leaf = if leaf_planned {
        match warden_sandbox::freezer::SessionLeaf::create(&c.session_id) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::info!("no cgroup v2 leaf for the session ({e}); freeze uses signals");
                None
            }
        }
    } else {
        None
    };
    // The one v2 cgroup the agent's tree joins (if any) carries the memory limit too.
    let v2_joined = pids
        .as_ref()
        .filter(|p| p.v2)
        .map(|p| p.path.clone())
        .or_else(|| leaf.as_ref().map(|l| l.path.clone()));
    let memory_max = warden_sandbox::limits::from_policy(
        &c.policy.process,
        &c.home,
        warden_sandbox::limits::ram_bytes(),
    )
    .memory_max;
    let memory = warden_sandbox::limits::session_memory(
        &c.session_id,
        memory_max,
        bpf,
        v2_joined.as_deref(),
    );
    // After the cgroups are made, not before: the prewarm holds the cgroup mutex while it
    // waits, and their creation would wait with it. Not with a nest to spawn into: nothing
    // migrates then, and the spawns would wait for that mutex.
    let nested = pids.as_ref().is_some_and(|p| p.nest.is_some()) || leaf.is_some();
    let prewarm = if nested {
        None
    } else {
        warden_sandbox::cgroup::prewarm()
    };
    Cgroups {
        pids,
        leaf,
        memory,
        prewarm,
    }
}
/// What runs once the sandbox exists (threads allowed): the risk monitor, the control
/// socket and the audit writer (which takes the early decisions).
fn on_launch(res: &Resources, early: Arc<Early>) -> runtime::OnLaunch {
    let mut audit = res.config.audit.clone();
    audit.info.pid = Some(std::process::id() as i64);
    audit.info.start_ms = warden_audit::time::now_ms();
    runtime::on_launch(
        runtime::RiskStart {
            config: res.config.risk.clone(),
            freeze_timeout: res.config.freeze_timeout,
            namespaces: res.config.features.user_namespaces,
        },
        &res.config.state_dir,
        &res.config.session_id,
        res.leaf.as_ref().map(|l| l.path.clone()),
        res.running.clone(),
        runtime::AuditStart {
            config: audit,
            early,
        },
        res.ui,
        res.approvals.clone(),
    )
}

/// The end-of-session integrity report: on stderr for the human, and in the session log.
/// Work of the session's end that runs beside the rest of it ([`end`]); joined before
/// `end` returns, so nothing of it outlives the session. `None` once joined (or run inline).
/// The workspace guard's placeholders as init reported them (workspace-relative, whether a
/// directory, whether marked with the session's token) as placeholders of the workspace.
fn guard_placeholders_of(
    workspace: &Path,
    token: &str,
    reported: Vec<(PathBuf, bool, bool)>,
) -> Vec<warden_sandbox::placeholder::Placeholder> {
    reported
        .into_iter()
        .map(
            |(rel, is_dir, marked)| warden_sandbox::placeholder::Placeholder {
                root: workspace.to_path_buf(),
                rel,
                is_dir,
                mark: if marked {
                    token.to_string()
                } else {
                    String::new()
                },
            },
        )
        .collect()
}

struct Cleanup(Option<std::thread::JoinHandle<()>>);

impl Cleanup {
    fn start(work: impl FnOnce() + Send + Clone + 'static) -> Cleanup {
        match std::thread::Builder::new()
            .name("warden-cleanup".into())
            .spawn(work.clone())
        {
            Ok(h) => Cleanup(Some(h)),
            Err(_) => {
                work();
                Cleanup(None)
            }
        }
    }

    /// Waits for the work; later calls return at once.
    fn join(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// No integrity report could be made (`why`): said on stderr and in the session log, since
/// no report is not a clean one.
fn no_integrity_report(who: &str, why: &str) {
    eprintln!("warden: integrity: {why}");
    Decision::new(
        Layer::Sandbox,
        who,
        "workspace",
        "integrity",
        Verdict::Observe,
        why.to_string(),
    )
    .emit();
}

fn report_integrity(mut r: warden_sandbox::integrity::Report, who: &str, sharing: Vec<i32>) {
    r.concurrent = sharing;
    // `render` escapes the agent's file names; this is the last guard before the terminal.
    eprint!("{}", printable_lines(&r.render()));
    if !r.entries.is_empty() || r.incomplete || !r.concurrent.is_empty() {
        Decision::new(
            Layer::Sandbox,
            who,
            "workspace",
            "integrity",
            Verdict::Observe,
            format!(
                "{} file(s) host tools run or load were created or changed",
                r.entries.len()
            ),
        )
        .with("integrity", serde_json::to_value(&r).unwrap_or_default())
        .emit();
    }
}

/// The agent's install directory when it lives under `$HOME` (which the sandbox replaces
/// with a private tmpfs), plus the command path itself when it is a symlink there, so e.g.
/// `~/.local/bin/claude -> ~/.local/share/claude/versions/X` keeps working
/// (see `warden_sandbox::resolve::install_dir`).
fn agent_install_dir(
    cmd: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    home: &Path,
) -> Option<Vec<PathBuf>> {
    let p = launch::resolve_command(cmd, env).ok()?;
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    let real = warden_sandbox::resolve::chain(&p)?.target;
    let dir = warden_sandbox::resolve::install_dir(&real, home)?;
    Some(if p != real && p.starts_with(home) {
        vec![dir, p]
    } else {
        vec![dir]
    })
}
