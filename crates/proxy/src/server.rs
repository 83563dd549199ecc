//! The proxy server: HTTP/1 forward proxying (absolute-form requests) and `CONNECT`
//! tunnels, on a tokio runtime of its own. Connections arrive as file descriptors from the
//! bridge inside the sandbox (see [`crate::bridge`]).
//!
//! For every connection: the host is decided by [`NetRules::decide_host`]; the name is
//! resolved *here* (the sandbox has no DNS); every resolved address is checked
//! ([`NetRules::address_ok`]: no loopback/private/link-local/CGNAT/metadata unless a rule
//! names the address; the classes are [`crate::addr`]'s, and any spelling of an address
//! (`0x7f.1`, `2130706433`, `[::ffff:7f00:1]`) is parsed as that address, never resolved)
//! and the proxy connects to the address it checked, never re-resolving,
//! so a name that rebinds to 127.0.0.1 is refused. Refusals are HTTP 403 with a plain-text
//! reason the agent can read.
//!
//! A host named by `[network] ask` waits for a human ([`Approver`]): only that connection
//! blocks (on the blocking pool), the human sees host:port and the resolved addresses,
//! and an allowed connection goes to exactly those addresses; a deny, a timeout or a
//! missing approval channel is a 403 saying it was denied by warden approval. A client that
//! gives up while it waits (its request future is dropped) withdraws the request.

use crate::rules::NetRules;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use warden_event::{Decision, Layer, Verdict};

/// The channel to a human for `[network] ask` hosts (warden-session's approval registry,
/// wired by `warden run`). [`Approver::ask`] blocks until a human answers or the deadline
/// passes; it runs on the runtime's blocking pool, so only that connection waits.
pub trait Approver: Send + Sync {
    /// `Ok(how)` when a human allowed the connection to `host:port` at `addrs` (exactly
    /// these addresses are then used), `Err(why)` otherwise (denied, timed out).
    /// `gone` is set when the client gave up (the connection's future was dropped): the
    /// request is then withdrawn.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        rule: &str,
        method: &str,
        gone: &std::sync::atomic::AtomicBool,
    ) -> Result<String, String>;
}

/// Sets its flag when dropped: a request future dropped while waiting for a human (the
/// client closed the connection) withdraws the request.
struct Withdraw(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

pub struct Ctx {
    pub rules: NetRules,
    /// Where `ask` hosts go; without one they are refused.
    pub approver: Option<Arc<dyn Approver>>,
    /// Test mode: resolve names from this hosts file (read on every lookup).
    pub hosts_file: Option<PathBuf>,
    /// Host loopback ports forwarded from the sandbox's loopback ([`crate::gateway`]).
    pub gateway: Vec<(u16, crate::rules::LoopbackTarget)>,
    /// The agent's open connections and tunnels, against [`crate::MAX_CONNECTIONS`].
    pub live: Arc<std::sync::atomic::AtomicUsize>,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-warden", "blocked")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_else(|_| {
            Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
        })
}

/// The message an agent reads when a host is refused.
pub fn refusal_text(host: &str, port: u16, rule: &str, reason: &str, example: &str) -> String {
    format!(
        "warden: blocked {host}:{port}\nrule: {rule}\nreason: {reason}\n\
         This block is enforced by warden outside the agent: retrying with --noproxy, another client, \
         a raw socket or another spelling of the name is blocked too.\n\
         To allow it, a human adds it to `[network] allow` in ~/.config/warden/policy.toml \
         (for example allow = [\"{example}\"]), outside the sandbox, and starts a new session.\n\
         (HTTP 403 from warden's proxy, header x-warden: blocked; the session log has the decision.)\n"
    )
}

fn refusal(r: &Refusal, host: &str, port: u16) -> Response<Body> {
    if r.approval {
        let mut resp = text(
            r.status,
            approval_refusal_text(host, port, &r.rule, &r.reason),
        );
        if let Ok(p) = hyper::ext::ReasonPhrase::try_from(
            "Denied by warden approval (warden approve ID --allow-once admits a waiting request)"
                .to_string(),
        ) {
            resp.extensions_mut().insert(p);
        }
        return resp;
    }
    if r.status == StatusCode::FORBIDDEN {
        let example = r.example.clone().unwrap_or_else(|| host.to_string());
        let mut resp = text(
            r.status,
            refusal_text(host, port, &r.rule, &r.reason, &example),
        );
        // Clients that hide a CONNECT response's body often show its reason phrase
        // (Python: "Tunnel connection failed: 403 Blocked by warden ...").
        let phrase: String = format!(
            "Blocked by warden (rule {}; a human can allow it in [network] of policy.toml)",
            r.rule
        )
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
        if let Ok(p) = hyper::ext::ReasonPhrase::try_from(phrase) {
            resp.extensions_mut().insert(p);
        }
        // Headers show in `curl -v` even where a client hides a CONNECT response's body.
        for (k, v) in [
            ("x-warden-rule", r.rule.clone()),
            (
                "x-warden-allow",
                format!("[network] allow = [\"{example}\"] in ~/.config/warden/policy.toml"),
            ),
        ] {
            let v: String = v
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    } else {
        text(
            r.status,
            format!(
                "warden: cannot reach {host}:{port} (allowed by `{}`): {}\n",
                r.rule, r.reason
            ),
        )
    }
}

pub struct Refusal {
    pub status: StatusCode,
    pub rule: String,
    pub reason: String,
    /// The allow entry that would admit it, when it is not the host itself.
    pub example: Option<String>,
    /// An `ask` host that was not approved (denied, timed out, no channel).
    pub approval: bool,
}

impl Ctx {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        // Any spelling of an address is that address (never handed to the resolver).
        match crate::addr::parse_host_ip(host) {
            Ok(Some(ip)) => return Ok(vec![SocketAddr::new(ip, port)]),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
        }
        if let Some(f) = &self.hosts_file {
            let text = std::fs::read_to_string(f)?;
            let addrs: Vec<SocketAddr> = text
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let ip: IpAddr = it.next()?.parse().ok()?;
                    it.any(|n| n.eq_ignore_ascii_case(host))
                        .then_some(SocketAddr::new(ip, port))
                })
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host}: not found"),
                ));
            }
            return Ok(addrs);
        }
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }

    /// Decides, resolves, checks and connects. An `ask` host waits here for a human.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr, String), Refusal> {
        self.connect_as(host, port, "CONNECT").await
    }

    /// [`Self::connect`], naming the client's method in an approval request.
    pub async fn connect_as(
        &self,
        host: &str,
        port: u16,
        method: &str,
    ) -> Result<(TcpStream, SocketAddr, String), Refusal> {
        let d = self.rules.decide_host(host, port);
        if d.ask {
            return self.connect_asked(host, port, d.rule, method).await;
        }
        if !d.allowed {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                rule: d.rule,
                reason: d.reason,
                example: None,
                approval: false,
            });
        }
        let addrs = self.resolve(host, port).await.map_err(|e| Refusal {
            status: StatusCode::BAD_GATEWAY,
            rule: d.rule.clone(),
            reason: format!("cannot resolve {host}: {e}"),
            example: None,
            approval: false,
        })?;
        if addrs.is_empty() {
            return Err(Refusal {
                status: StatusCode::BAD_GATEWAY,
                rule: d.rule.clone(),
                reason: format!("{host} has no addresses"),
                example: None,
                approval: false,
            });
        }
        let ok = usable_addresses(host, port, &addrs, "", &self.rules, |ip| {
            self.rules.address_ok(ip, port)
        })?;
        self.connect_to(host, ok, d.rule).await
    }

    async fn connect_to(
        &self,
        host: &str,
        ok: Vec<SocketAddr>,
        rule: String,
    ) -> Result<(TcpStream, SocketAddr, String), Refusal> {
        let mut last = String::new();
        for a in ok {
            match tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(a))
                .await
            {
                Ok(Ok(s)) => return Ok((s, a, rule)),
                Ok(Err(e)) => last = format!("{a}: {e}"),
                Err(_) => last = format!("{a}: timed out"),
            }
        }
        Err(Refusal {
            status: StatusCode::BAD_GATEWAY,
            rule,
            reason: format!("cannot connect to {host}: {last}"),
            example: None,
            approval: false,
        })
    }

    /// An `ask` host: resolve, check the addresses (an `ask` rule naming an address counts
    /// here), show the human exactly that, and connect only to those addresses if allowed.
    /// Every failure denies.
    async fn connect_asked(
        &self,
        host: &str,
        port: u16,
        rule: String,
        method: &str,
    ) -> Result<(TcpStream, SocketAddr, String), Refusal> {
        let deny = |reason: String| Refusal {
            status: StatusCode::FORBIDDEN,
            rule: rule.clone(),
            reason,
            example: None,
            approval: true,
        };
        let Some(approver) = self.approver.clone() else {
            return Err(deny(format!(
                "{host}:{port} needs a human's approval (`{rule}`), but this session has no approval channel"
            )));
        };
        let addrs = match self.resolve(host, port).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Err(deny(format!("{host} has no addresses"))),
            Err(e) => return Err(deny(format!("cannot resolve {host}: {e}"))),
        };
        let ok = usable_addresses(host, port, &addrs, " (not asked)", &self.rules, |ip| {
            self.rules.address_ok_for_ask(ip, port)
        })?;
        let (h, r, m, shown) = (
            host.to_string(),
            rule.clone(),
            method.to_string(),
            ok.clone(),
        );
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _withdraw = Withdraw(gone.clone());
        let answer =
            tokio::task::spawn_blocking(move || approver.ask(&h, port, &shown, &r, &m, &gone))
                .await
                .unwrap_or_else(|e| Err(format!("the approval wait failed: {e}")));
        match answer {
            Ok(how) => {
                self.connect_to(host, ok, format!("approval ({rule}; {how})"))
                    .await
            }
            Err(why) => Err(deny(why)),
        }
    }
}

/// The message an agent reads when a human (or the deadline) denied an `ask` host.
pub fn approval_refusal_text(host: &str, port: u16, rule: &str, reason: &str) -> String {
    format!(
        "warden: blocked {host}:{port}: denied by warden approval\nrule: approval ({rule})\nreason: {reason}\n\
         A human approves each connection to this host from outside the agent: while a request waits, \
         `warden approve` (another terminal) lists it and `warden approve ID --allow-once` or \
         `--allow-session` admits it, or Ctrl-] a / A on the warden run terminal. \
         To allow it always, a human adds it to `[network] allow` in ~/.config/warden/policy.toml.\n\
         (HTTP 403 from warden's proxy, header x-warden: blocked; the session log has the decision.)\n"
    )
}

/// One decision on a connection: refused (`Deny`), let through (`Allow`, written when the
/// connection is made, so a tunnel still open when the session ends is in the log), or
/// ended (`Observe`, with the bytes each way).
#[allow(clippy::too_many_arguments)] // one decision record's fields
pub(crate) fn emit(
    host: &str,
    port: u16,
    rule: &str,
    verdict: Verdict,
    reason: &str,
    bytes: Option<(u64, u64)>,
    started: Instant,
    method: &str,
) {
    let mut d = Decision::new(
        Layer::Proxy,
        "agent",
        format!("{method} {host}:{port}"),
        rule,
        verdict,
        reason,
    )
    .with("host", host)
    .with("port", port);
    if let Some((up, down)) = bytes {
        d = d.with("bytes_up", up).with("bytes_down", down);
    }
    d.with("duration_ms", started.elapsed().as_millis() as u64)
        .emit();
}

/// A connection refused: its `Deny` row, with the rule and the reason the agent is shown.
fn refused(host: &str, port: u16, r: &Refusal, started: Instant, how: &str) {
    emit(
        host,
        port,
        &r.rule,
        Verdict::Deny,
        &r.reason,
        None,
        started,
        how,
    );
}

/// A tunnel (CONNECT, SOCKS5) let through to `addr`: its `Allow` row, when it opens.
fn tunnel_opened(host: &str, port: u16, rule: &str, addr: SocketAddr, started: Instant, how: &str) {
    let why = format!("tunnel to {addr}");
    emit(host, port, rule, Verdict::Allow, &why, None, started, how);
}

/// A tunnel ended: its `Observe` row with the bytes each way.
fn tunnel_closed(
    host: &str,
    port: u16,
    rule: &str,
    bytes: (u64, u64),
    started: Instant,
    how: &str,
) {
    let why = "tunnel closed";
    emit(
        host,
        port,
        rule,
        Verdict::Observe,
        why,
        Some(bytes),
        started,
        how,
    );
}

fn split_authority(a: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = p
            .strip_prefix(':')
            .map(|x| x.parse().ok())
            .unwrap_or(Some(default_port))?;
        return Some((format!("[{h}]"), port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((a.to_string(), default_port)),
    }
}

pub async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Response<Body>, hyper::Error> {
    let started = Instant::now();
    if req.method() == Method::CONNECT {
        let Some((host, port)) = req
            .uri()
            .authority()
            .and_then(|a| split_authority(a.as_str(), 443))
        else {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "warden: CONNECT needs host:port\n".into(),
            ));
        };
        return match ctx.connect(&host, port).await {
            Err(r) => {
                refused(&host, port, &r, started, "CONNECT");
                Ok(refusal(&r, &host, port))
            }
            Ok((mut upstream, addr, rule)) => {
                tunnel_opened(&host, port, &rule, addr, started, "CONNECT");
                let slot = crate::Slot::take(&ctx.live);
                tokio::spawn(async move {
                    let _slot = slot;
                    match hyper::upgrade::on(req).await {
                        Ok(up) => {
                            let mut io = TokioIo::new(up);
                            let (a, b) = tokio::io::copy_bidirectional(&mut io, &mut upstream)
                                .await
                                .unwrap_or((0, 0));
                            tunnel_closed(&host, port, &rule, (a, b), started, "CONNECT");
                        }
                        Err(e) => tracing::debug!("upgrade failed: {e}"),
                    }
                });
                Ok(Response::new(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed(),
                ))
            }
        };
    }
    // Absolute-form HTTP request.
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        let msg = if uri.scheme_str() == Some("https") {
            "warden: use CONNECT for https (set HTTPS_PROXY)\n"
        } else {
            "warden: this is a proxy; send absolute-form requests (http://host/path)\n"
        };
        return Ok(text(StatusCode::BAD_REQUEST, msg.into()));
    }
    let Some(host) = uri.host().map(str::to_string) else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "warden: request has no host\n".into(),
        ));
    };
    let port = uri.port_u16().unwrap_or(80);
    let method = req.method().as_str().to_string();
    let (stream, _addr, rule) = match ctx.connect_as(&host, port, &method).await {
        Ok(x) => x,
        Err(r) => {
            refused(&host, port, &r, started, req.method().as_str());
            return Ok(refusal(&r, &host, port));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                format!("warden: upstream {host}:{port}: {e}\n"),
            ))
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    parts.uri = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_default();
    for h in [
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
    ] {
        parts.headers.remove(h);
    }
    let method = parts.method.to_string();
    // Before the request goes: an upstream that reads it and closes without an answer got
    // it all the same (no byte counts for plain-HTTP forwards).
    emit(
        &host,
        port,
        &rule,
        Verdict::Allow,
        "forwarded",
        None,
        started,
        &method,
    );
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    Ok(resp.map(|b| b.boxed()))
}

/// Serves one client connection: SOCKS5 when the first byte is 5, else HTTP/1 (with
/// upgrades for CONNECT).
/// Time for a client to send its request (HTTP headers, SOCKS5 handshake); tunnels, once
/// open, have no deadline.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn serve(stream: TcpStream, ctx: Arc<Ctx>) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(REQUEST_DEADLINE, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 5 => {
            socks5(stream, ctx).await;
            return;
        }
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return,
    }
    let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(REQUEST_DEADLINE)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}

/// SOCKS5 (RFC 1928), CONNECT only, no authentication. Hostnames (`socks5h://`) are
/// decided like HTTP hosts; raw IPs are refused unless a rule names them. A refusal is
/// reply 0x02 ("connection not allowed by ruleset").
async fn socks5(mut s: TcpStream, ctx: Arc<Ctx>) {
    use tokio::io::AsyncWriteExt;
    let started = Instant::now();
    let Ok(Some((host, port, early))) =
        tokio::time::timeout(REQUEST_DEADLINE, socks5_request(&mut s)).await
    else {
        return;
    };
    let reply = warden_proto::socks5::reply;
    match ctx.connect_as(&host, port, "SOCKS5").await {
        Err(r) => {
            refused(&host, port, &r, started, "SOCKS5");
            let code = if r.status == StatusCode::FORBIDDEN {
                2
            } else {
                5
            };
            let _ = s.write_all(&reply(code)).await;
        }
        Ok((mut up, addr, rule)) => {
            tunnel_opened(&host, port, &rule, addr, started, "SOCKS5");
            if s.write_all(&reply(0)).await.is_err() {
                return;
            }
            // Bytes the client sent after its request without waiting for our reply.
            if !early.is_empty() && up.write_all(&early).await.is_err() {
                return;
            }
            let (a, b) = tokio::io::copy_bidirectional(&mut s, &mut up)
                .await
                .unwrap_or((0, 0));
            tunnel_closed(&host, port, &rule, (a, b), started, "SOCKS5");
        }
    }
}

/// Reads a SOCKS5 greeting and CONNECT request, answering protocol errors itself (the
/// parsing is `warden_proto::socks5`'s, bounded by the protocol's own lengths).
/// Returns the target and any bytes the client sent after the request (tunnel data).
async fn socks5_request(s: &mut TcpStream) -> Option<(String, u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use warden_proto::socks5::{self, Greeting, Request};
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    // The client may not send its request before our method reply: one stage at a time,
    // and nothing past what the stage needs is kept.
    let used = loop {
        match socks5::greeting(&buf) {
            Greeting::NeedMore if buf.len() < socks5::MAX_GREETING => {}
            Greeting::NoAuth { used } => break used,
            Greeting::NoAcceptableMethod => {
                let _ = s.write_all(&socks5::NO_ACCEPTABLE).await;
                return None;
            }
            Greeting::NeedMore | Greeting::BadVersion => return None,
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    buf.drain(..used);
    if s.write_all(&socks5::NO_AUTH).await.is_err() {
        return None;
    }
    loop {
        match socks5::request(&buf) {
            Request::NeedMore if buf.len() < socks5::MAX_REQUEST => {}
            Request::Connect { host, port, used } => {
                buf.drain(..used);
                return Some((host, port, buf));
            }
            Request::Refused(code) => {
                let _ = s.write_all(&socks5::reply(code)).await;
                return None;
            }
            Request::NeedMore => return None,
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The resolved addresses a connection may use (`allowed` decides each one); none: the
/// refusal that names every address and its special-purpose class.
fn usable_addresses(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    note: &str,
    rules: &NetRules,
    allowed: impl Fn(&std::net::IpAddr) -> bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    let ok: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allowed(&a.ip())).collect();
    if !ok.is_empty() {
        return Ok(ok);
    }
    if let Some((a, rule)) = addrs
        .iter()
        .find_map(|a| rules.address_denied(&a.ip(), port).map(|r| (a, r)))
    {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            rule: rule.to_string(),
            reason: format!(
                "{host} resolves to {}, which is denied by `{rule}` (a deny rule naming an address wins over every name that leads to it)",
                a.ip()
            ),
            example: Some(a.to_string()),
            approval: false,
        });
    }
    let list = addrs
        .iter()
        .map(|a| match crate::addr::classify(&a.ip()) {
            Some(c) => format!("{} ({c})", a.ip()),
            None => a.ip().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(Refusal {
        status: StatusCode::FORBIDDEN,
        rule: "network.private_addresses".into(),
        reason: format!("{host} resolves to {list}: loopback, private, link-local, metadata and other special-purpose addresses are refused unless a rule names the address{note}"),
        example: addrs.first().map(|a| a.to_string()),
        approval: false,
    })
}
