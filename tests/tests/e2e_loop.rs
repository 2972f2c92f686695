//! The whole control loop, end to end, on 127.0.0.1: a leaking container in
//! the real dockerd, the exporter, Prometheus with the shipped rules (every
//! non-zero `for:` shortened to 2 s), Alertmanager with a configuration
//! derived from the shipped example (group_wait/group_interval/
//! repeat_interval 1 s) and the remediator (token auth, short cooldown,
//! sampling and grace).
//!
//! Scenario A is the incident: a gateway whose init spawns one more copy of
//! the same server every 2 s and never stops them. The loop must keep the
//! container below its PID limit with no refused fork, and the copy that
//! serves must survive. Scenario B spawns faster than the remediator's
//! cooldown allows kills: the circuit breaker escalates to one restart.
//!
//! Each scenario prints a figures block (peak tasks, refused forks,
//! remediations, reaction times) straight to stderr, so CI logs show it
//! for passing runs too. The scenarios run one at a time (they would see
//! each other's alerts through the shared host otherwise; the Prometheus
//! scrape also keeps only the scenario's own container).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use pidwarden_tests::{
    now_ms, require_docker, tally, AuditRow, Stack, StackOptions, TestContainer,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// The rule's condition, on a sample: tasks/limit ≥ 0.8 and ≥ 3 surplus duplicates
/// (`PidwardenDuplicatesExhaustingPids`, thresholds as shipped).
fn condition(s: &Sample, limit: u64) -> bool {
    s.tasks
        .is_some_and(|t| t as f64 / limit as f64 >= 0.8 && s.duplicates >= 3)
}

/// Writes to the process's stderr directly: the test harness captures
/// `print!`/`eprint!` of passing tests, and these lines are meant for CI logs.
fn out(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Start times of each stretch where the condition held (rising edges).
fn crossings(samples: &[Sample], limit: u64) -> Vec<i64> {
    let mut v = Vec::new();
    let mut prev = false;
    for s in samples {
        let c = condition(s, limit);
        if c && !prev {
            v.push(s.at_ms);
        }
        prev = c;
    }
    v
}

/// Waits (bounded) until no audit row is `pending`, then returns the rows.
fn settled_actions(stack: &Stack) -> Vec<AuditRow> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = stack.actions();
        if rows.iter().all(|r| r.result != "pending") || Instant::now() >= deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The figures block.
fn report(
    title: &str,
    t0: i64,
    limit: u64,
    samples: &[Sample],
    refused_end: Option<u64>,
    rows: &[AuditRow],
    extra: &[String],
) {
    let peak = samples
        .iter()
        .filter_map(|s| s.tasks.map(|t| (t, s.at_ms)))
        .max_by_key(|(t, _)| *t);
    let peak_dups = samples.iter().map(|s| s.duplicates).max().unwrap_or(0);
    let mut lines = vec![
        String::new(),
        format!("===== {title} ====="),
        format!(
            "samples: {} (every 250 ms over {})",
            samples.len(),
            secs(samples.last().map_or(0, |s| s.at_ms) - t0)
        ),
    ];
    match peak {
        Some((t, at)) => lines.push(format!(
            "peak tasks: {t} / limit {limit} ({:.0}%) at +{}",
            t as f64 * 100.0 / limit as f64,
            secs(at - t0)
        )),
        None => lines.push("peak tasks: no reading".into()),
    }
    lines.push(format!("peak surplus duplicates: {peak_dups}"));
    lines.push(format!(
        "refused forks: {} over the run (pids.events max at the end: {})",
        total_refused(samples),
        refused_end.map_or("cgroup gone".to_string(), |v| v.to_string())
    ));
    lines.push("remediations (audit trail, action/result: count):".into());
    for ((a, r), n) in tally(rows) {
        let a = if a.is_empty() { "-" } else { a.as_str() };
        lines.push(format!("  {a:<16} {r:<18} {n}"));
    }
    let cross = crossings(samples, limit);
    lines.push(format!(
        "threshold crossings (tasks/limit >= 0.8 and duplicates >= 3): {}",
        cross
            .iter()
            .map(|c| format!("+{}", secs(c - t0)))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    lines.push(
        "actions taken (time from the first crossing after the previous action to this one):"
            .into(),
    );
    let mut since = t0;
    for r in rows.iter().filter(|r| {
        matches!(r.result.as_str(), "done" | "failed" | "dry_run") && !r.action.is_empty()
    }) {
        let before = cross.iter().find(|c| **c >= since && **c <= r.at_ms);
        since = r.finished_ms.unwrap_or(r.at_ms);
        lines.push(format!(
            "  row {:<4} +{:<7} {:<16} {:<8} decided {} after crossing, finished {} after; {} processes; {}",
            r.id,
            secs(r.at_ms - t0),
            r.action,
            r.result,
            before.map_or("?".into(), |c| secs(r.at_ms - c)),
            match (before, r.finished_ms) {
                (Some(c), Some(f)) => secs(f - c),
                _ => "?".into(),
            },
            r.processes,
            r.reason.chars().take(140).collect::<String>()
        ));
    }
    lines.extend(extra.iter().cloned());
    lines.push(format!("===== end of {title} ====="));
    out(&lines.join("\n"));
}

/// Starts the leaking container; returns it with its pids cgroup and init PID.
fn leaking_container(
    limit: u64,
    every: &str,
    cap: u32,
) -> (TestContainer, std::path::PathBuf, u32) {
    let (env, cmd) = leaking_container_args(every, cap);
    let limit_s = limit.to_string();
    let mut opts: Vec<&str> = vec!["--pids-limit", &limit_s];
    opts.extend(env.iter().map(String::as_str));
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let c = TestContainer::run(&opts, &cmd);
    let dir = c.cgroup_dir("pids");
    let pid = c.init_pid();
    (c, dir, pid)
}

fn progress(stack: &Stack, t0: i64, pids_dir: &Path, limit: u64) {
    let tasks = std::fs::read_to_string(pids_dir.join("pids.current"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "-".into());
    let firing: Vec<String> = stack.firing_alerts().into_iter().map(|a| a.0).collect();
    let rows = stack.actions();
    let last = rows
        .iter()
        .rev()
        .find(|r| !r.action.is_empty())
        .map(|r| format!("#{} {} {}", r.id, r.action, r.result))
        .unwrap_or_else(|| "-".into());
    out(&format!(
        "  +{:<6} tasks {tasks}/{limit} dups {} firing {:?} last action {last}",
        secs(now_ms() - t0),
        duplicates(pids_dir),
        firing
    ));
    if firing.iter().any(|a| a == "PidwardenExporterDown") {
        out(&format!("  scrape targets: {}", stack.targets()));
    }
}

/// What both scenarios start with: the leaking container, a sampler of its
/// `pids.current`, and the whole loop (short cooldown, sample and grace).
struct Scenario {
    c: TestContainer,
    pids_dir: PathBuf,
    init_pid: u32,
    t0: i64,
    started_before: String,
    sampler: Sampler,
    stack: Stack,
}

impl Scenario {
    fn start(
        label: &str,
        limit: u64,
        every: &str,
        max_copies: u32,
        remediator_config: Option<&str>,
    ) -> Scenario {
        let (c, pids_dir, init_pid) = leaking_container(limit, every, max_copies);
        let t0 = now_ms();
        let started_before = c.started_at();
        let sampler = Sampler::start(pids_dir.clone());
        let stack = Stack::start(&StackOptions {
            only_ids: vec![c.id.clone()],
            remediator_args: ["--cooldown", "10", "--sample", "1", "--grace", "1"]
                .map(String::from)
                .to_vec(),
            remediator_config: remediator_config.map(String::from),
            ..Default::default()
        });
        out(&format!(
            "scenario {label}: container {} (limit {limit}), stack up after {}",
            c.name,
            secs(now_ms() - t0)
        ));
        Scenario {
            c,
            pids_dir,
            init_pid,
            t0,
            started_before,
            sampler,
            stack,
        }
    }
}

/// Scenario A: the incident. Init spawns one more copy of an identical
/// server command line every 2 s (each copy wrapper sh → sh → sleep, three
/// tasks), the first copy serves (burns CPU). PID limit 100: the rule asks
/// for kill-duplicates at 80 tasks with ≥ 3 surplus copies; at 1.5 tasks/s
/// the loop has about 13 s before the limit, twice its measured reaction.
#[test]
fn scenario_a_leaking_gateway_stays_below_its_pid_limit() {
    if !require_docker() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const LIMIT: u64 = 100;
    const RUN: Duration = Duration::from_secs(90);

    let Scenario {
        c,
        pids_dir,
        init_pid,
        t0,
        started_before,
        sampler,
        mut stack,
    } = Scenario::start("A", LIMIT, "2", 1000, None);

    let serving =
        pidwarden_tests::poll_until(Duration::from_secs(15), Duration::from_millis(200), || {
            serving_copy(init_pid, &pids_dir)
        })
        .expect("the serving copy never appeared (/serving/pid)");

    let end = Instant::now() + RUN.saturating_sub(Duration::from_millis((now_ms() - t0) as u64));
    let mut next_progress = Instant::now();
    while Instant::now() < end {
        if Instant::now() >= next_progress {
            stack.assert_alive();
            progress(&stack, t0, &pids_dir, LIMIT);
            next_progress += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let samples = sampler.finish();
    let refused_end = refused_forks(&pids_dir);
    let rows = settled_actions(&stack);
    let serving_after = serving_copy(init_pid, &pids_dir);
    let started_after = c.started_at();

    let done_kills = rows
        .iter()
        .filter(|r| r.action == "kill-duplicates" && r.result == "done")
        .count();
    let peak = samples.iter().filter_map(|s| s.tasks).max().unwrap_or(0);
    report(
        "scenario A: leaking gateway, limit 100, one copy every 2 s",
        t0,
        LIMIT,
        &samples,
        refused_end,
        &rows,
        &[
            format!(
                "serving copy: host pid {} start {} -> after: {:?}",
                serving.0, serving.1, serving_after
            ),
            format!("container StartedAt: {started_before} -> {started_after}"),
            stack.exporter_scrapes(120),
            "history (pidwarden-remediator history):".into(),
            stack.history(false),
        ],
    );

    assert!(
        samples.len() > (RUN.as_millis() / 250 / 2) as usize,
        "the sampler took only {} samples",
        samples.len()
    );
    assert!(
        done_kills >= 1,
        "no kill-duplicates action completed: {rows:#?}"
    );
    assert!(
        peak < LIMIT,
        "the container reached its PID limit ({peak}/{LIMIT})"
    );
    assert_eq!(refused_end, Some(0), "forks were refused at the PID limit");
    assert_eq!(
        total_refused(&samples),
        0,
        "forks were refused during the run"
    );
    assert_eq!(
        serving_after,
        Some(serving),
        "the serving copy did not survive (pid, start time)"
    );
    assert_eq!(
        started_before, started_after,
        "the container was restarted; kill-duplicates should have sufficed"
    );
    assert!(
        rows.iter().all(|r| r.result != "failed"),
        "failed remediations: {rows:#?}"
    );
}

/// Scenario B: the gateway respawns copies faster than the remediator may
/// kill them: one copy every 0.25 s up to 16 live copies (about 50 tasks of
/// 60, 83%), so within seconds of each kill the rule holds again, while the
/// remediator waits out a 10 s cooldown. The breaker trips after 2
/// kill-duplicates actions: the next request becomes one restart, and the
/// circuit stays open after it.
#[test]
fn scenario_b_spawning_faster_than_kills_escalates_to_restart() {
    if !require_docker() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const LIMIT: u64 = 60;
    const DEADLINE: Duration = Duration::from_secs(110);

    let Scenario {
        c,
        pids_dir,
        t0,
        started_before,
        sampler,
        mut stack,
        ..
    } = Scenario::start(
        "B",
        LIMIT,
        "0.25",
        16,
        Some(
            "[circuit]\nwindow_secs = 600\nkill_threshold = 2\nescalate = true\n\n\
             [limits]\nwindow_secs = 600\nmax_actions = 10\n",
        ),
    );

    let start = Instant::now();
    let mut next_progress = Instant::now();
    let mut restart_seen_at: Option<Instant> = None;
    loop {
        if Instant::now() >= next_progress {
            stack.assert_alive();
            progress(&stack, t0, &pids_dir, LIMIT);
            next_progress += Duration::from_secs(5);
        }
        let rows = stack.actions();
        let restart = rows
            .iter()
            .find(|r| r.action == "restart" && r.result == "done");
        if let Some(r) = restart {
            restart_seen_at.get_or_insert_with(Instant::now);
            let circuit_after = rows
                .iter()
                .any(|x| x.id > r.id && x.result == "circuit_open");
            // Wait a little for the circuit_open refusal that should follow.
            if circuit_after
                || restart_seen_at.is_some_and(|t| t.elapsed() > Duration::from_secs(25))
            {
                break;
            }
        }
        if start.elapsed() > DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let samples = sampler.finish();
    let refused_end = refused_forks(&pids_dir);
    let rows = settled_actions(&stack);
    let started_after = c.started_at();

    let restart = rows
        .iter()
        .find(|r| r.action == "restart" && r.result == "done")
        .cloned();
    let kills_before: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| {
            r.action == "kill-duplicates"
                && r.result == "done"
                && restart.as_ref().is_none_or(|x| r.id < x.id)
        })
        .collect();
    let circuit_after = restart.as_ref().map(|x| {
        rows.iter()
            .filter(|r| r.id > x.id && r.result == "circuit_open")
            .count()
    });
    let cooldowns = rows.iter().filter(|r| r.result == "cooldown").count();
    report(
        "scenario B: copies faster than kills, limit 60, a copy every 0.25 s up to 16, cooldown 10 s",
        t0,
        LIMIT,
        &samples,
        refused_end,
        &rows,
        &[
            format!(
                "kill-duplicates done before the restart: {}; cooldown refusals: {cooldowns}; \
                 circuit_open refusals after the restart: {}",
                kills_before.len(),
                circuit_after.map_or("no restart".into(), |n| n.to_string())
            ),
            format!("container StartedAt: {started_before} -> {started_after}"),
            stack.exporter_scrapes(120),
            "history (pidwarden-remediator history):".into(),
            stack.history(false),
        ],
    );

    let restart = restart.unwrap_or_else(|| panic!("no restart was done: {rows:#?}"));
    assert!(
        kills_before.len() >= 2,
        "expected 2 kill-duplicates actions before the escalation, got {}",
        kills_before.len()
    );
    assert!(
        restart.opened_circuit && restart.reason.contains("circuit breaker"),
        "the restart was not the breaker's escalation: {restart:?}"
    );
    assert!(
        cooldowns >= 1,
        "copies spawned faster than the cooldown, yet no request was refused for it"
    );
    assert_ne!(
        started_before, started_after,
        "the container's StartedAt did not change"
    );
    // The audit trail from the CLI tells the same story.
    let history: serde_json::Value =
        serde_json::from_str(&stack.history(true)).expect("history --json");
    let hist = history.as_array().expect("history --json is an array");
    assert!(
        hist.iter()
            .any(|r| r["action"] == "restart" && r["result"] == "done"),
        "history --json lacks the restart"
    );
    assert!(
        hist.iter()
            .filter(|r| r["action"] == "kill-duplicates" && r["result"] == "done")
            .count()
            >= 2,
        "history --json lacks the kill-duplicates actions"
    );
}
