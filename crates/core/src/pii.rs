//! Names of fields and keys that carry personal data or secrets, and the one
//! way they are matched — shared by log redaction and the baggage policy.

/// Personal data: shown masked in logs, never propagated in baggage.
pub const PERSONAL: &[&str] = &[
    "phone",
    "mobile",
    "email",
    "card",
    "card_number",
    "card_no",
    "ssn",
];

/// Secrets: never shown, never propagated.
pub const SECRETS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "cvv",
];

fn is_separator(b: u8) -> bool {
    matches!(b, b'.' | b'_' | b'-')
}

/// `name` lowercased, with `.`, `_` and `-` removed: the form names are
/// compared in.
pub fn normalise(name: &str) -> String {
    name.bytes()
        .filter(|b| !is_separator(*b))
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

/// Whether `name`, normalised, ends with `suffix` (already [`normalise`]d),
/// without allocating: `user.email`, `customer_email` and `Email` all end
/// with `email`.
///
/// ```
/// use looptel_core::pii::{ends_with_normalised, normalise};
///
/// let card = normalise("card_number");
/// assert!(ends_with_normalised("payment.cardNumber", &card));
/// assert!(!ends_with_normalised("card_type", &card));
/// ```
pub fn ends_with_normalised(name: &str, suffix: &str) -> bool {
    let mut name = name.bytes().rev().filter(|b| !is_separator(*b));
    suffix
        .bytes()
        .rev()
        .all(|s| name.next().is_some_and(|n| n.to_ascii_lowercase() == s))
}
