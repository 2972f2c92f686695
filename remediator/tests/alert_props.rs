//! Property tests of what the webhook reads from a request: the payload
//! parser and the label handling. Whatever arrives, nothing panics; every
//! malformed body is an `Err` (answered 400); a label that does not name a
//! container is `Target::Invalid` and an unknown action is `None` (both
//! recorded refusals); a valid 64-hex id always yields `Target::Id`.
//! 106,000 generated cases in all.

use std::collections::BTreeMap;

use pidwarden_remediator::alert::{
    is_full_id, is_valid_name, parse_payload, Action, Alert, Target, LABEL_ACTION, LABEL_ID,
    LABEL_NAME,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

/// A strategy for strings matching `pattern`, compiled once (a `&str`
/// strategy compiles its regex again for every case).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

/// Any Unicode text up to 40 characters (cheaper than `any::<String>()`,
/// whose Unicode class is slow to sample).
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        // ChaCha, the default, is most of the run time in a debug build.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..Config::default()
    }
}

/// Label values as they may arrive: any Unicode, control characters and
/// NUL, path pieces, hex of every length and case, and very long strings.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(),
        2 => re("[0-9a-fA-F]{0,70}"),
        2 => re("[0-9a-f]{63,65}"),
        2 => re("[./\\\\\0a-f0-9-]{0,80}"),
        2 => re("(\\.\\./|/|\0|%2e|[a-z0-9]){0,20}"),
        2 => proptest::collection::vec(
            prop_oneof![
                proptest::char::range('\0', '\x1f'),
                Just('\x7f'),
                proptest::char::range('\u{80}', '\u{10ffff}'),
            ],
            0..40,
        )
        .prop_map(String::from_iter),
    ]
}

/// Very long label values: one character repeated up to 70,000 times.
fn huge_value() -> impl Strategy<Value = String> {
    (any::<char>(), 1000usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n))
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    labels_of(label_value())
}

fn labels_of(
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        Just(LABEL_ID.to_string()),
        Just(LABEL_NAME.to_string()),
        Just(LABEL_ACTION.to_string()),
        Just("alertname".to_string()),
        text(),
    ];
    proptest::collection::btree_map(key, value, 0..6)
}

fn alert_with(labels: BTreeMap<String, String>, starts_at: String) -> Alert {
    Alert {
        status: "firing".into(),
        labels,
        annotations: BTreeMap::new(),
        starts_at,
        ends_at: String::new(),
        generator_url: String::new(),
        fingerprint: "f".into(),
    }
}

/// Everything the service reads from one alert, checked for consistency.
fn check_alert(a: &Alert) {
    let _ = a.starts_at_nanos();
    let _ = a.alertname();
    let _ = a.is_resolved();
    match a.target() {
        Target::Id(id) => {
            assert!(is_full_id(&id), "{id:?}");
            assert_eq!(a.labels.get(LABEL_ID), Some(&id));
        }
        Target::Name(name) => {
            assert!(
                !a.labels.contains_key(LABEL_ID),
                "an id label never falls back"
            );
            assert!(is_valid_name(&name) && !name.starts_with('/'), "{name:?}");
        }
        Target::Invalid(reason) => {
            // The reason quotes at most a clipped piece of the label.
            // (80 characters, each escaped to at most 10 by `{:?}`).
            assert!(reason.chars().count() < 1000, "{} chars", reason.len());
            if let Some(id) = a.labels.get(LABEL_ID) {
                assert!(!is_full_id(id));
            }
        }
    }
    if let Some(label) = a.action_label() {
        match Action::parse(label) {
            Some(act) => assert_eq!(act.as_str(), label),
            None => assert!(label != "kill-duplicates" && label != "restart"),
        }
    }
}

/// A payload as Alertmanager sends it.
fn valid_payload() -> Value {
    json!({
        "receiver": "pidwarden",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "PidwardenDuplicateProcesses", "id": "0".repeat(64), "pidwarden_action": "kill-duplicates"},
            "annotations": {"summary": "x"},
            "startsAt": "2026-11-25T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://p",
            "fingerprint": "f1"
        }],
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "version": "4",
        "groupKey": "{}",
        "truncatedAlerts": 0
    })
}

/// JSON pointers of typed fields, and the JSON kind each must be.
const TYPED: &[(&str, Kind)] = &[
    ("/alerts", Kind::Array),
    ("/alerts/0", Kind::Object),
    ("/alerts/0/status", Kind::String),
    ("/alerts/0/labels", Kind::Object),
    ("/alerts/0/labels/id", Kind::String),
    ("/alerts/0/labels/alertname", Kind::String),
    ("/alerts/0/labels/pidwarden_action", Kind::String),
    ("/alerts/0/annotations", Kind::Object),
    ("/alerts/0/startsAt", Kind::String),
    ("/alerts/0/fingerprint", Kind::String),
    ("/status", Kind::String),
    ("/version", Kind::String),
    ("/groupLabels", Kind::Object),
    ("/commonLabels", Kind::Object),
    ("/truncatedAlerts", Kind::Unsigned),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Array,
    Object,
    String,
    Unsigned,
}

fn kind_of(v: &Value) -> Option<Kind> {
    match v {
        Value::Array(_) => Some(Kind::Array),
        Value::Object(_) => Some(Kind::Object),
        Value::String(_) => Some(Kind::String),
        Value::Number(n) if n.is_u64() => Some(Kind::Unsigned),
        _ => None,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(re("[a-z]{0,8}"), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(30_000))]

    /// Arbitrary bytes, and arbitrary sequences of JSON pieces: an error or
    /// a payload, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(json_piece(), 0..40).prop_map(|p| p.concat()),
    ]) {
        if let Ok(p) = parse_payload(&body) {
            p.alerts.iter().for_each(check_alert);
        }
    }
}

/// Bytes a webhook body is made of, valid and not.
fn json_piece() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\n",
        "\"",
        "\\",
        "\"alerts\"",
        "\"labels\"",
        "\"status\"",
        "\"id\"",
        "\"name\"",
        "\"pidwarden_action\"",
        "\"startsAt\"",
        "\"truncatedAlerts\"",
        "\"firing\"",
        "\"restart\"",
        "\"kill-duplicates\"",
        "0",
        "-1",
        "1e999",
        "18446744073709551616",
        "null",
        "true",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"../../\"",
    ];
    prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

proptest! {
    #![proptest_config(config(20_000))]

    /// A valid payload with one typed field replaced by a value of another
    /// JSON type is refused with an error (400), never half-read.
    #[test]
    fn a_field_of_the_wrong_type_is_an_error(
        field in 0..TYPED.len(),
        replacement in any_json(),
    ) {
        let (pointer, kind) = TYPED[field];
        let replacement = match (kind_of(&replacement) == Some(kind), kind) {
            (false, _) => replacement,
            (true, Kind::Array) => Value::Bool(true),
            (true, _) => Value::Array(vec![replacement]),
        };
        let mut v = valid_payload();
        *v.pointer_mut(pointer).unwrap() = replacement.clone();
        let body = serde_json::to_vec(&v).unwrap();
        let r = parse_payload(&body);
        prop_assert!(r.is_err(), "{pointer} = {replacement} was accepted");
        let e = r.unwrap_err();
        prop_assert!(e.to_string().starts_with("invalid webhook payload"), "{e}");
    }
}

proptest! {
    #![proptest_config(config(30_000))]

    /// Any labels, through the JSON and back: read as sent, and every
    /// target and action decision is consistent.
    #[test]
    fn any_labels_give_a_consistent_target(labels in labels(), starts_at in text()) {
        let a = alert_with(labels, starts_at);
        check_alert(&a);
        let mut v = valid_payload();
        v["alerts"][0] = serde_json::to_value(&a).unwrap();
        let parsed = parse_payload(serde_json::to_string(&v).unwrap().as_bytes()).unwrap();
        prop_assert_eq!(&parsed.alerts[0].labels, &a.labels);
        prop_assert_eq!(parsed.alerts[0].target(), a.target());
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    /// Very long label values are handled like any other.
    #[test]
    fn huge_labels_give_a_consistent_target(labels in labels_of(huge_value())) {
        check_alert(&alert_with(labels, String::new()));
    }
}

proptest! {
    #![proptest_config(config(15_000))]

    /// Path-like ids and ids of the wrong length or case are invalid, with
    /// no fallback to the name label.
    #[test]
    fn only_full_lowercase_hex_ids_name_a_container(
        id in prop_oneof![
            re("[0-9a-fA-F./\\\\\0]{0,8}"),
            re("[0-9a-fA-F./\\\\\0]{60,68}"),
            re("[0-9a-f]{0,63}"),
            re("[0-9a-f]{65,80}"),
            re("[0-9a-f]{0,32}[A-F./\0][0-9a-f]{0,32}"),
            re("(\\.\\./){1,10}[0-9a-f]{0,64}"),
        ],
        name in re("[a-z][a-z0-9_.-]{0,20}"),
    ) {
        let expect_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let a = alert_with(
            BTreeMap::from([(LABEL_ID.to_string(), id.clone()), (LABEL_NAME.to_string(), name)]),
            String::new(),
        );
        match a.target() {
            Target::Id(got) => prop_assert!(expect_id && got == id, "{id:?}"),
            Target::Invalid(_) => prop_assert!(!expect_id, "{id:?}"),
            Target::Name(n) => prop_assert!(false, "{id:?} fell back to the name {n:?}"),
        }
    }
}

proptest! {
    #![proptest_config(config(10_000))]

    /// A valid id always names the container, whatever else is labelled.
    #[test]
    fn a_valid_id_always_yields_target_id(
        (hi, lo) in any::<(u128, u128)>(),
        other in labels(),
    ) {
        let id = format!("{hi:032x}{lo:032x}");
        let mut labels = other;
        labels.insert(LABEL_ID.to_string(), id.clone());
        let a = alert_with(labels, String::new());
        prop_assert_eq!(a.target(), Target::Id(id));
    }
}
