//! The blocking HTTP client (ureq over rustls): no proxy, no redirects, a bounded response,
//! and a hard deadline. ureq's global timeout bounds connect, TLS, send and receive; the
//! request also runs on its own thread and the caller waits at most the deadline, so a
//! stall anywhere (DNS included) still ends in time, as `ask`.

use crate::config::Api;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Largest response body read.
pub const MAX_RESPONSE: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("HTTP {status} from the advisor endpoint")]
    Status { status: u16 },
    #[error("advisor endpoint: {0}")]
    Transport(String),
}

/// `ca_file` cannot supply root certificates.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("ca_file {}: {err}", path.display())]
    Read {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("ca_file {}: no PEM certificate in it", path.display())]
    NoCertificate { path: std::path::PathBuf },
}

/// Root certificates for `https` endpoints: None = Mozilla's (built in).
pub type Roots = Option<std::sync::Arc<Vec<ureq::tls::Certificate<'static>>>>;

/// Largest CA bundle read.
pub const MAX_CA_FILE: u64 = 8 << 20;

/// Loads a PEM bundle of root certificates (the supervisor's file, outside the sandbox).
pub fn load_roots(path: &str) -> Result<Roots, RootsError> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE).read_to_end(&mut buf))
        .map_err(|err| RootsError::Read {
            path: path.into(),
            err,
        })?;
    let certs: Vec<_> = ureq::tls::parse_pem(&buf)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(RootsError::NoCertificate { path: path.into() });
    }
    Ok(Some(std::sync::Arc::new(certs)))
}

/// One POST with a JSON body; returns the body text of a 2xx answer.
pub fn post_json(
    endpoint: &str,
    api: Api,
    key: Option<&str>,
    body: &serde_json::Value,
    deadline: Duration,
) -> Result<String, HttpError> {
    post_json_with(endpoint, api, key, body, deadline, &None)
}

/// [`post_json`] with the given root certificates.
pub fn post_json_with(
    endpoint: &str,
    api: Api,
    key: Option<&str>,
    body: &serde_json::Value,
    deadline: Duration,
    roots: &Roots,
) -> Result<String, HttpError> {
    let roots = roots.clone();
    let started = Instant::now();
    let (tx, rx) = mpsc::sync_channel(1);
    let endpoint = endpoint.to_string();
    let key = key.map(str::to_string);
    let bytes = body.to_string().into_bytes();
    let spawned = std::thread::Builder::new()
        .name("warden-advisor-http".into())
        .spawn(move || {
            let _ = tx.send(send(&endpoint, api, key.as_deref(), bytes, deadline, roots));
        });
    if let Err(e) = spawned {
        return Err(HttpError::Transport(format!("cannot start a thread: {e}")));
    }
    let left = deadline.saturating_sub(started.elapsed());
    match rx.recv_timeout(left) {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(deadline.as_millis() as u64)),
    }
}

fn send(
    endpoint: &str,
    api: Api,
    key: Option<&str>,
    body: Vec<u8>,
    deadline: Duration,
    roots: Roots,
) -> Result<String, HttpError> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(r) = roots {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(r));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(deadline))
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("warden-advisor")
        .build();
    let agent: ureq::Agent = config.into();
    let mut req = agent
        .post(endpoint)
        .header("content-type", "application/json");
    match api {
        Api::Anthropic => {
            req = req.header("anthropic-version", "2023-06-01");
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
        }
        Api::Openai => {
            if let Some(k) = key {
                req = req.header("authorization", format!("Bearer {k}"));
            }
        }
    }
    let mut resp = req.send(&body[..]).map_err(|e| match e {
        ureq::Error::Timeout(_) => HttpError::Timeout(deadline.as_millis() as u64),
        other => HttpError::Transport(crate::prompt::one_line(&other.to_string(), 200)),
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(HttpError::Status { status });
    }
    resp.body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => HttpError::Timeout(deadline.as_millis() as u64),
            other => HttpError::Transport(crate::prompt::one_line(&other.to_string(), 200)),
        })
}
