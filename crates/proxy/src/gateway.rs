//! The local model gateway: host loopback ports the policy names (`127.0.0.1:4000`,
//! `localhost:11434`, `[::1]:8080`) are reachable from the sandbox's own loopback at the same
//! port. The bridge listens there inside the sandbox and hands each connection over; this
//! module decides it again (deny rules win), connects to the host's port and copies bytes,
//! logging one decision per connection. It also turns the bridge's refusal notices
//! (connections to a sandbox loopback port where nothing listens) into a logged hint.

use crate::rules::LoopbackTarget;
use crate::server::Ctx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use warden_event::{Decision, Layer, Verdict};

/// The gateway port a connection accepted on the sandbox's loopback is for.
pub fn target(ctx: &Ctx, local_port: u16) -> Option<LoopbackTarget> {
    ctx.gateway
        .iter()
        .find(|(p, _)| *p == local_port)
        .map(|(_, t)| *t)
}

/// Forwards one connection from the sandbox's loopback to the host's `port`.
pub async fn forward(mut inside: TcpStream, port: u16, t: LoopbackTarget, ctx: Arc<Ctx>) {
    let started = Instant::now();
    let host = t.host();
    let what = format!("TCP {host}:{port} (loopback gateway)");
    let d = ctx.rules.decide_host(&host, port);
    if !d.allowed {
        Decision::new(
            Layer::Proxy,
            "agent",
            &what,
            &d.rule,
            Verdict::Deny,
            &d.reason,
        )
        .emit();
        return;
    }
    let mut last = String::new();
    for a in t.addrs(port) {
        // (`loopback_ports` forwards no port an address deny rule names; checked again.)
        if let Some(rule) = ctx.rules.address_denied(&a.ip(), port) {
            Decision::new(
                Layer::Proxy,
                "agent",
                &what,
                rule,
                Verdict::Deny,
                format!("the host's {a} is denied by `{rule}`"),
            )
            .emit();
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(a)).await {
            Ok(Ok(mut up)) => {
                // Written when the connection is made (a connection still open when the
                // session ends is in the log), and again when it ends, with the bytes.
                Decision::new(
                    Layer::Proxy,
                    "agent",
                    &what,
                    &d.rule,
                    Verdict::Allow,
                    format!("forwarded from the sandbox's loopback to the host's {a}"),
                )
                .with("host", host.as_str())
                .with("port", port)
                .emit();
                let (a2b, b2a) = tokio::io::copy_bidirectional(&mut inside, &mut up)
                    .await
                    .unwrap_or((0, 0));
                Decision::new(
                    Layer::Proxy,
                    "agent",
                    &what,
                    &d.rule,
                    Verdict::Observe,
                    format!("connection to the host's {a} closed"),
                )
                .with("host", host.as_str())
                .with("port", port)
                .with("bytes_up", a2b)
                .with("bytes_down", b2a)
                .with("duration_ms", started.elapsed().as_millis() as u64)
                .emit();
                return;
            }
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: timed out"),
        }
    }
    Decision::new(
        Layer::Proxy,
        "agent",
        &what,
        &d.rule,
        Verdict::Deny,
        format!("allowed by `{}`, but nothing answers on the host ({last}); is the service running on the host?", d.rule),
    )
    .with("host", host.as_str())
    .with("port", port)
    .emit();
}

/// Reports connections refused on the sandbox's loopback: at most once per port every 10 s
/// and 30 a minute in all (a port scan from inside must not flood the session log).
#[derive(Default)]
pub struct RefusedLog {
    seen: Mutex<(HashMap<u16, Instant>, Option<Instant>, u32)>,
}

impl RefusedLog {
    pub fn report(&self, port: u16, ctx: &Ctx) {
        {
            let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let (seen, minute, count) = &mut *g;
            if seen.len() > 4096 {
                seen.clear();
            }
            let now = Instant::now();
            if seen
                .get(&port)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(10))
            {
                return;
            }
            if minute.is_none_or(|m| now.duration_since(m) >= Duration::from_secs(60)) {
                *minute = Some(now);
                *count = 0;
            }
            if *count >= 30 {
                return;
            }
            *count += 1;
            seen.insert(port, now);
        }
        let denied = !ctx.rules.decide_host("127.0.0.1", port).allowed;
        let hint = if denied {
            format!("a service on the host's 127.0.0.1:{port} is not reachable from the sandbox unless a human adds \"127.0.0.1:{port}\" (or \"localhost:{port}\") to [network] allow in ~/.config/warden/policy.toml; warden then forwards that port to the host's")
        } else {
            "the policy allows this port; start a new session for the forward to take effect"
                .to_string()
        };
        Decision::new(
            Layer::Proxy,
            "agent",
            format!("TCP port {port} of the sandbox's loopback"),
            "network.loopback",
            Verdict::Observe,
            format!("connection refused: nothing listens on port {port} of the sandbox's own loopback (the sandbox has a network of its own); {hint}"),
        )
        .with("port", port)
        .emit();
    }
}
