//! The webhook's bounds on the work one poster can cause, through `app()`
//! with a fake runtime and engine: alerts per payload, payloads at once,
//! and no runtime call for an id whose cgroup is not on this node.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use pidwarden_remediator::http::MAX_ALERTS;
use pidwarden_remediator::service::MAX_PAYLOADS;

fn many(n: usize, id: &str) -> String {
    let fps: Vec<String> = (0..n).map(|i| format!("{i:016x}")).collect();
    let alerts: Vec<A<'_>> = fps
        .iter()
        .map(|fp| {
            A::firing(
                "Dup",
                fp,
                &[("id", id), ("pidwarden_action", "kill-duplicates")],
            )
        })
        .collect();
    payload(&alerts)
}

#[tokio::test]
async fn too_many_alerts_are_413_and_too_many_payloads_503() {
    let h = Arc::new(Harness::new(fast_settings()));
    // One alert over the cap: refused whole, nothing recorded.
    let (status, v, _) = h.post(&many(MAX_ALERTS + 1, "not-an-id")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_alerts"), "{v}");
    assert!(h.rows().is_empty());
    // At the cap: every alert answered.
    let (status, v, _) = h.post(&many(MAX_ALERTS, "not-an-id")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(results_of(&v).len(), MAX_ALERTS);

    // Payloads that each wait on the runtime fill every slot; one more is
    // 503 at once, and nothing of it is looked at.
    *h.runtime.inspect_delay.lock().unwrap() = Duration::from_secs(2);
    let slow = |i: usize| {
        let h = Arc::clone(&h);
        let body = payload(&[A::firing(
            "Dup",
            &format!("{i:016x}"),
            &[("name", "web-1"), ("pidwarden_action", "restart")],
        )]);
        tokio::spawn(async move { h.post(&body).await.0 })
    };
    let busy: Vec<_> = (0..MAX_PAYLOADS).map(slow).collect();
    let all_waiting = async {
        while h.runtime.inspects.load(Ordering::SeqCst) < MAX_PAYLOADS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all_waiting)
        .await
        .expect("the payloads never reached the runtime");
    let rows = h.rows().len();
    let (status, v, took) = h.post(&many(1, &cid(7))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(h.rows().len(), rows, "a refused payload was looked at");
    for b in busy {
        assert_eq!(b.await.unwrap(), StatusCode::OK);
    }
    // Slots free again.
    *h.runtime.inspect_delay.lock().unwrap() = Duration::ZERO;
    let (status, _, _) = h.post(&many(1, "not-an-id")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_id_not_on_this_node_costs_no_runtime_call() {
    let h = Harness::new(fast_settings());
    let ids: Vec<String> = (0..200u8).map(cid).collect();
    for id in &ids {
        // The runtime knows them all; their cgroups are elsewhere.
        h.runtime.add(id, "elsewhere", &[]);
        h.engine.remote.lock().unwrap().push(id.clone());
    }
    let fps: Vec<String> = (0..ids.len()).map(|i| format!("{i:016x}")).collect();
    let alerts: Vec<A<'_>> = ids
        .iter()
        .zip(&fps)
        .map(|(id, fp)| {
            A::firing(
                "Dup",
                fp,
                &[
                    ("id", id),
                    ("pidwarden_action", "kill-duplicates"),
                    ("instance", "10.0.0.9:9917"),
                ],
            )
        })
        .collect();
    let (status, v, _) = h.post(&payload(&alerts)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        results_of(&v).iter().all(|r| r == "unknown_container"),
        "{v}"
    );
    assert_eq!(h.runtime.inspects.load(Ordering::SeqCst), 0);
    assert_eq!(h.engine.plans.load(Ordering::SeqCst), 0);
}
