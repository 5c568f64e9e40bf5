//! One classifier: how a request, call or message ended.

use std::borrow::Cow;

use http::{HeaderMap, Response, StatusCode};
use looptel_core::{ErrorOutcome, Outcome};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanRef, Status};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE, RPC_RESPONSE_STATUS_CODE,
};

use crate::GrpcCode;

/// The protocol's own status of an ended request, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolStatus {
    /// No status: the service failed without answering, or the protocol
    /// has none (messaging).
    None,
    /// An HTTP response status.
    Http(StatusCode),
    /// A gRPC status code.
    Grpc(GrpcCode),
}

/// How a request, call or message ended: the one result that spans,
/// metrics, logs and hooks read.
///
/// - [`outcome`](Self::outcome): success, business error (the caller's
///   problem: Unset span status, WARN) or failure (the system's: Error
///   status, ERROR, an error in RED metrics and availability SLOs);
/// - [`status`](Self::status): the protocol's own status;
/// - [`error_type`](Self::error_type): for failures, a low-cardinality class
///   — the one given, else the status (`"503"`, `"UNAVAILABLE"`).
///
/// ```
/// use http::StatusCode;
/// use looptel_core::Outcome;
/// use looptel_engine::{Classification, ProtocolStatus};
///
/// let c = Classification::new(Outcome::Failure, ProtocolStatus::Http(StatusCode::BAD_GATEWAY));
/// assert_eq!(c.error_type(), Some("502"));
/// let c = Classification::new(Outcome::Failure, ProtocolStatus::None).with_error_type("timeout");
/// assert_eq!(c.error_type(), Some("timeout"));
/// ```
///
/// Sixteen bytes: what is carried through every request's future and body
/// is the outcome and the status; a failure's own class and description
/// live behind one allocation, made on error paths only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    outcome: Outcome,
    status: ProtocolStatus,
    detail: Option<Box<Detail>>,
}

/// A failure's class and description, when given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Detail {
    error_type: Option<Cow<'static, str>>,
    message: Option<Cow<'static, str>>,
}

impl Classification {
    /// An ended request with this outcome and status.
    pub fn new(outcome: Outcome, status: ProtocolStatus) -> Self {
        Self {
            outcome,
            status,
            detail: None,
        }
    }

    /// Sets the error class (`timeout`, a type name), used for failures.
    #[must_use]
    pub fn with_error_type(mut self, error_type: impl Into<Cow<'static, str>>) -> Self {
        self.detail.get_or_insert_default().error_type = Some(error_type.into());
        self
    }

    /// Sets the description the span's Error status carries.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.detail.get_or_insert_default().message = Some(message.into());
        self
    }

    fn given_error_type(&self) -> Option<&Cow<'static, str>> {
        self.detail.as_ref().and_then(|d| d.error_type.as_ref())
    }

    /// The same status, now a failure of class `error_type` (a body that
    /// broke after a good head).
    #[must_use]
    pub fn into_failure(
        self,
        error_type: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            outcome: Outcome::Failure,
            ..self
        }
        .with_error_type(error_type)
        .with_message(message)
    }

    /// Success, business error or failure.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether this counts as an error: span status Error, an error in RED
    /// metrics and SLOs.
    pub fn is_error(&self) -> bool {
        self.outcome.is_error()
    }

    /// The protocol's status.
    pub fn status(&self) -> ProtocolStatus {
        self.status
    }

    /// The HTTP status, if this was an HTTP response.
    pub fn http_status(&self) -> Option<StatusCode> {
        match self.status {
            ProtocolStatus::Http(s) => Some(s),
            _ => None,
        }
    }

    /// The gRPC status code, if this was a gRPC call.
    pub fn grpc_code(&self) -> Option<GrpcCode> {
        match self.status {
            ProtocolStatus::Grpc(c) => Some(c),
            _ => None,
        }
    }

    /// `error.type`: set for failures only — the class given, else the
    /// status (`"500"`, `"INTERNAL"`), else `_OTHER`.
    pub fn error_type(&self) -> Option<&str> {
        if !self.is_error() {
            return None;
        }
        Some(match (self.given_error_type(), &self.status) {
            (Some(e), _) => e,
            (None, ProtocolStatus::Http(s)) => s.as_str(),
            (None, ProtocolStatus::Grpc(c)) => c.name(),
            (None, ProtocolStatus::None) => "_OTHER",
        })
    }

    /// The description of a failure, if one was given.
    pub fn message(&self) -> Option<&str> {
        self.detail.as_ref().and_then(|d| d.message.as_deref())
    }

    /// Records the result on `span`: the status attribute
    /// (`http.response.status_code` or `rpc.response.status_code`), and for
    /// failures `error.type` and status Error.
    #[inline]
    pub fn record(&self, span: &SpanRef<'_>) {
        match self.status {
            ProtocolStatus::Http(s) => span.set_attribute(KeyValue::new(
                HTTP_RESPONSE_STATUS_CODE,
                i64::from(s.as_u16()),
            )),
            ProtocolStatus::Grpc(c) => {
                span.set_attribute(KeyValue::new(RPC_RESPONSE_STATUS_CODE, c.name()));
            }
            ProtocolStatus::None => {}
        }
        if let Some(error_type) = self.error_type() {
            let error_type = match self.given_error_type() {
                Some(Cow::Borrowed(s)) => Cow::Borrowed(*s),
                _ => Cow::Owned(error_type.to_owned()),
            };
            span.set_attribute(KeyValue::new(ERROR_TYPE, error_type));
            let description = self.detail.as_ref().and_then(|d| d.message.clone());
            span.set_status(Status::Error {
                description: description.unwrap_or_default(),
            });
        }
    }
}

/// Classifies how a request over HTTP (HTTP itself or gRPC) ended: once,
/// from the response head, or — when the head cannot tell — from the
/// trailers at end of stream. Presets: [`HttpServer`], [`HttpClient`],
/// [`GrpcServer`], [`GrpcClient`].
pub trait Classify: Clone + Send + Sync + 'static {
    /// The result from the response head; `None` to wait for the end of
    /// the stream (a gRPC response without `grpc-status` in its headers).
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Classification>;

    /// The result at end of stream when the head gave none: from the
    /// trailers, or without them.
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Classification;

    /// What a request dropped before it was classified ends as; `None`:
    /// it does not end — its hooks are dropped without
    /// [`end`](crate::HookState::end) (an HTTP client that went away
    /// before the answer).
    fn classify_cancel(&self) -> Option<Classification> {
        None
    }

    /// A response body that failed: the head's result (or the end of
    /// stream's), turned into a failure of class `body_error`.
    fn classify_body_error(&self, head: Option<Classification>, message: String) -> Classification {
        head.unwrap_or_else(|| self.classify_eos(None))
            .into_failure("body_error", message)
    }

    /// The response to send when the service panicked (then classified
    /// like any other); `None` to let the panic go on.
    fn panic_response(&self) -> Option<Response<()>> {
        None
    }
}

/// Classifies a service's error (`Err` from the inner service).
pub trait ClassifyError<E> {
    /// The result of a request whose service failed with `error`.
    fn classify_error(&self, error: &E) -> Classification;
}

/// A low-cardinality class for a transport error, from the
/// `std::io::Error` in its source chain: `timeout`, `connection_refused`, …
/// or `_OTHER`.
pub fn transport_error_class(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::TimedOut => "timeout",
                K::ConnectionRefused => "connection_refused",
                K::ConnectionReset => "connection_reset",
                K::ConnectionAborted => "connection_aborted",
                K::NotConnected => "not_connected",
                K::AddrNotAvailable => "address_not_available",
                K::UnexpectedEof => "unexpected_eof",
                _ => "io_error",
            };
        }
        // Timers name themselves only in text: tower's `Elapsed` ("request
        // timed out"), tonic's `TimeoutExpired` ("Timeout expired").
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("timed out") || text.contains("timeout expired") {
            return "timeout";
        }
        current = e.source();
    }
    "_OTHER"
}

/// A service error named by its type (servers: the error never reached a
/// response).
fn service_error<E>() -> Classification {
    Classification::new(Outcome::Failure, ProtocolStatus::None)
        .with_error_type(std::any::type_name::<E>())
        .with_message("service error")
}

/// A transport error of a client, of class `class`
/// ([`transport_error_class`]).
fn transport_error<E: std::error::Error>(error: &E, class: &'static str) -> Classification {
    Classification::new(Outcome::Failure, ProtocolStatus::None)
        .with_error_type(class)
        .with_message(error.to_string())
}

/// HTTP servers: 5xx is a failure, 4xx a business error (the caller's),
/// a panic is answered with a 500.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpServer;

impl Classify for HttpServer {
    #[inline]
    fn classify_response(&self, status: StatusCode, _: &HeaderMap) -> Option<Classification> {
        let outcome = if status.is_server_error() {
            Outcome::Failure
        } else if status.is_client_error() {
            Outcome::BusinessError
        } else {
            Outcome::Success
        };
        Some(Classification::new(outcome, ProtocolStatus::Http(status)))
    }

    fn classify_eos(&self, _: Option<&HeaderMap>) -> Classification {
        // HTTP classifies at the head; a stream never gets here.
        Classification::new(Outcome::Success, ProtocolStatus::None)
    }

    fn panic_response(&self) -> Option<Response<()>> {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        Some(res)
    }
}

impl<E> ClassifyError<E> for HttpServer {
    fn classify_error(&self, _: &E) -> Classification {
        service_error::<E>()
    }
}

/// HTTP clients: every status from 400 on is a failure; transport errors
/// are failures classed by [`transport_error_class`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpClient;

impl Classify for HttpClient {
    #[inline]
    fn classify_response(&self, status: StatusCode, _: &HeaderMap) -> Option<Classification> {
        let outcome = if status.as_u16() >= 400 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        Some(Classification::new(outcome, ProtocolStatus::Http(status)))
    }

    fn classify_eos(&self, _: Option<&HeaderMap>) -> Classification {
        Classification::new(Outcome::Success, ProtocolStatus::None)
    }
}

impl<E: std::error::Error + 'static> ClassifyError<E> for HttpClient {
    fn classify_error(&self, error: &E) -> Classification {
        transport_error(error, transport_error_class(error))
    }
}

/// The gRPC status of a response head: `grpc-status` in the headers
/// (Trailers-Only), the HTTP status when it is not 200, else `None`.
fn grpc_head(status: StatusCode, headers: &HeaderMap) -> Option<GrpcCode> {
    GrpcCode::from_headers(headers)
        .or_else(|| (status != StatusCode::OK).then(|| GrpcCode::from_http(status)))
}

/// The gRPC status at end of stream: the trailers', else UNKNOWN (a stream
/// that ended without one).
fn grpc_eos(trailers: Option<&HeaderMap>) -> GrpcCode {
    trailers
        .and_then(GrpcCode::from_headers)
        .unwrap_or(GrpcCode::Unknown)
}

/// gRPC servers: failures are UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
/// INTERNAL, UNAVAILABLE and DATA_LOSS; other non-OK codes are the
/// caller's (business errors); the status is read from the head
/// (Trailers-Only) or the trailers; a call dropped before its status is
/// CANCELLED (the client went away: not an error); a panic is answered
/// with INTERNAL.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcServer;

impl GrpcServer {
    /// The result of a call that ended with `code`.
    pub fn classify_code(code: GrpcCode) -> Classification {
        use GrpcCode as G;
        let outcome = match code {
            G::Ok => Outcome::Success,
            G::Unknown
            | G::DeadlineExceeded
            | G::Unimplemented
            | G::Internal
            | G::Unavailable
            | G::DataLoss => Outcome::Failure,
            _ => Outcome::BusinessError,
        };
        Classification::new(outcome, ProtocolStatus::Grpc(code))
    }
}

impl Classify for GrpcServer {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Classification> {
        grpc_head(status, headers).map(Self::classify_code)
    }

    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Classification {
        Self::classify_code(grpc_eos(trailers))
    }

    fn classify_cancel(&self) -> Option<Classification> {
        Some(Self::classify_code(GrpcCode::Cancelled))
    }

    fn panic_response(&self) -> Option<Response<()>> {
        let mut res = Response::new(());
        let h = res.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            crate::grpc::GRPC_STATUS,
            http::HeaderValue::from_static("13"),
        );
        h.insert(
            http::HeaderName::from_static("grpc-message"),
            http::HeaderValue::from_static("handler%20panicked"),
        );
        Some(res)
    }
}

impl<E> ClassifyError<E> for GrpcServer {
    fn classify_error(&self, _: &E) -> Classification {
        service_error::<E>()
    }
}

/// gRPC clients: every non-OK code is a failure, read from the head
/// (Trailers-Only) or the trailers; a call dropped before its status is
/// CANCELLED; transport errors are classed by [`transport_error_class`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClient;

impl GrpcClient {
    /// The result of a call that ended with `code`.
    pub fn classify_code(code: GrpcCode) -> Classification {
        let outcome = if code == GrpcCode::Ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        Classification::new(outcome, ProtocolStatus::Grpc(code))
    }
}

impl Classify for GrpcClient {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Classification> {
        grpc_head(status, headers).map(Self::classify_code)
    }

    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Classification {
        Self::classify_code(grpc_eos(trailers))
    }

    fn classify_cancel(&self) -> Option<Classification> {
        Some(Self::classify_code(GrpcCode::Cancelled))
    }
}

/// A call that timed out missed its deadline: DEADLINE_EXCEEDED, as gRPC
/// names it (tonic hands the caller CANCELLED); other transport errors are
/// classed.
impl<E: std::error::Error + 'static> ClassifyError<E> for GrpcClient {
    fn classify_error(&self, error: &E) -> Classification {
        match transport_error_class(error) {
            "timeout" => {
                Self::classify_code(GrpcCode::DeadlineExceeded).with_message(error.to_string())
            }
            class => transport_error(error, class),
        }
    }
}

/// Message processing: success, or a failure of the processing with the
/// handler's `error.type`.
///
/// By the messaging conventions a `process` span's error means the message
/// was not processed, whoever is to blame: a poison message (a business
/// error by its [`ErrorOutcome`]: the producer's fault) fails its span and
/// counts as failed just as a consumer's own failure does. The outcome
/// still says whose fault it was; the messaging crate reads it to decide
/// between dead-lettering at once and retrying.
///
/// ```
/// use looptel_core::Outcome;
/// use looptel_engine::{ClassifyError, ErrorOutcome, Messaging};
///
/// struct Poison;
/// impl ErrorOutcome for Poison {
///     fn outcome(&self) -> Outcome { Outcome::BusinessError }
///     fn error_type(&self) -> &'static str { "poison_message" }
/// }
/// let c = Messaging.classify_error(&Poison);
/// assert!(c.is_error());
/// assert_eq!(c.error_type(), Some("poison_message"));
/// assert!(!Messaging.success().is_error());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Messaging;

impl Messaging {
    /// A message processed without error.
    pub fn success(&self) -> Classification {
        Classification::new(Outcome::Success, ProtocolStatus::None)
    }

    /// The result of processing: `Ok`, or the error's own outcome.
    pub fn classify<T, E: ErrorOutcome>(&self, result: &Result<T, E>) -> Classification {
        match result {
            Ok(_) => self.success(),
            Err(e) => self.classify_error(e),
        }
    }
}

impl<E: ErrorOutcome> ClassifyError<E> for Messaging {
    fn classify_error(&self, error: &E) -> Classification {
        Classification::new(Outcome::Failure, ProtocolStatus::None)
            .with_error_type(error.error_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).expect("valid")
    }

    #[test]
    fn http_server_fails_on_5xx_only() {
        for code in [100, 200, 204, 301, 399, 400, 404, 499, 500, 503, 599] {
            let c = HttpServer
                .classify_response(status(code), &HeaderMap::new())
                .expect("at the head");
            let expected = match code {
                500.. => Outcome::Failure,
                400.. => Outcome::BusinessError,
                _ => Outcome::Success,
            };
            assert_eq!(c.outcome(), expected, "{code}");
            assert_eq!(c.http_status(), Some(status(code)));
            let error_type = (code >= 500).then(|| code.to_string());
            assert_eq!(c.error_type().map(str::to_owned), error_type, "{code}");
        }
        let e = HttpServer.classify_error(&std::io::Error::other("x"));
        assert_eq!(e.error_type(), Some("std::io::error::Error"));
        assert_eq!(e.status(), ProtocolStatus::None);
        assert_eq!(HttpServer.classify_cancel(), None);
        assert_eq!(
            HttpServer.panic_response().map(|r| r.status()),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }

    #[test]
    fn http_client_fails_from_400() {
        for code in [200, 302, 399, 400, 404, 500] {
            let c = HttpClient
                .classify_response(status(code), &HeaderMap::new())
                .expect("at the head");
            assert_eq!(c.is_error(), code >= 400, "{code}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            HttpClient.classify_error(&refused).error_type(),
            Some("connection_refused")
        );
        assert!(
            HttpClient.panic_response().is_none(),
            "a client's panic goes on"
        );
    }

    const SERVER_ERRORS: [i32; 6] = [2, 4, 12, 13, 14, 15];

    fn trailers(code: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            crate::grpc::GRPC_STATUS,
            http::HeaderValue::from_static(code),
        );
        h
    }

    #[test]
    fn grpc_server_fails_on_its_error_set_and_client_on_any_non_ok() {
        for n in 0..=16 {
            let code = GrpcCode::from_i32(n).expect("code");
            let server = GrpcServer::classify_code(code);
            assert_eq!(server.is_error(), SERVER_ERRORS.contains(&n), "{code}");
            let client = GrpcClient::classify_code(code);
            assert_eq!(client.is_error(), n != 0, "{code}");
            if client.is_error() {
                assert_eq!(client.error_type(), Some(code.name()));
            }
            assert_eq!(server.grpc_code(), Some(code));
        }
        // Not a server error: the caller's problem.
        assert_eq!(
            GrpcServer::classify_code(GrpcCode::NotFound).outcome(),
            Outcome::BusinessError
        );
    }

    #[test]
    fn grpc_reads_the_head_then_the_trailers() {
        let ok = StatusCode::OK;
        // No status in the head: wait for the trailers.
        assert_eq!(GrpcServer.classify_response(ok, &HeaderMap::new()), None);
        assert_eq!(GrpcClient.classify_response(ok, &HeaderMap::new()), None);
        // Trailers-Only.
        assert_eq!(
            GrpcServer
                .classify_response(ok, &trailers("13"))
                .and_then(|c| c.grpc_code()),
            Some(GrpcCode::Internal)
        );
        // An HTTP error without a gRPC status, by gRPC's mapping.
        assert_eq!(
            GrpcClient
                .classify_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new())
                .and_then(|c| c.grpc_code()),
            Some(GrpcCode::Unavailable)
        );
        assert_eq!(
            GrpcServer.classify_eos(Some(&trailers("5"))).grpc_code(),
            Some(GrpcCode::NotFound)
        );
        // Trailers without a status, none at all, or garbage: UNKNOWN.
        for t in [Some(HeaderMap::new()), None, Some(trailers("x1"))] {
            assert_eq!(
                GrpcClient.classify_eos(t.as_ref()).grpc_code(),
                Some(GrpcCode::Unknown)
            );
        }
        let cancel = GrpcServer.classify_cancel().expect("cancelled");
        assert_eq!(cancel.grpc_code(), Some(GrpcCode::Cancelled));
        assert!(
            !cancel.is_error(),
            "a client that cancels is not a server error"
        );
        assert!(GrpcClient.classify_cancel().expect("cancelled").is_error());
        let panic = GrpcServer.panic_response().expect("answered");
        assert_eq!(
            GrpcServer
                .classify_response(panic.status(), panic.headers())
                .and_then(|c| c.grpc_code()),
            Some(GrpcCode::Internal)
        );
    }

    #[test]
    fn a_broken_body_fails_with_the_heads_status() {
        let head = HttpServer.classify_response(StatusCode::OK, &HeaderMap::new());
        let c = HttpServer.classify_body_error(head, "reset".into());
        assert!(c.is_error());
        assert_eq!(c.http_status(), Some(StatusCode::OK));
        assert_eq!(c.error_type(), Some("body_error"));
        assert_eq!(c.message(), Some("reset"));
    }

    #[derive(Debug)]
    struct Rejected;
    impl ErrorOutcome for Rejected {
        fn outcome(&self) -> Outcome {
            Outcome::BusinessError
        }
        fn error_type(&self) -> &'static str {
            "rejected"
        }
    }

    #[test]
    fn a_message_not_processed_fails_its_span_whoever_is_to_blame() {
        let c = Messaging.classify(&Err::<(), _>(Rejected));
        assert_eq!(c.outcome(), Outcome::Failure);
        assert_eq!(c.error_type(), Some("rejected"));
        assert!(!Messaging.classify(&Ok::<_, Rejected>(())).is_error());
    }
}
