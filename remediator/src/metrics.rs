//! The remediator's own metrics. The names are an interface (dashboards and
//! alerts use them): `pidwarden_remediations_total{action,result}`,
//! `pidwarden_remediator_signals_total{signal}`,
//! `pidwarden_remediator_webhook_requests_total{code}`,
//! `pidwarden_remediator_action_duration_seconds{action}`,
//! `pidwarden_remediator_circuit_open{id,name}`,
//! `pidwarden_remediator_build_info{version,revision}`,
//! `pidwarden_remediator_config_last_reload_successful`,
//! `pidwarden_remediator_config_last_reload_success_timestamp_seconds`,
//! `pidwarden_remediator_notices_total{result}`.

use pidwarden_shared::exposition::{openmetrics_to_text, Format};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::alert::Action;
use crate::outcome::Outcome;

/// `{action,result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionResult {
    /// `kill-duplicates`, `restart` or [`NO_ACTION`].
    pub action: String,
    /// One of [`Outcome::counted`].
    pub result: String,
}

/// `{signal}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabel {
    /// `SIGTERM`, `SIGKILL`.
    pub signal: String,
}

/// `{code}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// HTTP status code.
    pub code: String,
}

/// `{action}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `kill-duplicates` or `restart`.
    pub action: String,
}

/// `{id,name}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    /// Full container id.
    pub id: String,
    /// Container name.
    pub name: String,
}

/// `{result}` of a notice: `sent`, `failed`, `dropped`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeResult {
    /// `sent`, `failed` or `dropped`.
    pub result: String,
}

/// The results of a notice, as counted.
pub const NOTICE_RESULTS: [&str; 3] = ["sent", "failed", "dropped"];

/// `{version,revision}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// Crate version.
    pub version: String,
    /// Git revision ([`pidwarden_shared::build_info::REVISION`]).
    pub revision: String,
}

/// The `action` label of a decision on an alert that asked for no known
/// action (label missing or unknown): the label stays bounded.
pub const NO_ACTION: &str = "none";

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
    ])
}

/// The metric handles and their registry.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// `pidwarden_remediations_total`.
    pub remediations: Family<ActionResult, Counter>,
    /// `pidwarden_remediator_signals_total`.
    pub signals: Family<SignalLabel, Counter>,
    /// `pidwarden_remediator_webhook_requests_total`.
    pub webhook_requests: Family<CodeLabel, Counter>,
    /// `pidwarden_remediator_action_duration_seconds`.
    pub action_duration: Family<ActionLabel, Histogram, fn() -> Histogram>,
    /// `pidwarden_remediator_circuit_open`.
    pub circuit_open: Family<ContainerLabels, Gauge>,
    /// `pidwarden_remediator_config_last_reload_successful`: 1 when the
    /// last (re)load of the config and credential files succeeded, else 0.
    pub config_reload_ok: Gauge,
    /// `pidwarden_remediator_config_last_reload_success_timestamp_seconds`.
    pub config_reload_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `pidwarden_remediator_notices_total`.
    pub notices: Family<NoticeResult, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers everything, with every `{action,result}` pair at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let remediations = Family::<ActionResult, Counter>::default();
        let signals = Family::<SignalLabel, Counter>::default();
        let webhook_requests = Family::<CodeLabel, Counter>::default();
        let action_duration =
            Family::<ActionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let circuit_open = Family::<ContainerLabels, Gauge>::default();
        let build_info = Family::<VersionLabel, Gauge>::default();
        // The client appends `_total` to counters.
        registry.register(
            "pidwarden_remediations",
            "Remediation decisions by action and result",
            remediations.clone(),
        );
        registry.register(
            "pidwarden_remediator_signals",
            "Processes signalled, by signal",
            signals.clone(),
        );
        registry.register(
            "pidwarden_remediator_webhook_requests",
            "Webhook requests by HTTP status code",
            webhook_requests.clone(),
        );
        registry.register(
            "pidwarden_remediator_action_duration_seconds",
            "Time actions took, from decision to outcome (sampling and grace included)",
            action_duration.clone(),
        );
        registry.register(
            "pidwarden_remediator_circuit_open",
            "1 per container whose circuit breaker is open",
            circuit_open.clone(),
        );
        registry.register(
            "pidwarden_remediator_build_info",
            "Build information",
            build_info.clone(),
        );
        let config_reload_ok = Gauge::default();
        let config_reload_time = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "pidwarden_remediator_config_last_reload_successful",
            "Whether the last configuration reload (config and credential files) succeeded",
            config_reload_ok.clone(),
        );
        registry.register(
            "pidwarden_remediator_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load",
            config_reload_time.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: pidwarden_shared::build_info::REVISION.to_string(),
            })
            .set(1);
        for a in Action::ALL {
            let _ = action_duration.get_or_create(&ActionLabel {
                action: a.as_str().to_string(),
            });
            for r in Outcome::counted() {
                let _ = remediations.get_or_create(&ActionResult {
                    action: a.as_str().to_string(),
                    result: r.as_str().to_string(),
                });
            }
        }
        // Without a known action the only decision is `ignored`.
        let _ = remediations.get_or_create(&ActionResult {
            action: NO_ACTION.to_string(),
            result: Outcome::Ignored.as_str().to_string(),
        });
        let notices = Family::<NoticeResult, Counter>::default();
        registry.register(
            "pidwarden_remediator_notices",
            "Notices posted to Alertmanager, per Alertmanager URL, by result (sent, failed after retries, dropped on a full queue)",
            notices.clone(),
        );
        for r in NOTICE_RESULTS {
            let _ = notices.get_or_create(&NoticeResult {
                result: r.to_string(),
            });
        }
        for s in crate::kill::Signal::ALL {
            let _ = signals.get_or_create(&SignalLabel {
                signal: s.as_str().to_string(),
            });
        }
        Metrics {
            registry,
            remediations,
            signals,
            webhook_requests,
            action_duration,
            circuit_open,
            config_reload_ok,
            config_reload_time,
            notices,
        }
    }

    /// Counts one notice to one Alertmanager (`result`: one of [`NOTICE_RESULTS`]).
    pub fn notice(&self, result: &str) {
        self.notices
            .get_or_create(&NoticeResult {
                result: result.to_string(),
            })
            .inc();
    }

    /// Records the outcome of a configuration (re)load at Unix time `now`.
    pub fn config_loaded(&self, ok: bool, now: f64) {
        self.config_reload_ok.set(i64::from(ok));
        if ok {
            self.config_reload_time.set(now);
        }
    }

    /// Counts one decision (`pending` and `resolved` are audit rows only
    /// and not counted).
    pub fn count(&self, action: Action, result: Outcome) {
        self.count_requested(Some(action), result);
    }

    /// Counts one decision on an alert that asked for `requested`: `None`
    /// (no or an unknown `pidwarden_action`) is counted as [`NO_ACTION`].
    pub fn count_requested(&self, requested: Option<Action>, result: Outcome) {
        if !result.is_counted() {
            return;
        }
        let action = requested.map_or(NO_ACTION, Action::as_str);
        self.remediations
            .get_or_create(&ActionResult {
                action: action.to_string(),
                result: result.as_str().to_string(),
            })
            .inc();
    }

    /// The OpenMetrics exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format (0.0.4) exposition, for scrapers that do
    /// not ask for OpenMetrics.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// The exposition in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => self.encode_text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_pre_initialised_and_named_as_agreed() {
        let m = Metrics::new();
        let om = m.encode();
        assert!(om.ends_with("# EOF\n"));
        for a in ["kill-duplicates", "restart"] {
            for r in Outcome::counted() {
                let line =
                    format!("pidwarden_remediations_total{{action=\"{a}\",result=\"{r}\"}} 0");
                assert!(om.contains(&line), "{line}");
            }
        }
        assert!(om.contains(r#"pidwarden_remediations_total{action="none",result="ignored"} 0"#));
        let text = m.encode_text();
        assert!(
            text.contains("# TYPE pidwarden_remediations_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE pidwarden_remediator_build_info gauge\n"));
        assert!(text.contains("# TYPE pidwarden_remediator_action_duration_seconds histogram\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn text_exposition_passes_promtool() {
        let m = Metrics::new();
        m.count(Action::Restart, Outcome::Done);
        m.action_duration
            .get_or_create(&ActionLabel {
                action: "restart".into(),
            })
            .observe(1.5);
        m.circuit_open
            .get_or_create(&ContainerLabels {
                id: "a".repeat(64),
                name: "web".into(),
            })
            .set(1);
        pidwarden_tests::promtool_check(&m.encode_text());
    }
}
