//! Network tests through `warden run`: real clients (curl, git, Python's urllib) inside the
//! sandbox against servers the test starts on the host. Names come from a test hosts file
//! read by the proxy (`--proxy-hosts-file`, a supervisor flag the agent cannot set).

use super::common::{text, wait_until, Scratch};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct T {
    s: Scratch,
    server: Child,
    port: u16,
}

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.s
    }
}

impl T {
    fn new(name: &str) -> T {
        let s = Scratch::beside("warden-net", name);
        let srv = s.root.join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        std::fs::write(srv.join("hello.txt"), "hello through warden\n").unwrap();
        let port = {
            let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let server = Command::new("/usr/bin/python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "0.0.0.0"])
            .current_dir(&srv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        T { s, server, port }
    }
    fn hosts(&self, text: &str) -> String {
        let p = self.root.join("hosts");
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
    fn run(&self, policy: &str, hosts: &str, script: &str) -> Output {
        self.run_with(&[], policy, hosts, script)
    }
    fn run_with(&self, flags: &[&str], policy: &str, hosts: &str, script: &str) -> Output {
        let p = self.root.join("policy.toml");
        std::fs::write(&p, policy).unwrap();
        self.warden()
            .arg("run")
            .args(flags)
            .args([
                "--policy",
                p.to_str().unwrap(),
                "--proxy-hosts-file",
                hosts,
                "--",
                "/bin/bash",
                "-c",
                script,
            ])
            .current_dir(&self.ws)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A non-loopback address of this host (the sandbox has only its own loopback).
fn host_ip() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("10.255.255.1:9").ok();
    s.local_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

#[test]
fn allowed_hosts_work_and_denied_hosts_get_a_reason() {
    let t = T::new("allow");
    let hosts = t.hosts("127.0.0.1 test.local\n127.0.0.1 other.local\n");
    let policy = "[network]\nallow = [\"test.local\", \"127.0.0.1\"]\n";
    let p = t.port;
    let script = format!(
        "curl -s http://test.local:{p}/hello.txt; \
         curl -s --proxytunnel http://test.local:{p}/hello.txt | sed 's/^/tunnel: /'; \
         curl -s --proxy socks5h://127.0.0.1:3128 http://test.local:{p}/hello.txt | sed 's/^/socks: /'; \
         curl -s --proxy socks5h://127.0.0.1:3128 http://other.local:{p}/ 2>&1; echo socks-denied-rc=$?; \
         /usr/bin/python3 -c 'import urllib.request; print(\"urllib:\", urllib.request.urlopen(\"http://test.local:{p}/hello.txt\").read().decode().strip())'; \
         echo ---; curl -s -o /dev/null -w '%{{http_code}}\\n' http://other.local:{p}/hello.txt; curl -s http://other.local:{p}/hello.txt; \
         curl -s --proxytunnel http://other.local:{p}/ 2>&1; echo connect-rc=$?"
    );
    let o = t.run(policy, &hosts, &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("hello through warden"), "{}", text(&o));
    assert!(
        s.contains("tunnel: hello through warden"),
        "CONNECT path:\n{}",
        text(&o)
    );
    assert!(s.contains("urllib: hello through warden"), "{}", text(&o));
    assert!(
        s.contains("socks: hello through warden"),
        "SOCKS5 path:\n{}",
        text(&o)
    );
    assert!(
        s.contains("socks-denied-rc=97"),
        "SOCKS5 to a denied host must be refused:\n{}",
        text(&o)
    );
    let after = s.split("---").nth(1).unwrap();
    assert!(after.trim_start().starts_with("403"), "{}", text(&o));
    assert!(
        after.contains("blocked other.local")
            && after.contains("network.default")
            && after.contains("enforced by warden outside the agent"),
        "{}",
        text(&o)
    );
    assert!(
        after.contains("connect-rc=56"),
        "CONNECT to a denied host must fail:\n{}",
        text(&o)
    );
}

#[test]
fn direct_network_udp_and_dns_fail_inside() {
    let t = T::new("direct");
    let hosts = t.hosts("");
    let ip = host_ip();
    let py = format!(
        r#"
import socket
for what, fam, kind, addr in [("tcp", socket.AF_INET, socket.SOCK_STREAM, ("{ip}", {p})), ("udp-dns", socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)), ("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("2001:4860:4860::8888", 53))]:
    s = socket.socket(fam, kind)
    s.settimeout(2)
    try:
        s.connect(addr)
        s.send(b"x")
        print(what, "CONNECTED")
    except OSError as e:
        print(what, "failed", e.errno)
try:
    socket.getaddrinfo("example.com", 80)
    print("dns RESOLVED")
except OSError:
    print("dns failed")
"#,
        p = t.port
    );
    std::fs::write(t.ws.join("probe.py"), py).unwrap();
    let script = format!("curl -s --noproxy '*' --max-time 3 http://{ip}:{p}/hello.txt && echo DIRECT-OK; /usr/bin/python3 probe.py", p = t.port);
    let o = t.run("[network]\nallow = []\n", &hosts, &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        !s.contains("DIRECT-OK") && !s.contains("CONNECTED") && !s.contains("RESOLVED"),
        "{}",
        text(&o)
    );
    assert!(
        s.contains("tcp failed") && s.contains("udp-dns failed") && s.contains("dns failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn private_metadata_rebinding_and_ipv6_are_refused() {
    let t = T::new("private");
    let hosts = t.hosts("127.0.0.1 test.local\n198.51.100.7 rebind.test\n");
    // test.local is allowed by name, but nothing names 127.0.0.1. rebind.test first resolves
    // to a documentation address (special-purpose too, so the policy names it: the point is
    // that the proxy tries the address it checked, and that it is unreachable).
    let policy = "[network]\nallow = [\"test.local\", \"rebind.test\", \"198.51.100.7\"]\n";
    let p = t.port;
    let script = format!(
        "curl -s http://test.local:{p}/hello.txt; echo; \
         curl -s http://169.254.169.254/latest/meta-data/; echo; \
         curl -s http://10.0.0.1/; echo; \
         curl -s -g 'http://[::1]:{p}/hello.txt'; echo; \
         curl -s -g 'http://[2001:db8::1]:{p}/'; echo; \
         curl -s -g 'http://[fd00:ec2::254]/'; echo; \
         curl -s --max-time 5 -o /dev/null -w 'first %{{http_code}}\\n' http://rebind.test:{p}/hello.txt"
    );
    let o = t.run(policy, &hosts, &script);
    // The name now rebinds to loopback (the proxy re-reads its resolver on every connection).
    let hosts = t.hosts("127.0.0.1 test.local\n127.0.0.1 rebind.test\n");
    let o2 = t.run(
        policy,
        &hosts,
        &format!("curl -s http://rebind.test:{p}/hello.txt"),
    );
    let s2 = String::from_utf8_lossy(&o2.stdout).to_string();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        !s.contains("hello through warden"),
        "a private address was reached:\n{}",
        text(&o)
    );
    assert!(
        s.contains("test.local resolves to 127.0.0.1"),
        "{}",
        text(&o)
    );
    for blocked in [
        "blocked 169.254.169.254",
        "blocked 10.0.0.1",
        "blocked [2001:db8::1]",
        "blocked [fd00:ec2::254]",
    ] {
        assert!(s.contains(blocked), "missing `{blocked}`:\n{}", text(&o));
    }
    assert!(
        s.contains("first 502"),
        "the public first address is tried (and is unreachable):\n{}",
        text(&o)
    );
    assert!(
        s2.contains("rebind.test resolves to 127.0.0.1") && !s2.contains("hello through warden"),
        "rebinding must be refused:\n{}",
        text(&o2)
    );
}

#[test]
fn large_download_is_byte_identical_and_git_works() {
    let t = T::new("large");
    let srv = t.root.join("srv");
    // 64 MiB of pseudo-random data.
    let mut data = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(srv.join("big.bin"), &data).unwrap();
    let want = warden_sha(&data);
    // A bare repository served over dumb HTTP.
    let src = t.root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let g = |dir: &std::path::Path, args: &[&str]| {
        assert!(Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success())
    };
    g(&src, &["init", "-q"]);
    std::fs::write(src.join("README"), "from git over http\n").unwrap();
    g(&src, &["add", "README"]);
    g(
        &src,
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-qm",
            "init",
        ],
    );
    g(&t.root, &["clone", "-q", "--bare", "src", "srv/repo.git"]);
    g(&srv.join("repo.git"), &["update-server-info"]);
    let hosts = t.hosts("127.0.0.1 test.local\n");
    let p = t.port;
    let script = format!(
        "curl -s http://test.local:{p}/big.bin | sha256sum | cut -d' ' -f1; \
         git clone -q http://test.local:{p}/repo.git cloned && cat cloned/README"
    );
    let o = t.run(
        "[network]\nallow = [\"test.local\", \"127.0.0.1\"]\n",
        &hosts,
        &script,
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.starts_with(&want),
        "download differs (want {want}):\n{}",
        text(&o)
    );
    assert!(
        s.contains("from git over http"),
        "git over HTTP through the proxy:\n{}",
        text(&o)
    );
}

fn warden_sha(d: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(d).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn network_policy_bad_input_is_precise() {
    // Hermetic: the developer's own ~/.config/warden must not decide what `run` accepts.
    let t = Scratch::beside("warden-net", "bad");
    let root = &t.root;
    for (pol, want) in [
        ("[network]\nallow = [\"*\"]\n", "every host"),
        ("[network]\nallow = [\"*.com\"]\n", "too broad"),
        ("[network]\nallow = [\"bad host\"]\n", "not a valid domain"),
        ("[network]\nallow = [\"@nosuchset\"]\n", "unknown named set"),
    ] {
        let p = root.join("p.toml");
        std::fs::write(&p, pol).unwrap();
        let o = t
            .warden()
            .args(["policy", "check", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{pol}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{pol}: {}",
            text(&o)
        );
        let o = t
            .warden()
            .args(["run", "--policy", p.to_str().unwrap(), "--", "/bin/true"])
            .current_dir(&t.ws)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(3),
            "run must refuse: {pol}: {}",
            text(&o)
        );
    }
}

/// Machines without user namespaces: no network namespace, so the proxy listens on the host's
/// loopback and Landlock (ABI 4+) allows TCP connects to that port only; seccomp denies UDP.
#[test]
fn without_user_namespaces_landlock_allows_only_the_proxy_port() {
    let t = T::new("nouserns");
    let hosts = t.hosts("127.0.0.1 test.local\n127.0.0.1 other.local\n");
    let policy = "[network]\nallow = [\"test.local\", \"127.0.0.1\"]\n";
    let p = t.port;
    // A host service the policy does not allow, which records every connection it accepts:
    // stream sockets of other protocols than TCP (MPTCP 262, SCTP 132, SMC 256) and the
    // `AF_SMC` family escape Landlock's TCP rules (attack review 74: MPTCP reached it).
    let secret = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sp = secret.local_addr().unwrap().port();
    secret.set_nonblocking(true).unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (reached, stop) = (reached.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if secret.accept().is_ok() {
                    reached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let script = format!(
        "/usr/bin/python3 -c 'import socket\nfor fam, proto in ((2, 262), (2, 132), (2, 256), (43, 0)):\n  try:\n    s = socket.socket(fam, socket.SOCK_STREAM, proto); s.settimeout(3); s.connect((\"127.0.0.1\", {sp})); print(\"ESCAPED\", fam, proto)\n  except OSError as e:\n    print(\"refused\", fam, proto, e.errno)'; \
         echo proxy=$HTTP_PROXY; curl -s http://test.local:{p}/hello.txt; \
         curl -s -o /dev/null -w 'denied=%{{http_code}}\\n' http://other.local:{p}/hello.txt; \
         curl -s --noproxy '*' --max-time 5 http://127.0.0.1:{p}/hello.txt; echo direct-rc=$?; \
         /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\", (\"127.0.0.1\", 53))' 2>&1 | tail -1; echo udp-rc=$?; \
         echo planted > \"$HOME/.bashrc\"; echo home-rc=$?; echo planted > /tmp/warden-nouserns-planted; \
         echo ok > ws-file; echo tmp > \"$TMPDIR/x\" && echo tmpdir-ok"
    );
    let o = t.run_with(
        &["--simulate-no-userns", "--best-effort"],
        policy,
        &hosts,
        &script,
    );
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a host port the policy does not allow was reached:\n{}",
        text(&o)
    );
    assert!(
        !s.contains("ESCAPED") && s.matches("refused").count() == 4,
        "{}",
        text(&o)
    );
    assert!(
        s.contains("proxy=http://127.0.0.1:") && !s.contains("proxy=http://127.0.0.1:3128"),
        "{}",
        text(&o)
    );
    assert!(
        s.contains("hello through warden"),
        "the proxy port works:\n{}",
        text(&o)
    );
    assert!(s.contains("denied=403"), "{}", text(&o));
    assert!(
        !s.contains("direct-rc=0"),
        "a direct TCP connect must fail:\n{}",
        text(&o)
    );
    assert!(
        s.contains("udp-rc=1")
            || s.contains("PermissionError")
            || s.contains("Operation not permitted"),
        "UDP must fail:\n{}",
        text(&o)
    );
    // Without a mount namespace `$HOME` is the real home: it must not be writable.
    assert!(
        !t.root.join("home/.bashrc").exists(),
        "the real home was written:\n{}",
        text(&o)
    );
    assert!(
        !Path::new("/tmp/warden-nouserns-planted").exists(),
        "the real /tmp was written:\n{}",
        text(&o)
    );
    assert!(
        s.contains("tmpdir-ok"),
        "a private TMPDIR works:\n{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ws-file")).unwrap_or_default(),
        "ok\n",
        "the workspace stays writable:\n{}",
        text(&o)
    );
}

/// A session started by an ordinary user (not root) joins the user and network namespaces
/// made early, beside the plan (`warden_sandbox::idmap::Early::finish_own`): a network
/// namespace of its own with only a loopback device, which is up (a connection to
/// 127.0.0.1 inside works), the user's own ids inside, and its files owned by that user on
/// the host.
#[test]
fn an_ordinary_users_session_gets_its_own_network_namespace_with_loopback_up() {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (runs a session as uid 65534)");
        return;
    }
    let s = Scratch::beside("warden-net", "ordinary");
    let script = "id -u; readlink /proc/self/ns/net; cut -d: -f1 /proc/net/dev | tail -n +3; \
                  /usr/bin/python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); \
                  s.listen(); c=socket.create_connection(s.getsockname(), timeout=2); print('loopback-up')\"; \
                  echo made > made.txt";
    let o = (s.warden_as_nobody())
        .args(["run", "--", "sh", "-c", script])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"65534"), "{out}");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("net:[")),
        "{out}"
    );
    assert_ne!(
        Some(&host_net.to_string_lossy().as_ref()),
        lines.get(1),
        "{out}"
    );
    assert_eq!(lines.get(2), Some(&"lo"), "only a loopback device: {out}");
    assert_eq!(lines.get(3), Some(&"loopback-up"), "{out}");
    // Judged on the host: the file is there, the user's.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(s.ws.join("made.txt")).expect("made.txt on the host");
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
}
