//! The exec policy's rules, compiled in `warden_policy::progrules` (names, paths, hashes and
//! trust indexes resolved to identities; the decision on one identity), re-exported here.
//! This module supplies what the policy crate does not do: the content identity of a file,
//! [`Identity`] implemented by the hash [`Cache`] (SHA-256 through the persistent cache)
//! and the SQLite trust index ([`crate::index`]).

use crate::cache::Cache;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
pub use warden_policy::progrules::*;
use warden_policy::Policy;

impl Identity for Cache {
    fn of_path(&self, path: &Path) -> std::io::Result<Hash> {
        self.hash_path(path)
    }

    fn of_file(&self, fd: BorrowedFd<'_>) -> std::io::Result<Hash> {
        self.hash(fd).map(|(h, _, _)| h)
    }

    fn index(&self, db: &Path) -> Result<Vec<Hash>, String> {
        // The policy crate's trait carries the error as text.
        crate::index::Index::open_existing(db)
            .and_then(|i| i.hashes())
            .map_err(|e| e.to_string())
    }
}

/// Resolves the policy's exec rules, hashing through a fresh cache.
pub fn from_policy(p: &Policy, home: &Path) -> Result<ExecRules, String> {
    from_policy_cached(p, home, Arc::new(Cache::default()))
}

/// Resolves the policy's exec rules, hashing through a (persistent) cache.
pub fn from_policy_cached(p: &Policy, home: &Path, cache: Arc<Cache>) -> Result<ExecRules, String> {
    ExecRules::compile(p, home, cache)
}
