//! `pidwarden-exporter snapshot`: one collection printed for an operator (a
//! table) or a program (JSON), then exit.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use pidwarden_shared::collect::Snapshot;
use pidwarden_shared::groups::surplus;
use serde::Serialize;

use crate::metrics::{display_name, short_id, top_groups, CommandGroup, RenderOptions};
use crate::runtime::ContainerMeta;
use pidwarden_shared::runtime::{Kind, Metadata, RuntimeError};

/// How long the snapshot waits for the runtime API before printing without names.
const RUNTIME_WAIT: Duration = Duration::from_secs(3);

/// One container as printed.
#[derive(Debug, Serialize)]
pub struct Row {
    id: String,
    name: String,
    image: String,
    runtime: &'static str,
    compose_project: String,
    compose_service: String,
    namespace: String,
    pod: String,
    container: String,
    tasks: Option<u64>,
    pids_limit: Option<u64>,
    pids_headroom: Option<u64>,
    pids_limit_hits: Option<u64>,
    pids_peak: Option<u64>,
    processes: u64,
    zombie_processes: u64,
    duplicate_processes: u64,
    memory_usage_bytes: Option<u64>,
    memory_working_set_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    oom_kills: Option<u64>,
    groups: Vec<CommandGroup>,
}

/// The whole printed snapshot.
#[derive(Debug, Serialize)]
pub struct Report {
    containers: Vec<Row>,
    errors: Vec<ErrorRow>,
    runtime_up: bool,
    runtimes: Vec<RuntimeUp>,
}

/// One configured runtime API and whether it answered.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeUp {
    runtime: &'static str,
    up: bool,
}

#[derive(Debug, Serialize)]
struct ErrorRow {
    stage: &'static str,
    message: String,
}

/// Builds the report from a collection and the metadata.
pub fn report(
    snap: &Snapshot,
    meta: &HashMap<String, ContainerMeta>,
    runtimes: Vec<RuntimeUp>,
    opts: RenderOptions,
) -> Report {
    let containers = snap
        .containers
        .iter()
        .map(|c| {
            let id = &c.container.id;
            let m = meta.get(id);
            let kube = m.and_then(|m| m.kube.clone()).unwrap_or_default();
            Row {
                id: id.clone(),
                name: display_name(id, m),
                image: m.map(|m| m.image.clone()).unwrap_or_default(),
                runtime: c.container.runtime.as_str(),
                compose_project: m
                    .and_then(|m| m.compose_project.clone())
                    .unwrap_or_default(),
                compose_service: m
                    .and_then(|m| m.compose_service.clone())
                    .unwrap_or_default(),
                namespace: kube.namespace,
                pod: kube.pod,
                container: kube.container,
                tasks: c.pids.map(|p| p.current),
                pids_limit: c.pids.and_then(|p| p.limit.value()),
                pids_headroom: c.pids.and_then(|p| p.headroom),
                pids_limit_hits: c.pids.map(|p| p.limit_hits),
                pids_peak: c.pids.and_then(|p| p.peak),
                processes: c.processes.live.len() as u64,
                zombie_processes: c.processes.zombies.len() as u64,
                duplicate_processes: surplus(&c.groups),
                memory_usage_bytes: c.memory.map(|m| m.usage),
                memory_working_set_bytes: c.memory.map(|m| m.working_set),
                memory_limit_bytes: c.memory.and_then(|m| m.limit.value()),
                oom_kills: c.memory.map(|m| m.oom_kills),
                groups: top_groups(c, opts.top_commands, opts.command_max_chars),
            }
        })
        .collect();
    Report {
        containers,
        errors: snap
            .errors
            .iter()
            .map(|(s, m)| ErrorRow {
                stage: s.as_str(),
                message: m.clone(),
            })
            .collect(),
        runtime_up: runtimes.iter().any(|r| r.up),
        runtimes,
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut f = v as f64;
    let mut i = 0;
    while f >= 1024.0 && i < UNITS.len() - 1 {
        f /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v}B")
    } else {
        format!("{f:.1}{}", UNITS[i])
    }
}

/// The report as a table for a terminal.
pub fn table(r: &Report) -> String {
    let header = [
        "NAME",
        "ID",
        "TASKS/LIMIT",
        "HEADROOM",
        "PROCS",
        "ZOMBIES",
        "DUPS",
        "MEM WS/LIMIT",
        "OOM",
        "FORKS REFUSED",
    ];
    let mut rows: Vec<[String; 10]> = vec![header.map(String::from)];
    for c in &r.containers {
        rows.push([
            c.name.clone(),
            short_id(&c.id).to_string(),
            format!(
                "{}/{}",
                opt(c.tasks),
                c.pids_limit.map_or_else(|| "max".into(), |v| v.to_string())
            ),
            opt(c.pids_headroom),
            c.processes.to_string(),
            c.zombie_processes.to_string(),
            c.duplicate_processes.to_string(),
            format!(
                "{}/{}",
                c.memory_working_set_bytes.map_or_else(|| "-".into(), bytes),
                c.memory_limit_bytes.map_or_else(|| "max".into(), bytes)
            ),
            opt(c.oom_kills),
            opt(c.pids_limit_hits),
        ]);
    }
    let mut widths = [0usize; 10];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let with_groups: Vec<&Row> = r
        .containers
        .iter()
        .filter(|c| !c.groups.is_empty())
        .collect();
    if !with_groups.is_empty() {
        out.push_str("\nTOP COMMAND GROUPS\n");
        for c in with_groups {
            let _ = writeln!(out, "{} ({})", c.name, short_id(&c.id));
            for g in &c.groups {
                let _ = writeln!(out, "  {:>5}  {}", g.processes, g.command);
            }
        }
    }
    if r.containers.is_empty() {
        out.push_str("(no containers found)\n");
    }
    if !r.runtime_up {
        out.push_str("\nnote: runtime API not reachable; names are short ids\n");
    }
    for e in &r.errors {
        let _ = writeln!(out, "error ({}): {}", e.stage, e.message);
    }
    out
}

/// Every container one runtime knows, waiting at most [`RUNTIME_WAIT`];
/// `None` for a runtime that is not configured, `Some((kind, None))` for one
/// that did not answer (logged unless `quiet`: probed on a default endpoint).
async fn fetch<R: Metadata>(
    rt: Option<std::sync::Arc<R>>,
    quiet: bool,
) -> Option<(Kind, Option<HashMap<String, ContainerMeta>>)> {
    let rt = rt?;
    let kind = rt.kind();
    let list = async {
        rt.connect().await?;
        rt.list().await
    };
    let got = match tokio::time::timeout(RUNTIME_WAIT, list).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            warn_down(kind, &e, quiet);
            None
        }
        Err(_) => {
            let e = RuntimeError::Unreachable(format!("no answer in {RUNTIME_WAIT:?}"));
            warn_down(kind, &e, quiet);
            None
        }
    };
    Some((kind, got))
}

fn warn_down(kind: Kind, e: &RuntimeError, quiet: bool) {
    if quiet {
        tracing::debug!(runtime = kind.as_str(), error = %e, "runtime API not present");
    } else {
        tracing::warn!(runtime = kind.as_str(), error = %e, "runtime API");
    }
}

/// Runs the subcommand.
pub async fn run(cli: &crate::Cli, json: bool) -> anyhow::Result<()> {
    let mut collector = cli.collector();
    let collect = tokio::task::spawn_blocking(move || collector.collect());
    let runtimes = cli.runtimes()?;
    let quiet = |k: Kind| runtimes.probed(k);
    let (d, p, c) = tokio::join!(
        fetch(runtimes.docker(), quiet(Kind::Docker)),
        fetch(runtimes.podman(), quiet(Kind::Podman)),
        fetch(runtimes.cri(), quiet(Kind::Cri))
    );
    let mut meta = HashMap::new();
    let mut ups = Vec::new();
    for (kind, got) in [d, p, c].into_iter().flatten() {
        if got.is_none() && runtimes.probed(kind) {
            // Not on this host: its default endpoint does not answer.
            continue;
        }
        ups.push(RuntimeUp {
            runtime: kind.as_str(),
            up: got.is_some(),
        });
        meta.extend(got.unwrap_or_default());
    }
    let snap = collect.await.context("collection failed")?;
    let r = report(&snap, &meta, ups, cli.render_options());
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", table(&r));
    }
    Ok(())
}
