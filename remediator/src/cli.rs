//! Command line: the daemon, and `history` printing the audit trail.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::auth::{read_basic_auth_file, read_token_file, Credentials};
use crate::config::{KillFlags, Overrides, Settings};
use crate::http::{app, AppState};
use crate::kill::HostKillEngine;
use crate::metrics::Metrics;
use crate::runtime::{RuntimeFlags, Runtimes};
use crate::service::Service;
use crate::store::{Record, Store};

/// How often the audit trail is pruned (the first run is at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pidwarden";

/// `pidwarden-remediator`.
#[derive(Debug, Parser)]
#[command(
    name = "pidwarden-remediator",
    version = pidwarden_shared::build_info::LONG_VERSION,
    about = "Acts on pidwarden alerts from Alertmanager: kills duplicate process copies or restarts containers, with restraint and an audit trail"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Daemon options.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to standard error; `RUST_LOG` filters (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the audit trail (newest first).
    History(HistoryArgs),
    /// Print the plan an alert for a container would get now (kill-duplicates), acting on nothing.
    Plan(Box<PlanArgs>),
}

/// `history` options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// State directory holding the SQLite store.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Rows to print.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Daemon options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (`HOST:PORT`, or `:PORT` for every IPv4 address).
    #[arg(long, default_value = "0.0.0.0:9918",
          value_parser = pidwarden_shared::listen::parse_listen)]
    pub listen: SocketAddr,
    /// File holding the bearer token Alertmanager sends (trimmed).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// File holding one `user:password` line for basic auth.
    #[arg(long)]
    pub basic_auth_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are required (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require credentials on /metrics too.
    #[arg(long)]
    pub metrics_auth: bool,
    /// State directory (SQLite audit store).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Record what would be done; do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `--keep`, `--grace`, `--sample`: the kill policy.
    #[command(flatten)]
    pub kill: KillFlags,
    /// Seconds between two actions on one container.
    #[arg(long)]
    pub cooldown: Option<u64>,
    /// Days audit rows are kept (default 90; 0 keeps them forever).
    #[arg(long)]
    pub retention_days: Option<u32>,
    /// Runtimes and filesystems.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Serve without any authentication (tests, loopback only).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// A node this remediator may forward alerts to (fleet routing): a host
    /// name, an IP address or a CIDR network; repeatable. Forwarding is off
    /// without it; an alert's `instance` host must match one.
    #[arg(long = "peer", value_name = "HOST|IP|CIDR", value_parser = parse_peer)]
    pub peers: Vec<crate::forward::PeerEntry>,
    /// Port of the peers' remediators (default: this remediator's own
    /// listen port).
    #[arg(long, requires = "peers")]
    pub peer_port: Option<u16>,
    /// Bearer token sent to peers (required with --peer; never the
    /// --token-file one by default), and accepted from them on forwarded
    /// webhook requests.
    #[arg(long)]
    pub peer_token_file: Option<PathBuf>,
    /// CA (PEM) that peers' certificates must chain to: forward over HTTPS
    /// (without it only loopback peers are reached, in plain HTTP).
    #[arg(long, requires = "peers")]
    pub peer_ca: Option<PathBuf>,
    /// An Alertmanager (`http://HOST:PORT`, `https://…` verified against
    /// the system's roots) that every action taken, failed or dry-run is
    /// posted to as a `PidwardenRemediation` alert; repeatable (HA pair).
    #[arg(long = "alertmanager-url", value_name = "URL")]
    pub alertmanager_urls: Vec<crate::notices::AlertmanagerUrl>,
}

/// The system's trusted roots, for `https` Alertmanager URLs.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the node's containers are found: the runtimes and the proc and
/// cgroup filesystems (the daemon and `plan` alike).
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Docker Engine API (`unix:///var/run/docker.sock`, `tcp://host:2375`); `none` disables it.
    #[arg(long, env = "DOCKER_HOST", default_value = pidwarden_shared::runtime::DEFAULT_DOCKER_HOST)]
    pub docker_host: String,
    /// Podman's Docker-compatible API (`podman system service`); `none` disables it.
    /// Default: unix:///run/podman/podman.sock.
    #[arg(long)]
    pub podman_host: Option<String>,
    /// Kubernetes CRI endpoint (containerd, CRI-O); `none` disables it.
    /// Default: unix:///run/containerd/containerd.sock, then unix:///run/crio/crio.sock.
    #[arg(long)]
    pub cri_endpoint: Option<String>,
    /// The proc filesystem.
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// The cgroup filesystem.
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// A cgroup parent (relative to the cgroup root) a runtime was
    /// configured with (`--cgroup-parent`, the kubelet's `--cgroup-root`):
    /// container cgroups under it are recognised besides the runtimes'
    /// default parents. Repeatable.
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parents: Vec<String>,
}

/// `plan` options: the container, and the daemon's flags that decide its
/// policy and how its containers are found.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["id", "name"])))]
pub struct PlanArgs {
    /// The container's full id (as an alert's `id` label).
    #[arg(long)]
    pub id: Option<String>,
    /// The container's name (as an alert's `name` label), resolved through the runtimes.
    #[arg(long)]
    pub name: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// TOML configuration file (the daemon's: protected patterns, namespaces, kill policy).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// As the daemon's `--dry-run`.
    #[arg(long)]
    pub dry_run: bool,
    /// `--keep`, `--grace`, `--sample`: the kill policy.
    #[command(flatten)]
    pub kill: KillFlags,
    /// Runtimes and filesystems.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Exit code of `plan` when the container would be refused (errors exit 1,
/// usage errors 2).
pub const EXIT_REFUSED: i32 = 3;

fn parse_peer(s: &str) -> Result<crate::forward::PeerEntry, crate::forward::PeerEntryError> {
    crate::forward::PeerEntry::parse(s)
}

/// Runs the parsed command line; the process's exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Some(Command::History(h)) => history(&h, &mut std::io::stdout().lock()).map(|()| 0),
        Some(Command::Plan(p)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let result = rt.block_on(plan(&p, &mut std::io::stdout().lock()));
            rt.shutdown_timeout(Duration::from_millis(200));
            result
        }
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(serve(cli.serve));
            // A kill engine thread still in its grace period is not waited
            // for: its action was interrupted and is closed at the next start.
            rt.shutdown_timeout(Duration::from_millis(500));
            result.map(|()| 0)
        }
    }
}

/// `plan`: resolves the container as an alert's, plans as a live action
/// does, prints the plan; [`EXIT_REFUSED`] when the container would be
/// refused.
pub async fn plan(p: &PlanArgs, out: &mut impl std::io::Write) -> anyhow::Result<i32> {
    let overrides = Overrides {
        dry_run: p.dry_run,
        kill: p.kill.clone(),
        cooldown_secs: None,
        retention_days: None,
    };
    let settings = Settings::load(p.config.as_deref(), &overrides)?;
    check_proc_root(&p.node.proc_root)?;
    let target = match (&p.id, &p.name) {
        (Some(id), _) => crate::alert::target_of(Some(id), None),
        (None, name) => crate::alert::target_of(None, name.as_deref()),
    };
    let (runtime, engine) = node(&p.node)?;
    let engine: Arc<dyn crate::kill::KillEngine> = Arc::new(engine);
    let preview = crate::preview::preview(&runtime, &engine, &settings, &target).await?;
    if p.json {
        serde_json::to_writer_pretty(&mut *out, &preview)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", crate::preview::format_preview(&preview))?;
    }
    out.flush()?;
    Ok(if preview.refused { EXIT_REFUSED } else { 0 })
}

/// The runtimes and the kill engine over the node the flags name, sharing
/// one index of its containers.
fn node(a: &NodeArgs) -> anyhow::Result<(Runtimes, HostKillEngine)> {
    let mut roots = pidwarden_shared::Roots::new(&a.proc_root, &a.cgroup_root);
    roots.cgroup_parents = a.cgroup_parents.clone();
    let index = Arc::new(pidwarden_shared::cgroup::ContainerIndex::new(roots.clone()));
    let runtime = runtimes(a)?.with_cgroups(Arc::clone(&index));
    Ok((runtime, HostKillEngine::new(roots, index)))
}

/// Prints the audit trail.
pub fn history(h: &HistoryArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    anyhow::ensure!(
        h.state_dir.join(crate::store::DB_FILE).exists(),
        "no state store in {}",
        h.state_dir.display()
    );
    let store = Store::open(&h.state_dir)?;
    let rows = store.recent(h.limit)?;
    if h.json {
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", format_table(&rows))?;
    }
    Ok(())
}

/// The audit rows as a text table.
pub fn format_table(rows: &[Record]) -> String {
    use crate::alert::clip;
    let mut s = format!(
        "{:<6} {:<24} {:<28} {:<20} {:<16} {:<17} {:<5} {:<10} {}\n",
        "ROW", "TIME", "ALERT", "CONTAINER", "ACTION", "RESULT", "PROCS", "MEMORY", "REASON"
    );
    for r in rows {
        let container = if r.container_name.is_empty() {
            r.container_id.chars().take(12).collect()
        } else {
            clip(&r.container_name, 19)
        };
        let procs = r.process_count;
        s.push_str(&format!(
            "{:<6} {:<24} {:<28} {:<20} {:<16} {:<17} {:<5} {:<10} {}\n",
            r.id,
            crate::timefmt::format_rfc3339(r.at_ms as i128 * 1_000_000),
            clip(&r.alertname, 27),
            container,
            clip(r.action.as_str(), 15),
            r.result,
            procs,
            r.victim_memory_bytes
                .map_or_else(|| "-".to_string(), crate::units::format_bytes),
            r.reason
        ));
    }
    s
}

/// Builds the credentials from the flags; refuses to run without any unless
/// `--insecure-no-auth`.
pub fn credentials(a: &ServeArgs) -> anyhow::Result<Credentials> {
    let creds = Credentials {
        bearer: a.token_file.as_deref().map(read_token_file).transpose()?,
        basic: a
            .basic_auth_file
            .as_deref()
            .map(read_basic_auth_file)
            .transpose()?,
        peer: a
            .peer_token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?,
    };
    if a.insecure_no_auth && !is_loopback(a.listen.ip()) {
        anyhow::bail!(
            "--insecure-no-auth is allowed only on a loopback address, and --listen {} is not one: listen on 127.0.0.1 or ::1, or give --token-file, --basic-auth-file or --tls-client-ca",
            a.listen
        );
    }
    if !creds.is_configured() && a.tls_client_ca.is_none() && !a.insecure_no_auth {
        anyhow::bail!(
            "no credentials: give --token-file, --basic-auth-file or --tls-client-ca (or --insecure-no-auth to run without authentication)"
        );
    }
    Ok(creds)
}

/// True for 127.0.0.0/8, `::1` and IPv4-mapped loopback (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Checks that `proc_root` is the proc filesystem of this process's own pid
/// namespace: the victims' pids are read there and signalled through pidfds,
/// which resolve pids in the remediator's namespace. `<proc_root>/self` must
/// name this process.
pub fn check_proc_root(proc_root: &Path) -> anyhow::Result<()> {
    let link = proc_root.join("self");
    let own = std::process::id();
    let target = std::fs::read_link(&link).with_context(|| {
        format!(
            "--proc-root {}: cannot read {} (the remediator needs the proc filesystem of its own pid namespace)",
            proc_root.display(),
            link.display()
        )
    })?;
    let named = target.to_str().and_then(|t| t.parse::<u32>().ok());
    anyhow::ensure!(
        named == Some(own),
        "--proc-root {} is not the proc filesystem of the remediator's own pid namespace: {} points to {:?}, not to this process ({own}); pids read there would be signalled as other processes (run with the host's pid namespace, e.g. --pid=host, and its /proc)",
        proc_root.display(),
        link.display(),
        target
    );
    Ok(())
}

fn load_settings(a: &ServeArgs) -> anyhow::Result<Settings> {
    Ok(Settings::load(a.config.as_deref(), &overrides(a))?)
}

/// The flags that override the config file, at start and on every reload.
fn overrides(a: &ServeArgs) -> Overrides {
    Overrides {
        dry_run: a.dry_run,
        kill: a.kill.clone(),
        cooldown_secs: a.cooldown,
        retention_days: a.retention_days,
    }
}

/// What SIGHUP reads again ([`crate::reload`]); the TLS files are read only
/// at start, and a change to them is named as needing a restart.
fn reloader(a: &ServeArgs) -> crate::reload::Reloader {
    let start_only = [
        ("--tls-cert", &a.tls_cert),
        ("--tls-key", &a.tls_key),
        ("--tls-client-ca", &a.tls_client_ca),
        ("--peer-ca", &a.peer_ca),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.clone().map(|p| (flag, p)))
    .collect();
    crate::reload::Reloader::new(
        a.config.clone(),
        overrides(a),
        a.token_file.clone(),
        a.basic_auth_file.clone(),
        a.peer_token_file.clone(),
        start_only,
    )
}

/// The runtimes the flags configure; a malformed URL names its flag.
pub fn runtimes(a: &NodeArgs) -> anyhow::Result<Runtimes> {
    Ok(Runtimes::from_flags(&RuntimeFlags {
        docker_host: a.docker_host.clone(),
        podman_host: a.podman_host.clone(),
        cri_endpoint: a.cri_endpoint.clone(),
    })?)
}

fn state_store(dir: &Path) -> anyhow::Result<Store> {
    Ok(Store::open(dir)?)
}

/// How this remediator reaches its peers: `None` (forwarding off) without
/// `--peer`. `--peer` needs `--peer-token-file`, and a peer off the loopback
/// interface needs `--peer-ca`.
pub fn peers(a: &ServeArgs) -> anyhow::Result<Option<crate::forward::Peers>> {
    if a.peers.is_empty() {
        return Ok(None);
    }
    let Some(file) = &a.peer_token_file else {
        anyhow::bail!(
            "--peer needs --peer-token-file: the token sent to peers (and accepted from them) is never the inbound --token-file by default"
        );
    };
    let token = read_token_file(file)?;
    let tls = a
        .peer_ca
        .as_deref()
        .map(crate::tls::client_config)
        .transpose()?;
    let port = a.peer_port.unwrap_or(a.listen.port());
    Ok(Some(crate::forward::Peers::new(
        a.peers.clone(),
        port,
        token,
        tls,
        a.listen,
    )?))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let settings = load_settings(&a)?;
    let credentials = Arc::new(crate::live::Live::new(credentials(&a)?));
    let reloader = Arc::new(reloader(&a));
    let peers = peers(&a)?;
    check_proc_root(&a.node.proc_root)?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::server_config(c, k, a.tls_client_ca.as_deref())?),
        _ => None,
    };
    let store = state_store(&a.state_dir)?;
    // Pidfds for a kill are budgeted below the open file limit: raise it.
    match pidwarden_shared::procfs::raise_nofile_limit() {
        Ok((old, new)) => tracing::info!(
            old,
            new,
            "open file limit (RLIMIT_NOFILE soft); pidfds of a kill are pinned in batches below it"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    // One index of the node's containers: the runtime layer and the kill
    // engine share its walks.
    let (runtime, engine) = node(&a.node)?;
    tracing::info!(
        runtimes = ?runtime.configured().iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "container runtimes (each container goes to the one its cgroup names)"
    );
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(true, crate::reload::unix_now());
    let service = Service::new(
        settings.clone(),
        store,
        Arc::new(runtime),
        Arc::new(engine),
        metrics,
    )?;
    if !a.alertmanager_urls.is_empty() {
        let tls = if a.alertmanager_urls.iter().any(|u| u.https) {
            Some(
                crate::tls::client_config(Path::new(SYSTEM_ROOTS)).with_context(|| {
                    format!(
                        "--alertmanager-url https://…: reading the system's roots {SYSTEM_ROOTS}"
                    )
                })?,
            )
        } else {
            None
        };
        tracing::info!(alertmanagers = ?a.alertmanager_urls.iter().map(|u| u.alerts_url()).collect::<Vec<_>>(), "notices of actions are posted to these Alertmanagers");
        service.set_notifier(crate::notices::Notifier::start(
            a.alertmanager_urls.clone(),
            tls,
            Arc::clone(service.metrics()),
        ));
    }
    if let Some(p) = peers {
        tracing::info!(peers = ?p.listed().iter().map(ToString::to_string).collect::<Vec<_>>(), "fleet routing: alerts for containers of these nodes are forwarded");
        service.set_peers(p);
    }
    let svc = Arc::clone(&service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Err(e) = svc.probe_runtime().await {
                tracing::warn!(error = %e, "container runtime probe failed");
            }
            svc.expire_circuits();
        }
    });
    crate::reload::reload_on_sighup(reloader, Arc::clone(&service), Arc::clone(&credentials))
        .context("installing the SIGHUP handler")?;
    // Always running: a reload may set a retention period.
    {
        let svc = Arc::clone(&service);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match svc.prune_audit().await {
                    Ok(0) => {}
                    Ok(pruned) => {
                        tracing::info!(pruned, "audit rows past the retention period deleted")
                    }
                    Err(e) => tracing::warn!(error = %e, "pruning the audit trail failed"),
                }
            }
        });
    }
    let listener =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    tracing::info!(
        listen = %a.listen,
        tls = tls.is_some(),
        mtls = a.tls_client_ca.is_some(),
        dry_run = settings.dry_run,
        state = %service.store().path().display(),
        "pidwarden-remediator listening"
    );
    let state = AppState {
        service: Arc::clone(&service),
        credentials,
        metrics_auth: a.metrics_auth,
    };
    let limits = crate::server::Limits::for_this_process();
    tracing::info!(
        max_connections = limits.max_connections,
        "connection limit (below the open file limit)"
    );
    let svc = Arc::clone(&service);
    let shutdown = async move {
        pidwarden_shared::exposition::shutdown_signal().await;
        tracing::info!("shutting down: running actions are interrupted");
        svc.abort();
    };
    crate::server::serve(listener, app(state), tls, limits, shutdown).await?;
    if !service.wait_idle(crate::http::SHUTDOWN_WAIT).await {
        tracing::warn!(
            in_flight = service.in_flight(),
            "stopping with actions still running; they will be closed as interrupted at the next start"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_a_bare_port_and_logs_can_be_json() {
        let cli = Cli::try_parse_from([
            "pidwarden-remediator",
            "--listen",
            ":9918",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.serve.listen.to_string(), "0.0.0.0:9918");
        assert_eq!(cli.log_format, LogFormat::Json);
        let e = Cli::try_parse_from(["pidwarden-remediator", "--listen", "9918"]).unwrap_err();
        assert!(e.to_string().contains(":PORT"), "{e}");
        assert!(Cli::try_parse_from(["pidwarden-remediator", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn loopback_addresses() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "192.168.1.2",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn own_proc_root_passes_and_others_do_not() {
        check_proc_root(Path::new("/proc")).unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = check_proc_root(d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("--proc-root"), "{e:#}");
        std::os::unix::fs::symlink("1", d.path().join("self")).unwrap();
        let e = check_proc_root(d.path()).unwrap_err();
        assert!(
            format!("{e:#}").contains("not the proc filesystem"),
            "{e:#}"
        );
    }
}
