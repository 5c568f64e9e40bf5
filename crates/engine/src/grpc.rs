//! gRPC status codes and method names, as the protocol and the conventions
//! name them: never a raw path in a span name or a metric label.

use std::sync::Arc;

use http::HeaderMap;

/// A gRPC status code. [`name`](Self::name) is the text the semantic
/// conventions put in `rpc.response.status_code` and `error.type`.
///
/// ```
/// use looptel_engine::GrpcCode;
/// assert_eq!(GrpcCode::from_i32(4), Some(GrpcCode::DeadlineExceeded));
/// assert_eq!(GrpcCode::DeadlineExceeded.name(), "DEADLINE_EXCEEDED");
/// assert_eq!(GrpcCode::parse(b"14"), Some(GrpcCode::Unavailable));
/// assert_eq!(GrpcCode::parse(b"+14"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    /// 0
    Ok,
    /// 1
    Cancelled,
    /// 2
    Unknown,
    /// 3
    InvalidArgument,
    /// 4
    DeadlineExceeded,
    /// 5
    NotFound,
    /// 6
    AlreadyExists,
    /// 7
    PermissionDenied,
    /// 8
    ResourceExhausted,
    /// 9
    FailedPrecondition,
    /// 10
    Aborted,
    /// 11
    OutOfRange,
    /// 12
    Unimplemented,
    /// 13
    Internal,
    /// 14
    Unavailable,
    /// 15
    DataLoss,
    /// 16
    Unauthenticated,
}

/// The codes in numeric order: `ALL[n]` has code `n`.
const ALL: [GrpcCode; 17] = [
    GrpcCode::Ok,
    GrpcCode::Cancelled,
    GrpcCode::Unknown,
    GrpcCode::InvalidArgument,
    GrpcCode::DeadlineExceeded,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::ResourceExhausted,
    GrpcCode::FailedPrecondition,
    GrpcCode::Aborted,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The header (or trailer) that carries the status.
pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

impl GrpcCode {
    /// The code with number `code`; `None` outside 0–16.
    pub fn from_i32(code: i32) -> Option<Self> {
        usize::try_from(code).ok().and_then(|i| ALL.get(i)).copied()
    }

    /// The code's number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The name: `OK`, `DEADLINE_EXCEEDED`, ….
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// A `grpc-status` value: one or two ASCII digits, nothing else.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let n = match value {
            [d] if d.is_ascii_digit() => i32::from(d - b'0'),
            [t, u] if t.is_ascii_digit() && u.is_ascii_digit() && *t != b'0' => {
                i32::from(t - b'0') * 10 + i32::from(u - b'0')
            }
            _ => return None,
        };
        Self::from_i32(n)
    }

    /// The `grpc-status` of `headers` (response headers or trailers):
    /// `None` when absent, [`Unknown`](Self::Unknown) when unreadable.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(&GRPC_STATUS)
            .map(|v| Self::parse(v.as_bytes()).unwrap_or(Self::Unknown))
    }

    /// The code for an HTTP status received without a `grpc-status`, by
    /// gRPC's "HTTP to gRPC status code mapping".
    pub fn from_http(status: http::StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502..=504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

impl std::fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The header a caller's deadline travels in.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// A `grpc-timeout` value: at most 8 ASCII digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`), as gRPC over HTTP/2 defines it; `None` otherwise.
///
/// ```
/// use std::time::Duration;
/// use looptel_engine::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout(b"50m"), Some(Duration::from_millis(50)));
/// assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_grpc_timeout(b"123456789S"), None);
/// assert_eq!(parse_grpc_timeout(b"5x"), None);
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0_u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A call's deadline, kept in its context: a call dropped after it is
/// ended DEADLINE_EXCEEDED rather than CANCELLED (tonic's server drops the
/// handler when the caller's `grpc-timeout` passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(pub std::time::Instant);

impl Deadline {
    /// The deadline a request's `grpc-timeout` sets, from now.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let timeout = parse_grpc_timeout(headers.get(&GRPC_TIMEOUT)?.as_bytes())?;
        std::time::Instant::now().checked_add(timeout).map(Self)
    }

    /// Whether it has passed.
    pub fn passed(self) -> bool {
        std::time::Instant::now() >= self.0
    }
}

/// `rpc.method` for methods the server does not know.
pub const OTHER_METHOD: &str = "_OTHER";

/// The services a server knows (tonic's `NamedService::NAME`s): a path
/// whose service is not among them is `_OTHER`. The default knows none in
/// particular: every path shaped like a method is one, and a call the
/// router answered UNIMPLEMENTED is `_OTHER` (see [`rpc_method_label`]).
#[derive(Clone, Debug, Default)]
pub struct RpcServices(Option<Arc<[Box<str>]>>);

impl RpcServices {
    /// Exactly these services.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(Some(
            names
                .into_iter()
                .map(|s| s.into().into_boxed_str())
                .collect(),
        ))
    }

    /// Whether a list was given.
    pub fn is_listed(&self) -> bool {
        self.0.is_some()
    }

    fn knows(&self, service: &str) -> bool {
        self.0
            .as_deref()
            .is_none_or(|known| known.iter().any(|k| **k == *service))
    }
}

/// The full method of a gRPC path, `package.Service/Method` (without the
/// leading `/`), when the path is one and its service is known; `None`
/// means `_OTHER`.
///
/// ```
/// use looptel_engine::rpc_method;
/// assert_eq!(rpc_method("/inventory.v1.StockService/ReserveItem"), Some("inventory.v1.StockService/ReserveItem"));
/// assert_eq!(rpc_method("/orders/42"), Some("orders/42")); // shaped like one: only a known-services list tells
/// assert_eq!(rpc_method("/a/b/c"), None);
/// assert_eq!(rpc_method("/"), None);
/// ```
pub fn rpc_method(path: &str) -> Option<&str> {
    method_of(path, &RpcServices::default())
}

/// The bytes a service or method name may hold: ASCII graphic, not `/`.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_graphic() && b != b'/' as usize;
        b += 1;
    }
    t
};

/// [`rpc_method`] with a list of known services.
pub fn method_of<'a>(path: &'a str, services: &RpcServices) -> Option<&'a str> {
    let full = path.strip_prefix('/')?;
    // One pass: the one `/` found, every other byte checked by a table
    // (a test per byte of each half cost ~450 instructions a call).
    let bytes = full.as_bytes();
    let mut slash = None;
    for (i, &b) in bytes.iter().enumerate() {
        if !NAME_BYTE[usize::from(b)] {
            if b != b'/' || slash.is_some() {
                return None;
            }
            slash = Some(i);
        }
    }
    let slash = slash?;
    let (service, method) = (&full[..slash], &full[slash + 1..]);
    let shaped = |s: &str| !s.is_empty() && s.len() <= 256;
    (shaped(service) && shaped(method) && services.knows(service)).then_some(full)
}

/// The `rpc.method` of a call that ended as `end` says: its method, or
/// `_OTHER` when the path names none (or an unknown service), or — without a
/// list of known services — when the call was UNIMPLEMENTED (the router's
/// answer to a method it does not have). Never the raw path.
pub fn rpc_method_label<'a>(
    path: &'a str,
    services: &RpcServices,
    end: &crate::Classification,
) -> &'a str {
    match method_of(path, services) {
        Some(_) if !services.is_listed() && end.grpc_code() == Some(GrpcCode::Unimplemented) => {
            OTHER_METHOD
        }
        Some(method) => method,
        None => OTHER_METHOD,
    }
}

#[cfg(test)]
mod method_tests {
    use super::*;

    /// What `method_of` said before its one-pass scan, for comparison.
    fn reference<'a>(path: &'a str, services: &RpcServices) -> Option<&'a str> {
        let full = path.strip_prefix('/')?;
        let (service, method) = full.split_once('/')?;
        let shaped = |s: &str| {
            !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        };
        (shaped(service) && shaped(method) && services.knows(service)).then_some(full)
    }

    #[test]
    fn the_one_pass_scan_agrees_with_the_split_and_checks() {
        let long = format!("/{}/M", "s".repeat(257));
        let paths = [
            "/a.B/C",
            "/a.B/C/",
            "//C",
            "/a.B/",
            "/a B/C",
            "/a.B/C\u{e9}",
            "a.B/C",
            "/",
            "",
            "/a.B/C d",
            "/a.B//C",
            "/inventory.v1.StockService/ReserveItem",
            "/a\tb/c",
            long.as_str(),
        ];
        for services in [RpcServices::default(), RpcServices::new(["a.B"])] {
            for p in paths {
                assert_eq!(method_of(p, &services), reference(p, &services), "{p:?}");
            }
        }
    }

    #[test]
    fn only_known_services_name_a_method() {
        let known = RpcServices::new(["inventory.v1.StockService"]);
        assert_eq!(
            method_of("/inventory.v1.StockService/ReserveItem", &known),
            Some("inventory.v1.StockService/ReserveItem")
        );
        for other in [
            "/evil.Service/Method",
            "/inventory.v1.StockService/",
            "inventory.v1.StockService/ReserveItem",
            "/inventory.v1.StockService/Reserve/Item",
            "/inventory.v1.StockService/Résérve",
        ] {
            assert_eq!(method_of(other, &known), None, "{other}");
        }
        let long = format!("/s/{}", "m".repeat(300));
        assert_eq!(rpc_method(&long), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_number_name_and_header() {
        for (n, code) in ALL.iter().enumerate() {
            let n = i32::try_from(n).expect("small");
            assert_eq!(code.as_i32(), n);
            assert_eq!(GrpcCode::from_i32(n), Some(*code));
            assert_eq!(GrpcCode::parse(n.to_string().as_bytes()), Some(*code));
        }
        assert_eq!(GrpcCode::Unauthenticated.name(), "UNAUTHENTICATED");
        for bad in [&b""[..], b"17", b"-1", b"01", b"1 ", b"\xff", b"100"] {
            assert_eq!(GrpcCode::parse(bad), None, "{bad:?}");
        }
        assert_eq!(GrpcCode::from_i32(17), None);
    }

    #[test]
    fn an_unreadable_status_is_unknown_and_a_missing_one_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(GrpcCode::from_headers(&h), None);
        h.insert(GRPC_STATUS, http::HeaderValue::from_static("x"));
        assert_eq!(GrpcCode::from_headers(&h), Some(GrpcCode::Unknown));
    }
}
