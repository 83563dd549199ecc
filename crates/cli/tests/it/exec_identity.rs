//! Identity that cannot be forged (issue 11, sections 3 and 4), through `warden run` with the
//! seccomp exec-guard backend, judged from the host after the session:
//! - a stamp forged through a shared writable mapping (content rewritten, size, mtime and
//!   ctime unchanged) does not let denied or unknown content run, in this session or the next;
//! - `personality(READ_IMPLIES_EXEC)` cannot turn a read mapping of denied content executable;
//! - an `mprotect` range spanning anonymous memory and a file mapping is decided on the file;
//! - setuid/setgid bits and xattr writes are refused.
//!
//! Each test also checks that the legitimate workflow keeps working.

use super::common::text;
use super::common::warden;
use super::common::Scratch;
use std::os::unix::fs::PermissionsExt;
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
        T(Scratch::beside("warden-id", name))
    }
    /// These tests measure the exec guard alone: the risk score (which would freeze a
    /// session running the whole evasion corpus; see tests/it/risk.rs) is off.
    fn policy(&self, text: &str) -> String {
        let p = self.root.join("policy.toml");
        std::fs::write(&p, format!("{text}\n[risk]\nenabled = false\n")).unwrap();
        p.display().to_string()
    }
    /// One session, with this test's own `$HOME` (so its hash cache is its own).
    fn run(&self, args: &[&str], script: &str) -> Output {
        warden(&self.home)
            .arg("run")
            .args(["--exec-guard", "seccomp"])
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

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The program whose content must not run: it leaves a marker in the workspace.
const EVIL: &str = r#"
#include <stdio.h>
int main(void) {
    FILE *f = fopen("EVIL-MARKER", "w");
    if (f) { fputs("ran\n", f); fclose(f); }
    puts("EVIL-RAN");
    return 0;
}
"#;

/// `forger TARGET PAYLOAD`: maps TARGET shared and writable and dirties every page (this
/// write updates mtime/ctime), gets the exec guard to hash TARGET (an exec attempt: the
/// kernel refuses it with ETXTBSY while a writable mapping exists, but the guard's check
/// runs first), then copies PAYLOAD into the already-dirty pages (no page fault, so no
/// timestamp update) and unmaps. Prints STAMP-SAME when size, mtime and ctime are exactly
/// as they were when the guard hashed the file.
const FORGER: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
static int same(struct stat *a, struct stat *b) {
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
        a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
        a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_ino == b->st_ino;
}
int main(int c, char **v) {
    if (c < 3) return 2;
    int fd = open(v[1], O_RDWR);
    if (fd < 0) { perror("open target"); return 2; }
    struct stat a, b;
    fstat(fd, &a);
    char *buf = malloc(a.st_size);
    int pf = open(v[2], O_RDONLY);
    if (pf < 0 || read(pf, buf, a.st_size) != a.st_size) { puts("payload size mismatch"); return 2; }
    volatile char *m = mmap(0, a.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 2; }
    close(fd);
    for (off_t i = 0; i < a.st_size; i += 4096) m[i] = m[i];
    usleep(20000);
    stat(v[1], &a);
    pid_t p = fork();
    if (p == 0) {
        execl(v[1], v[1], (char *)0);
        printf("first exec: %s\n", strerror(errno));
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    fflush(stdout);
    memcpy((char *)m, buf, a.st_size);
    munmap((void *)m, a.st_size);
    stat(v[1], &b);
    puts(same(&a, &b) ? "STAMP-SAME" : "STAMP-CHANGED");
    return 0;
}
"#;

/// The files of a forgery: `target` and `target2` (executable, `good` content) and
/// `payload` (the same size, `bad` content).
fn forgery(t: &T, good: Vec<u8>, bad: Vec<u8>) {
    assert_eq!(good.len(), bad.len());
    for n in ["target", "target2"] {
        std::fs::write(t.ws.join(n), &good).unwrap();
        chmod(&t.ws.join(n), 0o755);
    }
    std::fs::write(t.ws.join("payload"), &bad).unwrap();
}

fn evil_and_forger(t: &T) -> Vec<u8> {
    let evil = t.cc("evil", EVIL, &[]);
    t.cc("forger", FORGER, &[]);
    let e = std::fs::read(&evil).unwrap();
    std::fs::remove_file(&evil).unwrap();
    e
}

/// Session 1 forges `target` and runs it, and forges `target2` without running it;
/// session 2 (same `$HOME`, so the same persistent hash cache) runs `target2`.
const FORGE: &str =
    "./forger ./target ./payload; ./target; ./forger ./target2 ./payload; echo SESSION-END";
const SECOND: &str = "./target2; ./target; ./legit && echo LEGIT-OK";

#[test]
fn forged_stamp_does_not_run_denied_content_in_denylist_mode() {
    let t = T::new("forge-deny");
    let mut evil = evil_and_forger(&t);
    evil.extend_from_slice(&[0u8; 64]);
    // The denied content: evil, padded. The decoy differs in one padding byte.
    let denied = t.root.join("denied.bin");
    std::fs::write(&denied, &evil).unwrap();
    let mut decoy = evil.clone();
    *decoy.last_mut().unwrap() = 1;
    forgery(&t, decoy, evil.clone());
    std::fs::copy("/bin/true", t.ws.join("legit")).unwrap();
    let p = t.policy(&format!(
        "[exec]\ndeny = [\"curl\", \"sha256:{}\"]\n",
        sha256(&denied)
    ));
    let o = t.run(
        &["--policy", &p],
        &format!("{FORGE}; ./legit && echo LEGIT-OK"),
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        s.matches("STAMP-SAME").count(),
        2,
        "the forgery must keep every stamp field (else this test proves nothing):\n{}",
        text(&o)
    );
    assert!(
        s.contains("SESSION-END") && s.contains("LEGIT-OK"),
        "{}",
        text(&o)
    );
    for n in ["target", "target2"] {
        assert_eq!(
            std::fs::read(t.ws.join(n)).unwrap(),
            evil,
            "{n} holds the denied bytes on the host"
        );
    }
    assert!(
        !t.ws.join("EVIL-MARKER").exists() && !s.contains("EVIL-RAN"),
        "denied content ran behind a forged stamp:\n{}",
        text(&o)
    );
    // A second session (same $HOME, same persistent hash cache) must not inherit an entry.
    let o = t.run(&["--policy", &p], SECOND);
    assert!(
        !t.ws.join("EVIL-MARKER").exists(),
        "a later session ran the denied content:\n{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("LEGIT-OK"),
        "{}",
        text(&o)
    );
}

#[test]
fn forged_stamp_does_not_run_unknown_content_in_allowlist_mode() {
    let t = T::new("forge-allow");
    let evil = evil_and_forger(&t);
    let good = std::fs::read("/usr/bin/true").unwrap();
    assert!(evil.len() < good.len(), "evil must fit in true's size");
    let mut bad = evil.clone();
    bad.resize(good.len(), 0);
    forgery(&t, good, bad.clone());
    // Allowed: bash, true, the forger, and their libraries and loader.
    let allow = vec![
        "/usr/bin/bash".to_string(),
        "/usr/bin/true".to_string(),
        t.ws.join("forger").display().to_string(),
    ];
    let list = super::common::allow_list_with_libraries(&allow);
    let p = t.policy(&format!("[exec]\nmode = \"allowlist\"\nallow = [{list}]\n"));
    std::fs::copy("/usr/bin/true", t.ws.join("legit")).unwrap();
    let args = ["--policy", &p, "--no-index"];
    let o = t.run(&args, &format!("{FORGE}; ./legit && echo LEGIT-OK"));
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.matches("STAMP-SAME").count(), 2, "{}", text(&o));
    assert!(
        s.contains("LEGIT-OK"),
        "allowed content runs:\n{}",
        text(&o)
    );
    assert_eq!(std::fs::read(t.ws.join("target2")).unwrap(), bad);
    assert!(
        !t.ws.join("EVIL-MARKER").exists() && !s.contains("EVIL-RAN"),
        "unknown content ran behind a forged stamp:\n{}",
        text(&o)
    );
    let o = t.run(&args, SECOND);
    assert!(
        !t.ws.join("EVIL-MARKER").exists(),
        "a later session ran unknown content:\n{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("LEGIT-OK"),
        "{}",
        text(&o)
    );
}

/// A workspace program run again and again keeps its hash for the session (`kept`: not read
/// again while unchanged), and loses it to a forgery that keeps every stamp field: rewritten
/// through a shared writable mapping dirtied before the last hash, the program's next run is
/// decided on its new, denied bytes. The runs before are the legitimate workflow (a test
/// binary run again and again).
#[test]
fn a_kept_hash_does_not_outlive_a_forged_rewrite_of_the_program() {
    let t = T::new("kept-forge");
    let mut evil = evil_and_forger(&t);
    let good_src = "#include <stdio.h>\nint main(void) { puts(\"GOOD-RAN\"); return 0; }\n";
    let good = t.cc("good", good_src, &[]);
    let mut good = {
        let b = std::fs::read(&good).unwrap();
        std::fs::remove_file(t.ws.join("good")).unwrap();
        b
    };
    // The same size (ELF loaders ignore trailing bytes); the denied content is evil's.
    let n = evil.len().max(good.len()) + 64;
    evil.resize(n, 0);
    good.resize(n, 0);
    let denied = t.root.join("denied.bin");
    std::fs::write(&denied, &evil).unwrap();
    forgery(&t, good, evil.clone());
    let p = t.policy(&format!(
        "[exec]\ndeny = [\"curl\", \"sha256:{}\"]\n",
        sha256(&denied)
    ));
    let o = t.run(
        &["--policy", &p],
        "./target && ./target && ./target && echo KEPT-RUNS-OK; ./forger ./target ./payload; ./target; echo SESSION-END",
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("STAMP-SAME"),
        "the forgery must keep every stamp field (else this test proves nothing):\n{}",
        text(&o)
    );
    assert!(
        s.contains("KEPT-RUNS-OK") && s.matches("GOOD-RAN").count() == 3,
        "the program runs again and again:\n{}",
        text(&o)
    );
    assert!(s.contains("SESSION-END"), "{}", text(&o));
    assert_eq!(
        std::fs::read(t.ws.join("target")).unwrap(),
        evil,
        "target holds the denied bytes on the host"
    );
    assert!(
        !t.ws.join("EVIL-MARKER").exists() && !s.contains("EVIL-RAN"),
        "denied content ran on a kept hash:\n{}",
        text(&o)
    );
}

/// `maptest MODE FILE`:
/// - `rie`: personality(READ_IMPLIES_EXEC), then mmap FILE with PROT_READ only;
/// - `span`: a 3-page anonymous PROT_NONE reservation, FILE's first page mapped over the
///   middle page (PROT_READ), then one mprotect(PROT_READ|PROT_EXEC) over all three;
/// - `anon`: mprotect RW->RX of anonymous memory only (what a JIT does).
///
/// Prints whether FILE's mapping ended up executable (judged from /proc/self/maps).
const MAPTEST: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>
static int exec_mapped(void *addr) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int x = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e; char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && (uintptr_t)addr >= s && (uintptr_t)addr < e)
            x = perms[2] == 'x';
    }
    fclose(f);
    return x;
}
int main(int c, char **v) {
    int fd = open(v[2], O_RDONLY);
    if (fd < 0) { perror("open"); return 2; }
    if (!strcmp(v[1], "rie")) {
        int r = personality(READ_IMPLIES_EXEC);
        printf("personality: %s\n", r < 0 ? strerror(errno) : "set");
        void *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { printf("MAP-DENIED %d\n", errno); return 0; }
        puts(exec_mapped(p) ? "FILE-EXECUTABLE" : "FILE-NOT-EXECUTABLE");
        return 0;
    }
    char *base = mmap(0, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!strcmp(v[1], "anon")) {
        if (mprotect(base, 3 * 4096, PROT_READ | PROT_WRITE)) { perror("rw"); return 2; }
        int r = mprotect(base, 3 * 4096, PROT_READ | PROT_EXEC);
        printf("ANON %s\n", r ? strerror(errno) : "EXEC-OK");
        return 0;
    }
    void *f = mmap(base + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (f == MAP_FAILED) { perror("map file"); return 2; }
    int r = mprotect(base, 3 * 4096, PROT_READ | PROT_EXEC);
    printf("mprotect: %s\n", r ? strerror(errno) : "ok");
    puts(exec_mapped(f) ? "FILE-EXECUTABLE" : "FILE-NOT-EXECUTABLE");
    return 0;
}
"#;

#[test]
fn read_implies_exec_and_spanning_mprotect_do_not_map_denied_content_executable() {
    let t = T::new("maps");
    t.cc("maptest", MAPTEST, &[]);
    std::fs::copy("/usr/bin/curl", t.ws.join("c-copy")).unwrap();
    let p = t.policy("[exec]\ndeny = [\"curl\"]\n");
    let script = "echo \"rie: $(./maptest rie ./c-copy | tr '\\n' ' ')\"; \
                  echo \"span: $(./maptest span ./c-copy | tr '\\n' ' ')\"; \
                  echo \"span-allowed: $(./maptest span /usr/bin/true | tr '\\n' ' ')\"; \
                  echo \"anon: $(./maptest anon /usr/bin/true)\"; \
                  setarch $(uname -m) -R /bin/true && echo SETARCH-OK";
    let o = t.run(&["--policy", &p], script);
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let line = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or("")
            .to_string()
    };
    let rie = line("rie:");
    assert!(
        rie.contains("Operation not permitted") && !rie.contains("FILE-EXECUTABLE"),
        "READ_IMPLIES_EXEC must be refused and the denied file never mapped executable:\n{}",
        text(&o)
    );
    let span = line("span:");
    assert!(
        span.contains("Permission denied") && span.contains("FILE-NOT-EXECUTABLE"),
        "an mprotect spanning into a denied file mapping must be refused:\n{}",
        text(&o)
    );
    assert!(
        line("span-allowed:").contains("FILE-EXECUTABLE"),
        "the same spanning mprotect over allowed content works:\n{}",
        text(&o)
    );
    assert!(
        line("anon:").contains("EXEC-OK"),
        "JIT-style anonymous RX works:\n{}",
        text(&o)
    );
    assert!(
        s.contains("SETARCH-OK"),
        "other personas still work:\n{}",
        text(&o)
    );
}

#[test]
fn setuid_bits_and_xattr_writes_are_refused() {
    let t = T::new("suid");
    for n in ["s1", "s2", "s3", "plain"] {
        std::fs::copy("/bin/true", t.ws.join(n)).unwrap();
    }
    let script = r#"
chmod u+s s1 2>/dev/null; chmod g+s s2 2>/dev/null; chmod 6755 s3 2>/dev/null
/usr/bin/python3 - <<'PY'
import os
for name, f in (("chmod", lambda: os.chmod("s1", 0o4755)),
                ("fchmod", lambda: os.fchmod(os.open("s1", os.O_RDONLY), 0o4755)),
                ("creat", lambda: os.close(os.open("s4", os.O_CREAT | os.O_WRONLY, 0o4755)))):
    try:
        f(); print(name, "ALLOWED")
    except OSError as e:
        print(name, "refused", e.errno)
for name in ("security.warden", "security.capability", "user.warden"):
    try:
        os.setxattr("plain", name, b"x"); print("setxattr", name, "ALLOWED")
    except OSError as e:
        print("setxattr", name, "refused", e.errno)
try:
    os.removexattr("plain", "security.selinux"); print("removexattr ALLOWED")
except OSError as e:
    print("removexattr refused", e.errno)
PY
chmod 755 plain && chmod +x plain && ./plain && echo PLAIN-OK
"#;
    let o = t.run(&[], script);
    let s = String::from_utf8_lossy(&o.stdout);
    for n in ["s1", "s2", "s3", "plain"] {
        let mode = std::fs::metadata(t.ws.join(n))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o6000,
            0,
            "{n} has a setuid/setgid bit on the host ({mode:o}):\n{}",
            text(&o)
        );
    }
    if let Ok(md) = std::fs::metadata(t.ws.join("s4")) {
        assert_eq!(md.permissions().mode() & 0o6000, 0, "{}", text(&o));
    }
    assert!(!s.contains("ALLOWED"), "{}", text(&o));
    for name in ["security.warden", "security.capability", "user.warden"] {
        assert!(
            s.contains(&format!("setxattr {name} refused {}", libc::EOPNOTSUPP)),
            "{name}:\n{}",
            text(&o)
        );
    }
    assert!(
        s.contains("PLAIN-OK"),
        "ordinary chmod works:\n{}",
        text(&o)
    );
    // Judged on the host: no xattr reached the file.
    let o2 = Command::new("python3")
        .args([
            "-c",
            "import os,sys; print(os.listxattr(sys.argv[1]))",
            t.ws.join("plain").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let l = String::from_utf8_lossy(&o2.stdout);
    assert!(!l.contains("warden"), "xattr on the host: {l}");
}
