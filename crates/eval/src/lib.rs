//! `warden eval`: an open evasion benchmark that runs a corpus of evasion cases against warden
//! and the sandboxes people use (bubblewrap, codex, srt, nono, fapolicyd, user templates) and
//! prints a scorecard.
//!
//! This crate owns the case format ([`case`]), how each system is detected and invoked
//! ([`system`]), running a case with setup/action/check and deadlines ([`run`]), and the
//! Markdown/JSON report ([`report`]). The corpus lives in `eval/cases/<class>/<id>.toml` and is
//! embedded in the binary at build time; `--cases-dir` runs another corpus.
//!
//! A case's check runs on the host after the action and observes effects only (a marker, a
//! host file, a line a listener received, a process gone, a secret in the output), never the
//! action's exit code. Setup and checks only touch the case's scratch dir, its fake `$HOME`,
//! and processes and listeners the setup started. Errors are typed per module:
//! [`case::CaseError`], [`system::SystemError`], [`run::MeasureError`].

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod case;
pub mod report;
pub mod run;
pub mod system;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use case::{Case, CaseError};
pub use report::{Observation, Report, Verdict};

/// The corpus built into this binary.
pub fn embedded_cases() -> Result<Vec<Case>, CaseError> {
    case::parse_all(embedded::CASES.iter().map(|(p, t)| (p.to_string(), *t)))
}

/// A callback run after each observation.
pub type Progress = Box<dyn Fn(&Observation)>;

/// Options for one benchmark run.
pub struct Options {
    pub systems: Vec<system::System>,
    pub cases: Vec<Case>,
    pub startup_runs: usize,
    pub keep: bool,
    /// Called after each observation (progress on stderr).
    pub progress: Option<Progress>,
}

/// Runs every case against every system and measures start-up.
pub fn run(opts: Options) -> std::io::Result<Report> {
    let runner = run::Runner::new(opts.keep)?;
    let mut systems: Vec<report::SystemInfo> =
        opts.systems.iter().map(report::SystemInfo::of).collect();
    for (info, sys) in systems.iter_mut().zip(&opts.systems) {
        if sys.runnable() && opts.startup_runs > 0 {
            match runner.startup(sys, opts.startup_runs) {
                Ok(ms) => {
                    info.startup_median_ms = Some(ms);
                    match runner.spawn_loop(sys, 3) {
                        Ok(us) => info.spawn_us = Some(us),
                        Err(e) => info.startup_error = Some(e.to_string()),
                    }
                }
                Err(e) => info.startup_error = Some(e.to_string()),
            }
        }
    }
    let mut observations = Vec::new();
    for c in &opts.cases {
        for s in &opts.systems {
            let o = runner.run(c, s);
            if let Some(p) = &opts.progress {
                p(&o);
            }
            observations.push(o);
        }
    }
    runner.finish();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| {
            format!(
                "Linux {} ({} CPUs)",
                r.trim(),
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            )
        })
        .unwrap_or_default();
    Ok(Report {
        host,
        date_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        startup_runs: opts.startup_runs,
        systems,
        cases: opts
            .cases
            .iter()
            .map(|c| report::CaseInfo {
                id: c.id.clone(),
                class: c.class.clone(),
                description: c.description.clone(),
                file: c.file.clone(),
            })
            .collect(),
        observations,
    })
}
