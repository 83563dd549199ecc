//! Credentials inside configuration files the agent may read, shown with them removed.
//!
//! The default policy shows the user's git configuration (`~/.gitconfig`,
//! `~/.config/git/config`): git needs the user's name, aliases and URL rewrites. Tokens live
//! there too: `[url "https://ghp_...@github.com/"] insteadOf = https://github.com/` (the usual
//! set-up for private Go modules), `http.extraHeader = AUTHORIZATION: basic ...`, a `token =`
//! of a tool. The sandbox shows such a file as a read-only copy ([`crate::agents::View`])
//! where each URL's user information is dropped and every other line holding a credential is
//! commented out. The host's file never changes; a file without credentials is shown as it is.

/// Keys whose value is a credential (git config keys are case-insensitive).
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["extraheader", "pat"].contains(&k.as_str())
        || ["token", "password", "passwd", "secret", "apikey", "api-key"]
            .iter()
            .any(|s| k.ends_with(s))
}

/// `line` with the user information of every URL in it removed (`https://tok@host/` ->
/// `https://host/`).
fn strip_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | ',' | ';') || c.is_whitespace())
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(at) => rest = &after[at + 1..],
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The key of a `key = value` line (`None` for a section header, comment or blank line).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with(['[', '#', ';']) {
        return None;
    }
    let end = t
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(t.len());
    Some(&t[..end])
}

/// `text` (a git configuration file) with its credentials removed, or `None` when it holds
/// none.
pub fn git_config(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    // A value continued on the next line (a trailing backslash) goes with its line.
    let mut hiding_continuation = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let continues = body.ends_with('\\');
        if hiding_continuation {
            out.push_str("# (hidden by warden)\n");
            hiding_continuation = continues;
            continue;
        }
        let holds = |t: &str| {
            warden_policy::env::has_url_password(t.as_bytes())
                || warden_policy::env::has_known_token(t.as_bytes())
        };
        let key_secret = key_of(body).is_some_and(secret_key);
        let secret = key_secret || holds(body);
        if secret && !key_secret {
            // In a URL's user information only: the URL stays, without it.
            let stripped = strip_userinfo(body);
            if stripped != body && !holds(&stripped) {
                out.push_str(&stripped);
                out.push_str(&line[body.len()..]);
                changed = true;
                continue;
            }
        }
        if secret {
            let t = body.trim_start();
            if t.starts_with('[') {
                // A section header (`[url "..."]` with a token a URL scheme does not mark):
                // kept as a section nobody uses, so its keys stay out of the one before.
                out.push_str("[warden \"hidden\"] # a credential, hidden by warden\n");
            } else {
                match key_of(body).filter(|k| !holds(k) && !t.starts_with(['#', ';'])) {
                    Some(k) => out.push_str(&format!("# {k} = (a credential, hidden by warden)\n")),
                    None => out.push_str("# (a credential, hidden by warden)\n"),
                }
            }
            hiding_continuation = continues;
            changed = true;
            continue;
        }
        out.push_str(line);
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_urls_headers_and_values_are_removed() {
        let text = "[user]\n\tname = Alice\n\
            [url \"https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/\"]\n\
            \tinsteadOf = https://github.com/\n\
            [url \"https://x-access-token:s3cr3tvalue@gitlab.example/\"]\n\
            \tinsteadOf = https://gitlab.example/\n\
            [http \"https://example.org\"]\n\
            \textraHeader = AUTHORIZATION: basic c2VjcmV0OnZhbHVl\n\
            [hub]\n\toauthtoken = 0123456789abcdef\n\
            [alias]\n\tco = checkout\n\
            [credential]\n\thelper = store\n\
            [x]\n\tpassword = one \\\n\tcontinued\n\tafter = kept\n\
            # an old one: ghp_abcdefghijklmnopqrstuvwxyz9999\n\
            \tghp_abcdefghijklmnopqrstuvwxyz8888 = x\n";
        let out = git_config(text).expect("credentials found");
        for gone in [
            "ghp_abcdefghij",
            "s3cr3tvalue",
            "c2VjcmV0",
            "0123456789abcdef",
            "continued",
            "ghp_",
        ] {
            assert!(!out.contains(gone), "{gone} left in:\n{out}");
        }
        for kept in [
            "name = Alice",
            "[url \"https://github.com/\"]",
            "[url \"https://gitlab.example/\"]",
            "co = checkout",
            "helper = store",
            "after = kept",
            "insteadOf = https://github.com/",
        ] {
            assert!(out.contains(kept), "{kept} missing from:\n{out}");
        }
        assert_eq!(out.lines().count(), text.lines().count(), "{out}");
        assert_eq!(git_config(&out), None, "not idempotent:\n{out}");
    }

    #[test]
    fn a_file_without_credentials_is_shown_as_it_is() {
        for t in [
            "",
            "[user]\n\tname = Alice\n\temail = a@example.org\n",
            "[url \"git@github.com:\"]\n\tinsteadOf = https://github.com/\n",
            "[remote \"origin\"]\n\turl = https://alice@bitbucket.org/a/b.git\n",
            "[core]\n\tpager = less -R # token-free\n",
        ] {
            assert_eq!(git_config(t), None, "{t}");
        }
    }
}
