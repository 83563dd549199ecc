//! # warden-proxy
//!
//! Owns network egress for sandboxed agents: the host rules of `[network]` (domains with
//! wildcards and ports, named sets, deny wins; [`rules`], compiled in `warden-policy`), the HTTP forward / `CONNECT` / SOCKS5
//! proxy that resolves names itself, refuses private and metadata addresses and explains
//! refusals in words ([`server`]), the address classes and spellings it refuses
//! ([`addr`]: IANA special-purpose ranges, embedded IPv4, `inet_aton` forms), the bridge that
//! carries connections from the sandbox's loopback to it ([`bridge`]), and the local model
//! gateway that forwards allowed host loopback ports into the sandbox ([`gateway`]). There is
//! no admin API. Setup and `warden explain --connect` errors are a [`ProxyError`].

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod bridge;
pub mod gateway;
pub mod server;
/// The host rules and address classes are compiled in the policy crate (the gate shares them).
pub use warden_policy::{addr, netrules as rules};

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use warden_policy::Policy;

/// Errors of the proxy's setup and of `warden explain --connect`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A `[network]` entry that does not compile (names the key and the entry).
    #[error(transparent)]
    Rules(#[from] warden_policy::RuleError),
    #[error("`{0}` is not a port")]
    Port(String),
    #[error("`{0}`: expected `[address]:port`")]
    Target(String),
    /// A listener the bridge needs cannot be bound (`what`: "proxy bridge", "loopback gateway").
    #[error("{what}: bind {addr}: {err}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        err: std::io::Error,
    },
}

/// The port the bridge listens on inside the sandbox's (private) network namespace.
pub const SANDBOX_PORT: u16 = 3128;

#[derive(Default, Clone)]
pub struct ProxyOptions {
    /// Test mode: resolve names from this hosts file. Set only from the supervisor's own
    /// command line, never from the agent's environment.
    pub hosts_file: Option<PathBuf>,
    /// The bridge runs in the sandbox's network namespace and also listens on the host
    /// loopback ports the policy allows (see [`gateway`]).
    pub loopback_gateway: bool,
    /// Where `[network] ask` hosts wait for a human; without it they are refused.
    pub approver: Option<Arc<dyn server::Approver>>,
}

impl std::fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("hosts_file", &self.hosts_file)
            .field("loopback_gateway", &self.loopback_gateway)
            .field("approver", &self.approver.is_some())
            .finish()
    }
}

/// Connections from the sandbox (proxy and loopback gateway) served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// One live connection; frees its place on drop.
/// One of the agent's [`MAX_CONNECTIONS`]: a client connection, or a CONNECT tunnel, which
/// outlives the connection it was asked on (hyper ends that at the upgrade).
pub(crate) struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    pub(crate) fn take(live: &Arc<std::sync::atomic::AtomicUsize>) -> Slot {
        live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Slot(live.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A running proxy; it lives as long as the process (its threads are detached).
pub struct ProxyHandle {
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the proxy: a tokio runtime on its own thread serving every connection whose fd
/// arrives on `control` (the supervisor's end of the bridge socketpair). Call after the
/// sandbox is forked (no threads before fork).
pub fn start(policy: &Policy, opts: ProxyOptions, control: OwnedFd) -> anyhow::Result<ProxyHandle> {
    let rules = rules::NetRules::from_section(&policy.network)
        .map_err(|e| anyhow::anyhow!("network policy: {e}"))?;
    let gateway = if opts.loopback_gateway {
        rules.loopback_ports()
    } else {
        Vec::new()
    };
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ctx = Arc::new(server::Ctx {
        rules,
        approver: opts.approver,
        hosts_file: opts.hosts_file,
        gateway,
        live: live.clone(),
    });
    let refused = Arc::new(gateway::RefusedLog::default());
    let mut over_cap_logged: Option<std::time::Instant> = None;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("warden-proxy".into())
        .spawn(move || {
            let handle = rt.handle().clone();
            // Receive fds on a plain thread; serve them on the runtime.
            std::thread::spawn(move || {
                while let Some(msg) = bridge::recv(control.as_fd()) {
                    let fd = match msg {
                        bridge::Msg::Conn(fd) => fd,
                        bridge::Msg::Refused(port) => {
                            refused.report(port, &ctx);
                            continue;
                        }
                    };
                    let std_stream = std::net::TcpStream::from(fd);
                    // The agent cannot hold more than MAX_CONNECTIONS of the supervisor's
                    // descriptors: past the cap a connection is closed at once.
                    if live.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
                        if over_cap_logged.is_none_or(|t| t.elapsed().as_secs() >= 10) {
                            over_cap_logged = Some(std::time::Instant::now());
                            warden_event::Decision::new(
                                warden_event::Layer::Proxy,
                                "agent",
                                "new connection",
                                "network.max_connections",
                                warden_event::Verdict::Deny,
                                format!("the agent has {MAX_CONNECTIONS} connections open through warden (the limit); new ones are closed until some end"),
                            )
                            .emit();
                        }
                        continue;
                    }
                    if std_stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let slot = Slot::take(&live);
                    // Which listener: the proxy's, or a loopback-gateway port.
                    let local = std_stream.local_addr().map(|a| a.port()).unwrap_or(0);
                    let forward = gateway::target(&ctx, local);
                    let ctx = ctx.clone();
                    handle.spawn(async move {
                        let _slot = slot;
                        if let Ok(s) = tokio::net::TcpStream::from_std(std_stream) {
                            match forward {
                                Some(t) => gateway::forward(s, local, t, ctx).await,
                                None => server::serve(s, ctx).await,
                            }
                        }
                    });
                }
            });
            rt.block_on(std::future::pending::<()>());
        })?;
    Ok(ProxyHandle { thread })
}

/// Host loopback ports the policy forwards into the sandbox (bind them inside, see
/// [`bridge::bind`]); the proxy's own port is never one of them.
pub fn loopback_gateway_ports(policy: &Policy) -> Vec<u16> {
    rules::NetRules::from_section(&policy.network)
        .map(|r| r.loopback_ports())
        .unwrap_or_default()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|&p| p != SANDBOX_PORT)
        .collect()
}

/// Without a network namespace the agent shares the host's loopback and Landlock admits only
/// the proxy's port: a note when the policy names host loopback ports nonetheless.
pub fn gateway_unavailable_note(policy: &Policy) -> Option<String> {
    let ports = loopback_gateway_ports(policy);
    (!ports.is_empty()).then(|| {
        format!(
            "network.allow names host loopback port(s) {}: without a network namespace they are not forwarded (Landlock admits only the proxy's port); clients reach them only through HTTP_PROXY",
            ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// Environment advertising the proxy inside the sandbox, upper and lower case.
pub fn proxy_env(port: u16) -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{port}");
    let socks = format!("socks5h://127.0.0.1:{port}");
    let mut v = Vec::new();
    for (k, val) in [
        ("HTTP_PROXY", http.as_str()),
        ("HTTPS_PROXY", http.as_str()),
        ("ALL_PROXY", socks.as_str()),
        ("NO_PROXY", "localhost,127.0.0.1,::1"),
    ] {
        v.push((k.to_string(), val.to_string()));
        v.push((k.to_ascii_lowercase(), val.to_string()));
    }
    v
}

/// `warden explain --connect HOST[:PORT]`: (allowed, rule, message).
pub fn explain(policy: &Policy, target: &str) -> Result<(bool, String, String), ProxyError> {
    let r = rules::NetRules::from_section(&policy.network)?;
    let port_of = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| ProxyError::Port(p.to_string()))
    };
    let (host, port) = match target.strip_prefix('[').and_then(|r| r.split_once(']')) {
        // `[v6]` or `[v6]:port`
        Some((h, rest)) => (
            format!("[{h}]"),
            match rest.strip_prefix(':') {
                Some(p) => port_of(p)?,
                None if rest.is_empty() => 443,
                None => return Err(ProxyError::Target(target.to_string())),
            },
        ),
        None => match target.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), port_of(p)?),
            _ => (target.to_string(), 443),
        },
    };
    let d = r.decide_host(&host, port);
    if d.ask {
        let msg = format!("connect {host}:{port}: asks a human (rule `{}`): inside `warden run` the connection waits for `warden approve` or Ctrl-] a/A/d on the warden run terminal; no answer within [approvals] timeout_secs denies", d.rule);
        return Ok((false, d.rule, msg));
    }
    let gateway = r.loopback_ports().iter().any(|(p, t)| {
        *p == port
            && (t.host() == host
                || host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|i| i.is_loopback()))
    });
    let msg = if d.allowed && gateway {
        format!("connect {host}:{port}: allowed by rule `{}`: inside `warden run`, port {port} of the sandbox's loopback is forwarded to the host's (each connection is logged)", d.rule)
    } else if d.allowed {
        format!("connect {host}:{port}: allowed by rule `{}` (private/metadata addresses stay refused unless a rule names the address)", d.rule)
    } else {
        format!("connect {host}:{port}: denied by rule `{}`: {}; to allow it, add it to [network] allow in ~/.config/warden/policy.toml", d.rule, d.reason)
    };
    Ok((d.allowed, d.rule, msg))
}
