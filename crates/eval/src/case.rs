//! The case format: one self-describing TOML file per evasion attempt.
//!
//! ```toml
//! id = "exec-copy"                     # must equal the file name without `.toml`
//! class = "exec"                       # exec, containment, persistence, network, resources, off-switch
//! description = "A copy of the denied program runs."
//! needs = ["python3"]                  # programs the case needs on the host (optional)
//! root = false                         # setup needs root (optional)
//! timeout = 10                         # seconds for the action (optional, 1..=60)
//! setup = "..."                        # host shell, cwd = scratch dir, before (optional)
//! action = "..."                       # shell INSIDE the system under test, cwd = workspace
//! check = "..."                        # host shell after: exit 0 = escaped, 1 = blocked
//! cleanup = "..."                      # host shell, always run at the end (optional)
//! tty = false                          # stdin is a pty, the controlling terminal (optional)
//! rule = "exec-deny"                   # the rule kind tested; peers without it: not expressible
//! [not_expressible]                    # systems that cannot express the rule (optional)
//! bwrap = "bubblewrap has no program policy"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The classes a case may belong to, in report order.
pub const CLASSES: &[&str] = &[
    "exec",
    "containment",
    "persistence",
    "network",
    "resources",
    "off-switch",
];

/// Rule kinds a case may declare with `rule = ...`.
pub const RULES: &[&str] = &["exec-deny"];

/// Why a case file was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaseError {
    #[error("{file}: not valid TOML for a case: {msg}")]
    Toml { file: String, msg: String },
    #[error("{file}: `{field}` {msg}")]
    Field {
        file: String,
        field: &'static str,
        msg: String,
    },
    #[error("{file}: id `{id}` does not match the file name `{stem}.toml`")]
    IdMismatch {
        file: String,
        id: String,
        stem: String,
    },
    #[error("{file}: {msg}")]
    Io { file: String, msg: String },
    #[error("{file}: duplicate case id `{id}` (also in {other})")]
    Duplicate {
        file: String,
        id: String,
        other: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: String,
    class: String,
    description: String,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    root: bool,
    timeout: Option<i64>,
    #[serde(default)]
    setup: String,
    action: String,
    check: String,
    #[serde(default)]
    cleanup: String,
    rule: Option<String>,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    not_expressible: BTreeMap<String, String>,
}

/// A validated case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Case {
    pub id: String,
    pub class: String,
    pub description: String,
    pub needs: Vec<String>,
    pub root: bool,
    pub timeout_secs: u64,
    pub setup: String,
    pub action: String,
    pub check: String,
    pub cleanup: String,
    /// The action's stdin is a pty that is its controlling terminal (the user's terminal);
    /// after the action, input queued on it is in `$SCRATCH/tty-input`.
    pub tty: bool,
    /// The kind of policy rule the case tests, when a peer may lack it (`exec-deny`).
    pub rule: Option<String>,
    /// System name -> why that system cannot express the rule this case tests.
    pub not_expressible: BTreeMap<String, String>,
    /// Where the case came from (a path relative to the corpus, or on disk).
    pub file: String,
}

/// Default action timeout, seconds.
pub const DEFAULT_TIMEOUT: u64 = 10;

/// Parses one case. `file` is its path (for errors and the id check).
pub fn parse(file: &str, text: &str) -> Result<Case, CaseError> {
    let f = || file.to_string();
    let raw: Raw = toml::from_str(text).map_err(|e| CaseError::Toml {
        file: f(),
        msg: e.to_string().trim().replace('\n', " "),
    })?;
    let field = |field: &'static str, msg: &str| CaseError::Field {
        file: f(),
        field,
        msg: msg.to_string(),
    };
    if raw.id.is_empty()
        || !raw
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(field(
            "id",
            "must be non-empty lowercase letters, digits and `-`",
        ));
    }
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem != raw.id {
        return Err(CaseError::IdMismatch {
            file: f(),
            id: raw.id,
            stem,
        });
    }
    if !CLASSES.contains(&raw.class.as_str()) {
        return Err(field(
            "class",
            &format!("is `{}`; expected one of {}", raw.class, CLASSES.join(", ")),
        ));
    }
    if raw.description.trim().is_empty() {
        return Err(field("description", "must not be empty"));
    }
    if raw.action.trim().is_empty() {
        return Err(field("action", "must not be empty"));
    }
    if raw.check.trim().is_empty() {
        return Err(field("check", "must not be empty"));
    }
    let timeout_secs = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) if (1..=60).contains(&t) => t as u64,
        Some(t) => return Err(field("timeout", &format!("is {t}; must be 1..=60 seconds"))),
    };
    for n in &raw.needs {
        if n.is_empty() || n.contains('/') || n.contains(char::is_whitespace) {
            return Err(field(
                "needs",
                &format!("entry `{n}` must be a program name"),
            ));
        }
    }
    if let Some(r) = &raw.rule {
        if !RULES.contains(&r.as_str()) {
            return Err(field(
                "rule",
                &format!("is `{r}`; expected one of {}", RULES.join(", ")),
            ));
        }
    }
    for (k, v) in &raw.not_expressible {
        if v.trim().is_empty() {
            return Err(field(
                "not_expressible",
                &format!("entry `{k}` needs a reason"),
            ));
        }
    }
    Ok(Case {
        id: raw.id,
        class: raw.class,
        description: raw.description.trim().to_string(),
        needs: raw.needs,
        root: raw.root,
        timeout_secs,
        setup: raw.setup,
        action: raw.action,
        check: raw.check,
        cleanup: raw.cleanup,
        rule: raw.rule,
        tty: raw.tty,
        not_expressible: raw.not_expressible,
        file: file.to_string(),
    })
}

/// Parses a set of (path, text) and rejects duplicate ids. Sorted by class order, then id.
pub fn parse_all<'a>(
    files: impl IntoIterator<Item = (String, &'a str)>,
) -> Result<Vec<Case>, CaseError> {
    let mut out: Vec<Case> = Vec::new();
    for (path, text) in files {
        let c = parse(&path, text)?;
        if let Some(o) = out.iter().find(|o| o.id == c.id) {
            return Err(CaseError::Duplicate {
                file: path,
                id: c.id,
                other: o.file.clone(),
            });
        }
        out.push(c);
    }
    out.sort_by_key(|c| {
        (
            CLASSES
                .iter()
                .position(|k| *k == c.class)
                .unwrap_or(usize::MAX),
            c.id.clone(),
        )
    });
    Ok(out)
}

/// Loads every `*.toml` under `dir` (recursively).
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, CaseError> {
    fn walk(d: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths).map_err(|e| CaseError::Io {
        file: dir.display().to_string(),
        msg: format!("cannot read the case directory: {e}"),
    })?;
    paths.sort();
    let mut texts = Vec::new();
    for p in paths {
        let t = std::fs::read_to_string(&p).map_err(|e| CaseError::Io {
            file: p.display().to_string(),
            msg: format!("cannot read: {e}"),
        })?;
        texts.push((p.display().to_string(), t));
    }
    parse_all(texts.iter().map(|(p, t)| (p.clone(), t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "exec-copy"
class = "exec"
description = "copy"
action = "cp a b"
check = "test -e x"
[not_expressible]
bwrap = "no program policy"
"#;

    #[test]
    fn parses_a_good_case() {
        let c = parse("cases/exec/exec-copy.toml", GOOD).unwrap();
        assert_eq!(c.id, "exec-copy");
        assert_eq!(c.timeout_secs, DEFAULT_TIMEOUT);
        assert_eq!(c.not_expressible["bwrap"], "no program policy");
    }

    fn err(file: &str, text: &str) -> String {
        parse(file, text).unwrap_err().to_string()
    }

    #[test]
    fn bad_files_give_precise_errors() {
        let f = "cases/exec/exec-copy.toml";
        assert!(err(f, "id = ").contains("not valid TOML"));
        assert!(err(f, "id = ").contains(f));
        let e = err(f, &GOOD.replace("class = \"exec\"", "class = \"nope\""));
        assert!(e.contains("`class` is `nope`; expected one of exec"), "{e}");
        let e = err("cases/exec/other.toml", GOOD);
        assert!(
            e.contains("does not match the file name `other.toml`"),
            "{e}"
        );
        let e = err(f, &GOOD.replace("check = \"test -e x\"", ""));
        assert!(e.contains("missing field `check`"), "{e}");
        let e = err(f, &GOOD.replace("id = ", "bogus = 1\nid = "));
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err(f, &GOOD.replace("action = ", "timeout = 0\naction = "));
        assert!(e.contains("`timeout` is 0; must be 1..=60"), "{e}");
        let e = err(f, &GOOD.replace("action = \"cp a b\"", "action = \"  \""));
        assert!(e.contains("`action` must not be empty"), "{e}");
        let e = err(f, &GOOD.replace("\"no program policy\"", "\"\""));
        assert!(
            e.contains("`not_expressible` entry `bwrap` needs a reason"),
            "{e}"
        );
        let e = err(
            f,
            &GOOD.replace("action = ", "needs = [\"/bin/x\"]\naction = "),
        );
        assert!(e.contains("`needs` entry `/bin/x`"), "{e}");
        let e = err(
            "cases/exec/Bad Id.toml",
            &GOOD.replace("exec-copy", "Bad Id"),
        );
        assert!(e.contains("`id` must be non-empty lowercase"), "{e}");
    }

    #[test]
    fn never_panics_on_garbage() {
        for t in [
            "",
            "\0\0",
            "[[[",
            "id = 1",
            "class = []",
            "x = \"\u{feff}\"",
        ] {
            assert!(parse("a.toml", t).is_err());
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let e = parse_all([
            ("a/exec-copy.toml".to_string(), GOOD),
            ("b/exec-copy.toml".to_string(), GOOD),
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("duplicate case id `exec-copy`"),
            "{e}"
        );
    }

    #[test]
    fn load_dir_reports_io_errors_and_loads_files() {
        let e = load_dir(Path::new("/nonexistent-warden-eval")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent-warden-eval: cannot read the case directory"),
            "{e}"
        );
        let d = std::env::temp_dir().join(format!("warden-eval-test-{}", std::process::id()));
        std::fs::create_dir_all(d.join("exec")).unwrap();
        std::fs::write(d.join("exec/exec-copy.toml"), GOOD).unwrap();
        std::fs::write(d.join("exec/notes.txt"), "ignored").unwrap();
        let cases = load_dir(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].id, "exec-copy");
    }

    #[test]
    fn the_embedded_corpus_parses() {
        let cases = crate::embedded_cases().unwrap();
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for c in &cases {
            assert!(
                c.file.starts_with(&format!("cases/{}/", c.class)),
                "{}",
                c.file
            );
        }
    }
}
