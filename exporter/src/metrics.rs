//! The metric contract: turns one collection (plus the runtime metadata and
//! the exporter's own counters) into metric families.
//!
//! Families are built into a small model first ([`Family`]) that
//! [`crate::encode`] writes in the format the scraper negotiated.

use std::collections::HashMap;

use pidwarden_shared::collect::{ContainerSnapshot, Snapshot, Stage};
use pidwarden_shared::groups::surplus;
use pidwarden_shared::redact::redact_command;

use crate::runtime::ContainerMeta;

/// Metric kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic count; exposed with the `_total` suffix.
    Counter,
}

/// Unit suffix of a family name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// `_bytes`
    Bytes,
    /// `_seconds`
    Seconds,
}

impl MetricUnit {
    #[cfg(test)]
    fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Bytes => "bytes",
            MetricUnit::Seconds => "seconds",
        }
    }
}

/// A sample value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Integer value (saturated at `i64::MAX` for gauges).
    Int(u64),
    /// Floating point value.
    Float(f64),
}

/// One sample: its label pairs and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label pairs in exposition order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: Value,
}

/// One metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Name without unit and without `_total`.
    pub base: &'static str,
    /// Unit suffix, if any.
    pub unit: Option<MetricUnit>,
    /// HELP text.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// Samples (may be empty: the family is still described).
    pub samples: Vec<Sample>,
}

impl Family {
    fn new(base: &'static str, unit: Option<MetricUnit>, kind: Kind, help: &'static str) -> Self {
        Family {
            base,
            unit,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// The family name as the classic text format writes it (unit and, for
    /// counters, `_total` included): the name users query.
    #[cfg(test)]
    pub fn full_name(&self) -> String {
        let mut n = self.base.to_string();
        if let Some(u) = self.unit {
            n.push('_');
            n.push_str(u.as_str());
        }
        if self.kind == Kind::Counter {
            n.push_str("_total");
        }
        n
    }

    fn push(&mut self, labels: Vec<(&'static str, String)>, value: Value) {
        self.samples.push(Sample { labels, value });
    }
}

/// Options for rendering.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Top command groups per container.
    pub top_commands: usize,
    /// Maximum characters of the `command` label.
    pub command_max_chars: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            top_commands: 5,
            command_max_chars: 120,
        }
    }
}

/// The exporter's own state that goes into the exposition.
#[derive(Debug, Clone, Default)]
pub struct SelfStats {
    /// Seconds the last collection took.
    pub scrape_duration_seconds: f64,
    /// Accumulated errors per stage, in the order they are exposed.
    pub errors: Vec<(Stage, u64)>,
    /// Each configured runtime API and whether it answered on its last refresh.
    pub runtime_up: Vec<(&'static str, bool)>,
}

/// The name a container is shown under: the runtime's name when known,
/// else the first 12 characters of the id.
pub fn display_name(id: &str, meta: Option<&ContainerMeta>) -> String {
    match meta {
        Some(m) if !m.name.is_empty() => m.name.clone(),
        _ => short_id(id).to_string(),
    }
}

/// The first 12 characters of an id (the whole id when shorter).
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// A command group as exposed: redacted, truncated command and its size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandGroup {
    /// Redacted, truncated command line.
    pub command: String,
    /// Processes in the largest sibling group with this command.
    pub processes: u64,
}

/// The top `k` command groups of a container (size ≥ 2), largest first.
/// Groups whose redacted commands coincide (the same command under another
/// parent, or commands equal after truncation) share one label value; the
/// largest of them is reported, so each label set appears once.
pub fn top_groups(c: &ContainerSnapshot, k: usize, max_chars: usize) -> Vec<CommandGroup> {
    let mut by_cmd: HashMap<String, u64> = HashMap::new();
    for g in c.groups.iter() {
        let size = g.pids.len() as u64;
        if size < 2 {
            continue;
        }
        let cmd = redact_command(&g.cmdline, max_chars);
        let e = by_cmd.entry(cmd).or_insert(0);
        *e = (*e).max(size);
    }
    let mut v: Vec<CommandGroup> = by_cmd
        .into_iter()
        .map(|(command, processes)| CommandGroup { command, processes })
        .collect();
    v.sort_by(|a, b| {
        b.processes
            .cmp(&a.processes)
            .then_with(|| a.command.cmp(&b.command))
    });
    v.truncate(k);
    v
}

/// How long a container's `command` label values are remembered by
/// [`CommandLabels`].
pub const COMMAND_LABEL_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// The `command` value of the groups of a container that has used up its
/// budget of distinct values ([`CommandLabels`]).
pub const OTHER_COMMAND: &str = "(other)";

/// Bounds what a container's processes can do to the `command` label over
/// time. A scrape shows at most K groups per container (`--top-commands`);
/// across scrapes, a container gets at most `4 × K` distinct `command`
/// values within any [`COMMAND_LABEL_WINDOW`]: a group whose command would
/// be a value beyond that is shown as [`OTHER_COMMAND`] (groups that then
/// coincide report the largest). A container cycling random command lines
/// thus makes at most `4 × K + 1` `command` series per hour, and the
/// exporter remembers at most `4 × K` values per container (forgotten with
/// the container).
#[derive(Debug)]
pub struct CommandLabels {
    limit: usize,
    window: std::time::Duration,
    /// Container id → value → when last shown.
    seen: HashMap<String, HashMap<String, std::time::Instant>>,
}

impl CommandLabels {
    /// The budget for `top_commands` groups per container.
    pub fn new(top_commands: usize) -> Self {
        CommandLabels {
            limit: top_commands.saturating_mul(4).max(1),
            window: COMMAND_LABEL_WINDOW,
            seen: HashMap::new(),
        }
    }

    /// Distinct values a container may use within the window.
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Applies the budget to one container's top groups at `now`.
    pub fn bound(
        &mut self,
        id: &str,
        groups: Vec<CommandGroup>,
        now: std::time::Instant,
    ) -> Vec<CommandGroup> {
        let seen = self.seen.entry(id.to_string()).or_default();
        let window = self.window;
        seen.retain(|_, at| now.saturating_duration_since(*at) < window);
        let mut out: Vec<CommandGroup> = Vec::with_capacity(groups.len());
        for mut g in groups {
            if let Some(at) = seen.get_mut(&g.command) {
                *at = now;
            } else if seen.len() < self.limit {
                seen.insert(g.command.clone(), now);
            } else {
                g.command = OTHER_COMMAND.to_string();
            }
            match out.iter_mut().find(|o| o.command == g.command) {
                Some(o) => o.processes = o.processes.max(g.processes),
                None => out.push(g),
            }
        }
        out
    }

    /// Forgets the containers not in `ids` (their series are gone).
    pub fn retain<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = ids.into_iter().collect();
        self.seen.retain(|id, _| keep.contains(id.as_str()));
    }

    /// Values remembered, over all containers.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.seen.values().map(HashMap::len).sum()
    }
}

/// Builds every family of the contract from one collection; the `command`
/// values bounded over time by `labels` when given (see [`CommandLabels`];
/// the server keeps one across scrapes).
pub fn build_families(
    snap: &Snapshot,
    meta: &HashMap<String, ContainerMeta>,
    stats: &SelfStats,
    opts: RenderOptions,
    mut labels: Option<&mut CommandLabels>,
) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    use MetricUnit::{Bytes, Seconds};

    let mut info = Family::new(
        "pidwarden_container_info",
        None,
        Gauge,
        "Container metadata to join on; absent labels are empty strings.",
    );
    let mut tasks = Family::new(
        "pidwarden_container_tasks",
        None,
        Gauge,
        "Tasks (threads) charged to the pids controller (pids.current); this is what the PID limit counts.",
    );
    let mut processes = Family::new(
        "pidwarden_container_processes",
        None,
        Gauge,
        "Processes (thread-group leaders) in the container's cgroup subtree.",
    );
    let mut zombies = Family::new(
        "pidwarden_container_zombie_processes",
        None,
        Gauge,
        "Processes in state Z (they still hold a PID until reaped).",
    );
    let mut pids_limit = Family::new(
        "pidwarden_container_pids_limit",
        None,
        Gauge,
        "Effective PID limit: the smallest pids.max of the cgroup and its ancestors; absent when unlimited.",
    );
    let mut headroom = Family::new(
        "pidwarden_container_pids_headroom",
        None,
        Gauge,
        "Smallest pids.max - pids.current over the cgroup and its ancestors; absent when unlimited.",
    );
    let mut hits = Family::new(
        "pidwarden_container_pids_limit_hits",
        None,
        Counter,
        "Forks refused at the PID limit (pids.events max).",
    );
    let mut mem_usage = Family::new(
        "pidwarden_container_memory_usage",
        Some(Bytes),
        Gauge,
        "Memory usage: memory.current (v2) / memory.usage_in_bytes (v1).",
    );
    let mut mem_ws = Family::new(
        "pidwarden_container_memory_working_set",
        Some(Bytes),
        Gauge,
        "Memory usage minus inactive file pages, floored at 0 (the number docker stats and the kubelet use).",
    );
    let mut mem_limit = Family::new(
        "pidwarden_container_memory_limit",
        Some(Bytes),
        Gauge,
        "Effective memory limit (smallest over the cgroup and its ancestors); absent when unlimited.",
    );
    let mut ooms = Family::new(
        "pidwarden_container_oom_kills",
        None,
        Counter,
        "OOM kills in the container's cgroup (memory.events oom_kill / memory.oom_control oom_kill).",
    );
    let mut dups = Family::new(
        "pidwarden_container_duplicate_processes",
        None,
        Gauge,
        "Surplus copies: over every group of sibling processes with identical command lines, the group size minus one, summed.",
    );
    let mut group_procs = Family::new(
        "pidwarden_container_process_group_processes",
        None,
        Gauge,
        "Size of the largest sibling groups of identical command lines, top K per container, groups of 2 or more; command is redacted and truncated.",
    );

    let now = std::time::Instant::now();
    if let Some(labels) = labels.as_deref_mut() {
        labels.retain(snap.containers.iter().map(|c| c.container.id.as_str()));
    }
    for c in &snap.containers {
        let id = c.container.id.clone();
        let m = meta.get(&id);
        let name = display_name(&id, m);
        let base = || vec![("id", id.clone()), ("name", name.clone())];

        let mut info_labels = base();
        info_labels.extend([
            ("image", m.map(|m| m.image.clone()).unwrap_or_default()),
            ("runtime", c.container.runtime.as_str().to_string()),
            (
                "compose_project",
                m.and_then(|m| m.compose_project.clone())
                    .unwrap_or_default(),
            ),
            (
                "compose_service",
                m.and_then(|m| m.compose_service.clone())
                    .unwrap_or_default(),
            ),
        ]);
        let kube = m.and_then(|m| m.kube.clone()).unwrap_or_default();
        info_labels.extend([
            ("namespace", kube.namespace),
            ("pod", kube.pod),
            ("container", kube.container),
        ]);
        info.push(info_labels, Value::Int(1));

        if let Some(p) = &c.pids {
            tasks.push(base(), Value::Int(p.current));
            if let Some(l) = p.limit.value() {
                pids_limit.push(base(), Value::Int(l));
            }
            if let Some(h) = p.headroom {
                headroom.push(base(), Value::Int(h));
            }
            hits.push(base(), Value::Int(p.limit_hits));
        }
        processes.push(base(), Value::Int(c.processes.live.len() as u64));
        zombies.push(base(), Value::Int(c.processes.zombies.len() as u64));
        if let Some(mem) = &c.memory {
            mem_usage.push(base(), Value::Int(mem.usage));
            mem_ws.push(base(), Value::Int(mem.working_set));
            if let Some(l) = mem.limit.value() {
                mem_limit.push(base(), Value::Int(l));
            }
            ooms.push(base(), Value::Int(mem.oom_kills));
        }
        dups.push(base(), Value::Int(surplus(&c.groups)));
        let mut top = top_groups(c, opts.top_commands, opts.command_max_chars);
        if let Some(labels) = labels.as_deref_mut() {
            top = labels.bound(&id, top, now);
        }
        for g in top {
            let mut l = base();
            l.push(("command", g.command));
            group_procs.push(l, Value::Int(g.processes));
        }
    }

    let mut containers = Family::new(
        "pidwarden_containers",
        None,
        Gauge,
        "Containers discovered.",
    );
    containers.push(vec![], Value::Int(snap.containers.len() as u64));
    let mut ambiguous = Family::new(
        "pidwarden_ambiguous_container_ids",
        None,
        Gauge,
        "Container ids refused because cgroups at two places name them (neither is published).",
    );
    ambiguous.push(vec![], Value::Int(snap.ambiguous.len() as u64));
    let mut duration = Family::new(
        "pidwarden_scrape_duration",
        Some(Seconds),
        Gauge,
        "Time the last collection took.",
    );
    duration.push(vec![], Value::Float(stats.scrape_duration_seconds));
    let mut errors = Family::new(
        "pidwarden_scrape_errors",
        None,
        Counter,
        "Collection errors by stage (discovery, cgroup, proc, runtime).",
    );
    for (stage, n) in &stats.errors {
        errors.push(vec![("stage", stage.as_str().to_string())], Value::Int(*n));
    }
    let mut up = Family::new(
        "pidwarden_runtime_up",
        None,
        Gauge,
        "1 when the runtime API answered on the last refresh.",
    );
    for (runtime, is_up) in &stats.runtime_up {
        up.push(
            vec![("runtime", runtime.to_string())],
            Value::Int(u64::from(*is_up)),
        );
    }
    let mut build = Family::new("pidwarden_build_info", None, Gauge, "Build information.");
    build.push(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "revision",
                pidwarden_shared::build_info::REVISION.to_string(),
            ),
        ],
        Value::Int(1),
    );

    vec![
        info,
        tasks,
        processes,
        zombies,
        pids_limit,
        headroom,
        hits,
        mem_usage,
        mem_ws,
        mem_limit,
        ooms,
        dups,
        group_procs,
        containers,
        ambiguous,
        duration,
        errors,
        up,
        build,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_openmetrics, encode_text};
    use crate::testutil::{meta, snapshot, ID_A, ID_B};
    use pidwarden_tests::promtool_check;

    fn stats() -> SelfStats {
        SelfStats {
            scrape_duration_seconds: 0.25,
            errors: vec![
                (Stage::Discovery, 0),
                (Stage::Cgroup, 0),
                (Stage::Proc, 1),
                (Stage::Runtime, 3),
            ],
            runtime_up: vec![("docker", true), ("cri", false)],
        }
    }

    fn text(opts: RenderOptions) -> String {
        encode_text(build_families(&snapshot(), &meta(), &stats(), opts, None)).unwrap()
    }

    fn a() -> String {
        format!("id=\"{ID_A}\",name=\"shop-web-1\"")
    }

    fn b() -> String {
        format!("id=\"{ID_B}\",name=\"bbbbbbbbbbbb\"")
    }

    fn assert_lines(out: &str, lines: &[String]) {
        for l in lines {
            assert!(
                out.lines().any(|x| x == l),
                "missing line\n  {l}\nin exposition:\n{out}"
            );
        }
    }

    #[test]
    fn text_exposition_has_the_contract_lines() {
        let out = text(RenderOptions::default());
        let (a, b) = (a(), b());
        assert_lines(
            &out,
            &[
                "# HELP pidwarden_container_info Container metadata to join on; absent labels are empty strings.".into(),
                "# TYPE pidwarden_container_info gauge".into(),
                format!("pidwarden_container_info{{{a},image=\"busybox:latest\",runtime=\"docker\",compose_project=\"shop\",compose_service=\"web\",namespace=\"\",pod=\"\",container=\"\"}} 1"),
                format!("pidwarden_container_info{{{b},image=\"\",runtime=\"docker\",compose_project=\"\",compose_service=\"\",namespace=\"\",pod=\"\",container=\"\"}} 1"),
                "# TYPE pidwarden_container_tasks gauge".into(),
                format!("pidwarden_container_tasks{{{a}}} 12"),
                format!("pidwarden_container_tasks{{{b}}} 1"),
                format!("pidwarden_container_processes{{{a}}} 11"),
                format!("pidwarden_container_processes{{{b}}} 1"),
                format!("pidwarden_container_zombie_processes{{{a}}} 1"),
                format!("pidwarden_container_zombie_processes{{{b}}} 0"),
                format!("pidwarden_container_pids_limit{{{a}}} 100"),
                format!("pidwarden_container_pids_headroom{{{a}}} 88"),
                "# TYPE pidwarden_container_pids_limit_hits_total counter".into(),
                format!("pidwarden_container_pids_limit_hits_total{{{a}}} 4"),
                format!("pidwarden_container_pids_limit_hits_total{{{b}}} 0"),
                "# TYPE pidwarden_container_memory_usage_bytes gauge".into(),
                format!("pidwarden_container_memory_usage_bytes{{{a}}} 10485760"),
                format!("pidwarden_container_memory_working_set_bytes{{{a}}} 8388608"),
                format!("pidwarden_container_memory_working_set_bytes{{{b}}} 0"),
                format!("pidwarden_container_memory_limit_bytes{{{a}}} 268435456"),
                "# TYPE pidwarden_container_oom_kills_total counter".into(),
                format!("pidwarden_container_oom_kills_total{{{a}}} 1"),
                format!("pidwarden_container_duplicate_processes{{{a}}} 8"),
                format!("pidwarden_container_duplicate_processes{{{b}}} 0"),
                format!("pidwarden_container_process_group_processes{{{a},command=\"sleep 1000\"}} 4"),
                format!("pidwarden_container_process_group_processes{{{a},command=\"worker --password=*** --port 80\"}} 3"),
                format!("pidwarden_container_process_group_processes{{{a},command=\"say \\\"hi\\\" C:\\\\dir\"}} 2"),
                "pidwarden_containers 2".into(),
                "# TYPE pidwarden_scrape_duration_seconds gauge".into(),
                "pidwarden_scrape_duration_seconds 0.25".into(),
                "# TYPE pidwarden_scrape_errors_total counter".into(),
                "pidwarden_scrape_errors_total{stage=\"discovery\"} 0".into(),
                "pidwarden_scrape_errors_total{stage=\"cgroup\"} 0".into(),
                "pidwarden_scrape_errors_total{stage=\"proc\"} 1".into(),
                "pidwarden_scrape_errors_total{stage=\"runtime\"} 3".into(),
                "pidwarden_runtime_up{runtime=\"docker\"} 1".into(),
                "pidwarden_runtime_up{runtime=\"cri\"} 0".into(),
                format!(
                    "pidwarden_build_info{{version=\"{}\",revision=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION"),
                    pidwarden_shared::build_info::REVISION
                ),
            ],
        );
        // Unlimited: the series are absent, not 0 or a sentinel.
        for absent in [
            "pidwarden_container_pids_limit{",
            "pidwarden_container_pids_headroom{",
            "pidwarden_container_memory_limit_bytes{",
        ] {
            assert!(
                !out.lines()
                    .any(|l| l.starts_with(absent) && l.contains(ID_B)),
                "{absent} must be absent for the unlimited container:\n{out}"
            );
        }
        // No group series for B, and the secret never appears.
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.lines().any(|l| l
            .starts_with("pidwarden_container_process_group_processes{")
            && l.contains(ID_B)));
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let fams = build_families(
            &snapshot(),
            &meta(),
            &stats(),
            RenderOptions::default(),
            None,
        );
        let out = encode_text(fams.clone()).unwrap();
        for f in &fams {
            let n = f.full_name();
            assert_eq!(out.matches(&format!("# HELP {n} ")).count(), 1, "{n}");
            assert_eq!(out.matches(&format!("# TYPE {n} ")).count(), 1, "{n}");
            assert!(!f.help.is_empty());
        }
        let names: Vec<String> = fams.iter().map(Family::full_name).collect();
        assert_eq!(
            names,
            [
                "pidwarden_container_info",
                "pidwarden_container_tasks",
                "pidwarden_container_processes",
                "pidwarden_container_zombie_processes",
                "pidwarden_container_pids_limit",
                "pidwarden_container_pids_headroom",
                "pidwarden_container_pids_limit_hits_total",
                "pidwarden_container_memory_usage_bytes",
                "pidwarden_container_memory_working_set_bytes",
                "pidwarden_container_memory_limit_bytes",
                "pidwarden_container_oom_kills_total",
                "pidwarden_container_duplicate_processes",
                "pidwarden_container_process_group_processes",
                "pidwarden_containers",
                "pidwarden_ambiguous_container_ids",
                "pidwarden_scrape_duration_seconds",
                "pidwarden_scrape_errors_total",
                "pidwarden_runtime_up",
                "pidwarden_build_info",
            ]
        );
    }

    #[test]
    fn top_k_keeps_the_largest_groups_and_truncates_commands() {
        let snap = snapshot();
        let c = &snap.containers[0];
        let all = top_groups(c, 5, 120);
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(
            all[0],
            CommandGroup {
                command: "sleep 1000".into(),
                processes: 4
            }
        );
        assert_eq!(all[1].command, "worker --password=*** --port 80");
        // The long command is cut to 120 characters, ellipsis included.
        let long = &all[2];
        assert_eq!(long.processes, 2);
        assert_eq!(long.command.chars().count(), 120, "{long:?}");
        assert!(long.command.starts_with("python3 -m server xxx"));
        assert!(long.command.ends_with('…'));

        let out = text(RenderOptions {
            top_commands: 2,
            command_max_chars: 10,
        });
        let groups: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("pidwarden_container_process_group_processes{"))
            .collect();
        assert_eq!(
            groups,
            [
                format!(
                    "pidwarden_container_process_group_processes{{{},command=\"sleep 1000\"}} 4",
                    a()
                ),
                format!(
                    "pidwarden_container_process_group_processes{{{},command=\"worker --…\"}} 3",
                    a()
                ),
            ]
        );
    }

    #[test]
    fn openmetrics_exposition_names_counters_with_total_once() {
        let out = encode_openmetrics(build_families(
            &snapshot(),
            &meta(),
            &stats(),
            RenderOptions::default(),
            None,
        ))
        .unwrap();
        let a = a();
        assert_lines(
            &out,
            &[
                "# HELP pidwarden_container_oom_kills OOM kills in the container's cgroup (memory.events oom_kill / memory.oom_control oom_kill).".into(),
                "# TYPE pidwarden_container_oom_kills counter".into(),
                format!("pidwarden_container_oom_kills_total{{{a}}} 1"),
                "# TYPE pidwarden_container_pids_limit_hits counter".into(),
                format!("pidwarden_container_pids_limit_hits_total{{{a}}} 4"),
                "# TYPE pidwarden_scrape_errors counter".into(),
                "pidwarden_scrape_errors_total{stage=\"runtime\"} 3".into(),
                "# TYPE pidwarden_container_memory_limit_bytes gauge".into(),
                "# UNIT pidwarden_container_memory_limit_bytes bytes".into(),
                format!("pidwarden_container_memory_limit_bytes{{{a}}} 268435456"),
                "# UNIT pidwarden_scrape_duration_seconds seconds".into(),
                "pidwarden_scrape_duration_seconds 0.25".into(),
                format!("pidwarden_container_process_group_processes{{{a},command=\"say \\\"hi\\\" C:\\\\dir\"}} 2"),
                "pidwarden_runtime_up{runtime=\"docker\"} 1".into(),
                "pidwarden_runtime_up{runtime=\"cri\"} 0".into(),
            ],
        );
        assert!(!out.contains("_total_total"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
        // Same samples as the classic text format (modulo HELP/TYPE/UNIT names).
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert_eq!(samples(&out), samples(&text(RenderOptions::default())));
    }

    #[test]
    fn text_exposition_passes_promtool() {
        promtool_check(&text(RenderOptions::default()));
        // An empty host is valid too.
        let empty = encode_text(build_families(
            &Snapshot::default(),
            &HashMap::new(),
            &SelfStats::default(),
            RenderOptions::default(),
            None,
        ))
        .unwrap();
        promtool_check(&empty);
    }

    /// A container cycling random command lines: each scrape shows at most
    /// K of its groups, and across scrapes it gets at most 4 × K distinct
    /// `command` values per window, the rest shown as `(other)`; what the
    /// exporter remembers is bounded and goes with the container.
    #[test]
    fn a_container_cycling_command_lines_gets_a_bounded_set_of_command_values() {
        use pidwarden_shared::groups::Group;
        use pidwarden_shared::procfs::Cmdline;
        use std::collections::HashSet;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        let opts = RenderOptions {
            top_commands: 3,
            command_max_chars: 120,
        };
        let mut labels = CommandLabels::new(opts.top_commands);
        assert_eq!(labels.limit(), 12);
        let base = snapshot();
        let mut seen: HashSet<String> = HashSet::new();
        let mut per_scrape_max = 0;
        let scrape = |n: u64, labels: &mut CommandLabels| -> Vec<(String, String)> {
            let mut snap = base.clone();
            // Five fresh groups of random-looking commands every scrape.
            let groups: Vec<Group> = (0..5)
                .map(|g| Group {
                    ppid: 1,
                    cmdline: Cmdline::from_args([
                        "worker".to_string(),
                        format!("{:x}", n * 1000 + g),
                    ]),
                    pids: (0..(2 + g as i32)).map(|p| 100 + p).collect(),
                })
                .collect();
            snap.containers[0].groups = Arc::new(groups);
            let fams = build_families(&snap, &meta(), &stats(), opts, Some(labels));
            let fam = fams
                .iter()
                .find(|f| f.base == "pidwarden_container_process_group_processes")
                .unwrap();
            fam.samples
                .iter()
                .map(|s| {
                    let get = |k: &str| s.labels.iter().find(|(n, _)| *n == k).unwrap().1.clone();
                    (get("id"), get("command"))
                })
                .collect()
        };
        for n in 0..200 {
            let shown = scrape(n, &mut labels);
            let mine: Vec<&String> = shown
                .iter()
                .filter(|(id, _)| id == ID_A)
                .map(|(_, c)| c)
                .collect();
            per_scrape_max = per_scrape_max.max(mine.len());
            seen.extend(mine.into_iter().cloned());
        }
        assert!(per_scrape_max <= 3, "{per_scrape_max}");
        assert!(seen.contains(OTHER_COMMAND), "{seen:?}");
        assert_eq!(seen.len(), 12 + 1, "{seen:?}");
        assert!(labels.remembered() <= 12 * base.containers.len());
        // A removed container is forgotten.
        let mut gone = base.clone();
        gone.containers.retain(|c| c.container.id != ID_A);
        build_families(&gone, &meta(), &stats(), opts, Some(&mut labels));
        assert!(!labels.seen.contains_key(ID_A));
        // After the window, new values are shown again.
        let mut l = CommandLabels::new(1);
        let t0 = Instant::now();
        let group = |c: &str| {
            vec![CommandGroup {
                command: c.into(),
                processes: 2,
            }]
        };
        for c in ["a", "b", "c", "d"] {
            assert_eq!(l.bound(ID_A, group(c), t0)[0].command, c);
        }
        assert_eq!(l.bound(ID_A, group("e"), t0)[0].command, OTHER_COMMAND);
        assert_eq!(l.bound(ID_A, group("a"), t0)[0].command, "a");
        let later = t0 + COMMAND_LABEL_WINDOW + Duration::from_secs(1);
        assert_eq!(l.bound(ID_A, group("e"), later)[0].command, "e");
        // Groups that fall into `(other)` together report the largest.
        let mut l = CommandLabels::new(1);
        l.bound(ID_A, group("a"), t0);
        l.bound(ID_A, group("b"), t0);
        l.bound(ID_A, group("c"), t0);
        l.bound(ID_A, group("d"), t0);
        let two = vec![
            CommandGroup {
                command: "x".into(),
                processes: 5,
            },
            CommandGroup {
                command: "y".into(),
                processes: 3,
            },
        ];
        assert_eq!(
            l.bound(ID_A, two, t0),
            vec![CommandGroup {
                command: OTHER_COMMAND.into(),
                processes: 5
            }]
        );
    }

    #[test]
    fn names_fall_back_to_the_short_id() {
        assert_eq!(display_name(ID_B, None), "bbbbbbbbbbbb");
        assert_eq!(short_id("abc"), "abc");
        let m = ContainerMeta::new("/x", "", HashMap::new());
        assert_eq!(display_name(ID_B, Some(&m)), "x");
    }
}
