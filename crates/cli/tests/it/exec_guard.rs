//! Exec-guard integration tests (seccomp user-notification backend) through `warden run`:
//! the evasion corpus against a denied copy of a real program (curl), in enforce and audit
//! mode; what must keep working; and the rename/string-swap races.

use super::common::warden;
use super::common::{text, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::beside("warden-eg", name))
    }
    /// These tests measure the exec guard alone: the risk score (which would freeze a
    /// session running the whole evasion corpus; see tests/it/risk.rs) is off.
    fn policy(&self, text: &str) -> String {
        let p = self.root.join("policy.toml");
        std::fs::write(&p, format!("{text}\n[risk]\nenabled = false\n")).unwrap();
        p.display().to_string()
    }
    /// Hermetic: the scratch `$HOME`, never the developer's `~/.config/warden`.
    fn run(&self, args: &[&str], script: &str) -> Output {
        self.warden()
            .arg("run")
            .args(args)
            .args(["--", "/bin/bash", "-c", script])
            .current_dir(&self.ws)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn cc(&self, name: &str, src: &str, extra: &[&str]) -> PathBuf {
        let c = self.root.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let out = self.ws.join(name);
        let st = Command::new("cc")
            .arg(&c)
            .arg("-o")
            .arg(&out)
            .args(extra)
            .status()
            .unwrap();
        assert!(st.success(), "cc {name}");
        out
    }
}

const DENY_CURL: &str = "[exec]\ndeny = [\"curl\"]\n";

/// Runs `cmd` and prints `RAN <name>` if curl's code ran (its --version output), else `denied <name>`.
fn case(name: &str, cmd: &str) -> String {
    format!("out=$( {cmd} 2>&1 ); case \"$out\" in *libcurl*) echo \"RAN {name}\";; *) echo \"denied {name}\";; esac\n")
}

const CORPUS: &[(&str, &str)] = &[
    ("direct", "/usr/bin/curl --version"),
    ("proc-self-root", "/proc/self/root/usr/bin/curl --version"),
    ("copy", "./c-copy --version"),
    ("rename", "./c-renamed --version"),
    ("hardlink", "./c-hard --version"),
    ("symlink", "./c-sym --version"),
    ("proc-self-fd", "/usr/bin/python3 -c 'import os; fd=os.open(\"./c-copy\", os.O_RDONLY); os.execv(\"/proc/self/fd/%d\" % fd, [\"curl\",\"--version\"])'"),
    ("fexecve", "/usr/bin/python3 -c 'import os; fd=os.open(\"./c-copy\", os.O_RDONLY); os.execve(fd, [\"curl\",\"--version\"], {})'"),
    ("memfd", "/usr/bin/python3 -c 'import os; fd=os.memfd_create(\"x\"); os.write(fd, open(\"/usr/bin/curl\",\"rb\").read()); os.execv(\"/proc/self/fd/%d\" % fd, [\"curl\",\"--version\"])'"),
    ("ld.so", "/lib64/ld-linux-x86-64.so.2 ./c-copy --version"),
    ("ld.so-proc-root", "/proc/self/root/lib64/ld-linux-x86-64.so.2 ./c-copy --version"),
    ("python-subprocess", "/usr/bin/python3 -c 'import subprocess; print(subprocess.run([\"./c-copy\",\"--version\"],capture_output=True).stdout.decode())'"),
    ("perl-exec", "perl -e 'exec \"./c-copy\", \"--version\"'"),
    ("sh-c", "sh -c './c-copy --version'"),
    ("env", "env ./c-copy --version"),
    ("xargs", "echo --version | xargs ./c-copy"),
    ("find-exec", "find . -name c-copy -exec {} --version \\;"),
    ("shebang", "./script-curl --version"),
];

fn setup_copies(t: &T) {
    for n in ["c-copy", "c-renamed0"] {
        std::fs::copy("/usr/bin/curl", t.ws.join(n)).unwrap();
    }
    std::fs::rename(t.ws.join("c-renamed0"), t.ws.join("c-renamed")).unwrap();
    std::fs::hard_link(t.ws.join("c-copy"), t.ws.join("c-hard")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/curl", t.ws.join("c-sym")).unwrap();
    std::fs::write(t.ws.join("script-curl"), "#!/usr/bin/curl\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.ws.join("script-curl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn exec_identity_corpus_is_denied_in_enforce_mode() {
    let t = T::new("corpus");
    setup_copies(&t);
    let p = t.policy(DENY_CURL);
    let mut script = String::new();
    for (n, c) in CORPUS {
        script.push_str(&case(n, c));
    }
    script.push_str("/bin/true && ls /usr >/dev/null && echo ALLOWED-OK\n");
    let o = t.run(&["--policy", &p], &script);
    let s = String::from_utf8_lossy(&o.stdout);
    for (n, _) in CORPUS {
        assert!(
            s.contains(&format!("denied {n}\n")),
            "case {n} was not denied:\n{}",
            text(&o)
        );
    }
    assert!(
        s.contains("ALLOWED-OK"),
        "system tools must keep working:\n{}",
        text(&o)
    );
    // Sanity: without the rule, the same copies run (the test detects a real run).
    let o = t.run(&[], &case("copy", "./c-copy --version"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("RAN copy"),
        "{}",
        text(&o)
    );
}

#[test]
fn audit_mode_logs_but_allows() {
    let t = T::new("audit");
    setup_copies(&t);
    let home = t.root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let p = t.policy("[exec]\ndeny = [\"curl\"]\naction = \"audit\"\n");
    let o = warden(&home)
        .args([
            "run",
            "--policy",
            &p,
            "--",
            "/bin/bash",
            "-c",
            &case("copy", "./c-copy --version"),
        ])
        .current_dir(&t.ws)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("RAN copy"),
        "{}",
        text(&o)
    );
    let logs: String = std::fs::read_dir(home.join(".local/state/warden/sessions"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.contains("\"verdict\":\"audit_deny\"") && logs.contains("exec.deny:curl"),
        "audit decision not logged:\n{logs}"
    );
}

const LOADER: &str = r#"
#include <stdio.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <errno.h>
#include <string.h>
int main(int c, char **v) {
    int fd = open(v[2], O_RDONLY);
    if (fd < 0) { perror("open"); return 2; }
    if (!strcmp(v[1], "mmap")) {
        void *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { printf("DENIED %d\n", errno); return 1; }
        printf("MAPPED\n"); return 0;
    }
    void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { printf("MAPFAIL %d\n", errno); return 3; }
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC)) { printf("DENIED %d\n", errno); return 1; }
    printf("MAPPED\n"); return 0;
}
"#;

#[test]
fn executable_mappings_of_denied_content_fail() {
    let t = T::new("mmap");
    setup_copies(&t);
    t.cc("loader", LOADER, &[]);
    t.cc("libevil.so", "#include <stdio.h>\n__attribute__((constructor)) static void e(void){puts(\"EVIL-RAN\");}\n", &["-shared", "-fPIC"]);
    let evil = t.ws.join("libevil.so");
    let p = t.policy(&format!(
        "[exec]\ndeny = [\"curl\", \"{}\"]\n",
        evil.display()
    ));
    let script = "./loader mmap ./c-copy; ./loader mprotect ./c-copy; ./loader mmap /bin/true; ./loader mprotect /bin/true; \
                  LD_PRELOAD=./libevil.so /bin/true; echo preload-done; \
                  /usr/bin/python3 -c 'import ctypes; ctypes.CDLL(\"./libevil.so\")' 2>/dev/null || echo DLOPEN-DENIED";
    let o = t.run(&["--policy", &p], script);
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.len() >= 4, "{}", text(&o));
    assert_eq!(
        lines[0],
        "DENIED 13",
        "mmap PROT_EXEC of a denied file:\n{}",
        text(&o)
    );
    assert_eq!(
        lines[1],
        "DENIED 13",
        "mprotect RW->RX of a denied file mapping:\n{}",
        text(&o)
    );
    assert_eq!(
        lines[2],
        "MAPPED",
        "allowed content must map:\n{}",
        text(&o)
    );
    assert_eq!(lines[3], "MAPPED", "{}", text(&o));
    assert!(
        !s.contains("EVIL-RAN"),
        "a denied library's code ran:\n{}",
        text(&o)
    );
    assert!(
        s.contains("preload-done") && s.contains("DLOPEN-DENIED"),
        "{}",
        text(&o)
    );
}

#[test]
fn modified_after_check_with_restored_timestamps_is_rehashed() {
    let t = T::new("modify");
    let p = t.policy(DENY_CURL);
    std::fs::copy("/bin/true", t.ws.join("prog")).unwrap();
    let script = "./prog && echo FIRST-OK; m=$(stat -c %Y prog); cat /usr/bin/curl > prog; touch -d @$m prog; \
                  [ \"$(stat -c %Y prog)\" = \"$m\" ] && echo MTIME-RESTORED; ".to_string()
        + &case("modified", "./prog --version");
    let o = t.run(&["--policy", &p], &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("FIRST-OK") && s.contains("MTIME-RESTORED"),
        "{}",
        text(&o)
    );
    assert!(s.contains("denied modified"), "{}", text(&o));
}

#[test]
fn allowlist_mode_denies_unknown_and_padded_copies() {
    let t = T::new("allow");
    // Allow exactly what the test runs: bash, true, and their libraries and loader.
    let allow = vec!["/usr/bin/bash".to_string(), "/usr/bin/true".to_string()];
    let list = super::common::allow_list_with_libraries(&allow);
    let p = t.policy(&format!("[exec]\nmode = \"allowlist\"\nallow = [{list}]\n"));
    std::fs::copy("/usr/bin/true", t.ws.join("true-copy")).unwrap();
    let mut padded = std::fs::read("/usr/bin/true").unwrap();
    padded.push(0);
    std::fs::write(t.ws.join("true-padded"), padded).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.ws.join("true-padded"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    t.cc("unknown", "int main(){return 0;}", &[]);
    let o = t.run(
        &["--policy", &p, "--no-index"],
        "./true-copy && echo COPY-OK; ./true-padded && echo PADDED-RAN; ./unknown && echo UNKNOWN-RAN; true",
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("COPY-OK"),
        "an exact copy of allowed content runs:\n{}",
        text(&o)
    );
    assert!(!s.contains("PADDED-RAN"), "padded copy ran:\n{}", text(&o));
    assert!(
        !s.contains("UNKNOWN-RAN"),
        "unknown binary ran:\n{}",
        text(&o)
    );
    // Without --no-index and without an index, allowlist mode refuses to start.
    let home = t.root.join("emptyhome");
    std::fs::create_dir_all(&home).unwrap();
    let o = warden(&home)
        .args(["run", "--policy", &p, "--", "/bin/true"])
        .current_dir(&t.ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warden index"),
        "{}",
        text(&o)
    );
}

const SWAPPER: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>
static char path[64] = "./ok";
static volatile int stop = 0;
static void *flip(void *a) {
    while (!stop) { memcpy(path, "./bd", 5); memcpy(path, "./ok", 5); }
    return 0;
}
int main(void) {
    pthread_t t; pthread_create(&t, 0, flip, 0);
    time_t end = time(0) + 3;
    int n = 0;
    while (time(0) < end) {
        pid_t p = vfork();
        if (p == 0) {
            char *argv[] = {"x", "--version", 0};
            execv(path, argv);
            _exit(127);
        }
        int st; waitpid(p, &st, 0); n++;
    }
    stop = 1; pthread_join(t, 0);
    fprintf(stderr, "attempts %d\n", n);
    return 0;
}
"#;

#[test]
fn racing_path_swaps_never_run_denied_content() {
    let t = T::new("race");
    let p = t.policy(DENY_CURL);
    std::fs::copy("/bin/true", t.ws.join("ok")).unwrap();
    std::fs::copy("/usr/bin/curl", t.ws.join("bd")).unwrap();
    std::fs::copy("/bin/true", t.ws.join("good")).unwrap();
    std::fs::copy("/usr/bin/curl", t.ws.join("evil")).unwrap();
    t.cc("swapper", SWAPPER, &["-pthread"]);
    // 1) another thread rewrites the execve path string; 2) a rename race on the file.
    let script = "./swapper 2>&1 | grep -c libcurl; \
                  ( end=$((SECONDS+3)); while [ $SECONDS -lt $end ]; do cp -f evil t.new; mv -f t.new target; cp -f good t.new; mv -f t.new target; done ) & \
                  n=0; end=$((SECONDS+3)); hits=0; while [ $SECONDS -lt $end ]; do out=$(./target --version 2>/dev/null); case \"$out\" in *libcurl*) hits=$((hits+1));; esac; n=$((n+1)); done; wait; \
                  echo rename-hits $hits of $n";
    let o = t.run(&["--policy", &p], script);
    let s = String::from_utf8_lossy(&o.stdout);
    let first = s.lines().next().unwrap_or("");
    assert_eq!(
        first.trim(),
        "0",
        "denied content ran in the string-swap race:\n{}",
        text(&o)
    );
    assert!(
        s.contains("rename-hits 0 of"),
        "denied content ran in the rename race:\n{}",
        text(&o)
    );
    let attempts: u32 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        attempts > 20,
        "the race loop must actually run:\n{}",
        text(&o)
    );
}

#[test]
fn cargo_build_and_test_work_in_denylist_mode() {
    let t = T::new("cargo");
    let real_home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let rustup = std::env::var("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or(real_home.join(".rustup"));
    let cargo = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or(real_home.join(".cargo"));
    let p = t.policy(&format!(
        "[files]\nread = [\"{r}\", \"{c}\"]\n[env]\nset = {{ RUSTUP_HOME = \"{r}\", CARGO_HOME = \"{c}\" }}\n[exec]\ndeny = [\"curl\"]\n",
        r = rustup.display(),
        c = cargo.join("bin").display()
    ));
    let krate = t.ws.join("hello");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("src/main.rs"),
        "fn add(a: i32, b: i32) -> i32 { a + b }\nfn main() { println!(\"sum {}\", add(2, 3)); }\n#[test]\nfn adds() { assert_eq!(add(2, 2), 4); }\n",
    )
    .unwrap();
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        cargo.join("bin").display()
    );
    let o = t
        .warden()
        .args(["run", "--policy", &p, "--", "/bin/bash", "-c", "cd hello && cargo build -q --offline && ./target/debug/hello && cargo test -q --offline 2>&1 | tail -3"])
        .current_dir(&t.ws)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", krate.join("target"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("sum 5"),
        "cargo build output must run:\n{}",
        text(&o)
    );
    assert!(
        s.contains("test result: ok. 1 passed"),
        "cargo test must pass:\n{}",
        text(&o)
    );
}

#[test]
fn bad_exec_input_gets_precise_errors_and_no_run() {
    let t = T::new("badexec");
    let marker = t.ws.join("ran");
    let cmd = format!("touch {}", marker.display());
    // An unknown program name: a warning listing what was searched, the run goes on.
    let p = t.policy("[exec]\ndeny = [\"no-such-program-xyz\"]\n");
    let o = t.run(&["--policy", &p], "echo ran-ok");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no-such-program-xyz"),
        "{}",
        text(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("ran-ok"));
    // An unreadable / corrupted index: no run.
    let bad = t.root.join("bad.db");
    std::fs::write(&bad, b"this is not sqlite").unwrap();
    let p = t.policy(&format!(
        "[exec]\nmode = \"allowlist\"\nallow = [\"index:{}\"]\n",
        bad.display()
    ));
    let o = t.run(&["--policy", &p], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.db"),
        "{}",
        text(&o)
    );
    let p = t.policy("[exec]\ndeny = [\"sha256:1234\"]\n");
    let o = t.run(&["--policy", &p], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // A corrupted hash cache: a precise error, no run.
    let home = t.root.join("home");
    let cache = home.join(".local/state/warden/hash-cache.bin");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(&cache, b"WRDNHC02 garbage that is not a cache").unwrap();
    let o = warden(&home)
        .args(["run", "--", "/bin/bash", "-c", &cmd])
        .current_dir(&t.ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("hash-cache.bin is corrupted"),
        "{}",
        text(&o)
    );
    assert!(!marker.exists(), "ran despite bad exec input");
    // Removing it lets warden rebuild it.
    std::fs::remove_file(&cache).unwrap();
    let o = warden(&home)
        .args(["run", "--", "/bin/true"])
        .current_dir(&t.ws)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(cache.exists(), "the cache is rebuilt");
    let _ = Path::new("/");
}

/// Hash-cache poisoning through a package-cache overlay (review finding): a file in
/// `~/.cargo/registry` (an overlay whose upper layer reports its own device) gets harmless
/// bytes, every page dirtied through a writable shared mapping, an exec attempt while the
/// mapping is live (the guard hashes; the kernel says ETXTBSY), then curl's bytes copied
/// in through the mapping (pages already dirty: no new timestamps) and an exec. The second
/// exec must be judged on what the file holds. Judged on the host: the marker curl would
/// write (`-o`) is absent. The cache itself keeps working for the real curl's neighbours.
#[test]
fn a_stamp_cached_while_a_writer_held_the_file_vouches_for_nothing() {
    let Some(curl) = ["/usr/bin/curl", "/bin/curl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIP: no curl on this machine");
        return;
    };
    let t = T::new("overlay-poison");
    std::fs::create_dir_all(t.home.join(".cargo/registry")).unwrap();
    let pol = t.policy(DENY_CURL);
    let marker = t.ws.join("marker");
    let script = format!(
        r#"
import mmap, os, subprocess, time
cur = open({curl:?}, "rb").read()
p = os.path.expanduser("~/.cargo/registry/tool")
with open(p, "wb") as f:
    f.write(b"\0" * len(cur))
os.chmod(p, 0o755)
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, len(cur), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(0, len(cur), 4096):
    m[i] = 0
time.sleep(2.5)
try:
    subprocess.run([p, "--version"], capture_output=True)
except OSError as e:
    print("first exec:", e)
m[:] = cur
m.close()
os.close(fd)
try:
    r = subprocess.run([p, "-s", "-o", {marker:?}, "file:///etc/hostname"], capture_output=True)
    print("second exec:", r.returncode)
except OSError as e:
    print("second exec refused:", e)
print("DONE")
"#,
        marker = marker.display().to_string()
    );
    let o = t
        .warden()
        .args(["run", "--policy", &pol, "--", "python3", "-c", &script])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = text(&o);
    assert!(s.contains("DONE"), "{s}");
    assert!(
        !marker.exists(),
        "curl's code ran from a file the cache vouched for:\n{s}"
    );
    // The legitimate workflow: a copy of an allowed program in the cache overlay runs.
    let o = t.run(
        &["--policy", &pol],
        "cp /bin/true ~/.cargo/registry/t2 && ~/.cargo/registry/t2 && echo RAN-T2",
    );
    assert!(text(&o).contains("RAN-T2"), "{}", text(&o));
}

/// Builds an ELF file with no code of its own whose program interpreter (`PT_INTERP`) is
/// `interp` (a static binary, mapped and run by the kernel without another exec); its
/// `PT_TLS` is copied from `interp` so that binary's start-up finds its TLS.
const CARRIER_PY: &str = r#"
import struct, sys
interp_path, out = sys.argv[1], sys.argv[2]
b = open(interp_path, "rb").read()
phoff, = struct.unpack_from("<Q", b, 32); phnum, = struct.unpack_from("<H", b, 56)
tls = next(b[phoff+i*56:phoff+i*56+56] for i in range(phnum)
           if struct.unpack_from("<I", b, phoff+i*56)[0] == 7)
interp = interp_path.encode() + b"\0"
BASE, nph = 0x20000000, 5
ioff = 64 + nph*56
coff = (ioff + len(interp) + 15) & ~15
code = b"\xeb\xfe"
fsz = coff + len(code)
def ph(t, fl, off, va, fs, ms, al): return struct.pack("<IIQQQQQQ", t, fl, off, va, va, fs, ms, al)
phs = ph(6, 4, 64, BASE+64, nph*56, nph*56, 8) + ph(3, 4, ioff, BASE+ioff, len(interp), len(interp), 1)
phs += ph(1, 5, 0, BASE, fsz, fsz, 0x1000) + tls + ph(0x6474e551, 6, 0, 0, 0, 0, 16)
eh = b"\x7fELF" + bytes([2,1,1,0]) + b"\0"*8 + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, BASE+coff, 64, 0, 0, 64, 56, nph, 64, 0, 0)
d = eh + phs + interp
open(out, "wb").write(d + b"\0"*(coff-len(d)) + code)
"#;

/// `/usr/bin/busybox` (a static program), or `None` with a note when the machine lacks it.
fn busybox() -> Option<&'static Path> {
    let b = Path::new("/usr/bin/busybox");
    if !b.exists() {
        eprintln!("skipped: no /usr/bin/busybox (scripts/bootstrap.sh installs busybox-static)");
        return None;
    }
    Some(b)
}

/// Writes `ws/carrier`, an executable ELF file whose program interpreter is `interp`.
fn carrier(t: &T, interp: &Path) -> PathBuf {
    let carrier = t.ws.join("carrier");
    let st = Command::new("python3")
        .args(["-c", CARRIER_PY])
        .arg(interp)
        .arg(&carrier)
        .status()
        .unwrap();
    assert!(st.success(), "carrier generator");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&carrier, std::fs::Permissions::from_mode(0o755)).unwrap();
    carrier
}

/// A denied program run as another ELF file's program interpreter: the kernel maps and
/// starts it without an exec of its own, so only a look at `PT_INTERP` sees it. Judged on
/// the host: the marker the denied busybox would create stays absent, and the run says
/// why; ordinary dynamically linked programs (ld.so as their interpreter) still run.
#[test]
fn a_denied_program_as_program_interpreter_is_denied() {
    let Some(busybox) = busybox() else { return };
    let t = T::new("pt-interp");
    carrier(&t, busybox);
    let policy = t.policy("[exec]\ndeny = [\"busybox\"]\n");
    let o = t.run(
        &["--policy", &policy],
        "(exec -a touch ./carrier MARKER); echo rc=$?; /bin/true && ls . > /dev/null && echo LEGIT-OK",
    );
    let all = text(&o);
    assert!(
        !t.ws.join("MARKER").exists(),
        "the denied busybox ran as the carrier's interpreter:\n{all}"
    );
    assert!(all.contains("LEGIT-OK"), "{all}");
    assert!(all.contains("rc=126"), "the exec was not refused:\n{all}");
}

/// The program interpreter swapped between the pre-check and the kernel's own open of
/// `PT_INTERP` (a race: the pre-check reads the path, then the kernel opens it again). A
/// carrier names `ws/ld` as its interpreter while another process keeps renaming a benign
/// busybox (its `touch` applet renamed, so it creates nothing) and the denied busybox over
/// `ld`. Before the post-exec check looked at the interpreter the kernel mapped, 38 of 300
/// attempts ran the denied busybox. Judged on the host: no marker exists, the race was run
/// (the log has denials), and ordinary programs still run.
#[test]
fn a_program_interpreter_swapped_after_the_check_is_caught() {
    let Some(busybox) = busybox() else { return };
    let t = T::new("interp-swap");
    let bytes = std::fs::read(busybox).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"\0touch\0")
        .expect("busybox has a touch applet");
    let mut benign = bytes.clone();
    benign[at + 5] = b'i';
    use std::os::unix::fs::PermissionsExt;
    for (name, content) in [("B", &benign), ("D", &bytes), ("ld", &benign)] {
        let p = t.ws.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    carrier(&t, &t.ws.join("ld"));
    let policy = t.policy("[exec]\ndeny = [\"busybox\"]\n");
    let swap = "import os\nwhile True:\n  for s in ('D', 'B'):\n    try: os.unlink('t')\n    except FileNotFoundError: pass\n    os.link(s, 't'); os.rename('t', 'ld')\n";
    std::fs::write(t.ws.join("swap.py"), swap).unwrap();
    let o = t.run(
        &["--policy", &policy],
        "python3 swap.py & sp=$!; for i in $(seq 300); do (exec -a touch ./carrier M$i) 2>/dev/null; done; \
         kill $sp; /bin/true && ls /usr > /dev/null && echo LEGIT-OK",
    );
    let all = text(&o);
    let ran: Vec<String> = std::fs::read_dir(&t.ws)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('M'))
        .collect();
    assert!(
        ran.is_empty(),
        "the denied busybox ran as a swapped-in interpreter ({} times: {ran:?}):\n{all}",
        ran.len()
    );
    assert!(all.contains("LEGIT-OK"), "{all}");
    let denied: u64 = all
        .split("denied (exec ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        denied >= 10,
        "the swap was not raced (exec denials: {denied}):\n{all}"
    );
}

/// A userspace loader for a static ET_EXEC program (busybox): maps its `PT_LOAD` segments
/// from the file with `mmap(PROT_EXEC)` (what the guard decides) and jumps to its entry.
const LOADER_C: &str = r#"/* Minimal userspace loader for a static ET_EXEC (e.g. busybox): maps its PT_LOAD segments from
   the file (so the exec guard sees mmap(PROT_EXEC) of the file), builds a stack, jumps to entry. */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define PG 4096UL
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: ldr FILE ARGV0 [ARGS...]\n"); return 2; }
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  Elf64_Ehdr eh; pread(fd, &eh, sizeof eh, 0);
  Elf64_Phdr ph[32]; pread(fd, ph, sizeof(Elf64_Phdr) * eh.e_phnum, eh.e_phoff);
  for (int i = 0; i < eh.e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD) continue;
    unsigned long s = ph[i].p_vaddr & ~(PG - 1), o = ph[i].p_offset & ~(PG - 1);
    unsigned long fe = ph[i].p_vaddr + ph[i].p_filesz, me = ph[i].p_vaddr + ph[i].p_memsz;
    int prot = (ph[i].p_flags & PF_R ? PROT_READ : 0) | (ph[i].p_flags & PF_W ? PROT_WRITE : 0) |
               (ph[i].p_flags & PF_X ? PROT_EXEC : 0);
    void *r = mmap((void *)s, (fe - s + PG - 1) & ~(PG - 1), prot, MAP_PRIVATE | MAP_FIXED, fd, o);
    if (r == MAP_FAILED) { perror("mmap segment"); return 1; }
    if (me > fe) {
      unsigned long fpe = (fe + PG - 1) & ~(PG - 1);
      memset((void *)fe, 0, fpe - fe);
      if (me > fpe) mmap((void *)fpe, me - fpe, prot, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
    }
  }
  size_t SZ = 1 << 20;
  char *stk = mmap(0, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *str = stk + SZ - 65536;
  int n = argc - 2;
  unsigned long *sp = (unsigned long *)(stk + SZ / 2), *p = sp;
  *p++ = n;
  for (int i = 0; i < n; i++) { strcpy(str, argv[i + 2]); *p++ = (unsigned long)str; str += strlen(str) + 1; }
  *p++ = 0; *p++ = 0; /* argv end, envp end */
  char *rnd = str; memset(rnd, 0x41, 16); str += 16;
  unsigned long aux[][2] = {{AT_PHDR, 0x400000 + eh.e_phoff}, {AT_PHENT, sizeof(Elf64_Phdr)},
    {AT_PHNUM, eh.e_phnum}, {AT_PAGESZ, PG}, {AT_ENTRY, eh.e_entry}, {AT_UID, 0}, {AT_EUID, 0},
    {AT_GID, 0}, {AT_EGID, 0}, {AT_SECURE, 0}, {AT_RANDOM, (unsigned long)rnd}, {AT_NULL, 0}};
  memcpy(p, aux, sizeof aux);
  __asm__ volatile("mov %0, %%rsp\n xor %%edx, %%edx\n jmp *%1" ::"r"(sp), "r"(eh.e_entry) : "memory");
  return 0;
}
"#;

/// The package caches (`[files] cache`: `~/.npm` here) are overlays whose upper layer is a
/// private tmpfs the agent writes. Found by an attack review:
/// - their stamps vouched for content (an overlay has its own device, outside every write
///   root): a page of a file made writable through a shared mapping, then rewritten to
///   busybox's bytes without a page fault (the stamp unchanged), was mapped executable on the
///   stale cache entry and ran;
/// - the post-exec check took the executable's own mappings there for another file (`maps`
///   shows the layer's inode) and killed programs: non-PIE ones as root (`map_files` names
///   have no leading zeros), every one without root.
///
/// Judged on the host: no marker, and programs in the cache run.
#[test]
fn package_cache_overlays_neither_vouch_for_content_nor_break_programs() {
    let Some(busybox) = busybox() else { return };
    let t = T::new("overlay-cache");
    std::fs::create_dir_all(t.home.join(".npm")).unwrap();
    t.cc("ldr", LOADER_C, &["-O1"]);
    t.cc("nopie", "int main(void){return 0;}", &["-no-pie"]);
    let attack = format!(
        r#"
import ctypes, os, subprocess, time
F, LD, W = os.path.expanduser("~/.npm/bb"), "./ldr", os.getcwd()
bb = open("{bb}", "rb").read()
OFF = len(bb) - 1; PG = OFF & ~4095
a = bytearray(bb); a[OFF] ^= 0xff
open(F, "wb").write(a); os.chmod(F, 0o755)
libc = ctypes.CDLL(None); libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(F, os.O_RDWR)
m = (ctypes.c_ubyte * 4096).from_address(libc.mmap(None, 4096, 3, 1, fd, PG))
m[OFF - PG] = a[OFF]
os.close(fd)
time.sleep(2.5)
subprocess.run([LD, F, "true"])
m[OFF - PG] = bb[OFF]
subprocess.run([LD, F, "touch", W + "/MARKER"])
"#,
        bb = busybox.display()
    );
    std::fs::write(t.ws.join("attack.py"), attack).unwrap();
    let policy = t.policy("[exec]\ndeny = [\"busybox\"]\n");
    let o = t.run(
        &["--policy", &policy],
        "cp ./nopie ~/.npm/nopie && ~/.npm/nopie && echo NOPIE-OK; \
         cp /bin/true ~/.npm/t && ~/.npm/t && echo PIE-OK; python3 attack.py",
    );
    let all = text(&o);
    assert!(
        !t.ws.join("MARKER").exists(),
        "busybox's bytes ran from the cache overlay on a stale hash:\n{all}"
    );
    assert!(
        all.contains("NOPIE-OK"),
        "a non-PIE program in ~/.npm was stopped:\n{all}"
    );
    assert!(
        all.contains("PIE-OK"),
        "a program in ~/.npm was stopped:\n{all}"
    );
}

/// Review F9: an exec of a 4 GiB sparse file the agent made held the supervisor hashing for
/// tens of seconds, then let it through. Now a file an agent can write over the 512 MiB cap
/// is denied at once (rule `exec.hash_limit`, with how to allow it, in the session log), and
/// an ordinary program (a copy of `true` in the workspace) still runs.
#[test]
fn oversized_exec_is_denied_at_once_with_the_rule() {
    let t = T::new("bighash");
    let p = t.policy(DENY_CURL);
    let o = t.run(
        &["--policy", &p],
        "truncate -s 4G big && chmod +x big; cp /bin/true small; \
         s=$(date +%s%N); ./big 2>/dev/null; rc=$?; e=$(date +%s%N); \
         echo \"big rc=$rc ms=$(( (e - s) / 1000000 ))\"; ./small && echo SMALL-OK",
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("SMALL-OK"),
        "an ordinary exec failed:\n{}",
        text(&o)
    );
    let ms: u64 = s
        .split("ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no timing:\n{}", text(&o)));
    assert!(ms < 3000, "the exec took {ms} ms to decide:\n{}", text(&o));
    let log = session_logs(&t);
    let line = log
        .lines()
        .find(|l| l.contains("\"exec.hash_limit\""))
        .unwrap_or_else(|| panic!("no exec.hash_limit decision:\n{log}\n{}", text(&o)));
    assert!(
        line.contains("\"deny\"") && line.contains("512 MiB") && line.contains("to allow it"),
        "{line}"
    );
}

/// Races a mapping decision from a second thread. `maprace ALLOWED DENIED SECONDS m|p`:
/// - `m`: a thread flips descriptor 100 between the two files (`dup2`) while the main thread
///   maps descriptor 100 `PROT_READ|PROT_EXEC`;
/// - `p`: the main thread puts anonymous memory at an address and `mprotect`s it
///   `PROT_READ|PROT_EXEC`, while a thread maps DENIED (`PROT_READ`) over it once. Both
///   threads start from the same moment (the main thread waits until the mapping thread is
///   running, so a busy machine cannot leave it asleep until the decision is over) and each
///   waits a random delay of its own (spread evenly over time scales from nothing to a few
///   milliseconds), so the mapping lands sometimes before the supervisor looks, sometimes
///   while it decides, sometimes after, on a fast machine or a busy one.
///
/// Whenever an executable mapping holds DENIED's bytes, it jumps there (DENIED is code that
/// creates `PWNED` in the working directory and exits). It runs for SECONDS, and on a machine
/// too busy for 100 attempts with at least 5 of each outcome by then, for up to 30 seconds
/// more. Prints `attempts N mapped M`.
const MAPRACE_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static int fa, fdd; static char dbuf[64];
static volatile int stop, go, ready, done, wait_main, wait_map;
static char *X;
static sigjmp_buf jb;
static void segv(int s) { (void)s; siglongjmp(jb, 1); }
static void spin(int n) { for (volatile int i = 0; i < n; i++) ; }
static void *flip_fd(void *a) { (void)a; while (!stop) { dup2(fa, 100); dup2(fdd, 100); } return 0; }
static void *map_once(void *a) {
    (void)a;
    for (;;) {
        while (!go && !stop) ;
        if (stop) return 0;
        ready = 1;
        spin(wait_map);
        mmap(X, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fdd, 0);
        go = 0; done = 1;
    }
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    fa = open(argv[1], O_RDONLY); fdd = open(argv[2], O_RDONLY);
    if (fa < 0 || fdd < 0 || pread(fdd, dbuf, sizeof dbuf, 0) != sizeof dbuf) return 2;
    signal(SIGSEGV, segv);
    int mode = argv[4][0];
    X = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    dup2(fa, 100);
    pthread_t t; pthread_create(&t, 0, mode == 'm' ? flip_fd : map_once, 0);
    time_t end = time(0) + atoi(argv[3]), limit = end + 30;
    long n = 0, mapped = 0;
    while (time(0) < end || ((n < 100 || mapped < 5 || n - mapped < 5) && time(0) < limit)) {
        n++;
        if (mode == 'm') {
            char *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, 100, 0);
            if (p == MAP_FAILED) continue;
            mapped++;
            if (memcmp(p, dbuf, sizeof dbuf) == 0) ((void (*)(void))p)();
            munmap(p, 4096);
        } else {
            mmap(X, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
            wait_main = rand() % (1 << rand() % 16); wait_map = rand() % (1 << rand() % 22);
            done = 0; ready = 0; go = 1;
            while (!ready) ;
            spin(wait_main);
            int r = mprotect(X, 4096, PROT_READ | PROT_EXEC);
            while (!done) ;
            if (r == 0) mapped++;
            if (memcmp(X, dbuf, sizeof dbuf) == 0 && sigsetjmp(jb, 1) == 0) ((void (*)(void))X)();
        }
    }
    stop = 1; pthread_join(t, 0);
    printf("attempts %ld mapped %ld\n", n, mapped);
    return 0;
}
"#;

/// x86-64 code: `creat("PWNED", 0644); exit_group(0)`, padded to 64 bytes.
fn pwned_code() -> Vec<u8> {
    let mut c = vec![
        0x48, 0x8d, 0x3d, 0x18, 0, 0, 0, // lea rdi, [rip+24] ("PWNED")
        0xbe, 0xa4, 0x01, 0, 0, // mov esi, 0644
        0xb8, 85, 0, 0, 0, // mov eax, SYS_creat
        0x0f, 0x05, // syscall
        0xbf, 0, 0, 0, 0, // mov edi, 0
        0xb8, 231, 0, 0, 0, // mov eax, SYS_exit_group
        0x0f, 0x05, // syscall
    ];
    c.extend_from_slice(b"PWNED\0");
    c.resize(64, 0x90);
    c
}

/// A mapping decision raced from a second thread: the descriptor swapped by `dup2`, or a
/// denied file mapped over the range, between the supervisor's check and the kernel's use.
/// Before the threads sharing that state were held still for the decision, 473 of 2,000
/// `mmap`s mapped the denied file executable. Judged on the host: the denied code (which
/// creates `PWNED`) never ran, the race ran both ways, and the allowed mappings worked.
#[test]
fn mapping_decisions_raced_by_another_thread_hold() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let t = T::new("maprace");
    t.cc("maprace", MAPRACE_C, &["-O1", "-pthread"]);
    let policy = pwned_setup(&t);
    let o = t.run(
        &["--policy", &policy],
        "./maprace allowed.bin denied.bin 2 m; ./maprace allowed.bin denied.bin 2 p; \
         /bin/true && python3 -c 'import json' && echo LEGIT-OK",
    );
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "denied code ran through a raced mapping decision:\n{all}"
    );
    assert!(all.contains("LEGIT-OK"), "{all}");
    let runs: Vec<(u64, u64)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                ["attempts", n, "mapped", m] => Some((n.parse().ok()?, m.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(runs.len(), 2, "both races ran to the end:\n{all}");
    for (n, m) in runs {
        assert!(
            n >= 100 && m > 0 && m < n,
            "the race must run, and be both allowed and refused ({m} of {n} mapped):\n{all}"
        );
    }
}

/// Executable mappings made by a thread other than the process's first: Python importing
/// C extensions from a thread, and a Node worker (its isolate maps code from the `node`
/// binary). The guard takes the descriptor from that thread (`PIDFD_THREAD`); before, it
/// asked for the thread id's process, failed, and denied every such mapping (the import
/// failed, Node aborted).
#[test]
fn mappings_made_by_worker_threads_work() {
    let t = T::new("threads");
    let p = t.policy(DENY_CURL);
    let py = "import threading\n\
              def f():\n    import _ctypes, _decimal, _sqlite3, _json; print('PY-THREAD-OK')\n\
              t = threading.Thread(target=f); t.start(); t.join()\n";
    std::fs::write(t.ws.join("t.py"), py).unwrap();
    let js = "const {Worker} = require('worker_threads');\n\
              new Worker('require(\"worker_threads\").parentPort.postMessage(6*7)', {eval: true})\n\
              .on('message', m => console.log('NODE-WORKER-' + m));\n";
    std::fs::write(t.ws.join("w.js"), js).unwrap();
    let o = t.run(
        &["--policy", &p],
        "python3 t.py; if command -v node >/dev/null; then node w.js; else echo NODE-WORKER-42; fi",
    );
    let all = text(&o);
    assert!(all.contains("PY-THREAD-OK"), "{all}");
    assert!(all.contains("NODE-WORKER-42"), "{all}");
}

/// `clone` variants: prints `NAME refused` or `NAME ran` for the sharing the sandbox refuses
/// (a descriptor table or address space shared by two processes, which the exec guard could
/// not hold still), then checks threads, `fork`, `vfork` and `posix_spawn` still work.
const CLONES_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static int child(void *a) { (void)a; _exit(0); }
static void *thr(void *a) { return a; }
static void try(const char *name, int flags) {
    char *stack = malloc(65536);
    int pid = clone(child, stack + 65536, flags | SIGCHLD, 0);
    if (pid < 0) { printf("%s refused\n", name); return; }
    waitpid(pid, 0, 0);
    printf("%s ran\n", name);
}
int main(void) {
    try("files", CLONE_FILES);
    try("vm", CLONE_VM);
    try("vm-parent-vfork", CLONE_VM | CLONE_VFORK | CLONE_PARENT);
    try("vm-vfork", CLONE_VM | CLONE_VFORK);
    pthread_t t; int ok = pthread_create(&t, 0, thr, 0) == 0 && pthread_join(t, 0) == 0;
    int f = fork(); if (f == 0) _exit(0); ok &= f > 0 && waitpid(f, 0, 0) == f;
    int v = vfork(); if (v == 0) _exit(0); ok &= v > 0 && waitpid(v, 0, 0) == v;
    char *argv[] = {"true", 0}; pid_t s;
    ok &= posix_spawn(&s, "/bin/true", 0, 0, argv, environ) == 0 && waitpid(s, 0, 0) == s;
    printf(ok ? "ORDINARY-OK\n" : "ORDINARY-BROKEN\n");
    return 0;
}
"#;

/// The sandbox refuses `clone` that shares a descriptor table or an address space between
/// processes (what the exec guard's thread holding relies on); threads, `fork`, `vfork`
/// (`CLONE_VM|CLONE_VFORK`) and `posix_spawn` keep working.
#[test]
fn processes_cannot_share_descriptor_tables_or_address_spaces() {
    let t = T::new("clones");
    let p = t.policy(DENY_CURL);
    t.cc("clones", CLONES_C, &["-pthread"]);
    let o = t.run(&["--policy", &p], "./clones");
    let all = text(&o);
    for refused in ["files", "vm", "vm-parent-vfork"] {
        assert!(
            all.contains(&format!("{refused} refused")),
            "{refused}:\n{all}"
        );
    }
    assert!(all.contains("vm-vfork ran"), "{all}");
    assert!(all.contains("ORDINARY-OK"), "{all}");
}

/// Maps FILE (`PROT_READ|PROT_EXEC`), rewrites it in place through a second descriptor with
/// DENIED's first 64 bytes (opened by the name WRITE_AS when given), and jumps to the
/// mapping when it shows them (DENIED creates `PWNED`); then calls the mapping's own code
/// and prints `REWRITE-HELD`. `rewrite FILE DENIED [WRITE_AS]`.
const REWRITE_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    char d[64]; int dfd = open(argv[2], O_RDONLY);
    if (dfd < 0 || read(dfd, d, 64) != 64) return 2;
    int fd = open(argv[1], O_RDONLY);
    char *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    int w = open(argc > 3 ? argv[3] : argv[1], O_WRONLY);
    if (w < 0 || pwrite(w, d, 64, 0) != 64) { perror("rewrite"); return 1; }
    if (memcmp(p, d, 64) == 0) ((void (*)(void))p)();
    ((void (*)(void))p)();
    printf("REWRITE-HELD\n");
    return 0;
}
"#;

/// Maps FILE `PROT_READ`, then `mprotect`s it `PROT_READ|PROT_EXEC`: prints `FILE: ALLOWED`
/// or `FILE: refused`.
const MPROTECT_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    char *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (argc < 2 || p == MAP_FAILED) return 1;
    printf("%s: %s\n", argv[1], mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0 ? "ALLOWED" : "refused");
    return 0;
}
"#;

/// Legitimate loader and JIT work: map a system library read-only, make it executable and
/// unmap it at once, three times in each of 30 processes. The `mprotect` decision's recheck read the range after the
/// thread was back and had already unmapped it, took "no mapping" for a change, and killed
/// the process (attack review 87: 4 to 5 runs of 5).
#[test]
fn a_mapping_unmapped_right_after_its_mprotect_is_no_change() {
    let t = T::new("munmapfast");
    t.cc(
        "munmapfast",
        r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY), ok = 0;
    for (int i = 0; i < 3; i++) {
        char *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) return 1;
        ok += mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0;
        munmap(p, 4096);
    }
    printf("mprotect allowed %d of 3; alive\n", ok);
    return 0;
}
"#,
        &[],
    );
    // Thirty system libraries: each one's first decision is not cached yet (the slow path,
    // where the process was killed most often).
    let libs: Vec<String> = std::fs::read_dir("/usr/lib/x86_64-linux-gnu")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("lib") && n.contains(".so.") && p.is_file()
        })
        .map(|p| p.display().to_string())
        .take(30)
        .collect();
    assert!(libs.len() >= 10, "{libs:?}");
    let policy = pwned_setup(&t);
    let o = t.run(
        &["--policy", &policy],
        &format!(
            "for l in {}; do ./munmapfast $l; echo rc=$?; done",
            libs.join(" ")
        ),
    );
    let all = text(&o);
    let n = libs.len();
    assert_eq!(
        all.matches("mprotect allowed 3 of 3; alive").count(),
        n,
        "{all}"
    );
    assert_eq!(all.matches("rc=0").count(), n, "{all}");
}

/// A file the agent can write, mapped executable (allowed), then rewritten in place with
/// denied code: the mapping is made from a sealed copy of the bytes decided, so the rewrite
/// reaches the file (checked on the host) but not the mapping. Before, a private mapping's
/// clean pages followed the page cache and the denied code ran. A Rust build (proc macros
/// are `dlopen`ed from `target/`) is covered by `cargo_build_and_test_work_in_denylist_mode`.
#[test]
fn a_writable_file_rewritten_after_its_mapping_runs_only_what_was_decided() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let t = T::new("rewrite");
    std::fs::create_dir_all(t.home.join(".npm")).unwrap();
    t.cc("rewrite", REWRITE_C, &["-O1"]);
    let policy = pwned_setup(&t);
    std::fs::copy(t.ws.join("allowed.bin"), t.ws.join("lib.bin")).unwrap();
    t.cc("mprot", MPROTECT_C, &[]);
    let o = t.run(
        &["--policy", &policy],
        "./rewrite lib.bin denied.bin; cp allowed.bin ~/.npm/lib.bin; ./rewrite ~/.npm/lib.bin denied.bin; \
         ./mprot lib.bin; ./mprot ~/.npm/lib.bin; ./mprot /usr/lib/x86_64-linux-gnu/libc.so.6",
    );
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    // The workspace and a package-cache overlay (whose files have per-layer device numbers).
    assert_eq!(all.matches("REWRITE-HELD").count(), 2, "{all}");
    // In place, no copy can stand in: refused for a file the agent can write, by rule.
    assert_eq!(all.matches("lib.bin: refused").count(), 2, "{all}");
    assert!(all.contains("libc.so.6: ALLOWED"), "{all}");
    assert_eq!(
        std::fs::read(t.ws.join("lib.bin")).unwrap(),
        pwned_code(),
        "the rewrite must have reached the file"
    );
}

/// Makes a btrfs subvolume NAME in the current directory (one unprivileged ioctl).
const SUBVOL_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/btrfs.h>
int main(int argc, char **argv) {
    struct btrfs_ioctl_vol_args a;
    int d = open(".", O_RDONLY | O_DIRECTORY);
    if (argc < 2 || d < 0) return 2;
    memset(&a, 0, sizeof a);
    strncpy(a.name, argv[1], sizeof a.name - 1);
    if (ioctl(d, BTRFS_IOC_SUBVOL_CREATE, &a)) { perror("BTRFS_IOC_SUBVOL_CREATE"); return 1; }
    printf("subvolume %s made\n", argv[1]);
    return 0;
}
"#;

/// A file system mounted by this test (on a loop device), unmounted when dropped.
struct LoopMount(PathBuf);

impl LoopMount {
    /// `mkfs` (`mkfs.ext4`, `mkfs.btrfs`) an image beside `at` and mount it there, open to
    /// every uid (the agent's is not the host's). `None` when the tool or the kernel lacks it.
    fn make(mkfs: &str, image: &Path, at: &Path) -> Option<LoopMount> {
        let f = std::fs::File::create(image).ok()?;
        f.set_len(300 << 20).ok()?;
        let force = if mkfs == "mkfs.btrfs" { "-f" } else { "-F" };
        let made = Command::new(mkfs)
            .args(["-q", force])
            .arg(image)
            .stdout(Stdio::null())
            .status();
        let Ok(made) = made else {
            eprintln!("NOTE: no {mkfs} here: that part not run");
            return None;
        };
        std::fs::create_dir_all(at).ok()?;
        let mounted = made.success()
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(at)
                .status()
                .ok()?
                .success();
        if !mounted {
            eprintln!("NOTE: {mkfs} on a loop device unavailable here: that part not run");
            return None;
        }
        let m = LoopMount(at.to_path_buf());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o777)).ok()?;
        Some(m)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Attack review 84: the guard took a file on no write root's device for one the agent
/// cannot write, so a file beneath the workspace on a device of its own (a btrfs subvolume
/// the agent makes with one unprivileged ioctl, or a file system the host mounted inside
/// the workspace) was mapped executable from the file itself, not a sealed copy, and
/// `mprotect(+X)` of a read-only view of it was allowed: the denied bytes written into it
/// afterwards ran. Judged on the host (the payload creates `PWNED`); the rewrite must have
/// reached the file, and a system library still maps.
#[test]
fn a_writable_file_on_a_device_of_its_own_runs_only_what_was_decided() {
    let Some((t, policy)) = root_rewrite_case("owndev", "loop mounts") else {
        return;
    };
    t.cc("subvol", SUBVOL_C, &[]);
    let ext4 = LoopMount::make("mkfs.ext4", &t.root.join("ext4.img"), &t.ws.join("vol"));
    let btrfs = LoopMount::make("mkfs.btrfs", &t.root.join("btrfs.img"), &t.ws.join("bt"));
    assert!(
        ext4.is_some() || btrfs.is_some(),
        "neither ext4 nor btrfs could be mounted on a loop device"
    );
    let mut script = String::new();
    let mut dirs = Vec::new();
    if ext4.is_some() {
        dirs.push("vol");
    }
    if btrfs.is_some() {
        script.push_str("(cd bt && ../subvol sv); ");
        dirs.push("bt/sv");
    }
    for d in &dirs {
        script.push_str(&format!(
            "cp allowed.bin {d}/lib.bin; ./rewrite {d}/lib.bin denied.bin; ./mprot {d}/lib.bin; "
        ));
    }
    script.push_str("./mprot /usr/lib/x86_64-linux-gnu/libc.so.6");
    let o = t.run(&["--policy", &policy], &script);
    let all = text(&o);
    if btrfs.is_some() {
        assert!(all.contains("subvolume sv made"), "{all}");
    }
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    assert_eq!(all.matches("REWRITE-HELD").count(), dirs.len(), "{all}");
    assert_eq!(all.matches("lib.bin: refused").count(), dirs.len(), "{all}");
    assert!(all.contains("libc.so.6: ALLOWED"), "{all}");
    for d in &dirs {
        assert_eq!(
            std::fs::read(t.ws.join(d).join("lib.bin")).unwrap(),
            pwned_code(),
            "the rewrite must have reached {d}/lib.bin"
        );
    }
    drop(btrfs);
    drop(ext4);
}

/// Attack reviews 85, 86 and 87: a second name for what the agent can write, outside every
/// write root, reaches the same files, which Landlock lets the agent write through the
/// workspace (its rules are on inodes): a bind mount of the workspace the host made
/// elsewhere, of a workspace subdirectory, of one workspace file, or of a file system
/// mounted inside the workspace; or the other way round, a directory or file from
/// elsewhere bound into the workspace, reached by its own name; or an overlay elsewhere with
/// a layer in the workspace, or over such an overlay. The guard judged writability by name, then by `..` from
/// that name (which leads to the alias's mount point): a file mapped through the alias was
/// mapped uncopied (and `mprotect(+X)` of it allowed), and the denied bytes written through
/// the workspace afterwards ran. The aliases are made in a private mount namespace of this
/// test (`unshare -m`), on a tmpfs over `/usr/local` there (a place the agent may read),
/// warden run inside it. Judged on the host (`PWNED`); a system
/// library still maps.
#[test]
fn a_workspace_file_reached_through_another_mount_runs_only_what_was_decided() {
    let Some((t, policy)) =
        root_rewrite_case("alias", "a private mount namespace with bind mounts")
    else {
        return;
    };
    std::fs::create_dir_all(t.ws.join("sub")).unwrap();
    for f in ["lib.bin", "sub/lib.bin", "one.bin"] {
        std::fs::copy(t.ws.join("allowed.bin"), t.ws.join(f)).unwrap();
    }
    // A file system mounted inside the workspace, and bound elsewhere too (ext4 on a loop
    // device, when this machine can).
    let img = t.root.join("data.img");
    let ext4 = std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 << 20))
        .is_ok()
        && Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let ws = t.ws.display().to_string();
    let mut setup = format!(
        "mount -t tmpfs none /usr/local && mkdir /usr/local/alias /usr/local/sub && touch /usr/local/one.bin && \
         mount --bind '{ws}' /usr/local/alias && mount --bind '{ws}/sub' /usr/local/sub && \
         mount --bind '{ws}/one.bin' /usr/local/one.bin && \
         mkdir /usr/local/tools '{ws}/tools' && cp '{ws}/allowed.bin' /usr/local/tools/lib.bin && \
         cp '{ws}/allowed.bin' /usr/local/two.bin && chmod 666 /usr/local/tools/lib.bin /usr/local/two.bin && \
         touch '{ws}/two.bin' && mount --bind /usr/local/tools '{ws}/tools' && \
         mount --bind /usr/local/two.bin '{ws}/two.bin' && \
         mkdir -p '{ws}/lower' /usr/local/lower2 /usr/local/ov && cp '{ws}/allowed.bin' '{ws}/lower/lib.bin' && \
         mount -t overlay overlay -o 'ro,lowerdir={ws}/lower:/usr/local/lower2' /usr/local/ov && \
         mkdir -p '{ws}/lower3' /usr/local/o1 /usr/local/nest && cp '{ws}/allowed.bin' '{ws}/lower3/lib.bin' && \
         mount -t overlay overlay -o 'ro,lowerdir={ws}/lower3:/usr/local/lower2' /usr/local/o1 && \
         mount -t overlay overlay -o 'ro,lowerdir=/usr/local/o1:/usr/local/lower2' /usr/local/nest"
    );
    let mut cases = vec![
        ("/usr/local/alias/lib.bin", "lib.bin"),
        ("/usr/local/sub/lib.bin", "sub/lib.bin"),
        ("/usr/local/one.bin", "one.bin"),
        // The other way round: a directory and a file from elsewhere bound into the
        // workspace, mapped by their own names (attack review 87).
        ("/usr/local/tools/lib.bin", "tools/lib.bin"),
        ("/usr/local/two.bin", "two.bin"),
        // An overlay elsewhere whose layer is a workspace directory: its mappings are the
        // layer file's pages (attack review 87).
        ("/usr/local/ov/lib.bin", "lower/lib.bin"),
        // An overlay whose layer is such an overlay (attack review 88).
        ("/usr/local/nest/lib.bin", "lower3/lib.bin"),
    ];
    if ext4 {
        setup.push_str(&format!(
            " && mkdir -p '{ws}/data' /usr/local/data && mount -o loop '{}' '{ws}/data' && \
             chmod 777 '{ws}/data' && cp '{ws}/allowed.bin' '{ws}/data/lib.bin' && \
             chmod 666 '{ws}/data/lib.bin' && mount --bind '{ws}/data' /usr/local/data",
            img.display()
        ));
        cases.push(("/usr/local/data/lib.bin", "data/lib.bin"));
    } else {
        eprintln!(
            "NOTE: no ext4 on a loop device here: the file system inside the workspace not tried"
        );
    }
    setup.push_str(" && exec \"$@\"");
    let mut script = String::new();
    for (alias, real) in &cases {
        script.push_str(&format!(
            "./rewrite {alias} denied.bin {real}; ./mprot {alias}; "
        ));
    }
    script.push_str("./mprot /usr/lib/x86_64-linux-gnu/libc.so.6");
    let o = run_unshared(&t, "private", &setup, &policy, &script);
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    assert_eq!(all.matches("REWRITE-HELD").count(), cases.len(), "{all}");
    for (alias, real) in &cases {
        assert!(
            all.contains(&format!("{alias}: refused")),
            "{alias}:\n{all}"
        );
        if ["data/", "tools/", "two.bin"]
            .iter()
            .any(|m| real.starts_with(m))
        {
            // (Gone with the test's mount namespace.)
            continue;
        }
        assert_eq!(
            std::fs::read(t.ws.join(real)).unwrap(),
            pwned_code(),
            "the rewrite must have reached {real}"
        );
    }
    assert!(all.contains("libc.so.6: ALLOWED"), "{all}");
}

/// The start of a rewrite test that needs root (mounts) on x86-64: the scratch tree with
/// `rewrite` and `mprot` built and the denying policy; `None` (with a note) elsewhere.
fn root_rewrite_case(name: &str, needs: &str) -> Option<(T, String)> {
    // SAFETY: trivial getter.
    if !cfg!(target_arch = "x86_64") || unsafe { libc::geteuid() } != 0 {
        eprintln!("NOTE: needs root ({needs}) on x86-64: not run");
        return None;
    }
    let t = T::new(name);
    t.cc("rewrite", REWRITE_C, &["-O1"]);
    t.cc("mprot", MPROTECT_C, &[]);
    let policy = pwned_setup(&t);
    Some((t, policy))
}

/// `warden run --policy POLICY -- bash -c SCRIPT` in the workspace, in a mount namespace of
/// its own (`unshare -m --propagation PROPAGATION`) that `SETUP` (a shell command ending in
/// `exec "$@"` or running `"$@"`) prepares first.
fn run_unshared(
    t: &T,
    propagation: &str,
    setup: &str,
    policy: &str,
    script: &str,
) -> std::process::Output {
    let w = t.warden();
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", propagation, "sh", "-c", setup, "sh"])
        .arg(w.get_program())
        .args(w.get_args())
        .args(["run", "--policy", policy, "--", "/bin/bash", "-c", script])
        .current_dir(&t.ws)
        .stdin(Stdio::null());
    for (k, v) in w.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

/// What a mount is made of is the host's and does not change, but the names it was made
/// from may be the agent's: an overlay elsewhere whose layer the host named through a bind
/// alias of the workspace; the agent renames the layer away, puts a link to `/usr` in its
/// place and runs `git init` (the guard mounts, so the mount table is read and judged
/// again). The overlay was found writable at the start and stays so (attack review 89: it
/// was judged again by the new names, and the rewrite through the layer's new name ran).
/// Judged on the host (`PWNED`).
#[test]
fn a_mount_found_writable_stays_so_when_the_agent_renames_its_backing() {
    retargeted_layer(
        "retarget",
        "exec \"$@\"",
        "mv layer real && ln -s /usr layer && git init -q x && sleep 1; \
         ./rewrite /usr/local/ov/lib.bin denied.bin real/lib.bin; ./mprot /usr/local/ov/lib.bin",
    );
}

/// The same move across two sessions, on a mount the host keeps: the first session renames
/// the layer away and links `/usr` in its place, and the second one's first look at the
/// mount table already sees the new names (attack review 90). The layer's name passes
/// through the alias of the workspace, which is looked for on the way, before any link.
#[test]
fn a_backing_renamed_in_an_earlier_session_still_counts() {
    retargeted_layer(
        "retarget2",
        "\"$@\"; \"$@\"",
        "if [ -e second ]; then ./rewrite /usr/local/ov/lib.bin denied.bin real/lib.bin; \
         ./mprot /usr/local/ov/lib.bin; else mv layer real && ln -s /usr layer && touch second; fi",
    );
}

/// An overlay at `/usr/local/ov` whose layer the host names through a bind alias of the
/// workspace (`/usr/local/alias/layer`), then `run` (the warden session(s): `"$@"`) with
/// `script`, which moves the layer to `real` and rewrites it: judged on the host.
fn retargeted_layer(name: &str, run: &str, script: &str) {
    let Some((t, policy)) = root_rewrite_case(name, "a private mount namespace with an overlay")
    else {
        return;
    };
    let ws = t.ws.display().to_string();
    std::fs::create_dir_all(t.ws.join("layer")).unwrap();
    std::fs::copy(t.ws.join("allowed.bin"), t.ws.join("layer/lib.bin")).unwrap();
    let setup = format!(
        "mount -t tmpfs none /usr/local && mkdir /usr/local/alias /usr/local/l2 /usr/local/ov && \
         mount --bind '{ws}' /usr/local/alias && \
         mount -t overlay overlay -o 'ro,lowerdir=/usr/local/alias/layer:/usr/local/l2' /usr/local/ov && \
         {run}"
    );
    let o = run_unshared(&t, "private", &setup, &policy, script);
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    assert!(all.contains("REWRITE-HELD"), "{all}");
    assert!(all.contains("/usr/local/ov/lib.bin: refused"), "{all}");
    assert_eq!(
        std::fs::read(t.ws.join("real/lib.bin")).unwrap(),
        pwned_code(),
        "the rewrite must have reached the layer"
    );
}

/// `/usr` as a read-only overlay (a container image's layout) with a layer the host names
/// under `/tmp`: the agent's `/tmp` is a private tree of its own, not the host's, so the
/// overlay is not the agent's to write. Judged by name in the agent's view, the whole of
/// `/usr` counted as writable and the session's first exec was killed (attack review 88).
/// The legitimate workflow: a program runs, a system library maps executable.
#[test]
fn an_overlay_layer_the_host_names_under_tmp_is_not_the_agents() {
    // SAFETY: trivial getter.
    if !cfg!(target_arch = "x86_64") || unsafe { libc::geteuid() } != 0 {
        eprintln!("NOTE: needs root (a mount namespace with an overlay) on x86-64: not run");
        return;
    }
    let t = T::new("ovtmp");
    t.cc("mprot", MPROTECT_C, &[]);
    let policy = pwned_setup(&t);
    let layer = std::env::temp_dir().join(format!("warden-ovlayer-{}", std::process::id()));
    std::fs::create_dir_all(&layer).unwrap();
    let setup = format!(
        "mount -t overlay overlay -o 'ro,lowerdir={}:/usr' /usr && exec \"$@\"",
        layer.display()
    );
    let o = run_unshared(
        &t,
        "private",
        &setup,
        &policy,
        "./mprot /usr/lib/x86_64-linux-gnu/libc.so.6; /usr/bin/env echo RAN",
    );
    let _ = std::fs::remove_dir(&layer);
    let all = text(&o);
    assert!(all.contains("libc.so.6: ALLOWED"), "{all}");
    assert!(all.contains("RAN"), "{all}");
}

/// A `files.read` directory is read-only all the way down: a mount the host has below it
/// (here a bind of a directory elsewhere, made in this test's mount namespace) was left
/// writable by the recursive bind, and below the private home Landlock let the agent write
/// it (attack review 91 wrote a host file outside every write root). Judged on the host.
#[test]
fn a_mount_below_a_read_only_directory_is_read_only_too() {
    let Some((t, _)) = root_rewrite_case("rosub", "a private mount namespace with bind mounts")
    else {
        return;
    };
    let outside = t.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Anyone may write there: only the mount's read-only flag can refuse the agent.
    std::fs::set_permissions(
        &outside,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::create_dir_all(t.home.join("tools/sub")).unwrap();
    let policy = t.policy("[files]\nread = [\"~/tools\"]\n");
    let setup = format!(
        "mount --bind '{}' '{}' && exec \"$@\"",
        outside.display(),
        t.home.join("tools/sub").display()
    );
    let o = run_unshared(
        &t,
        "private",
        &setup,
        &policy,
        "echo agent > ~/tools/sub/new.txt; echo rc=$?; ls ~/tools/sub >/dev/null && echo LISTED",
    );
    let all = text(&o);
    assert!(
        !outside.join("new.txt").exists(),
        "the agent wrote below a read-only directory:\n{all}"
    );
    assert!(
        all.contains("Read-only file system") && all.contains("rc=1") && all.contains("LISTED"),
        "{all}"
    );
}

/// A session's read-only binds (`files.read`) map uncopied when its agent cannot write them;
/// another session must not be able to write them meanwhile (attack review 91: a second
/// session whose workspace was that directory rewrote code the first had mapped). While one
/// session runs with `shared/tools` read-only: a session whose workspace is inside it is
/// refused (exit 5, naming the session); one whose workspace is `shared` runs with
/// `shared/tools` locked read-only (judged on the host: the file is unchanged). The other
/// way round, a file below a live session's workspace is copied, not vouched for
/// (`mprotect(+X)` refused).
#[test]
fn a_directory_one_session_binds_read_only_is_no_other_sessions_to_write() {
    let Some((t, _)) = root_rewrite_case("fence", "the machine-wide session records") else {
        return;
    };
    let shared = t.root.join("shared");
    let tools = shared.join("tools");
    std::fs::create_dir_all(tools.join("sub")).unwrap();
    std::fs::copy(t.ws.join("allowed.bin"), tools.join("lib.bin")).unwrap();
    let policy = t.policy(&format!("[files]\nread = [\"{}\"]\n", tools.display()));
    let bare = t.root.join("bare.toml");
    std::fs::write(&bare, "[risk]\nenabled = false\n").unwrap();
    // Starts `warden run -- sleep 8` in `dir` and waits for its record.
    let hold = |dir: &Path, policy: &str| {
        let child = t
            .warden()
            .args(["run", "--policy", policy, "--", "sleep", "8"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rec = PathBuf::from(format!("/run/warden/live/{}.json", child.id()));
        for _ in 0..200 {
            if rec.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(rec.exists(), "no record {}", rec.display());
        child
    };
    let mut a = hold(&t.ws, &policy);
    let inside = t
        .warden()
        .args(["run", "--policy", bare.to_str().unwrap(), "--", "true"])
        .current_dir(tools.join("sub"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let holds = t
        .warden()
        .args([
            "run",
            "--policy",
            bare.to_str().unwrap(),
            "--",
            "/bin/bash",
            "-c",
            "echo x >> tools/lib.bin; echo rc=$?; echo y > own.txt",
        ])
        .current_dir(&shared)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = a.kill();
    let _ = a.wait();
    let all = format!("{}\n{}", text(&inside), text(&holds));
    assert_eq!(inside.status.code(), Some(5), "{all}");
    assert!(
        text(&inside).contains("binds read-only and runs programs from without copies"),
        "{all}"
    );
    assert_eq!(
        std::fs::read(tools.join("lib.bin")).unwrap(),
        [0xc3u8; 64],
        "the locked file was written:\n{all}"
    );
    assert!(
        holds.status.success() && text(&holds).contains("rc=1"),
        "{all}"
    );
    assert!(shared.join("own.txt").exists(), "{all}");
    // The other way round: a session on `~/tools` first; the read-only bind elsewhere is
    // then not vouched for.
    let mut b = hold(&tools, bare.to_str().unwrap());
    let o = t.run(
        &["--policy", &policy],
        &format!("./mprot '{}'", tools.join("lib.bin").display()),
    );
    let _ = b.kill();
    let _ = b.wait();
    assert!(text(&o).contains("lib.bin: refused"), "{}", text(&o));
}

/// Maps FILE `PROT_READ|PROT_EXEC` and calls it: prints `FILE: mapped XX` (its first byte)
/// or `FILE: refused`.
const MAPX_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { printf("%s: refused\n", argv[1]); return 0; }
    printf("%s: mapped %02x\n", argv[1], p[0]);
    fflush(stdout);
    ((void (*)(void))p)();
    return 0;
}
"#;

/// A workspace library mapped again maps the sealed copy kept for it while the file is
/// unchanged (each Python process importing a workspace virtual environment's `numpy` read
/// and copied 38 MiB: `import numpy` 165 ms against 86 ms outside). Every change of the
/// file is seen at its next mapping, whatever the way: rewritten with denied bytes (refused,
/// not the kept allowed copy), with other allowed bytes (those are mapped), in place
/// through a shared writable mapping (refused), and through one still held, with no write
/// fault and no event (refused: a writer holds it). Judged also on the host (`PWNED`).
#[test]
fn a_kept_copy_stands_for_a_workspace_library_only_while_it_is_unchanged() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let t = T::new("keptcopy");
    t.cc("mapx", MAPX_C, &[]);
    let policy = pwned_setup(&t);
    let mut nops = vec![0x90u8; 63];
    nops.push(0xc3);
    std::fs::write(t.ws.join("nops.bin"), nops).unwrap();
    let script = "cp allowed.bin lib.bin; ./mapx lib.bin; ./mapx lib.bin; \
         cp denied.bin lib.bin; ./mapx lib.bin; cp nops.bin lib.bin; ./mapx lib.bin; ./mapx lib.bin; \
         /usr/bin/python3 -c 'import mmap; f = open(\"lib.bin\", \"r+b\"); m = mmap.mmap(f.fileno(), 64); \
         m[:] = open(\"denied.bin\", \"rb\").read(); m.close(); f.close()'; ./mapx lib.bin; \
         cp allowed.bin lib.bin; ./mapx lib.bin; /usr/bin/python3 held.py";
    // A writer that holds a shared writable mapping all along: its page is made writable
    // (the only write fault: the stamp moves then), the file is mapped (a copy kept), then
    // rewritten through the mapping with no fault and no event, and mapped again while the
    // writer still holds it.
    std::fs::write(
        t.ws.join("held.py"),
        "import mmap, subprocess, time\n\
         f = open('lib.bin', 'r+b'); m = mmap.mmap(f.fileno(), 64); f.close()\n\
         m[0] = 0xc3; time.sleep(1.1)\n\
         subprocess.run(['./mapx', 'lib.bin'])\n\
         m[:] = open('denied.bin', 'rb').read()\n\
         subprocess.run(['./mapx', 'lib.bin'])\n\
         m.close()\n",
    )
    .unwrap();
    let o = t.run(&["--policy", &policy], script);
    let all = text(&o);
    assert!(!t.ws.join("PWNED").exists(), "the denied bytes ran:\n{all}");
    let seen: Vec<&str> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("lib.bin: "))
        .map(|l| match l {
            "mapped c3" => "allowed",
            "mapped 90" => "nops",
            "refused" => "refused",
            _ => "other",
        })
        .collect();
    assert_eq!(
        seen,
        [
            "allowed", "allowed", "refused", "nops", "nops", "refused", "allowed", "allowed",
            "refused"
        ],
        "{all}"
    );
}

/// A toolchain the sandbox binds read-only into the private home (`files.read`; the home's
/// tmpfs is a write root) is not the agent's to write: its libraries map from their own
/// files and `mprotect(+X)` of them is allowed (judged writable by name, `librustc_driver`
/// was copied into a sealed file at each `rustc` start: `cargo build` of a hello world took
/// 2.9 s instead of 0.13 s). The same read-only bind is still judged by the other ways to
/// write its files: the host binds the directory into the workspace, or a file there has a
/// second hard link in the workspace; there the rewrite through the workspace's name must not
/// run (judged on the host, `PWNED`). A bind alias of the workspace elsewhere (`unshare -m`,
/// under `/usr/local`) is read-only in the sandbox's own root: nothing there is written.
#[test]
fn a_read_only_bind_in_the_private_home_maps_uncopied_unless_the_workspace_reaches_it() {
    let Some((t, _)) = root_rewrite_case("robind", "a private mount namespace with bind mounts")
    else {
        return;
    };
    for d in ["tools", "tools2", "tools3", "tools4"] {
        std::fs::create_dir_all(t.home.join(d)).unwrap();
        let lib = t.home.join(d).join("lib.bin");
        std::fs::copy(t.ws.join("allowed.bin"), &lib).unwrap();
        std::fs::set_permissions(&lib, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
    }
    std::fs::create_dir_all(t.ws.join("t2")).unwrap();
    std::fs::create_dir_all(t.ws.join("t3")).unwrap();
    // A second name in the workspace, made before the session (uv and pnpm install by hard
    // link from a cache in the home: attack review 91).
    std::fs::hard_link(t.home.join("tools4/lib.bin"), t.ws.join("hl.bin")).unwrap();
    let sum = Command::new("sha256sum")
        .arg(t.ws.join("denied.bin"))
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    let hex = sum.split_whitespace().next().unwrap();
    let policy = t.policy(&format!(
        "[exec]\ndeny = [\"sha256:{hex}\"]\n[files]\nread = [\"~/tools\", \"~/tools2\", \"~/tools3\", \"~/tools4\"]\n"
    ));
    let (ws, home) = (t.ws.display().to_string(), t.home.display().to_string());
    // The legitimate toolchain: `~/tools/lib.bin`, changed before this session and every
    // other live one began (a file changed since the earliest live session began is not
    // vouched for: attack review 93), with one link.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let others = std::fs::read_dir("/run/warden/live")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0);
    let lib = "lib.bin";
    let setup = format!(
        "mount --bind '{home}/tools2' '{ws}/t2' && mount -t tmpfs none /usr/local && \
         mkdir /usr/local/alias && mount --bind '{ws}' /usr/local/alias && \
         mount --bind '{home}/tools3' /usr/local/alias/t3 && exec \"$@\""
    );
    let script = format!(
        "./mprot '{home}/tools/{lib}'; ./rewrite '{home}/tools/{lib}' denied.bin; \
         ./rewrite '{home}/tools2/lib.bin' denied.bin t2/lib.bin; ./mprot '{home}/tools2/lib.bin'; \
         ./rewrite '{home}/tools3/lib.bin' denied.bin /usr/local/alias/t3/lib.bin; \
         ./mprot '{home}/tools3/lib.bin'; \
         ./rewrite '{home}/tools4/lib.bin' denied.bin hl.bin; ./mprot '{home}/tools4/lib.bin'"
    );
    let o = run_unshared(&t, "private", &setup, &policy, &script);
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    // The legitimate workflow: the read-only toolchain maps as it is, and stays as it is.
    if others == 0 {
        assert!(all.contains(&format!("tools/{lib}: ALLOWED")), "{all}");
    } else {
        eprintln!("NOTE: other live sessions began before ~/tools was made: not vouched for");
    }
    assert!(all.contains("rewrite: Read-only file system"), "{all}");
    assert_eq!(
        std::fs::read(t.home.join("tools/lib.bin")).unwrap(),
        [0xc3u8; 64]
    );
    // Reached through the workspace: held, and `mprotect(+X)` refused. The alias under
    // `/usr/local` is not writable at all: `/usr` is a read-only mount of the sandbox's own
    // root with every mount below it (attack review 103).
    assert_eq!(all.matches("REWRITE-HELD").count(), 2, "{all}");
    assert_eq!(
        all.matches("rewrite: Read-only file system").count(),
        2,
        "{all}"
    );
    for d in ["tools2", "tools4"] {
        assert!(
            all.contains(&format!("{d}/lib.bin: refused")),
            "{d}:\n{all}"
        );
        assert_eq!(
            std::fs::read(t.home.join(d).join("lib.bin")).unwrap(),
            pwned_code(),
            "the rewrite must have reached {d}"
        );
    }
    // So `~/tools3` is out of the agent's reach again: it maps as it is (when vouched for,
    // as `~/tools` above), unchanged.
    if others == 0 {
        assert!(all.contains("tools3/lib.bin: ALLOWED"), "{all}");
    }
    assert_eq!(
        std::fs::read(t.home.join("tools3/lib.bin")).unwrap(),
        [0xc3u8; 64]
    );
}

/// A mount made during the session can make a file the guard judged out of the agent's
/// reach writable (the host binds a file system into the workspace while the agent runs:
/// the sandbox's mounts are slaves of the host's, so it appears there). The guard's answers
/// are kept per mount and file, and dropped when the agent's mount table changes: a file
/// mapped before the bind maps uncopied (it was not writable then), the same file mapped
/// after it comes from a sealed copy, and `mprotect(+X)` of it is refused. Judged on the
/// host (`PWNED`).
#[test]
fn a_mount_made_during_the_session_is_seen_by_the_next_mapping() {
    let Some((t, policy)) = root_rewrite_case("latemount", "a mount namespace with shared mounts")
    else {
        return;
    };
    std::fs::create_dir_all(t.ws.join("data")).unwrap();
    let ws = t.ws.display().to_string();
    let setup = format!(
        "mount -t tmpfs none /usr/local && mkdir /usr/local/data && \
         mount -t tmpfs none /usr/local/data && cp '{ws}/allowed.bin' /usr/local/data/lib.bin && \
         chmod 666 /usr/local/data/lib.bin && \
         {{ \"$@\" & i=0; while [ ! -e '{ws}/ready' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; \
           mount --bind /usr/local/data '{ws}/data' && touch '{ws}/go'; wait; }}"
    );
    let script = "./mprot /usr/local/data/lib.bin; touch ready; i=0; \
                  while [ ! -e go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; \
                  ./rewrite /usr/local/data/lib.bin denied.bin data/lib.bin; \
                  ./mprot /usr/local/data/lib.bin";
    let o = run_unshared(&t, "shared", &setup, &policy, script);
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "the rewritten bytes ran:\n{all}"
    );
    assert!(t.ws.join("go").exists(), "the bind was not made:\n{all}");
    assert_eq!(
        all.matches("/usr/local/data/lib.bin: ALLOWED").count(),
        1,
        "{all}"
    );
    assert!(all.contains("REWRITE-HELD"), "{all}");
    assert!(all.contains("/usr/local/data/lib.bin: refused"), "{all}");
}

/// The `mprotect` race across a `vfork` chain: P (a racing thread plus the main thread)
/// vforks C, C vforks G; G `mprotect`s anonymous memory executable while P's racing thread
/// maps DENIED over it after a random delay (G waits until that thread is running). `nestvfork
/// ALLOWED DENIED SECONDS MAXDELAY_NS [single]` (`single`: P vforks G directly); like
/// `maprace`, a busy machine gets up to 30 seconds more for 50 attempts with 5 of each
/// outcome. Prints `nestvfork attempts N mapped M`.
/// Found by an attack review of the hold: it held G's parent but not the grandparent.
const NESTVFORK_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
static int fa, fdd; static char dbuf[64]; static volatile int stop, go, ready, done, jitter;
static char *X; static long secs; static int maxj = 3000000; static volatile long n, mapped;
static sigjmp_buf jb;
static void segv(int s) { (void)s; siglongjmp(jb, 1); }
static void *racer(void *a) {
    (void)a;
    for (;;) {
        while (!go && !stop) ;
        if (stop) return 0;
        ready = 1;
        { struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a); do clock_gettime(CLOCK_MONOTONIC, &b); while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < jitter); }
        mmap(X, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fdd, 0);
        go = 0; done = 1;
    }
}
static int g_fn(void *a) {
    (void)a;
    time_t end = time(0) + secs, limit = end + 30;
    while (time(0) < end || ((n < 50 || mapped < 5 || n - mapped < 5) && time(0) < limit)) {
        n++;
        mmap(X, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
        jitter = rand() % maxj; done = 0; ready = 0; go = 1;
        while (!ready) ;
        int r = mprotect(X, 4096, PROT_READ | PROT_EXEC);
        while (!done) ;
        if (r == 0) mapped++;
        if (r == 0 && memcmp(X, dbuf, sizeof dbuf) == 0 && sigsetjmp(jb, 1) == 0) ((void (*)(void))X)();
    }
    _exit(0);
}
static char gstack[1 << 16], cstack[1 << 16];
static int c_fn(void *a) {
    (void)a;
    int g = clone(g_fn, gstack + sizeof gstack, CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
    if (g < 0) { perror("clone G"); _exit(3); }
    _exit(0);
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    fa = open(argv[1], O_RDONLY); fdd = open(argv[2], O_RDONLY);
    if (fa < 0 || fdd < 0 || pread(fdd, dbuf, sizeof dbuf, 0) != sizeof dbuf) return 2;
    secs = atoi(argv[3]); if (argc > 4) maxj = atoi(argv[4]);
    signal(SIGSEGV, segv);
    X = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_t t; pthread_create(&t, 0, racer, 0);
    int c = clone((argc > 5 && argv[5][0] == 's') ? g_fn : c_fn, cstack + sizeof cstack, CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
    if (c < 0) { perror("clone C"); return 3; }
    int st; waitpid(c, &st, 0);
    stop = 1; pthread_join(t, 0);
    printf("nestvfork attempts %ld mapped %ld\n", n, mapped);
    return 0;
}
"#;

/// A 32-bit program without `PT_GNU_STACK` (the kernel sets `READ_IMPLIES_EXEC` for it at
/// exec) that far-jumps to 64-bit code and maps `denied.bin` `PROT_READ` only, then jumps
/// into it. Found by the same review: no `PROT_EXEC` anywhere for the filter to trap.
const RIE32_S: &str = r#".code32
.globl _start
_start:
  ljmp $0x33, $start64
.code64
start64:
  lea path(%rip), %rdi
  xor %esi, %esi
  mov $2, %eax          /* open */
  syscall
  mov %rax, %r8
  mov $0x20000000, %edi
  mov $4096, %esi
  mov $1, %edx          /* PROT_READ */
  mov $0x12, %r10d      /* MAP_PRIVATE|MAP_FIXED */
  xor %r9d, %r9d
  mov $9, %eax          /* mmap */
  syscall
  jmp *%rax
path: .asciz "denied.bin"
"#;
const RIE32_LD: &str = r#"ENTRY(_start)
PHDRS { text PT_LOAD FILEHDR PHDRS FLAGS(5); }
SECTIONS { . = 0x08048000 + SIZEOF_HEADERS; .text : { *(.text) } :text /DISCARD/ : { *(.note*) *(.comment) } }
"#;

/// Writes the denied payload and an allowed file in `t`'s workspace; returns a policy
/// denying the payload's hash.
fn pwned_setup(t: &T) -> String {
    std::fs::write(t.ws.join("denied.bin"), pwned_code()).unwrap();
    std::fs::write(t.ws.join("allowed.bin"), [0xc3u8; 64]).unwrap();
    let sum = Command::new("sha256sum")
        .arg(t.ws.join("denied.bin"))
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    let hex = sum.split_whitespace().next().unwrap().to_string();
    t.policy(&format!("[exec]\ndeny = [\"sha256:{hex}\"]\n"))
}

/// The two escapes of the hold's attack review, judged on the host: the `mprotect` race run
/// from two `vfork` levels down (the grandparent's thread remaps the range; before: 7 of 7
/// runs ran the denied code within 1-158 attempts), and `READ_IMPLIES_EXEC` from a 32-bit
/// image (before: the denied code ran at the first try; now the process is killed at its
/// exec stop under `exec.read_implies_exec`).
#[test]
fn vfork_chains_and_read_implies_exec_images_hold() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let t = T::new("vforkchain");
    let policy = pwned_setup(&t);
    t.cc("nestvfork", NESTVFORK_C, &["-O1", "-pthread"]);
    let o = t.run(
        &["--policy", &policy],
        "./nestvfork allowed.bin denied.bin 3 3000000",
    );
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "vfork chain: the denied code ran:\n{all}"
    );
    let counts: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] >= 50 && counts[1] > 0 && counts[1] < counts[0],
        "the race must run, both ways:\n{all}"
    );
    // The 32-bit image: only when this machine can build one.
    std::fs::write(t.root.join("rie32.S"), RIE32_S).unwrap();
    std::fs::write(t.root.join("rie32.ld"), RIE32_LD).unwrap();
    let built = Command::new("as")
        .args(["--32", "-o"])
        .arg(t.root.join("rie32.o"))
        .arg(t.root.join("rie32.S"))
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("ld")
            .args(["-m", "elf_i386", "-T"])
            .arg(t.root.join("rie32.ld"))
            .arg("-o")
            .arg(t.ws.join("rie32"))
            .arg(t.root.join("rie32.o"))
            .status()
            .is_ok_and(|s| s.success());
    if !built {
        eprintln!("skipped the 32-bit case: no 32-bit assembler/linker");
        return;
    }
    let o = t.run(&["--policy", &policy], "./rie32; echo after");
    let all = text(&o);
    assert!(
        !t.ws.join("PWNED").exists(),
        "READ_IMPLIES_EXEC: the denied code ran:\n{all}"
    );
    assert!(all.contains("after"), "{all}");
}

/// A thread `mprotect`s memory executable in a loop while the main thread spawns programs
/// with `vfork`: the hold must neither hang nor deny (a fresh `vfork` child, still on its way
/// out of `clone`, once looked parked, and a non-leading thread's children were looked up
/// under its thread id). Prints `spawns N mprotect ok M failed F`.
const VFORK_MPROTECT_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile int stop; static long fails, ok;
static void *mp(void *a) { char *x = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  while (!stop) { if (mprotect(x, 4096, PROT_READ|PROT_EXEC)) fails++; else ok++; mprotect(x, 4096, PROT_READ|PROT_WRITE); } return a; }
int main(void) { pthread_t t; pthread_create(&t, 0, mp, 0); time_t end = time(0) + 3; int n = 0;
  while (time(0) < end) { pid_t p = vfork(); if (!p) { execl("/bin/true", "true", (char*)0); _exit(1); } waitpid(p, 0, 0); n++; }
  stop = 1; pthread_join(t, 0); printf("spawns %d mprotect ok %ld failed %ld\n", n, ok, fails); return 0; }
"#;

#[test]
fn mprotect_in_one_thread_while_another_vforks_is_never_refused() {
    let t = T::new("vfork-mprotect");
    let p = t.policy(DENY_CURL);
    t.cc("vfm", VFORK_MPROTECT_C, &["-O1", "-pthread"]);
    let o = t.run(&["--policy", &p], "./vfm");
    let all = text(&o);
    if !all.contains(" failed 0") {
        let log = t.warden().arg("log").output().unwrap();
        panic!("{all}\n--warden log--\n{}", text(&log));
    }
    assert!(!all.contains("mprotect ok 0 "), "{all}");
}

/// A `vfork` child makes a thread, then its first thread returns: the vfork ends while that
/// thread still shares the parent's address space. The parent then loops on `mprotect
/// (+PROT_EXEC)` of an allowed file's page while the thread maps the agent-written
/// `payload.bin` over the range once the guard has opened the allowed file (`inotify`):
/// before the hold compared every thread of the sandbox, the payload was mapped executable
/// in the first few tries (attack review). With a second argument the vfork child instead
/// `vfork`s again and that grandchild kills it, which ends the first vfork too: the
/// grandchild runs on in the parent's address space as an orphan, with no family tie to it
/// (the same review's follow-up; mapped executable at the first try). With `chain`, the
/// grandchild `vfork`s the next, which kills it, and so on (~90 µs a link): a chain that
/// changes faster than any scan of the sandbox sees it (a later review; hits at rounds 0–5
/// before every process of the sandbox was held). `ARGV[1]`: the
/// allowed file. Writes `ESCAPED` if the payload ran; prints `race tries N allowed A raced R
/// hits H; plain thread ok|refused` (R: tries in which the racer mapped over the range).
const VFORK_THREAD_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define R ((char *)0x200000000ul)
static int fdA, fdW, ino;
static volatile int stop, started, go, fin, cerr;
static char s1[1 << 16] __attribute__((aligned(16))), s2[1 << 16] __attribute__((aligned(16)));
static int racer(void *a) {
  started = 1;
  while (!stop) {
    if (!go) continue;
    go = 0;
    char b[4096]; time_t end = time(0) + 1;
    while (read(ino, b, sizeof b) <= 0 && !stop && time(0) < end) ;
    syscall(SYS_mmap, R, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fdW, 0);
    fin = 1;
  }
  return 0;
}
static int nested;
static char cs[3][1 << 16] __attribute__((aligned(16)));
static int chain_link(void *a) {
  long k = (long)a;
  kill(getppid(), SIGKILL);
  started = 1;
  if (go) { char b[4096]; if (read(ino, b, sizeof b) > 0) { syscall(SYS_mmap, R, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fdW, 0); go = 0; fin = 1; } }
  /* A link that cannot clone yet (the sandbox's pids limit, while killed links wait to be
     reaped) tries again: the chain must not die. */
  while (!stop && clone(chain_link, cs[(k + 1) % 3] + sizeof cs[0], CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)(k + 1)) < 0) sched_yield();
  for (;;) pause();
}
static int killer(void *a) { kill(getppid(), SIGKILL); return racer(a); }
static int child(void *a) {
  if (nested == 2) {
    if (clone(chain_link, cs[0] + sizeof cs[0], CLONE_VM | CLONE_VFORK | SIGCHLD, 0) < 0) cerr = errno;
    for (;;) pause();
  }
  if (nested) {
    if (clone(killer, s2 + sizeof s2, CLONE_VM | CLONE_VFORK | SIGCHLD, 0) < 0) cerr = errno;
    for (;;) pause();
  }
  int r = clone(racer, s2 + sizeof s2, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_FILES | CLONE_FS, 0);
  if (r < 0) cerr = errno; else while (!started) ;
  return 0;
}
static void *plain(void *a) { return a; }
static int hit(void) {
  char line[512]; int h = 0; FILE *m = fopen("/proc/self/maps", "r");
  while (fgets(line, sizeof line, m))
    if (!strncmp(line, "200000000-", 10) && line[22] == 'x' && strstr(line, "payload.bin")) h = 1;
  fclose(m); return h;
}
int main(int c, char **v) {
  unsigned char sc[4096] = {0xb8, 0x37, 0x13, 0, 0, 0xc3};
  int w = open("payload.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644); write(w, sc, sizeof sc); close(w);
  fdA = open(v[1], O_RDONLY); fdW = open("payload.bin", O_RDONLY);
  ino = inotify_init1(IN_NONBLOCK); inotify_add_watch(ino, v[1], IN_OPEN);
  if (fdA < 0 || fdW < 0 || ino < 0) { perror("setup"); return 2; }
  nested = c > 2 ? (strcmp(v[2], "chain") ? 1 : 2) : 0;
  clone(child, s1 + sizeof s1, CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
  /* The racer says it runs after it killed its parent, which already let this one go. */
  for (time_t w = time(0); !cerr && !started && time(0) - w < 5; ) ;
  if (cerr) printf("vfork child's thread refused: %s\n", strerror(cerr));
  int hits = 0, tries = 0, ok = 0, raced = 0;
  /* 4 s, and at least 8 tries (at most 30 s): a chain try takes ~0.8 s on a loaded machine. */
  for (time_t t0 = time(0); started && !hits && (time(0) - t0 < 4 || (tries < 8 && time(0) - t0 < 30)); tries++) {
    mmap(R, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fdA, 0);
    char b[4096]; while (read(ino, b, sizeof b) > 0) ;
    fin = 0; go = 1;
    int r = mprotect(R, 4096, PROT_READ | PROT_EXEC);
    time_t w0 = time(0);
    while (!fin && time(0) - w0 < 2) ;
    go = 0;
    raced += fin;
    if (!r) ok++;
    if (!r && hit()) hits++;
  }
  if (hits) { int x = ((int (*)(void))R)(); FILE *m = fopen("ESCAPED", "w"); fprintf(m, "%x\n", x); fclose(m); }
  stop = 1;
  pthread_t t; int pr = pthread_create(&t, 0, plain, 0); if (!pr) pthread_join(t, 0);
  printf("race tries %d allowed %d raced %d hits %d; plain thread %s\n", tries, ok, raced, hits, pr ? "refused" : "ok");
  return 0;
}
"#;

#[test]
fn vfork_children_cannot_outlive_the_vfork_to_race_a_mapping() {
    let t = T::new("vfork-thread");
    let p = t.policy(DENY_CURL);
    t.cc("vft", VFORK_THREAD_C, &["-O1", "-pthread"]);
    // An allowed file few other processes open (its inotify events pace the race).
    let allowed = [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libbz2.so.1.0",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|f| std::path::Path::new(f).exists())
    .expect("a system library");
    for variant in ["chain", "nested", ""] {
        let o = t.run(&["--policy", &p], &format!("./vft {allowed} {variant}"));
        let all = text(&o);
        // Judged on the host: the marker the payload's caller writes.
        assert!(
            !t.ws.join("ESCAPED").exists(),
            "agent-written code was mapped executable through a vfork child ({variant}):\n{all}"
        );
        // The race ran, and the parent's own mprotects were allowed (one that meets the
        // racing child's exit may be refused: fail closed). (The loop runs 4 s and at least
        // 8 tries: 700-2000 tries on an idle 2-core machine, 17-18 for the chain with four
        // busy loops on both cores. CI once saw 2, each waiting its full 2 s: a chain link
        // whose clone failed ended the chain; links now retry.)
        let n = |k: &str| -> u64 {
            all.split(k)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // A racer the hold missed is caught by the check after the mprotect, which kills the
        // program before it runs the payload (no escape, but the hold has a gap: said aloud).
        if all.contains("that the decision did not see") {
            eprintln!(
                "NOTE: the post-mprotect check caught a racer the hold missed ({variant}):\n{all}"
            );
            continue;
        }
        assert!(
            n("race tries ") >= 5 && n("allowed ") >= 4 && n("raced ") >= 4,
            "the race must run ({variant}):\n{all}"
        );
        assert!(all.contains("plain thread ok"), "{all}");
    }
}

/// A program interpreter that rewrites its own file after the exec stop, then jumps into
/// the rewritten page (`SELF`: its path, set at build time; the new bytes are
/// `denied.bin`'s, which create `PWNED`).
const SELF_REWRITING_INTERP_C: &str = r#"
static long sys(long n,long a,long b,long c,long d){long r;register long r10 asm("r10")=d;
  asm volatile("syscall":"=a"(r):"a"(n),"D"(a),"S"(b),"d"(c),"r"(r10):"rcx","r11","memory");return r;}
asm(".section .text.tgt,\"ax\",@progbits\n.balign 4096\n.globl tgt\ntgt:\n.byte 0xc3\n.ascii \"WARDENMARK1234\"\n.fill 4000,1,0x90\n.previous\n");
extern void tgt(void);
static char me[65536], den[4096];
void _start(void){
  long f=sys(2,(long)SELF,0,0,0); long n=sys(0,f,(long)me,sizeof me,0); sys(3,f,0,0,0);
  long off=-1; for(long i=0;i+14<n;i++){ int k; for(k=0;k<14&&me[i+k]=="WARDENMARK1234"[k];k++); if(k==14){off=i-1;break;} }
  f=sys(2,(long)"denied.bin",0,0,0); long dn=sys(0,f,(long)den,sizeof den,0); sys(3,f,0,0,0);
  f=sys(2,(long)SELF,1,0,0); long w=sys(18,f,(long)den,dn,off); sys(3,f,0,0,0);
  sys(1,1,(long)"interp: rewrote own file, jumping\n",34,0);
  (void)w; tgt();
  sys(1,1,(long)"held\n",5,0); sys(231,0,0,0,0);
}
"#;

/// `fexec PATH`: opens PATH, unlinks that name (another link keeps the file) and runs the
/// descriptor with `execveat`.
const FEXEC_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/syscall.h>
int main(int c, char **v, char **e) {
  int fd = open(v[1], O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  if (unlink(v[1])) { perror("unlink"); return 1; }
  char *a[] = { v[1], 0 };
  syscall(SYS_execveat, fd, "", a, e, AT_EMPTY_PATH);
  perror("execveat"); return 1;
}
"#;

/// A 64-bit ELF executable with only a `PT_INTERP` naming `interp` (the kernel maps nothing
/// of the program itself).
fn no_load_elf(interp: &str) -> Vec<u8> {
    let mut name = interp.as_bytes().to_vec();
    name.push(0);
    let mut b = b"\x7fELF\x02\x01\x01\0".to_vec();
    b.resize(16, 0);
    for (v, n) in [
        (2u64, 2),
        (62, 2),
        (1, 4),
        (0x40_0000, 8),
        (64, 8),
        (0, 8),
        (0, 4),
    ] {
        b.extend_from_slice(&v.to_le_bytes()[..n]);
    }
    for v in [64u16, 56, 1, 64, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    let len = name.len() as u64;
    for v in [120u64, 0, 0, len, len, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&name);
    b
}

/// The exemption for an executable seen through an overlay's layer (a package-cache program
/// is mapped as the layer's file, so `maps` lacks its own inode) must not cover anything
/// else. An attack review got a rewritable interpreter taken for the executable: a program
/// with no `PT_LOAD` in `~/.npm`, run through an unlinked name (`/proc/PID/exe` then reads
/// `NAME (deleted)`), its interpreter a file literally named `NAME (deleted)`; the
/// interpreter then rewrote itself and ran denied code (as root and as an ordinary user).
/// Judged on the host: no `PWNED`.
#[test]
fn an_interpreter_cannot_pass_for_the_executable_by_name() {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let t = T::new("exe-name");
    std::fs::create_dir_all(t.home.join(".npm")).unwrap();
    let policy = pwned_setup(&t);
    let dir = t.home.join(".npm/rt4");
    let q = dir.join("Q");
    let self_name = format!("{} (deleted)", q.display());
    t.cc(
        "interp",
        SELF_REWRITING_INTERP_C,
        &[
            "-O1",
            "-nostdlib",
            "-static",
            &format!("-DSELF=\"{self_name}\""),
        ],
    );
    t.cc("fexec", FEXEC_C, &[]);
    std::fs::write(t.ws.join("noload"), no_load_elf(&self_name)).unwrap();
    let script = format!(
        "mkdir -p '{d}' && cp interp '{s}' && cp noload '{q}' && chmod +x '{q}' && ln -f '{q}' '{d}/Q2' && ./fexec '{q}'; echo done",
        d = dir.display(),
        s = self_name,
        q = q.display()
    );
    let o = t.run(&["--policy", &policy], &script);
    let all = text(&o);
    assert!(all.contains("done"), "{all}");
    assert!(
        !t.ws.join("PWNED").exists(),
        "a rewritable interpreter passed for the executable:\n{all}"
    );
}

/// Per iteration, forks a child whose four threads all call `execve("/bin/true")` at once;
/// prints `BAD i status` for a child that did not exit 0, and `MT-EXEC-DONE` at the end.
const MT_EXEC_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static pthread_barrier_t b;
static void *th(void *a) { pthread_barrier_wait(&b); execl("/bin/true", "true", (char *)0); return 0; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            pthread_barrier_init(&b, 0, 4);
            pthread_t t[3];
            for (int j = 0; j < 3; j++) pthread_create(&t[j], 0, th, 0);
            pthread_barrier_wait(&b);
            execl("/bin/true", "true", (char *)0);
            _exit(1);
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) printf("BAD %d %x\n", i, st);
    }
    printf("MT-EXEC-DONE\n");
    return 0;
}
"#;

/// Threads of one process that exec at the same moment: the exec that wins waits in the
/// kernel (`de_thread`) for its siblings to be gone, and a sibling the guard seized for its
/// own exec is gone only once the guard reaps it, while the guard's next seize waits for
/// the lock that exec holds. The session hung (3 of 3 runs, usually within 50 iterations;
/// found by an attack review). The guard now reaps such threads while it seizes
/// (`hold::Reaper`): the session ends on its own and every exec succeeds.
#[test]
fn threads_that_exec_at_once_do_not_hang_the_session() {
    let t = T::new("mt-exec");
    let p = t.policy(DENY_CURL);
    t.cc("mtexec", MT_EXEC_C, &["-pthread"]);
    let mut child = t
        .warden()
        .args(["run", "--policy", &p, "--", "./mtexec", "300"])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = super::common::wait_until(std::time::Duration::from_secs(120), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    assert!(ended, "the session hung:\n{}", text(&o));
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(all.contains("MT-EXEC-DONE"), "{all}");
    assert!(!all.contains("BAD "), "{all}");
}

/// A directory outside every write root of the sandbox (its `/tmp` and `$HOME` are: a
/// program under them is never cached), holding `name`: a copy of `true` grown to `len`
/// bytes (the ELF loader ignores the zeros after it), mode 0755, owned by `owner` when
/// given; older than the cache's two-second rule by the time it returns. Removed on drop.
struct Outside {
    dir: PathBuf,
    prog: PathBuf,
}

impl Outside {
    fn new(tag: &str, name: &str, len: u64, owner: Option<u32>) -> Outside {
        let dir = PathBuf::from(format!("/opt/warden-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join(name);
        std::fs::copy("/bin/true", &prog).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&prog)
            .unwrap()
            .set_len(len)
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(u) = owner {
            std::os::unix::fs::chown(&prog, Some(u), Some(u)).unwrap();
        }
        // The cache takes no entry for a file changed in the last two seconds.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        Outside { dir, prog }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every session log under the scratch `$HOME`, concatenated.
fn session_logs(t: &T) -> String {
    std::fs::read_dir(t.home.join(".local/state/warden/sessions"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// CI stop 31: Claude Code's 381 MB native binary, read from a cold disk at 34 MB/s, missed
/// the flat 10 s hashing deadline and was denied its first exec. A large program outside
/// the agent's reach now gets time for its size, the user is told why the first run waits,
/// and the hash is cached: the next session runs it without hashing (nor the note).
#[test]
fn a_large_program_outside_the_workspace_is_announced_once_then_cached() {
    let t = T::new("bigbin");
    let out = Outside::new("bigbin", "bigtrue", (70 << 20) + 40_000, None);
    let p = t.policy(&format!(
        "[files]\nread = [\"{}\"]\n{DENY_CURL}",
        out.dir.display()
    ));
    let script = format!("{} && echo BIG-OK", out.prog.display());
    let first = t.run(&["--policy", &p], &script);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("BIG-OK"),
        "the large program did not run:\n{}",
        text(&first)
    );
    assert!(
        err.contains("exec guard: hashing") && err.contains("bigtrue") && err.contains("70 MiB"),
        "the first hashing was not announced:\n{}",
        text(&first)
    );
    let second = t.run(&["--policy", &p], &script);
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("BIG-OK"),
        "{}",
        text(&second)
    );
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("exec guard: hashing"),
        "the hash was not cached between sessions:\n{}",
        text(&second)
    );
}

/// Attack review 68: a huge file outside the agent's reach (1 TiB, sparse, owned by another
/// user) held every decision of the session for the whole hashing deadline, and again at
/// every retry. Now: the first exec is denied at the bound (30 s, under `exec.hash_limit`,
/// saying the hashing goes on in the background), a retry is denied at once while it does,
/// and other programs run afterwards.
#[test]
fn a_huge_program_outside_the_workspace_stalls_once_then_is_denied_at_once() {
    let t = T::new("hugebin");
    let out = Outside::new("hugebin", "huge", 1 << 40, Some(65534));
    let p = t.policy(&format!(
        "[files]\nread = [\"{}\"]\n{DENY_CURL}",
        out.dir.display()
    ));
    let h = out.prog.display();
    let o = t.run(
        &["--policy", &p],
        &format!(
            "ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}; \
             a=$(ms); {h}; r1=$?; b=$(ms); {h}; r2=$?; c=$(ms); \
             echo \"first rc=$r1 ms=$((b - a)) second rc=$r2 ms=$((c - b))\"; /bin/true && echo TRUE-OK"
        ),
    );
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |k: &str, nth: usize| -> u64 {
        s.split(k)
            .nth(nth)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {k}:\n{}", text(&o)))
    };
    let (r1, first, r2, second) = (
        field("rc=", 1),
        field("ms=", 1),
        field("rc=", 2),
        field("ms=", 2),
    );
    assert!(r1 != 0 && r2 != 0, "the huge program ran:\n{}", text(&o));
    assert!(
        (28_000..45_000).contains(&first),
        "the first decision took {first} ms (bound 30 s):\n{}",
        text(&o)
    );
    assert!(second < 3_000, "the retry took {second} ms:\n{}", text(&o));
    assert!(s.contains("TRUE-OK"), "{}", text(&o));
    let log = session_logs(&t);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"exec.hash_limit\""))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("goes on hashing it in the background"))
            && lines
                .iter()
                .any(|l| l.contains("hashing it in the background for")),
        "{lines:#?}"
    );
}

/// SysV shared memory made executable through a read-only attach, then written through a
/// writable one: bytes no decision saw would run, and any process holding the segment could
/// change them. The first segment's inode number is its id, 0, and the guard took it for
/// anonymous memory (attack review 82). Tried for segments 0 and 1; a private anonymous
/// page (a JIT's) still becomes executable.
const SHM_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
int main(void) {
  unsigned char code[] = {0xb8, 0x37, 0x13, 0, 0, 0xc3};
  for (int k = 0; k < 2; k++) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) { perror("shmget"); return 2; }
    unsigned char *w = shmat(id, 0, 0), *x = shmat(id, 0, SHM_RDONLY);
    if (w == (void *)-1 || x == (void *)-1) { perror("shmat"); return 2; }
    w[0] = 0xc3;
    int r = mprotect(x, 4096, PROT_READ | PROT_EXEC);
    printf("segment %d: mprotect %d\n", id, r);
    if (r == 0) {
      memcpy(w, code, sizeof code);
      if (((int (*)(void))x)() == 0x1337) { FILE *f = fopen("ESCAPED", "w"); if (f) fclose(f); }
    }
  }
  unsigned char *a = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memcpy(a, code, sizeof code);
  if (!mprotect(a, 4096, PROT_READ | PROT_EXEC) && ((int (*)(void))a)() == 0x1337) puts("anon ok");
  return 0;
}
"#;

#[test]
fn sysv_shared_memory_is_not_made_executable_behind_a_writable_attach() {
    let t = T::new("shm-exec");
    let p = t.policy(DENY_CURL);
    t.cc("shm", SHM_C, &[]);
    let o = t.run(&["--policy", &p], "./shm");
    let all = text(&o);
    assert!(
        !t.ws.join("ESCAPED").exists(),
        "bytes written after the decision ran from SysV shared memory:\n{all}"
    );
    assert_eq!(all.matches(": mprotect -1").count(), 2, "{all}");
    assert!(all.contains("anon ok"), "{all}");
}

/// Attack review 101 (E1): in allowlist mode an unlisted program ran through the trusted
/// `python3` (ctypes: bytes copied into anonymous memory, made executable, jumped to).
/// Memory made executable that holds code from no file (anonymous, a private mapping's
/// written pages, or memory left writable) is refused to every program but the JIT
/// compilers (`exec.jit`). Judged on the host by the markers the code's callers write when
/// it ran; python itself, a JIT (node) and `exec.jit` naming python still work.
#[test]
fn allowlist_mode_refuses_code_from_no_file_to_programs_that_are_not_jits() {
    let t = T::new("anoncode");
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    // Allow exactly what runs: bash, python and every file either maps executable (its
    // loader and libraries, ctypes' and mmap's modules), node with its libraries if present.
    let maps = Command::new(&python)
        .args([
            "-c",
            "import ctypes, mmap; print('\\n'.join(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'x' in l.split()[1] and '/' in l})))",
        ])
        .output()
        .unwrap();
    let mut allow: Vec<String> = String::from_utf8_lossy(&maps.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let node = Path::new("/usr/bin/node").exists();
    let mut progs = vec!["/usr/bin/bash"];
    if node {
        progs.push("/usr/bin/node");
    }
    allow.extend(progs.iter().map(|p| p.to_string()));
    let list = super::common::allow_list_with_libraries(&allow);
    std::fs::write(
        t.ws.join("code.py"),
        r#"import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
CODE = b"\xb8\x2a\x00\x00\x00\xc3"  # mov eax, 42; ret
FAILED = 2**64 - 1
def run(a, name):
    if ctypes.CFUNCTYPE(ctypes.c_int)(a)() == 42:
        open(name + ".ran", "w").write("ran")
        print("RAN", name)
def anon_mprotect():
    a = libc.mmap(None, 4096, 3, 0x22, -1, 0)
    ctypes.memmove(a, CODE, len(CODE))
    if libc.mprotect(a, 4096, 5) == 0:
        run(a, "anon_mprotect")
def anon_rwx():
    a = libc.mmap(None, 4096, 7, 0x22, -1, 0)
    if a not in (None, FAILED):
        ctypes.memmove(a, CODE, len(CODE))
        run(a, "anon_rwx")
def file_cow():
    fd = os.open(sys.argv[2], os.O_RDONLY)
    a = libc.mmap(None, 4096, 3, 0x02, fd, 0)
    ctypes.memmove(a, CODE, len(CODE))
    if libc.mprotect(a, 4096, 5) == 0:
        run(a, "file_cow")
for case in sys.argv[1].split(","):
    try:
        globals()[case]()
    except Exception as e:
        print(case, "failed:", e)
print("PYTHON-OK", sys.argv[1])
"#,
    )
    .unwrap();
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let cases = "anon_mprotect,anon_rwx,file_cow";
    let script = format!(
        "{py} code.py {cases} {libc}; {node}",
        py = python.display(),
        libc = libc.display(),
        node = if node {
            "/usr/bin/node -e 'let s = 0; for (let i = 0; i < 3e6; i++) s += i; console.log(\"NODE-JIT-OK\", s)'"
        } else {
            "echo NODE-JIT-OK"
        }
    );
    let p = t.policy(&format!("[exec]\nmode = \"allowlist\"\nallow = [{list}]\n"));
    let o = t.run(&["--policy", &p, "--no-index"], &script);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("PYTHON-OK"), "python must run:\n{}", text(&o));
    assert!(s.contains("NODE-JIT-OK"), "a JIT must work:\n{}", text(&o));
    for c in cases.split(',') {
        assert!(
            !t.ws.join(format!("{c}.ran")).exists(),
            "code from no file ran ({c}):\n{}",
            text(&o)
        );
    }
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exec.anonymous_code")
            || s.contains("anon_mprotect"),
        "{}",
        text(&o)
    );
    // Attack review 102 (G3): a workspace directory on the host's `PATH` holding a link
    // `node -> python3` (made by an earlier session) must not make python the JIT `node`.
    let bin = t.ws.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&python, bin.join("node")).unwrap();
    let o = t
        .warden()
        .args(["run", "--policy", &p, "--no-index", "--"])
        .args([
            "/bin/bash",
            "-c",
            &format!("{} code.py anon_mprotect", python.display()),
        ])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("PYTHON-OK"),
        "{}",
        text(&o)
    );
    assert!(
        !t.ws.join("anon_mprotect.ran").exists(),
        "python became a JIT through a link in the workspace:\n{}",
        text(&o)
    );
    // Named in `exec.jit`, the same program may.
    let p = t.policy(&format!(
        "[exec]\nmode = \"allowlist\"\nallow = [{list}]\njit = [\"{}\"]\n",
        python.display()
    ));
    let o = t.run(
        &["--policy", &p, "--no-index"],
        &format!("{} code.py anon_mprotect", python.display()),
    );
    assert!(
        t.ws.join("anon_mprotect.ran").exists(),
        "exec.jit must let python make code:\n{}",
        text(&o)
    );
}
