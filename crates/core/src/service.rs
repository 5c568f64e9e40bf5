use std::borrow::Cow;
use std::sync::Arc;

/// The identity of a service: `service.name`, `service.version`,
/// `deployment.environment` and `service.instance.id`, as written on every
/// log line and in `target_info`.
///
/// Cheap to clone. See the [crate docs](crate) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    name: Cow<'static, str>,
    version: Option<Cow<'static, str>>,
    environment: Option<Cow<'static, str>>,
    instance_id: Option<Cow<'static, str>>,
}

impl ServiceInfo {
    /// A service with the given `service.name` and no version or environment.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                version: None,
                environment: None,
                instance_id: None,
            }),
        }
    }

    /// Sets `service.version`.
    #[must_use]
    pub fn with_version(self, version: impl Into<Cow<'static, str>>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.version = Some(version.into());
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sets `deployment.environment`.
    #[must_use]
    pub fn with_environment(self, environment: impl Into<Cow<'static, str>>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.environment = Some(environment.into());
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sets `service.instance.id`: this process among the service's
    /// replicas (telemetry gives every process a random UUID unless
    /// `OTEL_RESOURCE_ATTRIBUTES` names one).
    #[must_use]
    pub fn with_instance_id(self, id: impl Into<Cow<'static, str>>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.instance_id = Some(id.into());
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `service.name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `service.version`, when known.
    pub fn version(&self) -> Option<&str> {
        self.inner.version.as_deref()
    }

    /// `deployment.environment`, when known.
    pub fn environment(&self) -> Option<&str> {
        self.inner.environment.as_deref()
    }

    /// `service.instance.id`, when known.
    pub fn instance_id(&self) -> Option<&str> {
        self.inner.instance_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_do_not_touch_other_clones() {
        let base = ServiceInfo::new("a");
        let versioned = base.clone().with_version("1.0").with_environment("prod");
        assert_eq!(base.version(), None);
        assert_eq!(versioned.version(), Some("1.0"));
        assert_eq!(versioned.environment(), Some("prod"));
        assert_eq!(versioned.name(), "a");
        let instance = versioned.clone().with_instance_id("i-1");
        assert_eq!(
            (versioned.instance_id(), instance.instance_id()),
            (None, Some("i-1"))
        );
    }
}
