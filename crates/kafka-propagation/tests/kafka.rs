//! Kafka against librdkafka's own mock cluster: the real protocol over real
//! sockets on 127.0.0.1 (`rdkafka::mocking`), or a real broker when
//! `LOOPTEL_TEST_KAFKA_BROKERS` is set (a variable of its own: a shell's
//! `KAFKA_BROKERS`, meant for order-service, never redirects the tests).
//! Every topic and consumer group is new to the run.

#![cfg(feature = "rdkafka")]

mod common;

use std::time::Duration;

use common::{attr, ids, setup};

use looptel_core::{ErrorOutcome, Outcome};
use looptel_kafka_propagation::{Mode, kafka};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A broker: `LOOPTEL_TEST_KAFKA_BROKERS`, or a fresh mock cluster.
struct Broker {
    _mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    servers: String,
}

/// A name no earlier run and no other test used: the process, the time,
/// and a count.
fn unique(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Broker {
    fn start() -> Self {
        if let Ok(servers) = std::env::var("LOOPTEL_TEST_KAFKA_BROKERS") {
            eprintln!("Kafka: the broker at {servers} (LOOPTEL_TEST_KAFKA_BROKERS)");
            return Self {
                _mock: None,
                servers,
            };
        }
        let mock = MockCluster::new(1).expect("mock cluster");
        let servers = mock.bootstrap_servers();
        eprintln!("Kafka: librdkafka's mock cluster at {servers}");
        Self {
            _mock: Some(mock),
            servers,
        }
    }

    fn topic(&self, name: &str) -> String {
        let topic = unique(name);
        if let Some(m) = &self._mock {
            m.create_topic(&topic, 1, 1).expect("topic");
        }
        topic
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer")
    }

    fn consumer(&self, topic: &str, group: &str) -> StreamConsumer {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", unique(group))
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        c
    }
}

async fn recv(consumer: &StreamConsumer) -> rdkafka::message::BorrowedMessage<'_> {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .expect("no error")
}

#[tokio::test]
async fn the_mock_cluster_carries_headers_both_ways() {
    let broker = Broker::start();
    let topic = broker.topic("raw");
    let producer = broker.producer();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        })
        .insert(Header {
            key: "bytes",
            value: Some(&[0xff_u8, 0x00, 0xfe][..]),
        })
        .insert(Header {
            key: "none",
            value: None::<&[u8]>,
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload("p")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    let consumer = broker.consumer(&topic, "raw");
    let m = recv(&consumer).await;
    let got: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .expect("headers")
        .iter()
        .map(|h| (h.key, h.value))
        .collect();
    assert_eq!(
        got,
        [
            (
                "traceparent",
                Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])
            ),
            ("bytes", Some(&[0xff_u8, 0x00, 0xfe][..])),
            ("none", None),
        ]
    );
}

#[derive(Debug)]
enum Failed {
    Business,
    System,
}

impl ErrorOutcome for Failed {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Business => Outcome::BusinessError,
            Self::System => Outcome::Failure,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            Self::Business => "out_of_stock",
            Self::System => "database_down",
        }
    }
}

#[tokio::test]
async fn link_mode_starts_a_linked_trace_with_the_callers_baggage_and_no_pii() {
    let s = setup(Mode::Link);
    let broker = Broker::start();
    let topic = broker.topic("orders");
    let producer = broker.producer();
    let caller = s.caller();
    let user_headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/json"),
    });
    let delivery = {
        let _g = caller.clone().attach();
        kafka::send(
            &s.telemetry,
            &producer,
            FutureRecord::to(&topic)
                .key("o-1")
                .payload("{}")
                .headers(user_headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent")
    };
    let consumer = broker.consumer(&topic, "fulfilment");
    let m = recv(&consumer).await;
    // What went over the wire: ours and the user's, no phone number.
    let wire: Vec<(String, String)> = m
        .headers()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert!(
        wire.iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let baggage = wire
        .iter()
        .find(|(k, _)| k == "baggage")
        .map(|(_, v)| v.clone());
    assert_eq!(
        baggage.as_deref(),
        Some("tenant.id=acme"),
        "denied members never leave"
    );

    let seen = kafka::process(&s.telemetry, &m, Some("fulfilment"), || async {
        let cx = Context::current();
        Ok::<_, Failed>((
            cx.baggage().get("tenant.id").map(|v| v.to_string()),
            cx.span().span_context().trace_id(),
        ))
    })
    .await
    .expect("processed");

    let send = s.span(&format!("send {topic}"));
    let process = s.span(&format!("process {topic}"));
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        send.span_context.trace_id(),
        caller.span().span_context().trace_id()
    );
    assert_eq!(send.parent_span_id, caller.span().span_context().span_id());
    // A new trace, linked to the producer's span.
    assert_ne!(
        process.span_context.trace_id(),
        send.span_context.trace_id()
    );
    assert_eq!(process.links.len(), 1);
    assert_eq!(
        ids(&process.links[0].span_context),
        ids(&send.span_context),
        "linked to the producer's span"
    );
    assert_eq!(
        seen,
        (Some("acme".to_owned()), process.span_context.trace_id())
    );
    // The conventions' attributes; offset and key on spans only.
    assert_eq!(attr(&send, "messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        attr(&send, "messaging.destination.partition.id"),
        Some(delivery.partition.to_string())
    );
    assert_eq!(
        attr(&send, "messaging.kafka.offset"),
        Some(delivery.offset.to_string())
    );
    assert_eq!(
        attr(&send, "messaging.kafka.message.key").as_deref(),
        Some("o-1")
    );
    assert_eq!(
        attr(&process, "messaging.consumer.group.name").as_deref(),
        Some("fulfilment")
    );
    // The record's offset and key, built only for a span that records.
    assert_eq!(
        attr(&process, "messaging.kafka.offset"),
        Some(delivery.offset.to_string())
    );
    assert_eq!(
        attr(&process, "messaging.kafka.message.key").as_deref(),
        Some("o-1")
    );
    assert_eq!(
        attr(&process, "messaging.operation.type").as_deref(),
        Some("process")
    );

    // Metrics: names of destinations as labels, exemplars of sampled spans.
    let text = s.exposition();
    let sent = text
        .lines()
        .find(|l| l.starts_with("messaging_client_sent_messages_total{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        sent.contains(&format!("messaging_destination_name=\"{topic}\"")),
        "{sent}"
    );
    assert!(sent.contains("messaging_operation_name=\"send\""));
    assert!(
        sent.contains(&format!("trace_id=\"{}\"", send.span_context.trace_id())),
        "exemplar: {sent}"
    );
    assert!(
        !text.contains("o-1") && !text.contains("offset"),
        "no per-message labels"
    );
    let consumed = text
        .lines()
        .find(|l| l.starts_with("messaging_client_consumed_messages_total{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        consumed.contains("messaging_consumer_group_name=\"fulfilment\""),
        "{consumed}"
    );
    assert!(consumed.contains(&format!("trace_id=\"{}\"", process.span_context.trace_id())));
    assert!(text.contains("messaging_process_duration_seconds_bucket{"));
    assert!(text.contains("messaging_client_operation_duration_seconds_bucket{"));
}

#[tokio::test]
async fn parent_mode_continues_the_producers_trace() {
    let s = setup(Mode::Parent);
    let broker = Broker::start();
    let topic = broker.topic("orders-parent");
    let producer = broker.producer();
    let caller = s.caller();
    {
        let _g = caller.clone().attach();
        kafka::send(
            &s.telemetry,
            &producer,
            FutureRecord::to(&topic).key("o-2").payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    }
    let consumer = broker.consumer(&topic, "fulfilment");
    let m = recv(&consumer).await;
    kafka::process(&s.telemetry, &m, Some("fulfilment"), || async {
        Ok::<_, Failed>(())
    })
    .await
    .expect("processed");
    let send = s.span(&format!("send {topic}"));
    let process = s.span(&format!("process {topic}"));
    assert_eq!(
        process.span_context.trace_id(),
        caller.span().span_context().trace_id()
    );
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert!(process.links.is_empty());
}

#[tokio::test]
async fn a_failing_consumer_is_classified_and_counted() {
    let s = setup(Mode::Link);
    let broker = Broker::start();
    let topic = broker.topic("failing");
    let producer = broker.producer();
    for key in ["a", "b"] {
        kafka::send(
            &s.telemetry,
            &producer,
            FutureRecord::to(&topic).key(key).payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    }
    let consumer = broker.consumer(&topic, "g");
    let first = recv(&consumer).await;
    let r = kafka::process(&s.telemetry, &first, Some("g"), || async {
        Err::<(), _>(Failed::System)
    })
    .await;
    assert!(r.is_err());
    drop(first);
    let second = recv(&consumer).await;
    let r = kafka::process(&s.telemetry, &second, Some("g"), || async {
        Err::<(), _>(Failed::Business)
    })
    .await;
    assert!(r.is_err());
    let processes: Vec<SpanData> = s
        .spans()
        .into_iter()
        .filter(|sp| sp.name == format!("process {topic}"))
        .collect();
    assert_eq!(processes.len(), 2);
    assert!(
        matches!(processes[0].status, Status::Error { .. }),
        "a failure: Error"
    );
    assert_eq!(
        attr(&processes[0], "error.type").as_deref(),
        Some("database_down")
    );
    // A message the handler could not process by its own fault (poison)
    // failed its processing all the same: Error, with its error.type.
    assert!(
        matches!(processes[1].status, Status::Error { .. }),
        "poison: Error, {:?}",
        processes[1].status
    );
    assert_eq!(
        attr(&processes[1], "error.type").as_deref(),
        Some("out_of_stock")
    );
    let text = s.exposition();
    for error in ["database_down", "out_of_stock"] {
        assert!(
            text.lines().any(
                |l| l.starts_with("messaging_process_duration_seconds_count{")
                    && l.contains(&format!("error_type=\"{error}\""))
            ),
            "{error}: {text}"
        );
    }
}

#[tokio::test]
async fn garbage_headers_from_a_foreign_producer_never_break_processing() {
    let s = setup(Mode::Parent);
    let broker = Broker::start();
    let topic = broker.topic("foreign");
    let producer = broker.producer();
    let huge = "k=v,".repeat(10_000);
    let cases: Vec<OwnedHeaders> = vec![
        OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(&[0xff_u8, 0xfe, 0x00][..]),
        }),
        OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("00-11111111111111111111111111111111-2222222222222222-01"),
            }),
        OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: None::<&[u8]>,
        }),
        OwnedHeaders::new().insert(Header {
            key: "baggage",
            value: Some(huge.as_str()),
        }),
        OwnedHeaders::new().insert(Header {
            key: "tracestate",
            value: Some("=,=,,"),
        }),
    ];
    let n = cases.len();
    for h in cases {
        producer
            .send(
                FutureRecord::to(&topic).key("x").payload("{}").headers(h),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("sent");
    }
    let consumer = broker.consumer(&topic, "g");
    for _ in 0..n {
        let m = recv(&consumer).await;
        let baggage = kafka::process(&s.telemetry, &m, Some("g"), || async {
            Ok::<_, Failed>(Context::current().baggage().len())
        })
        .await
        .expect("processed");
        assert_eq!(baggage, 0, "no baggage from an oversized header");
    }
    let processes: Vec<SpanData> = s
        .spans()
        .into_iter()
        .filter(|sp| sp.name == format!("process {topic}"))
        .collect();
    assert_eq!(processes.len(), n);
    let foreign =
        opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex");
    // Repeated traceparent: invalid, a new root rather than one of them.
    assert!(
        processes
            .iter()
            .all(|p| p.span_context.trace_id() != foreign),
        "a repeated traceparent is not followed"
    );
    assert!(
        processes
            .iter()
            .all(|p| p.parent_span_id == opentelemetry::trace::SpanId::INVALID)
    );
}

#[tokio::test]
async fn a_batch_gets_one_receive_span_linked_to_each_message() {
    let s = setup(Mode::Link);
    let broker = Broker::start();
    let topic = broker.topic("batch");
    let producer = broker.producer();
    for key in ["a", "b", "c"] {
        kafka::send(
            &s.telemetry,
            &producer,
            FutureRecord::to(&topic).key(key).payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    }
    let consumer = broker.consumer(&topic, "g");
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.push(recv(&consumer).await.detach());
    }
    let b = kafka::receive_batch(&s.telemetry, &batch, Some("g"));
    b.end(&Ok::<_, Failed>(()));
    let receive = s.span(&format!("receive {topic}"));
    assert_eq!(receive.span_kind, SpanKind::Client);
    assert_eq!(receive.links.len(), 3);
    assert_eq!(
        attr(&receive, "messaging.batch.message_count"),
        Some("3".to_owned())
    );
    let sends: Vec<_> = s
        .spans()
        .into_iter()
        .filter(|sp| sp.name == format!("send {topic}"))
        .map(|sp| ids(&sp.span_context))
        .collect();
    assert!(
        receive
            .links
            .iter()
            .all(|l| sends.contains(&ids(&l.span_context)))
    );
}
