//! Command lines can carry secrets (`--password=…`, `TOKEN=…`): they are
//! redacted before a command line becomes a label or a log line.
//!
//! The command line is taken as space-separated words (that is how
//! [`crate::procfs::parse_cmdline`] joins arguments) and each word is matched
//! against a few shapes:
//!
//! - a flag whose name looks secret, with its value attached
//!   (`--password=x`, `-Dspring.datasource.password=x`) or as the next word
//!   (`--token x`);
//! - an environment-style assignment whose key looks secret
//!   (`GITHUB_TOKEN=x`, `DB_PASSWORD=x`);
//! - URLs with a password in their user info (`postgres://u:x@host`);
//! - HTTP credentials (`Authorization: Bearer x`, `Bearer x`, `Basic x`).
//!
//! Over-redacting a harmless value is accepted; leaking a secret is not.

/// The replacement for a secret value.
const MASK: &str = "***";

/// Replaces the values of secret-looking arguments with `***` and truncates
/// to at most `max_chars` characters (on a char boundary, with `…` appended
/// when cut). Pure.
///
/// ```
/// use pidwarden_shared::redact::redact_cmdline;
/// assert_eq!(
///     redact_cmdline("app --password=hunter2 --port 80", 120),
///     "app --password=*** --port 80"
/// );
/// assert_eq!(redact_cmdline("abcdef", 4), "abc…");
/// ```
pub fn redact_cmdline(cmdline: &str, max_chars: usize) -> String {
    truncate(&redact(cmdline), max_chars)
}

/// What the previous word asked of the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    /// The next word is a secret value.
    Value,
    /// The next word follows `Authorization:`: a scheme then a value, or a value.
    Authorization,
}

fn redact(cmdline: &str) -> String {
    let mut out = String::with_capacity(cmdline.len());
    let mut pending = Pending::None;
    for (i, word) in cmdline.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        // Runs of spaces give empty words: they carry nothing, keep waiting.
        if word.is_empty() {
            out.push_str(word);
            continue;
        }
        match pending {
            Pending::Value => {
                pending = Pending::None;
                // `--token --verbose`: the flag had no value after all.
                if !word.starts_with("--") {
                    out.push_str(MASK);
                    continue;
                }
            }
            Pending::Authorization => {
                pending = Pending::None;
                if is_auth_scheme(word) {
                    out.push_str(word);
                    pending = Pending::Value;
                } else {
                    out.push_str(MASK);
                }
                continue;
            }
            Pending::None => {}
        }
        pending = redact_word(word, &mut out);
    }
    out
}

/// Appends `word`, redacted, to `out`; says what the next word is.
fn redact_word(word: &str, out: &mut String) -> Pending {
    if ends_with_ignore_case(word, "authorization:") {
        out.push_str(word);
        return Pending::Authorization;
    }
    if starts_credential(word) {
        out.push_str(word);
        return Pending::Value;
    }
    if word.starts_with('-') {
        let body = word.trim_start_matches('-');
        let dashes = &word[..word.len() - body.len()];
        match body.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_flag(name) => {
                out.push_str(dashes);
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
                return Pending::None;
            }
            Some(_) => {}
            None if is_secret_flag(body) => {
                out.push_str(word);
                return Pending::Value;
            }
            None => {}
        }
    } else if let Some((key, value)) = word.split_once('=') {
        if !value.is_empty() && is_env_key(key) && is_secret_env_key(key) {
            out.push_str(key);
            out.push('=');
            out.push_str(MASK);
            return Pending::None;
        }
    }
    redact_urls(word, out);
    Pending::None
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// HTTP authentication schemes, as they follow `Authorization:`.
fn is_auth_scheme(word: &str) -> bool {
    ["bearer", "basic", "token", "digest", "negotiate"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

/// A word that announces a credential on its own: `Bearer` in any case,
/// `Basic` capitalised (the lowercase word is too common to mean it).
fn starts_credential(word: &str) -> bool {
    word.eq_ignore_ascii_case("bearer") || word == "Basic" || word == "BASIC"
}

/// A flag name (without dashes) that names a secret.
fn is_secret_flag(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let norm: String = name
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    const STRONG: [&str; 9] = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api-key",
        "access-key",
        "private-key",
        "credential",
    ];
    if STRONG.iter().any(|s| norm.contains(s)) {
        return true;
    }
    // Short words only as the last part of the name: `--auth`,
    // `--basic-auth`, `--db-pwd`, but not `--auth-method`.
    const WEAK: [&str; 3] = ["auth", "pwd", "pass"];
    let last = norm.rsplit(['-', '.']).next().unwrap_or("");
    WEAK.contains(&last)
}

/// `KEY` of an environment-style `KEY=value`.
fn is_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn is_secret_env_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase().replace(['.', '-'], "_");
    const WORDS: [&str; 12] = [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "APIKEY",
        "API_KEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "ACCESSKEY",
        "PRIVATEKEY",
        "CREDENTIAL",
        "AUTH",
    ];
    WORDS.iter().any(|w| upper.contains(w))
}

/// Appends `word` with the user info of every URL in it redacted:
/// `scheme://user:pass@host` → `scheme://user:***@host`; user info without a
/// password (often a token used as user name) → `scheme://***@host`.
fn redact_urls(word: &str, out: &mut String) {
    let mut rest = word;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(['/', '?', '#', ',', ';']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                if let Some((user, _)) = userinfo.split_once(':') {
                    out.push_str(user);
                    out.push(':');
                }
                out.push_str(MASK);
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
}

/// At most `max_chars` characters, `…` included when cut.
fn truncate(s: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some(_) => {
            // Cut after max_chars - 1 characters to leave room for `…`.
            let cut = s
                .char_indices()
                .nth(max_chars - 1)
                .map_or(s.len(), |(i, _)| i);
            let mut out = String::with_capacity(cut + '…'.len_utf8());
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let cases: &[(&str, &str)] = &[
            ("app --password=hunter2", "app --password=***"),
            (
                "app --password hunter2 --port 80",
                "app --password *** --port 80",
            ),
            ("app --token abc", "app --token ***"),
            ("app --token=abc", "app --token=***"),
            (
                "app --api-key=k1 --apikey k2",
                "app --api-key=*** --apikey ***",
            ),
            (
                "app --secret=s --client-secret s2",
                "app --secret=*** --client-secret ***",
            ),
            (
                "app --auth u:p --basic-auth=u:p",
                "app --auth *** --basic-auth=***",
            ),
            (
                "app --access-key AKIA --private-key=pk",
                "app --access-key *** --private-key=***",
            ),
            (
                "app --passwd p --pwd=q -pass r",
                "app --passwd *** --pwd=*** -pass ***",
            ),
            (
                "app --db_password=x --ACCESS_TOKEN=y",
                "app --db_password=*** --ACCESS_TOKEN=***",
            ),
            (
                "java -Dspring.datasource.password=x -jar a.jar",
                "java -Dspring.datasource.password=*** -jar a.jar",
            ),
            ("TOKEN=abc app", "TOKEN=*** app"),
            (
                "env GITHUB_TOKEN=ghp_1 AWS_SECRET_ACCESS_KEY=xyz DB_PASSWORD=pw app",
                "env GITHUB_TOKEN=*** AWS_SECRET_ACCESS_KEY=*** DB_PASSWORD=*** app",
            ),
            (
                "env my_api_key=1 OAUTH_CLIENT=2 Credentials=3 PrivateKey=4",
                "env my_api_key=*** OAUTH_CLIENT=*** Credentials=*** PrivateKey=***",
            ),
            (
                "psql postgres://admin:s3cr3t@db:5432/app",
                "psql postgres://admin:***@db:5432/app",
            ),
            (
                "git clone https://ghp_abc@github.com/o/r",
                "git clone https://***@github.com/o/r",
            ),
            (
                "app --db=mysql://u:p@h/d,redis://:pw@r:6379",
                "app --db=mysql://u:***@h/d,redis://:***@r:6379",
            ),
            (
                "curl -H Authorization: Bearer xyz https://h/",
                "curl -H Authorization: Bearer *** https://h/",
            ),
            (
                "curl -H Authorization: abc123 https://h/",
                "curl -H Authorization: *** https://h/",
            ),
            (
                "curl --header=authorization: token t0k",
                "curl --header=authorization: token ***",
            ),
            ("curl -H Bearer xyz", "curl -H Bearer ***"),
            ("curl -H Basic dXNlcjpwYXNz", "curl -H Basic ***"),
            ("app --password  spaced", "app --password  ***"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_cmdline(input, 1000), *want, "input {input:?}");
        }
    }

    #[test]
    fn harmless_command_lines_are_untouched() {
        let cases: &[&str] = &[
            "",
            "sleep 1000",
            "npm exec @modelcontextprotocol/server-filesystem /data",
            "nginx: worker process",
            "app --port=80 --verbose --auth-method=basic",
            "app --token --verbose",
            "app --password=",
            "PATH=/usr/bin LANG=C.UTF-8 app",
            "curl https://example.com/a?b=c http://host:8080/",
            "uvx mcp-server-fetch --user-agent=x token basic",
            "a=b =c ==",
            "ünïcödé --naïve=ß",
        ];
        for input in cases {
            assert_eq!(redact_cmdline(input, 1000), *input, "input {input:?}");
        }
    }

    #[test]
    fn a_trailing_secret_flag_without_value_is_kept() {
        assert_eq!(redact_cmdline("app --password", 100), "app --password");
        assert_eq!(redact_cmdline("Authorization:", 100), "Authorization:");
    }

    #[test]
    fn truncation_counts_characters_and_never_panics() {
        let cases: &[(&str, usize, &str)] = &[
            ("abcdef", 6, "abcdef"),
            ("abcdef", 5, "abcd…"),
            ("abcdef", 1, "…"),
            ("abcdef", 0, ""),
            ("", 0, ""),
            ("", 3, ""),
            ("a", 1, "a"),
            ("ab", 1, "…"),
            ("ääää", 3, "ää…"),
            ("ääää", 4, "ääää"),
            ("日本語テキスト", 4, "日本語…"),
            ("🦀🦀🦀", 2, "🦀…"),
        ];
        for (input, max, want) in cases {
            let got = redact_cmdline(input, *max);
            assert_eq!(got, *want, "input {input:?} max {max}");
            assert!(got.chars().count() <= *max);
        }
    }

    #[test]
    fn redaction_happens_before_truncation() {
        // The secret sits beyond the cut: it must not leak partially either.
        let got = redact_cmdline("app --password=supersecretvalue", 20);
        assert_eq!(got, "app --password=***");
        let got = redact_cmdline("app --password=supersecretvalue --x", 17);
        assert_eq!(got, "app --password=*…");
        assert!(!got.contains("sup"));
    }
}
