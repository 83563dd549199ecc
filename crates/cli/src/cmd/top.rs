//! `warden top`'s keys for approvals: pick a pending request on the screen and answer it.
//!
//! - `j` / `k` (or the arrow keys) move the selection (`>`) through the requests listed;
//!   `a` allows the selected request once, `A` for the session, `d` denies it; `q` or
//!   Ctrl-C quits.
//! - The answer goes through the session's control socket, the same path as `warden
//!   approve ID --allow-once|--allow-session|--deny` ([`super::session::answer_request`]),
//!   so it is audited as `uid U (pid P) via the control socket`.
//! - A key acts on the request that was highlighted on the screen the human saw, named by
//!   (session, request id); ids are never reused in a session. When the selected request
//!   leaves the list (answered elsewhere, timed out), the selection is dropped and an
//!   answer key does nothing until the human picks again: a request that moved under the
//!   cursor is never answered by a key meant for another.

use warden_session::Answer;

/// One key press, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Answer(Answer),
    Quit,
    Other,
}

/// Decodes the bytes read from the terminal (raw mode) into keys.
pub fn parse_keys(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let k = match bytes[i] {
            0x1b if bytes.get(i + 1) == Some(&b'[') || bytes.get(i + 1) == Some(&b'O') => {
                let k = match bytes.get(i + 2) {
                    Some(b'A') => Key::Up,
                    Some(b'B') => Key::Down,
                    _ => Key::Other,
                };
                i += 2;
                k
            }
            b'k' => Key::Up,
            b'j' | b'\t' => Key::Down,
            b'a' => Key::Answer(Answer::AllowOnce),
            b'A' => Key::Answer(Answer::AllowSession),
            b'd' | b'D' => Key::Answer(Answer::Deny),
            b'q' | b'Q' | 0x03 | 0x04 => Key::Quit,
            _ => Key::Other,
        };
        out.push(k);
        i += 1;
    }
    out
}

/// What a key asks `warden top` to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Quit,
    /// Answer request `id` of `session`.
    Answer {
        session: String,
        id: u64,
        answer: Answer,
    },
}

/// The selection over the requests shown, by (session, request id).
#[derive(Debug, Default)]
pub struct Picker {
    selected: Option<(String, u64)>,
    /// The selected request left the list: nothing is selected until the human moves.
    lost: bool,
    /// A line for the human (what the last key did).
    pub note: String,
}

impl Picker {
    /// The list on screen changed: keep the selection if its request is still there.
    pub fn refresh(&mut self, shown: &[(String, u64)]) {
        match &self.selected {
            Some(s) if shown.contains(s) => {}
            Some((session, id)) => {
                self.note = format!(
                    "request {id} of session {session} is no longer waiting (answered or timed out); select again with j/k"
                );
                self.selected = None;
                self.lost = true;
            }
            None if !self.lost => self.selected = shown.first().cloned(),
            None => {}
        }
    }

    /// This `warden top` answered the selected request: it leaves the list, and the next
    /// request is selected at the next refresh (it is shown before any key can act on it).
    pub fn answered(&mut self, note: String) {
        self.selected = None;
        self.lost = false;
        self.note = note;
    }

    pub fn selected(&self) -> Option<&(String, u64)> {
        self.selected.as_ref()
    }

    /// Applies one key to the list as it is shown.
    pub fn key(&mut self, k: Key, shown: &[(String, u64)]) -> Action {
        let pos = self
            .selected
            .as_ref()
            .and_then(|s| shown.iter().position(|x| x == s));
        match k {
            Key::Quit => Action::Quit,
            Key::Other => Action::Nothing,
            Key::Up | Key::Down => {
                if shown.is_empty() {
                    return Action::Nothing;
                }
                let next = match (pos, k) {
                    (None, _) => 0,
                    (Some(p), Key::Up) => p.saturating_sub(1),
                    (Some(p), _) => (p + 1).min(shown.len() - 1),
                };
                self.selected = Some(shown[next].clone());
                self.lost = false;
                self.note.clear();
                Action::Nothing
            }
            Key::Answer(answer) => match pos {
                Some(p) => {
                    let (session, id) = shown[p].clone();
                    Action::Answer {
                        session,
                        id,
                        answer,
                    }
                }
                None => {
                    self.note = "no request is selected: pick one with j/k first".into();
                    Action::Nothing
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ids: &[(&str, u64)]) -> Vec<(String, u64)> {
        ids.iter().map(|(s, i)| (s.to_string(), *i)).collect()
    }

    #[test]
    fn keys_decode_letters_and_arrows() {
        assert_eq!(
            parse_keys(b"a\x1b[Bj\x1b[AkAdq\x03x"),
            vec![
                Key::Answer(Answer::AllowOnce),
                Key::Down,
                Key::Down,
                Key::Up,
                Key::Up,
                Key::Answer(Answer::AllowSession),
                Key::Answer(Answer::Deny),
                Key::Quit,
                Key::Quit,
                Key::Other,
            ]
        );
        // A lone escape or a cut sequence is not an answer.
        assert_eq!(parse_keys(b"\x1b"), vec![Key::Other]);
        assert_eq!(parse_keys(b"\x1b["), vec![Key::Other]);
    }

    #[test]
    fn an_answer_goes_to_the_selected_request() {
        let shown = list(&[("s1", 4), ("s2", 1), ("s1", 7)]);
        let mut p = Picker::default();
        p.refresh(&shown);
        assert_eq!(p.selected(), Some(&("s1".to_string(), 4)));
        assert_eq!(p.key(Key::Down, &shown), Action::Nothing);
        assert_eq!(
            p.key(Key::Answer(Answer::Deny), &shown),
            Action::Answer {
                session: "s2".into(),
                id: 1,
                answer: Answer::Deny
            }
        );
        // Moving stops at the ends.
        p.key(Key::Down, &shown);
        p.key(Key::Down, &shown);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowSession), &shown),
            Action::Answer {
                session: "s1".into(),
                id: 7,
                answer: Answer::AllowSession
            }
        );
        p.key(Key::Up, &shown);
        p.key(Key::Up, &shown);
        p.key(Key::Up, &shown);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowOnce), &shown),
            Action::Answer {
                session: "s1".into(),
                id: 4,
                answer: Answer::AllowOnce
            }
        );
        assert_eq!(p.key(Key::Quit, &shown), Action::Quit);
    }

    #[test]
    fn the_selection_follows_its_request_not_its_row() {
        let mut p = Picker::default();
        let shown = list(&[("s", 1), ("s", 2), ("s", 3)]);
        p.refresh(&shown);
        p.key(Key::Down, &shown);
        // Request 1 leaves; 2 is now the first row and stays selected.
        let shown = list(&[("s", 2), ("s", 3)]);
        p.refresh(&shown);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowOnce), &shown),
            Action::Answer {
                session: "s".into(),
                id: 2,
                answer: Answer::AllowOnce
            }
        );
    }

    #[test]
    fn a_request_gone_from_under_the_cursor_is_never_replaced_by_another() {
        let mut p = Picker::default();
        let shown = list(&[("s", 1), ("s", 2)]);
        p.refresh(&shown);
        // Request 1 times out while selected; 2 must not inherit the human's next key.
        let shown = list(&[("s", 2)]);
        p.refresh(&shown);
        assert_eq!(p.selected(), None);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowSession), &shown),
            Action::Nothing
        );
        assert!(p.note.contains("pick one"), "{}", p.note);
        // Still nothing after another refresh, until the human moves.
        p.refresh(&shown);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowOnce), &shown),
            Action::Nothing
        );
        p.key(Key::Down, &shown);
        assert_eq!(
            p.key(Key::Answer(Answer::AllowOnce), &shown),
            Action::Answer {
                session: "s".into(),
                id: 2,
                answer: Answer::AllowOnce
            }
        );
        // An empty list: no answer.
        let mut p = Picker::default();
        p.refresh(&[]);
        assert_eq!(p.key(Key::Answer(Answer::Deny), &[]), Action::Nothing);
        assert_eq!(p.key(Key::Down, &[]), Action::Nothing);
    }
}
