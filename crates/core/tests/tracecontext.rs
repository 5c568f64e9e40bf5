//! W3C Trace Context, rule by rule from the Level 2 text, plus every case of
//! the W3C test harness (test/test.py) that concerns a single hop.

use http::{HeaderMap, HeaderValue};
use looptel_core::tracecontext::{
    TraceContextPropagator, parse_traceparent, parse_traceparent_bytes, parse_tracestate,
    render_tracestate,
};
use looptel_core::{HeaderExtractor, HeaderInjector};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
use proptest::prelude::*;

const ID: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_bytes(v).expect("value"),
        );
    }
    h
}

fn extract(pairs: &[(&str, &str)]) -> Context {
    let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    TraceContextPropagator::new().extract(&HeaderExtractor(&headers(&pairs)))
}

fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

fn tracestate(cx: &Context) -> String {
    cx.span().span_context().trace_state().header()
}

fn inject(cx: &Context) -> HeaderMap {
    let mut h = HeaderMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(&mut h));
    h
}

fn inject_all(cx: &Context) -> Vec<(String, String)> {
    let mut h = HeaderMap::new();
    looptel_core::Propagator::default().inject(cx, &mut HeaderInjector(&mut h));
    let mut out: Vec<_> = h
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            // Baggage members are a set (W3C Baggage: order carries no
            // meaning), and OpenTelemetry's `Baggage` iterates its hash
            // map in an order of its own per value: compared sorted.
            let v = if k == "baggage" {
                let mut members: Vec<&str> = v.split(',').collect();
                members.sort_unstable();
                members.join(",")
            } else {
                v
            };
            (k.to_string(), v)
        })
        .collect();
    out.sort();
    out
}

fn accepted(tp: &str) -> bool {
    trace_id(&extract(&[("traceparent", tp)])).is_some()
}

#[test]
fn valid_version_00_is_accepted_with_ids_and_flags() {
    let cx = extract(&[("traceparent", &format!("00-{ID}-{PARENT}-01"))]);
    let span = cx.span();
    let sc = span.span_context();
    assert_eq!(sc.trace_id().to_string(), ID);
    assert_eq!(sc.span_id().to_string(), PARENT);
    assert!(sc.is_sampled() && sc.is_remote());
}

#[test]
fn header_names_are_case_insensitive() {
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        assert_eq!(
            trace_id(&extract(&[(name, &format!("00-{ID}-{PARENT}-01"))])).as_deref(),
            Some(ID)
        );
    }
    for name in ["trace-parent", "trace.parent"] {
        assert_eq!(
            trace_id(&extract(&[(name, &format!("00-{ID}-{PARENT}-01"))])),
            None
        );
    }
}

#[test]
fn version_rules() {
    // Version 00: nothing may follow the flags.
    assert!(!accepted(&format!("00-{ID}-{PARENT}-01.")));
    assert!(!accepted(&format!(
        "00-{ID}-{PARENT}-01-what-the-future-will-be-like"
    )));
    // A higher version: the flags end the string or are followed by `-`.
    assert!(accepted(&format!("cc-{ID}-{PARENT}-01")));
    assert!(accepted(&format!(
        "cc-{ID}-{PARENT}-01-what-the-future-will-be-like"
    )));
    assert!(!accepted(&format!(
        "cc-{ID}-{PARENT}-01.what-the-future-will-be-like"
    )));
    // ff is forbidden; versions are exactly two lowercase hex digits.
    assert!(!accepted(&format!("ff-{ID}-{PARENT}-01")));
    for v in [".0", "0.", "000", "0000", "0", "0A", "CC"] {
        assert!(!accepted(&format!("{v}-{ID}-{PARENT}-01")), "{v}");
    }
}

#[test]
fn a_higher_version_is_re_emitted_as_00() {
    let cx = extract(&[("traceparent", &format!("cc-{ID}-{PARENT}-01-extra"))]);
    assert_eq!(inject(&cx)["traceparent"], format!("00-{ID}-{PARENT}-01"));
}

#[test]
fn trace_id_rules() {
    assert!(!accepted(&format!("00-{}-{PARENT}-01", "0".repeat(32))));
    for bad in [
        ".2345678901234567890123456789012",
        "1234567890123456789012345678901.",
        "123456789012345678901234567890123",
        "1234567890123456789012345678901",
        "1234567890123456789012345678901A",
    ] {
        assert!(!accepted(&format!("00-{bad}-{PARENT}-01")), "{bad}");
    }
}

#[test]
fn parent_id_rules() {
    assert!(!accepted(&format!("00-{ID}-0000000000000000-01")));
    for bad in [
        ".234567890123456",
        "123456789012345.",
        "12345678901234567",
        "123456789012345",
        "123456789012345F",
    ] {
        assert!(!accepted(&format!("00-{ID}-{bad}-01")), "{bad}");
    }
}

#[test]
fn flags_rules() {
    for bad in [".0", "0.", "001", "1", "0F"] {
        assert!(!accepted(&format!("00-{ID}-{PARENT}-{bad}")), "{bad}");
    }
    // Unknown bits are accepted on input and written as 0.
    let cx = extract(&[("traceparent", &format!("00-{ID}-{PARENT}-ff"))]);
    assert_eq!(inject(&cx)["traceparent"], format!("00-{ID}-{PARENT}-03"));
    let cx = extract(&[("traceparent", &format!("00-{ID}-{PARENT}-08"))]);
    assert_eq!(inject(&cx)["traceparent"], format!("00-{ID}-{PARENT}-00"));
}

#[test]
fn surrounding_spaces_and_tabs_are_ignored() {
    for tp in [
        format!(" 00-{ID}-{PARENT}-01"),
        format!("\t00-{ID}-{PARENT}-01"),
        format!("00-{ID}-{PARENT}-01 "),
        format!("00-{ID}-{PARENT}-01\t"),
        format!("\t 00-{ID}-{PARENT}-01 \t"),
    ] {
        assert!(accepted(&tp), "{tp:?}");
    }
}

#[test]
fn duplicated_traceparent_starts_a_new_trace() {
    let cx = extract(&[
        (
            "traceparent",
            "00-12345678901234567890123456789011-1234567890123456-01",
        ),
        ("traceparent", &format!("00-{ID}-{PARENT}-01")),
    ]);
    assert_eq!(trace_id(&cx), None);
    // A garbled (non-ASCII) second line counts as a line too.
    let h = headers(&[
        ("traceparent", format!("00-{ID}-{PARENT}-01").as_bytes()),
        ("traceparent", b"\xff"),
    ]);
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&h));
    assert_eq!(trace_id(&cx), None);
}

#[test]
fn random_flag_is_passed_on_for_the_same_trace() {
    let cx = extract(&[("traceparent", &format!("00-{ID}-{PARENT}-02"))]);
    // A child the SDK did not sample gets default flags; the random flag
    // must survive for the same trace id.
    let child = SpanContext::new(
        cx.span().span_context().trace_id(),
        SpanId::from(0xabcdef_u64),
        TraceFlags::default(),
        false,
        TraceState::default(),
    );
    let child_cx = cx.with_remote_span_context(child);
    assert_eq!(
        inject(&child_cx)["traceparent"],
        format!("00-{ID}-0000000000abcdef-02")
    );
    // A different trace id does not inherit it.
    let other = SpanContext::new(
        opentelemetry::trace::TraceId::from(7_u128),
        SpanId::from(9_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let other_cx = cx.with_remote_span_context(other);
    assert!(
        inject(&other_cx)["traceparent"]
            .to_str()
            .expect("ascii")
            .ends_with("-01")
    );
}

#[test]
fn exactly_one_traceparent_is_written() {
    let cx = extract(&[("traceparent", &format!("00-{ID}-{PARENT}-01"))]);
    let mut h = headers(&[("traceparent", b"stale-1"), ("traceparent", b"stale-2")]);
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut h));
    assert_eq!(h.get_all("traceparent").iter().count(), 1);
    // An invalid context writes nothing.
    let h = inject(&Context::new());
    assert!(h.is_empty());
}

#[test]
fn tracestate_is_not_read_without_a_valid_traceparent() {
    let cx = extract(&[("traceparent", "garbage"), ("tracestate", "foo=1")]);
    assert_eq!(trace_id(&cx), None);
    assert!(inject(&cx).get("tracestate").is_none());
    let cx = extract(&[("tracestate", "foo=1,bar=2")]);
    assert!(inject(&cx).is_empty());
}

fn ts(lines: &[&str]) -> String {
    let tp = format!("00-{ID}-{PARENT}-00");
    let mut pairs: Vec<(&str, &str)> = vec![("traceparent", tp.as_str())];
    pairs.extend(lines.iter().map(|l| ("tracestate", *l)));
    let cx = extract(&pairs);
    assert_eq!(
        trace_id(&cx).as_deref(),
        Some(ID),
        "traceparent is kept whatever tracestate is"
    );
    // What is passed on.
    inject(&cx)
        .get("tracestate")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

#[test]
fn tracestate_lines_are_combined_in_order() {
    assert_eq!(
        ts(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
        "foo=1,bar=2,rojo=1,congo=2,baz=3"
    );
    assert_eq!(ts(&["foo=1", ""]), "foo=1");
    assert_eq!(ts(&["", "foo=1"]), "foo=1");
    assert_eq!(ts(&[""]), "");
    for name in ["TraceState", "TrAcEsTaTe", "TRACESTATE"] {
        let tp = format!("00-{ID}-{PARENT}-00");
        assert_eq!(
            tracestate(&extract(&[("traceparent", &tp), (name, "foo=1")])),
            "foo=1"
        );
    }
    for name in ["trace-state", "trace.state"] {
        let tp = format!("00-{ID}-{PARENT}-00");
        assert_eq!(
            tracestate(&extract(&[("traceparent", &tp), (name, "foo=1")])),
            ""
        );
    }
}

#[test]
fn tracestate_whitespace_around_members_is_ignored() {
    assert_eq!(ts(&["foo=1 \t , \t bar=2, \t baz=3"]), "foo=1,bar=2,baz=3");
    assert_eq!(
        ts(&["foo=1\t \t,\t \tbar=2,\t \tbaz=3"]),
        "foo=1,bar=2,baz=3"
    );
    for v in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        assert_eq!(ts(&[v]), "foo=1", "{v:?}");
    }
    // Leading spaces inside a value are part of it.
    assert_eq!(ts(&["foo= 1"]), "foo= 1");
}

#[test]
fn tracestate_duplicate_keys_keep_the_list_and_the_first_value() {
    // The W3C harness (strict level 2): inherited, one of them kept.
    assert_eq!(ts(&["foo=1,foo=1"]), "foo=1");
    assert_eq!(ts(&["foo=1,foo=2"]), "foo=1");
    assert_eq!(ts(&["foo=1", "foo=1"]), "foo=1");
    assert_eq!(ts(&["foo=1", "foo=2,bar=3"]), "foo=1,bar=3");
    // Members count as listed: 33 with a repeat is still too many.
    let many: Vec<String> = (0..32).map(|i| format!("k{i}=1")).collect();
    assert_eq!(ts(&[&many.join(","), "k0=2"]), "");
}

#[test]
fn tracestate_keys_the_sdk_refuses_are_still_passed_on() {
    // Keys of the current grammar that opentelemetry's TraceState (the
    // older vendor format) rejects: carried beside it for the same trace.
    for key in [
        "foo@".to_owned(),
        "foo@@bar".to_owned(),
        "foo@bar@baz".to_owned(),
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
        "z".repeat(256),
    ] {
        let line = format!("foo=1,{key}=2");
        assert_eq!(ts(&[&line]), line, "{key}");
    }
    // Still invalid: a leading `@`, a key over 256 characters.
    assert_eq!(ts(&["@foo=1,bar=2"]), "");
    assert_eq!(ts(&["foo=1", &format!("{}=1", "z".repeat(257))]), "");
    // Only for its own trace: a context of another trace does not get it.
    let cx = extract(&[
        ("traceparent", &format!("00-{ID}-{PARENT}-01")),
        ("tracestate", "foo@@bar=1"),
    ]);
    let other = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from(7_u128),
        opentelemetry::trace::SpanId::from(9_u64),
        opentelemetry::trace::TraceFlags::SAMPLED,
        false,
        opentelemetry::trace::TraceState::default(),
    );
    use opentelemetry::trace::TraceContextExt as _;
    let out = inject(&cx.with_remote_span_context(other));
    assert!(out.get("tracestate").is_none(), "{out:?}");
}

#[test]
fn tracestate_keys_follow_the_level_2_grammar() {
    let all_keychars = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20_u8..=0x7e)
        .filter(|c| *c != b',' && *c != b'=')
        .map(char::from)
        .collect();
    assert_eq!(
        ts(&[&format!("{all_keychars}={value}")]),
        format!("{all_keychars}={value}")
    );
    let vendor = format!("{all_keychars}@a-z0-9_-*/");
    assert_eq!(
        ts(&[&format!("{vendor}={value}")]),
        format!("{vendor}={value}")
    );
    // A leading digit is allowed by Level 2.
    assert_eq!(ts(&["0abc=1"]), "0abc=1");
    for bad in [
        "foo =1",
        "FOO=1",
        "foo.bar=1",
        "@foo=1,bar=2",
        "=1",
        "foo",
        "_foo=1",
    ] {
        assert_eq!(ts(&[bad]), "", "{bad:?}");
    }
    let max_key = "k".repeat(256);
    assert_eq!(ts(&[&format!("{max_key}=1")]), format!("{max_key}=1"));
    assert_eq!(ts(&[&format!("{max_key}k=1")]), "");
}

#[test]
fn tracestate_values_follow_the_grammar() {
    let max_value = "v".repeat(256);
    assert_eq!(
        ts(&[&format!("foo={max_value}")]),
        format!("foo={max_value}")
    );
    assert_eq!(ts(&[&format!("foo={max_value}v")]), "");
    for bad in ["foo=", "foo=a=b", "foo=\u{e9}"] {
        assert_eq!(ts(&[bad]), "", "{bad:?}");
    }
    // Control characters cannot travel in an HTTP header at all, but other
    // carriers (message headers) can carry them.
    assert_eq!(parse_tracestate("foo=\u{7f}"), None);
    assert_eq!(parse_tracestate("foo=a\u{1}b"), None);
    assert_eq!(parse_tracestate("foo=a\tb"), None);
}

#[test]
fn tracestate_member_limit_is_32() {
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(ts(&[&members(32)]), members(32));
    assert_eq!(ts(&[&members(33)]), "");
    // Split over lines, the limit applies to the combined list.
    assert_eq!(
        ts(&[
            &members(20),
            &(20..33)
                .map(|i| format!("x{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        ]),
        ""
    );
}

#[test]
fn tracestate_is_truncated_by_whole_members_longest_first() {
    // 512 characters are always propagated.
    let fill: Vec<(String, String)> = (0..8).map(|i| (format!("k{i}"), "v".repeat(60))).collect();
    let pairs = || fill.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let full = render_tracestate(pairs());
    assert!(
        full.len() <= 512 && full.split(',').count() == 8,
        "{}",
        full.len()
    );

    // Over 512: members over 128 characters go first, the longest first.
    let long_a = "a".repeat(200);
    let long_b = "b".repeat(150);
    let mut members: Vec<(&str, &str)> = vec![
        ("first", "1"),
        ("long-a", &long_a),
        ("mid", "2"),
        ("long-b", &long_b),
    ];
    let filler = "f".repeat(100);
    let fillers: Vec<String> = (0..2).map(|i| format!("f{i}")).collect();
    for f in &fillers {
        members.push((f, &filler));
    }
    // 587 characters: dropping the longest (long-a) is enough.
    let out = render_tracestate(members.clone());
    assert_eq!(
        out,
        format!("first=1,mid=2,long-b={long_b},f0={filler},f1={filler}")
    );
    // With one more filler, both long members go, longest first, and the
    // short ones stay.
    members.push(("f2", &filler));
    members.push(("f3", &filler));
    let out = render_tracestate(members);
    assert_eq!(
        out,
        format!("first=1,mid=2,f0={filler},f1={filler},f2={filler},f3={filler}")
    );

    // Then from the right.
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("key{i:02}"), "x".repeat(20)))
        .collect();
    let out = render_tracestate(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(out.len() <= 512);
    assert!(out.starts_with("key00=") && !out.contains("key39"));
    assert!(
        out.split(',').all(|m| m.len() == 26),
        "only whole members: {out}"
    );
}

#[test]
fn tracestate_round_trips_unchanged() {
    let tp = format!("00-{ID}-{PARENT}-01");
    let cx = extract(&[
        ("traceparent", &tp),
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ]);
    let h = inject(&cx);
    assert_eq!(h["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

#[test]
fn parse_functions_agree_with_the_propagator() {
    assert!(parse_traceparent(&format!("00-{ID}-{PARENT}-01")).is_some());
    assert_eq!(
        parse_tracestate("a=1, b=2"),
        Some(vec![("a", "1"), ("b", "2")])
    );
    assert_eq!(parse_tracestate("a=1,a=2"), Some(vec![("a", "1")]));
    assert_eq!(parse_tracestate("a=1,A=2"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_yield_an_invalid_context(
        tp in proptest::collection::vec(any::<u8>(), 0..80),
        ts1 in proptest::collection::vec(any::<u8>(), 0..600),
        ts2 in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&tp) { h.append("traceparent", v); }
        if let Ok(v) = HeaderValue::from_bytes(&ts1) { h.append("tracestate", v); }
        if let Ok(v) = HeaderValue::from_bytes(&ts2) { h.append("tracestate", v); }
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&h));
        let out = inject(&cx);
        if let Some(tp) = out.get("traceparent") {
            let tp = tp.to_str().expect("ascii");
            prop_assert_eq!(tp.len(), 55);
            prop_assert!(parse_traceparent(tp).is_some());
        }
        if let Some(ts) = out.get("tracestate") {
            let ts = ts.to_str().expect("ascii");
            prop_assert!(ts.len() <= 512);
            prop_assert!(parse_tracestate(ts).is_some());
        }
    }

    #[test]
    fn the_direct_header_path_agrees_with_the_generic_carrier(
        tps in proptest::collection::vec(
            prop_oneof![
                Just(format!("00-{ID}-{PARENT}-01").into_bytes()),
                Just(format!(" cc-{ID}-{PARENT}-03-x\t").into_bytes()),
                // A future version's tail of any bytes (obs-text included):
                // both paths must take the same decision.
                proptest::collection::vec(any::<u8>(), 0..8).prop_map(|tail| {
                    [format!("cc-{ID}-{PARENT}-01-").into_bytes(), tail].concat()
                }),
                proptest::collection::vec(any::<u8>(), 0..60),
            ],
            0..3,
        ),
        tss in proptest::collection::vec(
            prop_oneof![
                Just(b"a=1,b=2".to_vec()),
                Just(b"a=1".to_vec()),
                Just(Vec::new()),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            0..3,
        ),
        // ASCII only: the generic carrier cannot read a line with other bytes
        // at all, while the direct path keeps its valid members (tested in
        // tests/baggage.rs).
        baggage in prop_oneof![Just(None), Just(Some(b"tenant.id=acme".to_vec())), proptest::option::of(proptest::collection::vec(0x20_u8..0x7f, 0..30))],
    ) {
        let mut h = HeaderMap::new();
        for v in &tps { if let Ok(v) = HeaderValue::from_bytes(v) { h.append("traceparent", v); } }
        for v in &tss { if let Ok(v) = HeaderValue::from_bytes(v) { h.append("tracestate", v); } }
        if let Some(Ok(v)) = baggage.as_deref().map(HeaderValue::from_bytes) { h.append("baggage", v); }
        let p = looptel_core::Propagator::default();
        let direct = p.extract_headers(&h);
        let generic = p.extract_with_context(&Context::new(), &HeaderExtractor(&h));
        prop_assert_eq!(direct.span().span_context().clone(), generic.span().span_context().clone());
        prop_assert_eq!(inject_all(&direct), inject_all(&generic));
    }

    #[test]
    fn a_future_versions_tail_is_ascii_or_the_header_is_invalid(
        tail in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let value = [format!("cc-{ID}-{PARENT}-01-").into_bytes(), tail.clone()].concat();
        prop_assert_eq!(parse_traceparent_bytes(&value).is_some(), tail.is_ascii());
    }

    #[test]
    fn near_valid_traceparents_never_panic(
        version in "[0-9a-fA-F.]{1,3}", id in "[0-9a-fA-F]{30,34}", parent in "[0-9a-f]{15,17}",
        flags in "[0-9a-f]{1,3}", tail in "(-[a-z]{0,5})?",
    ) {
        let value = format!("{version}-{id}-{parent}-{flags}{tail}");
        let parsed = parse_traceparent(&value);
        if let Some(p) = parsed {
            prop_assert_eq!(p.trace_id.to_string(), id.to_lowercase());
            prop_assert!(version != "ff");
        }
    }
}
