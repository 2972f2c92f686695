//! Command lines can carry secrets (`--password=…`, `TOKEN=…`,
//! `mysql -pS3cr3t`): they are redacted before a command line becomes a
//! label, an audit row or a log line.
//!
//! Redaction works on the arguments as the kernel keeps them
//! ([`redact_command`]); text already joined by spaces is taken word by
//! word ([`redact_cmdline`]). An argument that holds spaces (`sh -c "…"`)
//! is redacted word by word as a command line of its own. The shapes
//! caught:
//!
//! - long options whose name holds `key`, `secret`, `token`, `pass`
//!   (`password`, `passwd`, `passphrase`), `pwd`, `auth`, `credential`,
//!   `cookie` or `session`, with the value attached (`--password=x`,
//!   `-Dspring.datasource.password=x`, `-passin=x`) or as the next argument
//!   (`--token x`);
//! - short options that take a password in the programs that have them:
//!   `-p` of `mysql`/`mariadb` and their tools (attached: `-pS3cr3t`),
//!   `-p` of `sshpass` and the MongoDB shells, `-a` of `redis-cli`, `-w` of
//!   the OpenLDAP clients, `-P` of `sqlcmd`/`bcp`, `mosquitto_*` and `zip`,
//!   `-p` of `7z` (attached or next argument unless said otherwise);
//! - `user:password` given to `-u`/`--user`, `-U`/`--proxy-user` (curl,
//!   wget and most clients): `bob:***`;
//! - HTTP headers (`-H`/`--header` values, or an argument shaped
//!   `Name: value`) whose name looks like a credential: `Authorization`,
//!   `Proxy-Authorization`, `Cookie`, `X-Api-Key`, any name holding
//!   `token`, `secret`, `key`, `auth`, `pass`, `session` or `credential`;
//!   and the word after `Bearer`/`Basic`;
//! - URLs with user info (`postgres://u:x@host` → `postgres://u:***@host`;
//!   a user name alone, often a token, → `***@host`) and URL query
//!   parameters with secret-looking names (`?token=x`);
//! - environment-style `KEY=value` whose key looks secret (`GITHUB_TOKEN=x`,
//!   `DB_PASS=x`, `MYSQL_PWD=x`).
//!
//! A command line cut to its kept prefix ([`crate::procfs::Cmdline`]) shows
//! its whole arguments only, so a secret cut in half never shows. Over-
//! redacting a harmless value is accepted; leaking a secret is not.

use std::borrow::Cow;

use crate::procfs::Cmdline;

/// The replacement for a secret value.
const MASK: &str = "***";

/// Replaces the values of secret-looking arguments with `***` and truncates
/// to at most `max_chars` characters (on a char boundary, with `…` appended
/// when cut). `cmdline` is text whose arguments were joined by spaces:
/// each word is taken as an argument. Pure.
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
    truncate(&redact_words(cmdline), max_chars)
}

/// A command line as shown: its arguments redacted, joined by spaces, and
/// truncated to at most `max_chars` characters. Pure.
///
/// ```
/// use pidwarden_shared::procfs::Cmdline;
/// use pidwarden_shared::redact::redact_command;
/// let c = Cmdline::from_args(["curl", "-H", "X-Api-Key: S3cr3t", "https://h/"]);
/// assert_eq!(redact_command(&c, 120), "curl -H X-Api-Key: *** https://h/");
/// ```
pub fn redact_command(cmd: &Cmdline, max_chars: usize) -> String {
    let mut out = redact_args(cmd.args()).join(" ");
    if cmd.is_truncated() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('…');
    }
    truncate(&out, max_chars)
}

/// Each argument of `args`, redacted (see the module docs). Pure.
pub fn redact_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Vec<Cow<'a, str>> {
    let mut st = State::default();
    args.into_iter().map(|a| st.arg(a, 0)).collect()
}

/// Text joined by spaces, redacted word by word (runs of spaces kept).
fn redact_words(text: &str) -> String {
    redact_words_at(text, 0)
}

fn redact_words_at(text: &str, depth: u8) -> String {
    let mut st = State::default();
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        // Runs of spaces give empty words: they carry nothing, keep waiting.
        if word.is_empty() {
            continue;
        }
        out.push_str(&st.word(word, depth));
    }
    out
}

/// What the previous argument asked of the next one.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
enum Pending {
    #[default]
    None,
    /// The next argument is a secret value.
    Value,
    /// The next argument is `user[:password]`.
    UserPass,
    /// The next argument is an HTTP header.
    Header,
    /// The next word follows `Authorization:` (words mode): a scheme then a
    /// value, or a value.
    Authorization,
}

/// Redaction state along one command line.
#[derive(Default, Debug)]
struct State {
    pending: Pending,
    /// The program whose short options are interpreted.
    program: Option<Program>,
}

/// Programs with short options that take a password.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Program {
    /// `-p<password>`, attached only (`-p x` prompts, `x` is a database).
    Mysql,
    /// One short option, attached or as the next argument.
    Short(char),
    /// One short option, attached only.
    Attached(char),
}

/// The program named by `arg` (a path or a name), if it is one of those.
fn program_of(arg: &str) -> Option<Program> {
    let name = arg.rsplit('/').next().unwrap_or(arg);
    let name = name.to_ascii_lowercase();
    let p = match name.as_str() {
        "mysql" | "mariadb" | "mysqldump" | "mariadb-dump" | "mysqladmin" | "mariadb-admin"
        | "mysqlimport" | "mysqlcheck" | "mysqlshow" | "mysqlslap" | "mysqlbinlog"
        | "mysqlpump" | "mysqlsh" => Program::Mysql,
        "sshpass" | "mongo" | "mongosh" | "mongodump" | "mongorestore" | "mongoexport"
        | "mongoimport" | "mongostat" | "mongotop" => Program::Short('p'),
        "redis-cli" | "valkey-cli" | "keydb-cli" => Program::Short('a'),
        "ldapsearch" | "ldapadd" | "ldapmodify" | "ldapdelete" | "ldapwhoami" | "ldappasswd"
        | "ldapcompare" | "ldapmodrdn" | "ldapexop" => Program::Short('w'),
        "sqlcmd" | "bcp" | "osql" | "mosquitto_pub" | "mosquitto_sub" | "mosquitto_rr" | "zip"
        | "unzip" | "zipcloak" => Program::Short('P'),
        "7z" | "7za" | "7zr" => Program::Attached('p'),
        _ => return None,
    };
    Some(p)
}

impl State {
    /// One argument, redacted. `depth` bounds the recursion into
    /// arguments holding command lines.
    fn arg<'a>(&mut self, arg: &'a str, depth: u8) -> Cow<'a, str> {
        // The value a previous option announced, whatever its shape.
        if matches!(
            self.pending,
            Pending::Value | Pending::UserPass | Pending::Authorization
        ) {
            if arg.contains(' ') {
                self.pending = Pending::None;
                return Cow::Borrowed(MASK);
            }
            return self.word(arg, depth);
        }
        // An argument holding a credential header: `Authorization: Bearer x`.
        if let Some(h) = header(arg) {
            self.pending = Pending::None;
            return Cow::Owned(h);
        }
        // An argument holding a command line (`sh -c "mysql -pX db"`).
        if depth < 2 && arg.contains(' ') {
            self.pending = Pending::None;
            return Cow::Owned(redact_words_at(arg, depth + 1));
        }
        self.word(arg, depth)
    }

    /// One argument (or word) without spaces in it, or a header value.
    fn word<'a>(&mut self, word: &'a str, depth: u8) -> Cow<'a, str> {
        match std::mem::take(&mut self.pending) {
            Pending::Value => {
                // `--token --verbose`: the flag had no value after all.
                if !word.starts_with("--") {
                    return Cow::Borrowed(MASK);
                }
            }
            Pending::UserPass => {
                if !word.starts_with('-') || word.contains(':') {
                    return user_pass(word);
                }
            }
            Pending::Header => {
                if let Some(h) = header(word) {
                    return Cow::Owned(h);
                }
                // Words mode: `-H X-Api-Key: S3cr3t` arrives in pieces,
                // which the checks of a fresh word see.
            }
            Pending::Authorization => {
                if is_auth_scheme(word) {
                    self.pending = Pending::Value;
                    return Cow::Borrowed(word);
                }
                return Cow::Borrowed(MASK);
            }
            Pending::None => {}
        }
        self.fresh(word, depth)
    }

    /// A word with nothing pending.
    fn fresh<'a>(&mut self, word: &'a str, depth: u8) -> Cow<'a, str> {
        if let Some(p) = program_of(word) {
            self.program = Some(p);
            return Cow::Borrowed(word);
        }
        // `Authorization:` (or another credential header name) as a word.
        if let Some(name) = word.strip_suffix(':') {
            let name = name.trim_start_matches(['"', '\'']);
            if is_secret_header(name) {
                self.pending = Pending::Authorization;
                return Cow::Borrowed(word);
            }
        }
        if starts_credential(word) {
            self.pending = Pending::Value;
            return Cow::Borrowed(word);
        }
        if let Some(body) = word.strip_prefix("--") {
            return self.long(word, body, "--", depth);
        }
        if let Some(body) = word.strip_prefix('-') {
            if body.is_empty() {
                return Cow::Borrowed(word);
            }
            if let Some(out) = self.short(word, body) {
                return out;
            }
            // `-password x`, `-Dx.password=y`: single-dash long options.
            if body.chars().count() > 1 {
                return self.long(word, body, "-", depth);
            }
            return Cow::Borrowed(word);
        }
        if let Some((key, value)) = word.split_once('=') {
            if !value.is_empty() && is_env_key(key) && is_secret_env_key(key) {
                return Cow::Owned(format!("{key}={MASK}"));
            }
        }
        redact_urls(word)
    }

    /// A short option (`body` follows the single dash): the programs' own
    /// password options, `-u`/`-U` user:password and `-H` headers.
    fn short<'a>(&mut self, word: &'a str, body: &'a str) -> Option<Cow<'a, str>> {
        let mut chars = body.chars();
        let opt = chars.next()?;
        let attached = chars.as_str();
        let program = self.program;
        let mut pending_or_attached = |pending: Pending, redact: fn(&str) -> Cow<'_, str>| {
            if attached.is_empty() {
                self.pending = pending;
                Some(Cow::Borrowed(word))
            } else {
                match redact(attached) {
                    Cow::Borrowed(_) => Some(Cow::Borrowed(word)),
                    Cow::Owned(v) => Some(Cow::Owned(format!("-{opt}{v}"))),
                }
            }
        };
        match (program, opt) {
            (Some(Program::Mysql), 'p') => {
                return if attached.is_empty() {
                    Some(Cow::Borrowed(word))
                } else {
                    Some(Cow::Owned(format!("-p{MASK}")))
                };
            }
            (Some(Program::Short(c)), o) if o == c => {
                return pending_or_attached(Pending::Value, |_| Cow::Owned(MASK.to_string()));
            }
            (Some(Program::Attached(c)), o) if o == c => {
                return if attached.is_empty() {
                    Some(Cow::Borrowed(word))
                } else {
                    Some(Cow::Owned(format!("-{o}{MASK}")))
                };
            }
            _ => {}
        }
        match opt {
            'u' | 'U' => pending_or_attached(Pending::UserPass, user_pass),
            'H' => pending_or_attached(Pending::Header, |v| match header(v) {
                Some(h) => Cow::Owned(h),
                None => Cow::Borrowed(v),
            }),
            _ => None,
        }
    }

    /// A long option (`body` follows `dashes`).
    fn long<'a>(&mut self, word: &'a str, body: &'a str, dashes: &str, depth: u8) -> Cow<'a, str> {
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let norm = name.to_ascii_lowercase().replace('_', "-");
        let kind = if norm == "header" || norm == "proxy-header" {
            Pending::Header
        } else if matches!(
            norm.as_str(),
            "user" | "proxy-user" | "http-user" | "ftp-user"
        ) {
            Pending::UserPass
        } else if is_secret_flag(&norm) {
            Pending::Value
        } else {
            Pending::None
        };
        match (kind, value) {
            (Pending::None, None) => Cow::Borrowed(word),
            (Pending::None, Some(v)) => {
                // `--db=mysql://u:p@h`, `--exec=sh -c …`: the value alone.
                let redacted = if depth < 2 && v.contains(' ') {
                    Cow::Owned(redact_words_at(v, depth + 1))
                } else {
                    redact_urls(v)
                };
                match redacted {
                    Cow::Borrowed(_) => Cow::Borrowed(word),
                    Cow::Owned(v) => Cow::Owned(format!("{dashes}{name}={v}")),
                }
            }
            (pending, None) => {
                self.pending = pending;
                Cow::Borrowed(word)
            }
            (_, Some("")) => Cow::Borrowed(word),
            (Pending::Header, Some(v)) => match header(v) {
                Some(h) => Cow::Owned(format!("{dashes}{name}={h}")),
                None => {
                    // Words mode: `--header=Authorization: x` arrives in pieces.
                    if let Some(n) = v.strip_suffix(':') {
                        if is_secret_header(n) {
                            self.pending = Pending::Authorization;
                        }
                    }
                    Cow::Borrowed(word)
                }
            },
            (Pending::UserPass, Some(v)) => match user_pass(v) {
                Cow::Borrowed(_) => Cow::Borrowed(word),
                Cow::Owned(v) => Cow::Owned(format!("{dashes}{name}={v}")),
            },
            (_, Some(_)) => Cow::Owned(format!("{dashes}{name}={MASK}")),
        }
    }
}

/// `user:password` → `user:***`; a user name alone is kept. A URL is
/// redacted as one.
fn user_pass(v: &str) -> Cow<'_, str> {
    if v.contains("://") {
        return redact_urls(v);
    }
    match v.split_once(':') {
        Some((user, _)) => Cow::Owned(format!("{user}:{MASK}")),
        None => Cow::Borrowed(v),
    }
}

/// An argument shaped as an HTTP header `Name: value` (or `Name:value`)
/// whose name looks like a credential, redacted; `None` for any other.
fn header(arg: &str) -> Option<String> {
    let (name, value) = arg.split_once(':')?;
    let name_trim = name.trim_start_matches(['"', '\'']);
    if value.trim().is_empty()
        || name_trim.is_empty()
        || !name_trim
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || value.starts_with("//")
        || !is_secret_header(name_trim)
    {
        return None;
    }
    let lead = value.len() - value.trim_start().len();
    let mut out = format!("{name}:{}", &value[..lead]);
    // `Authorization: Bearer x`: the scheme stays.
    if let Some((scheme, _)) = value.trim_start().split_once(' ') {
        if is_auth_scheme(scheme) {
            out.push_str(scheme);
            out.push(' ');
        }
    }
    out.push_str(MASK);
    Some(out)
}

/// A header name that carries a credential.
fn is_secret_header(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let n = name.to_ascii_lowercase();
    const WORDS: [&str; 10] = [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "auth",
        "pass",
        "session",
        "credential",
        "signature",
    ];
    WORDS.iter().any(|w| n.contains(w))
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

/// A long option name (lowercase, `_` as `-`, without dashes) that names a
/// secret.
fn is_secret_flag(norm: &str) -> bool {
    if norm.is_empty() {
        return false;
    }
    const WORDS: [&str; 9] = [
        "key",
        "secret",
        "token",
        "pass",
        "pwd",
        "auth",
        "credential",
        "cookie",
        "session",
    ];
    WORDS.iter().any(|s| norm.contains(s))
}

/// `KEY` of an environment-style `KEY=value`.
fn is_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn is_secret_env_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase().replace(['.', '-'], "_");
    // The working directories, not passwords.
    if upper == "PWD" || upper == "OLDPWD" {
        return false;
    }
    const WORDS: [&str; 11] = [
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "COOKIE",
        "SESSION",
        "PRIVATE",
        "SIGNATURE",
    ];
    WORDS.iter().any(|w| upper.contains(w))
}

/// A URL query parameter name that holds a secret.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    is_secret_flag(&n) || n == "sig" || n == "pw"
}

/// `word` with the user info of every URL in it redacted:
/// `scheme://user:pass@host` → `scheme://user:***@host`; user info without a
/// password (often a token used as user name) → `scheme://***@host`; and
/// query parameters with secret-looking names: `?token=***`.
fn redact_urls(word: &str) -> Cow<'_, str> {
    if !word.contains("://") {
        return Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len());
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
        // The path and query up to the next URL (or the end of the word).
        let stop = rest.find("://").map_or(rest.len(), |i| {
            // Back to the start of that URL's scheme.
            rest[..i]
                .char_indices()
                .rev()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                .map_or(0, |(j, c)| j + c.len_utf8())
        });
        let (path, next) = rest.split_at(stop);
        redact_query(path, &mut out);
        rest = next;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Appends a URL's path and query with the values of secret-looking query
/// parameters redacted.
fn redact_query(path: &str, out: &mut String) {
    let Some(q) = path.find('?') else {
        out.push_str(path);
        return;
    };
    out.push_str(&path[..=q]);
    let query = &path[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(i) => query.split_at(i),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && is_secret_param(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
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
                "app --auth-method=basic --port 80",
                "app --auth-method=*** --port 80",
            ),
            ("mysql -uroot -pS3cr3t db", "mysql -uroot -p*** db"),
            (
                "curl -H X-Api-Key: S3cr3t https://h/",
                "curl -H X-Api-Key: *** https://h/",
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
            "app --port=80 --verbose --method=basic",
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

    /// Arguments as the kernel keeps them → the command as shown.
    #[test]
    fn argument_lists_are_redacted_as_shown() {
        let cases: &[(&[&str], &str)] = &[
            // The client forms that leaked.
            (&["mysql", "-uroot", "-pS3cr3t"], "mysql -uroot -p***"),
            (
                &["/usr/bin/mysql", "-u", "root", "-pS3cr3t", "db"],
                "/usr/bin/mysql -u root -p*** db",
            ),
            (&["mysql", "-p", "db"], "mysql -p db"),
            (
                &["mariadb-dump", "-pS3cr3t", "--all-databases"],
                "mariadb-dump -p*** --all-databases",
            ),
            (
                &["mysqladmin", "--password=S3cr3t", "status"],
                "mysqladmin --password=*** status",
            ),
            (
                &["curl", "-u", "bob:S3cr3t", "https://h/"],
                "curl -u bob:*** https://h/",
            ),
            (
                &["curl", "-ubob:S3cr3t", "https://h/"],
                "curl -ubob:*** https://h/",
            ),
            (&["curl", "--user", "bob:S3cr3t"], "curl --user bob:***"),
            (&["curl", "--user=bob:S3cr3t"], "curl --user=bob:***"),
            (
                &["curl", "-U", "proxy:S3cr3t", "-x", "p:3128"],
                "curl -U proxy:*** -x p:3128",
            ),
            (
                &["curl", "--proxy-user", "proxy:S3cr3t"],
                "curl --proxy-user proxy:***",
            ),
            (
                &["curl", "-u", "bob", "https://h/"],
                "curl -u bob https://h/",
            ),
            (
                &["wget", "--user=bob", "--password=S3cr3t", "https://h/"],
                "wget --user=bob --password=*** https://h/",
            ),
            (
                &["wget", "--http-password", "S3cr3t", "https://h/"],
                "wget --http-password *** https://h/",
            ),
            (
                &["redis-cli", "-a", "S3cr3t", "ping"],
                "redis-cli -a *** ping",
            ),
            (
                &["redis-cli", "-h", "r", "-aS3cr3t"],
                "redis-cli -h r -a***",
            ),
            (&["redis-cli", "--pass", "S3cr3t"], "redis-cli --pass ***"),
            (
                &["redis-cli", "-u", "redis://default:S3cr3t@r:6379"],
                "redis-cli -u redis://default:***@r:6379",
            ),
            (
                &["sshpass", "-p", "S3cr3t", "ssh", "host"],
                "sshpass -p *** ssh host",
            ),
            (
                &["sshpass", "-pS3cr3t", "ssh", "host"],
                "sshpass -p*** ssh host",
            ),
            (
                &["mongosh", "-u", "admin", "-p", "S3cr3t"],
                "mongosh -u admin -p ***",
            ),
            (
                &["ldapsearch", "-D", "cn=admin", "-w", "S3cr3t"],
                "ldapsearch -D cn=admin -w ***",
            ),
            (
                &["sqlcmd", "-S", "db", "-U", "sa", "-P", "S3cr3t"],
                "sqlcmd -S db -U sa -P ***",
            ),
            (
                &["mosquitto_pub", "-u", "u", "-P", "S3cr3t", "-t", "x"],
                "mosquitto_pub -u u -P *** -t x",
            ),
            (&["zip", "-P", "S3cr3t", "a.zip", "f"], "zip -P *** a.zip f"),
            (&["7z", "a", "-pS3cr3t", "a.7z"], "7z a -p*** a.7z"),
            (
                &["psql", "postgresql://app:S3cr3t@db:5432/app"],
                "psql postgresql://app:***@db:5432/app",
            ),
            (&["psql", "-h", "db", "-U", "app"], "psql -h db -U app"),
            // Wrappers: the program is found past them.
            (&["env", "A=1", "mysql", "-pS3cr3t"], "env A=1 mysql -p***"),
            (
                &["timeout", "10", "redis-cli", "-a", "S3cr3t"],
                "timeout 10 redis-cli -a ***",
            ),
            // Long options, attached or next.
            (&["app", "--key=S3cr3t"], "app --key=***"),
            (&["app", "--key", "S3cr3t"], "app --key ***"),
            (&["app", "--api-key", "S3cr3t"], "app --api-key ***"),
            (
                &["app", "--client-secret=S3cr3t"],
                "app --client-secret=***",
            ),
            (&["app", "--auth-token", "S3cr3t"], "app --auth-token ***"),
            (&["app", "--db-password", "S3cr3t"], "app --db-password ***"),
            (&["app", "--passphrase=S3cr3t"], "app --passphrase=***"),
            (&["app", "--pass", "S3cr3t"], "app --pass ***"),
            (&["app", "--auth", "bob:S3cr3t"], "app --auth ***"),
            (&["app", "--credentials=S3cr3t"], "app --credentials=***"),
            (&["app", "--SECRET_KEY=S3cr3t"], "app --SECRET_KEY=***"),
            (&["app", "--cookie", "sid=S3cr3t"], "app --cookie ***"),
            (&["app", "-token=S3cr3t"], "app -token=***"),
            (
                &["openssl", "enc", "-pass", "pass:S3cr3t"],
                "openssl enc -pass ***",
            ),
            (
                &[
                    "java",
                    "-Djavax.net.ssl.keyStorePassword=S3cr3t",
                    "-jar",
                    "a.jar",
                ],
                "java -Djavax.net.ssl.keyStorePassword=*** -jar a.jar",
            ),
            (&["app", "--token", "--verbose"], "app --token --verbose"),
            // Headers, in one argument or after -H/--header.
            (
                &["curl", "--header", "X-Api-Key: S3cr3t", "https://h/"],
                "curl --header X-Api-Key: *** https://h/",
            ),
            (
                &["curl", "-H", "X-Api-Key: S3cr3t"],
                "curl -H X-Api-Key: ***",
            ),
            (
                &["curl", "-H", "Authorization: Bearer S3cr3t"],
                "curl -H Authorization: Bearer ***",
            ),
            (
                &["curl", "-H", "authorization:Basic S3cr3t"],
                "curl -H authorization:Basic ***",
            ),
            (
                &["curl", "-H", "Authorization: S3cr3t"],
                "curl -H Authorization: ***",
            ),
            (
                &["curl", "-H", "Proxy-Authorization: Basic S3cr3t"],
                "curl -H Proxy-Authorization: Basic ***",
            ),
            (
                &["curl", "-H", "Cookie: session=S3cr3t; theme=dark"],
                "curl -H Cookie: ***",
            ),
            (
                &["curl", "-H", "X-Auth-Token: S3cr3t"],
                "curl -H X-Auth-Token: ***",
            ),
            (
                &["curl", "-H", "X-Client-Secret: S3cr3t"],
                "curl -H X-Client-Secret: ***",
            ),
            (&["curl", "-HX-Api-Key: S3cr3t"], "curl -HX-Api-Key: ***"),
            (
                &["curl", "--header=X-Api-Key: S3cr3t"],
                "curl --header=X-Api-Key: ***",
            ),
            (
                &[
                    "wget",
                    "--header=Authorization: Bearer S3cr3t",
                    "https://h/",
                ],
                "wget --header=Authorization: Bearer *** https://h/",
            ),
            (
                &["curl", "-H", "Content-Type: application/json"],
                "curl -H Content-Type: application/json",
            ),
            (
                &["http", "GET", "https://h/", "X-Api-Key:S3cr3t"],
                "http GET https://h/ X-Api-Key:***",
            ),
            (&["curl", "-H", "Bearer", "S3cr3t"], "curl -H Bearer ***"),
            // URLs: user info and secret query parameters.
            (
                &["git", "clone", "https://ghp_S3cr3t@github.com/o/r"],
                "git clone https://***@github.com/o/r",
            ),
            (
                &["app", "--db=mysql://u:S3cr3t@h/d,redis://:S3cr3t@r:6379"],
                "app --db=mysql://u:***@h/d,redis://:***@r:6379",
            ),
            (
                &["curl", "https://h/cb?token=S3cr3t&page=2"],
                "curl https://h/cb?token=***&page=2",
            ),
            (
                &["curl", "https://h/?api_key=S3cr3t#top"],
                "curl https://h/?api_key=***#top",
            ),
            (&["curl", "https://h/?page=2"], "curl https://h/?page=2"),
            // Environment-style assignments.
            (
                &[
                    "env",
                    "GITHUB_TOKEN=S3cr3t",
                    "DB_PASS=S3cr3t",
                    "MYSQL_PWD=S3cr3t",
                    "app",
                ],
                "env GITHUB_TOKEN=*** DB_PASS=*** MYSQL_PWD=*** app",
            ),
            (
                &["env", "AWS_SECRET_ACCESS_KEY=S3cr3t", "PGPASSWORD=S3cr3t"],
                "env AWS_SECRET_ACCESS_KEY=*** PGPASSWORD=***",
            ),
            (
                &["env", "PWD=/srv", "PATH=/bin", "LANG=C"],
                "env PWD=/srv PATH=/bin LANG=C",
            ),
            // A command line inside one argument.
            (
                &["sh", "-c", "mysql -uroot -pS3cr3t db"],
                "sh -c mysql -uroot -p*** db",
            ),
            (
                &[
                    "sh",
                    "-c",
                    "curl -u bob:S3cr3t -H 'X-Api-Key: S3cr3t' https://h/",
                ],
                "sh -c curl -u bob:*** -H 'X-Api-Key: *** https://h/",
            ),
            (
                &["sh", "-c", "TOKEN=S3cr3t exec app --password S3cr3t"],
                "sh -c TOKEN=*** exec app --password ***",
            ),
            (&["app", "--password", "two words"], "app --password ***"),
            // Harmless.
            (&["sleep", "1000"], "sleep 1000"),
            (&["sh", "/w.sh", "a b"], "sh /w.sh a b"),
            (&["nginx: worker process"], "nginx: worker process"),
            (
                &["docker", "run", "-p", "8080:80", "img:tag"],
                "docker run -p 8080:80 img:tag",
            ),
            (
                &["app", "--port=80", "--host", "h:80"],
                "app --port=80 --host h:80",
            ),
            (&[], ""),
        ];
        for (args, want) in cases {
            let cmd = Cmdline::from_args(args.iter().copied());
            assert_eq!(redact_command(&cmd, 1000), *want, "args {args:?}");
            assert!(
                !redact_command(&cmd, 1000).contains("S3cr3t"),
                "args {args:?}"
            );
        }
    }

    #[test]
    fn a_secret_cut_by_the_kept_prefix_never_shows() {
        use crate::procfs::CMDLINE_PREFIX;
        // The password's argument straddles the prefix: it is left out.
        let pad = "x".repeat(CMDLINE_PREFIX - 20);
        let secret = format!("--password=S3cr3t{}", "y".repeat(100));
        let cmd = Cmdline::from_args(["app", pad.as_str(), secret.as_str()]);
        assert!(cmd.is_truncated());
        let shown = redact_command(&cmd, 10_000);
        assert!(shown.ends_with(" …"), "{shown}");
        assert!(!shown.contains("S3cr3t"), "{shown}");
        // A URL whose `@` is past the cut.
        let url = format!("https://bob:S3cr3t{}@h/", "z".repeat(100));
        let cmd = Cmdline::from_args(["git", pad.as_str(), url.as_str()]);
        assert!(!redact_command(&cmd, 10_000).contains("S3cr3t"));
    }

    /// Inputs the fuzzer found (fuzz/fuzz_targets/proc_cmdline.rs).
    #[test]
    fn fuzz_findings_do_not_panic() {
        // A second URL whose scheme follows a multi-byte character.
        let found = Cmdline::from_raw(b"://$@/\xff\xff\xff://$@/\xff\xff\xff/\x00");
        assert_eq!(
            redact_command(&found, 100),
            "://***@/\u{fffd}\u{fffd}\u{fffd}://***@/\u{fffd}\u{fffd}\u{fffd}/"
        );
        assert_eq!(
            redact_cmdline("x=é://u:p@h/?token=é&a=b,ü://v:q@i", 100),
            "x=é://u:***@h/?token=***&a=b,ü://v:***@i"
        );
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
