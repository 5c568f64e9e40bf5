//! Semantic-convention attributes read from requests and responses.

use http::{Method, Uri};
use looptel_core::OTHER_METHOD;
use opentelemetry::KeyValue;
use opentelemetry_semantic_conventions::attribute::{
    HTTP_REQUEST_METHOD, HTTP_REQUEST_METHOD_ORIGINAL,
};

/// `http.request.method` (and `_original`, the method itself, when
/// normalised to `_OTHER`); returns `normalised` for the span name.
pub(crate) fn push_method(
    attrs: &mut Vec<KeyValue>,
    normalised: &'static str,
    method: &Method,
) -> &'static str {
    attrs.push(KeyValue::new(HTTP_REQUEST_METHOD, normalised));
    if normalised == OTHER_METHOD {
        attrs.push(KeyValue::new(
            HTTP_REQUEST_METHOD_ORIGINAL,
            method.as_str().to_owned(),
        ));
    }
    normalised
}

/// The span name's method part: `HTTP` for `_OTHER`.
pub(crate) fn name_method(normalised: &'static str) -> &'static str {
    if normalised == OTHER_METHOD {
        "HTTP"
    } else {
        normalised
    }
}

/// The span name `{method} {route}` (built by hand: `format!` costs several
/// times as much on every sampled request).
pub(crate) fn span_name(normalised: &'static str, route: &str) -> String {
    let method = name_method(normalised);
    let mut name = String::with_capacity(method.len() + 1 + route.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(route);
    name
}

/// `url.full` without user name or password, and with the values of
/// personal or secret query parameters `REDACTED` (as `url.query` is).
pub(crate) fn redacted_full_url(uri: &Uri) -> String {
    let query = uri.query().map(looptel_core::pii::redact_query);
    let credentials = uri.authority().is_some_and(|a| a.as_str().contains('@'));
    if !credentials && !matches!(query, Some(std::borrow::Cow::Owned(_))) {
        return uri.to_string();
    }
    let mut out = String::with_capacity(uri.to_string().len());
    if let Some(s) = uri.scheme_str() {
        out.push_str(s);
        out.push_str("://");
    }
    if let Some(a) = uri.authority() {
        out.push_str(a.as_str().rsplit('@').next().unwrap_or_default());
    }
    out.push_str(uri.path());
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_query_parameters_are_redacted_in_url_full() {
        let uri: Uri = "https://api.example.com/v1/users?page=2&email=ada%40example.com"
            .parse()
            .expect("uri");
        assert_eq!(
            redacted_full_url(&uri),
            "https://api.example.com/v1/users?page=2&email=REDACTED"
        );
        let uri: Uri = "http://u:p@h/x?token=abc".parse().expect("uri");
        assert_eq!(redacted_full_url(&uri), "http://h/x?token=REDACTED");
        let plain: Uri = "http://h:8080/x?page=2".parse().expect("uri");
        assert_eq!(redacted_full_url(&plain), "http://h:8080/x?page=2");
    }

    #[test]
    fn credentials_are_stripped_from_url_full() {
        let uri: Uri = "https://user:secret@api.example.com:8443/v1/x?q=1"
            .parse()
            .expect("uri");
        assert_eq!(
            redacted_full_url(&uri),
            "https://api.example.com:8443/v1/x?q=1"
        );
        let uri: Uri = "http://api.example.com/v1".parse().expect("uri");
        assert_eq!(redacted_full_url(&uri), "http://api.example.com/v1");
    }
}
