//! The exec policy as a set of hashes: `[exec]` rules (`sha256:<hex>`, program names, file
//! paths, `index:<db>`) resolved to SHA-256 identities, and the decision on one identity.
//!
//! Program names expand to the hashes of every file with that name in PATH, the system
//! directories and the toolchain directories (and of what their symlinks point to), so a
//! copy, rename, hard link or `/proc/self/root` path of `curl` carries the same identity as
//! `/usr/bin/curl`. [`ExecRules::refresh`] re-resolves names while sessions run (a Node
//! version switch or a new install adds copies). Deny always wins; in allowlist mode an
//! identity must be allowed by a rule or the trust index.
//!
//! This module resolves names and paths; it does not hash. The content identity of a file
//! comes from an [`Identity`], which the exec guard implements (`warden_execguard::cache::
//! Cache`: SHA-256 through a persistent cache, and its SQLite trust index); the session and
//! the CLI pass it in, so the tool-call gate depends on the policy crate only.

use crate::exec::{ExecAction, ExecMode};
use crate::{Policy, RuleError};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A SHA-256 content identity.
pub type Hash = [u8; 32];

/// What a program's content identity is (implemented by the exec guard).
pub trait Identity: Send + Sync {
    /// The identity of the file at `path` (symlinks followed).
    fn of_path(&self, path: &Path) -> std::io::Result<Hash>;
    /// The identity of an open file (what is hashed is what was opened).
    fn of_file(&self, fd: BorrowedFd<'_>) -> std::io::Result<Hash>;
    /// Every identity in the trust index `db` (`index:<db>` rules).
    fn index(&self, db: &Path) -> Result<Vec<Hash>, String>;
    /// [`Identity::of_path`] and the size of the file hashed (both of one open file).
    fn of_path_sized(&self, path: &Path) -> std::io::Result<(Hash, u64)> {
        use std::os::fd::AsFd;
        let f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        Ok((self.of_file(f.as_fd())?, size))
    }
}

/// Lowercase hex of a hash.
pub fn hex(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in h {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A hash from 64 hex digits (optionally prefixed `sha256:`).
pub fn parse_hex(s: &str) -> Option<Hash> {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    // Digits only: `from_str_radix` would also take a sign (`+f`).
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Directories searched for program names, besides PATH.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/libexec",
    "/usr/lib/node_modules/npm/bin",
    "/usr/local/lib/node_modules/npm/bin",
    "/snap/bin",
];

/// Toolchain directories under `$HOME` (and version managers' trees, one level deep).
pub const TOOLCHAIN_DIRS: &[&str] = &[
    "~/.cargo/bin",
    "~/.local/bin",
    "~/.npm-global/bin",
    "~/.volta/bin",
    "~/.bun/bin",
    "~/.deno/bin",
    "~/.pyenv/shims",
    "~/go/bin",
    "~/.nvm/versions/node/*/bin",
    "~/.pyenv/versions/*/bin",
];

/// Programs whose output files are trusted for exec in allowlist mode until anything else
/// writes them (the linker writes executables; compilers write objects and build scripts).
pub const BUILD_TOOLS: &[&str] = &[
    "ld", "ld.bfd", "ld.gold", "ld.lld", "lld", "mold", "collect2", "cc", "gcc", "g++", "c++",
    "clang", "clang++", "rustc", "go", "as",
];

/// Programs that may make anonymous memory executable in allowlist mode: Node.js, which the
/// npm installs of Claude Code, Codex's launcher and Gemini CLI run on, resolved like
/// program names through places the agent cannot write; `exec.jit` adds more. Kept short:
/// a JIT with a foreign-function interface that calls raw pointers (Bun's `bun:ffi`, Deno's,
/// LuaJIT's, PyPy's, .NET's, Java's FFM) can run any code it writes, so each is the user's
/// choice. Claude Code's native build is Bun and honours `BUN_OPTIONS=--preload x.js` (attack
/// review 102 ran native code through `bun:ffi` that way): not built in.
pub const JIT_PROGRAMS: &[&str] = &["node", "nodejs"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `exec.deny:curl`, `exec.allow:sha256:…`, `index:<db>`, `exec.mode:allowlist`, `default`.
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Source {
    Name(String),
    Path(PathBuf),
    Hash(Hash),
    Index(PathBuf),
}

#[derive(Clone)]
pub struct ExecRules {
    pub mode: ExecMode,
    pub action: ExecAction,
    pub allow_memfd: bool,
    deny: HashMap<Hash, String>,
    /// The sizes of the denied files, `None` when a denial's size is unknown (a `sha256:` or
    /// `index:` rule). A file of another size cannot have denied content (see
    /// [`ExecRules::must_hash`]).
    deny_sizes: Option<std::collections::HashSet<u64>>,
    /// The files the denials by name and path resolved to.
    deny_files: Vec<DeniedFile>,
    /// A denial by path that cannot be opened is noted, not an error (the gate inside a
    /// session, [`ExecRules::build_in_session`]).
    unseen_ok: bool,
    allow: HashMap<Hash, String>,
    /// Programs that may make anonymous memory executable (allowlist mode only): the
    /// built-in [`JIT_PROGRAMS`] and `exec.jit`.
    jit: HashMap<Hash, String>,
    sources: Vec<(Source, bool)>,
    jit_sources: Vec<Source>,
    /// Directories the agent can write (the session's writable roots, [`ExecRules::distrust`]):
    /// a program name never resolves to a grant (`allow`, `jit`, build tools) through them.
    untrusted: Vec<PathBuf>,
    /// Set by [`ExecRules::distrust`] before the agent runs: later resolutions
    /// ([`ExecRules::refresh`]) renew the denials only, and the grants stay as resolved then.
    grants_fixed: bool,
    home: PathBuf,
    /// Hashes of named files and paths come through this (a cache hit costs no hashing).
    cache: Arc<dyn Identity>,
    /// Human-readable notes from resolution (unknown names, what each name resolved to).
    pub notes: Vec<Note>,
}

impl std::fmt::Debug for ExecRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecRules")
            .field("mode", &self.mode)
            .field("action", &self.action)
            .field("allow_memfd", &self.allow_memfd)
            .field("deny", &self.deny.len())
            .field("allow", &self.allow.len())
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// Checks one `[exec]` rule of `key` (`exec.allow`, `exec.deny`) as [`ExecRules::compile`]
/// will read it: a `sha256:` rule must be a whole hash and an `index:` rule must name a file
/// (names and paths are resolved when the rules are compiled).
pub fn check_entry(key: &str, rule: &str) -> Result<(), RuleError> {
    if rule.trim().is_empty() {
        return Err(RuleError::EmptyRule {
            key: key.to_string(),
        });
    }
    if rule.starts_with("sha256:") && parse_hex(rule).is_none() {
        return Err(RuleError::BadHash {
            key: key.to_string(),
            rule: rule.to_string(),
        });
    }
    if rule
        .strip_prefix("index:")
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(RuleError::NoIndexFile {
            key: key.to_string(),
            rule: rule.to_string(),
        });
    }
    Ok(())
}

fn classify(rule: &str) -> Source {
    if let Some(p) = rule.strip_prefix("index:") {
        Source::Index(PathBuf::from(p))
    } else if let Some(h) = parse_hex(rule).filter(|_| rule.starts_with("sha256:")) {
        Source::Hash(h)
    } else if rule.contains('/') {
        Source::Path(PathBuf::from(rule))
    } else {
        Source::Name(rule.to_string())
    }
}

fn expand_home(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(p),
    }
}

/// Every directory searched for a program name.
pub fn search_dirs(home: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
    for t in TOOLCHAIN_DIRS {
        let p = expand_home(t, home);
        let s = p.to_string_lossy();
        if let Some((pre, post)) = s.split_once("/*/") {
            if let Ok(rd) = std::fs::read_dir(pre) {
                for e in rd.flatten() {
                    dirs.push(e.path().join(post));
                }
            }
        } else {
            dirs.push(p);
        }
    }
    // A few dozen short paths: comparing the bytes of each with those kept costs less than
    // hashing (`Path`'s own equality walks components).
    let mut out: Vec<PathBuf> = Vec::with_capacity(dirs.len());
    for d in dirs {
        if d.is_absolute() && !out.iter().any(|o| o.as_os_str() == d.as_os_str()) {
            out.push(d);
        }
    }
    out
}

/// Files named `name` in the search directories, with their symlink targets.
pub fn resolve_name(name: &str, home: &Path) -> Vec<PathBuf> {
    SearchDirs::list(home).all(name)
}

/// The directories of [`search_dirs`], listed once for every name looked up in them (a
/// policy's names, a command line's programs), with each directory's own symlink-free path
/// worked out once, the first time a file is found in it: a plain file's real path is then
/// that path and its name, with no `readlink` per component per name.
pub struct SearchDirs {
    dirs: Vec<PathBuf>,
    real: Vec<std::cell::OnceCell<Option<PathBuf>>>,
}

impl SearchDirs {
    pub fn list(home: &Path) -> SearchDirs {
        SearchDirs::of(search_dirs(home))
    }

    pub(crate) fn of(dirs: Vec<PathBuf>) -> SearchDirs {
        let real = dirs.iter().map(|_| std::cell::OnceCell::new()).collect();
        SearchDirs { dirs, real }
    }

    /// The real path (symlinks followed) of the regular file named `name` in directory `i`.
    /// `name` has no `/` (a program name).
    fn file(&self, i: usize, name: &str) -> Option<PathBuf> {
        let c = self.dirs[i].join(name);
        let m = std::fs::symlink_metadata(&c).ok()?;
        if m.file_type().is_symlink() {
            return std::fs::canonicalize(&c).ok().filter(|p| p.is_file());
        }
        if !m.is_file() {
            return None;
        }
        let dir = self.real[i]
            .get_or_init(|| std::fs::canonicalize(&self.dirs[i]).ok())
            .as_ref()?;
        Some(dir.join(name))
    }

    /// The first file named `name`, as the shell finds a program.
    pub fn first(&self, name: &str) -> Option<PathBuf> {
        (0..self.dirs.len()).find_map(|i| self.file(i, name))
    }

    /// Every file named `name` with the path it was found as (a real path found twice is
    /// listed twice: one place may be trusted where the other is not).
    pub fn all_spelled(&self, name: &str) -> Vec<(PathBuf, PathBuf)> {
        (0..self.dirs.len())
            .filter_map(|i| {
                self.file(i, name)
                    .map(|real| (self.dirs[i].join(name), real))
            })
            .collect()
    }

    /// Every file named `name`, each real path once.
    pub fn all(&self, name: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for i in 0..self.dirs.len() {
            if let Some(real) = self.file(i, name) {
                if !out.contains(&real) {
                    out.push(real);
                }
            }
        }
        out
    }
}

/// One note from resolving the rules: what a name resolved to, or a warning (a name that
/// matches nothing, a file that cannot be hashed). Displayed and serialised as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Whether a human should see it without asking for detail.
    pub warning: bool,
    pub text: String,
}

impl Note {
    fn info(text: String) -> Note {
        Note {
            warning: false,
            text,
        }
    }

    fn warning(text: String) -> Note {
        Note {
            warning: true,
            text,
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// What one kind of rule (`exec.deny`, `exec.allow`, `exec.jit`) resolved to.
#[derive(Default)]
struct Found {
    hashes: HashMap<Hash, String>,
    /// The sizes of the files hashed.
    sizes: std::collections::HashSet<u64>,
    /// The files hashed.
    files: Vec<DeniedFile>,
    /// A rule gave a hash of unknown size (`sha256:`, `index:`).
    size_unknown: bool,
}

impl Found {
    fn add_file(&mut self, path: &Path, hash: Hash, size: u64, rule: String) {
        self.sizes.insert(size);
        if !self.files.iter().any(|f| f.path == path && f.hash == hash) {
            self.files.push(DeniedFile {
                path: path.to_path_buf(),
                hash,
                size,
                rule,
            });
        }
    }
}

/// A file a denial by name or path resolved to, as it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedFile {
    /// The real path for a name, the path as written for a path rule.
    pub path: PathBuf,
    pub hash: Hash,
    pub size: u64,
    /// The rule, as [`ExecRules::decide`] names it (`exec.deny:curl`).
    pub rule: String,
}

impl ExecRules {
    /// Resolves the policy, identifying files through `identity`. Errors (an unreadable
    /// index, an unreadable named file) are fatal: `warden run` does not start without its
    /// exec guard.
    ///
    /// Returns the message as a `String` for `warden-execguard`'s `rules::from_policy`,
    /// which passes it on unchanged; [`ExecRules::build`] is the typed form.
    pub fn compile(
        p: &Policy,
        home: &Path,
        identity: Arc<dyn Identity>,
    ) -> Result<ExecRules, String> {
        Self::build(p, home, identity).map_err(|e| e.to_string())
    }

    /// [`ExecRules::compile`] with the typed error.
    pub fn build(
        p: &Policy,
        home: &Path,
        identity: Arc<dyn Identity>,
    ) -> Result<ExecRules, RuleError> {
        Self::build_in(p, home, identity, &SearchDirs::list(home))
    }

    /// [`ExecRules::build_in`] for the gate inside a session: a denial by path the sandbox
    /// does not show is a note, not an error (attack review 130: one such rule made the
    /// gate deny every command, while the exec guard, which resolved it on the host, ran).
    pub fn build_in_session(
        p: &Policy,
        home: &Path,
        identity: Arc<dyn Identity>,
        dirs: &SearchDirs,
    ) -> Result<ExecRules, RuleError> {
        Self::resolved(Self::unresolved(p, home, identity, true), dirs)
    }

    /// [`ExecRules::build`] looking names up in `dirs` (the hook's listing for the command's
    /// programs too). [`ExecRules::refresh`] lists them again.
    pub fn build_in(
        p: &Policy,
        home: &Path,
        identity: Arc<dyn Identity>,
        dirs: &SearchDirs,
    ) -> Result<ExecRules, RuleError> {
        Self::resolved(Self::unresolved(p, home, identity, false), dirs)
    }

    fn resolved(mut r: ExecRules, dirs: &SearchDirs) -> Result<ExecRules, RuleError> {
        r.resolve(dirs)?;
        Ok(r)
    }

    /// The rules of `p`, not resolved yet.
    fn unresolved(
        p: &Policy,
        home: &Path,
        identity: Arc<dyn Identity>,
        unseen_ok: bool,
    ) -> ExecRules {
        ExecRules {
            mode: p.exec.mode.unwrap_or(ExecMode::Denylist),
            action: p.exec.action.unwrap_or(ExecAction::Enforce),
            allow_memfd: p.exec.allow_memfd.unwrap_or(false),
            deny: HashMap::new(),
            deny_sizes: Some(Default::default()),
            deny_files: Vec::new(),
            unseen_ok,
            allow: HashMap::new(),
            jit: HashMap::new(),
            untrusted: Vec::new(),
            grants_fixed: false,
            // Resolved in allowlist mode only (denylist mode does not decide anonymous code).
            jit_sources: if p.exec.mode == Some(ExecMode::Allowlist) {
                JIT_PROGRAMS
                    .iter()
                    .map(|n| Source::Name((*n).to_string()))
                    .chain(p.exec.jit.iter().map(|j| classify(j)))
                    .collect()
            } else {
                Vec::new()
            },
            sources: p
                .exec
                .deny
                .iter()
                .map(|d| (classify(d), true))
                .chain(p.exec.allow.iter().map(|a| (classify(a), false)))
                .collect(),
            home: home.to_path_buf(),
            cache: identity,
            notes: Vec::new(),
        }
    }

    fn resolve(&mut self, dirs: &SearchDirs) -> Result<(), RuleError> {
        let mut deny = Found::default();
        let mut allow = Found::default();
        let mut jit = Found::default();
        let mut notes = Vec::new();
        let fixed = self.grants_fixed;
        for (src, is_deny) in &self.sources {
            if fixed && !*is_deny {
                continue;
            }
            let (key, target) = if *is_deny {
                ("exec.deny", &mut deny)
            } else {
                ("exec.allow", &mut allow)
            };
            self.resolve_source(src, key, target, &mut notes, dirs, true)?;
        }
        if !fixed {
            for (i, src) in self.jit_sources.iter().enumerate() {
                // A built-in name that is not installed is no news.
                let quiet = i < JIT_PROGRAMS.len();
                self.resolve_source(src, "exec.jit", &mut jit, &mut notes, dirs, !quiet)?;
            }
            self.allow = allow.hashes;
            self.jit = jit.hashes;
        }
        self.deny = deny.hashes;
        self.deny_sizes = (!deny.size_unknown).then_some(deny.sizes);
        self.deny_files = deny.files;
        self.notes = notes;
        Ok(())
    }

    /// The session's writable roots (host paths): from now on a program name resolves to a
    /// grant (`exec.allow`, `exec.jit`, the build tools) only through directories outside
    /// them, and [`ExecRules::refresh`] renews only the denials. Attack review 102: with a
    /// workspace `.venv/bin` on `PATH`, a link `.venv/bin/node -> python3` made inside was
    /// resolved at the next refresh as the JIT `node`, and python ran any code it wrote.
    /// Call before the agent runs.
    pub fn distrust(&mut self, roots: Vec<PathBuf>) -> Result<(), RuleError> {
        self.untrusted = roots;
        self.grants_fixed = false;
        let dirs = SearchDirs::list(&self.home);
        self.resolve(&dirs)?;
        self.grants_fixed = true;
        Ok(())
    }

    /// Whether a grant may be resolved to `real` found as `spelled` (a file in a search
    /// directory): neither lies in a directory the agent can write.
    fn trusted_place(&self, spelled: &Path, real: &Path) -> bool {
        !self
            .untrusted
            .iter()
            .any(|r| spelled.starts_with(r) || real.starts_with(r))
    }

    fn resolve_source(
        &self,
        src: &Source,
        key: &str,
        target: &mut Found,
        notes: &mut Vec<Note>,
        dirs: &SearchDirs,
        warn_missing: bool,
    ) -> Result<(), RuleError> {
        {
            match src {
                Source::Hash(h) => {
                    target.hashes.insert(*h, format!("{key}:sha256:{}", hex(h)));
                    target.size_unknown = true;
                }
                Source::Path(p) => {
                    let (h, size) = match self.cache.of_path_sized(p) {
                        Ok(v) => v,
                        // Inside a session: a path the sandbox does not show cannot be run
                        // or read there (its content, when the sandbox shows it, comes
                        // pinned from `warden run`, see `ExecRules::pin`).
                        Err(err)
                            if self.unseen_ok
                                && matches!(
                                    err.kind(),
                                    std::io::ErrorKind::NotFound
                                        | std::io::ErrorKind::PermissionDenied
                                ) =>
                        {
                            notes.push(Note::warning(format!(
                                "warning: {key} {}: not in the sandbox's view ({err})",
                                p.display()
                            )));
                            return Ok(());
                        }
                        Err(err) => {
                            return Err(RuleError::Hash {
                                key: key.to_string(),
                                path: p.clone(),
                                err,
                            })
                        }
                    };
                    let rule = format!("{key}:{}", p.display());
                    target.hashes.insert(h, rule.clone());
                    target.add_file(p, h, size, rule);
                }
                Source::Name(n) => {
                    let grant = key != "exec.deny";
                    let mut seen = std::collections::HashSet::new();
                    let files: Vec<PathBuf> = dirs
                        .all_spelled(n)
                        .into_iter()
                        .filter_map(|(spelled, real)| {
                            if grant && !self.trusted_place(&spelled, &real) {
                                notes.push(Note::warning(format!(
                                    "warning: {key} `{n}`: {} is left out: the agent can write there",
                                    spelled.display()
                                )));
                                return None;
                            }
                            Some(real)
                        })
                        .filter(|real| seen.insert(real.clone()))
                        .collect();
                    if files.is_empty() && warn_missing {
                        notes.push(Note::warning(format!(
                            "warning: {key} names `{n}`, but no file of that name exists in PATH, {} or the toolchain directories; the rule matches nothing until one appears",
                            SYSTEM_DIRS.join(", ")
                        )));
                    }
                    for f in files {
                        match self.cache.of_path_sized(&f) {
                            Ok((h, size)) => {
                                target.add_file(&f, h, size, format!("{key}:{n}"));
                                notes.push(Note::info(format!(
                                    "{key} `{n}` → {} sha256:{}",
                                    f.display(),
                                    hex(&h)
                                )));
                                target.hashes.insert(h, format!("{key}:{n}"));
                            }
                            Err(e) => notes.push(Note::warning(format!(
                                "warning: {key} `{n}`: cannot hash {}: {e}",
                                f.display()
                            ))),
                        }
                    }
                }
                Source::Index(db) => {
                    let hashes = self.cache.index(db).map_err(|msg| RuleError::Index {
                        prefix: format!("{key}: "),
                        db: db.clone(),
                        msg,
                    })?;
                    for h in hashes {
                        target
                            .hashes
                            .entry(h)
                            .or_insert_with(|| format!("{key}:index:{}", db.display()));
                    }
                    target.size_unknown = true;
                }
            }
        }
        Ok(())
    }

    /// Allowlist mode: the rule that lets the program `h` make anonymous (or written-to)
    /// memory executable, `None` when nothing does. Always `Some` in denylist mode, which
    /// does not decide such memory.
    pub fn anonymous_code(&self, h: Option<&Hash>) -> Option<String> {
        if self.mode != ExecMode::Allowlist {
            return Some("exec.mode:denylist".into());
        }
        let h = h?;
        if self.deny.contains_key(h) {
            return None;
        }
        self.jit.get(h).cloned()
    }

    /// Adds every hash of a trust index to the allow set (allowlist mode).
    pub fn add_index(&mut self, db: &Path) -> Result<usize, RuleError> {
        let hashes = self.cache.index(db).map_err(|msg| RuleError::Index {
            prefix: String::new(),
            db: db.to_path_buf(),
            msg,
        })?;
        let n = hashes.len();
        self.sources.push((Source::Index(db.to_path_buf()), false));
        for h in hashes {
            self.allow
                .entry(h)
                .or_insert_with(|| format!("index:{}", db.display()));
        }
        Ok(n)
    }

    /// Re-resolves names (new copies of a denied program appear while sessions run). The
    /// denials only grow: content denied once stays denied. Attack review 130: a denial
    /// resolving to a file the agent can write was re-resolved to whatever the file held at
    /// the next refresh, so a copy of the denied content saved before the file was
    /// overwritten ran 30 s later.
    pub fn refresh(&mut self) -> Result<(), RuleError> {
        let dirs = SearchDirs::list(&self.home);
        let deny = self.deny.clone();
        let sizes = self.deny_sizes.clone();
        let files = self.deny_files.clone();
        self.resolve(&dirs)?;
        for (h, rule) in deny {
            self.deny.entry(h).or_insert(rule);
        }
        self.deny_sizes = match (sizes, self.deny_sizes.take()) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        for f in files {
            if !self.deny_files.contains(&f) {
                self.deny_files.push(f);
            }
        }
        Ok(())
    }

    /// Adds denials resolved elsewhere, each with the size of its file: inside a session,
    /// those `warden run` resolved at its start (`warden_policy::session::Pinned`), so that
    /// the gate denies what the exec guard denies even after the file a denial names has
    /// changed, or when the sandbox does not show where it was found.
    pub fn pin(&mut self, denied: impl IntoIterator<Item = (Hash, u64, String)>) {
        for (h, size, rule) in denied {
            self.deny.entry(h).or_insert(rule);
            if let Some(s) = self.deny_sizes.as_mut() {
                s.insert(size);
            }
        }
    }

    /// Every (hash, denied, rule) of the resolved policy; a hash both denied and allowed is
    /// listed as denied only (deny wins).
    pub fn rule_hashes(&self) -> Vec<(Hash, bool, String)> {
        let mut v: Vec<(Hash, bool, String)> = self
            .deny
            .iter()
            .map(|(h, r)| (*h, true, r.clone()))
            .collect();
        v.extend(
            self.allow
                .iter()
                .filter(|(h, _)| !self.deny.contains_key(*h))
                .map(|(h, r)| (*h, false, r.clone())),
        );
        v
    }

    /// Hashes of the build tools whose output is trusted in allowlist mode (transitive
    /// trust): compilers and linkers, resolved like program names.
    pub fn build_tool_hashes(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let dirs = SearchDirs::list(&self.home);
        for n in BUILD_TOOLS {
            for (spelled, f) in dirs.all_spelled(n) {
                if !self.trusted_place(&spelled, &f) {
                    continue;
                }
                if let Ok(h) = self.cache.of_path(&f) {
                    if !self.deny.contains_key(&h) && !out.contains(&h) {
                        out.push(h);
                    }
                }
            }
        }
        out
    }

    pub fn deny_count(&self) -> usize {
        self.deny.len()
    }

    pub fn decide(&self, h: &Hash) -> Verdict {
        if let Some(rule) = self.deny.get(h) {
            return Verdict {
                allowed: false,
                rule: rule.clone(),
                reason: format!(
                    "its content (sha256:{}) is denied by `{rule}`",
                    &hex(h)[..16]
                ),
            };
        }
        match self.mode {
            ExecMode::Denylist => self.not_denied(),
            ExecMode::Allowlist => match self.allow.get(h) {
                Some(rule) => Verdict {
                    allowed: true,
                    rule: rule.clone(),
                    reason: "allowed content".into(),
                },
                None => Verdict {
                    allowed: false,
                    rule: "exec.mode:allowlist".into(),
                    reason: format!(
                        "its content (sha256:{}) is not in any allow rule or trust index",
                        &hex(h)[..16]
                    ),
                },
            },
        }
    }

    /// Whether a file of `size` bytes must be hashed for its verdict. Not in denylist mode
    /// when no denied file has that size: equal content has equal size, so it is not denied
    /// whatever it holds ([`ExecRules::decide`] allows it). Always in allowlist mode, and
    /// when a denial's size is unknown (a `sha256:` or `index:` rule).
    pub fn must_hash(&self, size: u64) -> bool {
        match self.mode {
            ExecMode::Allowlist => true,
            ExecMode::Denylist => self.deny_sizes.as_ref().is_none_or(|s| s.contains(&size)),
        }
    }

    /// The files the denials by name and path resolved to (what a session tells its gate
    /// about, see `warden_policy::session::KnownFile` and `Pinned`).
    pub fn denied_files(&self) -> &[DeniedFile] {
        &self.deny_files
    }

    /// The verdict on content that is not denied, in denylist mode (see
    /// [`ExecRules::must_hash`]).
    pub fn not_denied(&self) -> Verdict {
        Verdict {
            allowed: true,
            rule: "exec.mode:denylist".into(),
            reason: "not denied".into(),
        }
    }

    pub fn decide_file(&self, path: &Path) -> std::io::Result<(Hash, Verdict)> {
        let h = self.cache.of_path(path)?;
        Ok((h, self.decide(&h)))
    }

    /// The identity this rule set hashes through.
    pub fn identity(&self) -> &Arc<dyn Identity> {
        &self.cache
    }
}

/// How a human allows what was denied (appended to messages).
pub fn how_to_allow(v: &Verdict) -> &'static str {
    if v.rule.starts_with("exec.deny") {
        "to allow it, remove the rule with `warden exec rm <rule>` from outside the sandbox"
    } else if v.rule == "exec.read_implies_exec" {
        "32-bit programs cannot run in the sandbox; a human runs it outside warden"
    } else if v.rule == "exec.writable_code" {
        "to allow it, a human moves it where no agent can write, or runs it outside warden"
    } else if v.rule == "exec.hash_limit" {
        "to allow it, a human installs it where no agent can write (e.g. root-owned under /usr/local), where it is hashed whole once and cached, or runs it outside warden"
    } else {
        "to allow it, run `warden exec allow <file>` or `warden index` from outside the sandbox"
    }
}
