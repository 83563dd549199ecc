//! One session's filtered state files: the copy made before launch, and the merge-back at
//! exit (see the crate doc).

use crate::filter::{self, parse_state, Change, StateError, MAX_STATE_BYTES};
use crate::fsat::{Dir, FileRead};
use crate::held::{self, host_parent, HeldFile, HeldRecord, RealPlace};
use crate::{FileSpec, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

struct Filtered {
    spec: &'static FileSpec,
    /// Where the agent sees the file (bind target).
    target: PathBuf,
    /// The copy's file name in the session's copies directory.
    copy_name: String,
    /// Snapshot of the host file at start (empty when absent).
    start: Map<String, Value>,
    /// The host file existed at start.
    existed: bool,
    /// Why the session's changes cannot be written back (decided at start), if so.
    no_writeback: Option<String>,
    /// Where the file really is when `$HOME` names its directory through a symlink.
    real: Option<RealPlace>,
}

const META: &str = "session.json";

/// Written next to the copies at start, so that a later run can merge a session whose
/// supervisor was killed ([`recover_orphans`]).
#[derive(Serialize, Deserialize)]
struct Meta {
    pid: u32,
    /// The supervisor's start time (`warden_sys::procfs::start_time`): a pid reused by
    /// another process does not keep the session's copies from their merge. 0: unknown.
    #[serde(default)]
    started: u64,
    files: Vec<MetaFile>,
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    rel: String,
    existed: bool,
    start: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    real: Option<RealPlace>,
}

/// Why a host file must not be replaced now (another live session's agent can write its
/// directory, or that session locks it), `None` when it may; the caller holds what keeps it
/// so while the file is written (warden-sandbox's `placeholder::quiet`).
pub type Busy<'a> = &'a dyn Fn(&Path) -> Option<String>;

/// Where the filtered file `rel` is on the host: beneath its recorded real place, or `$HOME`.
fn host_path(home: &Path, rel: &str, real: Option<&RealPlace>) -> PathBuf {
    match real {
        Some(r) => Path::new(&r.root).join(&r.rel),
        None => home.join(rel),
    }
}

/// Merges the copies of sessions whose supervisor is gone (killed before its exit-time
/// merge, or one that ended while another session could write its files), as their own
/// exit would have: safe keys written back, the rest held under their session id. A
/// session whose files are [`Busy`] stays for a later merge. Returns one message per
/// session merged.
pub fn recover_orphans(state: &Path, home: &Path, busy: Busy<'_>) -> Vec<String> {
    let root = state.join("agentstate");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut msgs = Vec::new();
    for e in rd.flatten() {
        let Some(sid) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if held::check_session_id(&sid).is_err() {
            continue;
        }
        let copies = root.join(&sid);
        let Ok(dir) = Dir::open(&copies, &copies.display().to_string()) else {
            continue;
        };
        let Ok(Some(f)) = dir.read_file(META, MAX_STATE_BYTES) else {
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<Meta>(&f.bytes) else {
            continue;
        };
        if warden_sys::procfs::running(meta.pid as i32, meta.started) {
            continue;
        }
        if meta
            .files
            .iter()
            .any(|m| busy(&host_path(home, &m.rel, m.real.as_ref())).is_some())
        {
            continue;
        }
        let Ok(home_dir) = Dir::open(home, "~") else {
            continue;
        };
        let files = meta
            .files
            .into_iter()
            .filter_map(|m| {
                let spec = crate::spec_of(&m.rel)?;
                Some(Filtered {
                    spec,
                    target: home.join(spec.rel),
                    copy_name: spec.rel.replace('/', "-"),
                    start: m.start,
                    existed: m.existed,
                    no_writeback: None,
                    real: m.real,
                })
            })
            .collect();
        let _ = dir.remove_file(META);
        let orphan = StateSession {
            session: sid.clone(),
            home: home.into(),
            state: state.into(),
            copies,
            home_id: (home_dir.dev, home_dir.ino),
            files,
            warnings: Vec::new(),
        };
        let r = orphan.finish(busy);
        let mut m = format!(
            "merged the agent state of session {sid}, whose supervisor was killed before its exit or ended while another session could write its files"
        );
        for l in r.render(&sid).lines() {
            m.push_str("\n  ");
            m.push_str(l);
        }
        msgs.push(m);
    }
    msgs
}

/// The filtered state files of one `warden run` session.
pub struct StateSession {
    session: String,
    home: PathBuf,
    state: PathBuf,
    /// `state/agentstate/<session>`: holds the copies (bind sources).
    copies: PathBuf,
    home_id: (u64, u64),
    files: Vec<Filtered>,
    /// Warnings from the start (printed by the caller before launch).
    pub warnings: Vec<String>,
}

/// What happened at exit, for the terminal (and the session log).
#[derive(Debug, Default)]
pub struct Report {
    /// One line per file: what was written back.
    pub lines: Vec<String>,
    /// Changes held for a human, and where they are stored.
    pub held: Vec<(String, Change)>,
    pub held_file: Option<PathBuf>,
    /// Failures: nothing of that file was written back.
    pub errors: Vec<String>,
}

fn shown(rel: &str) -> String {
    format!("~/{rel}")
}

/// Reads `rel` beneath `home` (or at its real place): the file if present. A missing parent
/// directory counts as a missing file.
fn read_rel(
    home: &Dir,
    rel: &str,
    real: Option<&RealPlace>,
) -> Result<Option<FileRead>, StateError> {
    let Some((dir, name)) = host_parent(home, rel, real)? else {
        return Ok(None);
    };
    dir.read_file(name, MAX_STATE_BYTES)
}

/// Where the supervisor finds a file the agent sees at a path under `$HOME`, when a writable
/// root the plan bound is named through a symlink there: (the real root, its recorded
/// device and inode, the rest of the path). See `warden_sandbox::plan::Plan::relocate`.
pub type Locate<'a> = &'a dyn Fn(&Path) -> Option<(PathBuf, (u64, u64), PathBuf)>;

impl StateSession {
    /// Snapshots the agent's filtered files and writes their copies. Returns None when the
    /// agent has no filtered file. An unusable host file (a symlink, not JSON, too large)
    /// does not stop the run: the session gets an empty copy and nothing is written back.
    pub fn start(
        agent: &str,
        home: &Path,
        state: &Path,
        session: &str,
        locate: Locate<'_>,
    ) -> Result<Option<StateSession>, StateError> {
        let specs = crate::filtered_files(agent);
        if specs.is_empty() {
            return Ok(None);
        }
        held::check_session_id(session)?;
        let home_dir = Dir::open(home, "~")?;
        let copies = state.join("agentstate").join(session);
        std::fs::create_dir_all(&copies)
            .map_err(|e| StateError::io(copies.display().to_string(), e))?;
        let copy_dir = Dir::open(&copies, &copies.display().to_string())?;
        let mut s = StateSession {
            session: session.into(),
            home: home.into(),
            state: state.into(),
            copies: copies.clone(),
            home_id: (home_dir.dev, home_dir.ino),
            files: Vec::new(),
            warnings: Vec::new(),
        };
        let mut meta = Meta {
            pid: std::process::id(),
            started: warden_sys::procfs::start_time(warden_sys::procfs::Proc::Me).unwrap_or(0),
            files: Vec::new(),
        };
        for spec in specs {
            let what = shown(spec.rel);
            let real = locate(&home.join(spec.rel)).and_then(|(root, (dev, ino), rest)| {
                Some(RealPlace {
                    root: root.to_str()?.to_string(),
                    dev,
                    ino,
                    rel: rest.to_str()?.to_string(),
                })
            });
            let read = read_rel(&home_dir, spec.rel, real.as_ref());
            let existed = matches!(&read, Ok(Some(_)));
            let (start, bytes, no_writeback) = match read {
                Ok(None) => (Map::new(), b"{}\n".to_vec(), None),
                Ok(Some(f)) => match parse_state(&what, &f.bytes) {
                    Ok(m) => (m, f.bytes, None),
                    Err(e) => (Map::new(), b"{}\n".to_vec(), Some(e.to_string())),
                },
                Err(e) => (Map::new(), b"{}\n".to_vec(), Some(e.to_string())),
            };
            if let Some(why) = &no_writeback {
                s.warnings.push(format!(
                    "{why}; the session starts from an empty {what} and nothing of it is written back"
                ));
            }
            let copy_name = spec.rel.replace('/', "-");
            copy_dir.create_scratch(&copy_name, &bytes)?;
            if no_writeback.is_none() {
                meta.files.push(MetaFile {
                    rel: spec.rel.into(),
                    existed,
                    start: start.clone(),
                    real: real.clone(),
                });
            }
            s.files.push(Filtered {
                spec,
                target: home.join(spec.rel),
                copy_name,
                start,
                existed,
                no_writeback,
                real,
            });
        }
        // What a later run needs to merge this session if its supervisor is killed.
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| StateError::Shape {
            what: META.into(),
            msg: e.to_string(),
        })?;
        copy_dir.create_scratch(META, &meta_bytes)?;
        Ok(Some(s))
    }

    /// (target, copy) pairs: bind each copy read-write at its target in the sandbox.
    pub fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        self.files
            .iter()
            .map(|f| (f.target.clone(), self.copies.join(&f.copy_name)))
            .collect()
    }

    /// The session's agent never ran (a warm spare that ended unclaimed): nothing to merge
    /// or hold; its copies go, and no host file is touched.
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.copies);
    }

    /// After the sandbox is gone: merge safe changes into the host files, hold the rest.
    /// While another session could write one of the files' directories ([`Busy`]), nothing
    /// is written: the copies stay for [`recover_orphans`] (the next session's start or end
    /// once no other session can write there).
    pub fn finish(self, busy: Busy<'_>) -> Report {
        let mut r = Report::default();
        let blocked: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.no_writeback.is_none())
            .filter_map(|f| {
                busy(&host_path(&self.home, f.spec.rel, f.real.as_ref()))
                    .map(|why| format!("{}: {why}", shown(f.spec.rel)))
            })
            .collect();
        if !blocked.is_empty() {
            r.errors.push(format!(
                "agent state not written back yet ({}); the session's copies are kept at {} and merged by the first warden session to start or end once no other one can write there",
                blocked.join("; "),
                self.copies.display()
            ));
            r.log();
            return r;
        }
        // This is the session's merge: a copy kept below for a human is not an orphan for a
        // later run to merge again.
        if let Ok(d) = Dir::open(&self.copies, &self.copies.display().to_string()) {
            let _ = d.remove_file(META);
        }
        let mut held_files = Vec::new();
        let mut keep_copies = false;
        for f in &self.files {
            match self.finish_one(f) {
                Ok((line, held)) => {
                    r.lines.push(line);
                    if !held.is_empty() {
                        r.held
                            .extend(held.iter().map(|c| (shown(f.spec.rel), c.clone())));
                        held_files.push(HeldFile {
                            file: f.spec.rel.to_string(),
                            changes: held,
                            real: f.real.clone(),
                        });
                    }
                }
                Err(e) => {
                    keep_copies = true;
                    r.errors.push(format!(
                        "{}: nothing written back ({e}); the session's copy is kept at {}",
                        shown(f.spec.rel),
                        self.copies.join(&f.copy_name).display()
                    ));
                }
            }
        }
        if !held_files.is_empty() {
            let rec = HeldRecord {
                version: 1,
                session: self.session.clone(),
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                home: self.home.display().to_string(),
                home_dev: self.home_id.0,
                home_ino: self.home_id.1,
                files: held_files,
            };
            match held::store(&self.state, &rec) {
                Ok(p) => r.held_file = Some(p),
                Err(e) => {
                    keep_copies = true;
                    r.errors
                        .push(format!("held changes could not be stored ({e})"));
                }
            }
        }
        if !keep_copies {
            let _ = std::fs::remove_dir_all(&self.copies);
        }
        r.log();
        r
    }

    fn finish_one(&self, f: &Filtered) -> Result<(String, Vec<Change>), StateError> {
        let what = shown(f.spec.rel);
        let copy_dir = Dir::open(&self.copies, &self.copies.display().to_string())?;
        let copy = copy_dir
            .read_file(&f.copy_name, MAX_STATE_BYTES)?
            .ok_or_else(|| StateError::Refused {
                what: format!("the session's copy of {what}"),
                msg: "it is gone".into(),
            })?;
        let end = parse_state(&format!("the session's {what}"), &copy.bytes)?;
        if let Some(why) = &f.no_writeback {
            return Err(StateError::Refused {
                what,
                msg: why.clone(),
            });
        }
        let home_dir = Dir::open(&self.home, "~")?;
        if (home_dir.dev, home_dir.ino) != self.home_id {
            return Err(StateError::Refused {
                what,
                msg: "the home directory is not the one the session started with".into(),
            });
        }
        let Some((dir, name)) = host_parent(&home_dir, f.spec.rel, f.real.as_ref())? else {
            return Err(StateError::Refused {
                what,
                msg: "its directory is gone".into(),
            });
        };
        // Claude Code's own lock, so a `claude` running on the host meanwhile is not lost
        // (not needed when the session changed nothing: the host file is then left as is).
        let _lock = (f.spec.kind == Kind::ClaudeState && end != f.start)
            .then(|| dir.lock(name))
            .flatten();
        let host = dir.read_file(name, MAX_STATE_BYTES)?;
        let host_map = match &host {
            Some(h) => parse_state(&what, &h.bytes)?,
            None => Map::new(),
        };
        let m = filter::merge(f.spec.kind, &f.start, &end, &host_map);
        let line = if !f.existed && !f.spec.always_create && m.merged.is_empty() {
            // Nothing to keep in a file that did not exist: remove the empty one the
            // sandbox's mount point left.
            if host.is_some() && host_map.is_empty() {
                dir.remove_file(name)?;
            }
            format!("{what}: nothing to keep")
        } else if host.is_none() || m.merged != host_map {
            let mut bytes = serde_json::to_vec_pretty(&Value::Object(m.merged)).map_err(|e| {
                StateError::Shape {
                    what: what.clone(),
                    msg: format!("cannot serialise: {e}"),
                }
            })?;
            bytes.push(b'\n');
            dir.replace_file(name, &self.session, &bytes, host.as_ref())?;
            format!(
                "{what}: {} safe change(s) written back{}",
                m.applied.len(),
                if host.is_none() {
                    " (file created)"
                } else {
                    ""
                }
            )
        } else {
            format!("{what}: unchanged")
        };
        Ok((line, m.held))
    }
}

impl Report {
    /// Records each held change and each failure in the session log.
    fn log(&self) {
        use warden_event::{Decision, Layer, Verdict};
        const WHO: &str = "warden run (state filter)";
        for (file, c) in &self.held {
            Decision::new(
                Layer::Sandbox,
                WHO,
                format!("{file}: {}", held::describe(c, false)),
                "agentstate.held",
                Verdict::Ask,
                format!("{}; held for `warden held apply`", c.reason),
            )
            .emit();
        }
        for e in &self.errors {
            Decision::new(
                Layer::Sandbox,
                WHO,
                "agent state write-back",
                "agentstate.writeback",
                Verdict::Deny,
                e.clone(),
            )
            .emit();
        }
    }

    /// The exit summary for the terminal: one line per file, then each held change and how
    /// to review, apply or drop them.
    pub fn render(&self, session: &str) -> String {
        let mut s = String::new();
        for e in &self.errors {
            s.push_str(&format!("warden: state filter: {e}\n"));
        }
        if self.held.is_empty() {
            return s;
        }
        s.push_str(&format!(
            "warden: {} change(s) to executable agent configuration HELD for your review (not applied):\n",
            self.held.len()
        ));
        for (file, c) in &self.held {
            s.push_str(&format!("  {file}: {}\n", held::describe(c, false)));
        }
        s.push_str(&format!(
            "  review: warden held show {session}   apply: warden held apply {session}   discard: warden held drop {session}\n"
        ));
        s
    }
}
