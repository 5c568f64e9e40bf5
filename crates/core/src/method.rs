/// The `http.request.method` value of a method: the method itself when the
/// conventions know it, `_OTHER` otherwise (then the span also carries
/// `http.request.method_original`, and is named `HTTP`).
///
/// ```
/// use looptel_core::normalize_method;
/// use http::Method;
///
/// assert_eq!(normalize_method(&Method::GET), "GET");
/// assert_eq!(normalize_method(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
/// assert_eq!(normalize_method(&Method::from_bytes(b"get").unwrap()), "_OTHER");
/// ```
pub fn normalize_method(method: &http::Method) -> &'static str {
    METHODS[method_index(method)]
}

/// The values `http.request.method` takes, [`OTHER_METHOD`] last.
pub const METHODS: [&str; 10] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    OTHER_METHOD,
];

/// The index in [`METHODS`] of a method's normalised value, for tables
/// kept per method (`METHODS[method_index(m)] == normalize_method(m)`).
pub fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::CONNECT => 5,
        http::Method::OPTIONS => 6,
        http::Method::TRACE => 7,
        http::Method::PATCH => 8,
        _ => 9,
    }
}

/// The normalised value of methods the conventions do not know.
pub const OTHER_METHOD: &str = "_OTHER";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_name_the_normalised_method() {
        for (i, m) in METHODS.iter().enumerate().take(METHODS.len() - 1) {
            let method = http::Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(method_index(&method), i, "{m}");
        }
        for m in ["get", "BREW", "PURGE"] {
            let method = http::Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(normalize_method(&method), OTHER_METHOD, "{m}");
        }
    }
}
