//! `warden eval`: parses the flags and hands the run to `warden-eval`.

use crate::cli::EvalArgs;
use crate::cmd::fail;
use crate::exit;
use warden_eval::{system, Verdict};

pub fn eval(a: EvalArgs) -> anyhow::Result<i32> {
    let mut cases = match &a.cases_dir {
        Some(d) => warden_eval::case::load_dir(d),
        None => warden_eval::embedded_cases(),
    }
    .map_err(|e| fail(exit::USAGE, e))?;
    if let Some(f) = &a.cases {
        let pats: Vec<&str> = f
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        cases.retain(|c| pats.iter().any(|p| c.id.contains(p) || c.class == *p));
    }
    if a.list {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for c in &cases {
            let line = format!(
                "{:<32} {:<12} {}",
                c.id,
                c.class,
                c.description.replace('\n', " ")
            );
            if writeln!(out, "{line}").is_err() {
                break; // a closed pipe (`| head`) is not an error
            }
        }
        return Ok(exit::OK);
    }
    if cases.is_empty() {
        return Err(fail(exit::USAGE, "no case matches --cases"));
    }
    let me = std::env::current_exe().map_err(|e| fail(exit::INTERNAL, format!("own path: {e}")))?;
    let mut systems = Vec::new();
    for spec in &a.against {
        // A template holds one system (and may contain commas); a plain list is split.
        let specs: Vec<&str> = if spec.contains('=') {
            vec![spec.as_str()]
        } else {
            spec.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        };
        for s in specs {
            let sys = system::resolve(s, &me).map_err(|e| fail(exit::USAGE, e))?;
            if systems.iter().any(|x: &system::System| x.name == sys.name) {
                return Err(fail(
                    exit::USAGE,
                    format!("system `{}` given twice", sys.name),
                ));
            }
            systems.push(sys);
        }
    }
    for s in &systems {
        if let system::Kind::Absent(why) = &s.kind {
            eprintln!("warden eval: {}: skipped ({why})", s.name);
        }
    }
    let total = cases.len() * systems.len();
    let done = std::cell::Cell::new(0usize);
    let report = warden_eval::run(warden_eval::Options {
        systems,
        cases,
        startup_runs: a.startup_runs,
        keep: a.keep,
        progress: Some(Box::new(move |o| {
            done.set(done.get() + 1);
            if matches!(o.verdict, Verdict::Error) {
                eprintln!(
                    "warden eval: [{}/{total}] {} under {}: {}",
                    done.get(),
                    o.case,
                    o.system,
                    o.cell()
                );
            }
        })),
    })
    .map_err(|e| fail(exit::INTERNAL, format!("scratch dir: {e}")))?;
    let md = format!(
        "# warden eval\n\nHost: {}. Cells: BLOCKED (errno the action saw) / ESCAPED / not expressible / skipped / error.\n\n{}",
        report.host,
        report.markdown()
    );
    let json = report.json();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join("eval.md"), &md))
            .and_then(|_| std::fs::write(dir.join("eval.json"), &json))
            .map_err(|e| fail(exit::INTERNAL, format!("{}: {e}", dir.display())))?;
    }
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(if a.json {
        json.as_bytes()
    } else {
        md.as_bytes()
    });
    Ok(exit::OK)
}
