//! `http::HeaderMap` as a propagation carrier.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};

/// Reads context from HTTP headers.
///
/// Unlike a carrier that skips values that are not visible ASCII, this one
/// keeps their count: a non-ASCII value reads as U+FFFD, which no
/// propagator accepts, so a second, garbled `traceparent` line still makes
/// the header invalid instead of vanishing.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

const GARBLED: &str = "\u{fffd}";

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.to_str().unwrap_or(GARBLED))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .map(|v| v.to_str().unwrap_or(GARBLED))
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// Writes context into HTTP headers, replacing any value already there, so
/// each field is written exactly once. Values that are not valid header
/// values are skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbled_lines_are_counted_not_skipped() {
        let mut h = HeaderMap::new();
        h.append("traceparent", HeaderValue::from_static("00-a-b-01"));
        h.append(
            "traceparent",
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque"),
        );
        let e = HeaderExtractor(&h);
        assert_eq!(e.get_all("traceparent"), Some(vec!["00-a-b-01", GARBLED]));
        assert_eq!(e.get_all("tracestate"), None);
    }

    #[test]
    fn injector_replaces_existing_values() {
        let mut h = HeaderMap::new();
        h.append("traceparent", HeaderValue::from_static("old-1"));
        h.append("traceparent", HeaderValue::from_static("old-2"));
        HeaderInjector(&mut h).set("traceparent", "new".to_owned());
        HeaderInjector(&mut h).set("bad", "line\nbreak".to_owned());
        assert_eq!(h.get_all("traceparent").iter().count(), 1);
        assert_eq!(h["traceparent"], "new");
        assert!(h.get("bad").is_none());
    }
}
