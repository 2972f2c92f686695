//! The exporter binary against real Docker containers on this host: every
//! figure it serves is compared with what the kernel reports at that moment.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pidwarden_tests::{
    free_port, http_get, poll_until, require_docker, run_json, run_ok, wait_http, Daemon,
    TestContainer,
};

const BIN: &str = env!("CARGO_BIN_EXE_pidwarden-exporter");
const WAIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(200);

/// A running exporter on a free port, stopped (SIGTERM) on drop.
struct Exporter {
    daemon: Daemon,
    url: String,
}

impl Exporter {
    fn start(extra: &[&str]) -> Exporter {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let daemon = Daemon::spawn(Command::new(BIN).args(["--listen", &listen]).args(extra));
        let url = format!("http://{listen}");
        if let Err(e) = wait_http(&format!("{url}/healthz"), WAIT) {
            panic!("exporter did not come up: {e}\n{}", daemon.log());
        }
        Exporter { daemon, url }
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&format!("{}/metrics", self.url));
        assert_eq!(status, 200, "{body}\n{}", self.daemon.log());
        body
    }
}

/// The value of the first sample of `name` whose labels include `id="<id>"`
/// (and every `extra` label), as text.
fn sample(body: &str, name: &str, id: &str, extra: &[(&str, &str)]) -> Option<String> {
    let id_label = format!("id=\"{id}\"");
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.rsplit_once("} ")?;
        let ok = labels.split(',').any(|x| x == id_label)
            && extra
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
        ok.then(|| value.to_string())
    })
}

fn unlabelled(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

fn read_trim(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn pids_events_max(dir: &Path) -> u64 {
    read_trim(&dir.join("pids.events"))
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pids.events has a max line")
}

/// What the kernel says about a container's processes right now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelView {
    tasks: u64,
    processes: usize,
    zombies: usize,
    /// Surplus copies: Σ (size − 1) over the sibling groups (same parent,
    /// same non-empty argument list) of 2 or more.
    surplus: u64,
    /// Those groups as labelled: command (arguments joined by spaces) →
    /// size of the largest group showing that command.
    groups: HashMap<String, usize>,
}

fn proc_stat(pid: &str) -> Option<(char, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` may hold spaces and `)`: the fields start after the last `) `.
    let (_, after) = stat.rsplit_once(") ")?;
    let mut f = after.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.to_string();
    Some((state, ppid))
}

fn kernel_view(pids_dir: &Path) -> KernelView {
    let tasks: u64 = read_trim(&pids_dir.join("pids.current")).parse().unwrap();
    let procs: Vec<String> = read_trim(&pids_dir.join("cgroup.procs"))
        .lines()
        .map(str::to_string)
        .collect();
    let mut zombies = 0;
    // Keyed by the arguments as the kernel keeps them (NUL-separated).
    let mut siblings: HashMap<(String, String), usize> = HashMap::new();
    for pid in &procs {
        if let Some((_, ppid)) = proc_stat(pid) {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv = String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .to_string();
            if !argv.is_empty() {
                *siblings.entry((ppid, argv)).or_default() += 1;
            }
        }
        // Zombie children are no longer in cgroup.procs.
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for kid in kids.split_whitespace() {
                if matches!(proc_stat(kid), Some(('Z', _))) {
                    zombies += 1;
                }
            }
        }
    }
    let mut groups: HashMap<String, usize> = HashMap::new();
    let mut surplus = 0;
    for ((_, argv), n) in siblings.into_iter().filter(|(_, n)| *n >= 2) {
        surplus += n as u64 - 1;
        let largest = groups.entry(argv.replace('\0', " ")).or_default();
        *largest = (*largest).max(n);
    }
    KernelView {
        tasks,
        processes: procs.len(),
        zombies,
        surplus,
        groups,
    }
}

/// The served figures for one container, in the kernel view's shape.
fn served_view(body: &str, id: &str) -> Option<KernelView> {
    let n = |name: &str| sample(body, name, id, &[]).and_then(|v| v.parse::<u64>().ok());
    let mut groups = HashMap::new();
    let id_label = format!("id=\"{id}\"");
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("pidwarden_container_process_group_processes{") else {
            continue;
        };
        if !rest.contains(&id_label) {
            continue;
        }
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let cmd = labels
            .split_once("command=\"")
            .unwrap()
            .1
            .trim_end_matches('"');
        groups.insert(cmd.to_string(), value.parse().unwrap());
    }
    Some(KernelView {
        tasks: n("pidwarden_container_tasks")?,
        processes: n("pidwarden_container_processes")? as usize,
        zombies: n("pidwarden_container_zombie_processes")? as usize,
        surplus: n("pidwarden_container_duplicate_processes")?,
        groups,
    })
}

fn pids_dir(c: &TestContainer) -> PathBuf {
    c.cgroup_dir("pids")
}

/// Polls until the kernel view is stable across a scrape and the scrape
/// matches it; returns (kernel view, exposition).
fn settled(
    ex: &Exporter,
    c: &TestContainer,
    want: impl Fn(&KernelView) -> bool,
) -> (KernelView, String) {
    let dir = pids_dir(c);
    let mut last = None;
    let got = poll_until(WAIT, STEP, || {
        let before = kernel_view(&dir);
        let body = ex.metrics();
        let after = kernel_view(&dir);
        let served = served_view(&body, &c.id);
        let ok = before == after && want(&before) && served.as_ref() == Some(&before);
        last = Some((before.clone(), served, body.clone()));
        ok.then_some((before, body))
    });
    got.unwrap_or_else(|| {
        let (k, s, body) = last.unwrap();
        panic!("served figures never matched the kernel\nkernel: {k:?}\nserved: {s:?}\n{body}\n--- log ---\n{}", ex.daemon.log())
    })
}

#[test]
fn serves_what_the_kernel_reports_for_real_containers() {
    if !require_docker() {
        return;
    }
    // Started before the exporter: named from the initial list.
    let dup = TestContainer::run(
        &["--pids-limit", "40", "--memory", "64m"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do sleep 1000 & done; sleep 0.1 & exec sleep 1000",
        ],
    );
    let ex = Exporter::start(&[]);
    // Started after: named from the events stream.
    let plain = TestContainer::run(&["--memory", "32m"], &["sleep", "1000"]);

    // Three sleeps share a parent (the init, which exec'd `sleep 1000` and
    // never reaps): one group of 3, surplus 2, and the short sleep a zombie.
    let (k, body) = settled(&ex, &dup, |k| k.zombies == 1 && k.processes == 4);
    assert_eq!(
        k.groups.values().copied().collect::<Vec<_>>(),
        vec![3],
        "{k:?}"
    );
    let dir = pids_dir(&dup);
    let id = dup.id.as_str();
    let v = |name: &str| sample(&body, name, id, &[]);
    assert_eq!(
        v("pidwarden_container_duplicate_processes").as_deref(),
        Some("2")
    );
    assert_eq!(
        v("pidwarden_container_pids_limit"),
        Some(read_trim(&dir.join("pids.max")))
    );
    assert_eq!(v("pidwarden_container_pids_limit").as_deref(), Some("40"));
    let headroom = 40 - k.tasks;
    assert_eq!(
        v("pidwarden_container_pids_headroom"),
        Some(headroom.to_string())
    );
    assert_eq!(
        v("pidwarden_container_pids_limit_hits_total"),
        Some(pids_events_max(&dir).to_string())
    );
    let mem_dir = dup.cgroup_dir("memory");
    assert_eq!(
        v("pidwarden_container_memory_limit_bytes"),
        Some(read_trim(&mem_dir.join("memory.limit_in_bytes")))
    );
    assert_eq!(
        v("pidwarden_container_memory_limit_bytes").as_deref(),
        Some("67108864")
    );
    let usage: u64 = v("pidwarden_container_memory_usage_bytes")
        .unwrap()
        .parse()
        .unwrap();
    let ws: u64 = v("pidwarden_container_memory_working_set_bytes")
        .unwrap()
        .parse()
        .unwrap();
    assert!(usage > 0 && ws <= usage, "usage {usage} ws {ws}");
    assert_eq!(
        v("pidwarden_container_oom_kills_total").as_deref(),
        Some("0"),
        "{body}"
    );

    // Names and images: from the list (dup) and from the events (plain).
    let image = dup.inspect("{{.Config.Image}}");
    let info = |c: &TestContainer| {
        sample(
            &ex.metrics(),
            "pidwarden_container_info",
            &c.id,
            &[("name", &c.name)],
        )
    };
    assert_eq!(
        sample(
            &body,
            "pidwarden_container_info",
            id,
            &[
                ("name", &dup.name),
                ("image", &image),
                ("runtime", "docker")
            ]
        )
        .as_deref(),
        Some("1"),
        "{body}"
    );
    assert!(
        poll_until(WAIT, STEP, || info(&plain)).is_some(),
        "the container started after the exporter never got its name\n{}",
        ex.metrics()
    );
    // The live exposition, with real containers in it, passes Prometheus's
    // own parser.
    pidwarden_tests::promtool_check(&ex.metrics());
    // Unlimited PIDs: the limit and headroom series are absent.
    let (_, body) = settled(&ex, &plain, |k| k.processes == 1);
    assert_eq!(
        sample(&body, "pidwarden_container_pids_limit", &plain.id, &[]),
        None
    );
    assert_eq!(
        sample(&body, "pidwarden_container_pids_headroom", &plain.id, &[]),
        None
    );
    assert_eq!(
        unlabelled(&body, "pidwarden_runtime_up{runtime=\"docker\"}").as_deref(),
        Some("1")
    );

    // Removed: its series go away.
    let gone = plain.id.clone();
    drop(plain);
    assert!(
        poll_until(WAIT, STEP, || (!ex.metrics().contains(&gone)).then_some(())).is_some(),
        "series of a removed container are still served"
    );

    // SIGTERM: graceful shutdown, exit status 0.
    let mut ex = ex;
    let status = ex.daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", ex.daemon.log());
}

#[test]
fn arguments_are_compared_apart_not_as_joined_text() {
    if !require_docker() {
        return;
    }
    // Three copies of `sh /w.sh "a b"` (three arguments) and three of
    // `sh /w.sh a b` (four), each waiting on its `sleep`: two groups of
    // three that both show as `sh /w.sh a b`, so 4 surplus copies, not 5.
    let c = TestContainer::run_lookalike_copies();
    let ex = Exporter::start(&[]);
    let (k, body) = settled(&ex, &c, |k| k.processes == 1 + 6 + 6);
    assert_eq!(k.surplus, 4, "{k:?}");
    assert_eq!(
        sample(&body, "pidwarden_container_duplicate_processes", &c.id, &[]).as_deref(),
        Some("4")
    );
    assert_eq!(
        sample(
            &body,
            "pidwarden_container_process_group_processes",
            &c.id,
            &[("command", "sh /w.sh a b")]
        )
        .as_deref(),
        Some("3"),
        "one label for both groups, the size of the largest"
    );
}

#[test]
fn counts_forks_refused_at_the_pid_limit() {
    if !require_docker() {
        return;
    }
    let ex = Exporter::start(&[]);
    let c = TestContainer::run(&["--pids-limit", "5"], &["sleep", "1000"]);
    let dir = pids_dir(&c);
    assert_eq!(pids_events_max(&dir), 0);
    // The exec'd shell starts sleeps until the fifth task, then its forks
    // are refused (the shell gives up; the sleeps stay, reparented to init).
    let out = c.exec(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; wait",
    ]);
    let refused = pids_events_max(&dir);
    assert!(
        refused > 0,
        "no fork was refused (exec said {:?}); pids.current {}",
        String::from_utf8_lossy(&out.stderr),
        read_trim(&dir.join("pids.current"))
    );
    let got = poll_until(WAIT, STEP, || {
        let before = pids_events_max(&dir);
        let tasks = read_trim(&dir.join("pids.current"));
        let body = ex.metrics();
        let after = pids_events_max(&dir);
        let hits = sample(
            &body,
            "pidwarden_container_pids_limit_hits_total",
            &c.id,
            &[],
        )?;
        let served_tasks = sample(&body, "pidwarden_container_tasks", &c.id, &[])?;
        let headroom = sample(&body, "pidwarden_container_pids_headroom", &c.id, &[])?;
        (before == after
            && hits == after.to_string()
            && served_tasks == tasks
            && headroom == (5 - tasks.parse::<i64>().unwrap()).to_string())
        .then_some((hits, body))
    });
    let (hits, _) = got.unwrap_or_else(|| {
        panic!(
            "pids_limit_hits_total never matched pids.events max {}\n{}",
            pids_events_max(&dir),
            ex.metrics()
        )
    });
    assert!(hits.parse::<u64>().unwrap() >= refused);
}

#[test]
fn serves_cgroup_metrics_without_the_runtime_api() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(&["--pids-limit", "30"], &["sleep", "1000"]);
    let ex = Exporter::start(&["--docker-host", "unix:///nonexistent.sock"]);
    let short = &c.id[..12];
    let dir = pids_dir(&c);
    let got = poll_until(WAIT, STEP, || {
        let tasks = read_trim(&dir.join("pids.current"));
        let body = ex.metrics();
        (sample(
            &body,
            "pidwarden_container_tasks",
            &c.id,
            &[("name", short)],
        ) == Some(tasks))
        .then_some(body)
    });
    let body = got.unwrap_or_else(|| panic!("tasks never matched pids.current\n{}", ex.metrics()));
    assert_eq!(
        sample(
            &body,
            "pidwarden_container_pids_limit",
            &c.id,
            &[("name", short)]
        )
        .as_deref(),
        Some("30")
    );
    assert_eq!(
        sample(
            &body,
            "pidwarden_container_info",
            &c.id,
            &[("name", short), ("image", ""), ("runtime", "docker")]
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        unlabelled(&body, "pidwarden_runtime_up{runtime=\"docker\"}").as_deref(),
        Some("0")
    );
    // The failed connection attempts are counted as runtime errors.
    let errors = poll_until(WAIT, STEP, || {
        unlabelled(
            &ex.metrics(),
            "pidwarden_scrape_errors_total{stage=\"runtime\"}",
        )
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n >= 1)
    });
    assert!(errors.is_some(), "{}", ex.metrics());
}

#[test]
fn snapshot_prints_real_containers() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(&["--pids-limit", "25"], &["sleep", "1000"]);
    let v = run_json(Command::new(BIN).args(["snapshot", "--json"]));
    let row = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == c.id.as_str())
        .unwrap_or_else(|| panic!("container missing from {v}"));
    assert_eq!(row["name"], c.name.as_str());
    assert_eq!(row["pids_limit"], 25);
    assert_eq!(row["processes"], 1);
    assert_eq!(v["runtime_up"], true);

    let out = run_ok(Command::new(BIN).arg("snapshot"));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with(&c.name))
        .unwrap_or_else(|| panic!("no row for {} in\n{table}", c.name));
    assert!(line.contains(&c.id[..12]) && line.contains("/25"), "{line}");
}

/// Runs the exporter with `args`, which it must refuse: it has to exit
/// unsuccessfully within 10 s. One that starts serving instead is stopped
/// and the test fails rather than hangs. Returns what it printed.
fn refused(args: &[&str]) -> String {
    let mut d = Daemon::spawn(Command::new(BIN).args(args));
    let status = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        d.try_wait()
    });
    let log = d.log();
    let status = status
        .unwrap_or_else(|| panic!("exporter {args:?} kept running instead of refusing\n{log}"));
    assert!(!status.success(), "exporter {args:?} was accepted\n{log}");
    log
}

#[test]
fn bad_flags_are_clear_errors() {
    let err = refused(&["--top-commands", "many"]);
    assert!(err.contains("--top-commands"), "{err}");
    for bad in ["0", "10m"] {
        let err = refused(&["--group-memory-interval", bad]);
        assert!(
            err.contains("--group-memory-interval") && err.contains("from 1 to 86400"),
            "{err}"
        );
    }
    let err = refused(&["--docker-host", "ftp://x", "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains("--docker-host") && err.contains("ftp://x"),
        "{err}"
    );
}

/// A process's arguments joined by spaces, its parent and its start time
/// in ticks, as the kernel shows them; `None` when it vanished.
fn proc_info(pid: u32) -> Option<(String, u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(") ")?;
    let f: Vec<&str> = after.split(' ').collect();
    // after `) `: field 3 (state) is f[0]; ppid (4) f[1]; starttime (22) f[19].
    let ppid = f.get(1)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    Some((argv, ppid, start))
}

fn proc_state(pid: u32) -> Option<char> {
    proc_stat(&pid.to_string()).map(|(s, _)| s)
}

/// The children of `pid` (every thread's), as the kernel lists them.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|k| k.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `VmRSS` of a process in bytes (0 for one that vanished).
fn vm_rss(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The processes of the container's cgroup.
fn cgroup_pids(c: &TestContainer) -> Vec<u32> {
    read_trim(&pids_dir(c).join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The kernel's boot time, from /proc/stat.
fn btime() -> u64 {
    read_trim(Path::new("/proc/stat"))
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .expect("/proc/stat has btime")
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).expect("CLK_TCK")
}

/// Three copies of a shell that holds an 8 MiB string while it waits on its
/// `sleep`; two parents that never reap (`sleep 1000` holding two zombies,
/// `sleep 999` one); short-lived `yes | head` pipelines that raise the task
/// count before it shrinks back. The group's memory, its oldest copy's
/// start, the zombies per parent and the cgroup's peak each equal what the
/// kernel says.
#[test]
fn group_memory_oldest_copy_zombie_parents_and_pids_peak_match_the_kernel() {
    if !require_docker() {
        return;
    }
    const COPY: &str = "v=$(yes | head -c 8388608); sleep 1000; echo ${#v}";
    let script = format!(
        "S='{COPY}'; for i in 1 2 3; do sh -c \"$S\" & done; \
         sh -c 'sleep 0.1 & sleep 0.1 & exec sleep 1000' & \
         sh -c 'sleep 0.1 & exec sleep 999' & \
         exec sleep 1000"
    );
    let c = TestContainer::run(&[], &["sh", "-c", &script]);
    let copy_cmd = format!("sh -c {COPY}");

    // Wait until the kernel shows the three copies holding their strings
    // (RSS stable over two reads) and the three zombies.
    let copies = |pids: &[u32]| -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = pids
            .iter()
            .filter_map(|&p| {
                let (argv, _, start) = proc_info(p)?;
                (argv == copy_cmd).then_some((p, start))
            })
            .collect();
        v.sort_unstable();
        v
    };
    let group_rss = |copies: &[(u32, u64)]| -> u64 {
        copies
            .iter()
            .map(|&(p, _)| vm_rss(p) + children(p).into_iter().map(vm_rss).sum::<u64>())
            .sum()
    };
    // Zombie parents: parent command → zombies held.
    let zombie_parents = |pids: &[u32]| -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for &p in pids {
            let n = children(p)
                .into_iter()
                .filter(|&k| proc_state(k) == Some('Z'))
                .count() as u64;
            if n > 0 {
                if let Some((argv, _, _)) = proc_info(p) {
                    *m.entry(argv).or_insert(0) += n;
                }
            }
        }
        m
    };
    let mut last_rss = 0;
    let ready = poll_until(WAIT, Duration::from_millis(500), || {
        let pids = cgroup_pids(&c);
        let cs = copies(&pids);
        let rss = group_rss(&cs);
        let z: u64 = zombie_parents(&pids).values().sum();
        // Each copy holds its string (at least 8 MiB) and its sleep.
        let done = cs.len() == 3
            && cs
                .iter()
                .all(|&(p, _)| children(p).len() == 1 && vm_rss(p) > 8 << 20)
            && z == 3
            && rss == last_rss;
        last_rss = rss;
        done.then_some(())
    });
    assert!(
        ready.is_some(),
        "the container never settled: {:?}",
        copies(&cgroup_pids(&c))
    );

    let ex = Exporter::start(&[]);
    let id = c.id.as_str();
    let label = [("command", copy_cmd.as_str())];
    let got = poll_until(WAIT, STEP, || {
        let pids = cgroup_pids(&c);
        let before = group_rss(&copies(&pids));
        let body = ex.metrics();
        let after = group_rss(&copies(&pids));
        sample(
            &body,
            "pidwarden_container_process_group_memory_bytes",
            id,
            &label,
        )?;
        (before == after).then_some((before, pids, body))
    });
    let (kernel_rss, pids, body) = got.expect("the group's memory was never served");
    let v = |name: &str, extra: &[(&str, &str)]| sample(&body, name, id, extra);
    assert_eq!(
        v("pidwarden_container_process_group_processes", &label).as_deref(),
        Some("3"),
        "{body}"
    );
    // Memory: the copies and their sleeps, as the kernel's VmRSS says.
    let served: u64 = v("pidwarden_container_process_group_memory_bytes", &label)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        served >= 3 * (8 << 20),
        "three copies hold 8 MiB each: {served}"
    );
    let diff = served.abs_diff(kernel_rss);
    assert!(
        diff <= kernel_rss / 50,
        "served {served} B, kernel VmRSS sum {kernel_rss} B"
    );

    // Oldest copy: boot time + its start ticks.
    let oldest = copies(&pids).iter().map(|&(_, s)| s).min().unwrap();
    let want = btime() as f64 + oldest as f64 / clock_ticks() as f64;
    let served: f64 = v(
        "pidwarden_container_process_group_oldest_start_time_seconds",
        &label,
    )
    .expect("oldest start served")
    .parse()
    .unwrap();
    assert!(
        (served - want).abs() < 0.001,
        "served {served}, kernel {want}"
    );

    // Zombies per parent: two parents, two commands.
    let kernel = zombie_parents(&pids);
    assert_eq!(
        kernel,
        HashMap::from([("sleep 1000".to_string(), 2), ("sleep 999".to_string(), 1)])
    );
    for (cmd, n) in &kernel {
        assert_eq!(
            v(
                "pidwarden_container_zombie_parent_processes",
                &[("command", cmd)]
            ),
            Some(n.to_string()),
            "{body}"
        );
    }
    let zombie_series = body
        .lines()
        .filter(|l| l.starts_with("pidwarden_container_zombie_parent_processes{") && l.contains(id))
        .count();
    assert_eq!(zombie_series, 2, "{body}");

    // The peak: what pids.peak says, above what is left now (the pipelines
    // came and went). This kernel has pids.peak on cgroup v1 too.
    let dir = pids_dir(&c);
    let peak_file = dir.join("pids.peak");
    if peak_file.exists() {
        let peak: u64 = read_trim(&peak_file).parse().unwrap();
        let current: u64 = read_trim(&dir.join("pids.current")).parse().unwrap();
        assert!(peak > current, "peak {peak} current {current}");
        assert_eq!(
            v("pidwarden_container_pids_peak", &[]),
            Some(peak.to_string()),
            "{body}"
        );
    } else {
        assert_eq!(v("pidwarden_container_pids_peak", &[]), None, "{body}");
    }
}

/// A group's figure is kept between its container's readings and follows
/// the kernel at the next one: three copies of a shell wait for a file,
/// then each holds an 8 MiB string more. An exporter reading every 2 s
/// (`--group-memory-interval 2`) shows the growth, as the kernel's VmRSS
/// says; one reading once a day still shows the copies' first figures.
#[test]
fn group_memory_is_read_again_once_per_interval() {
    if !require_docker() {
        return;
    }
    const COPY: &str =
        "until [ -e /tmp/go ]; do sleep 1; done; v=$(yes | head -c 8388608); sleep 1000; echo ${#v}";
    let script = format!("S='{COPY}'; for i in 1 2 3; do sh -c \"$S\" & done; exec sleep 1000");
    let c = TestContainer::run(&[], &["sh", "-c", &script]);
    let copy_cmd = format!("sh -c {COPY}");
    let copies = || -> Vec<u32> {
        cgroup_pids(&c)
            .into_iter()
            .filter(|&p| proc_info(p).is_some_and(|(argv, _, _)| argv == copy_cmd))
            .collect()
    };
    let group_rss = |pids: &[u32]| -> u64 {
        pids.iter()
            .map(|&p| vm_rss(p) + children(p).into_iter().map(vm_rss).sum::<u64>())
            .sum()
    };
    assert!(
        poll_until(WAIT, STEP, || (copies().len() == 3).then_some(())).is_some(),
        "the copies never started"
    );
    let quick = Exporter::start(&["--group-memory-interval", "2"]);
    let daily = Exporter::start(&["--group-memory-interval", "86400"]);
    let id = c.id.as_str();
    let label = [("command", copy_cmd.as_str())];
    let served = |ex: &Exporter| -> Option<u64> {
        sample(
            &ex.metrics(),
            "pidwarden_container_process_group_memory_bytes",
            id,
            &label,
        )?
        .parse()
        .ok()
    };
    poll_until(WAIT, STEP, || served(&quick)).expect("the group's memory was never served");
    let first =
        poll_until(WAIT, STEP, || served(&daily)).expect("the group's memory was never served");
    assert!(first < 3 * (8 << 20), "three waiting shells hold {first} B");

    // The copies allocate; the kernel shows each holding its string.
    let out = c.exec(&["touch", "/tmp/go"]);
    assert!(out.status.success(), "{out:?}");
    let grown = poll_until(WAIT, STEP, || {
        let cs = copies();
        (cs.len() == 3
            && cs
                .iter()
                .all(|&p| vm_rss(p) > 8 << 20 && children(p).len() == 1))
        .then_some(())
    });
    assert!(grown.is_some(), "the copies never allocated");
    // Read again within its interval: the kernel's figure.
    let got = poll_until(WAIT, STEP, || {
        let before = group_rss(&copies());
        let v = served(&quick)?;
        let after = group_rss(&copies());
        (before == after && v >= first + 2 * (8 << 20) && v.abs_diff(before) <= before / 50)
            .then_some((v, before))
    });
    assert!(
        got.is_some(),
        "served {:?} B, kernel VmRSS sum {} B",
        served(&quick),
        group_rss(&copies())
    );
    // Not due for a day: the copies keep the figures of their first
    // reading, not re-read at any scrape; only their new children (new
    // members: the `sleep` each waits on) are read, once (a scrape's
    // refresh shows at the next one).
    let daily_now: Vec<u64> = (0..3)
        .map(|_| served(&daily).expect("the group's memory left out"))
        .collect();
    assert!(
        daily_now.iter().all(|&v| v < first + (8 << 20)),
        "the copies were read again: first {first} B, then {daily_now:?}"
    );
    assert_eq!(daily_now[1], daily_now[2], "read again: {daily_now:?}");
}

/// A group's new copies are counted at the next scrape, however long its
/// container's interval: two `sleep 1000` copies, then three more. With
/// `--group-memory-interval 86400` the scrape after the one that first
/// sees five copies serves their five figures, the sum of the kernel's
/// VmRSS of the five. No scrape runs while the new copies start, so that
/// each is read once it has settled (a new member is read once, then at
/// its container's next reading).
#[test]
fn a_groups_new_copies_are_counted_within_two_scrapes() {
    if !require_docker() {
        return;
    }
    let script = "sleep 1000 & sleep 1000 & \
                  until [ -e /tmp/more ]; do sleep 1; done; \
                  sleep 1000 & sleep 1000 & sleep 1000 & exec sleep 999";
    let c = TestContainer::run(&[], &["sh", "-c", script]);
    let copies = || -> Vec<u32> {
        cgroup_pids(&c)
            .into_iter()
            .filter(|&p| proc_info(p).is_some_and(|(argv, _, _)| argv == "sleep 1000"))
            .collect()
    };
    let rss = |pids: &[u32]| -> u64 { pids.iter().map(|&p| vm_rss(p)).sum() };
    // The kernel's figure once `n` copies run and hold still.
    let settled = |n: usize| -> u64 {
        let mut last = 0;
        poll_until(WAIT, Duration::from_millis(300), || {
            let cs = copies();
            let now = rss(&cs);
            let done = cs.len() == n && now > 0 && now == last;
            last = now;
            done.then_some(now)
        })
        .unwrap_or_else(|| panic!("{n} copies never settled: {:?}", copies()))
    };
    let two = settled(2);
    let ex = Exporter::start(&["--group-memory-interval", "86400"]);
    let id = c.id.as_str();
    let label = [("command", "sleep 1000")];
    let served =
        |body: &str, name: &str| -> Option<u64> { sample(body, name, id, &label)?.parse().ok() };
    let first = poll_until(WAIT, STEP, || {
        served(
            &ex.metrics(),
            "pidwarden_container_process_group_memory_bytes",
        )
    })
    .expect("the group's memory was never served");
    assert!(
        first.abs_diff(two) <= two / 50,
        "served {first} B, kernel VmRSS sum {two} B"
    );

    // Three more copies, started and settled between two scrapes.
    let out = c.exec(&["touch", "/tmp/more"]);
    assert!(out.status.success(), "{out:?}");
    let five = settled(5);
    assert!(five > two, "five copies hold {five} B, two {two} B");
    // The next scrape sees five copies; its refresh reads the three new
    // ones; the scrape after serves the five.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        bodies.push(ex.metrics());
    }
    let count = served(&bodies[0], "pidwarden_container_process_group_processes");
    assert_eq!(count, Some(5), "{}", bodies[0]);
    let got = served(&bodies[1], "pidwarden_container_process_group_memory_bytes");
    let got = got.expect("the group's memory left out");
    assert!(
        got.abs_diff(five) <= five / 50,
        "second scrape after the growth: served {got} B, kernel VmRSS sum of five copies {five} B, \
         of two {two} B (first served {first} B)"
    );
}

/// The node's figures equal the kernel's, read at the same moment.
#[test]
fn node_tasks_and_limits_match_the_kernel() {
    if !require_docker() {
        return;
    }
    let ex = Exporter::start(&[]);
    let tasks = || -> u64 {
        read_trim(Path::new("/proc/loadavg"))
            .split_whitespace()
            .nth(3)
            .and_then(|f| f.split_once('/'))
            .and_then(|(_, t)| t.parse().ok())
            .unwrap()
    };
    let num = |p: &str| -> u64 { read_trim(Path::new(p)).parse().unwrap() };
    let limit = num("/proc/sys/kernel/pid_max").min(num("/proc/sys/kernel/threads-max"));
    let before = tasks();
    let body = ex.metrics();
    let after = tasks();
    let served = |s: &str| -> u64 { unlabelled(&body, s).unwrap().parse().unwrap() };
    let t = served("pidwarden_node_tasks");
    // Tasks come and go on a busy host: within what the kernel said just
    // before and just after, give or take a few.
    let (lo, hi) = (before.min(after), before.max(after));
    assert!(
        t + 50 >= lo && t <= hi + 50,
        "served {t}, kernel {before}..{after}"
    );
    assert_eq!(served("pidwarden_node_pids_limit"), limit);
    assert_eq!(served("pidwarden_node_pids_headroom"), limit - t);
}
