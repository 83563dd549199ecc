//! The git configuration filter on any file text: never panics, keeps the number of lines
//! (section structure), leaves no URL password or known token in what it shows, and its
//! output holds nothing more to hide (idempotent).
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::env::{has_known_token, has_url_password};
use warden_sandbox::redact::git_config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Some(out) = git_config(text) else {
        return;
    };
    assert_eq!(out.lines().count(), text.lines().count());
    for line in out.lines() {
        assert!(!has_url_password(line.as_bytes()), "{line:?}");
        assert!(!has_known_token(line.as_bytes()), "{line:?}");
    }
    assert_eq!(git_config(&out), None);
});
