//! The harness's single-service cases, over real sockets: the harness side
//! is a small server that records the headers of each callback.

use looptel_tests::serve;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use looptel_core::tracecontext::{parse_traceparent, parse_tracestate};
use looptel_core::{Instrumentation, Propagator};
use opentelemetry_sdk::trace::SdkTracerProvider;

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

struct Harness {
    service: SocketAddr,
    harness: SocketAddr,
    seen: Seen,
}

impl Harness {
    async fn start() -> Self {
        let provider = SdkTracerProvider::builder().build();
        let service = serve(w3c_conformance::app(Instrumentation::new(
            &provider,
            Propagator::default(),
        )))
        .await;
        let seen: Seen = Arc::default();
        let harness =
            serve(
                Router::new()
                    .route(
                        "/callback/{id}",
                        post(
                            |State(seen): State<Seen>,
                             Path(id): Path<String>,
                             headers: HeaderMap| async move {
                                seen.lock().expect("lock").push((id, headers));
                                "ok"
                            },
                        ),
                    )
                    .with_state(seen.clone()),
            )
            .await;
        Self {
            service,
            harness,
            seen,
        }
    }

    /// Sends `headers` to the service, asking for `count` callbacks; returns
    /// the callbacks' headers in order.
    async fn request(&self, headers: &[(&str, &str)], count: usize) -> Vec<HeaderMap> {
        self.seen.lock().expect("lock").clear();
        let calls: Vec<_> = (0..count)
            .map(|i| serde_json::json!({"url": format!("http://{}/callback/{i}", self.harness), "arguments": []}))
            .collect();
        let client = reqwest::Client::new();
        let mut req = client
            .post(format!("http://{}/test", self.service))
            .json(&calls);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("send");
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json body");
        assert_eq!(body["results"].as_array().map(Vec::len), Some(count));
        let seen = self.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), count, "all calls finished before the answer");
        seen.into_iter()
            .enumerate()
            .map(|(i, (id, h))| {
                assert_eq!(id, i.to_string(), "calls made in order");
                h
            })
            .collect()
    }
}

fn tp(h: &HeaderMap) -> (String, String, u8) {
    let values: Vec<_> = h.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "exactly one traceparent");
    let p = parse_traceparent(values[0].to_str().expect("ascii")).expect("valid traceparent");
    (p.trace_id.to_string(), p.parent_id.to_string(), p.flags)
}

fn ts(h: &HeaderMap) -> String {
    h.get("tracestate")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

const ID: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

#[tokio::test]
async fn harness_single_service_cases() {
    let h = Harness::start().await;

    // Missing headers: a valid, new traceparent.
    let out = h.request(&[], 1).await;
    tp(&out[0]);

    // Continued trace, new parent id, tracestate carried over.
    let out = h
        .request(
            &[
                ("traceparent", &format!("00-{ID}-{PARENT}-01")),
                ("tracestate", "foo=1,bar=2"),
            ],
            1,
        )
        .await;
    let (trace, parent, flags) = tp(&out[0]);
    assert_eq!(trace, ID);
    assert_ne!(parent, PARENT);
    assert_eq!(flags & 1, 1);
    assert_eq!(
        parse_tracestate(&ts(&out[0])),
        Some(vec![("foo", "1"), ("bar", "2")])
    );

    // Two calls: same trace, each with its own parent id.
    let out = h
        .request(&[("traceparent", &format!("00-{ID}-{PARENT}-00"))], 2)
        .await;
    let (a, b) = (tp(&out[0]), tp(&out[1]));
    assert_eq!((a.0.as_str(), b.0.as_str()), (ID, ID));
    assert_ne!(a.1, b.1);

    // Future version, read and re-emitted as 00.
    let out = h
        .request(
            &[(
                "traceparent",
                &format!("cc-{ID}-{PARENT}-01-what-the-future-will-be-like"),
            )],
            1,
        )
        .await;
    assert_eq!(tp(&out[0]).0, ID);
    let line = out[0]["traceparent"].to_str().expect("ascii").to_owned();
    assert!(line.starts_with("00-") && line.len() == 55);

    // Invalid traceparents restart the trace and drop tracestate.
    for bad in [
        format!("00-{ID}-{PARENT}-01."),
        format!("ff-{ID}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{ID}-{PARENT}-1"),
        format!("00-{}-{PARENT}-01", ID.to_uppercase().replace('1', "A")),
    ] {
        let out = h
            .request(&[("traceparent", bad.as_str()), ("tracestate", "foo=1")], 1)
            .await;
        assert_ne!(tp(&out[0]).0, ID, "{bad}");
        assert!(!ts(&out[0]).contains("foo=1"), "{bad}");
    }

    // The random flag travels with the trace.
    let out = h
        .request(&[("traceparent", &format!("00-{ID}-{PARENT}-02"))], 1)
        .await;
    assert_eq!(tp(&out[0]).2 & 0x02, 0x02);

    // A 16 KiB header line is accepted.
    let big = format!("big={}", "x".repeat(250));
    let big_line = std::iter::repeat_n(big.as_str(), 60)
        .collect::<Vec<_>>()
        .join(",");
    assert!(big_line.len() > 15_000);
    let out = h
        .request(
            &[
                ("traceparent", &format!("00-{ID}-{PARENT}-01")),
                ("x-padding", &"p".repeat(16 * 1024)),
            ],
            1,
        )
        .await;
    assert_eq!(tp(&out[0]).0, ID);
    // (60 members with the same key are a duplicate-key list: discarded, trace kept.)
    let out = h
        .request(
            &[
                ("traceparent", &format!("00-{ID}-{PARENT}-01")),
                ("tracestate", big_line.as_str()),
            ],
            1,
        )
        .await;
    assert_eq!(tp(&out[0]).0, ID);
    assert_eq!(ts(&out[0]), "");

    // The strict cases (STRICT_LEVEL=2): duplicated keys are inherited (one
    // kept), and keys of the current grammar that opentelemetry's
    // TraceState refuses are passed on through the server and client spans.
    let tp_line = format!("00-{ID}-{PARENT}-00");
    for (lines, expected) in [
        (vec!["foo=1,foo=1"], "foo=1"),
        (vec!["foo=1,foo=2"], "foo=1"),
        (vec!["foo=1", "foo=2"], "foo=1"),
        (vec!["foo@=1,bar=2"], "foo@=1,bar=2"),
        (vec!["foo@@bar=1,bar=2"], "foo@@bar=1,bar=2"),
        (vec!["foo@bar@baz=1,bar=2"], "foo@bar@baz=1,bar=2"),
        (vec!["@foo=1,bar=2"], ""),
    ] {
        let mut headers = vec![("traceparent", tp_line.as_str())];
        headers.extend(lines.iter().map(|l| ("tracestate", *l)));
        let out = h.request(&headers, 1).await;
        assert_eq!(tp(&out[0]).0, ID, "{lines:?}");
        assert_eq!(ts(&out[0]), expected, "{lines:?}");
    }
    for key in [
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
        "z".repeat(256),
    ] {
        let member = format!("{key}=1");
        let out = h
            .request(
                &[
                    ("traceparent", tp_line.as_str()),
                    ("tracestate", "foo=1"),
                    ("tracestate", member.as_str()),
                ],
                1,
            )
            .await;
        assert_eq!(ts(&out[0]), format!("foo=1,{member}"), "{key}");
    }
}
