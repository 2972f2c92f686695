//! The exposition both daemons serve on `/metrics`: which format a scraper
//! gets for its `Accept` header ([`Format::negotiate`]), the content type
//! each format is served with, and the classic Prometheus text format
//! (0.0.4) rendered from an OpenMetrics exposition ([`openmetrics_to_text`]).
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
