//! The exporter on real cgroup v2 kernels: Debian's 6.1 (bookworm) and 6.12
//! (bookworm-backports), booted under QEMU by `scripts/vm/initramfs.sh` with
//! a busybox initramfs holding the built `pidwarden-exporter` and
//! `pidwarden-vm-helper`. The guest (`scripts/vm/guest-cgroup-v2.sh`) builds
//! the layouts real hosts make (Docker cgroupfs and systemd, Kubernetes
//! systemd and cgroupfs pods with pod-level limits, Podman with crun's
//! `container` sub-cgroup, a threaded child cgroup), runs workloads in them
//! (duplicate copies, zombies, forks refused at a container's and at a pod's
//! limit, a real OOM kill) and prints the kernel's own files beside the
//! exporter's `snapshot --json` and `/metrics` in both collection modes; the
//! comparison is made here.
//!
//! The kernels are fetched once into `$PIDWARDEN_VM_CACHE` (default
//! `/var/cache/pidwarden-vm`) by `scripts/vm/kernels.sh`. The binaries are
//! taken from `$PIDWARDEN_BIN_DIR` when set (scripts/test.sh points it at a
//! release build), else from the test's own build. `PIDWARDEN_SKIP_VM=1`
//! turns these tests into early returns; nothing else skips them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use pidwarden_tests::{series, workspace_bin, workspace_root};
use serde_json::Value;

const SKIP_ENV: &str = "PIDWARDEN_SKIP_VM";

/// One boot at a time: the machine has few cores, and a starved
/// software-emulated guest only gets slower.
static BOOT: Mutex<()> = Mutex::new(());

fn skip() -> bool {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        println!("skipped: {SKIP_ENV}=1");
        true
    } else {
        false
    }
}

/// One cgroup directory as the guest read it.
#[derive(Debug, Default, Clone)]
struct Dir {
    fields: HashMap<String, String>,
}

impl Dir {
    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
    fn num(&self, k: &str) -> Option<u64> {
        self.get(k).parse().ok()
    }
    fn list(&self, k: &str) -> Vec<u64> {
        self.get(k)
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect()
    }
}

/// One process as the guest read it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u64,
    ppid: u64,
    state: String,
    cgroup: String,
    cmd: String,
}

#[derive(Debug, Default)]
struct State {
    dirs: BTreeMap<String, Dir>,
    procs: Vec<Proc>,
}

/// What the guest printed, by section.
#[derive(Debug, Default)]
struct Guest {
    kernel: String,
    info: Vec<String>,
    /// name → cgroup path (relative to the cgroup root).
    containers: BTreeMap<String, String>,
    /// workload name → (forks that succeeded, forks refused).
    forks: BTreeMap<String, (u64, u64)>,
    workloads: Vec<String>,
    states: BTreeMap<String, State>,
    snapshots: BTreeMap<(String, String), Value>,
    metrics: BTreeMap<(String, String), String>,
    raw: String,
}

fn kv(tokens: &str) -> HashMap<String, String> {
    tokens
        .split(' ')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(out: &str) -> Guest {
    let mut g = Guest {
        raw: out.to_string(),
        ..Guest::default()
    };
    enum Sec {
        None,
        State(String),
        Snapshot(String, String, String),
        Metrics(String, String, String),
    }
    let mut sec = Sec::None;
    let flush = |sec: &mut Sec, g: &mut Guest| match std::mem::replace(sec, Sec::None) {
        Sec::Snapshot(label, mode, text) => {
            let v = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("snapshot {label} {mode} is not JSON ({e}): {text}"));
            g.snapshots.insert((label, mode), v);
        }
        Sec::Metrics(label, mode, text) => {
            g.metrics.insert((label, mode), text);
        }
        _ => {}
    };
    for line in out.lines() {
        if let Some(head) = line.strip_prefix("=== ") {
            flush(&mut sec, &mut g);
            let w: Vec<&str> = head.split(' ').collect();
            match w[0] {
                "info" if w.len() >= 2 => {
                    match w[1] {
                        "kernel" => g.kernel = w.get(2).unwrap_or(&"").to_string(),
                        "container" if w.len() >= 4 => {
                            g.containers.insert(w[2].into(), w[3].into());
                        }
                        _ => {}
                    }
                    g.info.push(w[1..].join(" "));
                }
                "workload" => {
                    g.workloads.push(w[1..].join(" "));
                    if w.get(2) == Some(&"forks") {
                        let f = kv(&w[3..].join(" "));
                        let n = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                        g.forks.insert(w[1].into(), (n("ok"), n("refused")));
                    }
                }
                "state" => {
                    g.states.insert(w[1].into(), State::default());
                    sec = Sec::State(w[1].into());
                }
                "snapshot" => sec = Sec::Snapshot(w[1].into(), w[2].into(), String::new()),
                "metrics" => sec = Sec::Metrics(w[1].into(), w[2].into(), String::new()),
                _ => {}
            }
            continue;
        }
        match &mut sec {
            Sec::State(label) => {
                let st = g.states.get_mut(label.as_str()).unwrap();
                if let Some(rest) = line.strip_prefix("D ") {
                    let d = Dir { fields: kv(rest) };
                    st.dirs.insert(d.get("rel").to_string(), d);
                } else if let Some(rest) = line.strip_prefix("P ") {
                    let (head, cmd) = rest.split_once(" cmd=").unwrap_or((rest, ""));
                    let f = kv(head);
                    let n = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                    st.procs.push(Proc {
                        pid: n("pid"),
                        ppid: n("ppid"),
                        state: f.get("state").cloned().unwrap_or_default(),
                        cgroup: f
                            .get("cg")
                            .map(|c| c.trim_start_matches('/').to_string())
                            .unwrap_or_default(),
                        cmd: cmd.trim_end().to_string(),
                    });
                }
            }
            Sec::Snapshot(_, _, text) | Sec::Metrics(_, _, text) => {
                text.push_str(line);
                text.push('\n');
            }
            Sec::None => {}
        }
    }
    flush(&mut sec, &mut g);
    g
}

/// Boots `kernel` with the guest script and the binaries; what it printed.
fn boot(kernel: &str) -> Guest {
    let _one = BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let exporter = workspace_bin("pidwarden-exporter");
    let helper = workspace_bin("pidwarden-vm-helper");
    let script: PathBuf = root.join("scripts/vm/guest-cgroup-v2.sh");
    let out = Command::new(root.join("scripts/vm/initramfs.sh"))
        .arg(kernel)
        .arg(&script)
        .arg(&exporter)
        .arg(&helper)
        .output()
        .expect("running scripts/vm/initramfs.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the {kernel} guest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let g = parse(&stdout);
    assert!(
        g.info.iter().any(|i| i == "done") || stdout.contains("=== done"),
        "the {kernel} guest did not finish:\n{stdout}"
    );
    assert!(
        g.kernel.starts_with(kernel),
        "asked for {kernel}, booted {:?}",
        g.kernel
    );
    let failures: Vec<&String> = g
        .info
        .iter()
        .filter(|i| i.contains("failed") || i.contains("timeout") || i.contains("not-ready"))
        .collect();
    assert!(failures.is_empty(), "guest trouble: {failures:?}\n{stdout}");
    g
}

/// The container id in a cgroup path: the 64-hex run in its last component.
fn id_of(rel: &str) -> String {
    let leaf = rel.rsplit('/').next().unwrap_or(rel);
    let b = leaf.as_bytes();
    (0..b.len().saturating_sub(63))
        .map(|i| &leaf[i..i + 64])
        .find(|s| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .unwrap_or_else(|| panic!("no id in {rel}"))
        .to_string()
}

/// What the kernel says about one container, from one state dump.
#[derive(Debug, Clone, PartialEq)]
struct Truth {
    tasks: u64,
    processes: u64,
    zombies: u64,
    duplicates: u64,
    pids_limit: Option<u64>,
    pids_headroom: Option<u64>,
    memory_limit: Option<u64>,
    oom_kills: u64,
    memory_usage: u64,
    working_set: u64,
}

fn in_subtree(rel: &str, c: &str) -> bool {
    rel == c || rel.starts_with(&format!("{c}/"))
}

/// The cgroup `rel` and its ancestors below the root.
fn levels(rel: &str) -> Vec<String> {
    let mut out = vec![rel.to_string()];
    let mut cur = rel;
    while let Some((parent, _)) = cur.rsplit_once('/') {
        out.push(parent.to_string());
        cur = parent;
    }
    out
}

fn truth(st: &State, c: &str) -> Truth {
    let dir = st.dirs.get(c).unwrap_or_else(|| panic!("no cgroup {c}"));
    // Threads from every cgroup.threads of the subtree (threaded children
    // included); the processes they belong to from /proc/<pid>/task.
    let tids: BTreeSet<u64> = st
        .dirs
        .iter()
        .filter(|(rel, _)| in_subtree(rel, c))
        .flat_map(|(_, d)| d.list("threads"))
        .collect();
    let live: Vec<&Proc> = st
        .procs
        .iter()
        .filter(|p| p.state != "Z" && tids.contains(&p.pid))
        .collect();
    // A process counts when one of its threads is in the subtree (its
    // leader's tid is its pid; the threads moved to a threaded child are
    // others).
    let zombies = st
        .procs
        .iter()
        .filter(|p| p.state == "Z" && in_subtree(&p.cgroup, c))
        .count() as u64;
    let mut groups: HashMap<(u64, &str), u64> = HashMap::new();
    for p in &live {
        if !p.cmd.is_empty() {
            *groups.entry((p.ppid, p.cmd.as_str())).or_default() += 1;
        }
    }
    let duplicates = groups.values().map(|n| n - 1).sum();
    let mut pids_limit: Option<u64> = None;
    let mut pids_headroom: Option<u64> = None;
    let mut memory_limit: Option<u64> = None;
    for l in levels(c) {
        let Some(d) = st.dirs.get(&l) else { continue };
        if let (Some(max), Some(cur)) = (d.num("pids.max"), d.num("pids.current")) {
            pids_limit = Some(pids_limit.map_or(max, |m| m.min(max)));
            let h = max.saturating_sub(cur);
            pids_headroom = Some(pids_headroom.map_or(h, |m| m.min(h)));
        }
        if let Some(max) = d.num("memory.max") {
            memory_limit = Some(memory_limit.map_or(max, |m| m.min(max)));
        }
    }
    let usage = dir.num("memory.current").unwrap_or(0);
    Truth {
        tasks: dir.num("pids.current").expect("pids.current"),
        processes: live.len() as u64,
        zombies,
        duplicates,
        pids_limit,
        pids_headroom,
        memory_limit,
        oom_kills: dir.num("oom_kill").unwrap_or(0),
        memory_usage: usage,
        working_set: usage.saturating_sub(dir.num("inactive_file").unwrap_or(0)),
    }
}

/// How the kernel counts refused forks (see `read_limit_hits` in shared).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counting {
    /// In the forking task's cgroup (6.1; 6.12 with pids_localevents).
    Forking,
    /// From the limit that refused upwards (6.12).
    Hierarchical,
}

/// Workloads whose forks were refused at their pod's limit (the others at
/// the container's own limit), with the pod's containers.
const AT_POD: [(&str, &[&str]); 2] = [
    ("k8s-sd-app", &["k8s-sd-app", "k8s-sd-pause"]),
    ("k8s-fs-one", &["k8s-fs-one", "k8s-fs-two"]),
];

/// The refused forks container `name` must report.
fn expected_hits(g: &Guest, name: &str, counting: Counting) -> u64 {
    let own = g.forks.get(name).map_or(0, |f| f.1);
    match counting {
        Counting::Forking => own,
        Counting::Hierarchical => {
            let at_pod = |w: &str| AT_POD.iter().any(|(n, _)| *n == w);
            let own_limit = if at_pod(name) { 0 } else { own };
            let pod: u64 = AT_POD
                .iter()
                .filter(|(_, members)| members.contains(&name))
                .map(|(w, _)| g.forks.get(*w).map_or(0, |f| f.1))
                .sum();
            own_limit + pod
        }
    }
}

fn field(row: &Value, k: &str) -> Option<u64> {
    row.get(k).and_then(Value::as_u64)
}

/// Within a little of the kernel's figures before and after (memory moves).
fn near(got: u64, a: u64, b: u64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    let slack = (hi / 10).max(1 << 20);
    got + slack >= lo && got <= hi + slack
}

/// Checks one snapshot (label, mode) against the states before and after.
fn check_snapshot(
    g: &Guest,
    label: &str,
    mode: &str,
    before: &str,
    after: &str,
    counting: Counting,
) {
    let snap = &g.snapshots[&(label.to_string(), mode.to_string())];
    let ctx = format!("{} snapshot {label} {mode}", g.kernel);
    let errors = snap["errors"].as_array().expect("errors");
    assert!(errors.is_empty(), "{ctx}: collection errors {errors:?}");
    let rows: HashMap<String, &Value> = snap["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or("").to_string(), r))
        .collect();
    let (sb, sa) = (&g.states[before], &g.states[after]);
    let want: BTreeSet<String> = g
        .containers
        .iter()
        .filter(|(_, rel)| sb.dirs.contains_key(*rel))
        .map(|(_, rel)| id_of(rel))
        .collect();
    let got: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(got, want, "{ctx}: containers found");
    for (name, rel) in &g.containers {
        let Some(row) = rows.get(&id_of(rel)) else {
            continue;
        };
        let (tb, ta) = (truth(sb, rel), truth(sa, rel));
        let c = format!("{ctx}: {name} ({rel})");
        let stable = |a: Option<u64>, b: Option<u64>, what: &str| {
            assert_eq!(a, b, "{c}: {what} moved between the kernel reads");
            a
        };
        let tasks = stable(Some(tb.tasks), Some(ta.tasks), "tasks");
        assert_eq!(field(row, "tasks"), tasks, "{c}: tasks = pids.current");
        let processes = stable(Some(tb.processes), Some(ta.processes), "processes");
        assert_eq!(field(row, "processes"), processes, "{c}: processes");
        let zombies = stable(Some(tb.zombies), Some(ta.zombies), "zombies");
        assert_eq!(field(row, "zombie_processes"), zombies, "{c}: zombies");
        let dups = stable(Some(tb.duplicates), Some(ta.duplicates), "duplicates");
        assert_eq!(field(row, "duplicate_processes"), dups, "{c}: duplicates");
        assert_eq!(field(row, "pids_limit"), tb.pids_limit, "{c}: pids limit");
        let headroom = stable(tb.pids_headroom, ta.pids_headroom, "headroom");
        assert_eq!(field(row, "pids_headroom"), headroom, "{c}: headroom");
        assert_eq!(
            field(row, "memory_limit_bytes"),
            tb.memory_limit,
            "{c}: memory limit"
        );
        let oom = stable(Some(tb.oom_kills), Some(ta.oom_kills), "oom kills");
        assert_eq!(field(row, "oom_kills"), oom, "{c}: oom kills");
        let usage = field(row, "memory_usage_bytes").expect("memory usage");
        assert!(
            near(usage, tb.memory_usage, ta.memory_usage),
            "{c}: memory usage {usage} vs memory.current {} / {}",
            tb.memory_usage,
            ta.memory_usage
        );
        let ws = field(row, "memory_working_set_bytes").expect("working set");
        assert!(
            near(ws, tb.working_set, ta.working_set),
            "{c}: working set {ws} vs {} / {}",
            tb.working_set,
            ta.working_set
        );
        // Debian's 6.1 and 6.12 both have pids.peak: never absent there.
        let peak = stable(
            sb.dirs[rel].num("pids.peak"),
            sa.dirs[rel].num("pids.peak"),
            "pids.peak",
        );
        assert!(peak.is_some(), "{c}: no pids.peak on {}", g.kernel);
        assert_eq!(field(row, "pids_peak"), peak, "{c}: pids_peak = pids.peak");
        assert_eq!(
            field(row, "pids_limit_hits"),
            Some(expected_hits(g, name, counting)),
            "{c}: refused forks ({counting:?} counting; workloads {:?})",
            g.forks
        );
    }
}

/// `metric{id}` per id in an exposition.
fn by_id(text: &str, metric: &str) -> BTreeMap<String, f64> {
    series(text, metric)
        .into_iter()
        .map(|s| (s.label("id").to_string(), s.value))
        .collect()
}

/// Metrics whose values do not move while the workloads sit still.
const STATIC_METRICS: [&str; 10] = [
    "pidwarden_container_tasks",
    "pidwarden_container_processes",
    "pidwarden_container_zombie_processes",
    "pidwarden_container_duplicate_processes",
    "pidwarden_container_pids_limit",
    "pidwarden_container_pids_headroom",
    "pidwarden_container_pids_limit_hits_total",
    "pidwarden_container_memory_limit_bytes",
    "pidwarden_container_oom_kills_total",
    "pidwarden_container_pids_peak",
];

fn check_scrapes(g: &Guest, counting: Counting) {
    let lifecycle = id_of(&g.containers["lifecycle"]);
    for label in ["first", "created", "removed"] {
        let inc = &g.metrics[&(label.to_string(), "incremental".to_string())];
        let full = &g.metrics[&(label.to_string(), "full".to_string())];
        for m in STATIC_METRICS {
            assert_eq!(
                by_id(inc, m),
                by_id(full, m),
                "{} scrape {label}: {m} differs between incremental and full",
                g.kernel
            );
        }
        for text in [inc, full] {
            let errors: Vec<_> = series(text, "pidwarden_scrape_errors_total")
                .into_iter()
                .filter(|s| s.value > 0.0)
                .collect();
            assert!(
                errors.is_empty(),
                "{} scrape {label}: errors {errors:?}",
                g.kernel
            );
            let tasks = by_id(text, "pidwarden_container_tasks");
            assert_eq!(
                tasks.contains_key(&lifecycle),
                label == "created",
                "{} scrape {label}: the container created and removed between scrapes",
                g.kernel
            );
            let hits = by_id(text, "pidwarden_container_pids_limit_hits_total");
            let peaks = by_id(text, "pidwarden_container_pids_peak");
            let after = &g.states["after"];
            for (name, rel) in &g.containers {
                let id = id_of(rel);
                if id == lifecycle {
                    continue;
                }
                let t = truth(after, rel);
                assert_eq!(
                    tasks.get(&id).copied(),
                    Some(t.tasks as f64),
                    "{} scrape {label}: {name} tasks",
                    g.kernel
                );
                assert_eq!(
                    hits.get(&id).copied(),
                    Some(expected_hits(g, name, counting) as f64),
                    "{} scrape {label}: {name} refused forks",
                    g.kernel
                );
                assert_eq!(
                    peaks.get(&id).copied(),
                    after.dirs[rel].num("pids.peak").map(|p| p as f64),
                    "{} scrape {label}: {name} pids.peak",
                    g.kernel
                );
            }
        }
    }
    let created = truth(&g.states["created"], &g.containers["lifecycle"]);
    let text = &g.metrics[&("created".to_string(), "incremental".to_string())];
    assert_eq!(
        by_id(text, "pidwarden_container_processes").get(&lifecycle),
        Some(&(created.processes as f64))
    );
    assert_eq!(
        by_id(text, "pidwarden_container_duplicate_processes").get(&lifecycle),
        Some(&(created.duplicates as f64))
    );
}

/// The workloads did what the layouts are for.
fn check_workloads(g: &Guest) {
    for w in [
        "dockersd",
        "k8s-sd-app",
        "k8s-fs-one",
        "k8s-fs-two",
        "podman",
    ] {
        let (ok, refused) = g.forks.get(w).copied().unwrap_or_default();
        assert!(
            ok > 0 && refused > 0,
            "{}: workload {w} made {ok} forks, {refused} refused: {:?}",
            g.kernel,
            g.workloads
        );
    }
    assert!(
        g.workloads
            .iter()
            .any(|w| w.starts_with("podman-hog exit=137")),
        "{}: the memory hog was not OOM-killed: {:?}",
        g.kernel,
        g.workloads
    );
    let st = &g.states["before"];
    let podman = truth(st, &g.containers["podman"]);
    assert!(podman.oom_kills >= 1, "{}: no OOM kill counted", g.kernel);
    let threaded = &g.containers["threaded"];
    let worker = &st.dirs[&format!("{threaded}/worker")];
    assert_eq!(worker.get("type"), "threaded");
    assert_eq!(
        worker.get("procs"),
        "ERR",
        "cgroup.procs of a threaded cgroup"
    );
    assert_eq!(worker.list("threads").len(), 2);
    let t = truth(st, threaded);
    assert_eq!(
        t.duplicates, 1,
        "{}: the threaded container's copies",
        g.kernel
    );
    let dockerfs = truth(st, &g.containers["dockerfs"]);
    assert_eq!(dockerfs.zombies, 3, "{}: zombies", g.kernel);
    // The burst came and went: the peak stays above what is left.
    let a = &st.dirs[&g.containers["dockerfs"]];
    let (peak, now) = (a.num("pids.peak"), a.num("pids.current"));
    assert!(
        peak.zip(now).is_some_and(|(p, n)| p > n),
        "{}: dockerfs pids.peak {peak:?}, pids.current {now:?}",
        g.kernel
    );
    assert_eq!(dockerfs.duplicates, 2, "{}: copies", g.kernel);
}

/// The kernel's own counting, as README states it.
fn check_kernel_counting(g: &Guest, counting: Counting) {
    let st = &g.states["before"];
    let pod = g.containers["k8s-sd-app"].rsplit_once('/').unwrap().0;
    let app = &st.dirs[&g.containers["k8s-sd-app"]];
    let refused = g.forks["k8s-sd-app"].1;
    match counting {
        Counting::Forking => {
            assert_eq!(app.num("pids.events"), Some(refused), "{}", g.kernel);
            assert_eq!(st.dirs[pod].num("pids.events"), Some(0), "{}", g.kernel);
            assert_eq!(app.get("pids.events.local"), "", "{}", g.kernel);
            // crun's sub-cgroup holds the count, not the scope.
            let podman = &g.containers["podman"];
            assert_eq!(st.dirs[podman].num("pids.events"), Some(0));
            assert_eq!(
                st.dirs[&format!("{podman}/container")].num("pids.events"),
                Some(g.forks["podman"].1)
            );
        }
        Counting::Hierarchical => {
            assert_eq!(app.num("pids.events"), Some(0), "{}", g.kernel);
            assert_eq!(st.dirs[pod].num("pids.events"), Some(refused));
            assert_eq!(st.dirs[pod].num("pids.events.local"), Some(refused));
        }
    }
}

#[test]
fn cgroup_v2_layouts_on_linux_6_1() {
    if skip() {
        return;
    }
    let g = boot("6.1");
    check_workloads(&g);
    check_kernel_counting(&g, Counting::Forking);
    for mode in ["incremental", "full"] {
        check_snapshot(&g, "steady", mode, "before", "after", Counting::Forking);
    }
    check_scrapes(&g, Counting::Forking);
    assert!(
        g.info.iter().any(|i| i == "localevents unsupported"),
        "6.1 has no pids_localevents: {:?}",
        g.info
    );
}

#[test]
fn cgroup_v2_layouts_on_linux_6_12_with_and_without_pids_localevents() {
    if skip() {
        return;
    }
    let g = boot("6.12");
    check_workloads(&g);
    check_kernel_counting(&g, Counting::Hierarchical);
    for mode in ["incremental", "full"] {
        check_snapshot(
            &g,
            "steady",
            mode,
            "before",
            "after",
            Counting::Hierarchical,
        );
    }
    check_scrapes(&g, Counting::Hierarchical);
    // Remounted with pids_localevents: the same refusals, counted where the
    // task forked.
    assert!(
        g.info
            .iter()
            .any(|i| i.starts_with("mount ") && i.contains("pids_localevents")),
        "remount with pids_localevents: {:?}\n{}",
        g.info,
        g.raw
    );
    for mode in ["incremental", "full"] {
        check_snapshot(
            &g,
            "localevents",
            mode,
            "localevents-before",
            "localevents-after",
            Counting::Forking,
        );
    }
}
