use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  warden run -- bash                       a shell in the default sandbox (profile `generic`)
  warden run --profile claude -- claude    Claude Code, with its state dir and the Anthropic API
  warden explain --read ~/.ssh/id_ed25519  which rule decides, and why
  warden doctor                            what this machine can enforce

Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid policy, 4 machine lacks a required
feature (nothing was run), 5 workspace missing, 6 check failed or action denied.
Under `warden run`, any other code is the agent's own exit status.";

/// Runtime enforcement for AI coding agents.
///
/// warden runs an agent (Claude Code, Codex CLI, Gemini CLI, any CLI) inside a sandbox that is
/// on by default: it cannot read credentials or other projects, writes only its workspace and
/// a private TMPDIR, has no direct network, and cannot switch warden off.
#[derive(Parser, Debug)]
#[command(name = "warden", version, about, long_about, after_long_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug). `WARDEN_LOG` takes a level or `target=level` list (`warden_proxy=debug,warn`).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colour: auto (on terminals), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    #[command(subcommand)]
    pub cmd: Command,
}

/// The command line of `warden hook` alone. An agent runs the hook once per tool call, so
/// its start-up is on every call's critical path: clap builds this small parser instead of
/// the whole command tree (measured: ~30% of `main` for a hook). Same arguments, same
/// [`HookArgs`]; anything it does not accept goes through the full [`Cli`] for the error.
#[derive(Parser, Debug)]
#[command(name = "warden", version)]
pub struct HookCli {
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    #[command(subcommand)]
    pub cmd: HookOnly,
}

#[derive(clap::Subcommand, Debug)]
pub enum HookOnly {
    Hook(HookArgs),
}

/// The command line of `warden run` alone, for the same reason as [`HookCli`]: the whole
/// tree costs ~0.5 ms of every session's start-up (measured: 1.5% of a `warden run -- true`
/// profile's samples). What it does not accept (help, version, errors) goes through [`Cli`].
#[derive(Parser, Debug)]
#[command(name = "warden", version, propagate_version = true)]
pub struct RunCli {
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    #[command(subcommand)]
    pub cmd: RunOnly,
}

#[derive(clap::Subcommand, Debug)]
pub enum RunOnly {
    Run(RunArgs),
}

impl Cli {
    /// Parses the process's arguments, with the lean path for `warden hook ...`.
    pub fn parse_args() -> Cli {
        Cli::parse_from_args(std::env::args_os().collect())
    }

    fn parse_from_args(args: Vec<std::ffi::OsString>) -> Cli {
        if args.get(1).is_some_and(|a| a == "hook") {
            if let Some(a) = plain_hook_args(&args[2..]) {
                return Cli {
                    verbose: 0,
                    color: Color::Auto,
                    cmd: Command::Hook(a),
                };
            }
            if let Ok(h) = <HookCli as Parser>::try_parse_from(&args) {
                let HookOnly::Hook(a) = h.cmd;
                return Cli {
                    verbose: h.verbose,
                    color: h.color,
                    cmd: Command::Hook(a),
                };
            }
        }
        if args.get(1).is_some_and(|a| a == "run") {
            if let Ok(r) = <RunCli as Parser>::try_parse_from(&args) {
                let RunOnly::Run(a) = r.cmd;
                return Cli {
                    verbose: r.verbose,
                    color: r.color,
                    cmd: Command::Run(a),
                };
            }
        }
        <Cli as Parser>::parse_from(args)
    }
}

/// `warden hook AGENT [--headless] [--profile P] [--policy F] [--workspace W]
/// [--deadline-ms N]`, the forms `warden install` writes and agents run once per tool call,
/// read without clap: even the lean [`HookCli`] costs ~50 µs of a ~0.6 ms hook. Anything
/// else (a global flag, `--key=value`, a repeated or unknown argument, a value that starts
/// with `-`, non-UTF-8) gives None, and clap parses it, errors included.
fn plain_hook_args(rest: &[std::ffi::OsString]) -> Option<HookArgs> {
    let mut it = rest.iter().map(|a| a.to_str());
    let agent = Agent::from_str(it.next()??, false).ok()?;
    let mut a = HookArgs {
        agent,
        policy: PolicyArgs::default(),
        headless: false,
        deadline_ms: None,
    };
    while let Some(arg) = it.next() {
        let mut value = || it.next().flatten().filter(|v| !v.starts_with('-'));
        match arg? {
            "--headless" if !a.headless => a.headless = true,
            "--profile" | "-p" if a.policy.profile.is_none() => {
                a.policy.profile = Some(value()?.to_string())
            }
            "--policy" if a.policy.policy.is_none() => a.policy.policy = Some(value()?.into()),
            "--workspace" | "-w" if a.policy.workspace.is_none() => {
                a.policy.workspace = Some(value()?.into())
            }
            "--deadline-ms" if a.deadline_ms.is_none() => {
                a.deadline_ms = Some(value()?.parse().ok()?)
            }
            _ => return None,
        }
    }
    Some(a)
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Built-in profile (generic, claude, codex, gemini) or a policy file to extend.
    #[arg(long, short = 'p')]
    pub profile: Option<String>,
    /// An extra policy file layered over the profile and user policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The workspace (default: the current directory).
    #[arg(long, short = 'w')]
    pub workspace: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an agent (or any command) inside the sandbox.
    ///
    /// The sandbox is on by default and nothing inside can widen it. If the machine cannot
    /// deliver the policy, warden refuses to start and says why; `--best-effort` accepts less
    /// and prints every missing guarantee.
    #[command(after_long_help = "Example: warden run --profile claude -- claude")]
    Run(RunArgs),
    /// Show or check policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Say what would happen to an action, and which rule decides it.
    Explain(ExplainArgs),
    /// Why did something fail? Works inside a session (with its read-only policy) too.
    ///
    /// TARGET is a path, a host[:port] or a command name. Prints the rule that hides,
    /// protects or denies it, what the agent sees because of it (No such file or directory,
    /// Read-only file system, HTTP 403), and the policy line a human adds to allow it.
    #[command(
        after_long_help = "Examples:\n  warden why ~/.ssh/id_ed25519\n  warden why .git/hooks/pre-commit\n  warden why example.com\n  warden why curl"
    )]
    Why(WhyArgs),
    /// Report what this machine can enforce, and which guarantees hold.
    Doctor(DoctorArgs),
    /// Print the SHA-256 content identity of files.
    Hash(HashArgs),
    /// Hash system and toolchain directories into the trust index.
    Index(IndexArgs),
    /// Edit your exec allow/deny rules.
    #[command(subcommand)]
    Exec(ExecCmd),
    /// Answer an agent's pre-tool-use hook (reads one JSON event on stdin).
    Hook(HookArgs),
    /// Wire `warden hook` into an agent's settings.
    Install(InstallArgs),
    /// Remove warden's hook from an agent's settings.
    Uninstall(InstallArgs),
    /// Root daemon for the BPF LSM exec-guard backend (in-kernel; survives its own death).
    ///
    /// Loads the BPF LSM programs and pins them under /sys/fs/bpf/warden, then serves
    /// /run/warden/daemon.sock: each `warden run` asks it for a session cgroup, and the kernel
    /// decides every exec and executable mapping in that cgroup by content hash. Killing the
    /// daemon does not stop enforcement; `warden daemon --unload` (root, outside any sandbox)
    /// does. Decisions: /var/log/warden/daemon.jsonl. systemd unit: dist/warden-daemon.service.
    #[command(long_about)]
    Daemon(DaemonArgs),
    /// Review changes to executable agent configuration that a session made and warden held.
    ///
    /// With `--profile claude` the agent works on copies of `~/.claude.json` and
    /// `~/.claude/settings.json`. At exit warden writes safe state back (counters, theme,
    /// onboarding, `/model`) and HOLDS changes to keys that make a later plain `claude` run
    /// code or skip prompts: `mcpServers`, project trust, `allowedTools`, `env`,
    /// `apiKeyHelper`, hooks, permissions and the like. They are applied only by a human
    /// running `warden held apply` outside the sandbox (it refuses inside). Held changes live
    /// in ~/.local/state/warden/held/.
    #[command(subcommand)]
    Held(HeldCmd),
    /// Freeze a running session: its whole process tree stops at once (cgroup v2 freezer).
    ///
    /// SESSION is a session id or a unique prefix of one (`warden sessions` lists them). A
    /// frozen session stays frozen until a human thaws or kills it; nothing inside the
    /// sandbox can reach the control socket or cgroupfs.
    Freeze(SessionArg),
    /// Resume a frozen session.
    Thaw(SessionArg),
    /// End a running session's whole process tree (cgroup.kill).
    Kill(SessionArg),
    /// A running session's live state: risk score, level, and the events that weigh most.
    Status(SessionArg),
    /// List the approval requests waiting for a human, or answer one.
    ///
    /// `warden approve [SESSION]` lists (every running session, or one); `warden approve ID
    /// --allow-once|--allow-session|--deny` answers. Allow-once admits that one action;
    /// allow-session every later action with exactly the same subject (host:port, content
    /// hash) in that session. No answer before `[approvals] timeout_secs` is a deny. On the
    /// `warden run` terminal, Ctrl-] then a / A / d answers the oldest request.
    Approve(ApproveArgs),
    /// Live view of the running sessions: score, state, decisions/s, what weighs most.
    ///
    /// Refreshes every second until Ctrl-C; works over SSH (plain text). `--json` prints one
    /// snapshot for scripts. Freeze, thaw or kill with `warden freeze|thaw|kill SESSION`.
    Top(TopArgs),
    /// Check the audit store's hash chain, export it, or print its head.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Show what a session did: its decisions from the audit store.
    #[command(
        after_long_help = "Examples:\n  warden log                      the latest session\n  warden log 18c2 --verdict deny  denials in the session whose id starts with 18c2\n  warden log --follow             follow the latest session live\n\nRows marked CLAIM are reports from inside the sandbox (the agent's hook): the agent's\nword, not a decision warden made. `--verdict claim` lists only those."
    )]
    Log(LogArgs),
    /// List running and past sessions with counts by verdict.
    Sessions(SessionsArgs),
    /// Run the open evasion benchmark against warden and other sandboxes; print a scorecard.
    ///
    /// Each case (eval/cases/<class>/<id>.toml, built in) sets up a scratch workspace and fake
    /// home on the host, runs its action inside each system, and judges from the host
    /// afterwards by observable effects only. Absent systems are reported skipped.
    #[command(after_long_help = "Example: warden eval --against none,warden,bwrap --out eval-out")]
    Eval(EvalArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Accept a weaker sandbox when the machine cannot deliver the policy; every missing
    /// guarantee is printed.
    #[arg(long)]
    pub best_effort: bool,
    /// Allow a workspace that is your home directory or `/` (it exposes everything under it
    /// except the denied credential paths).
    #[arg(long)]
    pub allow_broad_workspace: bool,
    /// Exec-guard backend: auto picks the strongest available.
    #[arg(long, value_enum, default_value_t = ExecBackendArg::Auto)]
    pub exec_guard: ExecBackendArg,
    /// Test mode: the proxy resolves names from this hosts file instead of DNS.
    #[arg(long, hide = true, value_name = "FILE")]
    pub proxy_hosts_file: Option<PathBuf>,
    /// Test mode: behave as on a machine without user namespaces (Landlock-only isolation;
    /// network through a host-loopback proxy port that Landlock alone allows).
    #[arg(long, hide = true)]
    pub simulate_no_userns: bool,
    /// In allowlist mode, run without a trust index (only explicit exec.allow rules).
    #[arg(long)]
    pub no_index: bool,
    /// Print the sandbox plan and exit without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// No summary on stderr when the session ends.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Start from a sandbox built ahead: a run with --warm leaves a spare, the same session
    /// built up to the agent's start, which the next run with the same command, arguments,
    /// environment, directory and policy takes (else it starts cold). See "Warm start" in the
    /// README.
    #[arg(long)]
    pub warm: bool,
    /// The command to run, after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Systems, comma-separated: none, warden, bwrap, codex, srt, nono, fapolicyd, or one
    /// template per flag: 'name=cmd ... {cmd}' ({ws}, {home} also expand). Repeatable.
    #[arg(long, default_value = "none,warden,bwrap")]
    pub against: Vec<String>,
    /// Only cases whose id or class contains this text (comma-separated alternatives).
    #[arg(long)]
    pub cases: Option<String>,
    /// Run the cases in this directory instead of the built-in corpus.
    #[arg(long, value_name = "DIR")]
    pub cases_dir: Option<PathBuf>,
    /// Print JSON with every observation instead of Markdown.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (the default).
    #[arg(long)]
    pub markdown: bool,
    /// Also write eval.md and eval.json into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start-up runs of `-- true` per system (median reported; 0 skips).
    #[arg(long, default_value_t = 20)]
    pub startup_runs: usize,
    /// Keep the scratch directories (for debugging a case).
    #[arg(long)]
    pub keep: bool,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// One snapshot as JSON, then exit.
    #[arg(long)]
    pub json: bool,
    /// One snapshot as text, then exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// Without an answer flag: the session (id or unique prefix) whose requests to list
    /// (default: every running session). With one: the request ID to answer.
    pub target: Option<String>,
    /// Allow this one action.
    #[arg(long, conflicts_with_all = ["allow_session", "deny"])]
    pub allow_once: bool,
    /// Allow this action and every later one with the same subject, for this session.
    #[arg(long, conflicts_with = "deny")]
    pub allow_session: bool,
    /// Deny it.
    #[arg(long)]
    pub deny: bool,
    /// The session of the request (needed only when several have a request with that ID).
    #[arg(long)]
    pub session: Option<String>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SessionArg {
    /// Session id, or a unique prefix of one.
    pub session: String,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ExecBackendArg {
    Auto,
    Bpf,
    Seccomp,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the effective policy.
    Show {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Machine-readable JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Validate a policy file (exit 3 when invalid).
    Check { file: PathBuf },
    /// List the built-in profiles.
    Profiles,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false, id = "action")]
pub struct ExplainTarget {
    /// Would the agent be able to read PATH?
    #[arg(long, value_name = "PATH")]
    pub read: Option<PathBuf>,
    /// Would the agent be able to write PATH?
    #[arg(long, value_name = "PATH")]
    pub write: Option<PathBuf>,
    /// Would the agent be able to execute (or map executable) FILE?
    #[arg(long, value_name = "FILE")]
    pub exec: Option<PathBuf>,
    /// Would the agent be able to connect to HOST[:PORT] through the proxy?
    #[arg(long, value_name = "HOST[:PORT]")]
    pub connect: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub target: ExplainTarget,
    /// Machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// Outside a session only (inside, the session's own policy is the only one read).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// A path, a host[:port] (or URL), or a command name.
    pub target: String,
    /// Machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HashArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Directories to index (default: system and toolchain directories).
    pub paths: Vec<PathBuf>,
    /// Index database (default: ~/.local/share/warden/index.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExecCmd {
    /// Allow a program name, file or sha256:HASH.
    Allow { rule: String },
    /// Deny a program name, file or sha256:HASH.
    Deny { rule: String },
    /// List your exec rules and what they resolve to.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule.
    Rm { rule: String },
}

#[derive(Subcommand, Debug)]
pub enum HeldCmd {
    /// Sessions with held changes, and what they change.
    List,
    /// Every held change of a session, values in full.
    Show { session: String },
    /// Apply a session's held changes to your files (outside warden only).
    Apply {
        session: String,
        /// Apply even where the key changed since the session started.
        #[arg(long)]
        force: bool,
    },
    /// Discard a session's held changes.
    Drop { session: String },
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Agent {
    Claude,
    Codex,
    Gemini,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    #[arg(value_enum)]
    pub agent: Agent,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Never ask: answers that would be `ask` become `deny` (set automatically when no
    /// terminal is attached).
    #[arg(long)]
    pub headless: bool,
    /// Whole-hook deadline in milliseconds (default 5000): past it the answer is deny.
    #[arg(long, hide = true)]
    pub deadline_ms: Option<u64>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Scope {
    User,
    Project,
    Managed,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[arg(value_enum)]
    pub agent: Agent,
    /// Where to write the hook: user (the default, also for root), project, or managed
    /// (machine-wide settings, for every user; the agent cannot remove them).
    #[arg(long, value_enum)]
    pub scope: Option<Scope>,
    /// Print which file would change, and its new content, without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Claude Code, --scope managed: also set (install) or remove (uninstall)
    /// `allowManagedHooksOnly`, which disables every user and project hook on the machine.
    #[arg(long)]
    pub managed_hooks_only: bool,
    /// Prefix for the managed settings path (tests).
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Detach the pinned BPF programs and stop enforcing (root, outside any sandbox).
    #[arg(long)]
    pub unload: bool,
    /// Report the daemon's and the pinned programs' state.
    #[arg(long)]
    pub status: bool,
    /// Test mode: feed identities from userspace (fanotify) as on kernels without IMA.
    #[arg(long, hide = true)]
    pub userspace_hashing: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct StoreArg {
    /// The audit store (default: $WARDEN_AUDIT_DB, else ~/.local/state/warden/audit.db).
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the hash chain: prints OK with the row count and head, or the first broken row
    /// and what is wrong (exit 6).
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// A head recorded elsewhere earlier (SEQ:HASH, from `warden audit head`) that the
        /// chain must still contain; repeatable.
        #[arg(long, value_name = "SEQ:HASH")]
        expect: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export rows for a SIEM (fields: seq, time, ts_ms, kind, origin, session, layer,
    /// verdict, rule, who, what, reason, sha256, host, port, tool, claimed_verdict,
    /// claimed_ts_ms, claimed_layer, extra, prev_hash, hash).
    Export {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only rows at or after T (15m, 2h, 7d, 2026-12-01, 2026-12-01T10:00:00Z, Unix ms).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only this session (id or unique prefix).
        #[arg(long, value_name = "S")]
        session: Option<String>,
    },
    /// Print the chain head (SEQ:HASH): copy it off the host to anchor the chain.
    Head {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Session id or unique prefix (default: the latest session).
    pub session: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Keep printing new rows as they are recorded (until the session ends).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this layer (sandbox, exec, gate, proxy, policy, session, audit).
    #[arg(long, value_name = "L")]
    pub layer: Option<String>,
    /// Only this verdict (deny, allow, ask, audit_deny, observe, or claim for the agent's
    /// claims).
    #[arg(long, value_name = "V")]
    pub verdict: Option<String>,
    /// Only rows at or after T (15m, 2h, 7d, 2026-12-01, 2026-12-01T10:00:00Z, Unix ms).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// One JSON object per row (the export fields), no grouping.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lean `run` parser gives exactly what the full parser gives, and refuses (so the
    /// full parser answers) what the full parser refuses or answers with help.
    #[test]
    fn run_fast_path_matches_the_full_parser() {
        for line in [
            "warden run -- true",
            "warden run true",
            "warden run --profile claude -- claude --resume",
            "warden run -q --dry-run --policy /p.toml -- bash -c x",
            "warden run --best-effort --exec-guard seccomp -v -- sh",
            "warden run --color never -vv --no-index -- ls -la",
            "warden run -- --help",
            "warden run ls --help",
            "warden run --help",
            "warden run -h",
            "warden run --version",
            "warden run",
            "warden run --exec-guard nope -- x",
            "warden run --bogus -- x",
            "warden run --profile",
        ] {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            let full = <Cli as Parser>::try_parse_from(&args);
            let lean = <RunCli as Parser>::try_parse_from(&args);
            match (full, lean) {
                (Ok(f), Ok(_)) => {
                    let fast = Cli::parse_from_args(args.clone());
                    assert_eq!(format!("{fast:?}"), format!("{f:?}"), "{line}");
                }
                (Err(f), Err(_)) => {
                    // The full parser's message is what the user sees.
                    let _ = f;
                }
                (f, l) => panic!("{line}: full {:?} vs lean {:?}", f.is_ok(), l.is_ok()),
            }
        }
    }

    /// The lean hook parsers (plain and clap) give exactly what the full parser gives.
    #[test]
    fn hook_fast_path_matches_the_full_parser() {
        for line in [
            "warden hook claude",
            "warden hook codex --headless",
            "warden hook gemini --policy /p.toml --profile claude -v --color never",
            "warden hook claude --deadline-ms 250 -vv",
            "warden hook claude --no-user-policy",
            "warden hook claude --headless --headless",
            "warden hook claude --profile",
            "warden hook claude --profile -v",
            "warden hook claude -p codex -w /ws --policy /p.toml --deadline-ms 9",
            "warden hook claude --deadline-ms x",
            "warden hook claude --deadline-ms -1",
            "warden hook claude --profile=codex",
            "warden hook claude extra",
            "warden hook Claude",
            "warden hook",
            "warden hook claude -- x",
        ] {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            let full = <Cli as Parser>::try_parse_from(&args);
            let lean = <HookCli as Parser>::try_parse_from(&args);
            match (full, lean) {
                (Ok(f), Ok(l)) => {
                    let fast = Cli::parse_from_args(args.clone());
                    assert_eq!(format!("{fast:?}"), format!("{f:?}"), "{line}");
                    assert_eq!(l.verbose, f.verbose);
                }
                (Err(_), Err(_)) => assert!(
                    plain_hook_args(&args[2.min(args.len())..]).is_none(),
                    "{line}: clap refuses what the plain reader took"
                ),
                (f, l) => panic!("{line}: full {:?} vs lean {:?}", f.is_ok(), l.is_ok()),
            }
        }
        // The forms agents run take the plain reader.
        for line in [
            "claude",
            "codex --headless",
            "gemini --headless --profile gemini --deadline-ms 250",
        ] {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            assert!(plain_hook_args(&args).is_some(), "{line}");
        }
    }
}
