//! Encoding the exporter's metric families ([`Family`]) for a scrape, in
//! the format the scraper negotiated: OpenMetrics through prometheus-client,
//! and the Prometheus text format (0.0.4) rendered from it by the shared
//! exposition module, so both carry exactly the same names, HELP texts,
//! types and samples, and both daemons render text the same way.

use pidwarden_shared::exposition::{openmetrics_to_text, Format};
use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel as _, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelSetEncoder, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{Family, Kind, MetricUnit, Value};

/// Encodes families in `format`.
pub fn encode(families: Vec<Family>, format: Format) -> Result<String, std::fmt::Error> {
    let om = encode_openmetrics(families)?;
    Ok(match format {
        Format::OpenMetrics => om,
        Format::Text => openmetrics_to_text(&om),
    })
}

/// Encodes families in the Prometheus text format (0.0.4).
#[cfg(test)]
pub fn encode_text(families: Vec<Family>) -> Result<String, std::fmt::Error> {
    encode(families, Format::Text)
}

fn prom_unit(unit: MetricUnit) -> Unit {
    match unit {
        MetricUnit::Bytes => Unit::Bytes,
        MetricUnit::Seconds => Unit::Seconds,
    }
}

/// A label value written with the exposition escapes (`\\`, `\"`, `\n`).
#[derive(Debug)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write_escaped(encoder, self.0)
    }
}

fn write_escaped(w: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    // Runs that need no escape are written whole (most values are ids,
    // names and numbers).
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        w.write_str(&rest[..i])?;
        w.write_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        })?;
        rest = &rest[i + 1..];
    }
    w.write_str(rest)
}

/// A sample's labels as a prometheus-client label set, escaped.
#[derive(Debug)]
struct Labels<'a>(&'a [(&'static str, String)]);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (k, v) in self.0 {
            (*k, Escaped(v)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The families of one scrape as a prometheus-client collector.
#[derive(Debug)]
struct FamiliesCollector(Vec<Family>);

impl PromCollector for FamiliesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let unit = f.unit.map(prom_unit);
            let ty = match f.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut me = encoder.encode_descriptor(f.base, f.help, unit.as_ref(), ty)?;
            if let [s] = f.samples.as_slice() {
                if s.labels.is_empty() {
                    // A single unlabelled sample: no `{}`.
                    encode_value(f.kind, s.value, me)?;
                    continue;
                }
            }
            for s in &f.samples {
                let labels = Labels(&s.labels);
                encode_value(f.kind, s.value, me.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn encode_value(kind: Kind, value: Value, me: MetricEncoder) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        (Kind::Gauge, Value::Int(v)) => {
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(me)
        }
        (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(me),
        (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(me),
        (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(me),
    }
}

/// Encodes families as OpenMetrics text (with the trailing `# EOF`).
pub fn encode_openmetrics(families: Vec<Family>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FamiliesCollector(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
