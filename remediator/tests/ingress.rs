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
use pidwarden_remediator::service::{INSPECT_TIMEOUT, MAX_PAYLOADS, PAYLOAD_WAIT};

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
async fn too_many_alerts_are_413_and_payloads_past_the_slots_wait_then_503() {
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

    // Payloads that each wait on the runtime longer than a payload waits
    // for a slot (and less than the inspect timeout) fill every slot.
    let slow_inspect = PAYLOAD_WAIT + Duration::from_secs(1);
    assert!(slow_inspect < INSPECT_TIMEOUT);
    *h.runtime.inspect_delay.lock().unwrap() = slow_inspect;
    let post = |body: String| {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let (status, v, took) = h.post(&body).await;
            (status, v, took)
        })
    };
    let started = tokio::time::Instant::now();
    let busy: Vec<_> = (0..MAX_PAYLOADS)
        .map(|i| {
            post(payload(&[A::firing(
                "Dup",
                &format!("{i:016x}"),
                &[("name", "web-1"), ("pidwarden_action", "restart")],
            )]))
        })
        .collect();
    let all_waiting = async {
        while h.runtime.inspects.load(Ordering::SeqCst) < MAX_PAYLOADS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all_waiting)
        .await
        .expect("the payloads never reached the runtime");
    // One more now: no slot comes free within its wait, so it is 503 and
    // nothing of it is looked at.
    let id = cid(7);
    let refused = post(payload(&[A::firing(
        "Refused",
        "00000000000000e7",
        &[("id", &id), ("pidwarden_action", "restart")],
    )]));
    // One posted shortly before the slots free: it waits, then is answered.
    tokio::time::sleep_until(started + slow_inspect - PAYLOAD_WAIT / 2).await;
    let waiting = post(many(1, "not-an-id"));
    let (status, v, took) = refused.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(took >= PAYLOAD_WAIT && took < slow_inspect, "{took:?}");
    for b in busy {
        assert_eq!(b.await.unwrap().0, StatusCode::OK);
    }
    let (status, v, took) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(took < PAYLOAD_WAIT, "{took:?}");
    let rows = h.rows();
    assert!(
        rows.iter().all(|r| r.alertname != "Refused"),
        "the refused payload was looked at"
    );
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
