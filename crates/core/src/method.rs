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
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// The normalised value of methods the conventions do not know.
pub const OTHER_METHOD: &str = "_OTHER";
