/* SPDX-License-Identifier: GPL-2.0 */
/* Types shared by execguard.bpf.c and the Rust loader, which uses the skeleton's generated
 * Rust types for them (`types::wg_*`): the layout is defined here only. Every struct spells
 * out its padding (`pad`), since the loader hands them to the kernel as bytes. */
#ifndef WARDEN_EXECGUARD_H
#define WARDEN_EXECGUARD_H

enum wg_mode { WG_MODE_DENYLIST = 0, WG_MODE_ALLOWLIST = 1 };
/* What was decided. */
enum wg_kind { WG_K_EXEC = 1, WG_K_MMAP = 2, WG_K_MPROTECT = 3 };
enum wg_verdict { WG_V_ALLOW = 0, WG_V_DENY = 1, WG_V_AUDIT = 2 };
/* Why (0: allowed). */
enum wg_reason {
	WG_R_OK = 0,
	WG_R_DENIED = 1,      /* the content's hash is denied */
	WG_R_NOT_ALLOWED = 2, /* allowlist mode, hash not allowed */
	WG_R_ANONYMOUS = 3,   /* memfd / O_TMPFILE / unlinked file */
	WG_R_NO_HASH = 4,     /* IMA could not hash the file */
	WG_R_NOT_SHA256 = 5,  /* IMA hashes with another algorithm */
	WG_R_NOT_CACHED = 6,  /* non-sleepable hook and no current cached hash */
	WG_R_NO_SESSION = 7,  /* a session cgroup the daemon does not know */
	WG_R_NOT_HASHED = 8,  /* no IMA, and no current hash from the daemon */
};
/* Rule flags (bits of wg_rule.flags). */
enum wg_rule_flag { WG_F_DENY = 1, WG_F_ALLOW = 2, WG_F_BUILDER = 4 };
/* Inode flags. */
#define WG_I_HASHED 1
#define WG_I_BUILT 2
/* Counters (indices of wg_counters). */
enum wg_counter { WG_COUNT_LOST = 0, WG_COUNT_DECISIONS = 1 };

struct wg_global {
	unsigned long long root_cgid; /* kernfs id of the warden root cgroup */
	unsigned int root_level;      /* its depth below the cgroup2 root */
	unsigned int no_ima;          /* hashes come from the daemon (wg_idents), not IMA */
};

/* Userspace-fed identities (kernels without IMA), keyed by the kernel's s_dev and inode. */
struct wg_ident_key {
	unsigned long long dev;
	unsigned long long ino;
};

struct wg_ident {
	long long ctime_sec;
	unsigned int ctime_nsec;
	unsigned int pad;
	unsigned long long size;
	unsigned char hash[32];
};

struct wg_session {
	unsigned int mode; /* enum wg_mode */
	unsigned int enforce;
	unsigned int allow_memfd;
	unsigned int transitive; /* trust what this session's build tools write */
};

struct wg_rule_key {
	unsigned long long session;
	unsigned char hash[32];
};

struct wg_rule {
	unsigned int flags; /* WG_F_* */
	unsigned int rule;  /* index into the daemon's rule names */
};

struct wg_inode {
	long long ctime_sec;
	unsigned int ctime_nsec;
	unsigned int flags; /* WG_I_* */
	unsigned long long size;
	unsigned long long iversion;
	unsigned long long built_session;
	unsigned char hash[32];
};

struct wg_event {
	unsigned long long session;
	unsigned long long ino;
	unsigned int pid;
	unsigned int kind;
	unsigned int verdict;
	unsigned int reason;
	unsigned int rule;
	unsigned int pad;
	unsigned char hash[32];
	char comm[16];
	char name[64];
};

#endif
