//! What messaging hooks are given: one operation as the conventions name it.

use opentelemetry::KeyValue;
use opentelemetry_semantic_conventions::attribute as a;

/// One messaging operation — a send, a message processed, a settlement —
/// as the semantic conventions describe it: the request a messaging
/// [`RequestHook`](crate::RequestHook) is given (see [`MessageHook`]), and
/// what the transport names its span from. Offsets, keys and delivery tags
/// go in [`attributes`](Self::attributes): span attributes, never labels.
///
/// ```
/// use looptel_engine::MessageOp;
///
/// let op = MessageOp::new("kafka", "process", "process", "orders").partition(Some("3"));
/// assert_eq!(op.span_name(), "process orders");
/// assert_eq!(op.partition, Some("3"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MessageOp<'a> {
    /// `messaging.system`: `kafka`, `rabbitmq`, `nats`.
    pub system: &'static str,
    /// `messaging.operation.name`: `send`, `publish`, `process`, `receive`,
    /// `ack`, `nack`.
    pub name: &'static str,
    /// `messaging.operation.type`: `send`, `process`, `receive`, `settle`.
    pub kind: &'static str,
    /// `messaging.destination.name`.
    pub destination: &'a str,
    /// `messaging.destination.partition.id`, when known before the
    /// operation (a Kafka producer learns it on delivery:
    /// [`CallEvent::Partition`](crate::CallEvent::Partition)).
    pub partition: Option<&'a str>,
    /// `messaging.consumer.group.name`.
    pub group: Option<&'a str>,
    /// Span attributes beyond the common ones.
    pub attributes: Vec<KeyValue>,
    /// More span attributes, built only for a span that records (an
    /// offset, a key: most messages' producers do not sample).
    pub lazy_attributes: Option<&'a dyn SpanAttributes>,
}

impl std::fmt::Debug for MessageOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageOp")
            .field("system", &self.system)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("destination", &self.destination)
            .field("partition", &self.partition)
            .field("group", &self.group)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

/// Span attributes built only when a span records: what
/// [`MessageOp::lazy_attributes`] holds. A closure
/// `Fn(&mut Vec<KeyValue>) + Sync` is one.
pub trait SpanAttributes: Sync {
    /// Adds the attributes to `attributes`.
    fn extend_into(&self, attributes: &mut Vec<KeyValue>);
}

impl<F: Fn(&mut Vec<KeyValue>) + Sync> SpanAttributes for F {
    fn extend_into(&self, attributes: &mut Vec<KeyValue>) {
        self(attributes);
    }
}

impl<'a> MessageOp<'a> {
    /// An operation on `destination`, without partition, group or other
    /// attributes.
    #[inline]
    pub fn new(
        system: &'static str,
        name: &'static str,
        kind: &'static str,
        destination: &'a str,
    ) -> Self {
        Self {
            system,
            name,
            kind,
            destination,
            partition: None,
            group: None,
            attributes: Vec::new(),
            lazy_attributes: None,
        }
    }

    /// With the partition.
    #[must_use]
    #[inline]
    pub fn partition(mut self, partition: Option<&'a str>) -> Self {
        self.partition = partition;
        self
    }

    /// With the consumer group.
    #[must_use]
    #[inline]
    pub fn group(mut self, group: Option<&'a str>) -> Self {
        self.group = group;
        self
    }

    /// With span attributes beyond the common ones.
    #[must_use]
    #[inline]
    pub fn attributes(mut self, attributes: Vec<KeyValue>) -> Self {
        self.attributes = attributes;
        self
    }

    /// With span attributes built only for a span that records.
    #[must_use]
    #[inline]
    pub fn lazy_attributes(mut self, attributes: &'a dyn SpanAttributes) -> Self {
        self.lazy_attributes = Some(attributes);
        self
    }

    /// The same operation named otherwise (a `nack` of the message a
    /// `process` handled), its attributes kept.
    #[must_use]
    pub fn renamed(&self, name: &'static str, kind: &'static str) -> Self {
        Self {
            name,
            kind,
            ..self.clone()
        }
    }

    /// `{operation} {destination}`.
    pub fn span_name(&self) -> String {
        // Not `format!`: a third of the cost for two pieces.
        let mut name = String::with_capacity(self.name.len() + 1 + self.destination.len());
        name.push_str(self.name);
        name.push(' ');
        name.push_str(self.destination);
        name
    }

    /// The span's attributes: the conventions' and
    /// [`attributes`](Self::attributes).
    pub fn span_attributes(&self) -> Vec<KeyValue> {
        // Sized once: the four below, partition, group and the transport's.
        let mut attrs = Vec::with_capacity(6 + self.attributes.len());
        attrs.extend([
            KeyValue::new(a::MESSAGING_SYSTEM, self.system),
            KeyValue::new(a::MESSAGING_OPERATION_NAME, self.name),
            KeyValue::new(a::MESSAGING_OPERATION_TYPE, self.kind),
            KeyValue::new(a::MESSAGING_DESTINATION_NAME, self.destination.to_owned()),
        ]);
        if let Some(p) = self.partition {
            attrs.push(KeyValue::new(
                a::MESSAGING_DESTINATION_PARTITION_ID,
                p.to_owned(),
            ));
        }
        if let Some(g) = self.group {
            attrs.push(KeyValue::new(
                a::MESSAGING_CONSUMER_GROUP_NAME,
                g.to_owned(),
            ));
        }
        attrs.extend(self.attributes.iter().cloned());
        if let Some(more) = self.lazy_attributes {
            more.extend_into(&mut attrs);
        }
        attrs
    }
}

/// A hook for messaging operations: a
/// [`RequestHook`](crate::RequestHook) of [`MessageOp`]s of any lifetime
/// (its state may keep the operation's names until the end). Every such
/// hook is one.
pub trait MessageHook: for<'a> crate::RequestHook<MessageOp<'a>> {}

impl<H: for<'a> crate::RequestHook<MessageOp<'a>>> MessageHook for H {}
