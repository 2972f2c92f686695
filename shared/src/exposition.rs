//! The exposition both daemons serve on `/metrics`: which format a scraper
//! gets for its `Accept` header ([`Format::negotiate`]), the content type
//! each format is served with, and the writing of both formats: a direct
//! writer ([`ExpositionWriter`]: families and samples in, either format's
//! text out, in one pass) and, for an exposition some library already wrote
//! as OpenMetrics, the classic Prometheus text format (0.0.4) rendered from
//! it ([`openmetrics_to_text`]). Both write the same bytes for the same
//! families.
//!
//! No HTTP types here: a daemon hands over the header's text, so the exporter
//! and the remediator answer the same `Accept` with the same format.

/// Content type of the OpenMetrics exposition (as prometheus-client writes it).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const OPENMETRICS_TYPE: &str = "application/openmetrics-text";
const TEXT_TYPE: &str = "text/plain";

/// An exposition format a daemon can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 (what Prometheus asks for first).
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4: the answer to
    /// every client that does not ask for OpenMetrics.
    Text,
}

/// One element of an `Accept` header that names a format we can serve.
#[derive(Debug)]
struct Range {
    format: Option<Format>,
    /// 2 for `type/subtype`, 1 for `type/*`, 0 for `*/*`.
    specificity: u8,
    q: f32,
}

impl Format {
    /// Every format, OpenMetrics first.
    pub const ALL: [Format; 2] = [Format::OpenMetrics, Format::Text];

    /// The format for an `Accept` header (all its values joined with `,`),
    /// as Prometheus's own client libraries choose it: media ranges with
    /// `q=0` (or a `q` that is not a number from 0 to 1) are not acceptable;
    /// the rest are ordered by `q`, highest first, then the more specific
    /// range first, then as listed; the first that names
    /// `application/openmetrics-text` or `text/plain` wins. Wildcards,
    /// other types, garbage and an absent header give [`Format::Text`].
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut ranges: Vec<Range> = accept.split(',').filter_map(parse_range).collect();
        // A stable sort keeps the listed order among equals.
        ranges.sort_by(|a, b| {
            b.q.total_cmp(&a.q)
                .then_with(|| b.specificity.cmp(&a.specificity))
        });
        ranges
            .into_iter()
            .find_map(|r| r.format)
            .unwrap_or(Format::Text)
    }

    /// [`Format::negotiate`] over every `Accept` header of a request (a
    /// request may repeat the header; its values read as one list).
    pub fn negotiate_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Format {
        let values: Vec<&str> = values.into_iter().collect();
        match values.as_slice() {
            [] => Format::negotiate(None),
            [one] => Format::negotiate(Some(one)),
            many => Format::negotiate(Some(&many.join(","))),
        }
    }

    /// The `Content-Type` this format is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// Parses one media range; `None` when it is not acceptable (`q=0`) or not
/// a media range at all.
fn parse_range(part: &str) -> Option<Range> {
    let mut params = part.split(';').map(str::trim);
    let media = params.next()?;
    let (ty, sub) = media.split_once('/')?;
    let (ty, sub) = (ty.trim(), sub.trim());
    if ty.is_empty() || sub.is_empty() || (ty == "*" && sub != "*") {
        return None;
    }
    let mut q = 1.0f32;
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("q") {
            q = v.trim().parse().ok().filter(|q| (0.0..=1.0).contains(q))?;
        }
    }
    if q <= 0.0 {
        return None;
    }
    let specificity = match (ty, sub) {
        ("*", _) => 0,
        (_, "*") => 1,
        _ => 2,
    };
    let format = if specificity < 2 {
        None
    } else if media_is(ty, sub, OPENMETRICS_TYPE) {
        Some(Format::OpenMetrics)
    } else if media_is(ty, sub, TEXT_TYPE) {
        Some(Format::Text)
    } else {
        None
    };
    Some(Range {
        format,
        specificity,
        q,
    })
}

fn media_is(ty: &str, sub: &str, want: &str) -> bool {
    let (wt, ws) = want.split_once('/').unwrap_or((want, ""));
    ty.eq_ignore_ascii_case(wt) && sub.eq_ignore_ascii_case(ws)
}

/// The type of a metric family, as [`ExpositionWriter`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up; its samples are named with `_total`.
    Counter,
}

/// A sample's value, written as prometheus-client writes it: integers in
/// decimal, floats by the shortest round-trip form (`1.0`, `0.25`, `NaN`,
/// `inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue {
    /// An integer.
    Int(i64),
    /// An unsigned integer (counters).
    UInt(u64),
    /// A float.
    Float(f64),
}

/// Writes an exposition straight into a `String`, in either [`Format`], one
/// family at a time: [`ExpositionWriter::family`] writes the `# HELP`,
/// `# TYPE` (and, in OpenMetrics, `# UNIT`) lines, [`ExpositionWriter::sample`]
/// each sample line, [`ExpositionWriter::finish`] the `# EOF` OpenMetrics
/// ends with. In the text format a counter family is named with its
/// `_total` in `# HELP` and `# TYPE`, and there is no `# UNIT`; the samples
/// read the same in both. The bytes equal prometheus-client's OpenMetrics
/// encoding and, for text, [`openmetrics_to_text`] of it.
#[derive(Debug)]
pub struct ExpositionWriter<'a> {
    out: &'a mut String,
    format: Format,
    /// The current family's sample name: base, `_unit`, `_total`.
    name: String,
}

impl<'a> ExpositionWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String, format: Format) -> Self {
        ExpositionWriter {
            out,
            format,
            name: String::new(),
        }
    }

    /// Starts a family: `base` is its name without unit and `_total`,
    /// `unit` the unit suffix (`bytes`, `seconds`) if any. `help` is
    /// written as given (one line, no escapes needed).
    pub fn family(&mut self, base: &str, unit: Option<&str>, help: &str, ty: MetricType) {
        self.name.clear();
        self.name.push_str(base);
        if let Some(u) = unit {
            self.name.push('_');
            self.name.push_str(u);
        }
        let described_len = self.name.len();
        if ty == MetricType::Counter {
            self.name.push_str("_total");
        }
        // The text format describes a counter under its `_total` name.
        let described = match self.format {
            Format::Text => &self.name[..],
            Format::OpenMetrics => &self.name[..described_len],
        };
        let out = &mut *self.out;
        out.push_str("# HELP ");
        out.push_str(described);
        out.push(' ');
        out.push_str(help);
        out.push_str("\n# TYPE ");
        out.push_str(described);
        out.push_str(match ty {
            MetricType::Gauge => " gauge\n",
            MetricType::Counter => " counter\n",
        });
        if let (Format::OpenMetrics, Some(u)) = (self.format, unit) {
            out.push_str("# UNIT ");
            out.push_str(described);
            out.push(' ');
            out.push_str(u);
            out.push('\n');
        }
    }

    /// Writes a sample of the current family. `braces`: whether the label
    /// set is written even when empty (`name{}`), as prometheus-client does
    /// for every sample of a family with more than one, or none.
    pub fn sample<'l>(
        &mut self,
        labels: impl IntoIterator<Item = (&'l str, &'l str)>,
        braces: bool,
        value: SampleValue,
    ) {
        let out = &mut *self.out;
        out.push_str(&self.name);
        let mut first = true;
        for (k, v) in labels {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            push_escaped(out, v);
            out.push('"');
        }
        if !first {
            out.push('}');
        } else if braces {
            out.push_str("{}");
        }
        out.push(' ');
        match value {
            SampleValue::Int(v) => out.push_str(itoa::Buffer::new().format(v)),
            SampleValue::UInt(v) => out.push_str(itoa::Buffer::new().format(v)),
            SampleValue::Float(v) => out.push_str(dtoa::Buffer::new().format(v)),
        }
        out.push('\n');
    }

    /// Ends the exposition (`# EOF` in OpenMetrics; nothing in text).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// Pushes a label value with the exposition escapes (`\\`, `\"`, `\n`);
/// runs that need none are pushed whole.
pub fn push_escaped(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Rewrites an OpenMetrics exposition as the Prometheus text format (0.0.4):
/// counter families are named with their `_total` suffix in `# HELP` and
/// `# TYPE`, `# UNIT` lines and `# EOF` go. Samples, gauges and histograms
/// read the same in both. One pass: a family's `# HELP` is held until its
/// `# TYPE` says whether it is a counter.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len() + om.len() / 64);
    // The `# HELP` line waiting for its `# TYPE`, and its family's name.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            push_help(&mut out, help.take(), false);
            help = Some((line, rest.split_once(' ').map_or(rest, |(n, _)| n)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = ty == "counter";
            let own = help.is_some_and(|(_, h)| h == name);
            push_help(&mut out, help.take(), counter && own);
            push_line(&mut out, line, counter.then_some(name));
            continue;
        }
        push_help(&mut out, help.take(), false);
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        push_line(&mut out, line, None);
    }
    push_help(&mut out, help.take(), false);
    out
}

fn push_help(out: &mut String, help: Option<(&str, &str)>, counter: bool) {
    if let Some((line, name)) = help {
        push_line(out, line, counter.then_some(name));
    }
}

/// Pushes `line`, its family name given `_total` when `counter` names it.
fn push_line(out: &mut String, line: &str, counter: Option<&str>) {
    match counter {
        Some(name) => {
            // `# HELP name…` / `# TYPE name…`: the name starts at byte 7.
            let (head, tail) = line.split_at(7 + name.len());
            out.push_str(head);
            out.push_str("_total");
            out.push_str(tail);
        }
        None => out.push_str(line),
    }
    out.push('\n');
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT): the daemons' graceful shutdown.
/// A handler that cannot be installed is logged and never fires; the other
/// still does.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "installing the Ctrl-C handler");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "installing the SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus 2.x and 3.x send by default, and what other scrapers do.
    const PROMETHEUS_DEFAULT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_3_DEFAULT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    const PROMETHEUS_TEXT_ONLY: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

    #[test]
    fn accept_headers_as_sent() {
        use Format::{OpenMetrics as Om, Text};
        for (accept, want) in [
            (None, Text),
            (Some(PROMETHEUS_DEFAULT), Om),
            (Some(PROMETHEUS_3_DEFAULT), Om),
            (Some(PROMETHEUS_TEXT_ONLY), Text),
            (Some("application/openmetrics-text; version=1.0.0"), Om),
            (Some("application/openmetrics-text"), Om),
            (Some("APPLICATION/OpenMetrics-Text; Version=1.0.0"), Om),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("text/plain"), Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("application/*"), Text),
            (Some("application/json"), Text),
            // q=0 means "not this one", whatever the spacing and spelling.
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text; q=0.0"), Text),
            (Some("application/openmetrics-text;Q=0, */*"), Text),
            (
                Some("application/openmetrics-text;q=0,text/plain;q=0"),
                Text,
            ),
            // The highest q wins, whatever the order.
            (
                Some("text/plain;q=0.5,application/openmetrics-text;q=0.1"),
                Text,
            ),
            (
                Some("text/plain;q=0.1,application/openmetrics-text;q=0.5"),
                Om,
            ),
            (Some("*/*;q=1,application/openmetrics-text;q=0.9"), Om),
            // Equal q: the more specific range, then the order listed.
            (Some("text/plain,application/openmetrics-text"), Text),
            (Some("application/openmetrics-text,text/plain"), Om),
            (Some("*/*,application/openmetrics-text"), Om),
            // Garbage is not acceptable; what else is there still counts.
            (Some("garbage"), Text),
            (Some(";;;,,,///"), Text),
            (Some("application/openmetrics-text;q=high"), Text),
            (Some("application/openmetrics-text;q=2"), Text),
            (Some("application/openmetrics-text;q=-1"), Text),
            (Some("application/openmetrics-text;q=NaN"), Text),
            (Some("\u{0}\u{7f}é, application/openmetrics-text;q=0.3"), Om),
            (Some("*/openmetrics-text"), Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn repeated_accept_headers_read_as_one_list() {
        assert_eq!(Format::negotiate_headers([]), Format::Text);
        assert_eq!(
            Format::negotiate_headers(["text/plain;q=0.2", "application/openmetrics-text;q=0.5"]),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate_headers(["application/openmetrics-text;q=0", "*/*"]),
            Format::Text
        );
    }

    #[test]
    fn content_types_name_their_format() {
        assert_eq!(Format::OpenMetrics.content_type(), OPENMETRICS_CONTENT_TYPE);
        assert_eq!(Format::Text.content_type(), TEXT_CONTENT_TYPE);
        for f in Format::ALL {
            // A scraper that asks for exactly what we serve gets it.
            assert_eq!(Format::negotiate(Some(f.content_type())), f);
        }
    }

    /// A gauge with a unit, a counter with labels (escapes included), an
    /// empty family, a float family; written in `format`.
    fn literal(format: Format) -> String {
        let mut out = String::new();
        let mut w = ExpositionWriter::new(&mut out, format);
        w.family("a", Some("seconds"), "Time spent.", MetricType::Gauge);
        w.sample([], false, SampleValue::Float(0.25));
        w.family("b", None, "Things done.", MetricType::Counter);
        w.sample(
            [("k", "v"), ("c", "x\\y\"z\nw")],
            true,
            SampleValue::UInt(3),
        );
        w.sample([], true, SampleValue::UInt(u64::MAX));
        w.family("e", Some("bytes"), "Nothing yet.", MetricType::Counter);
        w.family("f", None, "Floats.", MetricType::Gauge);
        w.sample([("n", "1")], true, SampleValue::Float(1.0));
        w.sample([("n", "2")], true, SampleValue::Float(f64::NAN));
        w.sample([("n", "3")], true, SampleValue::Float(f64::INFINITY));
        w.sample([("n", "4")], true, SampleValue::Int(-7));
        w.finish();
        out
    }

    #[test]
    fn writer_writes_both_formats_literally() {
        let om = literal(Format::OpenMetrics);
        assert_eq!(
            om,
            "# HELP a_seconds Time spent.\n\
             # TYPE a_seconds gauge\n\
             # UNIT a_seconds seconds\n\
             a_seconds 0.25\n\
             # HELP b Things done.\n\
             # TYPE b counter\n\
             b_total{k=\"v\",c=\"x\\\\y\\\"z\\nw\"} 3\n\
             b_total{} 18446744073709551615\n\
             # HELP e_bytes Nothing yet.\n\
             # TYPE e_bytes counter\n\
             # UNIT e_bytes bytes\n\
             # HELP f Floats.\n\
             # TYPE f gauge\n\
             f{n=\"1\"} 1.0\n\
             f{n=\"2\"} NaN\n\
             f{n=\"3\"} inf\n\
             f{n=\"4\"} -7\n\
             # EOF\n"
        );
        let text = literal(Format::Text);
        assert_eq!(
            text,
            "# HELP a_seconds Time spent.\n\
             # TYPE a_seconds gauge\n\
             a_seconds 0.25\n\
             # HELP b_total Things done.\n\
             # TYPE b_total counter\n\
             b_total{k=\"v\",c=\"x\\\\y\\\"z\\nw\"} 3\n\
             b_total{} 18446744073709551615\n\
             # HELP e_bytes_total Nothing yet.\n\
             # TYPE e_bytes_total counter\n\
             # HELP f Floats.\n\
             # TYPE f gauge\n\
             f{n=\"1\"} 1.0\n\
             f{n=\"2\"} NaN\n\
             f{n=\"3\"} inf\n\
             f{n=\"4\"} -7\n"
        );
        // The direct text is the conversion of the direct OpenMetrics.
        assert_eq!(openmetrics_to_text(&om), text);
    }

    #[test]
    fn text_names_counters_with_total_and_drops_units_and_eof() {
        let om = "# HELP a_seconds Time spent.\n\
                  # TYPE a_seconds gauge\n\
                  # UNIT a_seconds seconds\n\
                  a_seconds 0.25\n\
                  # HELP b Things done.\n\
                  # TYPE b counter\n\
                  b_total{k=\"v\"} 3\n\
                  # HELP h Latency.\n\
                  # TYPE h histogram\n\
                  h_bucket{le=\"+Inf\"} 1\n\
                  h_sum 1.5\n\
                  h_count 1\n\
                  # EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_seconds Time spent.\n\
             # TYPE a_seconds gauge\n\
             a_seconds 0.25\n\
             # HELP b_total Things done.\n\
             # TYPE b_total counter\n\
             b_total{k=\"v\"} 3\n\
             # HELP h Latency.\n\
             # TYPE h histogram\n\
             h_bucket{le=\"+Inf\"} 1\n\
             h_sum 1.5\n\
             h_count 1\n"
        );
        assert_eq!(openmetrics_to_text("# EOF\n"), "");
    }
}
