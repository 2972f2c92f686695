//! Encoding the exporter's metric families ([`Family`]) for a scrape, in
//! the format the scraper negotiated, with the shared exposition writer
//! ([`ExpositionWriter`]): one pass from the families to the text, the same
//! names, HELP texts, types and samples in both formats, and the same bytes
//! prometheus-client writes (checked by the tests below against it).

use pidwarden_shared::exposition::{ExpositionWriter, Format, MetricType, SampleValue};

use crate::metrics::{Family, Kind, Value};

/// Encodes families in `format`.
pub fn encode(families: Vec<Family>, format: Format) -> Result<String, std::fmt::Error> {
    Ok(render(&families, format))
}

/// The exposition of `families` in `format`.
pub fn render(families: &[Family], format: Format) -> String {
    // Roughly what a sample line takes, so the string grows once or twice.
    let samples: usize = families.iter().map(|f| f.samples.len()).sum();
    let mut out = String::with_capacity(families.len() * 160 + samples * 120);
    let mut w = ExpositionWriter::new(&mut out, format);
    for f in families {
        let ty = match f.kind {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        };
        w.family(f.base, f.unit.map(|u| u.as_str()), f.help, ty);
        // A single unlabelled sample is written without `{}`.
        let braces = !matches!(f.samples.as_slice(), [s] if s.labels.is_empty());
        for s in &f.samples {
            let value = match (f.kind, s.value) {
                (Kind::Gauge, Value::Int(v)) => {
                    SampleValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
                }
                (Kind::Counter, Value::Int(v)) => SampleValue::UInt(v),
                (_, Value::Float(v)) => SampleValue::Float(v),
            };
            w.sample(
                s.labels.iter().map(|(k, v)| (*k, v.as_str())),
                braces,
                value,
            );
        }
    }
    w.finish();
    out
}

/// Encodes families in the Prometheus text format (0.0.4).
#[cfg(test)]
pub fn encode_text(families: Vec<Family>) -> Result<String, std::fmt::Error> {
    encode(families, Format::Text)
}

/// Encodes families as OpenMetrics text (with the trailing `# EOF`).
#[cfg(test)]
pub fn encode_openmetrics(families: Vec<Family>) -> Result<String, std::fmt::Error> {
    encode(families, Format::OpenMetrics)
}

/// The families encoded through prometheus-client, the encoder the direct
/// writer replaced: the tests hold the writer to its bytes.
#[cfg(test)]
pub(crate) mod reference {
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

    #[derive(Debug)]
    struct Escaped<'a>(&'a str);

    impl EncodeLabelValue for Escaped<'_> {
        fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
            let mut s = String::new();
            pidwarden_shared::exposition::push_escaped(&mut s, self.0);
            std::fmt::Write::write_str(encoder, &s)
        }
    }

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

    #[derive(Debug)]
    struct FamiliesCollector(Vec<Family>);

    impl PromCollector for FamiliesCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            for f in &self.0 {
                let unit = f.unit.map(|u| match u {
                    MetricUnit::Bytes => Unit::Bytes,
                    MetricUnit::Seconds => Unit::Seconds,
                });
                let ty = match f.kind {
                    Kind::Gauge => MetricType::Gauge,
                    Kind::Counter => MetricType::Counter,
                };
                let mut me = encoder.encode_descriptor(f.base, f.help, unit.as_ref(), ty)?;
                if let [s] = f.samples.as_slice() {
                    if s.labels.is_empty() {
                        encode_value(f.kind, s.value, me)?;
                        continue;
                    }
                }
                for s in &f.samples {
                    encode_value(f.kind, s.value, me.encode_family(&Labels(&s.labels))?)?;
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

    /// OpenMetrics as prometheus-client writes it.
    pub(crate) fn openmetrics(families: Vec<Family>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(FamiliesCollector(families)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{build_families, MetricUnit, RenderOptions, Sample, SelfStats};
    use crate::testutil::{meta, snapshot};
    use pidwarden_shared::exposition::openmetrics_to_text;

    fn check_same(families: Vec<Family>) {
        let om = reference::openmetrics(families.clone());
        assert_eq!(render(&families, Format::OpenMetrics), om);
        assert_eq!(render(&families, Format::Text), openmetrics_to_text(&om));
    }

    #[test]
    fn direct_writer_matches_prometheus_client_on_the_fixture_snapshot() {
        let stats = SelfStats {
            scrape_duration_seconds: 0.0123,
            ..SelfStats::default()
        };
        let families = build_families(
            &snapshot(),
            &meta(),
            &stats,
            RenderOptions::default(),
            None,
            None,
        );
        assert!(families.iter().map(|f| f.samples.len()).sum::<usize>() > 20);
        check_same(families);
    }

    #[test]
    fn direct_writer_matches_prometheus_client_on_edge_values() {
        let s = |labels: Vec<(&'static str, &str)>, value| Sample {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            value,
        };
        let fam = |base, unit, kind, samples| Family {
            base,
            unit,
            help: "Help text, with \"quotes\" and a \\ backslash.",
            kind,
            samples,
        };
        check_same(vec![
            fam("g_empty", None, Kind::Gauge, vec![]),
            fam("c_empty", Some(MetricUnit::Seconds), Kind::Counter, vec![]),
            fam(
                "g_one",
                Some(MetricUnit::Bytes),
                Kind::Gauge,
                vec![s(vec![], Value::Int(u64::MAX))],
            ),
            fam(
                "c_one",
                None,
                Kind::Counter,
                vec![s(vec![], Value::Int(u64::MAX))],
            ),
            fam(
                "g_many",
                None,
                Kind::Gauge,
                vec![
                    s(vec![], Value::Int(1)),
                    s(vec![("a", "")], Value::Float(0.1)),
                    s(
                        vec![("a", "x\"y\\z\nw"), ("b", "é ☃ \t")],
                        Value::Float(-0.0),
                    ),
                    s(vec![("a", "1")], Value::Float(f64::NAN)),
                    s(vec![("a", "2")], Value::Float(f64::NEG_INFINITY)),
                    s(vec![("a", "3")], Value::Float(1e300)),
                    s(vec![("a", "4")], Value::Float(123456789.125)),
                ],
            ),
            fam(
                "c_many",
                Some(MetricUnit::Seconds),
                Kind::Counter,
                vec![
                    s(vec![("k", "v")], Value::Float(2.5)),
                    s(vec![("k", "w")], Value::Int(0)),
                ],
            ),
        ]);
    }
}
