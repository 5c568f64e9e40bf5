//! Cross-crate end-to-end tests of looptel; see `tests/`.
