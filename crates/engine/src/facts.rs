//! What the conventions read off an HTTP request, derived once for spans
//! and metrics alike.

use http::{HeaderMap, Request, Uri, Version, header};
use looptel_core::{METHODS, method_index};
use opentelemetry::KeyValue;
use opentelemetry_semantic_conventions::attribute::{SERVER_ADDRESS, SERVER_PORT};

/// `url.scheme` values, by [`HttpFacts::https`].
pub const SCHEMES: [&str; 2] = ["http", "https"];

/// `network.protocol.version` values, by [`HttpFacts::version_index`]; the
/// last (empty: left out) for a version `http` does not name.
pub const PROTOCOL_VERSIONS: [&str; 6] = ["0.9", "1.0", "1.1", "2", "3", ""];

/// The normalised method, the scheme and the protocol version of a request,
/// as small numbers: the server span and RED metrics read the same values,
/// and tables kept per method or scheme need no lookup.
///
/// ```
/// use looptel_engine::HttpFacts;
///
/// let req = http::Request::builder()
///     .method("BREW")
///     .uri("https://shop.example/orders")
///     .version(http::Version::HTTP_2)
///     .body(())
///     .unwrap();
/// let facts = HttpFacts::of(&req);
/// assert_eq!((facts.method(), facts.scheme(), facts.protocol_version()), ("_OTHER", "https", Some("2")));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HttpFacts {
    method: u8,
    https: bool,
    version: u8,
}

impl HttpFacts {
    /// The facts of `request`.
    #[inline]
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::from_parts(request.method(), request.uri(), request.version())
    }

    /// The facts of a request with this method, URI and version.
    #[inline]
    pub fn from_parts(method: &http::Method, uri: &Uri, version: Version) -> Self {
        let method = method_index(method);
        Self {
            // METHODS has ten entries.
            method: u8::try_from(method).unwrap_or(u8::MAX),
            https: uri.scheme_str() == Some("https"),
            version: match version {
                Version::HTTP_09 => 0,
                Version::HTTP_10 => 1,
                Version::HTTP_11 => 2,
                Version::HTTP_2 => 3,
                Version::HTTP_3 => 4,
                _ => 5,
            },
        }
    }

    /// The index of the normalised method in `looptel_core::METHODS`.
    #[inline]
    pub fn method_index(self) -> usize {
        usize::from(self.method).min(METHODS.len() - 1)
    }

    /// `http.request.method`: the method, or `_OTHER`.
    #[inline]
    pub fn method(self) -> &'static str {
        METHODS[self.method_index()]
    }

    /// Whether the scheme is `https`.
    #[inline]
    pub fn https(self) -> bool {
        self.https
    }

    /// `url.scheme`: `https`, else `http`.
    #[inline]
    pub fn scheme(self) -> &'static str {
        SCHEMES[usize::from(self.https)]
    }

    /// The index in [`PROTOCOL_VERSIONS`].
    #[inline]
    pub fn version_index(self) -> usize {
        usize::from(self.version)
    }

    /// `network.protocol.version`, when the version is a known one.
    #[inline]
    pub fn protocol_version(self) -> Option<&'static str> {
        Some(PROTOCOL_VERSIONS[self.version_index()]).filter(|v| !v.is_empty())
    }
}

/// The matched route template (axum keeps it in an `Arc`: cloning is cheap).
#[cfg(feature = "axum")]
pub type Route = axum::extract::MatchedPath;

/// The matched route template; without axum, none is ever found.
#[cfg(not(feature = "axum"))]
#[derive(Clone, Debug)]
pub struct Route(Box<str>);

#[cfg(not(feature = "axum"))]
impl Route {
    /// The template.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The route template the router matched for `request` (axum's
/// `MatchedPath`, with the `axum` feature), never the raw path.
#[inline]
pub fn matched_route<B>(request: &Request<B>) -> Option<&Route> {
    route_in(request.extensions())
}

/// The route template among a request's extensions.
#[inline]
pub(crate) fn route_in(extensions: &http::Extensions) -> Option<&Route> {
    #[cfg(feature = "axum")]
    {
        extensions.get::<Route>()
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = extensions;
        None
    }
}

/// Sets attributes straight on a span as they come, with no list in
/// between (`Extend<KeyValue>`), for the span a layer fills before it goes
/// into its context.
pub struct AttributesOn<'a>(pub &'a mut dyn opentelemetry::global::ObjectSafeSpan);

impl std::fmt::Debug for AttributesOn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttributesOn")
    }
}

impl Extend<KeyValue> for AttributesOn<'_> {
    #[inline]
    fn extend<I: IntoIterator<Item = KeyValue>>(&mut self, attributes: I) {
        for kv in attributes {
            self.0.set_attribute(kv);
        }
    }
}

/// `server.address` and `server.port` of a request: from the URI's
/// authority (HTTP/2's `:authority`, a client's target), else the `Host`
/// header; the port defaults by scheme.
pub fn server_attributes(uri: &Uri, headers: &HeaderMap, out: &mut impl Extend<KeyValue>) {
    let split = match uri.authority() {
        Some(a) => Some((a.host(), a.port_u16())),
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(split_host),
    };
    if let Some((host, port)) = split {
        out.extend([KeyValue::new(SERVER_ADDRESS, host.to_owned())]);
        let port = port.or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        if let Some(p) = port {
            out.extend([KeyValue::new(SERVER_PORT, i64::from(p))]);
        }
    }
}

/// The bytes an authority holds besides `%`, `:`, `[`, `]` and `@`: a
/// table, as `Authority`'s own, since a test per byte costs ~50 instructions
/// a character.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'-'
                    | b'.'
                    | b';'
                    | b'='
                    | b'_'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// A `Host` header's host and port as `http::uri::Authority` reads them
/// (`None` where it refuses the value), without building one: that copies
/// the header into new `Bytes` first, ~1,000 instructions per sampled
/// request more (`scripts/bench.sh`). The checks are `Authority`'s, in one
/// pass; the one difference is an empty host (`:80`), which sets no
/// attribute here (`host_split_agrees_with_authority`).
fn split_host(value: &str) -> Option<(&str, Option<u16>)> {
    let bytes = value.as_bytes();
    let (mut colons, mut open, mut percent) = (0_u32, false, false);
    // Positions of the last `@`, the first `:` after it, the last `:` and
    // the `]`.
    let (mut at, mut first, mut colon, mut close) = (None, None, None, None);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b if PLAIN[usize::from(b)] => {}
            // Only in userinfo or an IPv6 zone.
            b'%' => percent = true,
            b':' => {
                colons += 1;
                if colons > 8 {
                    return None;
                }
                colon = Some(i);
                first = first.or(Some(i));
            }
            b'[' if !percent && !open => open = true,
            b']' if open && close.is_none() => {
                close = Some(i);
                colons = 0;
                percent = false;
            }
            b'@' => {
                at = Some(i);
                first = None;
                colons = 0;
                percent = false;
            }
            _ => return None,
        }
    }
    if open != close.is_some() || colons > 1 || percent || at.is_some_and(|i| i + 1 == bytes.len())
    {
        return None;
    }
    // The host follows the last `@`: in brackets, or up to the first `:`.
    let start = at.map_or(0, |i| i + 1);
    let end = match close {
        Some(i) if bytes.get(start) == Some(&b'[') => i + 1,
        _ => first.unwrap_or(bytes.len()),
    };
    let host = value.get(start..end).filter(|h| !h.is_empty())?;
    let port = colon.and_then(|i| value[i + 1..].parse::<u16>().ok());
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_split_agrees_with_authority() {
        let mut values: Vec<String> = [
            "shop.example",
            "shop.example:8080",
            "shop.example:",
            "shop.example:0",
            "shop.example:65535",
            "shop.example:65536",
            "shop.example:99999",
            "shop.example:123456",
            "shop.example:80a",
            "shop.example:-1",
            "a:b:c",
            "::1",
            "[::1]",
            "[::1]:8443",
            "[::1]8443",
            "[::1",
            "::1]",
            "[fe80::1%25eth0]:80",
            "[v1.x]",
            "[]",
            "user@shop.example:81",
            "user:pw@shop.example",
            "@shop.example",
            "a@b@c",
            "",
            ":",
            ":80",
            "shop example",
            "shop/example",
            "shop?x",
            "shop#x",
            "ex%41mple",
            "EXAMPLE.com",
            "xn--bcher-kva.example",
            "under_score.example",
            "tilde~.example",
            "sub!$&'()*+,;=.example",
            "[::1]:",
            "[::1]:x",
            "\"quoted\"",
            "a\\b",
            "a{b}",
            "a|b",
            "a^b",
            "a`b",
            "a<b>",
            "shop.example:+80",
            "a:1:2:3:4:5:6:7:8",
            "[1:2:3:4:5:6:7:8]:9",
            "[a][b]",
            "a]b",
            "a[b]",
            "u%40x@shop.example",
            "shop.example@",
            "é.example",
        ]
        .map(str::to_owned)
        .to_vec();
        values.push(format!("{}.example", "a".repeat(300)));
        // And 200,000 strings made of the characters that matter.
        let alphabet = b"a1.:[]@%/?#-_~! \"Z";
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200_000 {
            let mut v = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for i in 0..(x % 12) {
                v.push(char::from(
                    alphabet[((x >> (4 + 5 * i)) % alphabet.len() as u64) as usize],
                ));
            }
            values.push(v);
        }
        assert_eq!(split_host(":80"), None);
        assert_eq!(split_host(":"), None);
        let differ: Vec<_> = values
            .iter()
            // An empty host sets no attribute here; `Authority` takes it.
            .filter(|v| !v.starts_with(':') && !v.contains("@:"))
            .filter_map(|v| {
                let theirs = v
                    .parse::<http::uri::Authority>()
                    .ok()
                    .map(|a| (a.host().to_owned(), a.port_u16()));
                let ours = split_host(v).map(|(h, p)| (h.to_owned(), p));
                (ours != theirs).then(|| format!("{v:?}: ours {ours:?}, Authority's {theirs:?}"))
            })
            .collect();
        assert!(differ.is_empty(), "{differ:#?}");
    }

    #[test]
    fn server_address_from_uri_or_host_header() {
        let mut attrs = Vec::new();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "shop.example:8080".parse().expect("host"));
        server_attributes(&"/orders".parse().expect("uri"), &h, &mut attrs);
        assert_eq!(attrs[0].value.as_str(), "shop.example");
        assert_eq!(attrs[1].value, opentelemetry::Value::I64(8080));
        let mut attrs = Vec::new();
        server_attributes(
            &"https://x.example/a".parse().expect("uri"),
            &HeaderMap::new(),
            &mut attrs,
        );
        assert_eq!(attrs[1].value, opentelemetry::Value::I64(443));
    }

    #[test]
    fn every_version_and_scheme() {
        for (v, expected) in [
            (Version::HTTP_09, Some("0.9")),
            (Version::HTTP_10, Some("1.0")),
            (Version::HTTP_11, Some("1.1")),
            (Version::HTTP_2, Some("2")),
            (Version::HTTP_3, Some("3")),
        ] {
            let req = Request::builder().version(v).body(()).expect("req");
            assert_eq!(HttpFacts::of(&req).protocol_version(), expected);
        }
        let plain = Request::builder().uri("/x").body(()).expect("req");
        assert_eq!(HttpFacts::of(&plain).scheme(), "http");
        for m in METHODS {
            if let Ok(method) = http::Method::from_bytes(m.as_bytes()) {
                let req = Request::builder().method(method).body(()).expect("req");
                assert_eq!(HttpFacts::of(&req).method(), m);
            }
        }
    }
}
