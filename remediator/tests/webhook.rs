//! The webhook end to end through `app()` with a fake runtime and a fake
//! kill engine: decisions, restraint, audit rows and metrics.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use pidwarden_remediator::clock::ManualClock;
use pidwarden_remediator::config::Settings;
use pidwarden_remediator::kill::KillPolicy;
use pidwarden_remediator::outcome::Outcome;
use pidwarden_remediator::timefmt::now_nanos;

const KILL: (&str, &str) = ("pidwarden_action", "kill-duplicates");
const RESTART: (&str, &str) = ("pidwarden_action", "restart");

#[tokio::test]
async fn kill_duplicates_acts_once_and_a_redelivery_is_a_duplicate() {
    let h = Harness::new(fast_settings());
    let id = cid(1);
    h.runtime.add(&id, "gateway", &[]);
    h.engine.set(&id, 2, 0);
    let body = payload(&[A::firing(
        "PidwardenDuplicateProcesses",
        "f1",
        &[("id", &id), KILL],
    )]);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    assert_eq!(h.engine.executions(), vec![vec![110, 111, 120, 121]]);
    let rows = h.rows();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.action.as_str(), r.result.as_str()),
        ("kill-duplicates", "done")
    );
    assert_eq!(r.container_id, id);
    assert_eq!(r.container_name, "gateway");
    assert_eq!(r.fingerprint, "f1");
    assert_eq!(r.starts_at, "2026-11-25T10:00:00.123456789Z");
    assert_eq!(r.alertname, "PidwardenDuplicateProcesses");
    let procs = r.processes.as_array().unwrap();
    assert_eq!(procs.len(), 4);
    assert_eq!(procs[0]["pid"], 110);
    assert_eq!(procs[0]["start_time"], 1110);
    assert_eq!(procs[0]["command"], "npm exec @x/server");
    assert_eq!(procs[0]["signal"], "SIGTERM");

    // Alertmanager redelivers the same instance every group_interval.
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results_of(&v), ["duplicate"]);
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1, "acted twice");
    assert_eq!(h.results().last().unwrap().1, "duplicate");
    let m = h.metrics().await;
    assert!(
        m.contains(r#"pidwarden_remediations_total{action="kill-duplicates",result="done"} 1"#),
        "{m}"
    );
    assert!(m.contains(
        r#"pidwarden_remediations_total{action="kill-duplicates",result="duplicate"} 1"#
    ));
    assert!(m.contains(r#"pidwarden_remediations_total{action="restart",result="failed"} 0"#));
    assert!(m.contains(r#"pidwarden_remediator_signals_total{signal="SIGTERM"} 4"#));
    assert!(m.contains(r#"pidwarden_remediator_webhook_requests_total{code="200"} 2"#));
    assert!(m.contains(
        r#"pidwarden_remediator_action_duration_seconds_count{action="kill-duplicates"} 1"#
    ));
    assert!(m.contains(r#"pidwarden_remediator_build_info{version=""#));
}

#[tokio::test]
async fn the_webhook_answers_fast_while_a_kill_is_in_progress() {
    let settings = Settings {
        kill: KillPolicy {
            sample: Duration::from_millis(300),
            grace: Duration::from_secs(2),
            ..fast_settings().kill
        },
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let (a, b) = (cid(1), cid(2));
    h.runtime.add(&a, "a", &[]);
    h.runtime.add(&b, "b", &[]);
    h.engine.set(&a, 1, 0);
    h.engine.set(&b, 1, 0);
    let first = payload(&[A::firing("Dup", "fa", &[("id", &a), KILL])]);
    let (s, v, took) = h.post(&first).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::OK, vec!["pending".to_string()])
    );
    assert!(
        took < Duration::from_millis(50),
        "first response took {took:?} (sampling is 300 ms)"
    );
    // Wait until the engine sits in its grace period.
    let t = Instant::now();
    while !h.engine.executing.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5), "kill never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A redelivery while the first action is still running is a duplicate…
    let (s, v, took) = h.post(&first).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::OK, vec!["duplicate".to_string()])
    );
    assert!(took < Duration::from_millis(50), "redelivery took {took:?}");
    // …and another container's alert is accepted at once.
    let second = payload(&[A::firing("Dup", "fb", &[("id", &b), KILL])]);
    let (s, v, took) = h.post(&second).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::OK, vec!["pending".to_string()])
    );
    assert!(
        took < Duration::from_millis(50),
        "second response took {took:?}"
    );
    assert!(
        h.engine.executing.load(Ordering::SeqCst) || h.service.in_flight() > 0,
        "kill no longer in progress"
    );
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 2);
    let results: Vec<_> = h.rows().into_iter().map(|r| r.result).collect();
    assert_eq!(results, ["done", "duplicate", "done"]);
}

#[tokio::test]
async fn cooldown_refuses_a_new_alert_instance_on_the_same_container() {
    let settings = Settings {
        cooldown: Duration::from_secs(300),
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let id = cid(3);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    h.post(&payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]))
        .await;
    h.idle().await;
    h.engine.set(&id, 1, 0);
    let later = A::firing("Dup", "f1", &[("id", &id), KILL]).starts("2026-11-25T11:00:00Z");
    let (s, v, _) = h.post(&payload(&[later])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results_of(&v), ["cooldown"]);
    assert!(v["results"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("cooldown is 300 s"));
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
    assert!(h
        .metrics()
        .await
        .contains(r#"pidwarden_remediations_total{action="kill-duplicates",result="cooldown"} 1"#));
}

#[tokio::test]
async fn circuit_breaker_escalates_to_one_restart_then_opens() {
    let h = Harness::new(fast_settings());
    let id = cid(4);
    h.runtime.add(&id, "leaky", &[]);
    let starts = [
        "2026-11-25T10:00:00Z",
        "2026-11-25T10:10:00Z",
        "2026-11-25T10:20:00Z",
        "2026-11-25T10:30:00Z",
        "2026-11-25T10:40:00Z",
    ];
    let mut answers = Vec::new();
    for s in starts {
        // The leak comes back every time.
        h.engine.set(&id, 1, 0);
        let (_, v, _) = h
            .post(&payload(&[
                A::firing("Dup", "fp", &[("id", &id), KILL]).starts(s)
            ]))
            .await;
        answers.push((
            v["results"][0]["action"].as_str().unwrap().to_string(),
            results_of(&v)[0].clone(),
        ));
        h.idle().await;
    }
    assert_eq!(
        answers,
        [
            ("kill-duplicates".to_string(), "pending".to_string()),
            ("kill-duplicates".into(), "pending".into()),
            ("kill-duplicates".into(), "pending".into()),
            ("restart".into(), "pending".into()),
            ("kill-duplicates".into(), "circuit_open".into()),
        ]
    );
    assert_eq!(h.engine.executions().len(), 3);
    assert_eq!(h.runtime.restarts(), vec![id.clone()]);
    let rows = h.rows();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("kill-duplicates", "done"),
            ("kill-duplicates", "done"),
            ("kill-duplicates", "done"),
            ("restart", "done"),
            ("kill-duplicates", "circuit_open"),
        ]
    );
    assert!(rows[3].opened_circuit);
    assert!(
        rows[3].reason.contains("escalated to one restart"),
        "{}",
        rows[3].reason
    );
    let m = h.metrics().await;
    assert!(
        m.contains(&format!(
            r#"pidwarden_remediator_circuit_open{{id="{id}",name="leaky"}} 1"#
        )),
        "{m}"
    );
    assert!(m.contains(
        r#"pidwarden_remediations_total{action="kill-duplicates",result="circuit_open"} 1"#
    ));
    assert!(m.contains(r#"pidwarden_remediations_total{action="restart",result="done"} 1"#));

    // The circuit state survives a restart of the remediator.
    let h = h.restarted();
    assert!(h.metrics().await.contains(&format!(
        r#"pidwarden_remediator_circuit_open{{id="{id}",name="leaky"}} 1"#
    )));
    let (_, v, _) = h
        .post(&payload(&[
            A::firing("Dup", "fp", &[("id", &id), RESTART]).starts("2026-11-25T10:50:00Z")
        ]))
        .await;
    assert_eq!(results_of(&v), ["circuit_open"]);
}

#[tokio::test]
async fn circuit_closes_when_its_window_passes_and_the_gauge_series_goes() {
    let settings = Settings {
        circuit_window: Duration::from_millis(400),
        kill_threshold: 1,
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let id = cid(5);
    h.runtime.add(&id, "w", &[]);
    h.engine.set(&id, 1, 0);
    h.post(&payload(&[A::firing("Dup", "fp", &[("id", &id), KILL])]))
        .await;
    h.idle().await;
    let (_, v, _) = h
        .post(&payload(&[
            A::firing("Dup", "fp", &[("id", &id), KILL]).starts("2026-11-25T10:01:00Z")
        ]))
        .await;
    assert_eq!(v["results"][0]["action"], "restart");
    h.idle().await;
    assert!(h
        .metrics()
        .await
        .contains("pidwarden_remediator_circuit_open{"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.service.expire_circuits();
    assert!(!h
        .metrics()
        .await
        .contains("pidwarden_remediator_circuit_open{"));
}

/// Posts one kill-duplicates alert for a container holding one surplus
/// copy and waits for its action to end; returns the webhook's answer.
async fn kill_once(h: &Harness, id: &str, fp: &str, starts: &str) -> serde_json::Value {
    h.engine.set(id, 1, 0);
    let body = payload(&[A::firing("Dup", fp, &[("id", id), KILL]).starts(starts)]);
    let (_, v, _) = h.post(&body).await;
    h.idle().await;
    v
}

#[tokio::test]
async fn an_expired_circuit_loses_its_gauge_series_when_the_next_alert_is_decided() {
    let clock = Arc::new(ManualClock::new(1_900_000_000_000, 0));
    let settings = Settings {
        circuit_window: Duration::from_secs(60),
        kill_threshold: 1,
        ..fast_settings()
    };
    let h = Harness::with_clock(settings, clock.clone());
    let id = cid(6);
    h.runtime.add(&id, "w", &[]);
    let series = format!(r#"pidwarden_remediator_circuit_open{{id="{id}",name="w"}} 1"#);
    let v = kill_once(&h, &id, "fp", "2026-11-25T10:00:00Z").await;
    assert_eq!(results_of(&v), ["pending"], "{v}");
    let v = kill_once(&h, &id, "fp", "2026-11-25T10:01:00Z").await;
    assert_eq!(v["results"][0]["action"], "restart", "{v}");
    assert!(h.metrics().await.contains(&series));
    // The window passes; no periodic expiry runs: the next decision closes
    // the circuit, and its series goes with it.
    clock.advance(60_000);
    let v = kill_once(&h, &id, "fp", "2026-11-25T10:02:00Z").await;
    assert_eq!(results_of(&v), ["pending"], "{v}");
    let m = h.metrics().await;
    assert!(!m.contains("pidwarden_remediator_circuit_open{"), "{m}");
}

#[tokio::test]
async fn a_wall_clock_step_neither_shortens_nor_lengthens_a_cooldown() {
    const HOUR: i64 = 3_600_000;
    let clock = Arc::new(ManualClock::new(1_900_000_000_000, 0));
    let settings = Settings {
        cooldown: Duration::from_secs(300),
        ..fast_settings()
    };
    let h = Harness::with_clock(settings, clock.clone());
    let id = cid(7);
    h.runtime.add(&id, "c", &[]);
    let starts = "2026-11-25T10:00:00Z";
    let result = |v: serde_json::Value| results_of(&v)[0].clone();
    assert_eq!(result(kill_once(&h, &id, "f1", starts).await), "pending");
    // The wall clock steps an hour back: the cooldown still ends 300 s
    // after the action did, not an hour later.
    clock.step_wall(-HOUR);
    clock.advance(299_000);
    assert_eq!(result(kill_once(&h, &id, "f2", starts).await), "cooldown");
    clock.advance(1_000);
    assert_eq!(result(kill_once(&h, &id, "f3", starts).await), "pending");
    // A day forward: the new cooldown is not over at once.
    clock.step_wall(24 * HOUR);
    clock.advance(1_000);
    assert_eq!(result(kill_once(&h, &id, "f4", starts).await), "cooldown");
    clock.advance(299_000);
    assert_eq!(result(kill_once(&h, &id, "f5", starts).await), "pending");
    assert_eq!(h.engine.executions().len(), 3);
}

#[tokio::test]
async fn dry_run_acts_on_nothing_and_records_the_plan() {
    let settings = Settings {
        dry_run: true,
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let (k, r) = (cid(6), cid(7));
    h.runtime.add(&k, "k", &[]);
    h.runtime.add(&r, "r", &[]);
    h.engine.set(&k, 1, 0);
    let body = payload(&[
        A::firing("Dup", "f1", &[("id", &k), KILL]),
        A::firing("Stuck", "f2", &[("id", &r), RESTART]),
    ]);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(
        (s, results_of(&v)),
        (
            StatusCode::OK,
            vec!["pending".to_string(), "pending".to_string()]
        )
    );
    h.idle().await;
    assert!(h.engine.executions().is_empty());
    assert!(h.runtime.restarts().is_empty());
    let rows = h.rows();
    assert_eq!(rows[0].result, "dry_run");
    let p = rows[0].processes.as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0]["pid"].as_i64(), p[0]["start_time"].as_u64()),
        (Some(110), Some(1110))
    );
    assert_eq!(p[1]["command"], "node /x/server.js");
    assert!(
        rows[0]
            .reason
            .contains("would signal 2 processes in 1 copies"),
        "{}",
        rows[0].reason
    );
    assert_eq!(
        (rows[1].action.as_str(), rows[1].result.as_str()),
        ("restart", "dry_run")
    );
    assert!(rows[1].reason.contains("would restart"));
    assert!(h
        .metrics()
        .await
        .contains(r#"pidwarden_remediations_total{action="restart",result="dry_run"} 1"#));
}

#[tokio::test]
async fn per_container_dry_run_label_and_opt_out_label() {
    let h = Harness::new(fast_settings());
    let (d, o) = (cid(8), cid(9));
    h.runtime.add(&d, "dry", &[("pidwarden.dry-run", "true")]);
    h.runtime.add(&o, "out", &[("pidwarden.enable", "false")]);
    h.engine.set(&d, 1, 0);
    h.engine.set(&o, 1, 0);
    let body = payload(&[
        A::firing("Dup", "f1", &[("id", &d), KILL]),
        A::firing("Dup", "f2", &[("id", &o), KILL]),
        A::firing("Stuck", "f3", &[("name", "out"), RESTART]),
    ]);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results_of(&v), ["pending", "protected", "protected"]);
    h.idle().await;
    assert!(h.engine.executions().is_empty());
    assert!(h.runtime.restarts().is_empty());
    assert_eq!(
        h.engine.plans.load(Ordering::SeqCst),
        1,
        "an opted-out container was sampled"
    );
    let rows = h.rows();
    assert_eq!(rows[0].result, "dry_run");
    assert!(rows[1].reason.contains("opted out"));
    assert_eq!(rows[2].container_name, "out");
}

#[tokio::test]
async fn namespace_allow_list_and_the_default_denials_decide_alerts() {
    // No config: kube-system and pidwarden are still denied; a container
    // without a namespace (plain Docker) is acted on.
    let h = Harness::new(fast_settings());
    let (sys, own, shop, plain) = (cid(40), cid(41), cid(42), cid(43));
    let ns = "io.kubernetes.pod.namespace";
    h.runtime
        .add(&sys, "kube-system/etcd-1/etcd", &[(ns, "kube-system")]);
    h.runtime
        .add(&own, "pidwarden/remediator-x/r", &[(ns, "pidwarden")]);
    h.runtime.add(&shop, "shop/web-1/web", &[(ns, "shop")]);
    h.runtime.add(&plain, "gateway", &[]);
    for id in [&sys, &own, &shop, &plain] {
        h.engine.set(id, 1, 0);
    }
    let alerts = |p: &str| {
        payload(&[
            A::firing("Dup", &format!("{p}1"), &[("id", &sys), KILL]),
            A::firing("Dup", &format!("{p}2"), &[("id", &own), KILL]),
            A::firing("Dup", &format!("{p}3"), &[("id", &shop), KILL]),
            A::firing("Dup", &format!("{p}4"), &[("id", &plain), KILL]),
        ])
    };
    let (_, v, _) = h.post(&alerts("a")).await;
    assert_eq!(
        results_of(&v),
        ["protected", "protected", "pending", "pending"]
    );
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 2);

    // An allow list admits its namespaces only; plain containers still go.
    let file = Settings::parse("namespaces = [\"shop\"]\n").unwrap();
    let mut settings = Settings::resolve(file, &Default::default()).unwrap();
    settings.kill.sample = Duration::from_millis(10);
    settings.kill.grace = Duration::from_millis(10);
    settings.cooldown = Duration::ZERO;
    let h = Harness::new(settings);
    let other = cid(44);
    h.runtime.add(&shop, "shop/web-1/web", &[(ns, "shop")]);
    h.runtime
        .add(&other, "billing/api-1/api", &[(ns, "billing")]);
    h.runtime.add(&plain, "gateway", &[]);
    for id in [&shop, &other, &plain] {
        h.engine.set(id, 1, 0);
    }
    let body = payload(&[
        A::firing("Dup", "b1", &[("id", &shop), KILL]),
        A::firing("Dup", "b2", &[("id", &other), KILL]),
        A::firing("Dup", "b3", &[("id", &plain), KILL]),
    ]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending", "protected", "pending"]);
    assert!(
        v["results"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("namespace billing is not in the namespaces allow list"),
        "{v}"
    );
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 2);
}

#[tokio::test]
async fn containers_of_protected_namespaces_are_never_acted_on() {
    let mut settings = fast_settings();
    settings.protected_namespaces = vec!["kube-system".to_string()];
    let h = Harness::new(settings);
    let (sys, app) = (cid(12), cid(13));
    h.runtime.add(
        &sys,
        "kube-system/coredns-1/coredns",
        &[("io.kubernetes.pod.namespace", "kube-system")],
    );
    h.runtime.add(
        &app,
        "shop/web-1/web",
        &[("io.kubernetes.pod.namespace", "shop")],
    );
    h.engine.set(&sys, 1, 0);
    h.engine.set(&app, 1, 0);
    let body = payload(&[
        A::firing("Dup", "n1", &[("id", &sys), KILL]),
        A::firing("Stuck", "n2", &[("id", &sys), RESTART]),
        A::firing("Dup", "n3", &[("id", &app), KILL]),
    ]);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results_of(&v), ["protected", "protected", "pending"]);
    h.idle().await;
    assert_eq!(
        h.engine.executions().len(),
        1,
        "only the shop container is acted on"
    );
    assert!(h.runtime.restarts().is_empty());
    let rows = h.rows();
    assert!(
        rows[0]
            .reason
            .contains("namespace kube-system is protected"),
        "{}",
        rows[0].reason
    );
    assert!(
        rows[1]
            .reason
            .contains("namespace kube-system is protected"),
        "{}",
        rows[1].reason
    );
}

#[tokio::test]
async fn unknown_path_like_empty_ids_and_resolved_alerts_act_on_nothing() {
    let h = Harness::new(fast_settings());
    let known = cid(10);
    h.runtime.add(&known, "known", &[]);
    h.engine.set(&known, 3, 0);
    let unknown = cid(11);
    let body = payload(&[
        A::firing("Dup", "f1", &[("id", &unknown), KILL]),
        A::firing("Dup", "f2", &[("id", "../../etc"), KILL]),
        A::firing("Dup", "f3", &[("id", "/sys/fs/cgroup"), KILL]),
        A::firing("Dup", "f4", &[("id", ""), KILL]),
        A::firing("Dup", "f5", &[("id", &known[..12]), RESTART]),
        A::firing("Dup", "f6", &[("name", "../etc/passwd"), RESTART]),
        A::firing("Dup", "f7", &[("name", "nosuch"), RESTART]),
        A::firing("Dup", "f8", &[KILL]),
        A::firing("Dup", "f9", &[("id", &known), KILL]).resolved(),
        A::firing(
            "Dup",
            "f10",
            &[("id", &known), ("pidwarden_action", "reboot")],
        ),
        A::firing("Dup", "f11", &[("id", &known)]),
    ]);
    let inspects_before = h.runtime.inspects.load(Ordering::SeqCst);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        results_of(&v),
        [
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "unknown_container",
            "resolved",
            "ignored",
            "ignored"
        ]
    );
    // Only the well-formed id and name reached the runtime.
    assert_eq!(
        h.runtime.inspects.load(Ordering::SeqCst) - inspects_before,
        2
    );
    h.idle().await;
    assert_eq!(h.engine.plans.load(Ordering::SeqCst), 0);
    assert!(h.runtime.restarts().is_empty());
    let rows = h.rows();
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[8].status, "resolved");
    assert!(rows[1].reason.contains("../../etc"));
    let m = h.metrics().await;
    assert!(
        m.contains(
            r#"pidwarden_remediations_total{action="kill-duplicates",result="unknown_container"} 5"#
        ),
        "{m}"
    );
    assert!(m.contains(
        r#"pidwarden_remediations_total{action="restart",result="unknown_container"} 3"#
    ));
}

#[tokio::test]
async fn nothing_left_to_kill_is_recovered_and_starts_no_cooldown() {
    let settings = Settings {
        cooldown: Duration::from_secs(300),
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let id = cid(12);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 0, 0);
    h.post(&payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]))
        .await;
    h.idle().await;
    h.engine.set(&id, 0, 2);
    h.post(&payload(&[A::firing("Dup", "f2", &[("id", &id), KILL])]))
        .await;
    h.idle().await;
    let rows = h.rows();
    assert_eq!(
        (rows[0].result.as_str(), rows[1].result.as_str()),
        ("recovered", "protected")
    );
    assert!(rows[1].reason.contains("only protected processes"));
    assert!(h.engine.executions().is_empty());
}

#[tokio::test]
async fn restart_rechecks_the_live_state_first() {
    let h = Harness::new(fast_settings());
    let (again, stopped, fine) = (cid(13), cid(14), cid(15));
    h.runtime.add(&again, "again", &[]);
    h.runtime.add(&stopped, "stopped", &[]);
    h.runtime.add(&fine, "fine", &[]);
    // Restarted (by someone else) after the alert began.
    h.runtime.set(&again, |i| {
        i.started_at = pidwarden_remediator::timefmt::parse_rfc3339("2026-11-25T10:05:00Z")
    });
    h.runtime.set(&stopped, |i| i.running = false);
    let body = payload(&[
        A::firing("Stuck", "f1", &[("id", &again), RESTART]),
        A::firing("Stuck", "f2", &[("id", &stopped), RESTART]),
        A::firing("Stuck", "f3", &[("name", "fine"), RESTART]),
    ]);
    h.post(&body).await;
    h.idle().await;
    let got: Vec<_> = h.rows().into_iter().map(|r| r.result).collect();
    assert_eq!(got, ["recovered", "recovered", "done"]);
    assert_eq!(h.runtime.restarts(), vec![fine]);
    assert!(h.rows()[0].reason.contains("already restarted"));
}

#[tokio::test]
async fn config_restricts_which_alerts_may_ask_for_which_action() {
    let file = Settings::parse("[actions]\nPidwardenDuplicateProcesses = [\"kill-duplicates\"]\n")
        .unwrap();
    let mut settings = Settings::resolve(file, &Default::default()).unwrap();
    settings.kill.sample = Duration::from_millis(10);
    settings.kill.grace = Duration::from_millis(10);
    let h = Harness::new(settings);
    let id = cid(16);
    h.runtime.add(&id, "c", &[]);
    let body = payload(&[
        A::firing("PidwardenDuplicateProcesses", "f1", &[("id", &id), RESTART]),
        A::firing("SomethingElse", "f2", &[("id", &id), KILL]),
    ]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["ignored", "ignored"]);
    assert!(v["results"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("may not ask for restart"));
    h.idle().await;
    assert!(h.runtime.restarts().is_empty());
    assert_eq!(h.engine.plans.load(Ordering::SeqCst), 0);
}

/// A remediator with a 300 s cooldown (and `retention`) that has killed once
/// on a container for the alert instance `f1`; returns it, the container id
/// and the alert's body.
async fn acted_once(n: u8, retention: Option<Duration>) -> (Harness, String, String) {
    let settings = Settings {
        cooldown: Duration::from_secs(300),
        retention,
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let id = cid(n);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    let body = payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    (h, id, body)
}

/// Restarts the remediator of [`acted_once`] on the same state directory:
/// a redelivery is a duplicate, a new instance on the container is in
/// cooldown, and nothing acts again. Returns the restarted remediator.
async fn restart_remembers_dedupe_and_cooldown(h: Harness, id: &str, body: &str) -> Harness {
    let dir = h.dir.path().to_path_buf();
    let h = h.restarted();
    assert_eq!(h.dir.path(), dir);
    h.engine.set(id, 1, 0);
    let (_, v, _) = h.post(body).await;
    assert_eq!(results_of(&v), ["duplicate"]);
    let later =
        payload(&[A::firing("Dup", "f1", &[("id", id), KILL]).starts("2026-11-25T12:00:00Z")]);
    let (_, v, _) = h.post(&later).await;
    assert_eq!(results_of(&v), ["cooldown"]);
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
    h
}

#[tokio::test]
async fn state_survives_a_restart_of_the_remediator() {
    let (h, id, body) = acted_once(17, None).await;
    let h = restart_remembers_dedupe_and_cooldown(h, &id, &body).await;
    assert_eq!(h.rows().len(), 3);
}

#[tokio::test]
async fn pruning_the_trail_keeps_what_a_restart_of_the_remediator_needs() {
    let (h, id, body) = acted_once(19, Some(Duration::from_secs(86_400))).await;
    // Last year's trail: an action and a refusal on alerts long gone.
    let now_ms = (now_nanos() / 1_000_000) as i64;
    let mut old = h.rows()[0].clone();
    for (result, claimed) in [(Outcome::Done, true), (Outcome::Cooldown, false)] {
        old.at_ms = now_ms - 400 * 86_400_000;
        old.fingerprint = "f0".into();
        old.result = result;
        old.claimed = claimed;
        h.service.store().insert(&old).unwrap();
    }
    assert_eq!(h.rows().len(), 3);
    assert_eq!(h.service.prune_audit().await.unwrap(), 2);
    assert_eq!(h.results(), [("kill-duplicates".into(), "done".into())]);
    assert_eq!(h.service.prune_audit().await.unwrap(), 0);
    restart_remembers_dedupe_and_cooldown(h, &id, &body).await;
}

#[tokio::test]
async fn an_unreachable_runtime_is_failed_and_asks_for_redelivery() {
    let h = Harness::new(fast_settings());
    let id = cid(18);
    h.runtime.add(&id, "c", &[]);
    h.runtime.down.store(true, Ordering::SeqCst);
    let body = payload(&[A::firing("Stuck", "f1", &[("id", &id), RESTART])]);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(results_of(&v), ["failed"]);
    let (s, body_text) = h.get("/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body_text.contains("container runtime"), "{body_text}");
    // Back up: the redelivery acts.
    h.runtime.down.store(false, Ordering::SeqCst);
    h.service.probe_runtime().await.unwrap();
    assert_eq!(h.get("/readyz", None).await.0, StatusCode::OK);
    let (s, v, _) = h.post(&body).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::OK, vec!["pending".to_string()])
    );
    h.idle().await;
    assert_eq!(h.runtime.restarts(), vec![id]);
}

#[tokio::test]
async fn auth_malformed_and_oversized_requests() {
    let h = Harness::new(fast_settings());
    let body = payload(&[A::firing("Dup", "f1", &[("id", &cid(1)), KILL])]);
    let post = |auth: Option<String>, body: String| {
        let mut r = Request::post("/api/v1/alerts").header("content-type", "application/json");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(body)).unwrap()
    };
    for auth in [
        None,
        Some("Bearer wrong".to_string()),
        Some("Basic YW06cHc=".to_string()),
    ] {
        let (s, b, headers, _) = h.send(post(auth.clone(), body.clone())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"pidwarden\"");
        assert!(String::from_utf8_lossy(&b).contains("authentication required"));
    }
    assert_eq!(
        h.get("/api/v1/actions", Some("Bearer nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b, _, _) = h
        .send(post(
            Some(format!("Bearer {TOKEN}")),
            "{\"alerts\": [".into(),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = String::from_utf8_lossy(&b);
    assert!(
        msg.contains("invalid webhook payload") && msg.contains("line 1"),
        "{msg}"
    );
    let (s, _, _, _) = h
        .send(post(
            Some(format!("Bearer {TOKEN}")),
            "{\"status\":\"firing\"}".into(),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "alerts is required");
    let huge = format!(
        "{{\"alerts\":[],\"pad\":\"{}\"}}",
        "x".repeat((1 << 20) + 10)
    );
    let (s, _, _, _) = h.send(post(Some(format!("Bearer {TOKEN}")), huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // No decision was recorded for any of them.
    assert!(h.rows().is_empty());
    let m = h.metrics().await;
    assert!(
        m.contains(r#"pidwarden_remediator_webhook_requests_total{code="401"} 3"#),
        "{m}"
    );
    assert!(m.contains(r#"pidwarden_remediator_webhook_requests_total{code="400"} 2"#));
    assert!(m.contains(r#"pidwarden_remediator_webhook_requests_total{code="413"} 1"#));
}

#[tokio::test]
async fn basic_auth_and_metrics_auth() {
    use base64::Engine as _;
    let creds = pidwarden_remediator::auth::Credentials {
        bearer: None,
        basic: Some((b"alertmanager".to_vec(), b"pa55".to_vec())),
        peer: None,
    };
    let h = Harness::with(
        fast_settings(),
        creds,
        true,
        tempfile::tempdir().unwrap(),
        Default::default(),
        Default::default(),
    );
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alertmanager:pa55")
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alertmanager:nope")
    );
    let body = payload(&[A::firing("Dup", "f1", &[("id", "nope"), KILL])]);
    let req = |a: &str| {
        Request::post("/api/v1/alerts")
            .header("authorization", a)
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (s, _, headers, _) = h.send(req(&bad)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"pidwarden\"");
    assert_eq!(
        h.send(req(&format!("Bearer {TOKEN}"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.send(req(&good)).await.0, StatusCode::OK);
    assert_eq!(h.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.get("/metrics", Some(&good)).await.0, StatusCode::OK);
    assert_eq!(h.get("/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn actions_endpoint_limits() {
    let h = Harness::new(fast_settings());
    let alerts: Vec<_> = (0..5)
        .map(|i| A::firing("Dup", "f", &[("id", "bad"), KILL]).starts(["a", "b", "c", "d", "e"][i]))
        .collect();
    h.post(&payload(&alerts)).await;
    let auth = format!("Bearer {TOKEN}");
    let (s, b) = h.get("/api/v1/actions", Some(&auth)).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["actions"].as_array().unwrap().len(), 5);
    assert_eq!(v["actions"][0]["starts_at"], "e", "newest first");
    assert_eq!(v["actions"][0]["result"], "unknown_container");
    let (_, b) = h.get("/api/v1/actions?limit=2", Some(&auth)).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["actions"].as_array().unwrap().len(), 2);
    for bad in ["0", "1001", "x", "-3"] {
        let (s, b) = h
            .get(&format!("/api/v1/actions?limit={bad}"), Some(&auth))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(b.contains("limit must be"), "{b}");
    }
}

#[tokio::test]
async fn metrics_negotiate_openmetrics_or_text() {
    let h = Harness::new(fast_settings());
    let req = Request::get("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(Body::empty())
        .unwrap();
    let (s, b, headers, _) = h.send(req).await;
    assert_eq!(s, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let om = String::from_utf8(b).unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE pidwarden_remediations counter"));
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let (_, b, headers, _) = h.send(req).await;
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(b).unwrap();
    assert!(text.contains("# TYPE pidwarden_remediations_total counter"));
    assert!(!text.contains("# EOF"));
}

#[tokio::test]
async fn probes() {
    let h = Harness::new(fast_settings());
    assert_eq!(h.get("/healthz", None).await.0, StatusCode::OK);
    let (s, b) = h.get("/readyz", None).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "runtime never answered yet"
    );
    assert!(b.contains("has not answered"));
    h.service.probe_runtime().await.unwrap();
    assert_eq!(h.get("/readyz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_instance_seen_in_dry_run_acts_once_live() {
    let dry = Settings {
        dry_run: true,
        ..fast_settings()
    };
    let h = Harness::new(dry);
    let id = cid(30);
    h.runtime.add(&id, "gateway", &[]);
    h.engine.set(&id, 2, 0);
    let body = payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["duplicate"], "a dry-run redelivery");
    assert!(h.engine.executions().is_empty());

    // The operator switches to live mode: the same firing instance acts.
    let h = h.restarted_with(fast_settings());
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"], "{v}");
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["duplicate"], "a live redelivery");
    let got: Vec<_> = h
        .rows()
        .iter()
        .map(|r| (r.result.as_str(), r.dry_run))
        .collect();
    assert_eq!(
        got,
        [
            ("dry_run", true),
            ("duplicate", false),
            ("done", false),
            ("duplicate", false)
        ]
    );
}

#[tokio::test]
async fn failures_that_changed_nothing_are_retried_up_to_three_times() {
    let h = Harness::new(fast_settings());
    let id = cid(31);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    *h.engine.plan_error.lock().unwrap() = Some("reading /proc: EMFILE".into());
    let body = payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]);
    for attempt in 1..=3 {
        let (_, v, _) = h.post(&body).await;
        assert_eq!(results_of(&v), ["pending"], "attempt {attempt}: {v}");
        h.idle().await;
        let last = h.rows().pop().unwrap();
        assert_eq!(last.result, Outcome::Failed);
        assert!(last.retry, "{}", last.reason);
        assert!(last.reason.contains("planning failed"), "{}", last.reason);
    }
    // Given up: recorded, not tried again, not even after a restart.
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["failed"]);
    assert_eq!(h.engine.plans.load(Ordering::SeqCst), 3);
    let h = h.restarted();
    *h.engine.plan_error.lock().unwrap() = None;
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["failed"]);
    // Another instance is neither given up nor held back by a cooldown.
    let other = payload(&[A::firing("Dup", "f2", &[("id", &id), KILL])]);
    let (_, v, _) = h.post(&other).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
    assert_eq!(h.rows().pop().unwrap().result, Outcome::Done);

    // A restart the runtime refused changed nothing either.
    let rid = cid(32);
    h.runtime.add(&rid, "r", &[]);
    *h.runtime.restart_error.lock().unwrap() = Some(
        pidwarden_remediator::runtime::RuntimeError::Unreachable("connection reset".into()),
    );
    let body = payload(&[A::firing("Stuck", "r1", &[("id", &rid), RESTART])]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    assert!(h.rows().pop().unwrap().retry);
    *h.runtime.restart_error.lock().unwrap() = None;
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"], "the redelivery retries");
    h.idle().await;
    assert_eq!(h.runtime.restarts(), vec![rid]);
}

#[tokio::test]
async fn one_action_per_container_and_cooldown_from_its_end() {
    let settings = Settings {
        kill: KillPolicy {
            grace: Duration::from_millis(1500),
            ..fast_settings().kill
        },
        cooldown: Duration::from_secs(1),
        ..fast_settings()
    };
    let h = Harness::new(settings);
    let id = cid(33);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 2, 0);
    let first = payload(&[A::firing("DupA", "fa", &[("id", &id), KILL])]);
    let second = payload(&[A::firing("DupB", "fb", &[("id", &id), RESTART])]);
    let t0 = Instant::now();
    let (_, v, _) = h.post(&first).await;
    assert_eq!(results_of(&v), ["pending"]);
    let (s, v, _) = h.post(&second).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::OK, vec!["busy".to_string()])
    );
    // A redelivery of the running instance is a duplicate, not busy.
    let (_, v, _) = h.post(&first).await;
    assert_eq!(results_of(&v), ["duplicate"]);
    h.idle().await;
    let ended = t0.elapsed();
    assert!(ended >= Duration::from_millis(1500), "{ended:?}");
    // More than the cooldown after the start, less after the end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v, _) = h.post(&second).await;
    assert_eq!(results_of(&v), ["cooldown"], "{v}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, v, _) = h.post(&second).await;
    assert_eq!(results_of(&v), ["pending"], "{v}");
    h.idle().await;
    assert_eq!(h.runtime.restarts(), vec![id]);
    assert!(h
        .metrics()
        .await
        .contains(r#"pidwarden_remediations_total{action="restart",result="busy"} 1"#));
}

#[tokio::test]
async fn the_breaker_escalates_only_when_the_alert_may_ask_for_restart() {
    let mut allowed = std::collections::BTreeMap::new();
    allowed.insert(
        "Dup".to_string(),
        vec![pidwarden_remediator::alert::Action::KillDuplicates],
    );
    let h = Harness::new(Settings {
        allowed: Some(allowed),
        ..fast_settings()
    });
    let id = cid(34);
    h.runtime.add(&id, "leaky", &[]);
    let mut got = Vec::new();
    for s in ["10", "20", "30", "40"] {
        h.engine.set(&id, 1, 0);
        let start = format!("2026-11-25T10:{s}:00Z");
        let (_, v, _) = h
            .post(&payload(&[
                A::firing("Dup", "fp", &[("id", &id), KILL]).starts(&start)
            ]))
            .await;
        got.push(results_of(&v)[0].clone());
        h.idle().await;
    }
    assert_eq!(got, ["pending", "pending", "pending", "circuit_open"]);
    assert!(h.runtime.restarts().is_empty(), "escalated to a restart");
    let last = h.rows().pop().unwrap();
    assert!(
        last.opened_circuit && last.reason.contains("[actions]"),
        "{}",
        last.reason
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_request_leaves_no_orphan_claim() {
    let h = Harness::new(fast_settings());
    let id = cid(35);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    *h.runtime.inspect_delay.lock().unwrap() = Duration::from_millis(300);
    let body = payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]);
    // The request future is dropped while the runtime is still answering.
    let gone = tokio::time::timeout(Duration::from_millis(50), h.post(&body)).await;
    assert!(gone.is_err(), "the request finished before the disconnect");
    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        if let Some(r) = h.rows().into_iter().find(|r| r.result != Outcome::Pending) {
            break r;
        }
        assert!(Instant::now() < deadline, "the alert was never decided");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.result, Outcome::Done, "{}", row.reason);
    assert_eq!(h.engine.executions().len(), 1);
    *h.runtime.inspect_delay.lock().unwrap() = Duration::ZERO;
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["duplicate"]);
}

#[tokio::test]
async fn shutdown_interrupts_a_sampling_action_which_stays_retryable() {
    let h = Harness::new(Settings {
        kill: KillPolicy {
            sample: Duration::from_secs(3),
            ..fast_settings().kill
        },
        ..fast_settings()
    });
    let id = cid(36);
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    let body = payload(&[A::firing("Dup", "f1", &[("id", &id), KILL])]);
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    h.service.abort();
    assert!(h.service.wait_idle(Duration::from_secs(2)).await);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let row = h.rows().pop().unwrap();
    assert_eq!(row.result, Outcome::Failed);
    assert!(
        row.retry && row.reason.contains("interrupted"),
        "{}",
        row.reason
    );
    assert!(h.engine.executions().is_empty());
    // While shutting down nothing new starts; the next process retries.
    let other = payload(&[A::firing("Dup", "f2", &[("id", &id), KILL])]);
    let (s, v, _) = h.post(&other).await;
    assert_eq!(
        (s, results_of(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, vec!["failed".to_string()])
    );
    let h = h.restarted_with(fast_settings());
    let (_, v, _) = h.post(&body).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
}

#[tokio::test]
async fn actions_left_pending_are_closed_and_what_they_stopped_continued() {
    let h = Harness::new(fast_settings());
    let id = cid(37);
    let now_ms = (now_nanos() / 1_000_000) as i64;
    let pending = |fp: &str| pidwarden_remediator::store::Record {
        id: 0,
        at_ms: now_ms,
        status: "firing".into(),
        alertname: "Dup".into(),
        fingerprint: fp.into(),
        starts_at: "2026-11-25T10:00:00.123456789Z".into(),
        container_id: id.clone(),
        container_name: "c".into(),
        action: "kill-duplicates".into(),
        result: Outcome::Pending,
        reason: "kill-duplicates requested by the alert".into(),
        claimed: true,
        opened_circuit: false,
        dry_run: false,
        retry: false,
        processes: serde_json::json!([]),
        process_count: 0,
        finished_ms: None,
        restraint_key: None,
        victim_memory_bytes: None,
    };
    let store = h.service.store().clone();
    let stopped_row = store.insert(&pending("f1")).unwrap();
    store
        .journal_stopped(stopped_row, &[(101, 1101), (102, 1102), (103, 1103)])
        .unwrap();
    let early_row = store.insert(&pending("f2")).unwrap();
    // 101 and 103 are still stopped; 102 was signalled and is gone.
    *h.engine.stopped.lock().unwrap() = vec![(101, 1101), (103, 1103)];
    let h = h.restarted();
    assert_eq!(
        *h.engine.resume_asked.lock().unwrap(),
        vec![(101, 1101), (102, 1102), (103, 1103)]
    );
    assert!(h.engine.stopped.lock().unwrap().is_empty());
    let rows = h.rows();
    let r = rows.iter().find(|r| r.id == stopped_row).unwrap();
    assert_eq!(r.result, Outcome::Failed);
    assert!(
        r.reason.contains("interrupted") && r.reason.contains("2 were still stopped"),
        "{}",
        r.reason
    );
    assert!(!r.retry, "it may have signalled: not retried");
    assert_eq!(r.process_count, 3);
    let e = rows.iter().find(|r| r.id == early_row).unwrap();
    assert_eq!(e.result, Outcome::Failed);
    assert!(e.retry, "stopped nothing: retried");
    h.runtime.add(&id, "c", &[]);
    h.engine.set(&id, 1, 0);
    let body = |fp| payload(&[A::firing("Dup", fp, &[("id", &id), KILL])]);
    let (_, v, _) = h.post(&body("f1")).await;
    assert_eq!(results_of(&v), ["duplicate"]);
    let (_, v, _) = h.post(&body("f2")).await;
    assert_eq!(results_of(&v), ["pending"]);
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);
}

#[tokio::test]
async fn audit_rows_of_huge_actions_are_bounded() {
    let h = Harness::new(fast_settings());
    let mut took = Vec::new();
    for n in 0..50u8 {
        let id = cid(100 + n);
        h.runtime.add(&id, "big", &[]);
        // 2,000 copies of two processes each: 4,000 processes.
        h.engine.set(&id, 2000, 0);
        let (_, v, _) = h
            .post(&payload(&[A::firing(
                "Dup",
                &format!("f{n}"),
                &[("id", &id), KILL],
            )]))
            .await;
        assert_eq!(results_of(&v), ["pending"]);
    }
    h.idle().await;
    for _ in 0..5 {
        let t = Instant::now();
        let (s, body) = h
            .get("/api/v1/actions?limit=50", Some(&format!("Bearer {TOKEN}")))
            .await;
        took.push(t.elapsed());
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = v["actions"].as_array().unwrap();
        assert_eq!(rows.len(), 50);
        for r in rows {
            assert_eq!(r["result"], "done");
            assert_eq!(r["process_count"], 4000);
            assert_eq!(r["processes"].as_array().unwrap().len(), 200);
        }
    }
    took.sort();
    eprintln!(
        "GET /api/v1/actions?limit=50 over 50 rows of 4,000-process actions: median {:?}",
        took[2]
    );
}
