//! Observations and the scorecard: a Markdown table (cases x systems, totals per class) and
//! JSON with every observation, version and exact invocation.

use crate::case::{Case, CLASSES};
use crate::system::System;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Blocked,
    Escaped,
    NotExpressible,
    Skipped,
    Error,
}

/// One case run against one system.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub case: String,
    pub class: String,
    pub system: String,
    pub verdict: Verdict,
    /// The errno the action's output names, for blocked cases.
    pub errno: Option<String>,
    pub detail: String,
    /// The exact argv that ran the action.
    pub invocation: Vec<String>,
    /// How the system's top process ended (`exit:N`, `signal:N`, `timeout`).
    pub action_status: String,
    pub millis: u64,
    /// The last bytes of the action's output (fake secrets only).
    pub output_tail: String,
}

impl Observation {
    pub fn new(case: &Case, sys: &System) -> Observation {
        Observation {
            case: case.id.clone(),
            class: case.class.clone(),
            system: sys.name.clone(),
            verdict: Verdict::Error,
            errno: None,
            detail: String::new(),
            invocation: vec![],
            action_status: String::new(),
            millis: 0,
            output_tail: String::new(),
        }
    }

    pub fn cell(&self) -> String {
        let short = |s: &str| {
            let s = s.replace('|', "/").replace('\n', " ");
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(60).collect::<String>())
            } else {
                s
            }
        };
        match self.verdict {
            Verdict::Blocked => match &self.errno {
                Some(e) => format!("BLOCKED ({e})"),
                None => "BLOCKED".into(),
            },
            Verdict::Escaped => "**ESCAPED**".into(),
            Verdict::NotExpressible => "not expressible".into(),
            Verdict::Skipped => "skipped".into(),
            Verdict::Error => format!("error: {}", short(&self.detail)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    pub name: String,
    pub available: bool,
    pub version: String,
    pub invocation: String,
    pub skipped: Option<String>,
    /// Median start-up of `true` inside the system, milliseconds.
    pub startup_median_ms: Option<f64>,
    /// Cost of one spawn (`/bin/true`) inside the system, microseconds (start-up excluded).
    pub spawn_us: Option<f64>,
    pub startup_error: Option<String>,
}

impl SystemInfo {
    pub fn of(s: &System) -> SystemInfo {
        SystemInfo {
            name: s.name.clone(),
            available: s.runnable(),
            version: s.version.clone(),
            invocation: s.invocation.clone(),
            skipped: match &s.kind {
                crate::system::Kind::Absent(w) => Some(w.clone()),
                _ => None,
            },
            startup_median_ms: None,
            spawn_us: None,
            startup_error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseInfo {
    pub id: String,
    pub class: String,
    pub description: String,
    pub file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: String,
    pub date_unix: u64,
    pub startup_runs: usize,
    pub systems: Vec<SystemInfo>,
    pub cases: Vec<CaseInfo>,
    pub observations: Vec<Observation>,
}

impl Report {
    fn obs(&self, case: &str, sys: &str) -> Option<&Observation> {
        self.observations
            .iter()
            .find(|o| o.case == case && o.system == sys)
    }

    /// (escaped, blocked, not expressible, skipped, error) for a class ("" = all) and system.
    pub fn totals(&self, class: &str, sys: &str) -> [usize; 5] {
        let mut t = [0; 5];
        for o in self
            .observations
            .iter()
            .filter(|o| o.system == sys && (class.is_empty() || o.class == class))
        {
            t[match o.verdict {
                Verdict::Escaped => 0,
                Verdict::Blocked => 1,
                Verdict::NotExpressible => 2,
                Verdict::Skipped => 3,
                Verdict::Error => 4,
            }] += 1;
        }
        t
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let names: Vec<&str> = self.systems.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(m, "## Systems\n");
        let _ = writeln!(
            m,
            "| system | version | start-up of `true` (median of {}) | per spawn, loop of {} `/bin/true` (median of 3) | invocation |",
            self.startup_runs,
            crate::run::SPAWN_LOOP
        );
        let _ = writeln!(m, "|---|---|---|---|---|");
        for s in &self.systems {
            let st = match (&s.skipped, s.startup_median_ms, &s.startup_error) {
                (Some(w), _, _) => format!("skipped: {w}"),
                (_, Some(ms), _) => format!("{ms:.1} ms"),
                (_, _, Some(e)) => format!("error: {}", e.replace('|', "/")),
                _ => "-".into(),
            };
            let spawn = s
                .spawn_us
                .map(|u| format!("{u:.0} µs"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | `{}` |",
                s.name,
                s.version.replace('|', "/"),
                st,
                spawn,
                s.invocation.replace('|', "/").replace('`', "'")
            );
        }
        let _ = writeln!(
            m,
            "\n## Totals per class (escaped / blocked / not expressible / skipped / error)\n"
        );
        let _ = writeln!(m, "| class | cases | {} |", names.join(" | "));
        let _ = writeln!(m, "|---|---|{}", "---|".repeat(names.len()));
        let mut classes: Vec<&str> = CLASSES.to_vec();
        classes.push("");
        for c in classes {
            let n = self
                .cases
                .iter()
                .filter(|x| c.is_empty() || x.class == c)
                .count();
            if n == 0 {
                continue;
            }
            let cells: Vec<String> = names
                .iter()
                .map(|s| {
                    let t = self.totals(c, s);
                    format!("{} / {} / {} / {} / {}", t[0], t[1], t[2], t[3], t[4])
                })
                .collect();
            let label = if c.is_empty() { "**all**" } else { c };
            let _ = writeln!(m, "| {label} | {n} | {} |", cells.join(" | "));
        }
        let _ = writeln!(m, "\n## Cases\n");
        let _ = writeln!(m, "| case | class | {} |", names.join(" | "));
        let _ = writeln!(m, "|---|---|{}", "---|".repeat(names.len()));
        for c in &self.cases {
            let cells: Vec<String> = names
                .iter()
                .map(|s| {
                    self.obs(&c.id, s)
                        .map(|o| o.cell())
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            let _ = writeln!(m, "| `{}` | {} | {} |", c.id, c.class, cells.join(" | "));
        }
        let _ = writeln!(m, "\n## What each case does\n");
        for c in &self.cases {
            let _ = writeln!(
                m,
                "- `{}` ({}): {}",
                c.id,
                c.file,
                c.description.replace('\n', " ")
            );
        }
        m
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Groups observations by system name (for callers that judge a run, e.g. CI).
pub fn by_system(r: &Report) -> BTreeMap<&str, Vec<&Observation>> {
    let mut m: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
    for o in &r.observations {
        m.entry(o.system.as_str()).or_default().push(o);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let case = |id: &str, class: &str| CaseInfo {
            id: id.into(),
            class: class.into(),
            description: "d".into(),
            file: format!("cases/{class}/{id}.toml"),
        };
        let obs =
            |case: &str, class: &str, system: &str, verdict, errno: Option<&str>| Observation {
                case: case.into(),
                class: class.into(),
                system: system.into(),
                verdict,
                errno: errno.map(String::from),
                detail: "setup | failed\nbadly".into(),
                invocation: vec![],
                action_status: "exit:0".into(),
                millis: 1,
                output_tail: String::new(),
            };
        Report {
            host: "h".into(),
            date_unix: 0,
            startup_runs: 20,
            systems: vec![
                SystemInfo {
                    name: "none".into(),
                    available: true,
                    version: "-".into(),
                    invocation: "sh -c".into(),
                    skipped: None,
                    startup_median_ms: Some(1.25),
                    spawn_us: Some(800.0),
                    startup_error: None,
                },
                SystemInfo {
                    name: "srt".into(),
                    available: false,
                    version: "-".into(),
                    invocation: "srt {cmd}".into(),
                    skipped: Some("not installed".into()),
                    startup_median_ms: None,
                    spawn_us: None,
                    startup_error: None,
                },
            ],
            cases: vec![case("exec-a", "exec"), case("net-b", "network")],
            observations: vec![
                obs("exec-a", "exec", "none", Verdict::Escaped, None),
                obs("exec-a", "exec", "srt", Verdict::Skipped, None),
                obs("net-b", "network", "none", Verdict::Blocked, Some("EPERM")),
                obs("net-b", "network", "srt", Verdict::Error, None),
            ],
        }
    }

    #[test]
    fn markdown_has_rows_columns_totals_and_startup() {
        let m = report().markdown();
        assert!(m.contains("| case | class | none | srt |"), "{m}");
        assert!(
            m.contains("| `exec-a` | exec | **ESCAPED** | skipped |"),
            "{m}"
        );
        assert!(
            m.contains("| `net-b` | network | BLOCKED (EPERM) | error: setup / failed badly |"),
            "{m}"
        );
        assert!(
            m.contains("| exec | 1 | 1 / 0 / 0 / 0 / 0 | 0 / 0 / 0 / 1 / 0 |"),
            "{m}"
        );
        assert!(
            m.contains("| **all** | 2 | 1 / 1 / 0 / 0 / 0 | 0 / 0 / 0 / 1 / 1 |"),
            "{m}"
        );
        assert!(m.contains("1.2 ms") || m.contains("1.3 ms"), "{m}");
        assert!(m.contains("skipped: not installed"), "{m}");
        assert!(m.contains("| 800 µs |"), "{m}");
    }

    #[test]
    fn json_has_every_observation() {
        let r = report();
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["observations"].as_array().unwrap().len(), 4);
        assert_eq!(v["observations"][0]["verdict"], "escaped");
        assert_eq!(v["observations"][2]["errno"], "EPERM");
        assert_eq!(v["systems"][1]["skipped"], "not installed");
        assert_eq!(by_system(&r)["none"].len(), 2);
    }
}
