//! The metric contract: turns one collection (plus the runtime metadata and
//! the exporter's own counters) into metric families.
//!
//! Families are built into a small model first ([`Family`]) that
//! [`crate::encode`] writes in the format the scraper negotiated.

use std::collections::HashMap;

use pidwarden_shared::collect::{ContainerSnapshot, Snapshot, Stage};
use pidwarden_shared::groups::{surplus, Group};
use pidwarden_shared::procfs::Cmdline;
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
    /// The unit's name, as the family name's suffix.
    pub fn as_str(self) -> &'static str {
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
    /// That largest group (its parent, command line and members, oldest
    /// first): what the group's other series (memory, oldest start) are
    /// read from. `None` for a value that is not a sibling group.
    #[serde(skip)]
    pub group: Option<Group>,
}

/// The top `k` command groups of a container (size ≥ 2), largest first.
/// Groups whose redacted commands coincide (the same command under another
/// parent, or commands equal after truncation) share one label value; the
/// largest of them is reported, so each label set appears once.
pub fn top_groups(c: &ContainerSnapshot, k: usize, max_chars: usize) -> Vec<CommandGroup> {
    // Groups come largest first (ties in a fixed order): the first group
    // met for a value is the one it reports.
    let mut by_cmd: HashMap<String, &Group> = HashMap::new();
    for g in c.groups.iter() {
        if g.pids.len() < 2 {
            continue;
        }
        let cmd = redact_command(&g.cmdline, max_chars);
        let e = by_cmd.entry(cmd).or_insert(g);
        if g.pids.len() > e.pids.len() {
            *e = g;
        }
    }
    let mut v: Vec<(String, &Group)> = by_cmd.into_iter().collect();
    v.sort_by(|a, b| {
        b.1.pids
            .len()
            .cmp(&a.1.pids.len())
            .then_with(|| a.0.cmp(&b.0))
    });
    v.truncate(k);
    // Only the groups shown are copied.
    v.into_iter()
        .map(|(command, g)| CommandGroup {
            command,
            processes: g.pids.len() as u64,
            group: Some(g.clone()),
        })
        .collect()
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
///
/// The `command` values of `pidwarden_container_zombie_parent_processes`
/// (the parents' commands) have a budget of their own, the same size.
#[derive(Debug)]
pub struct CommandLabels {
    limit: usize,
    window: std::time::Duration,
    /// Container id → value → when last shown.
    seen: HashMap<String, HashMap<String, std::time::Instant>>,
    /// The same for the zombie parents' commands.
    parents: HashMap<String, HashMap<String, std::time::Instant>>,
}

impl CommandLabels {
    /// The budget for `top_commands` groups per container.
    pub fn new(top_commands: usize) -> Self {
        CommandLabels {
            limit: top_commands.saturating_mul(4).max(1),
            window: COMMAND_LABEL_WINDOW,
            seen: HashMap::new(),
            parents: HashMap::new(),
        }
    }

    /// Distinct values a container may use within the window.
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Applies the budget to one container's top groups at `now`. Groups
    /// that coincide report the largest (and its group).
    pub fn bound(
        &mut self,
        id: &str,
        groups: Vec<CommandGroup>,
        now: std::time::Instant,
    ) -> Vec<CommandGroup> {
        bound_in(
            &mut self.seen,
            self.limit,
            self.window,
            id,
            groups,
            now,
            false,
        )
    }

    /// Applies the zombie parents' budget to one container's parents
    /// (`processes` = zombies held) at `now`. Parents that coincide add up.
    pub fn bound_parents(
        &mut self,
        id: &str,
        parents: Vec<CommandGroup>,
        now: std::time::Instant,
    ) -> Vec<CommandGroup> {
        bound_in(
            &mut self.parents,
            self.limit,
            self.window,
            id,
            parents,
            now,
            true,
        )
    }

    /// Forgets the containers not in `ids` (their series are gone).
    pub fn retain<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = ids.into_iter().collect();
        self.seen.retain(|id, _| keep.contains(id.as_str()));
        self.parents.retain(|id, _| keep.contains(id.as_str()));
    }

    /// Values remembered, over all containers.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.seen.values().map(HashMap::len).sum()
    }
}

/// [`CommandLabels::bound`] on one budget; coinciding values keep the
/// largest, or add up when `sum`.
fn bound_in(
    budget: &mut HashMap<String, HashMap<String, std::time::Instant>>,
    limit: usize,
    window: std::time::Duration,
    id: &str,
    groups: Vec<CommandGroup>,
    now: std::time::Instant,
    sum: bool,
) -> Vec<CommandGroup> {
    let seen = budget.entry(id.to_string()).or_default();
    seen.retain(|_, at| now.saturating_duration_since(*at) < window);
    let mut out: Vec<CommandGroup> = Vec::with_capacity(groups.len());
    for mut g in groups {
        if let Some(at) = seen.get_mut(&g.command) {
            *at = now;
        } else if seen.len() < limit {
            seen.insert(g.command.clone(), now);
        } else {
            g.command = OTHER_COMMAND.to_string();
        }
        match out.iter_mut().find(|o| o.command == g.command) {
            Some(o) if sum => o.processes += g.processes,
            Some(o) => {
                if g.processes > o.processes {
                    o.processes = g.processes;
                    o.group = g.group;
                }
            }
            None => out.push(g),
        }
    }
    out
}

/// The zombies of a container counted per parent command (redacted and
/// truncated like `command`; a parent without a command line shows as
/// `[comm]`), parents holding ≥ 1, the top `k`, most first. A zombie whose
/// parent is not among the container's live processes (it exited since)
/// is left out. Pure.
pub fn zombie_parents(c: &ContainerSnapshot, k: usize, max_chars: usize) -> Vec<CommandGroup> {
    let mut by_parent: HashMap<i32, u64> = HashMap::new();
    for z in &c.processes.zombies {
        *by_parent.entry(z.ppid).or_insert(0) += 1;
    }
    let live = &c.processes.live;
    let mut by_cmd: HashMap<String, u64> = HashMap::new();
    for (ppid, n) in by_parent {
        // `live` is sorted by pid.
        let Ok(i) = live.binary_search_by_key(&ppid, |p| p.pid) else {
            continue;
        };
        let parent = &live[i];
        let command = if parent.cmdline.is_empty() {
            let comm = Cmdline::from_args([format!("[{}]", parent.comm)]);
            redact_command(&comm, max_chars)
        } else {
            redact_command(&parent.cmdline, max_chars)
        };
        *by_cmd.entry(command).or_insert(0) += n;
    }
    let mut v: Vec<CommandGroup> = by_cmd
        .into_iter()
        .map(|(command, processes)| CommandGroup {
            command,
            processes,
            group: None,
        })
        .collect();
    v.sort_by(|a, b| {
        b.processes
            .cmp(&a.processes)
            .then_with(|| a.command.cmp(&b.command))
    });
    v.truncate(k);
    v
}

/// A group's resident memory as last read: what
/// `pidwarden_container_process_group_memory_bytes` shows. The exporter
/// refreshes it on its own schedule (see `crate::group_memory`).
pub trait GroupMemorySource {
    /// The bytes held by the copies of the group of container `id` under
    /// `ppid` with `cmdline`, each copy's subtree included; `None` when not
    /// read (yet).
    fn group_memory(&self, id: &str, ppid: i32, cmdline: &Cmdline) -> Option<u64>;
}

/// Builds every family of the contract from one collection; the `command`
/// values bounded over time by `labels` when given (see [`CommandLabels`];
/// the server keeps one across scrapes); the groups' memory as `memory`
/// last read it (the family is empty without one).
pub fn build_families(
    snap: &Snapshot,
    meta: &HashMap<String, ContainerMeta>,
    stats: &SelfStats,
    opts: RenderOptions,
    mut labels: Option<&mut CommandLabels>,
    memory: Option<&dyn GroupMemorySource>,
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
    let mut group_memory = Family::new(
        "pidwarden_container_process_group_memory",
        Some(Bytes),
        Gauge,
        "Resident memory (RSS) of the group's copies, each copy's whole subtree; same groups and command labels as pidwarden_container_process_group_processes; new copies read at the next scrape, copies already read again once per --group-memory-interval, not every scrape.",
    );
    let mut group_oldest = Family::new(
        "pidwarden_container_process_group_oldest_start_time",
        Some(Seconds),
        Gauge,
        "Unix time at which the group's oldest copy started; same groups and command labels as pidwarden_container_process_group_processes.",
    );
    let mut zombie_parent = Family::new(
        "pidwarden_container_zombie_parent_processes",
        None,
        Gauge,
        "Zombies held per parent command (redacted and truncated like command), top K parents per container, parents holding 1 or more.",
    );
    let mut pids_peak = Family::new(
        "pidwarden_container_pids_peak",
        None,
        Gauge,
        "The most tasks the container's cgroup ever had (pids.peak); absent where the kernel has no pids.peak.",
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
            if let Some(peak) = p.peak {
                pids_peak.push(base(), Value::Int(peak));
            }
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
            if let Some(grp) = &g.group {
                if let Some(bytes) =
                    memory.and_then(|m| m.group_memory(&id, grp.ppid, &grp.cmdline))
                {
                    group_memory.push(l.clone(), Value::Int(bytes));
                }
                let oldest = grp.pids.first().and_then(|pid| {
                    let live = &c.processes.live;
                    live.binary_search_by_key(pid, |p| p.pid)
                        .ok()
                        .map(|i| live[i].start_time)
                });
                if let (Some(ticks), Some(node)) = (oldest, &snap.node) {
                    group_oldest.push(l.clone(), Value::Float(node.start_time_unix(ticks)));
                }
            }
            group_procs.push(l, Value::Int(g.processes));
        }
        let mut parents = zombie_parents(c, opts.top_commands, opts.command_max_chars);
        if let Some(labels) = labels.as_deref_mut() {
            parents = labels.bound_parents(&id, parents, now);
        }
        for p in parents {
            let mut l = base();
            l.push(("command", p.command));
            zombie_parent.push(l, Value::Int(p.processes));
        }
    }

    let mut containers = Family::new(
        "pidwarden_containers",
        None,
        Gauge,
        "Containers discovered.",
    );
    containers.push(vec![], Value::Int(snap.containers.len() as u64));
    let mut node_tasks = Family::new(
        "pidwarden_node_tasks",
        None,
        Gauge,
        "Tasks (threads) on the node (the total of /proc/loadavg).",
    );
    let mut node_limit = Family::new(
        "pidwarden_node_pids_limit",
        None,
        Gauge,
        "The node's effective PID limit: the smaller of kernel.pid_max and kernel.threads-max.",
    );
    let mut node_headroom = Family::new(
        "pidwarden_node_pids_headroom",
        None,
        Gauge,
        "The node's PID limit minus its tasks (0 at or past the limit).",
    );
    if let Some(n) = &snap.node {
        node_tasks.push(vec![], Value::Int(n.tasks));
        node_limit.push(vec![], Value::Int(n.limit()));
        node_headroom.push(vec![], Value::Int(n.headroom()));
    }
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
        pids_peak,
        mem_usage,
        mem_ws,
        mem_limit,
        ooms,
        dups,
        group_procs,
        group_memory,
        group_oldest,
        zombie_parent,
        containers,
        node_tasks,
        node_limit,
        node_headroom,
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
        encode_text(build_families(
            &snapshot(),
            &meta(),
            &stats(),
            opts,
            None,
            None,
        ))
        .unwrap()
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
                "# TYPE pidwarden_container_pids_peak gauge".into(),
                format!("pidwarden_container_pids_peak{{{a}}} 40"),
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
                // The oldest copy's start: boot time + its start ticks / 100.
                "# TYPE pidwarden_container_process_group_oldest_start_time_seconds gauge".into(),
                format!("pidwarden_container_process_group_oldest_start_time_seconds{{{a},command=\"sleep 1000\"}} 1700000010.02"),
                format!("pidwarden_container_process_group_oldest_start_time_seconds{{{a},command=\"worker --password=*** --port 80\"}} 1700000010.06"),
                // Zombie 40's parent is pid 1.
                "# TYPE pidwarden_container_zombie_parent_processes gauge".into(),
                format!("pidwarden_container_zombie_parent_processes{{{a},command=\"sleep 1000\"}} 1"),
                "pidwarden_containers 2".into(),
                "pidwarden_node_tasks 300".into(),
                "pidwarden_node_pids_limit 62811".into(),
                "pidwarden_node_pids_headroom 62511".into(),
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
            // no pids.peak file: absent, not 0
            "pidwarden_container_pids_peak{",
            "pidwarden_container_zombie_parent_processes{",
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
                "pidwarden_container_pids_peak",
                "pidwarden_container_memory_usage_bytes",
                "pidwarden_container_memory_working_set_bytes",
                "pidwarden_container_memory_limit_bytes",
                "pidwarden_container_oom_kills_total",
                "pidwarden_container_duplicate_processes",
                "pidwarden_container_process_group_processes",
                "pidwarden_container_process_group_memory_bytes",
                "pidwarden_container_process_group_oldest_start_time_seconds",
                "pidwarden_container_zombie_parent_processes",
                "pidwarden_containers",
                "pidwarden_node_tasks",
                "pidwarden_node_pids_limit",
                "pidwarden_node_pids_headroom",
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
            (all[0].command.as_str(), all[0].processes),
            ("sleep 1000", 4)
        );
        // The group reported is the largest with that command.
        assert_eq!(all[0].group.as_ref().unwrap().pids, vec![2, 3, 4, 5]);
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
            let fams = build_families(&snap, &meta(), &stats(), opts, Some(labels), None);
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
        build_families(&gone, &meta(), &stats(), opts, Some(&mut labels), None);
        assert!(!labels.seen.contains_key(ID_A));
        // After the window, new values are shown again.
        let mut l = CommandLabels::new(1);
        let t0 = Instant::now();
        let group = |c: &str| {
            vec![CommandGroup {
                command: c.into(),
                processes: 2,
                group: None,
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
                group: None,
            },
            CommandGroup {
                command: "y".into(),
                processes: 3,
                group: None,
            },
        ];
        assert_eq!(
            l.bound(ID_A, two, t0),
            vec![CommandGroup {
                command: OTHER_COMMAND.into(),
                processes: 5,
                group: None,
            }]
        );
    }

    /// Memory as a fixed table: the `sleep 1000` group under pid 1 and the
    /// `worker` group hold known amounts; nothing else was read.
    struct FixedMemory;

    impl GroupMemorySource for FixedMemory {
        fn group_memory(&self, id: &str, ppid: i32, cmdline: &Cmdline) -> Option<u64> {
            match (id, ppid, cmdline.display().as_ref()) {
                (ID_A, 1, "sleep 1000") => Some(4096 * 10),
                (ID_A, 1, "worker --password=hunter2 --port 80") => Some(1 << 20),
                _ => None,
            }
        }
    }

    #[test]
    fn group_memory_and_oldest_start_follow_the_groups_shown() {
        let out = encode_text(build_families(
            &snapshot(),
            &meta(),
            &stats(),
            RenderOptions::default(),
            None,
            Some(&FixedMemory),
        ))
        .unwrap();
        let a = a();
        assert_lines(
            &out,
            &[
                format!("pidwarden_container_process_group_memory_bytes{{{a},command=\"sleep 1000\"}} 40960"),
                format!("pidwarden_container_process_group_memory_bytes{{{a},command=\"worker --password=*** --port 80\"}} 1048576"),
            ],
        );
        // Only groups that are shown, with the same labels.
        let labels_of = |prefix: &str| -> Vec<String> {
            out.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l[prefix.len()..l.rfind(' ').unwrap()].to_string())
                .collect()
        };
        let shown = labels_of("pidwarden_container_process_group_processes");
        for fam in [
            "pidwarden_container_process_group_memory_bytes",
            "pidwarden_container_process_group_oldest_start_time_seconds",
        ] {
            let got = labels_of(fam);
            assert!(!got.is_empty(), "{fam}");
            assert!(
                got.iter().all(|l| shown.contains(l)),
                "{fam}: {got:?} vs {shown:?}"
            );
        }
        // K = 1: one group, its three series.
        let one = encode_text(build_families(
            &snapshot(),
            &meta(),
            &stats(),
            RenderOptions {
                top_commands: 1,
                command_max_chars: 120,
            },
            None,
            Some(&FixedMemory),
        ))
        .unwrap();
        for fam in [
            "pidwarden_container_process_group_processes{",
            "pidwarden_container_process_group_memory_bytes{",
            "pidwarden_container_process_group_oldest_start_time_seconds{",
        ] {
            assert_eq!(
                one.lines().filter(|l| l.starts_with(fam)).count(),
                1,
                "{fam}\n{one}"
            );
        }
    }

    #[test]
    fn zombie_parents_count_per_parent_command_top_k() {
        use pidwarden_shared::procfs::{ProcState, Process};
        use std::sync::Arc;
        let mut snap = snapshot();
        let zombie = |pid: i32, ppid: i32| Process {
            pid,
            ppid,
            start_time: 5000,
            state: ProcState::Zombie,
            comm: Arc::from("sh"),
            cmdline: Cmdline::default(),
            threads: 1,
            cpu_ticks: 0,
            child_cpu_ticks: 0,
        };
        let mut procs = (*snap.containers[0].processes).clone();
        // A parent holding a secret in its command line, two parents with
        // the same command (they add up), a parent without a command line,
        // and a zombie whose parent is gone.
        procs.live[5].cmdline = Cmdline::from_args(["worker", "--password=hunter2"]);
        procs.live[6].cmdline = Cmdline::from_args(["reaper"]);
        procs.live[7].cmdline = Cmdline::from_args(["reaper"]);
        procs.live[8].cmdline = Cmdline::default();
        procs.zombies = vec![
            zombie(50, 6),
            zombie(51, 6),
            zombie(52, 6),
            zombie(53, 7),
            zombie(54, 8),
            zombie(55, 9),
            zombie(56, 999),
        ];
        snap.containers[0].processes = procs.into();
        let c = &snap.containers[0];
        let got: Vec<(String, u64)> = zombie_parents(c, 5, 120)
            .into_iter()
            .map(|g| (g.command, g.processes))
            .collect();
        assert_eq!(
            got,
            vec![
                ("worker --password=***".to_string(), 3),
                ("reaper".to_string(), 2),
                ("[sleep]".to_string(), 1),
            ]
        );
        assert_eq!(zombie_parents(c, 1, 120).len(), 1);
        // No zombies: no parents (only parents holding 1 or more).
        assert!(zombie_parents(&snapshot().containers[1], 5, 120).is_empty());
        let out = encode_text(build_families(
            &snap,
            &meta(),
            &stats(),
            RenderOptions::default(),
            None,
            None,
        ))
        .unwrap();
        assert!(!out.contains("hunter2"));
        assert!(out.contains(&format!(
            "pidwarden_container_zombie_parent_processes{{{},command=\"reaper\"}} 2",
            a()
        )));
    }

    /// Parents cycling commands get the same bound as groups: at most
    /// 4 × K values per window, the rest adding up under `(other)`.
    #[test]
    fn zombie_parent_commands_are_bounded_over_time() {
        let mut l = CommandLabels::new(1);
        let t0 = std::time::Instant::now();
        let one = |c: &str, n: u64| CommandGroup {
            command: c.into(),
            processes: n,
            group: None,
        };
        for c in ["a", "b", "c", "d"] {
            assert_eq!(l.bound_parents(ID_A, vec![one(c, 1)], t0)[0].command, c);
        }
        assert_eq!(
            l.bound_parents(ID_A, vec![one("e", 2), one("f", 3)], t0),
            vec![one(OTHER_COMMAND, 5)]
        );
        // The groups' budget is apart: still empty.
        assert_eq!(l.bound(ID_A, vec![one("x", 2)], t0)[0].command, "x");
    }

    #[test]
    fn names_fall_back_to_the_short_id() {
        assert_eq!(display_name(ID_B, None), "bbbbbbbbbbbb");
        assert_eq!(short_id("abc"), "abc");
        let m = ContainerMeta::new("/x", "", HashMap::new());
        assert_eq!(display_name(ID_B, Some(&m)), "x");
    }
}
