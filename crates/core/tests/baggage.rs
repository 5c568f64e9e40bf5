//! W3C Baggage, rule by rule: repeated lines, limits, encoding, properties,
//! invalid members, and arbitrary bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, HeaderValue};
use looptel_core::baggage::{BaggagePropagator, InjectPolicy, MAX_BYTES, MAX_MEMBERS, decode};
use looptel_core::{HeaderExtractor, HeaderInjector, Propagator};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use proptest::prelude::*;

fn headers(lines: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append("baggage", HeaderValue::from_bytes(l).expect("header value"));
    }
    h
}

/// Extracts through the generic carrier and through the direct path, checks
/// they agree, and returns key → (value, properties).
fn extract(lines: &[&str]) -> BTreeMap<String, (String, String)> {
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let h = headers(&bytes);
    let generic =
        BaggagePropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&h));
    let direct = Propagator::default().extract_headers(&h);
    let a = members(&generic);
    assert_eq!(
        a,
        members(&direct),
        "direct and generic paths differ for {lines:?}"
    );
    a
}

fn members(cx: &Context) -> BTreeMap<String, (String, String)> {
    cx.baggage()
        .iter()
        .map(|(k, (v, m))| (k.to_string(), (v.to_string(), m.as_str().to_owned())))
        .collect()
}

fn inject(cx: &Context) -> Option<String> {
    let mut h = HeaderMap::new();
    BaggagePropagator::new().inject_context(cx, &mut HeaderInjector(&mut h));
    h.get("baggage")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

fn one(key: &str, m: &BTreeMap<String, (String, String)>) -> String {
    m.get(key)
        .map(|(v, _)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in {m:?}"))
}

#[test]
fn keys_are_exactly_rfc_7230_tokens() {
    // tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
    //         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    for b in 0..=255_u8 {
        let tchar = b.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(char::from(b));
        let key = [b'k', b];
        let key = String::from_utf8_lossy(&key);
        assert_eq!(looptel_core::baggage::is_key(&key), tchar, "byte {b:#04x}");
    }
    assert!(!looptel_core::baggage::is_key(""));
}

#[test]
fn repeated_header_lines_are_all_read() {
    let m = extract(&["a=1,b=2", "c=3", "d=4"]);
    assert_eq!(m.len(), 4);
    assert_eq!(one("d", &m), "4");
}

#[test]
fn values_keep_their_meaning() {
    let m = extract(&[
        "eq=a=b==c, sp=hello%20world, tab=x%09y, pct=100%25, utf=%C3%A9t%C3%A9, bad=%FF%FE, empty=",
    ]);
    assert_eq!(one("eq", &m), "a=b==c");
    assert_eq!(
        one("sp", &m),
        "hello world",
        "percent-encoded spaces are not trimmed"
    );
    assert_eq!(one("tab", &m), "x\ty");
    assert_eq!(one("pct", &m), "100%");
    assert_eq!(one("utf", &m), "été");
    assert_eq!(
        one("bad", &m),
        "\u{fffd}\u{fffd}",
        "invalid UTF-8 decodes to U+FFFD"
    );
    assert_eq!(one("empty", &m), "");
}

#[test]
fn values_are_re_emitted_correctly_encoded() {
    let h = headers(&[b"sp=hello%20world,pct=100%25,eq=a=b,utf=%C3%A9,tab=%09"]);
    let cx = Propagator::default().extract_headers(&h);
    let out = inject(&cx).expect("baggage");
    let mut parts: Vec<&str> = out.split(',').collect();
    parts.sort_unstable();
    assert_eq!(
        parts,
        [
            "eq=a=b",
            "pct=100%25",
            "sp=hello%20world",
            "tab=%09",
            "utf=%C3%A9"
        ]
    );
}

#[test]
fn properties_are_kept_and_re_emitted() {
    let m = extract(&["k=v;ttl=60;flag, x=1 ; p = q ;  r"]);
    assert_eq!(m["k"], ("v".to_owned(), "ttl=60;flag".to_owned()));
    assert_eq!(m["x"], ("1".to_owned(), "p=q;r".to_owned()));
    let cx = Propagator::default().extract_headers(&headers(&[b"k=v;ttl=60;flag"]));
    assert_eq!(inject(&cx).as_deref(), Some("k=v;ttl=60;flag"));
}

#[test]
fn invalid_members_are_skipped_without_losing_valid_ones() {
    let m = extract(&["a=1, no-equals, =nokey, bad key=1, c=x y, d=%zz, e=\"q\", f=2;=p, g=3"]);
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["a", "g"]);
    let d = decode([&b"a=1,,  , b=2"[..]]);
    assert_eq!(
        (d.members.len(), d.invalid),
        (2, 0),
        "empty members are not invalid"
    );
}

#[test]
fn sixty_four_members_and_8192_bytes_are_kept_above_that_whole_members_go() {
    let members: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("k{i}=v{i}")).collect();
    assert_eq!(extract(&[&members.join(",")]).len(), 64);
    let mut more = members;
    more.push("extra=1".to_owned());
    let m = extract(&[&more.join(",")]);
    assert_eq!(m.len(), 64);
    assert!(!m.contains_key("extra"), "the 65th member is dropped whole");

    // One member of exactly 8192 bytes is kept — the SDK's 4 KiB cap is not ours.
    let big = format!("big={}", "v".repeat(MAX_BYTES - 4));
    assert_eq!(big.len(), MAX_BYTES);
    assert_eq!(one("big", &extract(&[&big])).len(), MAX_BYTES - 4);
    // Two lines adding to 8192 bytes with the separator: kept.
    let a = format!("a={}", "x".repeat(4000));
    let b = format!("b={}", "y".repeat(MAX_BYTES - a.len() - 1 - 2));
    assert_eq!(extract(&[&a, &b]).len(), 2);
    // One byte more: the member that does not fit is dropped whole.
    let b2 = format!("b={}", "y".repeat(MAX_BYTES - a.len() - 2));
    let m = extract(&[&a, &b2, "c=1"]);
    assert!(
        m.contains_key("a") && !m.contains_key("b") && m.contains_key("c"),
        "{:?}",
        m.keys()
    );
    let d = decode([a.as_bytes(), b2.as_bytes()]);
    assert_eq!(d.over_limit, 1);
}

#[test]
fn injection_keeps_the_limits() {
    let mut baggage = opentelemetry::baggage::Baggage::new();
    for i in 0..64 {
        let _ = baggage.insert(format!("k{i:02}"), "v".repeat(100));
    }
    let cx = Context::new().with_baggage(baggage);
    let out = inject(&cx).expect("baggage");
    assert!(out.len() <= MAX_BYTES);
    // Each member is whole: k + = + 100 v's.
    assert!(
        out.split(',')
            .all(|m| m.len() == 104 && m.ends_with(&"v".repeat(100)))
    );
    assert_eq!(out.split(',').count(), 64);
}

#[test]
fn the_direct_path_keeps_valid_members_next_to_a_non_ascii_one() {
    let h = headers(&[b"a=1,b=\xe9t\xe9,c=3"]);
    let m = members(&Propagator::default().extract_headers(&h));
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["a", "c"]);
}

#[derive(Debug, Default)]
struct DenyPhone(AtomicUsize);
impl InjectPolicy for DenyPhone {
    fn allows(&self, key: &str) -> bool {
        key != "user.phone"
    }
    fn injected(&self, bytes: usize) {
        self.0.store(bytes, Ordering::Relaxed);
    }
}

#[test]
fn an_inject_policy_filters_outgoing_members() {
    let policy = Arc::new(DenyPhone::default());
    let p = Propagator::default().with_baggage_policy(policy.clone());
    let cx = p.extract_headers(&headers(&[b"tenant.id=acme,user.phone=123"]));
    assert_eq!(
        cx.baggage().len(),
        2,
        "inbound members stay available locally"
    );
    let mut h = HeaderMap::new();
    p.inject(&cx, &mut HeaderInjector(&mut h));
    assert_eq!(h["baggage"], "tenant.id=acme");
    assert_eq!(policy.0.load(Ordering::Relaxed), "tenant.id=acme".len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip_within_limits(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
    ) {
        let d = decode(lines.iter().map(Vec::as_slice));
        prop_assert!(d.members.len() <= MAX_MEMBERS);
        let cx = BaggagePropagator::context_with(&Context::new(), d);
        if let Some(out) = BaggagePropagator::new().encode(&cx) {
            prop_assert!(out.len() <= MAX_BYTES);
            // What we emit decodes to exactly what we hold.
            let again = BaggagePropagator::context_with(&Context::new(), decode([out.as_bytes()]));
            prop_assert_eq!(members(&again), members(&cx));
        }
    }

    #[test]
    fn any_value_survives_a_round_trip(key in "[a-z][a-z0-9._-]{0,20}", value in any::<String>()) {
        let mut b = opentelemetry::baggage::Baggage::new();
        let _ = b.insert(key.clone(), value.clone());
        let cx = Context::new().with_baggage(b);
        let out = inject(&cx).expect("one member");
        let back = members(&Propagator::default().extract_headers(&headers(&[out.as_bytes()])));
        prop_assert_eq!(&back[&key].0, &value);
    }
}
