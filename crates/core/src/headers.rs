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

/// The longest message header value read as text: the W3C Baggage limit
/// (8192 bytes), which every propagation field stays within. A longer
/// value reads as garbled, so it is counted but never parsed.
pub const MAX_MESSAGE_HEADER_VALUE: usize = 8192;

/// Reads context from message headers — Kafka record headers, AMQP header
/// tables, NATS headers — given as `(key, bytes)` pairs in order.
///
/// Keys match without regard to ASCII case. A value longer than
/// [`MAX_MESSAGE_HEADER_VALUE`] reads as U+FFFD, which no propagator
/// accepts; a value that is not UTF-8 reads with its bad bytes as U+FFFD
/// — so a garbled `traceparent` is invalid, and a baggage member with a bad
/// byte is skipped alone, exactly as [`Propagator::extract_message`]
/// (which reads the bytes) decides. A repeated field with one garbled line
/// stays invalid instead of the line vanishing, as with
/// [`HeaderExtractor`]. A header without a value reads as empty.
///
/// [`Propagator::extract_message`]: crate::Propagator::extract_message
///
/// ```
/// use looptel_core::MessageHeaderExtractor;
/// use opentelemetry::propagation::Extractor;
///
/// let headers = MessageHeaderExtractor::new([
///     ("TraceParent", Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])),
///     ("baggage", Some(&b"a=1,b=\xff"[..])),
/// ]);
/// assert_eq!(headers.get("traceparent").map(str::len), Some(55));
/// assert_eq!(headers.get("baggage"), Some("a=1,b=\u{fffd}"));
/// ```
#[derive(Debug, Default)]
pub struct MessageHeaderExtractor<'a> {
    headers: Vec<Header<'a>>,
}

#[derive(Debug)]
struct Header<'a> {
    key: &'a str,
    value: Option<&'a [u8]>,
    /// A value that is not UTF-8, read lossily (its bad bytes as U+FFFD) on
    /// its first read by the generic path (the W3C fields are read as
    /// bytes, so most messages never check), so that path skips what the
    /// byte path skips and no more.
    lossy: std::sync::OnceLock<Box<str>>,
}

impl Header<'_> {
    fn text(&self) -> &str {
        match self.value {
            None => "",
            Some(bytes) if bytes.len() > MAX_MESSAGE_HEADER_VALUE => GARBLED,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => self
                    .lossy
                    .get_or_init(|| String::from_utf8_lossy(bytes).into()),
            },
        }
    }
}

impl<'a> MessageHeaderExtractor<'a> {
    /// The headers, in order.
    pub fn new(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Self {
        Self {
            headers: headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value,
                    lossy: std::sync::OnceLock::new(),
                })
                .collect(),
        }
    }
}

impl MessageHeaderExtractor<'_> {
    /// The values of `key` as bytes, in order; an oversized one as a
    /// garbled byte (invalid wherever it is read).
    pub(crate) fn raw<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.key.eq_ignore_ascii_case(key))
            .map(|h| match h.value {
                None => &[][..],
                Some(bytes) if bytes.len() > MAX_MESSAGE_HEADER_VALUE => GARBLED_BYTES,
                Some(bytes) => bytes,
            })
    }
}

/// Not UTF-8: rejected by every W3C parser.
const GARBLED_BYTES: &[u8] = &[0xff];

impl Extractor for MessageHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))
            .map(Header::text)
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.iter().map(|h| h.key).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(key))
            .map(Header::text)
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_headers_count_garbled_and_oversized_values() {
        let big = vec![b'a'; MAX_MESSAGE_HEADER_VALUE + 1];
        let h = MessageHeaderExtractor::new([
            ("traceparent", Some(&b"00-a-b-01"[..])),
            ("TRACEPARENT", Some(&b"\xff"[..])),
            ("baggage", Some(big.as_slice())),
            ("empty", None),
        ]);
        assert_eq!(h.get_all("traceparent"), Some(vec!["00-a-b-01", GARBLED]));
        assert_eq!(h.get("baggage"), Some(GARBLED));
        assert_eq!(h.get("empty"), Some(""));
        assert_eq!(h.get("tracestate"), None);
        assert_eq!(h.keys(), ["traceparent", "TRACEPARENT", "baggage", "empty"]);
    }

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
