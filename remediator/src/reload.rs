//! SIGHUP: the `--config` file and the credential files (`--token-file`,
//! `--basic-auth-file`, `--peer-token-file`) are read again and put in force
//! for the requests and decisions that follow. A file that cannot be used
//! (missing, empty, unparsable, an invalid value) keeps the old one in force
//! and is logged at warn level with why; command-line flags override the
//! reloaded file exactly as at start. The files are read off the async
//! workers. What is set up once at start (the listen address, the state
//! directory, the runtimes, the peers, and the TLS certificate, key and CA
//! files) needs a restart: a TLS file changed on disk is logged as such.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::{read_basic_auth_file, read_token_file, Credentials};
use crate::config::{ConfigError, Overrides, Settings};
pub use crate::live::Live;
use crate::service::Service;
use crate::task::blocking;

/// A file read only at start, and what it held then.
#[derive(Debug)]
struct StartOnly {
    flag: &'static str,
    path: PathBuf,
    digest: Option<u64>,
}

fn digest(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// What a reload reads: the files and the flags that override the config.
#[derive(Debug)]
pub struct Reloader {
    config: Option<PathBuf>,
    overrides: Overrides,
    token_file: Option<PathBuf>,
    basic_auth_file: Option<PathBuf>,
    peer_token_file: Option<PathBuf>,
    start_only: Vec<StartOnly>,
}

/// A basic-auth file's user and password.
type UserPassword = (Vec<u8>, Vec<u8>);

/// The files as read by one reload.
struct Read {
    settings: Result<Settings, ConfigError>,
    bearer: Option<anyhow::Result<Vec<u8>>>,
    basic: Option<anyhow::Result<UserPassword>>,
    peer: Option<anyhow::Result<Vec<u8>>>,
    changed_start_only: Vec<(&'static str, PathBuf)>,
}

impl Reloader {
    /// A reloader of `config` (with the command line's `overrides`) and the
    /// credential files; `start_only` are the `(flag, file)` pairs read once
    /// at start (their content now is remembered, to name a change).
    pub fn new(
        config: Option<PathBuf>,
        overrides: Overrides,
        token_file: Option<PathBuf>,
        basic_auth_file: Option<PathBuf>,
        peer_token_file: Option<PathBuf>,
        start_only: Vec<(&'static str, PathBuf)>,
    ) -> Reloader {
        let start_only = start_only
            .into_iter()
            .map(|(flag, path)| StartOnly {
                flag,
                digest: digest(&path),
                path,
            })
            .collect();
        Reloader {
            config,
            overrides,
            token_file,
            basic_auth_file,
            peer_token_file,
            start_only,
        }
    }

    /// Reads every file (blocking I/O).
    fn read(&self) -> Read {
        Read {
            settings: Settings::load(self.config.as_deref(), &self.overrides),
            bearer: self.token_file.as_deref().map(read_token_file),
            basic: self.basic_auth_file.as_deref().map(read_basic_auth_file),
            peer: self.peer_token_file.as_deref().map(read_token_file),
            changed_start_only: self
                .start_only
                .iter()
                .filter(|f| digest(&f.path) != f.digest)
                .map(|f| (f.flag, f.path.clone()))
                .collect(),
        }
    }

    /// Reads the files again and puts what is valid in force; returns
    /// whether every file was (the
    /// `pidwarden_remediator_config_last_reload_successful` gauge is set).
    pub async fn reload(
        self: &Arc<Self>,
        service: &Service,
        credentials: &Live<Credentials>,
    ) -> bool {
        let me = Arc::clone(self);
        let read = match blocking(move || me.read()).await {
            Ok(r) => r,
            Err(e) => {
                service.metrics().config_loaded(false, unix_now());
                tracing::warn!(error = %e, "reload finished: failed, the old configuration and credentials stay in force");
                return false;
            }
        };
        let mut ok = true;
        match read.settings {
            Ok(s) => {
                tracing::info!(config = ?self.config, dry_run = s.dry_run, "configuration reloaded");
                service.set_settings(s);
            }
            Err(e) => {
                ok = false;
                tracing::warn!(error = %e, "config not reloaded; the old configuration stays in force");
            }
        }
        let mut creds = (*credentials.get()).clone();
        let mut fail = |flag: &str, e: anyhow::Error| {
            ok = false;
            tracing::warn!(flag, error = %format!("{e:#}"), "credential file not reloaded; the old one stays in force");
        };
        match read.bearer {
            Some(Ok(t)) => creds.bearer = Some(t),
            Some(Err(e)) => fail("--token-file", e),
            None => {}
        }
        match read.basic {
            Some(Ok(b)) => creds.basic = Some(b),
            Some(Err(e)) => fail("--basic-auth-file", e),
            None => {}
        }
        match read.peer {
            Some(Ok(t)) => {
                if let Some(peers) = service.peers() {
                    peers.set_token(t.clone());
                }
                creds.peer = Some(t);
            }
            Some(Err(e)) => fail("--peer-token-file", e),
            None => {}
        }
        credentials.set(creds);
        for (flag, path) in read.changed_start_only {
            tracing::warn!(flag, path = %path.display(), "file changed on disk, but it is read only at start: it needs a restart to take effect");
        }
        service.metrics().config_loaded(ok, unix_now());
        if ok {
            tracing::info!("reload finished: every file in force");
        } else {
            tracing::warn!("reload finished: some files were kept as they were (see above)");
        }
        ok
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    pidwarden_shared::timefmt::now_nanos() as f64 / 1e9
}

/// Reloads on every SIGHUP, until the process ends. The handler is
/// installed before this returns, so a SIGHUP no longer ends the process.
pub fn reload_on_sighup(
    reloader: Arc<Reloader>,
    service: Arc<Service>,
    credentials: Arc<Live<Credentials>>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config and credential files");
            reloader.reload(&service, &credentials).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_readers_keep_their_snapshot() {
        let l = Live::new(1);
        let before = l.get();
        l.set(2);
        assert_eq!((*before, *l.get()), (1, 2));
    }

    #[test]
    fn flags_override_a_reloaded_config_as_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "dry_run = false\n[defaults]\nkeep = 3\ncooldown_secs = 9\n",
        )
        .unwrap();
        let flags = Overrides {
            dry_run: true,
            kill: crate::config::KillFlags {
                keep: Some(2),
                ..Default::default()
            },
            ..Overrides::default()
        };
        let r = Reloader::new(Some(path.clone()), flags, None, None, None, Vec::new());
        let s = r.read().settings.unwrap();
        assert!(s.dry_run);
        assert_eq!(s.kill.keep, 2);
        assert_eq!(s.cooldown, std::time::Duration::from_secs(9));
        std::fs::write(&path, "[defaults]\ncooldown_secs = 7\n").unwrap();
        let s = r.read().settings.unwrap();
        assert!(s.dry_run && s.kill.keep == 2);
        assert_eq!(s.cooldown, std::time::Duration::from_secs(7));
        std::fs::write(&path, "[defaults]\ncooldown_secs = 99999999999\n").unwrap();
        let e = r.read().settings.unwrap_err();
        assert!(e.to_string().contains("defaults.cooldown_secs"), "{e}");
    }

    #[test]
    fn a_changed_start_only_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "one").unwrap();
        let r = Reloader::new(
            None,
            Overrides::default(),
            None,
            None,
            None,
            vec![("--tls-cert", cert.clone())],
        );
        assert!(r.read().changed_start_only.is_empty());
        std::fs::write(&cert, "two").unwrap();
        assert_eq!(r.read().changed_start_only, vec![("--tls-cert", cert)]);
    }
}
