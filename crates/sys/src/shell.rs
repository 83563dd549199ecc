//! Quoting a word for `sh`: the one copy of the rule.
//!
//! A word made only of ASCII letters, digits and `-_./=:@%+,` is left bare; anything else
//! (including the empty word) is single-quoted, with each `'` written `'\''`. The bare set
//! holds no character any POSIX shell treats specially in a word (no glob, brace, tilde,
//! quote or expansion), so the output reads back as exactly
//! the input. Single quotes are used rather than `shlex`'s mix of single and double quotes
//! because warden's own command-line parser and the humans reading approval prompts see
//! this text, and it must stay what they saw before.

/// Bytes left bare.
const BARE: &[u8] = b"-_./=:@%+,";

/// `s` as one `sh` word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || BARE.contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `words` quoted and joined with spaces: a command line `sh` reads back as `words`.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted() {
        assert_eq!(quote("ls"), "ls");
        assert_eq!(quote("/usr/bin/x-y_z.1"), "/usr/bin/x-y_z.1");
        assert_eq!(quote("a=b:c@d%e+f,g"), "a=b:c@d%e+f,g");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        for s in [
            "$HOME", "*", "~", "a;b", "`x`", "{a,b}", "!", "#", "é", "a\nb",
        ] {
            assert!(quote(s).starts_with('\''), "{s:?} must be quoted");
        }
        assert_eq!(join(&["echo", "a b", "it's"]), r"echo 'a b' 'it'\''s'");
    }

    #[test]
    fn sh_reads_it_back() {
        let words = [
            "plain", "", "a b", "it's", "$(id)", "`id`", "*", "~root", "a\nb", "\\", "\"q\"",
            "x=1,2",
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {}", join(&words)))
            .output()
            .unwrap();
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(&got[..words.len()], &words[..]);
    }
}
