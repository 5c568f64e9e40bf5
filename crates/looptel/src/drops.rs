//! Telemetry's own drops, where an operator looks.

use std::sync::Arc;

use looptel_baggage::BaggagePolicy;
use looptel_red_metrics::Registry;

/// Every drop telemetry makes, as counters on `/metrics`, where an
/// operator looks: log lines (or OTLP log records) dropped at a full queue
/// and sampled out, baggage members denied on inject, outgoing baggage over
/// its budget, inbound baggage dropped at the trust boundary, spans dropped
/// at a full export queue, spans and log records whose export failed,
/// failed pushes of the metrics over OTLP.
pub(crate) fn register(
    registry: &Registry,
    logs: looptel_logs::LogsHandle,
    baggage: &BaggagePolicy,
    exports: looptel_telemetry::ExportStats,
) {
    let (sampled, b1, b2, b3) = (
        logs.clone(),
        baggage.clone(),
        baggage.clone(),
        baggage.clone(),
    );
    let (e1, e2, e3, e4) = (
        exports.clone(),
        exports.clone(),
        exports.clone(),
        exports.clone(),
    );
    registry.register_collector(Arc::new(
        looptel_red_metrics::FnCollector::new()
            .counter(
                "looptel_log_lines_dropped",
                "Log lines (or OTLP log records) dropped because the output queue was full.",
                move || (logs.dropped() + e1.dropped_logs()) as f64,
            )
            .counter(
                "looptel_log_lines_sampled_out",
                "Log lines left out by per-callsite sampling.",
                move || sampled.sampled_out() as f64,
            )
            .counter(
                "looptel_baggage_members_denied",
                "Baggage members not sent because their key is personal data or a secret.",
                move || b1.stats().denied as f64,
            )
            .counter(
                "looptel_baggage_over_budget",
                "Outgoing baggage headers cut to the byte budget.",
                move || b2.stats().over_budget as f64,
            )
            .counter(
                "looptel_baggage_untrusted_dropped",
                "Inbound baggage dropped at the trust boundary.",
                move || b3.stats().untrusted_dropped as f64,
            )
            .counter(
                "looptel_spans_export_failed",
                "Spans lost because their export failed.",
                move || exports.failed_spans() as f64,
            )
            .counter(
                "looptel_spans_dropped",
                "Sampled spans dropped because the export queue was full.",
                move || e2.dropped_spans() as f64,
            )
            .counter(
                "looptel_log_records_export_failed",
                "OTLP log records lost because their export failed.",
                move || e3.failed_logs() as f64,
            )
            .counter(
                "looptel_metric_exports_failed",
                "Pushes of these metrics over OTLP that failed.",
                move || e4.failed_metric_exports() as f64,
            ),
    ));
}
