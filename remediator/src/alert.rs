//! Alertmanager's webhook payload (version 4) and what pidwarden reads from
//! one alert: the container it names, the action it asks for, and the alert
//! instance key (`fingerprint`, `startsAt`) that makes every action
//! idempotent. Parsing only; no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::timefmt::{parse_rfc3339, UnixNanos};

/// The label naming the container by full id.
pub const LABEL_ID: &str = "id";
/// The label naming the container by Docker name.
pub const LABEL_NAME: &str = "name";
/// The label naming the action.
pub const LABEL_ACTION: &str = "pidwarden_action";

/// The body Alertmanager posts to a webhook receiver. Unknown fields are
/// ignored, so later Alertmanager versions keep working.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload version; Alertmanager sends `"4"`.
    #[serde(default)]
    pub version: String,
    /// The group's key.
    #[serde(default)]
    pub group_key: String,
    /// How many alerts were dropped by `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` or `resolved` for the group as a whole.
    #[serde(default)]
    pub status: String,
    /// The receiver's name.
    #[serde(default)]
    pub receiver: String,
    /// The alerts, each with its own status.
    pub alerts: Vec<Alert>,
    /// Labels common to the group.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels common to all alerts.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations common to all alerts.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's external URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
}

/// One alert of a webhook payload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's labels (`alertname`, `id`, `pidwarden_action`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing (RFC 3339).
    #[serde(default)]
    pub starts_at: String,
    /// When it ended; Go's zero time for firing alerts.
    #[serde(default)]
    pub ends_at: String,
    /// Link to the expression that fired.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's hash of the label set.
    #[serde(default)]
    pub fingerprint: String,
}

/// Parses a webhook body. The error message says where the JSON is wrong.
/// The payload and each alert must be JSON objects: serde would also read
/// a struct from an array of its fields in order, which no sender writes.
pub fn parse_payload(body: &[u8]) -> Result<WebhookPayload, PayloadError> {
    let payload = serde_json::from_slice::<WebhookPayload>(body)?;
    let v = serde_json::from_slice::<serde_json::Value>(body)?;
    let objects = v.is_object()
        && v["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().all(serde_json::Value::is_object));
    if !objects {
        return Err(PayloadError::NotObjects);
    }
    Ok(payload)
}

/// Why a webhook body is not a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the payload's shape: says where.
    #[error("invalid webhook payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload or an alert is a JSON array, not an object.
    #[error("invalid webhook payload: the payload and each of its alerts must be JSON objects")]
    NotObjects,
}

/// The actions pidwarden performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Kill surplus copies of duplicated process trees.
    #[serde(rename = "kill-duplicates")]
    KillDuplicates,
    /// Restart the container through the runtime.
    #[serde(rename = "restart")]
    Restart,
}

impl Action {
    /// Both actions.
    pub const ALL: [Action; 2] = [Action::KillDuplicates, Action::Restart];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KillDuplicates => "kill-duplicates",
            Action::Restart => "restart",
        }
    }

    /// Parses the label value.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "kill-duplicates" => Some(Action::KillDuplicates),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }
}

/// The action an alert asks for, as recorded: one pidwarden performs, none
/// (no `pidwarden_action` label, or an empty one), or a label value it does
/// not know (clipped to 64 characters). Text only where it is stored,
/// logged or answered ([`RequestedAction::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RequestedAction {
    /// No action named.
    #[default]
    None,
    /// An action pidwarden performs.
    Known(Action),
    /// An unrecognised label value (clipped).
    Unknown(String),
}

impl RequestedAction {
    /// From the `pidwarden_action` label (or its stored text).
    pub fn from_label(label: Option<&str>) -> RequestedAction {
        match label {
            None | Some("") => RequestedAction::None,
            Some(s) => Action::parse(s).map_or_else(
                || RequestedAction::Unknown(clip(s, 64)),
                RequestedAction::Known,
            ),
        }
    }

    /// The text stored and shown: empty, the action's label value, or the
    /// unrecognised value.
    pub fn as_str(&self) -> &str {
        match self {
            RequestedAction::None => "",
            RequestedAction::Known(a) => a.as_str(),
            RequestedAction::Unknown(s) => s,
        }
    }

    /// The action, when pidwarden performs it.
    pub fn action(&self) -> Option<Action> {
        match self {
            RequestedAction::Known(a) => Some(*a),
            _ => None,
        }
    }
}

/// Reads the stored (or label) text: see [`RequestedAction::from_label`].
impl From<&str> for RequestedAction {
    fn from(s: &str) -> Self {
        RequestedAction::from_label(Some(s))
    }
}

impl From<Action> for RequestedAction {
    fn from(a: Action) -> Self {
        RequestedAction::Known(a)
    }
}

impl std::fmt::Display for RequestedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RequestedAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestedAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(RequestedAction::from_label(Some(&s)))
    }
}

/// How an alert names its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A full 64-hex container id.
    Id(String),
    /// A Docker container name (validated charset, resolved through the runtime).
    Name(String),
    /// Nothing usable: the reason why.
    Invalid(String),
}

/// The shared check of an id that reaches the runtime: a full container id
/// (exactly 64 lowercase hex digits), as container discovery applies it.
pub use pidwarden_shared::cgroup::is_container_id as is_full_id;
/// The shared check of a name that reaches the runtime: one Docker or
/// Podman accepts (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters,
/// one optional leading `/` as the API reports names).
pub use pidwarden_shared::runtime::is_container_name as is_valid_name;

/// Shortens a string taken from an alert for a log line or audit row.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

impl Alert {
    /// `alertname`, or empty.
    pub fn alertname(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// True when the alert is resolved.
    pub fn is_resolved(&self) -> bool {
        self.status.eq_ignore_ascii_case("resolved")
    }

    /// The raw `pidwarden_action` label.
    pub fn action_label(&self) -> Option<&str> {
        self.labels.get(LABEL_ACTION).map(String::as_str)
    }

    /// `startsAt` parsed.
    pub fn starts_at_nanos(&self) -> Option<UnixNanos> {
        parse_rfc3339(&self.starts_at)
    }

    /// The container the alert names. The `id` label wins over `name`; an
    /// `id` label that is not a full container id is invalid (no fallback),
    /// so a path or `..` never reaches the runtime or the filesystem.
    pub fn target(&self) -> Target {
        target_of(
            self.labels.get(LABEL_ID).map(String::as_str),
            self.labels.get(LABEL_NAME).map(String::as_str),
        )
    }
}

/// The container named by an `id` (preferred) or a `name`, checked as an
/// alert's labels are.
pub fn target_of(id: Option<&str>, name: Option<&str>) -> Target {
    if let Some(id) = id {
        if is_full_id(id) {
            return Target::Id(id.to_string());
        }
        return Target::Invalid(format!(
            "label id {:?} is not a full container id",
            clip(id, 80)
        ));
    }
    if let Some(name) = name {
        if is_valid_name(name) {
            return Target::Name(name.trim_start_matches('/').to_string());
        }
        return Target::Invalid(format!(
            "label name {:?} is not a container name",
            clip(name, 80)
        ));
    }
    Target::Invalid("alert has neither an id nor a name label".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_actions_round_trip_through_their_text() {
        let long = "x".repeat(100);
        let all = [
            RequestedAction::None,
            RequestedAction::Known(Action::KillDuplicates),
            RequestedAction::Known(Action::Restart),
            RequestedAction::Unknown("reboot".into()),
        ];
        for a in all {
            assert_eq!(RequestedAction::from_label(Some(a.as_str())), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("{:?}", a.as_str()));
            assert_eq!(serde_json::from_str::<RequestedAction>(&json).unwrap(), a);
        }
        assert_eq!(RequestedAction::from_label(None), RequestedAction::None);
        assert_eq!(
            RequestedAction::from_label(Some("restart")).action(),
            Some(Action::Restart)
        );
        let clipped = RequestedAction::from_label(Some(&long));
        assert_eq!(clipped.as_str(), clip(&long, 64));
        assert_eq!(clipped.action(), None);
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            status: "firing".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: "2024-05-01T12:00:00Z".into(),
            ends_at: "0001-01-01T00:00:00Z".into(),
            generator_url: String::new(),
            fingerprint: "abc".into(),
        }
    }

    #[test]
    fn parses_a_real_payload_with_unknown_fields_and_trailing_newline() {
        let body = format!(
            r#"{{"receiver":"pidwarden","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"X","id":"{ID}","pidwarden_action":"restart"}},"annotations":{{}},"startsAt":"2024-05-01T12:00:00.123Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/graph","fingerprint":"f1","silencedBy":[]}}],"groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","version":"4","groupKey":"{{}}:{{}}","truncatedAlerts":0,"future":1}}
"#
        );
        let p = parse_payload(body.as_bytes()).unwrap();
        assert_eq!(p.version, "4");
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].target(), Target::Id(ID.into()));
        assert_eq!(p.alerts[0].action_label(), Some("restart"));
        assert_eq!(p.external_url, "http://am");
    }

    #[test]
    fn malformed_json_says_where() {
        let e = parse_payload(b"{\"alerts\": [").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn ids_must_be_full_and_names_clean() {
        assert_eq!(alert(&[("id", ID)]).target(), Target::Id(ID.into()));
        for bad in [
            "../../etc",
            "/sys/fs/cgroup",
            "",
            &ID[..12],
            &ID.to_uppercase(),
            "/docker/x",
        ] {
            assert!(
                matches!(alert(&[("id", bad)]).target(), Target::Invalid(_)),
                "{bad}"
            );
        }
        assert_eq!(
            alert(&[("name", "/web-1")]).target(),
            Target::Name("web-1".into())
        );
        assert!(matches!(
            alert(&[("name", "../x")]).target(),
            Target::Invalid(_)
        ));
        assert!(matches!(alert(&[]).target(), Target::Invalid(_)));
    }

    #[test]
    fn arrays_in_place_of_objects_are_refused() {
        // serde reads structs from arrays of their fields; a sender never writes that.
        for body in [
            r#"{"alerts":[["firing"]]}"#,
            r#"{"alerts":[[""]]}"#,
            r#"["4","",0,"firing","r",[]]"#,
        ] {
            let e = parse_payload(body.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("invalid webhook payload"), "{body}: {e}");
        }
        assert!(parse_payload(br#"{"alerts":[{"status":"firing"}]}"#).is_ok());
    }
}
