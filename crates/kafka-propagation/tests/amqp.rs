//! AMQP against the RabbitMQ on 127.0.0.1:5672 (guest/guest), or
//! `AMQP_URL`; `scripts/test.sh` installs and starts `rabbitmq-server`
//! when nothing listens there. Each test declares its own exchange and
//! queue, deleted with the connection.

#![cfg(feature = "lapin")]

mod common;

use std::time::Duration;

use common::{Setup, attr, setup};

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use looptel_core::ErrorOutcome;
use looptel_kafka_propagation::{Mode, amqp};
use looptel_red_metrics::Format;
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry_sdk::trace::SpanData;

struct Rabbit {
    _connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

const ROUTING_KEY: &str = "payment.requested";

async fn rabbit(name: &str) -> Rabbit {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    eprintln!(
        "AMQP: the broker at {} (AMQP_URL, or RabbitMQ on 127.0.0.1)",
        url.rsplit('@').next().unwrap_or(&url)
    );
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it)");
    let channel = connection.create_channel().await.expect("channel");
    let suffix = format!("{}-{}", std::process::id(), name);
    let exchange = format!("looptel-test-{suffix}");
    let queue = format!("looptel-test-{suffix}");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    Rabbit {
        _connection: connection,
        channel,
        exchange,
        queue,
    }
}

impl Rabbit {
    async fn get(&self) -> lapin::message::Delivery {
        for _ in 0..200 {
            if let Some(m) = self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
                .await
                .expect("basic.get")
            {
                return m.delivery;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no message in {}", self.queue);
    }
}

async fn publish(s: &Setup, r: &Rabbit, properties: BasicProperties) {
    amqp::publish(
        &s.telemetry,
        &r.channel,
        &r.exchange,
        ROUTING_KEY,
        BasicPublishOptions::default(),
        b"{}",
        properties,
    )
    .await
    .expect("published");
}

#[derive(Debug)]
struct Declined;

impl ErrorOutcome for Declined {
    fn error_type(&self) -> &'static str {
        "payment_gateway_down"
    }
}

#[tokio::test]
async fn link_mode_through_rabbitmq_with_baggage_long_strings_and_no_pii() {
    let s = setup(Mode::Link);
    let r = rabbit("link").await;
    let mut user = FieldTable::default();
    user.insert("x-user".into(), AMQPValue::LongInt(7));
    {
        let _g = s.caller().attach();
        publish(
            &s,
            &r,
            BasicProperties::default()
                .with_headers(user)
                .with_correlation_id("order-o-1".into()),
        )
        .await;
    }
    let delivery = r.get().await;
    // On the wire: long strings, the user's header kept, no phone number.
    let headers = delivery.properties.headers().clone().expect("headers");
    assert_eq!(headers.inner().get("x-user"), Some(&AMQPValue::LongInt(7)));
    match headers.inner().get("baggage") {
        Some(AMQPValue::LongString(b)) => assert_eq!(b.as_bytes(), b"tenant.id=acme"),
        other => panic!("baggage as a long string: {other:?}"),
    }
    assert!(matches!(
        headers.inner().get("traceparent"),
        Some(AMQPValue::LongString(_))
    ));

    let tenant = amqp::process(&s.telemetry, &delivery, &r.queue, || async {
        Ok::<_, Declined>(
            Context::current()
                .baggage()
                .get("tenant.id")
                .map(|v| v.to_string()),
        )
    })
    .await
    .expect("processed");
    assert_eq!(tenant.as_deref(), Some("acme"));
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");

    let destination = format!("{}:{ROUTING_KEY}", r.exchange);
    let publish = s.span(&format!("publish {destination}"));
    let process = s.span(&format!("process {destination}:{}", r.queue));
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_ne!(
        process.span_context.trace_id(),
        publish.span_context.trace_id()
    );
    assert_eq!(process.links.len(), 1);
    assert_eq!(
        process.links[0].span_context.span_id(),
        publish.span_context.span_id()
    );
    assert_eq!(
        attr(&publish, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attr(&publish, "messaging.rabbitmq.destination.routing_key").as_deref(),
        Some(ROUTING_KEY)
    );
    assert_eq!(
        attr(&publish, "messaging.message.conversation_id").as_deref(),
        Some("order-o-1")
    );
    assert!(attr(&process, "messaging.rabbitmq.message.delivery_tag").is_some());
    // The delivery's routing key and ids, built only for a span that records.
    assert_eq!(
        attr(&process, "messaging.rabbitmq.destination.routing_key").as_deref(),
        Some(ROUTING_KEY)
    );
    assert_eq!(
        attr(&process, "messaging.message.conversation_id").as_deref(),
        Some("order-o-1")
    );

    let text = s.registry.encode(Format::OpenMetrics);
    let sent = text
        .lines()
        .find(|l| l.starts_with("messaging_client_sent_messages_total{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(sent.contains("messaging_system=\"rabbitmq\""), "{sent}");
    assert!(
        sent.contains(&format!("messaging_destination_name=\"{destination}\"")),
        "{sent}"
    );
    assert!(
        !text.contains("delivery_tag") && !text.contains("order-o-1"),
        "no per-message labels"
    );
}

#[tokio::test]
async fn parent_mode_through_rabbitmq_and_the_default_exchange() {
    let s = setup(Mode::Parent);
    let r = rabbit("parent").await;
    let caller = s.caller();
    {
        let _g = caller.clone().attach();
        // The default exchange routes by queue name.
        amqp::publish(
            &s.telemetry,
            &r.channel,
            "",
            &r.queue,
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await
        .expect("published");
    }
    let delivery = r.get().await;
    amqp::process(&s.telemetry, &delivery, &r.queue, || async {
        Ok::<_, Declined>(())
    })
    .await
    .expect("processed");
    let publish = s.span(&format!("publish amq.default:{}", r.queue));
    let process = s.span(&format!("process amq.default:{q}:{q}", q = r.queue));
    assert_eq!(
        process.span_context.trace_id(),
        caller.span().span_context().trace_id()
    );
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
}

#[tokio::test]
async fn foreign_header_types_and_a_failing_consumer() {
    let s = setup(Mode::Parent);
    let r = rabbit("foreign").await;
    let tables = [
        vec![("traceparent", AMQPValue::LongInt(42))],
        vec![("traceparent", AMQPValue::ByteArray(vec![0xff, 0xfe].into()))],
        vec![("baggage", AMQPValue::FieldTable(FieldTable::default()))],
        vec![("traceparent", AMQPValue::LongString("00-zz-yy-01".into()))],
    ];
    let n = tables.len();
    for t in tables {
        let mut h = FieldTable::default();
        for (k, v) in t {
            h.insert(k.into(), v);
        }
        r.channel
            .basic_publish(
                r.exchange.as_str().into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default().with_headers(h),
            )
            .await
            .expect("published")
            .await
            .expect("confirmed");
    }
    for _ in 0..n {
        let d = r.get().await;
        let err = amqp::process(&s.telemetry, &d, &r.queue, || async {
            Err::<(), _>(Declined)
        })
        .await;
        assert!(err.is_err());
    }
    let name = format!("process {}:{ROUTING_KEY}:{}", r.exchange, r.queue);
    let processes: Vec<SpanData> = s.spans().into_iter().filter(|sp| sp.name == name).collect();
    assert_eq!(processes.len(), n);
    for p in &processes {
        assert_eq!(
            p.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "a new root"
        );
        assert!(matches!(p.status, Status::Error { .. }));
        assert_eq!(
            attr(p, "error.type").as_deref(),
            Some("payment_gateway_down")
        );
    }
    let text = s.registry.encode(Format::OpenMetrics);
    assert!(
        text.lines().any(
            |l| l.starts_with("messaging_client_consumed_messages_total{")
                && l.contains("error_type=\"payment_gateway_down\"")
                && l.contains(&format!(" {n}"))
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_batch_of_deliveries_gets_one_receive_span() {
    let s = setup(Mode::Link);
    let r = rabbit("batch").await;
    for _ in 0..3 {
        publish(&s, &r, BasicProperties::default()).await;
    }
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(r.get().await);
    }
    amqp::receive_batch(&s.telemetry, &deliveries, &r.queue).end(&Ok::<_, Declined>(()));
    let receive = s.span(&format!("receive {}", r.queue));
    assert_eq!(receive.links.len(), 3);
    assert_eq!(
        attr(&receive, "messaging.batch.message_count").as_deref(),
        Some("3")
    );
}
