//! Channels that cross a trust boundary, exercised through `warden run`: the hook-event pipe
//! under a flood from inside (the supervisor's memory stays bounded and the drops are
//! logged), the loopback gateway (an allowed host loopback port is reachable from the
//! sandbox's loopback, another is not, and the refusal is logged with a hint), and address
//! spellings and special-purpose classes refused by the real proxy. Everything is judged on
//! the host: the supervisor's /proc status, the session log, the HTTP server's own log.

use super::common::text;
use super::common::Scratch;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::beside("warden-chan", name))
    }

    fn cmd(&self, policy: &str, hosts: Option<&Path>, script: &str) -> Command {
        let p = self.root.join("policy.toml");
        std::fs::write(&p, policy).unwrap();
        let mut c = self.warden();
        c.arg("run").args(["--policy", p.to_str().unwrap()]);
        if let Some(h) = hosts {
            c.args(["--proxy-hosts-file", h.to_str().unwrap()]);
        }
        c.args(["--", "/bin/bash", "-c", script])
            .current_dir(&self.ws)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, policy: &str, hosts: Option<&Path>, script: &str) -> Output {
        self.cmd(policy, hosts, script).output().unwrap()
    }

    /// Every decision of every session of this test's home.
    fn log(&self) -> Vec<serde_json::Value> {
        let dir = self.home.join(".local/state/warden/sessions");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        out
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_dir_all(self.home.join(".local/state/warden/sessions"));
    }
}

/// Runs `c` and samples its VmRSS every 10 ms; (output, peak RSS in KiB).
fn run_measuring_rss(mut c: Command) -> (Output, u64) {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = peak.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let sampler = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                for l in st.lines() {
                    // VmHWM: the peak, so short spikes between samples count too.
                    if let Some(v) = l.strip_prefix("VmHWM:") {
                        let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                        p2.fetch_max(kb, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let out = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::SeqCst))
}

/// Writes to the hook pipe from inside: `mb` MiB of junk (no newline anywhere, the case an
/// unlimited `read_until` grows on), oversized frame headers, malformed frames, and many
/// well-formed gate decisions, interleaved.
const FLOOD: &str = r#"
import json, os, struct, sys
fd = int(os.environ["WARDEN_HOOK_FD"])
mb = int(sys.argv[1])
def frame(b): return b"WF\x01\x01" + struct.pack(">I", len(b)) + b
def gate(i):
    return json.dumps({"ts_ms": 1, "who": "agent", "what": "cmd %d" % i, "layer": "gate",
                       "rule": "gate.test", "verdict": "allow", "reason": "flood"}).encode()
junk = b"x" * (1 << 20)
n = 0
for m in range(mb):
    os.write(fd, junk)
    os.write(fd, b"WF\x01\x01\xff\xff\xff\xff")        # announces 4 GiB
    os.write(fd, frame(b"{not json" * 10))
    for _ in range(50):
        os.write(fd, frame(gate(n)))
        n += 1
print("wrote", mb, "MiB and", n, "frames")
"#;

#[test]
fn hook_pipe_flood_keeps_the_supervisor_bounded_and_is_counted() {
    let t = T::new("flood");
    std::fs::write(t.ws.join("flood.py"), FLOOD).unwrap();
    let policy = "";
    // Baseline: the same session writing 0 MiB.
    let (o, base) = run_measuring_rss(t.cmd(policy, None, "/usr/bin/python3 flood.py 0"));
    assert!(o.status.success(), "{}", text(&o));
    t.clear_log();
    let started = Instant::now();
    let (o, peak) = run_measuring_rss(t.cmd(policy, None, "/usr/bin/python3 flood.py 50"));
    let took = started.elapsed();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("wrote 50 MiB and 2500 frames"), "{}", text(&o));
    eprintln!("supervisor peak RSS: baseline {base} KiB, 50 MiB flood {peak} KiB, {took:?}");
    assert!(base > 0 && peak > 0, "no RSS samples");
    assert!(
        peak < base + 16 * 1024,
        "the supervisor grew from {base} KiB to {peak} KiB under the flood"
    );
    let log = t.log();
    let summary: Vec<_> = log
        .iter()
        .filter(|d| d["rule"] == "hook_relay.limits")
        .collect();
    assert_eq!(summary.len(), 1, "one summary decision: {summary:?}");
    let d = summary[0];
    assert!(
        d["extra"]["junk_bytes"].as_u64().unwrap() >= 50 << 20,
        "{d}"
    );
    assert_eq!(d["extra"]["malformed"], 50, "{d}");
    assert!(d["extra"]["oversize"].as_u64().unwrap() >= 50, "{d}");
    let relayed = log
        .iter()
        .filter(|d| d["rule"] == "gate.test" && d["extra"]["reported_by"].is_string())
        .count() as u64;
    assert_eq!(relayed, d["extra"]["accepted"].as_u64().unwrap(), "{d}");
    assert!(
        relayed >= 500,
        "well-formed frames still get through: {relayed}"
    );
    assert_eq!(
        relayed + d["extra"]["over_rate"].as_u64().unwrap(),
        2500,
        "{d}"
    );
}

#[test]
fn hook_decisions_still_reach_the_session_log() {
    let t = T::new("hook");
    // The real `warden hook` inside the sandbox, with a Claude payload.
    let payload = r#"{"session_id":"s","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"},"cwd":"/tmp"}"#;
    std::fs::write(t.ws.join("in.json"), payload).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_warden")).unwrap();
    let o = t.run(
        "",
        None,
        &format!("{} hook claude < in.json; echo hook-rc=$?", exe.display()),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hook-rc="),
        "{}",
        text(&o)
    );
    let log = t.log();
    assert!(
        log.iter()
            .any(|d| d["layer"] == "gate" && d["extra"]["reported_by"].is_string()),
        "no gate decision relayed from inside:\n{}\n{log:?}",
        text(&o)
    );
    assert!(
        !log.iter().any(|d| d["rule"] == "hook_relay.limits"),
        "{log:?}"
    );
}

/// A tiny HTTP server on the host's 127.0.0.1 that records every request it serves.
struct Server {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn serve_http(body: &'static str) -> Server {
    serve_http_on("127.0.0.1:0", body)
}

fn serve_http_on(addr: &str, body: &'static str) -> Server {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Server { port, hits }
}

/// Binds 127.0.0.1:`port` without listening or SO_REUSEADDR: no other socket can bind it
/// while the fd lives, and connections to it are refused. None when it is taken.
fn hold_v4_port(port: u16) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket, owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    use std::os::fd::AsRawFd;
    // SAFETY: binding our socket to a sockaddr_in of the right size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    (rc == 0).then_some(fd)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn loopback_gateway_reaches_only_the_allowed_host_port() {
    let t = T::new("gateway");
    let allowed = serve_http("model gateway says hi\n");
    let other = serve_http("must not be reached\n");
    let closed = free_port();
    let (a, b) = (allowed.port, other.port);
    let policy = format!("[network]\nallow = [\"127.0.0.1:{a}\"]\n");
    let script = format!(
        "curl -sS --max-time 5 http://127.0.0.1:{a}/v1/models; \
         curl -sS --max-time 5 http://localhost:{a}/; \
         curl -sS --max-time 5 http://127.0.0.1:{b}/ 2>&1; echo other-rc=$?; \
         curl -sS --max-time 5 http://127.0.0.1:{closed}/ 2>&1; echo closed-rc=$?; \
         sleep 0.3"
    );
    let o = t.run(&policy, None, &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        s.matches("model gateway says hi").count(),
        2,
        "127.0.0.1 and localhost reach the allowed host port:\n{}",
        text(&o)
    );
    assert!(!s.contains("must not be reached"), "{}", text(&o));
    assert!(s.contains("other-rc=7"), "{}", text(&o));
    assert_eq!(
        other.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the host server on the port not allowed saw a connection"
    );
    assert_eq!(allowed.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let log = t.log();
    let forwarded = log
        .iter()
        .filter(|d| {
            d["layer"] == "proxy"
                && d["verdict"] == "allow"
                && d["what"]
                    .as_str()
                    .unwrap_or("")
                    .contains("loopback gateway")
        })
        .count();
    assert_eq!(forwarded, 2, "each forwarded connection is logged: {log:?}");
    let hint = log
        .iter()
        .find(|d| d["rule"] == "network.loopback" && d["extra"]["port"] == b)
        .unwrap_or_else(|| panic!("no refusal hint for port {b}: {log:?}"));
    assert!(
        hint["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("\"127.0.0.1:{b}\"")),
        "{hint}"
    );
    // Deny wins over the gateway.
    t.clear_log();
    let policy = format!("[network]\nallow = [\"127.0.0.1:{a}\"]\ndeny = [\"127.0.0.1:{a}\"]\n");
    let o = t.run(
        &policy,
        None,
        &format!("curl -sS --max-time 5 http://127.0.0.1:{a}/ 2>&1; echo rc=$?"),
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("says hi"),
        "{}",
        text(&o)
    );
    assert_eq!(allowed.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A deny rule naming the address wins over a name that leads to it, in the gateway and
    // in the proxy (attack review 74: `localhost:PORT` reached a denied 127.0.0.1 in both).
    let policy = format!("[network]\nallow = [\"localhost:{a}\"]\ndeny = [\"127.0.0.1\"]\n");
    let o = t.run(
        &policy,
        None,
        &format!(
            "curl -sS --max-time 5 http://127.0.0.1:{a}/ 2>&1; echo gw-rc=$?; \
             curl -sS --max-time 5 --proxy \"$HTTP_PROXY\" --noproxy '' http://localhost:{a}/ 2>&1; echo px-rc=$?; \
             curl -sS --max-time 5 --proxy \"$HTTP_PROXY\" --noproxy '' -p http://localhost:{a}/ 2>&1; echo tunnel-rc=$?"
        ),
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("says hi"),
        "{}",
        text(&o)
    );
    assert_eq!(
        allowed.hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the denied 127.0.0.1 was reached through `localhost`:\n{}",
        text(&o)
    );
}

#[test]
fn address_spellings_and_special_classes_are_refused_by_the_proxy() {
    let t = T::new("spell");
    let srv = serve_http("private service\n");
    let p = srv.port;
    let hosts = t.root.join("hosts");
    std::fs::write(
        &hosts,
        // Allowed by name, resolving to special addresses (DNS64 / 6to4 / mapped forms).
        "64:ff9b::a9fe:a9fe nat64.test\n2002:7f00:1::1 sixtofour.test\n::ffff:127.0.0.1 mapped.test\n198.18.0.1 bench.test\n240.0.0.1 reserved.test\n",
    )
    .unwrap();
    let policy = "[network]\nallow = [\"nat64.test\", \"sixtofour.test\", \"mapped.test\", \"bench.test\", \"reserved.test\"]\n";
    // curl sends these as written through the proxy (or normalises them first: either way
    // the proxy must see an address and refuse it); bash's /dev/tcp sends raw spellings.
    let mut script = String::new();
    for url in [
        format!("http://2130706433:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::1]:{p}/"),
        "http://[64:ff9b::a9fe:a9fe]/".to_string(),
        "http://nat64.test/".to_string(),
        format!("http://sixtofour.test:{p}/"),
        format!("http://mapped.test:{p}/"),
        "http://bench.test/".to_string(),
        "http://reserved.test/".to_string(),
    ] {
        script.push_str(&format!(
            "echo \"== {url}\"; curl -sS -g --noproxy '' --max-time 5 -D - '{url}' 2>&1; echo; "
        ));
    }
    for target in [
        format!("0x7f.0.0.1:{p}"),
        format!("2130706433:{p}"),
        format!("017700000001:{p}"),
        format!("[fe80::1%25lo]:{p}"),
        format!("[::ffff:7f00:1]:{p}"),
    ] {
        let t = target.replace('%', "%%"); // printf's format
        script.push_str(&format!(
            "echo \"== raw CONNECT {target}\"; exec 3<>/dev/tcp/127.0.0.1/3128; \
             printf 'CONNECT {t} HTTP/1.1\\r\\nHost: {t}\\r\\nConnection: close\\r\\n\\r\\n' >&3; \
             timeout 5 cat <&3; exec 3>&-; echo; "
        ));
        script.push_str(&format!(
            "echo \"== raw GET {target}\"; exec 3<>/dev/tcp/127.0.0.1/3128; \
             printf 'GET http://{t}/ HTTP/1.1\\r\\nHost: {t}\\r\\nConnection: close\\r\\n\\r\\n' >&3; \
             timeout 5 cat <&3; exec 3>&-; echo; "
        ));
    }
    let o = t.run(policy, Some(&hosts), &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        !s.contains("private service"),
        "a special address was reached:\n{}",
        text(&o)
    );
    assert_eq!(srv.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Every attempt got warden's refusal, naming the address it really is.
    let sections: Vec<&str> = s.split("== ").skip(1).collect();
    assert_eq!(sections.len(), 22, "{}", text(&o));
    for sec in &sections {
        let first = sec.lines().next().unwrap_or("");
        // A zone id in a URL authority is not valid HTTP: refused before any decision.
        if first.contains("%25lo") {
            assert!(sec.contains(" 400 ") || sec.contains("blocked"), "{sec}");
            continue;
        }
        assert!(sec.contains(" 403 "), "not refused with 403: {sec}");
        assert!(sec.contains("x-warden: blocked"), "{sec}");
        assert!(sec.contains("warden: blocked"), "{sec}");
        assert!(sec.contains("To allow it"), "{sec}");
    }
    for (what, want) in [
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("nat64.test", "embedding 169.254.169.254"),
        ("sixtofour.test", "embedding 127.0.0.1"),
        ("mapped.test", "embedding 127.0.0.1"),
        ("bench.test", "198.18.0.0/15"),
        ("reserved.test", "240.0.0.0/4"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::/96"),
    ] {
        let sec = sections
            .iter()
            .find(|x| x.lines().next().unwrap_or("").contains(what))
            .unwrap_or_else(|| panic!("no section for {what}"));
        assert!(sec.contains(want), "{what}: want `{want}` in\n{sec}");
    }
    // A client that hides a CONNECT refusal's body still shows warden's reason phrase.
    let o = t.run(
        policy,
        Some(&hosts),
        "/usr/bin/python3 -c 'import urllib.request; urllib.request.urlopen(\"https://denied.test/\")' 2>&1 | tail -1",
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("403 Blocked by warden (rule network.default"),
        "{}",
        text(&o)
    );
}

#[test]
fn proxy_connections_from_inside_are_capped_and_it_stays_responsive() {
    let t = T::new("conncap");
    let py = r#"
import select, socket, time
socks = [socket.create_connection(("127.0.0.1", 3128)) for _ in range(300)]
time.sleep(1.0)
readable, _, _ = select.select(socks, [], [], 0.5)
closed = sum(1 for s in readable if s.recv(1) == b"")
print("closed", closed)
for s in socks:
    s.close()
time.sleep(0.5)
"#;
    std::fs::write(t.ws.join("many.py"), py).unwrap();
    let o = t.run(
        "",
        None,
        "/usr/bin/python3 many.py; curl -s --max-time 5 -o /dev/null -w 'after %{http_code}\\n' http://denied.test/",
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("closed 44"),
        "256 stay open, the rest are closed:\n{}",
        text(&o)
    );
    assert!(
        s.contains("after 403"),
        "the proxy still answers:\n{}",
        text(&o)
    );
    let log = t.log();
    assert_eq!(
        log.iter()
            .filter(|d| d["rule"] == "network.max_connections")
            .count(),
        1,
        "{log:?}"
    );
}

#[test]
fn loopback_gateway_localhost_rule_reaches_an_ipv6_only_host_service() {
    let t = T::new("gw6");
    // The port must be free on 127.0.0.1 for the whole test: a server of another test bound
    // there (any test's port-0 listener may land on it) would answer `localhost:{p}` first.
    // A bound, never-listening socket without SO_REUSEADDR holds it and refuses connections.
    let (srv, _v4) = (0..50)
        .find_map(|_| {
            let srv = serve_http_on("[::1]:0", "ipv6 gateway\n");
            hold_v4_port(srv.port).map(|fd| (srv, fd))
        })
        .expect("no port free on both ::1 and 127.0.0.1");
    let p = srv.port;
    let o = t.run(
        &format!("[network]\nallow = [\"localhost:{p}\"]\n"),
        None,
        &format!(
            "curl -sS --max-time 5 http://localhost:{p}/; curl -sS -g --max-time 5 'http://[::1]:{p}/'; \
             curl -sS --max-time 5 http://127.0.0.1:{p}/"
        ),
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.matches("ipv6 gateway").count(), 3, "{}", text(&o));
    assert_eq!(srv.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A tunnel is in the session log from the moment it opens, and CONNECT tunnels count against
/// the proxy's connection cap (attack review 74: the allow row was written only when a tunnel
/// closed, so data sent through a tunnel whose upstream was slow to close, or still open at
/// the session's end, left no row; and hyper's connection, which held the cap's slot, ends at
/// the upgrade, so 9,980 tunnels were opened against a cap of 256). Judged by a host service
/// that holds every connection it accepts and counts the bytes it receives.
#[test]
fn tunnels_are_logged_when_they_open_and_count_against_the_cap() {
    use std::io::Read;
    let t = T::new("tunnels");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (accepted, received) = (accepted.clone(), received.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
                let mut buf = [0u8; 64];
                if let Ok(n) = c.read(&mut buf) {
                    received.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
                held.push(c);
            }
        });
    }
    let policy = format!("[network]\nallow = [\"127.0.0.1:{hold}\"]\n");
    // 300 tunnels, each sends 6 bytes and stays open; the agent exits with them open.
    let script = format!(
        "python3 -c '
import os, socket
h, p = os.environ[\"HTTP_PROXY\"].rsplit(\"/\", 1)[-1].rsplit(\":\", 1)
opened = []
for i in range(300):
    s = socket.create_connection((h, int(p)), timeout=5)
    s.sendall(b\"CONNECT 127.0.0.1:{hold} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\")
    try:
        r = s.recv(200)
    except OSError:
        r = b\"\"
    if r.startswith(b\"HTTP/1.1 200\"):
        s.sendall(b\"secret\")
        opened.append(s)
print(\"opened\", len(opened), flush=True)
'"
    );
    let o = t.run(&policy, None, &script);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let opened: usize = out
        .split_whitespace()
        .skip_while(|w| *w != "opened")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert!(opened > 0, "{}", text(&o));
    assert!(
        opened <= 256,
        "{opened} tunnels were open at once past the cap of 256:\n{}",
        text(&o)
    );
    std::thread::sleep(Duration::from_millis(200));
    let reached = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(reached <= 256, "the host service accepted {reached}");
    assert!(received.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let rows = t
        .log()
        .into_iter()
        .filter(|d| {
            d["layer"] == "proxy"
                && d["verdict"] == "allow"
                && d["what"] == format!("CONNECT 127.0.0.1:{hold}")
        })
        .count();
    assert_eq!(
        rows, reached,
        "every tunnel the host service saw must be in the log ({reached} accepted)"
    );
}
