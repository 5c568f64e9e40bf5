"""A small orders service on OpenTelemetry's official Python SDK, for
looptel-doctor's tests: clean by default, with one pitfall switched on by
PITFALL (a name below). Traces go to SPANS_FILE as OTLP JSON lines (the
collector's file-exporter format), logs to stdout, metrics on /metrics
through the SDK's Prometheus exporter."""

import json
import logging
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry import baggage, context, metrics, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

PITFALL = os.environ.get("PITFALL", "")


class OtlpJsonFile(SpanExporter):
    """Spans as OTLP JSON lines, ids in hex as the OTLP JSON encoding wants."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans):
        doc = MessageToDict(encode_spans(spans))
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if k in s:
                            import base64

                            s[k] = base64.b64decode(s[k]).hex()
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(doc) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


attributes = {"service.name": "py-orders"}
if PITFALL != "no_version":
    attributes["service.version"] = "1.0.0"
resource = Resource.create(attributes)

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(
    BatchSpanProcessor(OtlpJsonFile(os.environ["SPANS_FILE"]), schedule_delay_millis=200)
)
trace.set_tracer_provider(tracer_provider)
tracer = trace.get_tracer("py-orders")

views = []
if PITFALL != "coarse_buckets":
    views.append(
        View(
            instrument_name="*duration*",
            aggregation=ExplicitBucketHistogramAggregation(
                [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
            ),
        )
    )
meter_provider = MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()], views=views)
metrics.set_meter_provider(meter_provider)
meter = metrics.get_meter("py-orders")
if PITFALL == "no_units":
    duration = meter.create_histogram("request.duration", description="Request time.")
else:
    duration = meter.create_histogram("http.server.request.duration", unit="s", description="Request time.")
orders = meter.create_counter("orders", unit="{order}", description="Orders served.")
if PITFALL == "counter_as_gauge":
    served = meter.create_up_down_counter("orders.count", description="Orders served, as a gauge.")


class JsonLines(logging.Formatter):
    def format(self, record):
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid and PITFALL != "uncorrelated":
            line["trace_id"] = format(ctx.trace_id, "032x")
            line["span_id"] = format(ctx.span_id, "016x")
        return json.dumps(line)


handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonLines())
log = logging.getLogger("py-orders")
log.addHandler(handler)
log.setLevel(logging.DEBUG if PITFALL == "debug_logs" else logging.INFO)


def nested(depth):
    with tracer.start_as_current_span(f"step {depth}"):
        if depth < 12:
            nested(depth + 1)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(REGISTRY)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)
            return
        started = time.time()
        parent = extract(dict(self.headers))
        token = context.attach(parent)
        try:
            with tracer.start_as_current_span(f"GET {self.path}", kind=trace.SpanKind.SERVER):
                labels = {"http.route": "/orders/{id}"}
                if PITFALL == "user_id_label":
                    labels["user_id"] = f"user-{random.randint(0, 10**9)}"
                if PITFALL == "baggage_label":
                    labels["tenant"] = str(baggage.get_baggage("doctor.probe") or "")
                orders.add(1, labels)
                if PITFALL == "counter_as_gauge":
                    served.add(1)
                log.info("order read")
                log.debug("order cache looked up")
                if PITFALL == "pii":
                    log.info("order read for jane.doe@example.com")
                if PITFALL == "mixed_logging":
                    print("order read (print)", flush=True)
                if PITFALL == "deep_spans":
                    nested(0)
                if PITFALL == "helper_loop":
                    for _ in range(30):
                        with tracer.start_as_current_span("format_price"):
                            pass
                if PITFALL == "lost_context":
                    # A task started without the request's context.
                    def later():
                        with tracer.start_as_current_span(
                            "POST /payments", context=context.Context(), kind=trace.SpanKind.CLIENT
                        ):
                            pass

                    worker = threading.Thread(target=later)
                    worker.start()
                    worker.join()
                headers = {}
                if PITFALL != "no_traceparent":
                    inject(headers)
                duration.record(time.time() - started, {"http.route": "/orders/{id}"})
        finally:
            context.detach(token)
        self.send_response(200)
        for k, v in headers.items():
            if k == "traceparent":
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b"{}")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"level": "INFO", "message": "listening", "port": server.server_address[1],
                  "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ")}), flush=True)
server.serve_forever()
