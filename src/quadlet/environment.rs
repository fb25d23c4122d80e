//! The service environment systemd expands `${VAR}` from, and the expansion
//! itself.
//!
//! Quadlet writes `Volume=` and `Mount=` into the generated `ExecStart=`
//! (`-v SOURCE:TARGET`), and systemd substitutes variables there at start
//! time from the *service's* environment: `[Service] Environment=` and
//! `EnvironmentFile=` (systemd.exec(5)). `[Container] Environment=` and
//! `EnvironmentFile=` become `--env`/`--env-file` for the container and are
//! never seen by that substitution.
//!
//! Command-line substitution (systemd.service(5), "Command lines"):
//! `${NAME}` anywhere in a word; a bare `$NAME` only when it is a whole
//! word. A volume source is never a whole word (`:TARGET` follows), so a
//! bare `$NAME` in it is not the variable's value: reported, never guessed.

use std::collections::BTreeMap;

/// A variable name systemd accepts (`env_name_is_valid`): letters, digits
/// and `_`, not starting with a digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// States of the env-file reader, after systemd's `parse_env_file_internal`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    CommentEscape,
}

/// The assignments read so far and the one being read.
#[derive(Default)]
struct Reader {
    out: Vec<(String, String)>,
    key: String,
    value: String,
    /// Length of `value` up to its last character that is not trailing
    /// whitespace of an unquoted value.
    kept: usize,
}

impl Reader {
    /// End the current line's assignment (kept when its name is valid).
    fn finish(&mut self) -> State {
        self.value.truncate(self.kept);
        let name = self.key.trim_end();
        if is_valid_name(name) {
            let value = std::mem::take(&mut self.value);
            self.out.push((name.to_owned(), value));
        }
        self.key.clear();
        self.value.clear();
        self.kept = 0;
        State::PreKey
    }

    /// Add a character to the value; `keep`: it is not trailing space.
    fn push(&mut self, c: char, keep: bool) {
        self.value.push(c);
        if keep {
            self.kept = self.value.len();
        }
    }

    /// Before the `=`: comments, the key, lines without `=`.
    fn before_value(&mut self, state: State, c: char) -> State {
        match (state, c) {
            (State::PreKey, '#' | ';') => State::Comment,
            (State::PreKey, c) if c.is_whitespace() => State::PreKey,
            (_, '\n') => {
                self.key.clear();
                State::PreKey
            }
            (_, '=') => State::PreValue,
            (_, c) => {
                self.key.push(c);
                State::Key
            }
        }
    }

    /// One character in `state`.
    fn step(&mut self, state: State, c: char) -> State {
        match (state, c) {
            (State::PreKey | State::Key, c) => self.before_value(state, c),
            (State::PreValue | State::Value, '\n') => self.finish(),
            (State::PreValue, '\'') => State::Single,
            (State::PreValue, '"') => State::Double,
            (State::PreValue | State::Value, '\\') => State::ValueEscape,
            (State::PreValue, c) if c.is_whitespace() => State::PreValue,
            (State::PreValue | State::Value, c) => {
                self.push(c, !c.is_whitespace());
                State::Value
            }
            (State::ValueEscape, '\n') => State::Value,
            (State::ValueEscape, c) => {
                self.push(c, true);
                State::Value
            }
            (State::Single, '\'') | (State::Double, '"') => State::PreValue,
            (State::Double, '\\') => State::DoubleEscape,
            (State::Single | State::Double, c) => {
                self.push(c, true);
                state
            }
            (State::DoubleEscape, '\n') => State::Double,
            (State::DoubleEscape, c) => {
                if !matches!(c, '"' | '\\' | '`' | '$') {
                    self.push('\\', true);
                }
                self.push(c, true);
                State::Double
            }
            (State::Comment, '\\') => State::CommentEscape,
            (State::Comment, '\n') => State::PreKey,
            (State::Comment | State::CommentEscape, _) => State::Comment,
        }
    }
}

/// The assignments of an `EnvironmentFile=` as systemd reads them, in order
/// (a later one wins): `KEY=VALUE` lines; `#` and `;` lines are comments;
/// whitespace around keys and unquoted values is dropped; `'...'` is
/// literal, `"..."` takes `\"`, `\\`, `` \` `` and `\$` escapes; a
/// backslash at the end of a line continues it; lines without `=` and
/// invalid names are ignored.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut reader = Reader::default();
    let mut state = State::PreKey;
    for c in text.chars() {
        state = reader.step(state, c);
    }
    // The last line may end without a newline.
    if !matches!(
        state,
        State::PreKey | State::Key | State::Comment | State::CommentEscape
    ) {
        reader.finish();
    }
    reader.out
}

/// The assignments of one `Environment=` value, already split into words
/// (quotes removed): `KEY=VALUE` words with a valid name; others are
/// ignored, as systemd ignores them.
pub fn parse_environment_words(words: &[String]) -> Vec<(String, String)> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| is_valid_name(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableError {
    /// Variables the service environment does not define (systemd would
    /// substitute an empty string).
    Undefined(Vec<String>),
    /// A bare `$NAME` inside a word, which systemd leaves alone or drops.
    Braceless(String),
    /// `${` without its `}`.
    Unclosed,
}

impl std::fmt::Display for VariableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VariableError::Undefined(names) => write!(
                f,
                "{} not defined by the service's [Service] Environment=/EnvironmentFile= \
                 (systemd would substitute an empty string; [Container] Environment= is the \
                 container's own and not used for Volume=)",
                names
                    .iter()
                    .map(|n| format!("${{{n}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            VariableError::Braceless(name) => write!(
                f,
                "${name} without braces is expanded by systemd only as a whole command-line \
                 word, which a volume source never is: write ${{{name}}}"
            ),
            VariableError::Unclosed => write!(f, "`${{` without a closing `}}`"),
        }
    }
}

/// `word` with `${NAME}` replaced from `env` and `$$` made `$`, as systemd
/// substitutes inside a command-line word.
pub fn expand_variables(
    word: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, VariableError> {
    let mut out = String::with_capacity(word.len());
    let mut undefined: Vec<String> = Vec::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let close = tail.find('}').ok_or(VariableError::Unclosed)?;
            let name = &tail[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None if !undefined.iter().any(|u| u == name) => undefined.push(name.to_owned()),
                None => {}
            }
            rest = &tail[close + 1..];
        } else {
            let len = after
                .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
                .unwrap_or(after.len());
            if len > 0 && is_valid_name(&after[..len]) {
                return Err(VariableError::Braceless(after[..len].to_owned()));
            }
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if undefined.is_empty() {
        Ok(out)
    } else {
        Err(VariableError::Undefined(undefined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_files_as_systemd_reads_them() {
        let text = "# library\n; other comment\nUPLOAD_LOCATION=/srv/photos  \n  DB = /var/lib/db\n\
                    Q=\"a \\\"b\\\" \\$c \\n\"\nS='x \\ y'\nCONT=one\\\ntwo\nnot a line\n1BAD=x\nE=\nLAST=1";
        assert_eq!(
            parse_env_file(text),
            pairs(&[
                ("UPLOAD_LOCATION", "/srv/photos"),
                ("DB", "/var/lib/db"),
                ("Q", "a \"b\" $c \\n"),
                ("S", "x \\ y"),
                ("CONT", "onetwo"),
                ("E", ""),
                ("LAST", "1"),
            ])
        );
    }

    #[test]
    fn env_file_comments_continue_with_a_backslash() {
        assert_eq!(
            parse_env_file("#a \\\nB=hidden\nC=shown\n"),
            pairs(&[("C", "shown")])
        );
    }

    #[test]
    fn environment_words() {
        let words: Vec<String> = ["A=1", "B=two words", "junk", "9X=1", "C=="]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            parse_environment_words(&words),
            pairs(&[("A", "1"), ("B", "two words"), ("C", "=")])
        );
    }

    #[test]
    fn variables_expand_from_the_environment_only() {
        let env: BTreeMap<String, String> = pairs(&[("UP", "/srv/up"), ("N", "x")])
            .into_iter()
            .collect();
        assert_eq!(expand_variables("${UP}/lib", &env).unwrap(), "/srv/up/lib");
        assert_eq!(expand_variables("/a/${N}${N}", &env).unwrap(), "/a/xx");
        assert_eq!(expand_variables("/p$$q/$", &env).unwrap(), "/p$q/$");
        assert_eq!(
            expand_variables("${GONE}/${UP}/${GONE}/${ALSO}", &env),
            Err(VariableError::Undefined(vec!["GONE".into(), "ALSO".into()]))
        );
        assert_eq!(
            expand_variables("$UP/x", &env),
            Err(VariableError::Braceless("UP".into()))
        );
        assert_eq!(expand_variables("${UP", &env), Err(VariableError::Unclosed));
    }
}
