//! The OpenTelemetry-to-Prometheus naming rule.

/// The Prometheus suffix of a unit: `s` → `seconds`; `None` for
/// annotations such as `{request}`, which are not units.
pub fn unit_suffix(unit: &str) -> Option<&'static str> {
    match unit {
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "1" => Some("ratio"),
        _ => None,
    }
}

/// A metric's Prometheus name (without a counter's `_total`): dots and
/// other invalid characters become underscores, the unit's suffix is added
/// once. Returns the name and the unit as exposed.
///
/// ```
/// use looptel_catalogue::prometheus::metric_name;
/// assert_eq!(metric_name("http.server.request.duration", "s").0, "http_server_request_duration_seconds");
/// assert_eq!(metric_name("http.server.active_requests", "{request}").0, "http_server_active_requests");
/// assert_eq!(metric_name("job.duration_seconds", "s").0, "job_duration_seconds");
/// ```
pub fn metric_name(name: &str, unit: &str) -> (String, Option<&'static str>) {
    let base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match unit_suffix(unit) {
        Some(u) if !(base.ends_with(u) && base[..base.len() - u.len()].ends_with('_')) => {
            (format!("{base}_{u}"), Some(u))
        }
        other => (base, other),
    }
}

/// A label key's Prometheus name: `http.request.method` →
/// `http_request_method`.
pub fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
