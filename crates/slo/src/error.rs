//! What can go wrong, each naming where.

/// A value of the spec that cannot make working rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Where: `slos[0].objective`.
    pub field: String,
    /// Why, and what would do.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Reading a spec or writing its files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The YAML does not fit the spec's shape.
    #[error("the spec is not valid: {0}")]
    Yaml(String),
    /// Values that cannot make working rules, each naming its field.
    #[error("the spec is not valid:\n{}", list(.0))]
    Invalid(Vec<Invalid>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The rules could not be written as YAML.
    #[error("writing YAML: {0}")]
    Write(String),
}

fn list(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
