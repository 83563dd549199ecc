//! From an effective policy to a concrete sandbox plan: which trees are masked with a
//! private tmpfs, which real paths are bound back in (read-only or read-write), which
//! denied paths are hidden, which protected paths are locked read-only (with placeholders
//! when absent), the Landlock roots, the environment, and the limits.
//!
//! The agent's view of the file system:
//! - system roots (`files.system`): visible read-only (Landlock), with denied files inside
//!   them (`/etc/shadow`, ...) hidden by empty mounts;
//! - `$HOME`, `/tmp` and `/run` are private tmpfs mounts: credentials and other projects
//!   under them simply do not exist in the view, nor do sockets such as ssh-agent, D-Bus or
//!   docker.sock. Writes to the private `$HOME` and `/tmp` are discarded at exit; `/tmp` is
//!   the private TMPDIR;
//! - the workspace, the agent's state (`agent.state`), its install dirs (`agent.install`)
//!   and `files.read`/`files.write` are bound back into that view at their real paths;
//! - protected paths inside writable roots are read-only bind mounts; what git configuration
//!   names there (`core.hooksPath`, includes, `init.templateDir`: [`crate::gitrefs`]) is
//!   protected too ([`Plan::git_targets`]);
//! - a root that is (or passes through) a symlink is bound at its resolved target, and the
//!   symlinks on the way are recreated in the private tree (never on the host), so
//!   `~/.local/bin/claude -> ~/.local/share/claude/versions/X` works (see [`crate::resolve`]);
//! - package caches (`files.cache`) are overlays: the host's copy read-only below, a private
//!   writable layer above, discarded at exit.
//! - the view has a root of its own ([`Plan::top`], pivoted into by [`crate::mounts`]):
//!   only the entries of `/` that are roots, hold roots, or are the symlinks of `/`;
//! - run by root, a root below a directory others cannot search (`/root`) is reached through
//!   a private tmpfs over that directory (the agent is an unprivileged uid, see
//!   [`crate::idmap`]), and the writable roots are listed for idmapped mounts;
//! - limits: sizes of the private tmpfs mounts and the session's memory ([`crate::limits`]).
//!
//! [`build`] only reads the file system; [`create_state_dirs`] is the one step that writes,
//! and `--dry-run` skips it.
//! - the run's effective policy for the gate sits read-only at
//!   `/run/warden-gate/policy.json` (its own tmpfs, remounted read-only; Landlock read).

use crate::probe::Features;
use crate::{agents, resolve};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use warden_policy::{Anchors, Policy};

/// Trees replaced by a private tmpfs in the sandbox (shared with the gate's file rules).
pub const MASKED_TREES: &[&str] = warden_policy::files::PRIVATE_TREES;

#[derive(Debug, Clone)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
    pub is_dir: bool,
    /// Bind this file instead of `path` itself (a supervisor-made copy, such as the state
    /// filter's copy of `~/.claude.json`; see warden-agentstate).
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Protect {
    pub path: PathBuf,
    pub is_dir: bool,
    /// Content shown in place of an absent file (its placeholder on the host is empty).
    pub placeholder_content: Option<&'static str>,
    /// A denied path (absent at the start): hidden, not only locked. What the host puts
    /// there during the session is hidden again, not shown read-only (see
    /// `crate::guard`'s `Relocker`); a directory is an empty, unreadable one.
    pub hidden: bool,
}

/// A writable root the policy names through a symlink (`~/.claude -> dotfiles/claude`, a
/// dotfile manager's layout) and where it really is.
#[derive(Debug, Clone)]
pub struct Relink {
    pub spelled: PathBuf,
    pub real: PathBuf,
    /// The spelled root lies in a private tree, where the sandbox recreates the symlink: the
    /// spelled place shows the real one, so only the real place is locked or bound (a mount
    /// at the spelled place would make a directory where the link belongs, and the agent's
    /// `~/.claude` would be a throw-away directory).
    pub link_in_view: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub session_id: String,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub masks: Vec<PathBuf>,
    pub binds: Vec<Bind>,
    pub hide: Vec<PathBuf>,
    /// Read-only roots under a writable Landlock rule (the private `$HOME`'s) that hold a
    /// denied path: their directories on the way to it are shown as read-only tmpfs mounts
    /// holding a bind of each other entry ([`shelter_dirs`]).
    pub shelter: Vec<PathBuf>,
    /// Denied paths inside a visible root that do not exist as the session starts: Landlock
    /// gives them no rule ([`crate::lock`]), and a sheltered directory does not show them.
    pub hide_absent: Vec<PathBuf>,
    pub protect: Vec<Protect>,
    /// Placeholders to create on the host before launch (dirs end with '/'), and remove after
    /// if still empty.
    pub placeholders: Vec<(PathBuf, bool)>,
    /// `.git` is absent: `.git/hooks` and `.git/config` are locked once `git init` creates them.
    pub git_watch: bool,
    pub landlock_read: Vec<PathBuf>,
    pub landlock_write: Vec<PathBuf>,
    /// Without a mount namespace: the private TMPDIR the supervisor creates (mode 0700)
    /// before launch and removes after.
    pub private_tmp: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub scrubbed: Vec<(String, String)>,
    pub pids_max: u32,
    pub nofile: u64,
    pub core_dumps: bool,
    pub net_isolated: bool,
    /// Symlinks to recreate in the private trees: (link path, link content).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Package caches shown as overlays (host copy read-only + private writable layer).
    pub caches: Vec<PathBuf>,
    /// The session's placeholder token ([`crate::fsat::token`]): what warden's placeholders
    /// are marked with, the workspace guard's included (set before the placeholders are made;
    /// empty: a fresh one).
    pub placeholder_token: String,
    /// Protected files the agent sees with warden-supplied content (see [`crate::agents`]).
    pub views: Vec<agents::View>,
    /// Things the user should know about this plan (printed before launch).
    pub notes: Vec<String>,
    /// Paths named by git configuration (`core.hooksPath`, includes, `init.templateDir`)
    /// in a writable root: in [`Plan::protect`] too; the integrity report compares them.
    pub git_targets: Vec<PathBuf>,
    /// Memory limit of the session and sizes of the private tmpfs mounts.
    pub limits: crate::limits::Limits,
    /// Writable real roots (workspace, agent state, `files.write`) that exist: when warden
    /// runs as root they are bound in through idmapped mounts (see [`crate::idmap`]).
    pub writable_roots: Vec<PathBuf>,
    /// The run's effective policy for the gate (`warden hook` inside), placed read-only at
    /// [`warden_policy::session::GATE_FILE`]. Set with [`Plan::set_gate_policy`].
    pub gate_policy: Option<String>,
    /// Files the host's agent configuration runs from a writable root (locked, or watched
    /// when a symlink is on the way): the integrity report compares them too. Set with
    /// [`Plan::protect_referenced`].
    pub state_watch: Vec<PathBuf>,
    /// Each root's directory (device, inode) as the plan judged it, by its resolved path (no
    /// symbolic link on it): whoever opens a root later to bind, idmap or give it a Landlock
    /// rule opens it without following symbolic links and refuses another inode
    /// ([`Plan::root_id`]), so a root swapped after the checks (by a concurrent session's
    /// agent, in a tree it may write) is never what gets mounted.
    pub root_ids: Vec<(PathBuf, (u64, u64))>,
    /// The same for [`Plan::caches`] (kept apart: in the sandbox an overlay stands there).
    pub cache_ids: Vec<(PathBuf, (u64, u64))>,
    /// Writable roots named through a symlink ([`Plan::places`], [`Plan::relocate`]).
    pub relinked: Vec<Relink>,
    /// Symlinks in a writable root on the way to a protected path ([`LinkPin`]).
    pub link_pins: Vec<LinkPin>,
    /// A protected path whose symlink lands at or above a writable root (`.git/hooks -> ..`):
    /// (the path, the landing). Locking it would make the whole root read-only, leaving it
    /// writable would let the agent write what the host runs: the session is refused.
    pub unlockable: Option<(PathBuf, PathBuf)>,
    /// Why the entries of `/` could not all be judged for the own root (`/` unreadable, an
    /// entry whose type could not be read): the session is refused, never run unmasked.
    pub unlisted_error: Option<String>,
    /// The entries of `/` the sandbox's own root shows (see [`top_level`]); the view is
    /// built with them and pivoted into ([`crate::mounts`]): what the host adds to `/` while
    /// the session runs never appears in it.
    pub top: Vec<PathBuf>,
    /// Files the view shows as private copies written into the private home, never bound:
    /// the user's git configuration without its credentials (see `git_config`).
    pub copies: Vec<agents::View>,
}

/// A symlink that lies in a writable root on the way to a protected path: the protected
/// entry itself (`.git/hooks -> ../tools/hooks`, a repository that versions its hooks) or a
/// hop of a chain (`~/.bashrc -> dotfiles/bashrc -> shell/bashrc`, the workspace
/// `~/dotfiles`). A mount stands on the link itself, its containers are pinned and where it
/// lands is locked: the agent can neither remove, rename nor replace it (a symlink's content
/// cannot be changed in place). It used to refuse the session (attack review 57).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPin {
    /// The link's own path, free of symlinks.
    pub path: PathBuf,
    /// Its content as the plan followed it: the pin refuses a link changed since.
    pub content: PathBuf,
}

/// Whether `p` lies at or below one of `roots` (whole components, as `Path::starts_with`):
/// on bytes when both are spelled plainly (no `//`, no `.` component, no trailing `/`), since
/// `Path::starts_with` parses both into components and a plan asks this thousands of times
/// (a quarter of its time in a profile). Anything else takes `Path::starts_with` itself.
/// What a file placeholder holds: `{}` for a JSON file (a reader parses it as an empty
/// object, not a syntax error), nothing otherwise. Claude Code's legacy global configuration
/// (`~/.claude/.config.json`) stays empty: Claude Code uses that file instead of
/// `~/.claude.json` whenever it is not empty, so `{}` there would replace the session's real
/// configuration.
fn placeholder_content(path: &Path) -> &'static str {
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    if name == b".config.json" || !name.ends_with(b".json") {
        ""
    } else {
        "{}\n"
    }
}

fn is_under_any(p: &Path, roots: &[PathBuf]) -> bool {
    under_any(p, roots, false)
}

/// [`is_under_any`], strictly below a root (not the root itself).
fn is_below_any(p: &Path, roots: &[PathBuf]) -> bool {
    under_any(p, roots, true)
}

fn under_any(p: &Path, roots: &[PathBuf], strict: bool) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let pb = p.as_os_str().as_bytes();
    // `p` is looked at once, not once per root.
    if !warden_policy::plain(pb) {
        return roots
            .iter()
            .any(|r| p.starts_with(r) && !(strict && p == r));
    }
    roots.iter().any(|r| {
        let rb = r.as_os_str().as_bytes();
        if warden_policy::plain(rb) {
            warden_policy::under_bytes(pb, rb) && !(strict && pb.len() == rb.len())
        } else {
            p.starts_with(r) && !(strict && p == r)
        }
    })
}

const FILE_NAMES: &[&str] = &[
    "config",
    "remote-settings-helper-consent",
    ".emacs",
    ".bashrc",
    ".zshrc",
    ".profile",
    ".bash_profile",
    ".bash_login",
    ".zshenv",
    ".zprofile",
    ".envrc",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".env",
    ".gitconfig",
    ".pam_environment",
    ".xprofile",
    ".xsessionrc",
    ".xinitrc",
    ".bash_aliases",
    ".bash_logout",
    ".vimrc",
    ".curlrc",
    ".wgetrc",
    ".condarc",
    "env",
    ".zlogin",
    ".zlogout",
    ".bash_completion",
    ".xsession",
    ".gdbinit",
    ".irbrc",
    ".Rprofile",
    ".hgrc",
    ".mailcap",
    // The default policy's denied files without a dot in their name (attack review 109:
    // made as directories, they broke the host's shells, `less`, `psql` and vim while a
    // session ran with the workspace at `$HOME`).
    ".bash_history",
    ".zsh_history",
    ".histfile",
    "fish_history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".rediscli_history",
    ".lesshst",
    ".viminfo",
    ".pgpass",
    ".vault-token",
    ".s3cfg",
    "token",
    "credentials",
];

/// Whether a (possibly absent) protected entry names a file rather than a directory.
pub fn looks_like_file(entry: &str) -> bool {
    if entry.ends_with('/') {
        return false;
    }
    let name = entry.rsplit('/').next().unwrap_or(entry);
    FILE_NAMES.contains(&name) || name.trim_start_matches('.').contains('.')
}

pub struct PlanInput<'a> {
    pub policy: &'a Policy,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub session_id: String,
    pub features: &'a Features,
    pub extra_env: Vec<(String, String)>,
    /// Extra read-only paths (the agent's detected install directory).
    pub extra_read: Vec<PathBuf>,
    /// Directories not searched for the user's symlinks below protected and hidden paths:
    /// warden's own (its state directory holds every session's logs; nothing there is the
    /// user's link).
    pub no_link_walk: Vec<PathBuf>,
}

/// The outermost proper ancestor of `p` (below `/`) that others cannot search (no `o+x`).
fn untraversable_ancestor(resolver: &mut resolve::Resolver, p: &Path) -> Option<PathBuf> {
    let mut acc = PathBuf::from("/");
    let parent = p.parent()?;
    for c in parent.components().skip(1) {
        acc.push(c);
        let md = resolver.stat(&acc)?;
        if md.is_dir && md.mode & 0o001 == 0 {
            return Some(acc);
        }
    }
    None
}

/// The entries of `top` (`/`) as the sandbox's own root shows them. `masks`: directories no
/// root is at or under, which the view does not build itself (`/proc`, `/dev`, `/sys`:
/// kernel file systems, mounted or made read-only by [`crate::mounts`]): an empty private
/// tmpfs each, for the roots that land below them (pruned in [`build`] when none does).
/// `shown`: every directory and symlink (a link holds nothing; what it names is decided
/// where it lands), and other files only at or under a root. Anything else (a socket in
/// `/`, a file no root names, an entry the host makes while the session runs) does not
/// exist in the view.
struct TopLevel {
    masks: Vec<PathBuf>,
    shown: Vec<PathBuf>,
}

fn top_level(top: &Path, roots: &[PathBuf]) -> Result<TopLevel, String> {
    let (mut masks, mut shown) = (Vec::new(), Vec::new());
    let fail = |e: std::io::Error| {
        format!(
            "cannot list {} to build the sandbox's own root: {e}",
            top.display()
        )
    };
    for e in std::fs::read_dir(top).map_err(fail)? {
        let e = e.map_err(fail)?;
        let p = e.path();
        let t = e
            .file_type()
            .map_err(|err| format!("cannot read the type of {}: {err}", p.display()))?;
        let rooted = is_under_any(&p, roots);
        if t.is_dir() {
            if !rooted && !["/proc", "/dev", "/sys"].iter().any(|k| p == Path::new(k)) {
                masks.push(p.clone());
            }
            shown.push(p);
        } else if t.is_symlink() {
            // Only a link that leads to what the view shows (`/bin -> usr/bin`): another
            // would tell the agent names of the host's it has no root for (attack review 103).
            let to = std::fs::read_link(&p)
                .map(|t| top.join(t))
                .unwrap_or_default();
            let to = warden_policy::normalize(&to);
            if rooted || is_under_any(&to, roots) || roots.iter().any(|r| r.starts_with(&to)) {
                shown.push(p);
            }
        } else if t.is_file() && rooted {
            shown.push(p);
        }
    }
    masks.sort();
    shown.sort();
    Ok(TopLevel { masks, shown })
}

/// Most files of `~/.config/git` copied into the private home; a tree with more is not
/// shown (its credentials could not all be judged).
const GIT_DIR_FILES_MAX: usize = 256;

/// What the view shows of the user's git configuration (`~/.gitconfig`, the files of
/// `~/.config/git` at any depth, where they really are): never the host's files themselves,
/// but private copies without the credentials they hold ([`crate::redact`]), written into
/// the private home by [`crate::mounts`]: a host that rewrites its file during the session
/// (git replaces it by rename, which takes any mount on the old file with it: attack review
/// 105) changes nothing inside. Their binds are removed from `binds`. A configuration that
/// is not in a private tree (a workspace at `$HOME`) gets a read-only copy mounted over the
/// real file instead ([`agents::View`]), which such a rename does undo.
fn git_config(
    home: &Path,
    resolver: &mut resolve::Resolver,
    binds: &mut Vec<Bind>,
    masks: &[PathBuf],
    visible: &[PathBuf],
    deny: &[PathBuf],
    notes: &mut Vec<String>,
) -> (Vec<agents::View>, Vec<agents::View>) {
    let (mut copies, mut views) = (Vec::new(), Vec::new());
    const WHY: &str = "git configuration with its credentials hidden";
    let shown = |real: &Path| is_under_any(real, visible) && !is_under_any(real, deny);
    let mut judge = |real: PathBuf, copies: &mut Vec<agents::View>, copy: bool| {
        // Unreadable or too large: not shown at all in a copy (its credentials unjudged).
        let Some(text) = agents::read_config(&real) else {
            return;
        };
        match crate::redact::git_config(&text) {
            Some(content) if !copy => views.push(agents::View {
                path: real,
                content,
                why: WHY,
            }),
            Some(content) => copies.push(agents::View {
                path: real,
                content,
                why: WHY,
            }),
            None if copy => copies.push(agents::View {
                path: real,
                content: text,
                why: "git configuration (a private copy)",
            }),
            None => {}
        }
    };
    // In the private home (a tmpfs of its own size), bound there itself and inside no other
    // bind (one that shows the real file there would stay, read-only): where the copies go.
    let private = |real: &Path, binds: &[Bind]| {
        masks.iter().any(|m| m == home)
            && real.starts_with(home)
            && binds.iter().any(|b| b.path == real)
            && !binds
                .iter()
                .any(|b| b.path != real && real.starts_with(&b.path))
    };
    if let Some(real) = resolver.chain(&home.join(".gitconfig")).map(|c| c.target) {
        let is_file = std::fs::symlink_metadata(&real).is_ok_and(|m| m.is_file());
        if is_file && shown(&real) {
            let copy = private(&real, binds);
            if copy {
                binds.retain(|b| b.path != real);
            }
            judge(real, &mut copies, copy);
        }
    }
    if let Some(dir) = resolver.chain(&home.join(".config/git")).map(|c| c.target) {
        let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        if is_dir && shown(&dir) {
            let copy = private(&dir, binds);
            let mut files = Vec::new();
            let mut stack = vec![(dir.clone(), 0usize)];
            let mut over = false;
            while let Some((d, depth)) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(t) = e.file_type() else { continue };
                    if t.is_dir() && copy && depth < 8 {
                        stack.push((e.path(), depth + 1));
                    } else if t.is_file() && !is_under_any(&e.path(), deny) {
                        files.push(e.path());
                    }
                }
                if files.len() > GIT_DIR_FILES_MAX {
                    over = true;
                    break;
                }
            }
            if copy {
                binds.retain(|b| b.path != dir);
                if over {
                    notes.push(format!(
                        "{} holds more than {GIT_DIR_FILES_MAX} files: not shown (warden shows git's configuration only as copies it has checked for credentials)",
                        dir.display()
                    ));
                    files.clear();
                }
            }
            files.sort();
            for f in files {
                judge(f, &mut copies, copy);
            }
        }
    }
    (copies, views)
}

/// The agent's own state directories that do not exist yet: `warden run` creates them
/// ([`create_state_dirs`]) before building the plan, so they can be bound in (and their
/// protected settings locked) from the first run. `--dry-run` only lists them.
pub fn missing_state_dirs(policy: &Policy, home: &Path, workspace: &Path) -> Vec<PathBuf> {
    let anchors = Anchors {
        home: home.to_path_buf(),
        workspace: workspace.to_path_buf(),
    };
    policy
        .agent
        .state
        .iter()
        .filter(|e| !looks_like_file(e))
        .map(|e| anchors.expand(e.trim_end_matches('/')))
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .collect()
}

/// Creates [`missing_state_dirs`] (not for `--dry-run`, which changes nothing).
pub fn create_state_dirs(policy: &Policy, home: &Path, workspace: &Path) {
    for d in missing_state_dirs(policy, home, workspace) {
        let _ = std::fs::create_dir_all(d);
    }
}

/// Builds the plan. Pure: reads the file system, never changes it.
/// Most entries a sheltered directory may hold (each is a mount of its own).
pub const SHELTER_MAX: usize = 64;

/// The read-only roots to shelter ([`Plan::shelter`]). A hidden file is hidden by a mount over
/// it, which lasts only as long as the host keeps that file: a host tool that replaces it by
/// rename takes the mount away, and the new file shows; a denied path that does not exist has
/// no mount at all. Elsewhere in a read-only root the Landlock rule is split around the
/// denied names ([`crate::lock`]); below a writable rule (the private `$HOME`'s) no rule can
/// be taken back, so the root's directories on the way to a denied path are the sandbox's
/// own: each a read-only tmpfs holding a bind of every other entry as the session starts, so
/// nothing the host renames, makes or swaps on that way shows (the root itself is a bind of
/// the host's directory, which a host rename does not take away). A root with a directory on
/// the way that holds more than [`SHELTER_MAX`] entries is left to the mounts over the hidden
/// paths (a note says so).
fn shelter_dirs(
    hide: &[PathBuf],
    absent: &[PathBuf],
    binds: &[Bind],
    write: &[PathBuf],
    real_writable: &[PathBuf],
    notes: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for h in hide.iter().chain(absent) {
        // A read-only lock inside a real writable root (a protected path in the workspace)
        // is the guard's, not a read root: left as it is.
        if real_writable.iter().any(|w| h.starts_with(w)) {
            continue;
        }
        if !write.iter().any(|w| h.starts_with(w)) {
            continue;
        }
        let inner = (binds.iter())
            .filter(|b| h.starts_with(&b.path) && *h != b.path)
            .max_by_key(|b| b.path.components().count());
        let Some(b) = inner else { continue };
        if b.writable || !b.is_dir || b.source.is_some() || out.contains(&b.path) {
            continue;
        }
        let crowded = (h.ancestors().skip(1))
            .take_while(|a| a.starts_with(&b.path))
            .find(|a| std::fs::read_dir(a).is_ok_and(|d| d.count() > SHELTER_MAX));
        match crowded {
            None => out.push(b.path.clone()),
            Some(a) => notes.push(format!(
                "{} holds more than {SHELTER_MAX} entries: {} is hidden by a mount over it only, \
                 which a host rename during the session would take away",
                a.display(),
                h.display()
            )),
        }
    }
    out
}

pub fn build(inp: PlanInput<'_>) -> Plan {
    let p = inp.policy;
    let anchors = Anchors {
        home: inp.home.clone(),
        workspace: inp.workspace.clone(),
    };
    let exp = |l: &[String]| -> Vec<PathBuf> {
        l.iter()
            .map(|x| anchors.expand(x.trim_end_matches('/')))
            .collect()
    };
    let system = exp(&p.files.system);
    let mut read = exp(&p.files.read);
    let write = exp(&p.files.write);
    let state = exp(&p.agent.state);
    // A worktree's or submodule's git dirs, read-only unless the policy shows them already
    // (a main repository in `files.write` stays writable, its hooks and config locked).
    let checkout_git: Vec<PathBuf> = crate::gitrefs::checkout_git_dirs(&inp.workspace)
        .into_iter()
        .filter(|g| {
            !read
                .iter()
                .chain(&write)
                .chain(&state)
                .any(|r| g.starts_with(r))
        })
        .collect();
    read.extend(checkout_git.iter().cloned());
    let mut install = exp(&p.agent.install);
    install.extend(inp.extra_read.iter().cloned());
    // Denied paths, and where they really are (a denied `~/.ssh -> ~/dotfiles/ssh` must hide
    // the target when `~/dotfiles` is shown).
    let mut deny = exp(&p.files.deny);
    let mut resolver = resolve::Resolver::default();
    let real_deny: Vec<PathBuf> = deny
        .iter()
        .filter_map(|d| resolver.chain(d).map(|c| c.target))
        .filter(|t| !deny.contains(t))
        .collect();
    deny.extend(real_deny);
    // Masked trees: home plus the fixed list; outermost first.
    let mut masks: Vec<PathBuf> = MASKED_TREES.iter().map(PathBuf::from).collect();
    masks.push(inp.home.clone());
    // Run by root, the agent is an unprivileged uid (see crate::idmap): a root that lies
    // below a directory others cannot traverse (`/root`, mode 0700) is reached through a
    // private tmpfs over that directory, with the root bound back in.
    // SAFETY: trivial getter.
    if inp.features.user_namespaces && unsafe { libc::geteuid() } == 0 {
        let all_roots = std::iter::once(&inp.workspace)
            .chain(&state)
            .chain(&write)
            .chain(&read)
            .chain(&install);
        for r in all_roots {
            if let Some(a) = untraversable_ancestor(&mut resolver, r) {
                if !is_under_any(&a, &masks) {
                    masks.push(a);
                }
            }
        }
    }
    // The sandbox's own root ([`top_level`]): every other directory of `/` that no root is at
    // or under is masked (the roots below one bound back in, as under `$HOME`), and left out
    // when none is (pruned below). Landlock governs opens, not `connect(2)` to a path-named
    // socket nor `stat(2)`: attack review 100 reached a host socket under `/var/lib` from
    // inside, and `/nix/var/nix/daemon-socket` or a `/srv/*.sock` are as close. What the
    // policy does not show is not there by any name.
    let mut top = TopLevel {
        masks: Vec::new(),
        shown: Vec::new(),
    };
    let mut unlisted_error = None;
    if inp.features.user_namespaces {
        let roots: Vec<PathBuf> = std::iter::once(inp.workspace.clone())
            .chain(state.iter().cloned())
            .chain(write.iter().cloned())
            .chain(read.iter().cloned())
            .chain(install.iter().cloned())
            .chain(system.iter().cloned())
            .chain(exp(&p.files.cache))
            .collect();
        match top_level(Path::new("/"), &roots) {
            Ok(mut t) => {
                // Only those masked for this reason alone may be pruned below (`/tmp`,
                // `/run`, `$HOME` are private trees whatever they hold).
                t.masks.retain(|e| !masks.contains(e));
                masks.extend(t.masks.iter().cloned());
                top = t;
            }
            Err(e) => unlisted_error = Some(e),
        }
    }
    masks.sort_by_cached_key(|m| m.components().count());
    masks.dedup();
    // Roots that lie inside a masked tree are bound back in, at their resolved path; the
    // symlinks met on the way are recreated inside the private tree.
    let mut binds: Vec<Bind> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut resolved_read: Vec<PathBuf> = Vec::new();
    let mut resolved_write: Vec<PathBuf> = Vec::new();
    let mut root_ids: Vec<(PathBuf, (u64, u64))> = Vec::new();
    let mut add_bind = |path: &Path, writable: bool| -> Option<PathBuf> {
        if is_under_any(path, &deny) {
            return None;
        }
        let c = resolver.chain(path)?;
        if is_under_any(&c.target, &deny) {
            return None;
        }
        for (l, t) in c.links {
            if is_under_any(&l, &masks) && !links.iter().any(|(x, _)| x == &l) {
                links.push((l, t));
            }
        }
        let real = c.target;
        if writable {
            resolved_write.push(real.clone());
        } else {
            resolved_read.push(real.clone());
        }
        let md = resolver.stat(&real);
        if let Some(m) = &md {
            if !root_ids.iter().any(|(x, _)| *x == real) {
                root_ids.push((real.clone(), (m.dev, m.ino)));
            }
        }
        if !is_under_any(&real, &masks) {
            return Some(real);
        }
        let md = md?;
        if let Some(b) = binds.iter_mut().find(|b| b.path == real) {
            b.writable |= writable;
            return Some(real);
        }
        binds.push(Bind {
            path: real.clone(),
            writable,
            is_dir: md.is_dir,
            source: None,
        });
        Some(real)
    };
    add_bind(&inp.workspace, true);
    for s in &state {
        add_bind(s, true);
    }
    for w in &write {
        add_bind(w, true);
    }
    for r in read.iter().chain(install.iter()).chain(system.iter()) {
        add_bind(r, false);
    }
    // Package caches: existing directories under a private tree become overlays.
    let mut caches: Vec<PathBuf> = Vec::new();
    let mut cache_ids: Vec<(PathBuf, (u64, u64))> = Vec::new();
    // Each cache as named and where it resolves, for the note below.
    let mut cache_named: Vec<(PathBuf, PathBuf)> = Vec::new();
    for c in exp(&p.files.cache) {
        if is_under_any(&c, &deny) {
            continue;
        }
        let Some(ch) = resolver.chain(&c) else {
            continue;
        };
        let Some(st) = resolver.stat(&ch.target).filter(|m| m.is_dir) else {
            continue;
        };
        if is_under_any(&ch.target, &deny) {
            continue;
        }
        for (l, t) in ch.links {
            if is_under_any(&l, &masks) && !links.iter().any(|(x, _)| x == &l) {
                links.push((l, t));
            }
        }
        if is_under_any(&ch.target, &masks) && !caches.contains(&ch.target) {
            cache_ids.push((ch.target.clone(), (st.dev, st.ino)));
            caches.push(ch.target.clone());
        }
        cache_named.push((c.clone(), ch.target.clone()));
        resolved_read.push(ch.target);
    }
    caches.sort_by_cached_key(|c| c.components().count());
    // A cache inside a bound root, or a bound root inside a cache, would be mounted in an
    // order that hides one of them: keep the cache only when neither overlaps.
    caches.retain(|c| {
        !binds
            .iter()
            .any(|b| c.starts_with(&b.path) || b.path.starts_with(c))
    });
    // A read-only root inside a read-only root adds nothing (and cannot be a mount point
    // inside a read-only bind when it does not exist there).
    let snapshot = binds.clone();
    binds.retain(|b| {
        !snapshot.iter().any(|a| {
            a.path != b.path
                && b.path.starts_with(&a.path)
                && a.writable == b.writable
                && !b.writable
        })
    });
    binds.sort_by_cached_key(|b| b.path.components().count());
    // Denied paths that would still be visible: inside a visible root (system roots, binds).
    let visible_roots: Vec<PathBuf> = system
        .iter()
        .filter(|s| !is_under_any(s, &masks))
        .cloned()
        .chain(binds.iter().map(|b| b.path.clone()))
        .chain(std::iter::once(inp.workspace.clone()))
        .collect();
    let hide: Vec<PathBuf> = deny
        .iter()
        .filter(|d| is_under_any(d, &visible_roots) && resolver.exists(d))
        .cloned()
        .collect();
    // Denied paths inside a visible root that do not exist (yet): nothing to mount over, but
    // what the host makes there during the session must not show (attack review 106).
    let mut hide_absent: Vec<PathBuf> = deny
        .iter()
        .filter(|d| is_under_any(d, &visible_roots) && !resolver.exists(d))
        .cloned()
        .collect();
    // The same files and directories where the host's bind mounts show them under another
    // name (attack reviews 106, 108): hidden there too.
    let mut hide = hide;
    let mounts = crate::mountinfo::read();
    for (d, existing) in crate::mountinfo::aliases(&mounts, &hide, &hide_absent) {
        if !is_under_any(&d, &visible_roots) || hide.contains(&d) || hide_absent.contains(&d) {
            continue;
        }
        match (existing, std::fs::symlink_metadata(&d).is_ok()) {
            (_, true) => hide.push(d),
            (false, false) => hide_absent.push(d),
            (true, false) => {}
        }
    }
    // Protected paths inside writable real roots. (The private $HOME and /tmp are discarded
    // at exit, so entries there need no lock.)
    // Where the roots really are too: a root named through the user's symlink (`~/cfg ->
    // ~/.config`) holds `~/.config/fish` and the other locked paths at their real place.
    let writable_real: Vec<PathBuf> = std::iter::once(inp.workspace.clone())
        .chain(state.iter().cloned())
        .chain(write.iter().cloned())
        .chain(resolved_write.iter().cloned())
        .collect();
    let mut writable_roots: Vec<PathBuf> = Vec::new();
    for w in &writable_real {
        if !is_under_any(w, &deny) && resolver.stat(w).is_some() && !writable_roots.contains(w) {
            writable_roots.push(w.clone());
        }
    }
    writable_roots.sort_by_cached_key(|b| b.components().count());
    let mut protect = Vec::new();
    let mut placeholders = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // A cache that resolves into a writable root (the host's `~/.cache/pip -> ~/proj/pipc`)
    // is no overlay: what the agent writes there stays, and the host's next build reads it
    // (attack review 126, F2). Said, not refused: the link is the user's own.
    for (named, target) in &cache_named {
        if caches.contains(target) {
            continue;
        }
        if let Some(b) = binds
            .iter()
            .find(|b| b.writable && target.starts_with(&b.path))
        {
            notes.push(format!(
                "files.cache entry {} resolves to {}, inside the writable root {}: it is not a \
                 discarded overlay there, so what the agent writes in it stays for the host's \
                 next build (point the cache outside the workspace to have one)",
                named.display(),
                target.display(),
                b.path.display()
            ));
        }
    }
    // `files.deny` takes paths: a pattern-looking entry names one literal file (attack
    // review 108: `~/tools/*` denied nothing, silently).
    for d in &deny {
        let s = d.to_string_lossy();
        if s.contains(['*', '?', '[']) && std::fs::symlink_metadata(d).is_err() {
            notes.push(format!(
                "files.deny entry {s} is a path, not a pattern: it denies only a file of that \
                 very name (name each path to deny, or its directory)"
            ));
        }
    }
    let mut git_watch = false;
    let git_dir = inp.workspace.join(".git");
    // Writable roots named through a symlink (`~/.claude -> ~/dotfiles/claude`, a dotfile
    // manager's layout): what a protected entry names under the spelled root is locked where
    // it really is too (attack review 51: only the spelled path, in the private `$HOME`, was
    // locked, and the agent wrote the real `settings.json` a host `claude` runs hooks from).
    let mut relinked: Vec<Relink> = Vec::new();
    for w in state.iter().chain(write.iter()) {
        if let Some(c) = resolver.chain(w) {
            if c.target != *w && !relinked.iter().any(|r| r.spelled == *w) {
                relinked.push(Relink {
                    spelled: w.clone(),
                    link_in_view: is_under_any(w, &masks),
                    real: c.target,
                });
            }
        }
    }
    // A protected entry that is itself reached through the host's symlinks (`~/.bashrc ->
    // dotfiles/bashrc`, `~/.claude` under a profile that does not write it) is locked where
    // it lands too, when a writable root holds that (attack review 56: the workspace
    // `~/dotfiles`), as a denied one is hidden there.
    // A symlink on the way to a protected path that lies in a writable root is pinned: a
    // mount stands on the link itself ([`LinkPin`]; attack review 57: `~/.bashrc ->
    // dotfiles/bashrc -> shell/bashrc`, the workspace `~/dotfiles`, where the agent replaced
    // the middle link).
    let mut link_pins: Vec<LinkPin> = Vec::new();
    // A link inside a locked or hidden directory is not the agent's to replace.
    let sealed: Vec<PathBuf> = p
        .files
        .protect
        .iter()
        .map(|e| anchors.expand(e.trim_end_matches('/')))
        .chain(deny.iter().cloned())
        .collect();
    let mut landing_of = |resolver: &mut resolve::Resolver, path: &Path| -> Option<PathBuf> {
        let c = resolver.chain_lenient(path)?;
        for (l, content) in c
            .links
            .iter()
            .filter(|(l, _)| is_below_any(l, &writable_real) && !is_below_any(l, &sealed))
        {
            if !link_pins.iter().any(|x| x.path == *l) {
                link_pins.push(LinkPin {
                    path: l.clone(),
                    content: content.clone(),
                });
            }
        }
        (c.target != path).then_some(c.target)
    };
    let mut protect_paths: Vec<(PathBuf, &String)> = Vec::new();
    // What `protect_paths` holds (a plan has ~150 of them: a linear search per entry was
    // a quarter of the plan's time).
    let mut protect_seen: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let mut unlockable: Option<(PathBuf, PathBuf)> = None;
    for entry in &p.files.protect {
        let path = anchors.expand(entry.trim_end_matches('/'));
        // One spelled inside a writable root is locked there, unless a symlink there leads
        // somewhere else (`.git/hooks -> ../tools/hooks`): the link is pinned and its landing
        // locked instead (a lock cannot stand on a link).
        let landing = landing_of(&mut resolver, &path);
        if let Some(l) = &landing {
            if writable_real.iter().any(|w| w.starts_with(l)) && unlockable.is_none() {
                unlockable = Some((path.clone(), l.clone()));
            }
        }
        let spelled = if landing.is_some() && is_under_any(&path, &writable_real) {
            Vec::new()
        } else {
            places_of(&path, &relinked)
        };
        for x in spelled.into_iter().chain(landing) {
            if protect_seen.insert(x.clone()) {
                protect_paths.push((x, entry));
            }
        }
    }
    // Per-file links inside an existing protected or hidden directory (stow's layout when the
    // directory exists: `~/.ssh/config -> ../dotfiles/ssh/config`, `~/.claude/hooks/h.sh`)
    // are locked where they land too (attack review 57).
    let mut walked: Vec<(PathBuf, String)> = Vec::new();
    let mut budget = LINK_WALK_BUDGET;
    let mut tops: Vec<PathBuf> = p
        .files
        .protect
        .iter()
        .chain(&p.files.deny)
        .map(|e| anchors.expand(e.trim_end_matches('/')))
        .filter(|g| !is_under_any(g, &inp.no_link_walk))
        .collect();
    tops.sort_by_cached_key(|g| g.components().count());
    tops.dedup();
    let mut done: Vec<&PathBuf> = Vec::new();
    for g in &tops {
        // Only what exists (the resolver looked at each already); each tree once
        // (`~/.config/git` inside a walked `~/.config` is not walked again). Inside a
        // writable root too: a lock of the directory covers its entries, not what a link
        // among them points at.
        if !resolver.exists(g) || done.iter().any(|o| g.starts_with(o)) {
            continue;
        }
        links_below(g, 0, &mut budget, &mut walked);
        done.push(g);
    }
    if budget == 0 {
        notes.push(format!(
            "over {LINK_WALK_BUDGET} entries in protected directories: symlinks past that were not followed for locking"
        ));
    }
    let walked: Vec<(PathBuf, String)> = walked
        .into_iter()
        .filter_map(|(l, name)| {
            let t = landing_of(&mut resolver, &l)?;
            is_under_any(&t, &writable_real).then_some((t, name))
        })
        .collect();
    for (t, name) in &walked {
        if protect_seen.insert(t.clone()) {
            protect_paths.push((t.clone(), name));
        }
    }
    for (path, entry) in protect_paths {
        if !is_under_any(&path, &writable_real) {
            continue;
        }
        let in_git = path.starts_with(&git_dir) && path != git_dir;
        let exists = resolver.exists(&path);
        if in_git && !resolver.stat(&git_dir).is_some_and(|s| s.is_dir) {
            // `git init` must still work: lock these once they appear (see Plan::git_watch).
            git_watch = true;
            continue;
        }
        let is_dir = if exists {
            resolver.stat(&path).is_some_and(|s| s.is_dir)
        } else {
            !looks_like_file(entry)
        };
        let content = (!exists && !is_dir).then(|| placeholder_content(Path::new(entry.as_str())));
        if !exists && !placeholders.iter().any(|(p, _)| *p == path) {
            placeholders.push((path.clone(), is_dir));
        }
        protect.push(Protect {
            path,
            is_dir,
            placeholder_content: content,
            hidden: false,
        });
    }
    // Denied paths that do not exist yet inside a writable real root (the workspace at
    // `$HOME`: `~/.ssh`, `~/.aws`, `~/.netrc`). Hiding covers what exists; an absent one
    // could be created by the agent for the host to use later (`~/.ssh/authorized_keys`,
    // a `ProxyCommand` in `~/.ssh/config`, `credential_process` in `~/.aws/config`). It is
    // locked read-only through an empty placeholder, as an absent protected path is.
    for d in &deny {
        let inside = is_below_any(d, &writable_real);
        let in_git = d.starts_with(&git_dir);
        if !inside || in_git || resolver.exists(d) {
            continue;
        }
        // Under another denied path: that one's hide or lock covers it.
        if deny.iter().any(|o| o != d && d.starts_with(o)) {
            continue;
        }
        let is_dir = !looks_like_file(&d.to_string_lossy());
        if !placeholders.iter().any(|(p, _)| p == d) {
            placeholders.push((d.clone(), is_dir));
        }
        protect.push(Protect {
            path: d.clone(),
            is_dir,
            placeholder_content: (!is_dir).then_some(""),
            hidden: true,
        });
    }
    // What git configuration names outside the git dir (`core.hooksPath`, includes,
    // `init.templateDir`; see crate::gitrefs) and lies in a writable root: locked like a
    // protected path (absent ones through a placeholder, containers pinned), so the agent can
    // neither create it nor rename a parent away and rebuild it.
    let git_roots: Vec<PathBuf> = writable_real
        .iter()
        .chain(resolved_write.iter())
        .cloned()
        .collect();
    let mut git_targets = Vec::new();
    for t in crate::gitrefs::targets(&inp.workspace, &inp.home) {
        // A link in a writable root on the way (`core.hooksPath = tools/hooks` with `tools ->
        // lib/tools` in the workspace) is pinned (attack review 58: the agent replaced it).
        landing_of(&mut resolver, &t.spelled);
        if git_roots.contains(&t.path) {
            notes.push(format!(
                "{} (named by {}) contains a writable root: warden cannot lock it, so what the agent writes there can run on the host",
                t.path.display(),
                t.key
            ));
            continue;
        }
        if !is_under_any(&t.path, &git_roots) || is_under_any(&t.path, &hide) {
            continue;
        }
        let exists = std::fs::symlink_metadata(&t.path).ok();
        let is_dir = exists.as_ref().map_or(t.is_dir, |m| m.is_dir());
        if exists.is_none() && !placeholders.iter().any(|(p, _)| *p == t.path) {
            placeholders.push((t.path.clone(), is_dir));
        }
        protect.push(Protect {
            path: t.path.clone(),
            is_dir,
            placeholder_content: (exists.is_none() && !is_dir).then_some(""),
            hidden: false,
        });
        git_targets.push(t.path);
    }
    // One entry per path: with the workspace at `$HOME`, `.claude/settings.json` and
    // `~/.claude/settings.json` name the same file (a second lock would find the first).
    let mut seen = std::collections::HashSet::new();
    protect.retain(|x| seen.insert(x.path.clone()));
    protect.sort_by_cached_key(|x| x.path.components().count());
    // Agent-specific views replace protected files only (they must be locked already).
    let (mut views, agent_notes) = agents::views(p.agent.name.as_deref(), &inp.home);
    notes.extend(agent_notes);
    for v in &mut views {
        if let Some(real) = places_of(&v.path, &relinked).pop() {
            v.path = real;
        }
    }
    views.retain(|v| {
        let locked = protect.iter().any(|x| x.path == v.path && !x.is_dir);
        if !locked {
            notes.push(format!(
                "{} is not in files.protect, so warden does not show its adjusted copy ({})",
                v.path.display(),
                v.why
            ));
        }
        locked
    });
    let (copies, git_views) = git_config(
        &inp.home,
        &mut resolver,
        &mut binds,
        &masks,
        &visible_roots,
        &deny,
        &mut notes,
    );
    views.extend(git_views);
    // Landlock roots (as written, and resolved: a rule on a missing symlink grants nothing).
    let mut landlock_read: Vec<PathBuf> = system.clone();
    landlock_read.extend(read.iter().cloned());
    landlock_read.extend(install.iter().cloned());
    landlock_read.extend(resolved_read);
    landlock_read.extend(caches.iter().cloned());
    // `$HOME`, `/tmp` and `/var/tmp` are writable only where they are the sandbox's private
    // tmpfs mounts. Without a mount namespace (`--best-effort` on a machine without user
    // namespaces) they are the real ones: the user's rc files, agent settings and warden's own
    // state, and other programs' files in /tmp. Then the agent gets a private TMPDIR instead
    // ([`Plan::private_tmp`], made by the supervisor).
    let private_tmp = (!inp.features.user_namespaces)
        .then(|| std::env::temp_dir().join(format!("warden-{}", inp.session_id)));
    let mut landlock_write: Vec<PathBuf> = vec![inp.workspace.clone()];
    match &private_tmp {
        None => landlock_write.extend([
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
            inp.home.clone(),
        ]),
        Some(t) => landlock_write.push(t.clone()),
    }
    landlock_write.extend(state.iter().cloned());
    landlock_write.extend(write.iter().cloned());
    landlock_write.extend(resolved_write);
    // Caches are writable only as a private overlay (a mount namespace); without one they
    // are the host's real caches, which the host later builds from: read-only then.
    if inp.features.user_namespaces {
        landlock_write.extend(caches.iter().cloned());
    }
    // Environment.
    let mut env = Vec::new();
    let mut scrubbed = Vec::new();
    for (k, v) in std::env::vars_os() {
        use std::os::unix::ffi::OsStrExt;
        let name = k.to_string_lossy().into_owned();
        if let Some(glob) = p.env.scrubbed(&name, v.as_bytes()) {
            scrubbed.push((name, glob.to_string()));
            continue;
        }
        if name.starts_with("WARDEN_") || name == "TMPDIR" {
            continue;
        }
        env.push((k, v));
    }
    let git_count = env
        .iter()
        .find(|(k, _)| k == "GIT_CONFIG_COUNT")
        .and_then(|(_, v)| v.to_str()?.parse::<u32>().ok())
        .unwrap_or(0);
    let mut set = |k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    };
    match &private_tmp {
        Some(t) => set("TMPDIR", &t.to_string_lossy()),
        None => set("TMPDIR", "/tmp"),
    }
    set("WARDEN_SANDBOX", "1");
    set("WARDEN_SESSION_ID", &inp.session_id);
    for (k, v) in &p.env.set {
        set(k, v);
    }
    for (k, v) in &inp.extra_env {
        set(k, v);
    }
    // Run by root, the agent's uid owns the (idmapped) workspace but not the checkout's git
    // dir shown read-only elsewhere: git would refuse the worktree as of "dubious
    // ownership". The workspace is the user's own checkout: trusted through the command-line
    // configuration git honours for it (`GIT_CONFIG_COUNT`, appended to the user's own).
    // SAFETY: trivial getter.
    if !checkout_git.is_empty() && unsafe { libc::geteuid() } == 0 {
        let n = git_count;
        set(&format!("GIT_CONFIG_KEY_{n}"), "safe.directory");
        set(
            &format!("GIT_CONFIG_VALUE_{n}"),
            &inp.workspace.to_string_lossy(),
        );
        set("GIT_CONFIG_COUNT", &(n + 1).to_string());
    }
    let limits = crate::limits::from_policy(&p.process, &inp.home, crate::limits::ram_bytes());
    // A directory of `/` masked only because no root is at or under it, with nothing of the
    // view below it either (`/srv`, `/mnt`, `/boot`), is simply left out of the sandbox's
    // own root: no tmpfs to mount, nothing to show.
    let below: Vec<&Path> = masks
        .iter()
        .map(PathBuf::as_path)
        .chain(binds.iter().map(|b| b.path.as_path()))
        .chain(hide.iter().map(PathBuf::as_path))
        .chain(protect.iter().map(|x| x.path.as_path()))
        .chain(caches.iter().map(PathBuf::as_path))
        .chain(links.iter().map(|(l, _)| l.as_path()))
        .chain(views.iter().map(|v| v.path.as_path()))
        .chain(landlock_read.iter().map(PathBuf::as_path))
        .chain(landlock_write.iter().map(PathBuf::as_path))
        .chain(std::iter::once(inp.workspace.as_path()))
        .collect();
    let empty: Vec<PathBuf> = top
        .masks
        .iter()
        .filter(|d| !below.iter().any(|b| b.starts_with(d) && b != d))
        .cloned()
        .collect();
    drop(below);
    masks.retain(|m| !empty.contains(m));
    top.shown.retain(|s| !empty.contains(s));
    let shelter = shelter_dirs(
        &hide,
        &hide_absent,
        &binds,
        &landlock_write,
        &writable_roots,
        &mut notes,
    );
    Plan {
        session_id: inp.session_id,
        workspace: inp.workspace,
        home: inp.home,
        command: inp.command,
        masks,
        binds,
        hide,
        shelter,
        hide_absent,
        protect,
        placeholders,
        git_watch,
        landlock_read,
        landlock_write,
        private_tmp,
        env,
        scrubbed,
        pids_max: pids_max(&p.process),
        nofile: p.process.nofile.unwrap_or(65536),
        core_dumps: p.process.core_dumps.unwrap_or(false),
        net_isolated: inp.features.user_namespaces,
        links,
        caches,
        placeholder_token: String::new(),
        views,
        notes,
        git_targets,
        limits,
        writable_roots,
        gate_policy: None,
        state_watch: Vec::new(),
        root_ids,
        cache_ids,
        relinked,
        link_pins,
        unlockable,
        unlisted_error,
        top: top.shown,
        copies,
    }
}

/// The session's task limit (`process.pids_max`, default 4,096).
pub fn pids_max(p: &warden_policy::ProcessSection) -> u32 {
    p.pids_max.unwrap_or(4096)
}

/// Entries read below protected and hidden directories looking for symlinks, per session.
const LINK_WALK_BUDGET: usize = 1000;

/// The symlinks below `dir` (a protected or hidden directory: the agent changes nothing
/// there), two levels deep (stow's per-file links: `~/.ssh/config`,
/// `~/.config/systemd/user/x.service`; deeper trees are editor plugins and caches, whose walk
/// cost 2.5 ms per session with a large `~/.vscode-server`): (link path, its file name). No link is followed (`dir` itself, a
/// protected entry named through the user's link, is read where it lands).
fn links_below(dir: &Path, depth: usize, budget: &mut usize, out: &mut Vec<(PathBuf, String)>) {
    if depth > 1 || *budget == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(ft) = e.file_type() else {
            continue;
        };
        let path = e.path();
        if ft.is_symlink() {
            out.push((path, e.file_name().to_string_lossy().into_owned()));
        } else if ft.is_dir() {
            links_below(&path, depth + 1, budget, out);
        }
    }
}

/// The innermost symlinked writable root holding `p`.
fn relink_of<'a>(p: &Path, relinked: &'a [Relink]) -> Option<&'a Relink> {
    relinked
        .iter()
        .filter(|r| p.starts_with(&r.spelled))
        .max_by_key(|r| r.spelled.components().count())
}

/// Where a path may be reached in the sandbox: itself, and, under a writable root named
/// through a symlink, its real place too (only that one when the sandbox recreates the
/// link: see [`Relink::link_in_view`]).
fn places_of(p: &Path, relinked: &[Relink]) -> Vec<PathBuf> {
    let Some(r) = relink_of(p, relinked) else {
        return vec![p.to_path_buf()];
    };
    let Ok(rest) = p.strip_prefix(&r.spelled) else {
        return vec![p.to_path_buf()];
    };
    let real = if rest.as_os_str().is_empty() {
        r.real.clone()
    } else {
        r.real.join(rest)
    };
    if r.link_in_view {
        vec![real]
    } else {
        vec![p.to_path_buf(), real]
    }
}

/// The agent's state directories (`agent.state`), expanded.
pub fn state_roots(policy: &Policy, home: &Path, workspace: &Path) -> Vec<PathBuf> {
    let anchors = Anchors {
        home: home.to_path_buf(),
        workspace: workspace.to_path_buf(),
    };
    policy
        .agent
        .state
        .iter()
        .map(|e| anchors.expand(e.trim_end_matches('/')))
        .collect()
}

impl Plan {
    /// Locks existing files and directories read-only like `files.protect` entries when a
    /// writable root holds them: the policy files a session was started with (`--policy
    /// ci/warden.toml` in the workspace), which decide the next session, and warden's own
    /// directories (state, data), whatever the policy's `files.protect` says. A path that is
    /// neither a regular file nor a directory (or a symlink) is left alone.
    pub fn protect_existing(&mut self, paths: &[PathBuf]) {
        let roots = crate::placeholder::writable_roots(self);
        let all: Vec<PathBuf> = paths.iter().flat_map(|p| self.places(p)).collect();
        for f in &all {
            let Ok(m) = std::fs::symlink_metadata(f) else {
                continue;
            };
            if !roots.iter().any(|r| f.starts_with(r) && f != r)
                || self.protect.iter().any(|p| p.path == *f)
                || self.hide.iter().any(|h| f.starts_with(h))
                || !(m.is_file() || m.is_dir())
            {
                continue;
            }
            self.protect.push(Protect {
                path: f.clone(),
                is_dir: m.is_dir(),
                placeholder_content: None,
                hidden: false,
            });
        }
        self.protect
            .sort_by_cached_key(|x| x.path.components().count());
    }

    /// Where `p` may be reached in the sandbox ([`Relink`]): itself, or its real place under
    /// a writable root named through a symlink, or both.
    pub fn places(&self, p: &Path) -> Vec<PathBuf> {
        places_of(p, &self.relinked)
    }

    /// Where `p`, spelled under a writable root named through a symlink, really is: (the
    /// real root, the (device, inode) the plan recorded for it, the rest of `p`). None when
    /// `p` is under no such root, or the real root was not recorded (it does not exist).
    pub fn relocate(&self, p: &Path) -> Option<(PathBuf, (u64, u64), PathBuf)> {
        let r = relink_of(p, &self.relinked)?;
        let rest = p.strip_prefix(&r.spelled).ok()?.to_path_buf();
        Some((r.real.clone(), self.root_id(&r.real)?, rest))
    }

    /// The (device, inode) the plan recorded for the root at `path` ([`Plan::root_ids`]).
    pub fn root_id(&self, path: &Path) -> Option<(u64, u64)> {
        self.root_ids
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, i)| *i)
    }

    /// Hides `paths` (warden's per-user directories: the audit store holds every session's
    /// commands) wherever a root of this plan would show them, as a `files.deny` entry
    /// would be (an empty read-only mount, containers pinned), whatever the profile denies.
    /// Absent ones are left to [`Plan::lock_within_writable`].
    pub fn hide_within_visible(&mut self, paths: &[PathBuf]) {
        let mut resolver = crate::resolve::Resolver::default();
        let visible: Vec<PathBuf> = self
            .binds
            .iter()
            .map(|b| b.path.clone())
            .chain(self.landlock_read.iter().cloned())
            .chain(self.landlock_write.iter().cloned())
            .collect();
        for p in paths {
            let Some(real) = resolver.chain(p).map(|c| c.target) else {
                continue;
            };
            if visible.iter().any(|v| real.starts_with(v))
                && !self.hide.iter().any(|h| real.starts_with(h))
            {
                self.hide.push(real);
            }
        }
    }

    /// The (device, inode) the plan recorded for the cache at `path` ([`Plan::cache_ids`]).
    pub fn cache_id(&self, path: &Path) -> Option<(u64, u64)> {
        self.cache_ids
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, i)| *i)
    }

    /// Keeps `paths` (warden's own directories) out of the agent's reach, judged on this
    /// plan's real writable roots as they resolve now (after the host's directories were
    /// made, just before the session starts):
    /// - a root at, inside, or aliasing (another path to the same directory, a bind mount)
    ///   one of them, or to a directory above one, is an error `(root, path)`: the session
    ///   must not start;
    /// - one that a root holds is locked read-only at its real path (an absent one through a
    ///   placeholder directory), unless a lock or a hide already covers it.
    ///
    /// This holds whatever the profile's `files.protect` says.
    pub fn lock_within_writable(&mut self, paths: &[PathBuf]) -> Result<(), (PathBuf, PathBuf)> {
        use std::collections::HashMap;
        use std::os::unix::fs::MetadataExt;
        let mut ids: HashMap<PathBuf, Option<(u64, u64)>> = HashMap::new();
        let mut id = |p: &Path| -> Option<(u64, u64)> {
            *ids.entry(p.to_path_buf())
                .or_insert_with(|| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        };
        let mut roots: Vec<PathBuf> = crate::placeholder::writable_roots(self)
            .into_iter()
            .filter_map(|r| std::fs::canonicalize(&r).ok())
            .collect();
        // The writable binds as recorded (path and inode), whatever their paths say now.
        let recorded: Vec<(PathBuf, (u64, u64))> = self
            .binds
            .iter()
            .filter(|b| b.writable && b.source.is_none())
            .filter_map(|b| self.root_id(&b.path).map(|i| (b.path.clone(), i)))
            .collect();
        for (p, _) in &recorded {
            if !roots.contains(p) {
                roots.push(p.clone());
            }
        }
        let mut resolver = crate::resolve::Resolver::default();
        let mut added = false;
        for p in paths {
            let Some(real) = resolver.chain_lenient(p).map(|c| c.target) else {
                // A symlink loop on the way: nothing can be judged there.
                return Err((p.clone(), p.clone()));
            };
            let above: Vec<(PathBuf, Option<(u64, u64)>)> =
                real.ancestors().map(|a| (a.to_path_buf(), id(a))).collect();
            let own = above.first().and_then(|(_, i)| *i);
            // A bind whose recorded inode is `real` or a directory above it under another
            // path (swapped in before it was recorded, or an alias).
            for (b, bi) in &recorded {
                if above.iter().any(|(a, i)| *i == Some(*bi) && a != b) {
                    return Err((b.clone(), p.clone()));
                }
            }
            for r in &roots {
                if r.starts_with(&real) {
                    return Err((r.clone(), p.clone()));
                }
                let Some(ri) = id(r) else { continue };
                // `r` is another path to `real` or to a directory above it.
                if above.iter().any(|(a, i)| *i == Some(ri) && a != r) {
                    return Err((r.clone(), p.clone()));
                }
                // `real` is above `r` under another path.
                if own.is_some() && r.ancestors().skip(1).any(|a| id(a) == own) {
                    return Err((r.clone(), p.clone()));
                }
            }
            if !roots.iter().any(|r| real.starts_with(r) && real != *r)
                || self.hide.iter().any(|h| real.starts_with(h))
                || self.protect.iter().any(|x| real.starts_with(&x.path))
            {
                continue;
            }
            let exists = std::fs::symlink_metadata(&real).is_ok();
            if !exists && !self.placeholders.iter().any(|(q, _)| *q == real) {
                self.placeholders.push((real.clone(), true));
            }
            self.protect.push(Protect {
                path: real,
                is_dir: true,
                placeholder_content: None,
                hidden: false,
            });
            added = true;
        }
        if added {
            self.protect
                .sort_by_cached_key(|x| x.path.components().count());
        }
        Ok(())
    }

    /// Locks read-only, like a `files.protect` entry, each path the host's agent configuration
    /// runs or loads from a writable root (`bash ~/.claude/statusline-command.sh`; found by
    /// `warden_agentstate::refs`): (path, is_dir, watch_only, from). A `watch_only` path has a
    /// symlink on the way, which a mount cannot lock: it is only compared by the integrity
    /// report. `from` names the settings file. Paths outside [`Plan::writable_roots`] are
    /// ignored; one in the workspace gets a note (the agent may have wanted to edit it).
    pub fn protect_referenced(&mut self, refs: Vec<(PathBuf, bool, bool, String)>) {
        // Under a writable root named through a symlink, the referenced file is locked where
        // it really is (the host's `bash ~/.claude/statusline.sh` runs the file in
        // `~/dotfiles/claude` when `~/.claude` links there).
        let refs: Vec<_> = refs
            .into_iter()
            .flat_map(|(p, d, w, f)| {
                self.places(&p)
                    .into_iter()
                    .map(move |x| (x, d, w, f.clone()))
            })
            .collect();
        for (path, is_dir, watch_only, from) in refs {
            let inside = self
                .writable_roots
                .iter()
                .any(|r| path.starts_with(r) && path != *r);
            if !inside {
                continue;
            }
            if !self.state_watch.contains(&path) {
                self.state_watch.push(path.clone());
            }
            // A link on the way (`~/.claude/statusline.sh -> ../dotfiles/statusline.sh`; the
            // landing comes as a reference of its own and is locked): pinned, so the agent
            // cannot put its own file in the link's place (attack review 58).
            if watch_only {
                self.pin_links_to(&path);
            }
            if watch_only
                || self.protect.iter().any(|x| path.starts_with(&x.path))
                || self
                    .binds
                    .iter()
                    .any(|b| b.source.is_some() && b.path == path)
            {
                continue;
            }
            // `.git/hooks` and `.git/config` are the guard's (it neutralises them).
            if path.starts_with(self.workspace.join(".git")) {
                continue;
            }
            if path.starts_with(&self.workspace) {
                self.notes.push(format!(
                    "{} is read-only in this session: {from} runs it on the host",
                    path.display()
                ));
            }
            let exists = std::fs::symlink_metadata(&path).is_ok();
            if !exists && !self.placeholders.iter().any(|(p, _)| *p == path) {
                self.placeholders.push((path.clone(), is_dir));
            }
            let content = (!exists && !is_dir).then(|| placeholder_content(&path));
            self.protect.push(Protect {
                path,
                is_dir,
                placeholder_content: content,
                hidden: false,
            });
        }
        self.protect
            .sort_by_cached_key(|x| x.path.components().count());
    }

    /// Pins ([`LinkPin`]) each symlink on the way to `path` that lies in a writable root,
    /// outside a locked directory or a hidden path.
    fn pin_links_to(&mut self, path: &Path) {
        let Some(c) = resolve::Resolver::default().chain_lenient(path) else {
            return;
        };
        for (l, content) in c.links {
            let inside = self
                .writable_roots
                .iter()
                .any(|r| l.starts_with(r) && l != *r);
            let sealed = self
                .protect
                .iter()
                .any(|x| x.is_dir && l.starts_with(&x.path) && l != x.path)
                || self.hide.iter().any(|h| l.starts_with(h));
            if inside && !sealed && !self.link_pins.iter().any(|x| x.path == l) {
                self.link_pins.push(LinkPin { path: l, content });
            }
        }
    }

    /// Shows `source` (a file the supervisor made, outside the sandbox's view) read-write at
    /// `target` instead of the real `target`: any bind, lock or placeholder of `target` is
    /// replaced.
    pub fn bind_copy(&mut self, target: PathBuf, source: PathBuf) {
        // Under a writable root named through a symlink, at the real place (the spelled one
        // shows it through the recreated link).
        let target = self.places(&target).pop().unwrap_or(target);
        self.binds.retain(|b| b.path != target);
        // What stands there in the sandbox is the copy, not the host's inode.
        self.root_ids.retain(|(p, _)| *p != target);
        self.protect.retain(|p| p.path != target);
        self.placeholders.retain(|(p, _)| *p != target);
        // A user's link there (`settings.json -> ../dotfiles/settings.json`, which the state
        // filter refuses to follow): the copy's mount stands on the link itself and pins it.
        self.link_pins.retain(|l| l.path != target);
        self.binds.push(Bind {
            path: target,
            writable: true,
            is_dir: false,
            source: Some(source),
        });
        self.binds
            .sort_by_cached_key(|b| b.path.components().count());
    }

    /// Whether the sandbox's view shows `real` (a path free of symlinks): not hidden by a
    /// deny, not inside a private tree unless bound back in, and under a Landlock root.
    pub fn shows(&self, real: &Path) -> bool {
        if self.hide.iter().any(|h| real.starts_with(h)) {
            return false;
        }
        let masked = self.masks.iter().any(|m| real.starts_with(m));
        let bound = real.starts_with(&self.workspace)
            || self.binds.iter().any(|b| real.starts_with(&b.path))
            || self.caches.iter().any(|c| real.starts_with(c));
        if masked && !bound {
            return false;
        }
        self.landlock_read
            .iter()
            .chain(&self.landlock_write)
            .any(|r| real.starts_with(r))
    }

    /// The private tree covering `path`, if any.
    fn mask_of(&self, path: &Path) -> Option<PathBuf> {
        self.masks
            .iter()
            .filter(|m| path.starts_with(m))
            .max_by_key(|m| m.components().count())
            .cloned()
    }

    /// Resolves the command the way it will run inside: through the sandbox's `PATH`,
    /// skipping what the view hides. A hidden or missing command is an error that says so.
    pub fn resolve_command(&self) -> Result<PathBuf, resolve::CommandError> {
        let cmd = self.command.first().map(String::as_str).unwrap_or("");
        let visible = |p: &Path, is_link: bool| {
            if is_link {
                // A link outside the private trees is the host's own (`/bin -> usr/bin`).
                !self.masks.iter().any(|m| p.starts_with(m))
                    || self.links.iter().any(|(l, _)| l == p)
                    || p.parent().is_some_and(|d| self.shows(d))
            } else {
                self.shows(p)
            }
        };
        resolve::command(cmd, &self.env, visible).map_err(|e| match e {
            resolve::CommandError::Hidden { cmd, path, .. } => {
                let real = resolve::chain(&path).map_or(path.clone(), |c| c.target);
                resolve::CommandError::Hidden {
                    root: self.mask_of(&real),
                    cmd,
                    path,
                }
            }
            other => other,
        })
    }

    /// Directories on the sandbox's `PATH` that exist on the host but are hidden inside
    /// (tools there give `command not found`).
    pub fn hidden_path_dirs(&self) -> Vec<PathBuf> {
        let Some((_, path)) = self.env.iter().find(|(k, _)| k == "PATH") else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = Vec::new();
        let mut resolver = resolve::Resolver::default();
        for d in std::env::split_paths(path).filter(|d| d.is_absolute()) {
            let hidden = resolver.chain(&d).is_some_and(|c| {
                resolver.stat(&c.target).is_some_and(|s| s.is_dir) && !self.shows(&c.target)
            });
            if hidden && !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// The real writable directories besides the workspace (agent state, `files.write`):
    /// what the integrity report checks for settings that steer later sessions.
    pub fn agent_state_dirs(&self) -> Vec<PathBuf> {
        // Package caches are overlays whose writes never reach the host: nothing to report,
        // and walking `~/.cargo/registry` for executables cost ~150 ms at each end.
        crate::placeholder::writable_roots(self)
            .into_iter()
            .filter(|p| *p != self.workspace && p.is_dir())
            .filter(|p| !self.caches.iter().any(|c| p.starts_with(c)))
            .collect()
    }

    /// Hands the gate inside the sandbox the run's effective policy (serialised
    /// [`warden_policy::session::SessionPolicy`]): a read-only file under the private `/run`,
    /// readable (never writable) through Landlock.
    pub fn set_gate_policy(&mut self, json: String) {
        self.gate_policy = Some(json);
        let dir = PathBuf::from(warden_policy::session::GATE_DIR);
        if !self.landlock_read.contains(&dir) {
            self.landlock_read.push(dir);
        }
    }

    /// A mask that is a directory of `/` only masked to reach the roots below it (`/var` for
    /// `/var/lib/dpkg`, `/home` for a workspace there): the own root's plain directory is it
    /// (no tmpfs of its own; see [`crate::mounts`]).
    pub fn reach_only(&self, p: &Path) -> bool {
        !self.top.is_empty()
            && p.parent() == Some(Path::new("/"))
            && p != self.home
            && p != Path::new("/run")
            && !MASKED_TREES.iter().any(|m| Path::new(m) == p)
    }

    /// Human-readable summary (`warden run --dry-run`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(s, "session   {}", self.session_id);
        let _ = writeln!(s, "workspace {} (read-write)", self.workspace.display());
        let _ = writeln!(s, "command   {}", self.command.join(" "));
        let list = |v: &mut dyn Iterator<Item = &PathBuf>| {
            v.map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.top.is_empty() {
            let _ = writeln!(
                s,
                "own root  / (read-only tmpfs, pivot_root) shows only: {}",
                list(&mut self.top.iter())
            );
            let _ = writeln!(
                s,
                "empty, holding roots only: {}",
                list(&mut self.masks.iter().filter(|m| self.reach_only(m)))
            );
        }
        let _ = writeln!(
            s,
            "private tmpfs: {}",
            list(&mut self.masks.iter().filter(|m| !self.reach_only(m)))
        );
        for b in &self.binds {
            let _ = writeln!(
                s,
                "bind {} {}{}",
                if b.writable { "rw" } else { "ro" },
                b.path.display(),
                match &b.source {
                    Some(src) => format!(" (a copy: {})", src.display()),
                    None => String::new(),
                }
            );
        }
        for (l, t) in &self.links {
            let _ = writeln!(s, "symlink {} -> {} (private)", l.display(), t.display());
        }
        for c in &self.caches {
            let _ = writeln!(
                s,
                "cache {} (host copy read-only, writes private to the session)",
                c.display()
            );
        }
        for h in &self.hide {
            let _ = writeln!(s, "hide {}", h.display());
        }
        for h in &self.hide_absent {
            let _ = writeln!(
                s,
                "hide {} (absent: whatever the host makes there is not shown)",
                h.display()
            );
        }
        for d in &self.shelter {
            let _ = writeln!(
                s,
                "shelter {} (read-only tmpfs of its entries as the session starts)",
                d.display()
            );
        }
        for v in &self.views {
            let _ = writeln!(s, "view (read-only) {}: {}", v.path.display(), v.why);
        }
        for v in &self.copies {
            let _ = writeln!(s, "copy (private) {}: {}", v.path.display(), v.why);
        }
        for l in &self.link_pins {
            let _ = writeln!(
                s,
                "pin symlink {} -> {} (on the way to a protected path: cannot be removed or replaced)",
                l.path.display(),
                l.content.display()
            );
        }
        for p in &self.protect {
            let _ = writeln!(s, "protect (read-only) {}", p.path.display());
        }
        if self.git_watch {
            let _ = writeln!(
                s,
                "protect .git/hooks and .git/config once `git init` creates them"
            );
        }
        if self.gate_policy.is_some() {
            let _ = writeln!(
                s,
                "gate policy {} (read-only)",
                warden_policy::session::GATE_FILE
            );
        }
        for (k, g) in &self.scrubbed {
            let _ = writeln!(s, "env scrubbed {k} (matches {g})");
        }
        let _ = writeln!(
            s,
            "pids.max {}; nofile {}; core dumps {}",
            self.pids_max, self.nofile, self.core_dumps
        );
        let _ = writeln!(
            s,
            "memory.max {}",
            warden_policy::ByteSize(self.limits.memory_max).human()
        );
        for t in &self.limits.tmpfs {
            let _ = writeln!(
                s,
                "tmpfs {} size {} ({})",
                t.path.display(),
                warden_policy::ByteSize(t.size).human(),
                t.key
            );
        }
        let _ = writeln!(s, "/dev: {}", crate::mounts::DEV_NODES.join(", "));
        let _ = writeln!(
            s,
            "network {}",
            if self.net_isolated {
                "own namespace (loopback only)"
            } else {
                "host (NOT isolated)"
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_byte_prefix_check_agrees_with_path_starts_with() {
        let names = [
            "", "/", "/a", "/a/", "/a/b", "/ab", "/a/bc", "/a//b", "/a/./b", "/a/.", "a", "a/b",
            "./a", ".", "/a/b/c", "/a/b/", "/ab/c", "/a/b/..", "/a/../b", "//a", "/a/b//", "/.",
            "/./a", "a/./b", "a//b", "a/", "a/.",
        ];
        for p in names {
            for r in names {
                let (pp, rr) = (Path::new(p), Path::new(r));
                assert_eq!(
                    super::is_under_any(pp, &[rr.to_path_buf()]),
                    pp.starts_with(rr),
                    "{p:?} starts with {r:?}"
                );
                assert_eq!(
                    super::is_below_any(pp, &[rr.to_path_buf()]),
                    pp.starts_with(rr) && pp != rr,
                    "{p:?} lies below {r:?}"
                );
            }
        }
    }
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn paths_under_a_symlinked_root_are_placed_where_they_really_are() {
        let r = |link_in_view| Relink {
            spelled: PathBuf::from("/h/.claude"),
            real: PathBuf::from("/h/dotfiles/claude"),
            link_in_view,
        };
        let p = Path::new("/h/.claude/hooks");
        // In the private home the link is recreated: only the real place.
        assert_eq!(
            places_of(p, &[r(true)]),
            vec![PathBuf::from("/h/dotfiles/claude/hooks")]
        );
        // Elsewhere the spelled place is the host's own symlink: both.
        assert_eq!(
            places_of(p, &[r(false)]),
            vec![p.to_path_buf(), PathBuf::from("/h/dotfiles/claude/hooks")]
        );
        assert_eq!(
            places_of(Path::new("/h/.claude"), &[r(true)]),
            vec![PathBuf::from("/h/dotfiles/claude")]
        );
        // A sibling that only shares the prefix as a string is not under the root.
        let other = Path::new("/h/.claude.json");
        assert_eq!(places_of(other, &[r(true)]), vec![other.to_path_buf()]);
    }

    #[test]
    fn the_own_root_shows_directories_and_links_and_only_rooted_files() {
        let d = std::env::temp_dir().join(format!("warden-top-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for x in ["usr", "srv", "var/lib/dpkg", "proc"] {
            std::fs::create_dir_all(d.join(x)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", d.join("bin")).unwrap();
        std::os::unix::fs::symlink("/nowhere/x", d.join("stray-link")).unwrap();
        std::os::unix::fs::symlink("srv/../var", d.join("var-link")).unwrap();
        std::fs::write(d.join("stray"), "").unwrap();
        std::fs::write(d.join("named"), "").unwrap();
        let l = std::os::unix::net::UnixListener::bind(d.join("s.sock")).unwrap();
        let roots = vec![d.join("usr"), d.join("var/lib/dpkg"), d.join("named")];
        let t = top_level(&d, &roots).unwrap();
        // `proc` is only special at `/`: here it is an ordinary directory.
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&t.masks), ["proc", "srv", "var"]);
        assert_eq!(
            names(&t.shown),
            ["bin", "named", "proc", "srv", "usr", "var", "var-link"]
        );
        drop(l);
        std::fs::remove_dir_all(&d).unwrap();
        assert!(
            top_level(&d, &roots).is_err(),
            "an unlistable / is an error"
        );
    }

    fn id(p: &Path) -> (u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    /// A writable root swapped for (or aliasing) a warden directory after the policy was
    /// checked: refused by the plan's lock on the inode it recorded, and by the open that
    /// binds it (no symlink followed, the recorded inode only).
    #[test]
    fn a_root_swapped_after_the_checks_is_never_bound() {
        let d = std::env::temp_dir().join(format!("warden-planswap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let d = {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::canonicalize(&d).unwrap()
        };
        let (home, ws) = (d.join("home"), d.join("ws"));
        let state = home.join(".local/state/warden");
        let out = ws.join("out");
        for p in [&state, &out] {
            std::fs::create_dir_all(p).unwrap();
        }
        let policy = Policy::parse(
            &format!("[files]\nwrite = [\"{}\"]\n", out.display()),
            "test",
        )
        .unwrap();
        let mut f = crate::probe_fast();
        f.user_namespaces = true;
        let plan = build(PlanInput {
            no_link_walk: Vec::new(),
            policy: &policy,
            workspace: ws.clone(),
            home: home.clone(),
            command: vec!["true".into()],
            session_id: "t".into(),
            features: &f,
            extra_env: Vec::new(),
            extra_read: Vec::new(),
        });
        assert_eq!(plan.root_id(&out), Some(id(&out)));
        assert!(plan
            .clone()
            .lock_within_writable(std::slice::from_ref(&state))
            .is_ok());
        // Swapped in before the plan recorded it: the recorded inode is the state dir's.
        let mut swapped = plan.clone();
        for (p, i) in swapped.root_ids.iter_mut() {
            if *p == out {
                *i = id(&state);
            }
        }
        assert_eq!(
            swapped
                .lock_within_writable(std::slice::from_ref(&state))
                .err(),
            Some((out.clone(), state.clone()))
        );
        // Swapped after: the bind's open refuses a symlink there, and another directory.
        assert!(crate::sys::open_root_checked(&out, plan.root_id(&out)).is_ok());
        std::fs::rename(&out, ws.join("out.old")).unwrap();
        std::os::unix::fs::symlink(&state, &out).unwrap();
        assert!(crate::sys::open_root_checked(&out, plan.root_id(&out)).is_err());
        std::fs::remove_file(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        let e = crate::sys::open_root_checked(&out, plan.root_id(&out)).unwrap_err();
        assert!(
            e.to_string().contains("not the directory the plan checked"),
            "{e}"
        );
        // The guard and the placeholders open roots the same way (a swap there made the
        // guard lock a decoy while the real workspace stayed open: attack review 51).
        assert!(crate::fsat::open_root_as(&out, plan.root_id(&out)).is_err());
        assert!(crate::fsat::open_root_as(&ws, plan.root_id(&ws)).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
