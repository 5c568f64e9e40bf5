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
    "cc_number",
    "ssn",
    "iban",
    "dob",
    "date_of_birth",
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
    "private_key",
    "jwt",
    "session_id",
    "cvv",
    "cvc",
    "pin",
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

/// Whether the field or key `name` is the deny-list entry `entry` (already
/// [`normalise`]d): a run of `name`'s words, split at `.`, `_`, `-` and
/// camelCase, spells it and only qualifiers follow (`phone` in
/// `phone_number`, `email` in `emailAddress` and `user.email_address`,
/// `cc_number` in `ccNumber`; not `token` in `token_count`); or,
/// for entries of four letters or more, `name` ends with it once
/// normalised (`customeremail`). Short entries (`pin`, `dob`, `jwt`) match
/// whole words only, so `spin` and `shipping` are not secrets.
///
/// ```
/// use looptel_core::pii::{matches, normalise};
///
/// let email = normalise("email");
/// assert!(matches("user.email_address", &email));
/// assert!(matches("contactEmail", &email));
/// assert!(matches("customeremail", &email));
/// let pin = normalise("pin");
/// assert!(matches("card.pin", &pin) && matches("PIN", &pin));
/// assert!(!matches("shipping", &pin) && !matches("spin_count", &pin));
/// ```
pub fn matches(name: &str, entry: &str) -> bool {
    if entry.len() >= 4 && ends_with_normalised(name, entry) {
        return true;
    }
    // Word boundaries: a separator, or a lower-case letter or digit
    // followed by an upper-case one.
    let bytes = name.as_bytes();
    let starts = |i: usize| {
        i == 0
            || is_separator(bytes[i - 1])
            || (bytes[i].is_ascii_uppercase()
                && (bytes[i - 1].is_ascii_lowercase() || bytes[i - 1].is_ascii_digit()))
    };
    let entry = entry.as_bytes();
    (0..bytes.len())
        .filter(|&i| !is_separator(bytes[i]) && starts(i))
        .any(|i| {
            // Compare the entry with the name from word start `i`, skipping
            // separators; it must end at a word boundary.
            let mut j = i;
            for &e in entry {
                while j < bytes.len() && is_separator(bytes[j]) {
                    j += 1;
                }
                if j == bytes.len() || bytes[j].to_ascii_lowercase() != e {
                    return false;
                }
                j += 1;
            }
            (j == bytes.len() || is_separator(bytes[j]) || starts(j))
                && only_qualifiers(bytes, j, &starts)
        })
}

/// Words that name a form of the value before them: `phone_number` is a
/// phone, `token_count` is not a token.
const QUALIFIERS: &[&str] = &[
    "number", "num", "no", "address", "addr", "id", "value", "code", "hash", "raw", "text",
];

/// Whether every word of `bytes` from `from` on is a qualifier.
fn only_qualifiers(bytes: &[u8], from: usize, starts: &dyn Fn(usize) -> bool) -> bool {
    let mut i = from;
    while i < bytes.len() {
        if is_separator(bytes[i]) {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < bytes.len() && !is_separator(bytes[end]) && !starts(end) {
            end += 1;
        }
        let word = &bytes[i..end];
        if !QUALIFIERS
            .iter()
            .any(|q| q.as_bytes().eq_ignore_ascii_case(word))
        {
            return false;
        }
        i = end;
    }
    true
}

/// The semantic conventions' replacement for a redacted value.
pub const REDACTED: &str = "REDACTED";

/// The default deny-list ([`PERSONAL`] and [`SECRETS`]), normalised once.
static DENIED: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    PERSONAL
        .iter()
        .chain(SECRETS)
        .map(|e| normalise(e))
        .collect()
});

/// The default deny-list, [`PERSONAL`] and [`SECRETS`], [`normalise`]d:
/// the entries [`matches()`] takes.
pub fn default_denied() -> &'static [String] {
    &DENIED
}

/// Whether `name` is on the default deny-list ([`PERSONAL`], [`SECRETS`]).
pub fn is_personal_or_secret(name: &str) -> bool {
    DENIED.iter().any(|e| matches(name, e))
}

/// A URL query with the values of personal or secret parameters replaced
/// by [`REDACTED`], as the semantic conventions ask for `url.query`;
/// borrowed unchanged when there is none.
///
/// ```
/// use looptel_core::pii::redact_query;
///
/// assert_eq!(redact_query("page=2&email=a%40b.c&sig=x"), "page=2&email=REDACTED&sig=x");
/// assert_eq!(redact_query("page=2"), "page=2");
/// ```
pub fn redact_query(query: &str) -> std::borrow::Cow<'_, str> {
    let denied = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        is_personal_or_secret(name)
    };
    if !query
        .split('&')
        .any(|pair| pair.contains('=') && denied(pair))
    {
        return std::borrow::Cow::Borrowed(query);
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if denied(pair) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    std::borrow::Cow::Owned(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(name: &str) -> bool {
        PERSONAL
            .iter()
            .chain(SECRETS)
            .any(|e| matches(name, &normalise(e)))
    }

    #[test]
    fn the_names_personal_data_and_secrets_go_by() {
        for name in [
            "phone_number",
            "mobile_number",
            "emailAddress",
            "user.email_address",
            "cc_number",
            "ccNumber",
            "cvc",
            "pin",
            "card.pin",
            "iban",
            "dob",
            "user.date_of_birth",
            "private_key",
            "privateKey",
            "jwt",
            "session_id",
            "sessionId",
            "customer-email",
            "customeremail",
            "Authorization",
            "x-api-key",
            "pin_code",
        ] {
            assert!(denied(name), "{name} is denied");
        }
        for name in [
            "shipping",
            "spin_count",
            "pinned",
            "order.id",
            "tenant.id",
            "client.address",
            "server.address",
            "http.route",
            "doberman",
            "session.count",
            "token_count.x",
            "email_verified",
        ] {
            assert!(!denied(name), "{name} is not denied");
        }
    }
}
