// SPDX-License-Identifier: GPL-2.0
/*
 * warden exec guard, BPF LSM backend.
 *
 * Decides, inside the kernel, on the file the kernel is about to execute or map executable,
 * for tasks in warden's session cgroups only (descendants of the warden root cgroup that the
 * daemon creates). Identity is the SHA-256 of the content, computed by IMA
 * (bpf_ima_file_hash) in sleepable programs and cached in inode storage with a stamp
 * (ctime with its flag bit masked, size, i_version). Any open for write drops the cached
 * hash, so a modified file is always hashed again. Policy is per session: a hash map keyed
 * by (session cgroup id, sha256) and a per-session config.
 *
 * Hooks:
 *  - bprm_check_security (sleepable): runs for the executable and again for every
 *    interpreter the kernel walks through (#! scripts, binfmt_misc), so a script is checked
 *    as itself and as its interpreter. bprm_creds_for_exec runs once, for the first file
 *    only, which is why it is not used.
 *  - mmap_file (sleepable): PROT_EXEC mappings of files (ld.so FILE, LD_PRELOAD, dlopen).
 *    The kernel's own exec-time mappings (the binary and its PT_INTERP loader) are decided
 *    like any other mapping, on the cached hash, so a denied loader is denied too.
 *  - file_mprotect (not sleepable): adding PROT_EXEC to a file mapping is decided on the
 *    cached hash only; no cached, current hash means deny in enforce mode.
 *  - file_open: an open for write invalidates the cached hash; done by a build tool
 *    (transitive trust), it marks the file as built in this session instead.
 *  - path_truncate: drops the cached hash and the built mark.
 *  - bprm_committed_creds: after the point of no return, marks the task as a build tool
 *    when its new image is one (a failed exec cannot leave the mark behind).
 */
#include <vmlinux.h> /* src/bpf/vmlinux.h, or a dump build.rs put first on the path */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "execguard.h"

char LICENSE[] SEC("license") = "GPL";

/* Never used by the programs: these globals only put the ring-buffer event and the enums
 * the loader decodes into the object's BTF, so the skeleton generates their Rust types
 * (`types::wg_event`, ...) and the loader's layout comes from this C definition. */
const volatile struct wg_event wg_event_type = {};
const volatile enum wg_kind wg_kind_type = WG_K_EXEC;
const volatile enum wg_reason wg_reason_type = WG_R_OK;
const volatile enum wg_mode wg_mode_type = WG_MODE_DENYLIST;
const volatile enum wg_verdict wg_verdict_type = WG_V_ALLOW;
const volatile enum wg_rule_flag wg_rule_flag_type = WG_F_DENY;
const volatile enum wg_counter wg_counter_type = WG_COUNT_LOST;

#define EPERM 1
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define FMODE_WRITE 0x2
#define HASH_ALGO_SHA256 4
#define TMPFS_MAGIC 0x01021994
#define FUSE_SUPER_MAGIC 0x65735546
#define NFS_SUPER_MAGIC 0x6969
#define SMB2_SUPER_MAGIC 0xfe534d42
#define CIFS_SUPER_MAGIC 0xff534d42

/* Global settings (index 0), written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct wg_global);
} wg_global SEC(".maps");

/* Session cgroup id -> session settings. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct wg_session);
} wg_sessions SEC(".maps");

/* (session, sha256) -> rule. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct wg_rule_key);
	__type(value, struct wg_rule);
} wg_rules SEC(".maps");

/* Cached identity per inode. */
struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wg_inode);
} wg_inodes SEC(".maps");

/* Kernels without IMA: (s_dev, inode) -> stamp + hash, fed by the daemon, which hashes every
 * file opened for exec in a session (fanotify FAN_OPEN_EXEC_PERM, answered before the exec
 * goes on) and pre-fills libraries from the trust index and the system library directories. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct wg_ident_key);
	__type(value, struct wg_ident);
} wg_idents SEC(".maps");

/* Per task: runs a build tool of its session. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u32);
} wg_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} wg_events SEC(".maps");

/* [0] events lost (ring buffer full), [1] decisions made. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} wg_counters SEC(".maps");

static __always_inline void count(u32 i)
{
	u64 *v = bpf_map_lookup_elem(&wg_counters, &i);
	if (v)
		*v += 1;
}

/* The session cgroup of the current task (the ancestor one level below the warden root),
 * or 0 when the task is not in a warden session. */
static __always_inline u64 current_session(void)
{
	u32 zero = 0;
	struct wg_global *g = bpf_map_lookup_elem(&wg_global, &zero);
	if (!g || !g->root_cgid)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	if (!cg)
		return 0;
	int level = BPF_CORE_READ(cg, level);
	u32 rl = g->root_level;
	if (rl > 64 || level <= (int)rl)
		return 0;
	struct cgroup *root = NULL, *sess = NULL;
	bpf_core_read(&root, sizeof(root), &cg->ancestors[rl & 63]);
	bpf_core_read(&sess, sizeof(sess), &cg->ancestors[(rl + 1) & 63]);
	if (!root || !sess)
		return 0;
	if (BPF_CORE_READ(root, kn, id) != g->root_cgid)
		return 0;
	return BPF_CORE_READ(sess, kn, id);
}

struct stamp {
	s64 ctime_sec;
	u32 ctime_nsec;
	u64 size;
	u64 iversion;
};

struct inode___pre611 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

/* Direct loads from BTF pointers (compiled to plain loads the verifier guards), not
 * bpf_probe_read calls: this runs on every exec and executable mapping. */
static __always_inline void stamp_of(struct inode *ino, struct stamp *s)
{
	if (bpf_core_field_exists(ino->i_ctime_sec)) {
		s->ctime_sec = ino->i_ctime_sec;
		/* Multigrain timestamps keep a "queried" flag in bit 31. */
		s->ctime_nsec = ino->i_ctime_nsec & 0x3fffffff;
	} else {
		struct inode___pre611 *o = (void *)ino;
		s->ctime_sec = BPF_CORE_READ(o, __i_ctime.tv_sec);
		s->ctime_nsec = BPF_CORE_READ(o, __i_ctime.tv_nsec);
	}
	s->size = ino->i_size;
	/* Bit 0 of i_version is the "queried" flag. */
	s->iversion = ino->i_version.counter >> 1;
}

static __always_inline bool stamp_eq(struct wg_inode *v, struct stamp *s)
{
	return v->ctime_sec == s->ctime_sec && v->ctime_nsec == s->ctime_nsec && v->size == s->size &&
	       v->iversion == s->iversion;
}

/* File systems whose content can change behind the kernel's back are never cached. */
static __always_inline bool cacheable(struct inode *ino)
{
	unsigned long m = ino->i_sb->s_magic;
	return m != FUSE_SUPER_MAGIC && m != NFS_SUPER_MAGIC && m != SMB2_SUPER_MAGIC && m != CIFS_SUPER_MAGIC;
}

static __always_inline void emit(u64 sess, u32 kind, u32 verdict, u32 reason, u32 rule, struct file *f, const u8 *hash)
{
	count(WG_COUNT_DECISIONS);
	struct wg_event *e = bpf_ringbuf_reserve(&wg_events, sizeof(*e), 0);
	if (!e) {
		count(WG_COUNT_LOST);
		return;
	}
	e->session = sess;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->kind = kind;
	e->verdict = verdict;
	e->reason = reason;
	e->rule = rule;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->name[0] = 0;
	if (f) {
		const unsigned char *n = BPF_CORE_READ(f, f_path.dentry, d_name.name);
		bpf_probe_read_kernel_str(e->name, sizeof(e->name), n);
		e->ino = BPF_CORE_READ(f, f_inode, i_ino);
	} else {
		e->ino = 0;
	}
	if (hash)
		__builtin_memcpy(e->hash, hash, 32);
	else
		__builtin_memset(e->hash, 0, 32);
	bpf_ringbuf_submit(e, 0);
}

/* The content hash of `f`: from inode storage when the stamp is current, else computed by
 * IMA (sleepable context only) and cached. Returns 0, or a WG_R_* reason on failure. */
static __always_inline u32 identity(struct file *f, bool can_sleep, u8 *out, u32 *flags, u64 *built, bool *cached)
{
	struct inode *ino = f->f_inode;
	struct stamp s = {};
	stamp_of(ino, &s);
	struct wg_inode *v = bpf_inode_storage_get(&wg_inodes, ino, 0, 0);
	*flags = v ? v->flags : 0;
	*built = v ? v->built_session : 0;
	if (v && (v->flags & WG_I_HASHED) && stamp_eq(v, &s)) {
		__builtin_memcpy(out, v->hash, 32);
		*cached = true;
		return 0;
	}
	u32 zero = 0;
	struct wg_global *g = bpf_map_lookup_elem(&wg_global, &zero);
	if (g && g->no_ima) {
		struct wg_ident_key k = { .dev = ino->i_sb->s_dev, .ino = ino->i_ino };
		struct wg_ident *id = bpf_map_lookup_elem(&wg_idents, &k);
		if (!id || id->ctime_sec != s.ctime_sec || id->ctime_nsec != s.ctime_nsec || id->size != s.size)
			return WG_R_NOT_HASHED;
		__builtin_memcpy(out, id->hash, 32);
		*cached = true;
		return 0;
	}
	if (!can_sleep)
		return WG_R_NOT_CACHED;
	u8 h[64] = {};
	long algo = bpf_ima_file_hash(f, h, sizeof(h));
	if (algo < 0)
		return WG_R_NO_HASH;
	if (algo != HASH_ALGO_SHA256)
		return WG_R_NOT_SHA256;
	__builtin_memcpy(out, h, 32);
	/* Cache only when nobody holds the file open for write and nothing changed while we
	 * hashed (i_writecount < 0 is an exec in progress denying writes). */
	struct stamp after = {};
	stamp_of(ino, &after);
	int writers = ino->i_writecount.counter;
	if (writers <= 0 && cacheable(ino) && after.ctime_sec == s.ctime_sec && after.ctime_nsec == s.ctime_nsec &&
	    after.size == s.size && after.iversion == s.iversion) {
		v = bpf_inode_storage_get(&wg_inodes, ino, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (v) {
			v->ctime_sec = s.ctime_sec;
			v->ctime_nsec = s.ctime_nsec;
			v->size = s.size;
			v->iversion = s.iversion;
			__builtin_memcpy(v->hash, h, 32);
			v->flags |= WG_I_HASHED;
			*flags = v->flags;
		}
	}
	return 0;
}

/* The decision for content `hash` in session `sess`. */
static __always_inline u32 decide(u64 sess, struct wg_session *cfg, const u8 *hash, u32 iflags, u64 built, u32 *rule)
{
	struct wg_rule_key k = { .session = sess };
	__builtin_memcpy(k.hash, hash, 32);
	struct wg_rule *r = bpf_map_lookup_elem(&wg_rules, &k);
	*rule = r ? r->rule : 0;
	if (r && (r->flags & WG_F_DENY))
		return WG_R_DENIED;
	if (cfg->mode == WG_MODE_ALLOWLIST) {
		if (r && (r->flags & WG_F_ALLOW))
			return 0;
		if ((iflags & WG_I_BUILT) && built == sess && cfg->transitive)
			return 0;
		return WG_R_NOT_ALLOWED;
	}
	return 0;
}

static __always_inline bool anonymous(struct file *f)
{
	/* memfd, O_TMPFILE and unlinked files: no name anywhere in the file system. */
	return f->f_inode->__i_nlink == 0;
}

static __always_inline int judge(struct file *f, u32 kind, bool can_sleep)
{
	u64 sess = current_session();
	if (!sess)
		return 0;
	struct wg_session *cfg = bpf_map_lookup_elem(&wg_sessions, &sess);
	if (!cfg) {
		/* A session cgroup the daemon does not know: fail closed. */
		emit(sess, kind, WG_V_DENY, WG_R_NO_SESSION, 0, f, NULL);
		return -EPERM;
	}
	u32 reason = 0, rule = 0, iflags = 0;
	u64 built = 0;
	u8 hash[32] = {};
	bool have_hash = false, cached = false;
	if (anonymous(f) && !cfg->allow_memfd) {
		reason = WG_R_ANONYMOUS;
	} else {
		reason = identity(f, can_sleep, hash, &iflags, &built, &cached);
		if (!reason) {
			have_hash = true;
			reason = decide(sess, cfg, hash, iflags, built, &rule);
		}
	}
	u32 verdict = reason ? (cfg->enforce ? WG_V_DENY : WG_V_AUDIT) : WG_V_ALLOW;
	/* Reported: every refusal (or audit), and every exec whose content was hashed afresh.
	 * Allowed cache hits are only counted (they would flood the log and cost the hot path). */
	if (verdict != WG_V_ALLOW || (kind == WG_K_EXEC && !cached))
		emit(sess, kind, verdict, reason, rule, f, have_hash ? hash : NULL);
	else
		count(WG_COUNT_DECISIONS);
	return verdict == WG_V_DENY ? -EPERM : 0;
}

/* A write drops the daemon-fed identity too (it is re-hashed at the next exec open). */
static __always_inline void forget_ident(struct inode *ino)
{
	u32 zero = 0;
	struct wg_global *g = bpf_map_lookup_elem(&wg_global, &zero);
	if (!g || !g->no_ima)
		return;
	struct wg_ident_key k = { .dev = ino->i_sb->s_dev, .ino = ino->i_ino };
	bpf_map_delete_elem(&wg_idents, &k);
}

SEC("lsm.s/bprm_check_security")
int BPF_PROG(wg_bprm_check, struct linux_binprm *bprm)
{
	return judge(bprm->file, WG_K_EXEC, true);
}

SEC("lsm.s/mmap_file")
int BPF_PROG(wg_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return judge(file, WG_K_MMAP, true);
}

SEC("lsm/file_mprotect")
int BPF_PROG(wg_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	if (!(prot & PROT_EXEC))
		return 0;
	if (vma->vm_flags & VM_EXEC)
		return 0;
	struct file *f = vma->vm_file;
	if (!f)
		return 0; /* anonymous memory (JITs) */
	return judge(f, WG_K_MPROTECT, false);
}

SEC("lsm/file_open")
int BPF_PROG(wg_file_open, struct file *file)
{
	if (!(file->f_mode & FMODE_WRITE))
		return 0;
	struct inode *ino = file->f_inode;
	forget_ident(ino);
	struct wg_inode *v = bpf_inode_storage_get(&wg_inodes, ino, 0, 0);
	u64 sess = current_session();
	u32 *builder = NULL;
	if (sess) {
		struct task_struct *t = bpf_get_current_task_btf();
		builder = bpf_task_storage_get(&wg_tasks, t, 0, 0);
	}
	if (builder && *builder && ino->i_writecount.counter == 1) {
		/* A build tool writes it, and nobody else holds it open for write. */
		v = bpf_inode_storage_get(&wg_inodes, ino, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (v) {
			v->flags = WG_I_BUILT;
			v->built_session = sess;
		}
		return 0;
	}
	if (v)
		v->flags = 0;
	return 0;
}

SEC("lsm/path_truncate")
int BPF_PROG(wg_path_truncate, const struct path *path)
{
	struct inode *ino = path->dentry->d_inode;
	if (!ino)
		return 0;
	struct wg_inode *v = bpf_inode_storage_get(&wg_inodes, ino, 0, 0);
	if (v)
		v->flags = 0;
	forget_ident(ino);
	return 0;
}

SEC("lsm/bprm_committed_creds")
int BPF_PROG(wg_bprm_committed, struct linux_binprm *bprm)
{
	u64 sess = current_session();
	if (!sess)
		return 0;
	struct wg_session *cfg = bpf_map_lookup_elem(&wg_sessions, &sess);
	struct task_struct *t = bpf_get_current_task_btf();
	if (!cfg || cfg->mode != WG_MODE_ALLOWLIST || !cfg->transitive) {
		/* No transitive trust here: only clear a mark inherited from a builder parent. */
		u32 *old = bpf_task_storage_get(&wg_tasks, t, 0, 0);
		if (old)
			*old = 0;
		return 0;
	}
	u32 *b = bpf_task_storage_get(&wg_tasks, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!b)
		return 0;
	*b = 0;
	struct wg_inode *v = bpf_inode_storage_get(&wg_inodes, bprm->file->f_inode, 0, 0);
	if (!v || !(v->flags & WG_I_HASHED))
		return 0;
	struct wg_rule_key k = { .session = sess };
	__builtin_memcpy(k.hash, v->hash, 32);
	struct wg_rule *r = bpf_map_lookup_elem(&wg_rules, &k);
	if (r && (r->flags & WG_F_BUILDER) && !(r->flags & WG_F_DENY))
		*b = 1;
	return 0;
}
