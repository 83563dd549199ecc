//! The CLI integration tests, one binary: each module is one area, sharing the
//! scratch-directory scaffold in `common`. Run one area with
//! `cargo test -p warden --test it <module>::`.

mod common;
mod e2e;

mod advisor;
mod agent_installs;
mod agentstate;
mod approvals;
mod audit;
mod channels;
mod claude_ask;
mod claude_e2e;
mod codex_e2e;
mod completeness;
mod exec_guard;
mod exec_identity;
mod gate_run;
mod gemini_e2e;
mod integrity;
mod limits;
mod network;
mod redteam;
mod risk;
mod sandbox;
mod warm;
mod why;
