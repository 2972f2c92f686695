//! Prometheus's HTTP API, read the way the tests need it: instant and range
//! queries returning the `result` array.

use std::fmt::Write as _;

use serde_json::Value;

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// GET `/api/v1/<api>?<params>` on the Prometheus at 127.0.0.1:`port`:
/// `Ok(data.result)` on success, `Err((status, body))` otherwise (status 0
/// for a transport error).
pub fn prom_api(
    port: u16,
    api: &str,
    params: &[(&str, String)],
) -> Result<Vec<Value>, (u16, String)> {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/{api}?{}", q.join("&"));
    let (status, body) = crate::try_http_get(&url).map_err(|e| (0, e))?;
    if status != 200 {
        return Err((status, body));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| (status, format!("{e}: {body}")))?;
    if v["status"] != "success" {
        return Err((status, body));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn urlencode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(
            urlencode(r#"up{job="x"} > 0.5"#),
            "up%7Bjob%3D%22x%22%7D%20%3E%200.5"
        );
        assert_eq!(urlencode("a-b_c.d~e"), "a-b_c.d~e");
    }
}
