//! A registered instrument: its names, help, unit and series.

use crate::family::Family;

/// A registered instrument: its name, help and unit, and its series.
#[derive(Debug)]
pub struct Metric<M> {
    /// Prometheus name without a `_total` suffix.
    pub(crate) name: String,
    /// The semantic-convention name and unit, as registered.
    pub(crate) otel_name: String,
    pub(crate) otel_unit: String,
    pub(crate) unit: Option<&'static str>,
    pub(crate) help: &'static str,
    /// The family's label names as exposed (`http_request_method`).
    pub(crate) label_names: Vec<String>,
    pub(crate) family: Family<M>,
}

impl<M> Metric<M> {
    /// The series for `values`, one per label in registration order.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        self.family.with(values, f)
    }

    /// The series, bounded by the cap.
    pub fn family(&self) -> &Family<M> {
        &self.family
    }

    /// The name as exposed (`http_server_request_duration_seconds`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<M> Metric<M> {
    /// The instrument's snapshot: each series (with its attributes) pushed
    /// into `data` by `push`.
    pub(crate) fn snapshot_of(
        &self,
        mut data: crate::snapshot::Data,
        push: impl Fn(&mut crate::snapshot::Data, crate::snapshot::Attributes, &M),
    ) -> crate::snapshot::InstrumentSnapshot {
        self.family.for_each(|values, m| {
            push(
                &mut data,
                crate::snapshot::attributes(self.family.labels, values),
                m,
            );
        });
        crate::snapshot::InstrumentSnapshot {
            name: self.otel_name.clone(),
            unit: self.otel_unit.clone(),
            description: self.help.to_owned(),
            data,
            asynchronous: false,
        }
    }
}
