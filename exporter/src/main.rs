//! `pidwarden-exporter`: serves per-container PID, process, duplicate and
//! memory metrics read from cgroups and `/proc`, named through the container
//! runtime's API, for Prometheus.

mod encode;
#[cfg(test)]
mod fixture_tests;
mod group_memory;
mod metrics;
mod runtime;
mod scrape_errors;
mod server;
mod snapshot;
#[cfg(test)]
mod testutil;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use pidwarden_shared::collect::{self, CollectMode, Collector};
use pidwarden_shared::Roots;

use crate::metrics::RenderOptions;
use crate::runtime::MetaCache;
use pidwarden_shared::runtime::{
    Kind, RuntimeFlags, Runtimes, DEFAULT_DOCKER_HOST, DEFAULT_PODMAN_HOST,
};

/// Command-line interface.
/// How often the containers' limit files (`pids.max`, `memory.max`) are
/// re-read: a changed limit shows within this (every other value is read
/// at every scrape).
pub const LIMITS_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(
    name = "pidwarden-exporter",
    version = pidwarden_shared::build_info::LONG_VERSION,
    about = "Prometheus exporter for container PID, process and memory pressure"
)]
struct Cli {
    /// Address to listen on (`HOST:PORT`, or `:PORT` for every IPv4 address).
    #[arg(long, default_value = "0.0.0.0:9917", value_name = "ADDR",
          value_parser = pidwarden_shared::listen::parse_listen)]
    listen: SocketAddr,
    /// Root of the proc filesystem.
    #[arg(long, default_value = "/proc", value_name = "DIR", global = true)]
    proc_root: PathBuf,
    /// Root of the cgroup filesystem.
    #[arg(
        long,
        default_value = "/sys/fs/cgroup",
        value_name = "DIR",
        global = true
    )]
    cgroup_root: PathBuf,
    /// A cgroup parent (relative to the cgroup root) a runtime was
    /// configured with (`--cgroup-parent`, the kubelet's `--cgroup-root`):
    /// container cgroups under it are recognised besides the runtimes'
    /// default parents. Repeatable.
    #[arg(long = "cgroup-parent", value_name = "PATH", global = true)]
    cgroup_parents: Vec<String>,
    /// Docker Engine API endpoint (unix:///path or tcp://host:port); `none` disables it.
    #[arg(long, default_value = DEFAULT_DOCKER_HOST, value_name = "URL", global = true)]
    docker_host: String,
    /// Podman's Docker-compatible API (`podman system service`); `none` disables it.
    /// Default: unix:///run/podman/podman.sock, reported once it answers.
    #[arg(long, value_name = "URL", global = true)]
    podman_host: Option<String>,
    /// Kubernetes CRI endpoint (containerd, CRI-O); `none` disables it.
    /// Default: unix:///run/containerd/containerd.sock, then unix:///run/crio/crio.sock,
    /// reported once one answers.
    #[arg(long, value_name = "URL", global = true)]
    cri_endpoint: Option<String>,
    /// Command groups exposed per container (largest first).
    #[arg(long, default_value_t = 5, value_name = "K", global = true)]
    top_commands: usize,
    /// Maximum characters of the `command` label.
    #[arg(long, default_value_t = 120, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    command_max_chars: u64,
    /// Threads a collection is spread over (containers are sharded by id);
    /// 1 collects on one thread. Default: the CPUs available, at most 4.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..256), global = true)]
    collect_threads: Option<u64>,
    /// How processes are read: `incremental` learns exits from pidfds and
    /// arrivals from cgroup.procs and reads only what changed; `full` reads
    /// every process's stat each scrape.
    #[arg(long, value_enum, default_value_t = Mode::Incremental, value_name = "MODE", global = true)]
    collect_mode: Mode,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Seconds between two readings of a container's group memory
    /// (`pidwarden_container_process_group_memory_bytes`, read from each
    /// member's `statm`): the most that metric lags. 1 to 86400.
    #[arg(long, default_value_t = group_memory::DEFAULT_INTERVAL.as_secs(),
          value_name = "SECS", value_parser = parse_interval)]
    group_memory_interval: u64,
    /// Seconds a scrape waits for a running collection before answering 503.
    #[arg(long, default_value_t = 10, value_name = "SECS", hide = true)]
    scrape_wait: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Incremental,
    Full,
}

impl From<Mode> for CollectMode {
    fn from(m: Mode) -> CollectMode {
        match m {
            Mode::Incremental => CollectMode::Incremental,
            Mode::Full => CollectMode::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect once, print a table (or JSON), and exit.
    Snapshot {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    fn roots(&self) -> Roots {
        let mut roots = Roots::new(&self.proc_root, &self.cgroup_root);
        roots.cgroup_parents = self.cgroup_parents.clone();
        roots
    }

    /// A collector over the roots with the configured threads.
    fn collector(&self) -> Collector {
        let threads = self
            .collect_threads
            .map_or_else(collect::default_threads, |n| {
                usize::try_from(n).unwrap_or(1)
            });
        let mut c = Collector::with_mode(self.roots(), threads, self.collect_mode.into());
        c.set_limits_every(LIMITS_EVERY);
        c
    }

    fn render_options(&self) -> RenderOptions {
        RenderOptions {
            top_commands: self.top_commands,
            command_max_chars: usize::try_from(self.command_max_chars).unwrap_or(usize::MAX),
        }
    }

    /// The configured runtime APIs (`none` disables one). A malformed URL
    /// is an error naming its flag.
    fn runtimes(&self) -> anyhow::Result<Runtimes> {
        Ok(Runtimes::from_flags(&RuntimeFlags {
            docker_host: self.docker_host.clone(),
            podman_host: self.podman_host.clone(),
            cri_endpoint: self.cri_endpoint.clone(),
        })?)
    }
}

/// `--group-memory-interval`: whole seconds, from 1 to a day.
fn parse_interval(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected whole seconds from 1 to 86400 (e.g. 600), found {s:?}"
        )),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // A scrape builds a snapshot and an exposition of a few MiB and drops
    // them: keep those pages for the next scrape rather than fault them in
    // again each time.
    pidwarden_shared::keep_freed_memory(KEEP_FREED_MEMORY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The collection runs on a blocking thread: keep it between scrapes
        // (Prometheus scrapes every 15-60 s; the default 10 s would start a
        // thread, with cold caches, for each).
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Some(Command::Snapshot { json }) => snapshot::run(&cli, json).await,
            None => serve(cli).await,
        }
    })
}

/// Freed memory kept by the allocator for the next scrape (see
/// [`pidwarden_shared::keep_freed_memory`]).
const KEEP_FREED_MEMORY: usize = 16 << 20;

/// How long an idle blocking thread (the one a collection ran on) is kept.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(600);

async fn serve(cli: Cli) -> anyhow::Result<()> {
    match pidwarden_shared::procfs::raise_nofile_limit() {
        Ok((old, new)) => tracing::info!(
            old,
            new,
            "open file limit (RLIMIT_NOFILE soft); /proc/<pid>/stat handles are kept below it"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    let runtimes = cli.runtimes()?;
    let configured = runtimes.configured();
    let probed: Vec<Kind> = configured
        .iter()
        .copied()
        .filter(|k| runtimes.probed(*k))
        .collect();
    let meta = MetaCache::with_runtimes(&configured, &probed);
    let backoff = Duration::from_secs(30);
    let poll = runtime::POLL_EVERY;
    for api in [runtimes.docker(), runtimes.podman()].into_iter().flatten() {
        tokio::spawn(runtime::refresh_loop(api, meta.clone(), backoff, poll));
    }
    if let Some(api) = runtimes.cri() {
        tokio::spawn(runtime::refresh_loop(api, meta.clone(), backoff, poll));
    }
    if runtimes.configured().is_empty() {
        tracing::info!("runtime APIs disabled; containers are named by short id");
    }
    let collector = cli.collector();
    tracing::info!(
        threads = collector.threads(),
        mode = collector.mode().as_str(),
        "collection threads and mode"
    );
    let state = server::AppState::new(
        Box::new(collector),
        Arc::clone(&meta),
        cli.render_options(),
        Duration::from_secs(cli.scrape_wait),
        Duration::from_secs(cli.group_memory_interval),
    );
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        proc_root = %cli.proc_root.display(),
        cgroup_root = %cli.cgroup_root.display(),
        docker_host = %cli.docker_host,
        podman_host = cli.podman_host.as_deref().unwrap_or(DEFAULT_PODMAN_HOST),
        cri_endpoint = cli.cri_endpoint.as_deref().unwrap_or("(containerd, then CRI-O)"),
        "serving /metrics"
    );
    axum::serve(listener, server::app(state))
        .with_graceful_shutdown(async {
            pidwarden_shared::exposition::shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await
        .context("serving HTTP")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_defaults_and_flags() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pidwarden-exporter"]).unwrap();
        assert_eq!(cli.listen.to_string(), "0.0.0.0:9917");
        let bare = Cli::try_parse_from(["pidwarden-exporter", "--listen", ":19917"]).unwrap();
        assert_eq!(bare.listen.to_string(), "0.0.0.0:19917");
        assert_eq!(cli.roots(), Roots::default());
        assert_eq!(cli.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(cli.podman_host, None);
        assert_eq!(cli.runtimes().unwrap().configured(), Kind::ALL);
        assert_eq!(cli.render_options().top_commands, 5);
        assert_eq!(cli.render_options().command_max_chars, 120);
        assert_eq!(cli.collector().threads(), collect::default_threads());
        assert_eq!(cli.collector().mode(), CollectMode::Incremental);
        let cli = Cli::try_parse_from(["pidwarden-exporter", "--collect-mode", "full"]).unwrap();
        assert_eq!(cli.collector().mode(), CollectMode::Full);
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["pidwarden-exporter", "--collect-threads", "1"]).unwrap();
        assert_eq!(cli.collector().threads(), 1);
        let cli = Cli::try_parse_from(["pidwarden-exporter"]).unwrap();
        assert_eq!(
            Duration::from_secs(cli.group_memory_interval),
            group_memory::DEFAULT_INTERVAL
        );
        let cli =
            Cli::try_parse_from(["pidwarden-exporter", "--group-memory-interval", "60"]).unwrap();
        assert_eq!(cli.group_memory_interval, 60);

        let cli = Cli::try_parse_from([
            "pidwarden-exporter",
            "snapshot",
            "--json",
            "--proc-root",
            "/host/proc",
            "--cgroup-root",
            "/host/sys/fs/cgroup",
            "--docker-host",
            "none",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Snapshot { json: true })
        ));
        assert_eq!(cli.roots(), Roots::new("/host/proc", "/host/sys/fs/cgroup"));
        assert_eq!(
            cli.runtimes().unwrap().configured(),
            [Kind::Podman, Kind::Cri]
        );
        let cli = Cli::try_parse_from([
            "pidwarden-exporter",
            "--docker-host",
            "none",
            "--podman-host",
            "none",
            "--cri-endpoint",
            "unix:///run/k/containerd.sock",
        ])
        .unwrap();
        let rts = cli.runtimes().unwrap();
        assert_eq!(rts.configured(), [Kind::Cri]);
        assert_eq!(
            rts.cri().unwrap().endpoints()[0].to_string(),
            "unix:///run/k/containerd.sock"
        );

        for bad in [
            &["pidwarden-exporter", "--listen", "nowhere"][..],
            &["pidwarden-exporter", "--command-max-chars", "0"],
            &["pidwarden-exporter", "--log-format", "xml"],
            &["pidwarden-exporter", "--collect-threads", "0"],
            &["pidwarden-exporter", "--collect-mode", "fast"],
            &["pidwarden-exporter", "--group-memory-interval", "0"],
            &["pidwarden-exporter", "--group-memory-interval", "5m"],
            &["pidwarden-exporter", "--group-memory-interval", "1.5"],
            &["pidwarden-exporter", "--group-memory-interval", "86401"],
            &["pidwarden-exporter", "--group-memory-interval", ""],
        ] {
            let e = Cli::try_parse_from(bad).unwrap_err().to_string();
            assert!(e.contains(bad[1]), "{e}");
            if bad[1] == "--group-memory-interval" {
                assert!(e.contains("whole seconds from 1 to 86400"), "{e}");
            }
        }
        let cli =
            Cli::try_parse_from(["pidwarden-exporter", "--docker-host", "docker.sock"]).unwrap();
        let e = format!("{:#}", cli.runtimes().unwrap_err());
        assert!(
            e.contains("--docker-host") && e.contains("docker.sock"),
            "{e}"
        );
        let cli =
            Cli::try_parse_from(["pidwarden-exporter", "--cri-endpoint", "crio.sock"]).unwrap();
        let e = format!("{:#}", cli.runtimes().unwrap_err());
        assert!(e.contains("--cri-endpoint"), "{e}");
    }
}
