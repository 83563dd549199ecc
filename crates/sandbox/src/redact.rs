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
    ["extraheader", "pat", "pw", "tok", "auth", "cred", "creds"].contains(&k.as_str())
        || [
            "token",
            "password",
            "passwd",
            "pass",
            "secret",
            "apikey",
            "api-key",
            "bearer",
            "privatekey",
            "private-key",
        ]
        .iter()
        .any(|s| k.ends_with(s))
}

/// A value that names a credential itself: `password=` in a credential helper's inline
/// script, `access_token=` in a URL's query.
fn secret_value(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "password=",
        "passwd=",
        "token=",
        "secret=",
        "apikey=",
        "api_key=",
    ]
    .iter()
    .any(|p| l.contains(p))
}

/// The `key = value` part of a line: after a section header on the same line
/// (`[foo] password = x`, which git reads as `foo.password`), else the line itself.
fn entry_of(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('[') {
        if let Some(end) = header_end(t) {
            return &t[end..];
        }
    }
    line
}

/// Where a section header (`[name "sub \" name"]`) ends, past its `]`.
fn header_end(t: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in t.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
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
        let entry = entry_of(body);
        let key_secret = key_of(entry).is_some_and(secret_key) || secret_value(entry);
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
                // The header kept (without a URL's user information) and what followed it
                // on its line (a key git reads in that section) hidden; a header that holds
                // a credential itself (a token a URL scheme does not mark) becomes a
                // section nobody uses, so its keys stay out of the one before.
                let end = header_end(t);
                let header = strip_userinfo(&t[..end.unwrap_or(t.len())]);
                if end.is_none() || holds(&header) || secret_value(&header) {
                    out.push_str("[warden \"hidden\"] # a credential, hidden by warden\n");
                } else {
                    out.push_str(&header);
                    out.push_str(" # (a credential, hidden by warden)\n");
                }
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
            [foo]password = SAMELINE1\n[bar \"x\"] token = SAMELINE2\n\
            [sendemail]\n\tsmtpPass = SMTPSECRET\n\
            [credential]\n\thelper = \"!f() { echo password=HELPERSECRET; }; f\"\n\
            [remote \"o\"]\n\tpushurl = https://h.example/r?access_token=QUERYSECRET\n\
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
            "SAMELINE",
            "SMTPSECRET",
            "HELPERSECRET",
            "QUERYSECRET",
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
            "[foo] # (a credential, hidden by warden)",
            "[bar \"x\"] # (a credential, hidden by warden)",
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
