use looptel_core::Instrumentation;
use tower_layer::Layer;

use super::Server;

/// Traces each request of the wrapped service; see the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerLayer<F = (), P = ()> {
    pub(crate) instrumentation: Instrumentation,
    pub(crate) filter: F,
    pub(crate) public: P,
    pub(crate) response_traceparent: bool,
}

impl ServerLayer {
    /// Traces every request, trusts every caller, adds no response header.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            filter: (),
            public: (),
            response_traceparent: false,
        }
    }
}

impl<F, P> ServerLayer<F, P> {
    /// Requests the filter rejects get no span and are marked
    /// [`Untraced`](super::Untraced) for inner layers (default: all traced).
    pub fn filter<F2>(self, filter: F2) -> ServerLayer<F2, P> {
        ServerLayer {
            instrumentation: self.instrumentation,
            filter,
            public: self.public,
            response_traceparent: self.response_traceparent,
        }
    }

    /// Requests the rule calls public start a new trace linked to the
    /// caller's context (default: every caller trusted).
    pub fn public_endpoint<P2>(self, rule: P2) -> ServerLayer<F, P2> {
        ServerLayer {
            instrumentation: self.instrumentation,
            filter: self.filter,
            public: rule,
            response_traceparent: self.response_traceparent,
        }
    }

    /// Writes the server span's `traceparent` into the response headers, so a
    /// user can go from a response to its trace (default `false`).
    pub fn response_traceparent(mut self, enabled: bool) -> Self {
        self.response_traceparent = enabled;
        self
    }
}

impl<S, F: Clone, P: Clone> Layer<S> for ServerLayer<F, P> {
    type Service = Server<S, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Server {
            inner,
            layer: self.clone(),
        }
    }
}
