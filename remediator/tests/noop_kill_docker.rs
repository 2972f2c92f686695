//! A kill-duplicates run that signals nothing is not a kill: against a real
//! Docker container whose surplus copies each start a protected process
//! between the plan and the signals, every run ends `protected`, starts no
//! cooldown and never counts toward the circuit breaker, so repeated alerts
//! never escalate to a restart; the next real kill is not held back.
//! The remediator's service runs in the test with the host's kill engine;
//! the engine is wrapped only to start the protected processes at the
//! moment between plan and execution, so the race is not left to timing.
//! Fails with a clear message when Docker is not reachable, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::containers::{count, procs, stopped};
use common::{payload, FakeRuntime, A};
use pidwarden_remediator::alert::WebhookPayload;
use pidwarden_remediator::config::Settings;
use pidwarden_remediator::kill::{
    ExecControl, KillError, KillPlan, KillPolicy, KillReport, ProcRef, ViewMismatch,
};
use pidwarden_remediator::kill::{HostKillEngine, KillEngine};
use pidwarden_remediator::metrics::Metrics;
use pidwarden_remediator::outcome::Outcome;
use pidwarden_remediator::service::Service;
use pidwarden_remediator::store::Store;
use pidwarden_shared::cgroup::{CgroupScope, ContainerIndex};
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, require_docker, TestContainer};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);
/// The protected command the copies start once `/go` exists.
const PROTECTED: &str = "sleep 1001";

/// Children of `pid` (from `/proc/<pid>/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The host's kill engine; while `arm` is set, each plan is followed by
/// `/go` in the container and a wait until every victim copy runs its
/// protected child, and each run starts with `/go` gone and no protected
/// process left.
struct ProtectAfterPlan {
    inner: HostKillEngine,
    container: String,
    /// The container's cgroup in the pids hierarchy.
    cgroup: std::path::PathBuf,
    arm: AtomicBool,
    executions: AtomicUsize,
}

impl ProtectAfterPlan {
    fn docker_exec(&self, script: &str) {
        let out = std::process::Command::new("docker")
            .args(["exec", &self.container, "sh", "-c", script])
            .output()
            .expect("docker exec");
        assert!(out.status.success(), "{script}: {out:?}");
    }

    /// The pids in the container running the protected command.
    fn protected_pids(&self) -> Vec<i32> {
        procs_of(&self.cgroup)
            .into_iter()
            .filter(|p| p.2 == PROTECTED)
            .map(|p| p.0)
            .collect()
    }
}

/// The live processes under `cgroup`: (pid, state, command line).
fn procs_of(cgroup: &std::path::Path) -> Vec<(i32, char, String)> {
    let roots = Roots::default();
    pidwarden_shared::cgroup::read_procs_recursive(cgroup)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| {
            pidwarden_shared::procfs::read_process(&roots, pid)
                .ok()
                .flatten()
        })
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.state.letter(), p.cmdline.display().into_owned()))
        .collect()
}

impl KillEngine for ProtectAfterPlan {
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, KillError> {
        // A fresh round: no trigger, no protected process.
        self.docker_exec("rm -f /go");
        for pid in self.protected_pids() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        poll_until(WAIT, STEP, || {
            self.protected_pids().is_empty().then_some(())
        })
        .expect("protected processes of the last round gone");
        let plan = self.inner.plan(id, policy)?;
        if let (Some(plan), true) = (&plan, self.arm.load(Ordering::SeqCst)) {
            assert!(!plan.victims.is_empty(), "{plan:#?}");
            self.docker_exec(": > /go");
            poll_until(WAIT, STEP, || {
                let protected = self.protected_pids();
                plan.victims
                    .iter()
                    .all(|v| children(v.root.pid).iter().any(|c| protected.contains(c)))
                    .then_some(())
            })
            .expect("every victim copy runs its protected child");
        }
        Ok(plan)
    }

    fn execute(
        &self,
        plan: &KillPlan,
        policy: &KillPolicy,
        control: &ExecControl<'_>,
    ) -> KillReport {
        self.executions.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(plan, policy, control)
    }

    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef> {
        self.inner.resume_stopped(procs)
    }

    fn is_local(&self, id: &str) -> bool {
        self.inner.is_local(id)
    }

    fn check_runtime_view(
        &self,
        id: &str,
        init_pid: Option<i32>,
        planned: Option<&CgroupScope>,
    ) -> Result<(), ViewMismatch> {
        self.inner.check_runtime_view(id, init_pid, planned)
    }
}

/// A container whose init runs three copies of one script: each waits for
/// `/go`, then runs the protected command, and starts over when it ends.
fn copies() -> TestContainer {
    let copy = format!("while :; do while [ ! -e /go ]; do sleep 0.2; done; {PROTECTED}; done");
    let env = format!("COPY={copy}");
    let c = TestContainer::run(
        &["-e", &env],
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do sh -c \"$COPY\" & done; wait",
        ],
    );
    let copy_cmd = format!("sh -c {copy}");
    poll_until(WAIT, STEP, || (count(&c, &copy_cmd) == 3).then_some(()))
        .expect("three copies started");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_that_signalled_nothing_is_not_a_kill() {
    if !require_docker() {
        return;
    }
    let c = copies();
    let copy_cmd =
        format!("sh -c while :; do while [ ! -e /go ]; do sleep 0.2; done; {PROTECTED}; done");
    let settings = Settings {
        kill: KillPolicy {
            sample: Duration::from_millis(300),
            grace: Duration::from_secs(1),
            protected: vec![regex::Regex::new(&format!("^{PROTECTED}$")).unwrap()],
            ..KillPolicy::default()
        },
        cooldown: Duration::from_secs(3600),
        kill_threshold: 3,
        escalate: true,
        ..Settings::default()
    };
    let roots = Roots::default();
    let engine = Arc::new(ProtectAfterPlan {
        inner: HostKillEngine::new(roots.clone(), Arc::new(ContainerIndex::new(roots))),
        container: c.id.clone(),
        cgroup: c.cgroup_dir("pids"),
        arm: AtomicBool::new(true),
        executions: AtomicUsize::new(0),
    });
    let runtime = Arc::new(FakeRuntime::default());
    runtime.add(&c.id, &c.name, &[]);
    let init = i32::try_from(c.init_pid()).unwrap();
    runtime.set(&c.id, |info| info.pid = Some(init));
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let svc = Service::new(
        settings,
        Store::open(dir.path()).unwrap(),
        runtime.clone(),
        engine.clone(),
        metrics.clone(),
    )
    .unwrap();
    let post = |fp: &str| {
        let body = payload(&[A::firing(
            "PidwardenDuplicateProcesses",
            fp,
            &[("id", &c.id), ("pidwarden_action", "kill-duplicates")],
        )]);
        serde_json::from_str::<WebhookPayload>(&body).unwrap()
    };

    // More no-op runs than the breaker's threshold, each its own instance.
    for i in 0..5 {
        let out = svc.handle(&post(&format!("noop-{i}"))).await.unwrap();
        assert_eq!(out[0].result, Outcome::Pending, "run {i}: {out:?}");
        assert!(svc.wait_idle(WAIT).await);
        let row = svc.store().get(out[0].row).unwrap().unwrap();
        assert_eq!(
            (row.action.as_str(), row.result),
            ("kill-duplicates", Outcome::Protected),
            "run {i}: {row:#?}"
        );
        assert!(row.reason.contains("0 signals sent"), "{}", row.reason);
        assert!(row.reason.contains("protected"), "{}", row.reason);
    }
    assert_eq!(engine.executions.load(Ordering::SeqCst), 5);
    assert!(runtime.restarts().is_empty(), "no restart was justified");
    assert_eq!(count(&c, &copy_cmd), 3, "{:#?}", procs(&c));
    assert!(stopped(&c).is_empty(), "nothing left stopped");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
    assert!(
        !text.contains("pidwarden_remediator_circuit_open{"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"pidwarden_remediations_total{action="kill-duplicates",result="protected"} 5"#
        ),
        "{text}"
    );

    // No cooldown was started: a real kill acts at once.
    engine.arm.store(false, Ordering::SeqCst);
    let out = svc.handle(&post("real")).await.unwrap();
    assert_eq!(out[0].result, Outcome::Pending, "{out:?}");
    assert!(svc.wait_idle(WAIT).await);
    let row = svc.store().get(out[0].row).unwrap().unwrap();
    assert_eq!(row.result, Outcome::Done, "{row:#?}");
    poll_until(WAIT, STEP, || (count(&c, &copy_cmd) == 1).then_some(()))
        .unwrap_or_else(|| panic!("{:#?}", procs(&c)));
}
