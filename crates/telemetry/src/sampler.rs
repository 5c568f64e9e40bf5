//! Samplers: the standard ones from `OTEL_TRACES_SAMPLER`, and a rule-based one.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};
use opentelemetry_semantic_conventions::attribute::{HTTP_ROUTE, URL_PATH};

use crate::error::ConfigError;
use crate::vars::{OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG};

/// A standard sampler, as named by `OTEL_TRACES_SAMPLER`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: a fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on`, the default.
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    pub(crate) fn from_env(
        name: Option<&str>,
        arg: Option<&str>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(name) = name else { return Ok(None) };
        let ratio = || -> Result<f64, ConfigError> {
            let Some(arg) = arg else { return Ok(1.0) };
            match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(ConfigError::new(
                    OTEL_TRACES_SAMPLER_ARG,
                    arg,
                    "expected a ratio from 0 to 1",
                )),
            }
        };
        Ok(Some(match name.trim() {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio(ratio()?),
            _ => {
                return Err(ConfigError::new(
                    OTEL_TRACES_SAMPLER,
                    name,
                    "expected always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                ));
            }
        }))
    }

    /// Whether a parent that did not sample always makes this sampler drop.
    pub(crate) fn follows_unsampled_parent(self) -> bool {
        !matches!(self, Self::AlwaysOn | Self::TraceIdRatio(_))
    }

    pub(crate) fn into_sdk(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// A rule-based sampler: per-route ratios, routes that are never sampled
/// (health checks), and the parent's decision honoured by default.
///
/// A span's route is its `http.route` attribute, or its `url.path` when no
/// route is known yet. The rules, in order:
/// 1. a route marked [`never`](Self::never) is not sampled, whatever the parent says;
/// 2. with a valid parent (and [`parent_based`](Self::parent_based), the
///    default), the parent's decision is kept;
/// 3. otherwise the route's ratio, or the [default ratio](Self::default_ratio),
///    decides by trace id — so every service samples the same traces.
///
/// Sampled-out spans still have ids, so logs stay correlated.
///
/// ```
/// use looptel_telemetry::RuleSampler;
///
/// let sampler = RuleSampler::new()
///     .never("/health")
///     .route("/orders/{id}", 0.1)
///     .default_ratio(1.0);
/// # let _ = sampler;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RuleSampler {
    inner: Arc<Rules>,
}

#[derive(Clone, Debug)]
struct Rules {
    never: Vec<String>,
    ratios: HashMap<String, f64>,
    default_ratio: f64,
    parent_based: bool,
}

impl Default for RuleSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl RuleSampler {
    /// Samples everything, honours the parent, no routes excluded.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Rules {
                never: Vec::new(),
                ratios: HashMap::new(),
                default_ratio: 1.0,
                parent_based: true,
            }),
        }
    }

    fn update(self, f: impl FnOnce(&mut Rules)) -> Self {
        let mut rules = Arc::unwrap_or_clone(self.inner);
        f(&mut rules);
        Self {
            inner: Arc::new(rules),
        }
    }

    /// Never samples spans of this route or path (e.g. `/health`).
    pub fn never(self, route: impl Into<String>) -> Self {
        let route = route.into();
        self.update(|r| r.never.push(route))
    }

    /// Samples this fraction of root spans of `route`, clamped to 0..=1.
    pub fn route(self, route: impl Into<String>, ratio: f64) -> Self {
        let route = route.into();
        self.update(|r| {
            r.ratios.insert(route, clamp(ratio));
        })
    }

    /// The fraction of other root spans sampled (default 1), clamped to 0..=1.
    pub fn default_ratio(self, ratio: f64) -> Self {
        self.update(|r| r.default_ratio = clamp(ratio))
    }

    /// Whether a valid parent's decision is kept (default `true`).
    pub fn parent_based(self, parent_based: bool) -> Self {
        self.update(|r| r.parent_based = parent_based)
    }

    /// Whether a parent that did not sample always makes this sampler drop.
    pub(crate) fn follows_unsampled_parent(&self) -> bool {
        self.inner.parent_based
    }
}

fn clamp(ratio: f64) -> f64 {
    if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

fn route_of(attributes: &[KeyValue]) -> Option<opentelemetry::Value> {
    let find = |key: &str| attributes.iter().find(|kv| kv.key.as_str() == key);
    find(HTTP_ROUTE)
        .or_else(|| find(URL_PATH))
        .map(|kv| kv.value.clone())
}

fn result(decision: SamplingDecision, parent: Option<&Context>) -> SamplingResult {
    SamplingResult {
        decision,
        attributes: Vec::new(),
        trace_state: parent
            .map(|cx| cx.span().span_context().trace_state().clone())
            .unwrap_or_default(),
    }
}

impl ShouldSample for RuleSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let rules = &self.inner;
        let route = route_of(attributes);
        let route = route.as_ref().map(|v| v.as_str());
        if route
            .as_ref()
            .is_some_and(|route| rules.never.iter().any(|n| n == route))
        {
            return result(SamplingDecision::Drop, parent_context);
        }
        if rules.parent_based
            && let Some(cx) = parent_context.filter(|cx| cx.span().span_context().is_valid())
        {
            let decision = if cx.span().span_context().is_sampled() {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            };
            return result(decision, Some(cx));
        }
        let ratio = route
            .and_then(|r| rules.ratios.get(r.as_ref()))
            .copied()
            .unwrap_or(rules.default_ratio);
        let mut r = Sampler::TraceIdRatioBased(ratio)
            .should_sample(None, trace_id, name, span_kind, attributes, links);
        if let Some(cx) = parent_context {
            r.trace_state = cx.span().span_context().trace_state().clone();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    fn decide(
        s: &RuleSampler,
        parent: Option<bool>,
        trace_id: u128,
        attrs: &[KeyValue],
    ) -> SamplingDecision {
        let cx = parent.map(|sampled| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(1_u64),
                if sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            ))
        });
        s.should_sample(
            cx.as_ref(),
            TraceId::from(trace_id),
            "GET",
            &SpanKind::Server,
            attrs,
            &[],
        )
        .decision
    }

    fn route(r: &'static str) -> Vec<KeyValue> {
        vec![KeyValue::new(HTTP_ROUTE, r)]
    }

    #[test]
    fn health_checks_are_never_sampled_even_with_a_sampled_parent() {
        let s = RuleSampler::new().never("/health");
        assert_eq!(
            decide(&s, Some(true), 7, &route("/health")),
            SamplingDecision::Drop
        );
        let by_path = vec![KeyValue::new(URL_PATH, "/health")];
        assert_eq!(decide(&s, None, 7, &by_path), SamplingDecision::Drop);
        assert_eq!(
            decide(&s, None, 7, &route("/orders")),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn parent_decision_is_kept_by_default_and_can_be_ignored() {
        let s = RuleSampler::new().route("/orders", 0.0);
        assert_eq!(
            decide(&s, Some(true), 7, &route("/orders")),
            SamplingDecision::RecordAndSample
        );
        let s = RuleSampler::new().default_ratio(1.0);
        assert_eq!(
            decide(&s, Some(false), 7, &route("/x")),
            SamplingDecision::Drop
        );
        let s = RuleSampler::new().parent_based(false).route("/orders", 0.0);
        assert_eq!(
            decide(&s, Some(true), 7, &route("/orders")),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn per_route_ratio_applies_to_roots_by_trace_id() {
        let s = RuleSampler::new()
            .route("/orders/{id}", 0.25)
            .default_ratio(0.0);
        let n = 4000_u128;
        let sampled = (1..=n)
            // Spread ids over the whole 128-bit range; the ratio sampler reads the low 64 bits.
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .filter(|id| {
                decide(&s, None, *id, &route("/orders/{id}")) == SamplingDecision::RecordAndSample
            })
            .count();
        assert!((800..1200).contains(&sampled), "sampled {sampled} of {n}");
        assert_eq!(
            decide(&s, None, 12345, &route("/other")),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn standard_samplers_parse_from_env_names() {
        use SamplerConfig as S;
        let parse = |n, a| SamplerConfig::from_env(Some(n), a).expect("valid");
        assert_eq!(parse("always_on", None), Some(S::AlwaysOn));
        assert_eq!(parse("always_off", None), Some(S::AlwaysOff));
        assert_eq!(
            parse("traceidratio", Some("0.5")),
            Some(S::TraceIdRatio(0.5))
        );
        assert_eq!(parse("traceidratio", None), Some(S::TraceIdRatio(1.0)));
        assert_eq!(
            parse("parentbased_always_on", None),
            Some(S::ParentBasedAlwaysOn)
        );
        assert_eq!(
            parse("parentbased_always_off", None),
            Some(S::ParentBasedAlwaysOff)
        );
        assert_eq!(
            parse("parentbased_traceidratio", Some("0.01")),
            Some(S::ParentBasedTraceIdRatio(0.01))
        );
        assert_eq!(SamplerConfig::from_env(None, Some("0.5")), Ok(None));
    }
}
