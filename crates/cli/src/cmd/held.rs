//! `warden held`: review, apply or drop the changes to executable agent configuration that
//! the state filter (warden-agentstate) held at the end of a session. Refuses inside a
//! warden sandbox.

use super::{fail, home_dir, run::state_dir};
use crate::cli::HeldCmd;
use crate::exit;
use warden_agentstate::held;

pub fn held(c: HeldCmd) -> anyhow::Result<i32> {
    if let Some(why) = held::inside_sandbox() {
        return Err(fail(
            exit::DENIED,
            format!("warden held: refused: {why}; held changes are reviewed and applied by a human from their own shell, outside warden"),
        ));
    }
    let home = home_dir();
    let state = state_dir(&home);
    let err = |e: warden_agentstate::StateError| fail(exit::DENIED, e);
    match c {
        HeldCmd::List => {
            let all = held::list(&state).map_err(err)?;
            if all.is_empty() {
                println!("no held changes");
            }
            let mut text = String::new();
            for r in all {
                match r {
                    Ok(rec) => {
                        let n: usize = rec.files.iter().map(|f| f.changes.len()).sum();
                        text.push_str(&format!("{}  {n} change(s)\n", rec.session));
                        for f in &rec.files {
                            for ch in &f.changes {
                                text.push_str(&format!(
                                    "  ~/{}: {}\n",
                                    f.file,
                                    held::describe(ch, false)
                                ));
                            }
                        }
                    }
                    Err(e) => eprintln!("warden held: {e}"),
                }
            }
            // `warden held list | head -1`: a closed pipe ends the listing, not a panic.
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(exit::OK)
        }
        HeldCmd::Show { session } => {
            let rec = held::load(&state, &session).map_err(err)?;
            println!("session {} (home {})", rec.session, rec.home);
            for f in &rec.files {
                for ch in &f.changes {
                    println!("~/{}: {}", f.file, held::describe(ch, true));
                    println!("    held because: {}", ch.reason);
                }
            }
            println!("apply: warden held apply {session}   discard: warden held drop {session}");
            Ok(exit::OK)
        }
        HeldCmd::Apply { session, force } => {
            // Under the sessions' lock, refused while another session could write there.
            let q = warden_sandbox::placeholder::quiet(
                &state.join("placeholders"),
                std::path::Path::new(""),
            );
            let done = held::apply(&state, &home, &session, force, &|p| q.busy(p)).map_err(err)?;
            for d in done {
                println!("applied {d}");
            }
            Ok(exit::OK)
        }
        HeldCmd::Drop { session } => {
            held::drop_held(&state, &session).map_err(err)?;
            println!("dropped the held changes of session {session}");
            Ok(exit::OK)
        }
    }
}
