//! Reading series out of a Prometheus text exposition (a `/metrics` body).

use std::collections::HashMap;

/// One sample: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label name → unescaped value.
    pub labels: HashMap<String, String>,
    /// The sample value.
    pub value: f64,
}

impl Series {
    /// The value of label `name` ("" when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Every sample of `metric` in `text` (comments and other metrics skipped;
/// a line that does not parse is skipped too).
pub fn series(text: &str, metric: &str) -> Vec<Series> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (labels, rest) = match rest.strip_prefix('{') {
                Some(r) => parse_labels(r)?,
                None if rest.starts_with(' ') => (HashMap::new(), rest),
                None => return None,
            };
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some(Series { labels, value })
        })
        .collect()
}

/// The samples of `metric` whose label `key` equals `value`.
pub fn series_with(text: &str, metric: &str, key: &str, value: &str) -> Vec<Series> {
    series(text, metric)
        .into_iter()
        .filter(|s| s.label(key) == value)
        .collect()
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(HashMap<String, String>, &str)> {
    let mut labels = HashMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_string(), value);
        s = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP pidwarden_container_tasks tasks
# TYPE pidwarden_container_tasks gauge
pidwarden_container_tasks{id="abc",name="web"} 4
pidwarden_container_tasks{id="def",name=""} 1
pidwarden_container_tasks_other{id="abc"} 9
pidwarden_container_process_group_processes{id="abc",name="web",command="sh -c \"a, b\"\\x"} 3
pidwarden_runtime_up{runtime="docker"} 0
pidwarden_containers 2
"#;

    #[test]
    fn samples_are_found_by_metric_and_label() {
        let t = series(TEXT, "pidwarden_container_tasks");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].label("name"), "web");
        assert_eq!(t[0].value, 4.0);
        let d = series_with(TEXT, "pidwarden_container_tasks", "id", "def");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].label("name"), "");
        let g = series(TEXT, "pidwarden_container_process_group_processes");
        assert_eq!(g[0].label("command"), r#"sh -c "a, b"\x"#);
        assert_eq!(g[0].value, 3.0);
        let up = series_with(TEXT, "pidwarden_runtime_up", "runtime", "docker");
        assert_eq!(up[0].value, 0.0);
        assert_eq!(series(TEXT, "pidwarden_containers")[0].value, 2.0);
        assert!(series(TEXT, "pidwarden_missing").is_empty());
    }
}
