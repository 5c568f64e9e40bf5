//! The builder: configuration from code and `OTEL_*`, validated once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use looptel_core::baggage::InjectPolicy;
use looptel_core::{BaggagePromotion, Instrumentation, Propagator, ServiceInfo};
use looptel_logs::LogsBuilder;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{self as blrp, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{self, SdkTracerProvider, ShouldSample, SpanExporter};
use opentelemetry_semantic_conventions::resource::{
    SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION,
};
use tracing::level_filters::LevelFilter;

use crate::batch::BatchSpans;
use crate::config::{Endpoint, EnvConfig, OtlpSignal, PropagatorName};
use crate::error::ConfigError;
use crate::otlp::{otlp_log_exporter, otlp_metric_exporter, otlp_span_exporter};
use crate::queue::{CountedLogs, ExportStats, GatedLogs, GatedSpans, Queue};
use crate::{
    DEPLOYMENT_ENVIRONMENT, LogsExporter, Lookup, MetricsExporter, Note, Protocol, RuleSampler,
    SamplerConfig, Telemetry, TelemetryError, TelemetryGuard, TracesExporter, console, vars,
};

/// A batch span processor for `exporter` behind a gate that bounds its
/// queue at `capacity` and counts what it drops ([`crate::queue`]), which
/// also promotes baggage members onto spans as they start.
fn gated_batch<E: SpanExporter + 'static>(
    exporter: E,
    value_limit: Option<usize>,
    capacity: usize,
    config: crate::batch::Settings,
    stats: &ExportStats,
    promotion: Option<BaggagePromotion>,
) -> Result<GatedSpans<BatchSpans>, TelemetryError> {
    let queue = Queue::spans(capacity, stats);
    Ok(GatedSpans {
        promotion,
        inner: BatchSpans::new(
            crate::limit::Limited::new(exporter, value_limit, &queue),
            config,
        )
        .map_err(TelemetryError::Thread)?,
        queue,
    })
}

/// Where a custom span exporter sits: see [`TelemetryBuilder::span_exporter`].
type CustomExporter =
    Box<dyn FnOnce(Gate) -> Result<GatedSpans<BatchSpans>, TelemetryError> + Send>;

/// What every built-in batch processor is given: see [`gated_batch`].
pub(crate) struct Gate {
    value_limit: Option<usize>,
    capacity: usize,
    config: crate::batch::Settings,
    stats: ExportStats,
    promotion: Option<BaggagePromotion>,
}

/// Configures telemetry; code settings win over environment variables.
#[must_use]
pub struct TelemetryBuilder {
    pub(crate) env: Option<Lookup>,
    pub(crate) service_name: Option<Cow<'static, str>>,
    pub(crate) service_version: Option<Cow<'static, str>>,
    pub(crate) environment: Option<Cow<'static, str>>,
    pub(crate) attributes: Vec<KeyValue>,
    /// The sampler set in code, and whether it follows a parent that did
    /// not sample.
    pub(crate) sampler: Option<(Box<dyn ShouldSample>, bool)>,
    pub(crate) traces_exporter: Option<TracesExporter>,
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) span_exporter: Option<CustomExporter>,
    pub(crate) logs: LogsBuilder,
    pub(crate) span_level: LevelFilter,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) promotion: BaggagePromotion,
    pub(crate) baggage_policy: Option<Arc<dyn InjectPolicy>>,
    pub(crate) traces_file: Option<std::path::PathBuf>,
    pub(crate) histograms: Option<looptel_red_metrics::Histograms>,
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("reads_env", &self.env.is_some())
            .field("service_name", &self.service_name)
            .field("traces_exporter", &self.traces_exporter)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// Which buckets the metrics registry's histograms keep (env
    /// `LOOPTEL_METRICS_HISTOGRAMS`: `classic`, `native`,
    /// `classic+native`); [`TelemetryGuard::histograms`] gives what is in
    /// force, for the registry to be built with.
    pub fn histograms(mut self, histograms: looptel_red_metrics::Histograms) -> Self {
        self.histograms = Some(histograms);
        self
    }

    /// `service.name` (env `OTEL_SERVICE_NAME`). Without one, the service is
    /// `unknown_service:<executable>` and start-up warns.
    pub fn service_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `service.version` (env: `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn service_version(mut self, version: impl Into<Cow<'static, str>>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// `deployment.environment` (env: `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn deployment_environment(mut self, environment: impl Into<Cow<'static, str>>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Any other resource attribute, such as `team` (env:
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn resource_attribute(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// A standard sampler (env `OTEL_TRACES_SAMPLER` and `_ARG`; default
    /// `parentbased_always_on`).
    pub fn sampler(mut self, sampler: SamplerConfig) -> Self {
        self.sampler = Some((
            Box::new(sampler.into_sdk()),
            sampler.follows_unsampled_parent(),
        ));
        self
    }

    /// The [`RuleSampler`]: per-route ratios, health checks never sampled.
    pub fn rule_sampler(mut self, sampler: RuleSampler) -> Self {
        let follows = sampler.follows_unsampled_parent();
        self.sampler = Some((Box::new(sampler), follows));
        self
    }

    /// Where spans go (env `OTEL_TRACES_EXPORTER`; default: OTLP when an
    /// endpoint is set, else the embedded console default).
    pub fn traces_exporter(mut self, exporter: TracesExporter) -> Self {
        self.traces_exporter = Some(exporter);
        self
    }

    /// The OTLP base endpoint (env `OTEL_EXPORTER_OTLP_ENDPOINT`); over HTTP
    /// `/v1/traces` and `/v1/metrics` are appended.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP protocol (env `OTEL_EXPORTER_OTLP_PROTOCOL`; default
    /// `http/protobuf`).
    pub fn otlp_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Appends finished spans to `path` as OTLP JSON lines (env
    /// `LOOPTEL_TRACES_FILE`): instead of the console default when no OTLP
    /// endpoint is set, beside OTLP otherwise. Through its own bounded batch
    /// processor, off the request path. The file is not rotated.
    pub fn traces_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.traces_file = Some(path.into());
        self
    }

    /// Exports spans to `exporter` instead, through the same path as the
    /// built-in exporters: the batch processor with its counted, bounded
    /// queue, attribute limits and redaction (e.g. an in-memory exporter in
    /// tests).
    pub fn span_exporter(mut self, exporter: impl SpanExporter + 'static) -> Self {
        self.span_exporter = Some(Box::new(move |gate: Gate| {
            gated_batch(
                exporter,
                gate.value_limit,
                gate.capacity,
                gate.config,
                &gate.stats,
                gate.promotion,
            )
        }));
        self
    }

    /// Configures the JSON logs (default [`JsonLogs::builder`](looptel_logs::JsonLogs::builder); `RUST_LOG`
    /// is read when the builder reads the environment).
    pub fn logs(mut self, logs: LogsBuilder) -> Self {
        self.logs = logs;
        self
    }

    /// Copies these baggage members (such as `tenant.id`) onto every span the
    /// service starts and every log line it writes (default none).
    pub fn promote_baggage(mut self, promotion: BaggagePromotion) -> Self {
        self.promotion = promotion;
        self
    }

    /// Filters outgoing baggage (a deny-list, a byte budget), e.g. a
    /// `looptel_baggage::BaggagePolicy` (default: everything propagated).
    pub fn baggage_policy(mut self, policy: Arc<dyn InjectPolicy>) -> Self {
        self.baggage_policy = Some(policy);
        self
    }

    /// The most verbose `tracing` spans and events exported to traces
    /// (default `INFO`).
    pub fn span_level(mut self, level: LevelFilter) -> Self {
        self.span_level = level;
        self
    }

    /// The bound on flushing and shutting down (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT)).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds and installs everything globally; see [`Telemetry::init`].
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        self.build()?.init()
    }

    /// Validates the configuration and builds the providers, installing
    /// nothing globally.
    pub fn build(mut self) -> Result<Telemetry, TelemetryError> {
        let env = match &self.env {
            Some(lookup) => EnvConfig::parse(lookup)?,
            None => EnvConfig::default(),
        };
        let mut notes = Vec::new();
        let (histograms, exponential) = crate::config::histograms(self.histograms, &env)?;
        let service = self.service_info(&env, &mut notes);
        let mut propagator = propagator(env.propagators.as_deref())?;
        if let Some(policy) = self.baggage_policy.take() {
            propagator = propagator.with_baggage_policy(policy);
        }
        let logs = std::mem::replace(&mut self.logs, looptel_logs::JsonLogs::builder());
        let logs = match &self.env {
            Some(lookup) => logs.filter_from_lookup(lookup)?,
            None => logs,
        };
        let mut logs = logs
            .service(service.clone())
            .promote_baggage(self.promotion.clone());

        let export_stats = ExportStats::default();
        let mut tracer_provider = None;
        let mut meter_provider = None;
        let mut logger_provider = None;
        let mut push = None;
        let mut parent_based = false;
        if env.disabled {
            notes.push(Note::info(format!(
                "telemetry disabled ({}=true): no traces or metrics",
                vars::OTEL_SDK_DISABLED
            )));
        } else {
            let resource = resource(&service, &env.resource_attributes, &self.attributes);
            let (provider, follows, exporter_kind) =
                self.traces_pipeline(&env, &resource, &export_stats, &mut notes)?;
            parent_based = follows;
            tracer_provider = Some(provider);
            (push, meter_provider) =
                self.metrics_pipeline(&env, exporter_kind, exponential, &resource, &mut notes)?;
            (logs, logger_provider) =
                self.logs_pipeline(&env, resource, logs, &export_stats, &mut notes)?;
        }
        let (logs, logs_guard) = logs.build();
        let logs_handle = logs.handle();

        let instrumentation = match &tracer_provider {
            Some(p) => Instrumentation::new(p, propagator).parent_based(parent_based),
            None => Instrumentation::disabled(propagator),
        }
        .with_semconv(env.semconv);
        let instrumentation = match env.value_limit {
            Some(limit) => instrumentation.with_value_limit(limit),
            None => instrumentation,
        };
        Ok(Telemetry {
            service,
            instrumentation,
            tracer_provider,
            meter_provider,
            logger_provider,
            push,
            logs,
            logs_handle,
            export_stats,
            logs_guard,
            span_level: self.span_level,
            shutdown_timeout: self.shutdown_timeout,
            notes,
            histograms,
        })
    }

    /// The tracer provider: the sampler, then the span processors — the
    /// OTLP JSON lines file, a custom exporter or the configured one, each
    /// behind the gated batch processor — and baggage promotion. Returns it
    /// with whether the sampler follows an unsampled parent, and the
    /// traces exporter in force (the metrics' default reads it).
    fn traces_pipeline(
        &mut self,
        env: &EnvConfig,
        resource: &Resource,
        export_stats: &ExportStats,
        notes: &mut Vec<Note>,
    ) -> Result<(SdkTracerProvider, bool, TracesExporter), TelemetryError> {
        let parent_based;
        let mut traces_signal = with_code_settings(&env.traces, &self.endpoint, self.protocol);
        // The batch processor runs exports on its own thread and bounds
        // them through the exporter: OTEL_BSP_EXPORT_TIMEOUT caps the
        // OTLP timeout.
        if let Some(bsp) = env.bsp_export_timeout {
            traces_signal.timeout = Some(traces_signal.timeout.map_or(bsp, |t| t.min(bsp)));
        }
        let exporter_kind = self.traces_exporter.or(env.traces_exporter).unwrap_or(
            if traces_signal.endpoint.is_some() {
                TracesExporter::Otlp
            } else {
                TracesExporter::Console
            },
        );
        // Every value set here: the SDK's own default builder would read
        // OTEL_BSP_* from the process, behind the configured lookup.
        let batch = || crate::batch::Settings {
            scheduled_delay: env
                .bsp_schedule_delay
                .unwrap_or(trace::OTEL_BSP_SCHEDULE_DELAY_DEFAULT),
            max_export_batch_size: env
                .bsp_max_export_batch_size
                .unwrap_or(trace::OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT),
        };
        let span_queue = env
            .bsp_max_queue_size
            .unwrap_or(trace::OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT);
        let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
        // Baggage promotion rides on the first built-in processor: with
        // a single processor the SDK hands it the finished span without
        // cloning it (about 2,000 instructions per sampled span less
        // than a processor of its own). Left over: a processor of its
        // own, added below.
        let mut promotion = Some(self.promotion.clone()).filter(|p| !p.is_empty());
        if let Some(promotion) = &promotion {
            // Installed below, one way or the other: an edge need not copy
            // its members onto the server span itself.
            promotion.mark_promoted_at_start();
        }
        builder = match self.sampler.take() {
            Some((s, follows)) => {
                parent_based = follows;
                builder.with_sampler(s)
            }
            None => {
                let s = env.sampler.unwrap_or_default();
                parent_based = s.follows_unsampled_parent();
                builder.with_sampler(s.into_sdk())
            }
        };
        let traces_file = self.traces_file.take().or_else(|| env.traces_file.clone());
        if let Some(path) = &traces_file {
            let exporter = crate::file::OtlpFileExporter::open(path).map_err(|e| {
                ConfigError::new(
                    vars::LOOPTEL_TRACES_FILE,
                    &path.display().to_string(),
                    format!("cannot open for appending: {e}"),
                )
            })?;
            notes.push(Note::info(format!(
                "traces: appended as OTLP JSON lines to {}",
                path.display()
            )));
            builder = builder.with_span_processor(gated_batch(
                exporter,
                env.value_limit,
                span_queue,
                batch(),
                export_stats,
                promotion.take(),
            )?);
        }
        if let Some(custom) = self.span_exporter.take() {
            builder = builder.with_span_processor(custom(Gate {
                value_limit: env.value_limit,
                capacity: span_queue,
                config: batch(),
                stats: export_stats.clone(),
                promotion: promotion.take(),
            })?);
            notes.push(Note::info(
                "traces: exported to a custom exporter".to_owned(),
            ));
        } else {
            match exporter_kind {
                TracesExporter::Otlp => {
                    let (exporter, target) = otlp_span_exporter(&traces_signal)?;
                    notes.push(Note::info(format!("traces: OTLP to {target}")));
                    builder = builder.with_span_processor(gated_batch(
                        exporter,
                        env.value_limit,
                        span_queue,
                        batch(),
                        export_stats,
                        promotion.take(),
                    )?);
                }
                TracesExporter::Console if traces_file.is_some() => {}
                TracesExporter::Console => {
                    notes.push(Note::info(format!(
                        "traces: written as JSON lines to standard error \
                         (set {} to send them to a collector)",
                        vars::OTEL_EXPORTER_OTLP_ENDPOINT
                    )));
                    builder = builder.with_span_processor(gated_batch(
                        console::ConsoleExporter::new(Box::new(std::io::stderr())),
                        env.value_limit,
                        span_queue,
                        batch(),
                        export_stats,
                        promotion.take(),
                    )?);
                }
                TracesExporter::None => notes.push(Note::info(format!(
                    "traces: created and sampled but not exported ({}=none)",
                    vars::OTEL_TRACES_EXPORTER
                ))),
            }
        }
        if let Some(promotion) = promotion {
            builder = builder.with_span_processor(crate::promotion::Promote(promotion));
        }
        Ok((builder.build(), parent_based, exporter_kind))
    }

    /// The OTLP push of looptel's registry and the OpenTelemetry meter
    /// provider, when metrics go over OTLP (explicitly, or by default
    /// beside OTLP traces); histograms with native buckets pushed as
    /// exponential ones when `exponential`.
    fn metrics_pipeline(
        &self,
        env: &EnvConfig,
        exporter_kind: TracesExporter,
        exponential: bool,
        resource: &Resource,
        notes: &mut Vec<Note>,
    ) -> Result<(Option<crate::push::PushConfig>, Option<SdkMeterProvider>), TelemetryError> {
        let mut metrics_signal = with_code_settings(&env.metrics, &self.endpoint, self.protocol);
        if let Some(t) = env.metric_export_timeout {
            metrics_signal.timeout = Some(metrics_signal.timeout.map_or(t, |o| o.min(t)));
        }
        let push_metrics = match env.metrics_exporter {
            Some(MetricsExporter::Otlp) => true,
            Some(MetricsExporter::None) => false,
            None => metrics_signal.endpoint.is_some() && exporter_kind == TracesExporter::Otlp,
        };
        if !push_metrics {
            return Ok((None, None));
        }
        {
            let (protocol, url) = crate::otlp::target(&metrics_signal, "/v1/metrics")?;
            if protocol == Protocol::Grpc {
                tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
            }
            let push = crate::push::PushConfig {
                url,
                protocol,
                timeout: metrics_signal
                    .timeout
                    .unwrap_or(crate::otlp::DEFAULT_OTLP_TIMEOUT),
                signal: metrics_signal.clone(),
                interval: env
                    .metric_export_interval
                    .unwrap_or(Duration::from_secs(60)),
                temporality: env.temporality,
                exponential,
                resource: crate::push::resource_attributes(resource),
            };
            let (exporter, target) = otlp_metric_exporter(&metrics_signal)?;
            // Only what is recorded through the OpenTelemetry meter provider
            // goes there: looptel's RED metrics are served for scraping.
            notes.push(Note::info(format!(
                "metrics: the OpenTelemetry meter provider's instruments pushed as OTLP to {target}"
            )));
            let reader = PeriodicReader::builder(exporter).with_interval(
                env.metric_export_interval
                    .unwrap_or(Duration::from_secs(60)),
            );
            let meter_provider = SdkMeterProvider::builder()
                .with_resource(resource.clone())
                .with_reader(reader.build())
                .build();
            Ok((Some(push), Some(meter_provider)))
        }
    }

    /// The logs: OTLP log records through a gated batch processor, JSON
    /// lines on standard output (the default), or nothing.
    fn logs_pipeline(
        &self,
        env: &EnvConfig,
        resource: Resource,
        mut logs: LogsBuilder,
        export_stats: &ExportStats,
        notes: &mut Vec<Note>,
    ) -> Result<(LogsBuilder, Option<SdkLoggerProvider>), TelemetryError> {
        match env.logs_exporter.unwrap_or(LogsExporter::Console) {
            LogsExporter::Otlp => {
                let mut signal = with_code_settings(&env.logs, &self.endpoint, self.protocol);
                if let Some(t) = env.blrp_export_timeout {
                    signal.timeout = Some(signal.timeout.map_or(t, |o| o.min(t)));
                }
                let (exporter, target) = otlp_log_exporter(&signal)?;
                notes.push(Note::info(format!("logs: OTLP to {target}")));
                let capacity = env
                    .blrp_max_queue_size
                    .unwrap_or(blrp::OTEL_BLRP_MAX_QUEUE_SIZE_DEFAULT);
                let queue = Queue::logs(capacity, export_stats);
                // Every value set, as for spans: the SDK's defaults would
                // read OTEL_BLRP_* from the process behind the lookup.
                let config = blrp::BatchConfigBuilder::default()
                    .with_scheduled_delay(
                        env.blrp_schedule_delay
                            .unwrap_or(blrp::OTEL_BLRP_SCHEDULE_DELAY_DEFAULT),
                    )
                    .with_max_queue_size(capacity)
                    .with_max_export_batch_size(
                        env.blrp_max_export_batch_size
                            .unwrap_or(blrp::OTEL_BLRP_MAX_EXPORT_BATCH_SIZE_DEFAULT),
                    )
                    .build();
                let processor = blrp::BatchLogProcessor::builder(CountedLogs {
                    inner: exporter,
                    queue: queue.clone(),
                })
                .with_batch_config(config)
                .build();
                let provider = SdkLoggerProvider::builder()
                    .with_resource(resource)
                    .with_log_processor(GatedLogs {
                        inner: processor,
                        queue,
                    })
                    .build();
                return Ok((
                    logs.export(provider.logger(looptel_core::SCOPE)),
                    Some(provider),
                ));
            }
            LogsExporter::Console => {}
            LogsExporter::None => {
                notes.push(Note::info(format!(
                    "logs: not written ({}=none)",
                    vars::OTEL_LOGS_EXPORTER
                )));
                logs = logs.output(std::io::sink());
            }
        }
        Ok((logs, None))
    }

    fn service_info(&self, env: &EnvConfig, notes: &mut Vec<Note>) -> ServiceInfo {
        let from_attrs = |key: &str| {
            env.resource_attributes
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| Cow::Owned(v.clone()))
        };
        let name = self
            .service_name
            .clone()
            .or_else(|| env.service_name.clone().map(Cow::Owned))
            .or_else(|| from_attrs(SERVICE_NAME));
        let name = name.unwrap_or_else(|| {
            let exe = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default();
            notes.push(Note::warn(format!(
                "no service.name: set {} or call service_name(); using unknown_service:{exe}",
                vars::OTEL_SERVICE_NAME
            )));
            Cow::Owned(format!("unknown_service:{exe}"))
        });
        let mut info = ServiceInfo::new(name);
        if let Some(v) = self
            .service_version
            .clone()
            .or_else(|| from_attrs(SERVICE_VERSION))
        {
            info = info.with_version(v);
        }
        if let Some(e) = self
            .environment
            .clone()
            .or_else(|| from_attrs(DEPLOYMENT_ENVIRONMENT))
            .or_else(|| from_attrs("deployment.environment.name"))
        {
            info = info.with_environment(e);
        }
        let code = self
            .attributes
            .iter()
            .rev()
            .find(|kv| kv.key.as_str() == SERVICE_INSTANCE_ID)
            .map(|kv| Cow::Owned(kv.value.to_string()));
        info.with_instance_id(
            code.or_else(|| from_attrs(SERVICE_INSTANCE_ID))
                .unwrap_or_else(|| Cow::Owned(random_instance_id())),
        )
    }
}

fn with_code_settings(
    env: &OtlpSignal,
    endpoint: &Option<String>,
    protocol: Option<Protocol>,
) -> OtlpSignal {
    let mut s = env.clone();
    if let Some(e) = endpoint {
        s.endpoint = Some(Endpoint::Base(e.clone()));
    }
    if protocol.is_some() {
        s.protocol = protocol;
    }
    s
}

/// Resource attributes, later sources winning: SDK, environment, code; the
/// service identity as resolved last.
fn resource(service: &ServiceInfo, env: &[(String, String)], code: &[KeyValue]) -> Resource {
    let mut attrs: Vec<KeyValue> = env
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attrs.extend(code.iter().cloned());
    attrs.push(KeyValue::new(SERVICE_NAME, service.name().to_owned()));
    if let Some(v) = service.version() {
        attrs.push(KeyValue::new(SERVICE_VERSION, v.to_owned()));
    }
    if let Some(e) = service.environment() {
        attrs.push(KeyValue::new(DEPLOYMENT_ENVIRONMENT, e.to_owned()));
    }
    if let Some(id) = service.instance_id() {
        attrs.push(KeyValue::new(SERVICE_INSTANCE_ID, id.to_owned()));
    }
    Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(attrs)
        .build()
}

/// A `service.instance.id` for a process nobody named: a random UUID
/// (version 4), as the resource conventions recommend, from the SDK's own
/// random id generator.
fn random_instance_id() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let mut b = RandomIdGenerator::default().new_trace_id().to_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

// opentelemetry-zipkin is deprecated as an exporter (Zipkin reads OTLP);
// its B3 propagator is still OpenTelemetry's own, on the same
// opentelemetry version as the rest of the tree.
#[allow(deprecated)]
fn propagator(names: Option<&[PropagatorName]>) -> Result<Propagator, TelemetryError> {
    let names = names.unwrap_or(&[PropagatorName::TraceContext, PropagatorName::Baggage]);
    let p = Propagator::w3c(
        names.contains(&PropagatorName::TraceContext),
        names.contains(&PropagatorName::Baggage),
    );
    // B3 for service meshes (Istio, Envoy, Linkerd) and Zipkin-era callers:
    // OpenTelemetry's own propagator, beside W3C.
    #[cfg(feature = "b3")]
    {
        use opentelemetry_zipkin::{B3Encoding, Propagator as B3};
        let mut p = p;
        if names.contains(&PropagatorName::B3) {
            p = p.with_propagator(B3::with_encoding(B3Encoding::SingleHeader));
        }
        if names.contains(&PropagatorName::B3Multi) {
            p = p.with_propagator(B3::with_encoding(B3Encoding::MultipleHeader));
        }
        Ok(p)
    }
    #[cfg(not(feature = "b3"))]
    {
        if let Some(b3) = names
            .iter()
            .find(|n| matches!(n, PropagatorName::B3 | PropagatorName::B3Multi))
        {
            let name = if *b3 == PropagatorName::B3 {
                "b3"
            } else {
                "b3multi"
            };
            return Err(crate::ConfigError::new(
                "OTEL_PROPAGATORS",
                name,
                "this build has no B3 propagators: enable looptel's `b3` feature",
            )
            .into());
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unnamed_instance_gets_a_fresh_uuid_v4() {
        let (a, b) = (random_instance_id(), random_instance_id());
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "4", "version 4: {a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant: {a}");
    }
}
