//! `pidwarden-remediator plan` against real Docker: the plan it prints
//! (binary, `--json`) names the same victims, by pid and start time, that a
//! live kill through the webhook then signals; a bad id, a container that
//! does not exist and an opted-out container are refusals with their reason
//! and exit code 3, distinct from errors (1). Fails with a clear message
//! when Docker is not reachable, unless `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use common::binary::{alert, Remediator};
use pidwarden_shared::procfs::read_process;
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, require_docker, TempDir, TestContainer};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

/// Runs `pidwarden-remediator plan` with `args`, with a timeout.
fn plan(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
        .arg("plan")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pidwarden-remediator plan");
    let pid = child.id();
    let done = poll_until(WAIT, STEP, || child.try_wait().unwrap().map(|_| ()));
    if done.is_none() {
        child.kill().unwrap();
        panic!("plan (pid {pid}) did not finish within {WAIT:?}");
    }
    child.wait_with_output().unwrap()
}

/// The identities (pid, start time) of every process of every victim copy.
fn plan_victims(plan: &Value) -> BTreeSet<(i64, u64)> {
    plan["plan"]["victims"]
        .as_array()
        .expect("victims")
        .iter()
        .flat_map(|c| c["members"].as_array().unwrap().iter())
        .map(|m| {
            (
                m["pid"].as_i64().unwrap(),
                m["start_time"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A container with four copies of one command line and differing
/// activity: one spins, one works in bursts, two sleep.
fn copies_of_differing_activity() -> TestContainer {
    let script = "if busybox mkdir /busy 2>/dev/null; then while :; do :; done; \
                  elif busybox mkdir /warm 2>/dev/null; then while :; do i=0; \
                  while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.1; done; \
                  else sleep 1000; fi";
    let env = format!("WORK={script}");
    let c = TestContainer::run(
        &["-e", &env],
        &[
            "sh",
            "-c",
            "echo \"$WORK\" > /w.sh; for i in 1 2 3 4; do sh /w.sh & done; wait",
        ],
    );
    poll_until(WAIT, STEP, || {
        let out = c.exec(&[
            "sh",
            "-c",
            "ls -d /busy /warm >/dev/null && ps -o args | grep -c '^sleep 1000$'",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.trim().ends_with('2').then_some(())
    })
    .expect("four copies running");
    c
}

#[test]
fn plan_shows_the_victims_the_live_kill_then_signals_and_the_row_records_their_memory() {
    if !require_docker() {
        return;
    }
    let c = copies_of_differing_activity();
    let policy = ["--keep", "2", "--sample", "1"];
    let mut args = vec!["--id", c.id.as_str(), "--json"];
    args.extend(policy);
    let out = plan(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planned: Value = serde_json::from_str(&stdout).expect("plan --json is JSON");
    assert_eq!(planned["result"], "done", "{planned:#}");
    assert_eq!(planned["id"], c.id.as_str());
    assert_eq!(
        planned["plan"]["victims"].as_array().unwrap().len(),
        2,
        "{planned:#}"
    );
    assert_eq!(
        planned["plan"]["kept"].as_array().unwrap().len(),
        2,
        "{planned:#}"
    );
    let victims = plan_victims(&planned);
    // The two idle copies, each `sh /w.sh` and its `sleep 1000` (unless
    // the shell exec'd it).
    assert!(victims.len() >= 2, "{planned:#}");
    for copy in planned["plan"]["victims"].as_array().unwrap() {
        assert!(copy["rss_bytes"].as_u64().unwrap() > 0, "{copy:#}");
        assert_eq!(copy["root"]["command"], "sh /w.sh");
    }
    // The table says the same.
    let mut args = vec!["--name", c.name.as_str()];
    args.extend(policy);
    let table = plan(&args);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("signal ")).count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("keep ")).count(),
        2,
        "{text}"
    );

    // The live kill through the webhook, with the same policy.
    let dir = TempDir::new();
    let mut flags = vec!["--insecure-no-auth"];
    flags.extend(policy);
    let r = Remediator::start(&dir, &flags);
    let (code, v) = r.webhook(serde_json::json!([alert(
        "PidwardenDuplicates",
        "plan-fp",
        &c.id,
        "kill-duplicates"
    )]));
    assert_eq!(code, 200, "{v}");
    let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
    assert_eq!(row.result, "done", "{:#}\n{}", row.json, r.daemon.log());
    let signalled: BTreeSet<(i64, u64)> = row.json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("signal").is_some())
        .map(|p| {
            (
                p["pid"].as_i64().unwrap(),
                p["start_time"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(signalled, victims, "plan: {planned:#}\nrow: {:#}", row.json);
    // The row records the memory the killed copies held, as the API and
    // `history` show it.
    let memory = row.json["victim_memory_bytes"]
        .as_u64()
        .expect("victim_memory_bytes");
    let planned_memory: u64 = planned["plan"]["victims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rss_bytes"].as_u64().unwrap())
        .sum();
    // Idle copies: what they hold barely moves between the two plans.
    assert!(
        memory > 0 && memory.abs_diff(planned_memory) <= planned_memory / 2,
        "row {memory} B, plan {planned_memory} B"
    );
    let history = Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
        .args(["history", "--json", "--state-dir"])
        .arg(&r.state_dir)
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&history.stdout).expect("history --json");
    assert_eq!(
        rows[0]["victim_memory_bytes"].as_u64(),
        Some(memory),
        "{rows:#}"
    );
    let table = Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
        .args(["history", "--state-dir"])
        .arg(&r.state_dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let shown = pidwarden_remediator::units::format_bytes(memory);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains(&shown)),
        "{shown} not in\n{table}"
    );
    for (pid, start) in &victims {
        let gone = poll_until(WAIT, STEP, || {
            match read_process(&Roots::default(), *pid as i32) {
                Ok(Some(p)) if p.start_time == *start && !p.is_zombie() => None,
                _ => Some(()),
            }
        });
        assert!(gone.is_some(), "victim {pid} still alive");
    }
}

#[test]
fn bad_ids_missing_and_opted_out_containers_are_refusals() {
    if !require_docker() {
        return;
    }
    let refused = |args: &[&str], why: &str| {
        let out = plan(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {text}");
        assert!(text.contains(why), "{args:?}: {text}");
        text.to_string()
    };
    refused(&["--id", "../../etc"], "is not a full container id");
    refused(&["--name", "a/b"], "is not a container name");
    refused(
        &["--id", &"ab".repeat(32)],
        "no container with this id runs on this node",
    );
    refused(
        &["--name", "pidwarden-test-no-such-container"],
        "does not know this container",
    );
    let json = refused(&["--id", &"cd".repeat(32), "--json"], "unknown_container");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["refused"], true);
    assert!(v.get("plan").is_none(), "{v:#}");

    let c = TestContainer::run(
        &["--label", "pidwarden.enable=false"],
        &["sh", "-c", "sleep 1000 & sleep 1000 & wait"],
    );
    refused(&["--id", &c.id], "opted out");
    // Neither --id nor --name: a usage error, not a refusal.
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(2));
    // An unreadable config is an error.
    let out = plan(&["--id", &c.id, "--config", "/nonexistent/pidwarden.toml"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out);
}
