//! The remediator's TOML configuration file and the settings resolved from
//! it and the command line. Everything is validated at start: a bad regex or
//! an unknown action is a startup error, not a surprise at 3 a.m.
//!
//! ```toml
//! dry_run = false
//! retention_days = 90 # audit rows kept; 0 keeps them forever
//! protected = ["^postgres", "^/usr/sbin/sshd"]
//! protected_namespaces = ["kube-system", "pidwarden"] # the default when absent
//! namespaces = []     # Kubernetes namespaces that may be acted on (empty: all)
//!
//! [defaults]
//! keep = 1            # copies kept per duplicate group
//! grace_secs = 5      # SIGTERM → SIGKILL
//! sample_secs = 2     # CPU sampling window choosing the victims
//! cooldown_secs = 300 # per container, between two actions
//!
//! [limits]
//! window_secs = 3600
//! max_actions = 10    # per container per window
//!
//! [circuit]
//! window_secs = 3600
//! kill_threshold = 3  # kill-duplicates actions in the window before escalating
//! escalate = true     # escalate to one restart, then open the circuit
//!
//! [actions]           # alertname → allowed actions (absent: any alert, any action)
//! PidwardenDuplicateProcesses = ["kill-duplicates"]
//! PidwardenPidsExhausted = ["restart", "kill-duplicates"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::alert::Action;
use crate::kill::KillPolicy;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Record what would be done, do nothing.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Days audit rows are kept; 0 keeps them forever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Command-line regexes never signalled.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Kubernetes namespaces whose containers are never acted on (absent:
    /// [`DEFAULT_PROTECTED_NAMESPACES`]; `[]` protects none).
    #[serde(default)]
    pub protected_namespaces: Option<Vec<String>>,
    /// Kubernetes namespaces whose containers may be acted on (empty: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Action defaults.
    #[serde(default)]
    pub defaults: Defaults,
    /// Per-container action bound.
    #[serde(default)]
    pub limits: Limits,
    /// Circuit breaker.
    #[serde(default)]
    pub circuit: Circuit,
    /// alertname → allowed actions.
    #[serde(default)]
    pub actions: Option<BTreeMap<String, Vec<String>>>,
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Copies kept per group.
    pub keep: Option<usize>,
    /// Grace period in seconds.
    pub grace_secs: Option<f64>,
    /// Sampling window in seconds.
    pub sample_secs: Option<f64>,
    /// Cooldown in seconds.
    pub cooldown_secs: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Window in seconds.
    pub window_secs: Option<u64>,
    /// Actions per container per window.
    pub max_actions: Option<u32>,
}

/// `[circuit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circuit {
    /// Window in seconds.
    pub window_secs: Option<u64>,
    /// kill-duplicates actions in the window that trip the breaker.
    pub kill_threshold: Option<u32>,
    /// Escalate to one restart before opening.
    pub escalate: Option<bool>,
}

/// What went wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse.
    #[error("parsing config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A value is invalid.
    #[error("config: {0}")]
    Invalid(String),
}

/// The command-line flags of the [`KillPolicy`] (they win over
/// `[defaults]`); unset ones fall back to the file, then to
/// [`KillPolicy::default`].
#[derive(Debug, Default, Clone, clap::Args)]
pub struct KillFlags {
    /// Copies kept per duplicate group.
    #[arg(long)]
    pub keep: Option<usize>,
    /// Seconds between SIGTERM and SIGKILL (and the restart stop timeout).
    #[arg(long = "grace")]
    pub grace_secs: Option<f64>,
    /// Seconds of CPU sampling choosing the victims.
    #[arg(long = "sample")]
    pub sample_secs: Option<f64>,
}

/// Overrides from the command line (they win over the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--keep`, `--grace`, `--sample`.
    pub kill: KillFlags,
    /// `--cooldown`.
    pub cooldown_secs: Option<u64>,
    /// `--retention-days`.
    pub retention_days: Option<u32>,
}

/// The resolved settings every decision uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Global dry-run.
    pub dry_run: bool,
    /// How kill-duplicates chooses and kills: copies kept, sampling window,
    /// grace (also the restart stop timeout), protected patterns.
    pub kill: KillPolicy,
    /// Kubernetes namespaces never acted on (exact names).
    pub protected_namespaces: Vec<String>,
    /// Kubernetes namespaces that may be acted on (exact names; empty: all
    /// but the protected ones).
    pub namespaces: Vec<String>,
    /// Per-container cooldown.
    pub cooldown: Duration,
    /// Window of the per-container action bound.
    pub limit_window: Duration,
    /// Actions per container per window.
    pub max_actions: u32,
    /// Circuit breaker window.
    pub circuit_window: Duration,
    /// kill-duplicates actions in the window that trip the breaker.
    pub kill_threshold: u32,
    /// Escalate to one restart before opening the circuit.
    pub escalate: bool,
    /// alertname → allowed actions; `None` = unrestricted.
    pub allowed: Option<BTreeMap<String, Vec<Action>>>,
    /// How long audit rows are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
}

/// Namespaces protected unless `protected_namespaces` says otherwise: the
/// control plane's and pidwarden's own.
pub const DEFAULT_PROTECTED_NAMESPACES: [&str; 2] = ["kube-system", "pidwarden"];

/// Audit rows are kept this many days unless configured otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(ConfigFile::default(), &Overrides::default()).expect("defaults are valid")
    }
}

/// Largest grace period (SIGTERM → SIGKILL, and the restart stop timeout).
pub const MAX_GRACE_SECS: f64 = 600.0;
/// Largest CPU sampling window.
pub const MAX_SAMPLE_SECS: f64 = 60.0;
/// Largest cooldown and restraint window: 30 days.
pub const MAX_WINDOW_SECS: u64 = 30 * 86_400;
/// Largest retention: ten years.
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// Largest number of copies kept per group.
pub const MAX_KEEP: usize = 1000;
/// Largest action bound and breaker threshold.
pub const MAX_COUNT: u32 = 10_000;

/// A value from the command line or the file, with the name an error uses:
/// the flag when it was given there, the file key otherwise.
fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    file: Option<T>,
    key: &'static str,
    default: T,
) -> (T, &'static str) {
    match (flag, file) {
        (Some(v), _) => (v, flag_name),
        (None, Some(v)) => (v, key),
        (None, None) => (default, key),
    }
}

/// Seconds as a float within `0..=max` (negative, NaN and infinite refused
/// here, so [`Duration::from_secs_f64`] cannot panic).
fn secs_f64((v, name): (f64, &str), max: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(ConfigError::Invalid(format!(
            "{name} must be between 0 and {max} seconds, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// An RFC 1123 label, as Kubernetes namespace names are.
fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whole seconds within `min..=MAX_WINDOW_SECS`.
fn secs_u64((v, name): (u64, &str), min: u64) -> Result<Duration, ConfigError> {
    if !(min..=MAX_WINDOW_SECS).contains(&v) {
        return Err(ConfigError::Invalid(format!(
            "{name} must be between {min} and {MAX_WINDOW_SECS} seconds (30 days), got {v}"
        )));
    }
    Ok(Duration::from_secs(v))
}

/// A count within `1..=max`.
fn count<T: PartialOrd + From<u8> + std::fmt::Display + Copy>(
    (v, name): (T, &str),
    max: T,
) -> Result<T, ConfigError> {
    if v < T::from(1) || v > max {
        return Err(ConfigError::Invalid(format!(
            "{name} must be between 1 and {max}, got {v}"
        )));
    }
    Ok(v)
}

impl Settings {
    /// Reads and resolves a config file (or the defaults when `path` is None).
    pub fn load(path: Option<&Path>, o: &Overrides) -> Result<Settings, ConfigError> {
        let file = match path {
            None => ConfigFile::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                // An empty file is a truncated one, not a wish for the
                // defaults (which act live on every alert).
                if text.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "{}: the file is empty",
                        p.display()
                    )));
                }
                Self::parse(&text).map_err(|source| ConfigError::Parse {
                    path: p.display().to_string(),
                    source,
                })?
            }
        };
        Settings::resolve(file, o)
    }

    /// Parses the TOML text (no validation of values).
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }

    /// Validates a parsed file and applies the overrides.
    pub fn resolve(f: ConfigFile, o: &Overrides) -> Result<Settings, ConfigError> {
        let protected = f
            .protected
            .iter()
            .map(|p| {
                Regex::new(p)
                    .map_err(|e| ConfigError::Invalid(format!("protected pattern {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed = match f.actions {
            None => None,
            Some(map) => {
                let mut out = BTreeMap::new();
                for (alertname, list) in map {
                    let mut acts = Vec::new();
                    for a in list {
                        acts.push(Action::parse(&a).ok_or_else(|| {
                            ConfigError::Invalid(format!(
                                "[actions] {alertname}: unknown action {a:?} (kill-duplicates or restart)"
                            ))
                        })?);
                    }
                    out.insert(alertname, acts);
                }
                Some(out)
            }
        };
        let d = &f.defaults;
        let k = &o.kill;
        let default = KillPolicy::default();
        let keep = count(
            pick(k.keep, "--keep", d.keep, "defaults.keep", default.keep),
            MAX_KEEP,
        )?;
        let retention_days = pick(
            o.retention_days,
            "--retention-days",
            f.retention_days,
            "retention_days",
            DEFAULT_RETENTION_DAYS,
        );
        let retention = match retention_days {
            (0, _) => None,
            (days, name) => {
                if days > MAX_RETENTION_DAYS {
                    return Err(ConfigError::Invalid(format!(
                        "{name} must be at most {MAX_RETENTION_DAYS} days (0 keeps rows forever), got {days}"
                    )));
                }
                Some(Duration::from_secs(u64::from(days) * 86_400))
            }
        };
        let protected_namespaces = f.protected_namespaces.unwrap_or_else(|| {
            DEFAULT_PROTECTED_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        for (key, list) in [
            ("protected_namespaces", &protected_namespaces),
            ("namespaces", &f.namespaces),
        ] {
            if let Some(ns) = list.iter().find(|ns| !is_namespace_name(ns)) {
                return Err(ConfigError::Invalid(format!(
                    "{key}: {ns:?} is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)"
                )));
            }
        }
        Ok(Settings {
            dry_run: o.dry_run || f.dry_run.unwrap_or(false),
            kill: KillPolicy {
                keep,
                grace: secs_f64(
                    pick(
                        k.grace_secs,
                        "--grace",
                        d.grace_secs,
                        "defaults.grace_secs",
                        default.grace.as_secs_f64(),
                    ),
                    MAX_GRACE_SECS,
                )?,
                sample: secs_f64(
                    pick(
                        k.sample_secs,
                        "--sample",
                        d.sample_secs,
                        "defaults.sample_secs",
                        default.sample.as_secs_f64(),
                    ),
                    MAX_SAMPLE_SECS,
                )?,
                protected,
            },
            protected_namespaces,
            namespaces: f.namespaces,
            cooldown: secs_u64(
                pick(
                    o.cooldown_secs,
                    "--cooldown",
                    d.cooldown_secs,
                    "defaults.cooldown_secs",
                    300,
                ),
                0,
            )?,
            limit_window: secs_u64(
                pick(None, "", f.limits.window_secs, "limits.window_secs", 3600),
                1,
            )?,
            max_actions: count(
                pick(None, "", f.limits.max_actions, "limits.max_actions", 10),
                MAX_COUNT,
            )?,
            circuit_window: secs_u64(
                pick(None, "", f.circuit.window_secs, "circuit.window_secs", 3600),
                1,
            )?,
            kill_threshold: count(
                pick(
                    None,
                    "",
                    f.circuit.kill_threshold,
                    "circuit.kill_threshold",
                    3,
                ),
                MAX_COUNT,
            )?,
            escalate: f.circuit.escalate.unwrap_or(true),
            allowed,
            retention,
        })
    }

    /// Why a container of Kubernetes namespace `ns` may not be acted on, or
    /// `None` when it may. A container without a namespace (plain Docker or
    /// Podman) is subject to neither list.
    pub fn namespace_refusal(&self, ns: Option<&str>) -> Option<String> {
        let ns = ns?;
        if self.protected_namespaces.iter().any(|p| p == ns) {
            return Some(format!(
                "namespace {ns} is protected (protected_namespaces)"
            ));
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == ns) {
            return Some(format!(
                "namespace {} is not in the namespaces allow list",
                crate::alert::clip(ns, 63)
            ));
        }
        None
    }

    /// Whether `alertname` may ask for `action`.
    pub fn allows(&self, alertname: &str, action: Action) -> bool {
        match &self.allowed {
            None => true,
            Some(map) => map.get(alertname).is_some_and(|l| l.contains(&action)),
        }
    }

    /// The longest window any rebuild from the audit store must cover.
    pub fn history_horizon(&self) -> Duration {
        self.cooldown
            .max(self.limit_window)
            .max(self.circuit_window)
    }

    /// Audit rows older than the returned instant (Unix ms) may be pruned;
    /// `None` when they are kept forever. It is the retention period, but
    /// never less than [`Settings::history_horizon`]: the rows cooldowns,
    /// action bounds and open circuits are rebuilt from always stay.
    pub fn prune_before(&self, now_ms: i64) -> Option<i64> {
        self.retention.map(|r| {
            let keep = r.max(self.history_horizon());
            now_ms.saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_resolves() {
        let f = Settings::parse(
            r#"
dry_run = true
retention_days = 7
protected = ["^postgres"]
[defaults]
keep = 2
grace_secs = 1.5
sample_secs = 0.5
cooldown_secs = 60
[limits]
window_secs = 600
max_actions = 4
[circuit]
window_secs = 900
kill_threshold = 2
escalate = false
[actions]
Dup = ["kill-duplicates"]
"#,
        )
        .unwrap();
        let s = Settings::resolve(
            f,
            &Overrides {
                cooldown_secs: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s.dry_run);
        assert_eq!(s.kill.keep, 2);
        assert_eq!(s.kill.grace, Duration::from_millis(1500));
        assert_eq!(s.cooldown, Duration::from_secs(5));
        assert_eq!(s.max_actions, 4);
        assert!(!s.escalate);
        assert!(s.allows("Dup", Action::KillDuplicates));
        assert!(!s.allows("Dup", Action::Restart));
        assert!(!s.allows("Other", Action::KillDuplicates));
        assert!(s.kill.protected[0].is_match("postgres -D /data"));
        assert_eq!(s.retention, Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn retention_days_default_zero_and_override() {
        let day_ms = 86_400_000;
        let now = 1000 * day_ms;
        let s = Settings::default();
        assert_eq!(s.retention, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(s.prune_before(now), Some(now - 90 * day_ms));
        let forever = Settings::resolve(
            Settings::parse("retention_days = 0").unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(forever.retention, None);
        assert_eq!(forever.prune_before(now), None);
        let flag = Settings::resolve(
            Settings::parse("retention_days = 0").unwrap(),
            &Overrides {
                retention_days: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(flag.prune_before(now), Some(now - 2 * day_ms));
        // A retention shorter than a restraint window stretches to it.
        let short = Settings {
            retention: Some(Duration::from_secs(86_400)),
            circuit_window: Duration::from_secs(3 * 86_400),
            ..Settings::default()
        };
        assert_eq!(short.prune_before(now), Some(now - 3 * day_ms));
    }

    #[test]
    fn namespace_lists_default_parse_and_decide() {
        let none = Settings::default();
        assert_eq!(none.protected_namespaces, DEFAULT_PROTECTED_NAMESPACES);
        assert!(none.namespaces.is_empty());
        // A file that does not name them keeps the default denials.
        let file = Settings::resolve(
            Settings::parse("dry_run = true").unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        for s in [&none, &file] {
            for ns in DEFAULT_PROTECTED_NAMESPACES {
                let why = s.namespace_refusal(Some(ns)).unwrap();
                assert!(why.contains("protected_namespaces"), "{why}");
            }
            assert_eq!(s.namespace_refusal(Some("shop")), None);
            assert_eq!(s.namespace_refusal(None), None);
        }
        // `[]` protects none; the allow list admits only its namespaces.
        let s = Settings::resolve(
            Settings::parse("protected_namespaces = []\nnamespaces = [\"shop\", \"kube-system\"]")
                .unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.namespace_refusal(Some("kube-system")), None);
        assert_eq!(s.namespace_refusal(Some("shop")), None);
        let why = s.namespace_refusal(Some("pidwarden")).unwrap();
        assert!(why.contains("allow list"), "{why}");
        assert_eq!(s.namespace_refusal(None), None, "no namespace: unaffected");
        // Both lists: the denial wins.
        let s = Settings::resolve(
            Settings::parse("namespaces = [\"kube-system\", \"shop\"]").unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert!(s.namespace_refusal(Some("kube-system")).is_some());
        assert_eq!(s.namespace_refusal(Some("shop")), None);
    }

    #[test]
    fn bad_namespace_names_are_refused() {
        for (toml, key) in [
            ("namespaces = [\"\"]", "namespaces"),
            ("namespaces = [\"Shop\"]", "namespaces"),
            ("namespaces = [\"-shop\"]", "namespaces"),
            ("namespaces = [\"shop-\"]", "namespaces"),
            ("namespaces = [\"a/b\"]", "namespaces"),
            (
                "protected_namespaces = [\"kube_system\"]",
                "protected_namespaces",
            ),
            ("protected_namespaces = [\"\"]", "protected_namespaces"),
        ] {
            let e = resolve_err(toml, &Overrides::default());
            assert!(e.starts_with(&format!("config: {key}:")), "{toml:?}: {e}");
        }
        let long = format!("namespaces = [\"{}\"]", "a".repeat(64));
        assert!(resolve_err(&long, &Overrides::default()).contains("namespaces"));
        assert!(Settings::parse("namespaces = \"shop\"").is_err());
        assert!(Settings::parse("namespaces = [1]").is_err());
        let ok = format!("namespaces = [\"{}\", \"a-1\", \"0\"]", "a".repeat(63));
        Settings::resolve(Settings::parse(&ok).unwrap(), &Overrides::default()).unwrap();
    }

    #[test]
    fn defaults_allow_everything() {
        let s = Settings::default();
        assert!(s.allows("anything", Action::Restart));
        assert_eq!(s.cooldown, Duration::from_secs(300));
        assert_eq!(s.kill.grace, Duration::from_secs(5));
        assert_eq!(s.kill.sample, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let bad_re = Settings::resolve(
            Settings::parse(r#"protected = ["(unclosed"]"#).unwrap(),
            &Overrides::default(),
        );
        assert!(bad_re.unwrap_err().to_string().contains("(unclosed"));
        let bad_action = Settings::resolve(
            Settings::parse("[actions]\nX = [\"reboot\"]").unwrap(),
            &Overrides::default(),
        );
        assert!(bad_action.unwrap_err().to_string().contains("reboot"));
        assert!(Settings::parse("unknown_key = 1").is_err());
    }

    fn resolve_err(toml: &str, o: &Overrides) -> String {
        match Settings::resolve(Settings::parse(toml).unwrap(), o) {
            Ok(s) => panic!("{toml:?} {o:?} was accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn out_of_bounds_file_values_name_their_key() {
        for (toml, key) in [
            ("[defaults]\nkeep = 0", "defaults.keep"),
            ("[defaults]\nkeep = 1000000", "defaults.keep"),
            ("[defaults]\ngrace_secs = -1.0", "defaults.grace_secs"),
            ("[defaults]\ngrace_secs = nan", "defaults.grace_secs"),
            ("[defaults]\ngrace_secs = inf", "defaults.grace_secs"),
            ("[defaults]\ngrace_secs = 1e300", "defaults.grace_secs"),
            ("[defaults]\nsample_secs = -inf", "defaults.sample_secs"),
            ("[defaults]\nsample_secs = 3600.0", "defaults.sample_secs"),
            (
                "[defaults]\ncooldown_secs = 2592001",
                "defaults.cooldown_secs",
            ),
            (
                "[defaults]\ncooldown_secs = 9223372036854775807",
                "defaults.cooldown_secs",
            ),
            ("[limits]\nwindow_secs = 0", "limits.window_secs"),
            ("[limits]\nwindow_secs = 99999999999", "limits.window_secs"),
            ("[limits]\nmax_actions = 0", "limits.max_actions"),
            ("[limits]\nmax_actions = 4000000000", "limits.max_actions"),
            ("[circuit]\nwindow_secs = 0", "circuit.window_secs"),
            ("[circuit]\nwindow_secs = 31536000", "circuit.window_secs"),
            ("[circuit]\nkill_threshold = 0", "circuit.kill_threshold"),
            ("retention_days = 4000000000", "retention_days"),
        ] {
            let e = resolve_err(toml, &Overrides::default());
            assert!(e.contains(key), "{toml:?}: {e}");
        }
    }

    #[test]
    fn out_of_bounds_flags_name_the_flag() {
        let cases: [(Overrides, &str); 9] = [
            (
                Overrides {
                    kill: KillFlags {
                        keep: Some(0),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--keep",
            ),
            (
                Overrides {
                    kill: KillFlags {
                        grace_secs: Some(f64::NAN),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--grace",
            ),
            (
                Overrides {
                    kill: KillFlags {
                        grace_secs: Some(-0.5),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--grace",
            ),
            (
                Overrides {
                    kill: KillFlags {
                        grace_secs: Some(f64::INFINITY),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--grace",
            ),
            (
                Overrides {
                    kill: KillFlags {
                        sample_secs: Some(f64::MAX),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--sample",
            ),
            (
                Overrides {
                    kill: KillFlags {
                        sample_secs: Some(f64::NEG_INFINITY),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--sample",
            ),
            (
                Overrides {
                    cooldown_secs: Some(u64::MAX),
                    ..Default::default()
                },
                "--cooldown",
            ),
            (
                Overrides {
                    cooldown_secs: Some(31 * 86_400),
                    ..Default::default()
                },
                "--cooldown",
            ),
            (
                Overrides {
                    retention_days: Some(u32::MAX),
                    ..Default::default()
                },
                "--retention-days",
            ),
        ];
        for (o, flag) in cases {
            // The flag wins over a valid file value and is the one named.
            let e = resolve_err("[defaults]\nkeep = 2\ngrace_secs = 1.0", &o);
            assert!(e.contains(flag), "{o:?}: {e}");
        }
    }

    #[test]
    fn bounds_themselves_are_accepted() {
        let s = Settings::resolve(
            Settings::parse(
                "retention_days = 3650\n[defaults]\nkeep = 1000\ngrace_secs = 600\nsample_secs = 0\ncooldown_secs = 2592000\n[limits]\nwindow_secs = 2592000\nmax_actions = 10000\n[circuit]\nwindow_secs = 1\nkill_threshold = 10000",
            )
            .unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.kill.grace, Duration::from_secs(600));
        assert_eq!(s.cooldown, Duration::from_secs(MAX_WINDOW_SECS));
        assert_eq!(s.history_horizon(), Duration::from_secs(MAX_WINDOW_SECS));
        // The largest values keep every time computation in range.
        assert!(s.prune_before(i64::MAX).is_some());
        assert!(s.prune_before(0).unwrap() < 0);
    }
}
