//! A W3C Trace Context (Level 2) propagator that follows the specification to
//! the letter.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, propagation::text_map_propagator::FieldIter};

/// `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// `traceparent` as a header name: inserting or looking up by it skips
/// parsing the name, which a `&str` costs on every call (about 480
/// instructions for the response `traceparent`, `scripts/bench.sh`).
pub const TRACEPARENT_HEADER: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
/// `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// The `sampled` flag.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The Level 2 `random` flag: the trace id's right-most 7 bytes are random.
pub const FLAG_RANDOM: u8 = 0x02;

/// The most `tracestate` list members kept.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The combined `tracestate` length always propagated; longer ones are
/// truncated by whole members.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Members longer than this are dropped first when truncating.
const LONG_MEMBER: usize = 128;

/// Remembers, in the extracted context, that the remote trace id was marked
/// random, so the flag is passed on even when the SDK builds a child span
/// with default flags (it does for spans it does not sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RandomTraceId(TraceId);

/// A caller's valid `tracestate` that opentelemetry's `TraceState` refuses
/// (keys of the current grammar such as `foo@@bar` or `t@vvvvvvvvvvvvvvv`,
/// which its older vendor-format check rejects), kept for the same trace
/// beside the SDK's empty one, rendered, so that it is passed on as the
/// specification asks instead of being dropped whole.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CarriedTraceState {
    trace_id: TraceId,
    header: String,
}

/// W3C Trace Context: `traceparent` and `tracestate`, strict per Level 2.
///
/// Extraction:
/// - `traceparent` must be `version-traceid-parentid-flags` in lowercase hex
///   (2-32-16-2); version `ff`, all-zero ids, uppercase hex and any other
///   deviation make it invalid. Version `00` allows nothing after the flags;
///   a higher version must have 55 characters or more, with `-` or the end
///   after the flags, and is read as version `00`. Surrounding spaces and
///   tabs are ignored. More than one `traceparent` header line is invalid.
/// - An invalid `traceparent` starts a new trace: `tracestate` is not read.
/// - All `tracestate` header lines are joined with `,`. Up to 32 members are
///   kept; keys `[a-z0-9][a-z0-9_-*/@]{0,255}`, values of up to 256
///   printable ASCII characters other than `,` and `=`, not ending in a
///   space. A list with an invalid member or more than 32 members is
///   discarded whole; `traceparent` is kept. A key listed twice keeps its
///   first value. Keys opentelemetry's `TraceState` refuses (its vendor
///   format predates the current grammar: `foo@@bar`, `t@vvvvvvvvvvvvvvv`)
///   are carried beside it for the same trace and passed on all the same.
///
/// Injection writes exactly one `traceparent`, version `00`, with the
/// `sampled` flag and the `random` flag (passed on unchanged for the same
/// trace id); other flag bits are written as 0. `tracestate` is written when
/// not empty, truncated to 512 characters by dropping whole members, those
/// over 128 characters first, then from the right.
///
/// ```
/// use std::collections::HashMap;
/// use looptel_core::tracecontext::TraceContextPropagator;
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
///
/// let p = TraceContextPropagator::new();
/// let mut headers = HashMap::new();
/// headers.insert("traceparent".to_owned(),
///     "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-future".to_owned());
/// let cx = p.extract(&headers);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
///
/// let mut out = HashMap::new();
/// p.inject_context(&cx, &mut out);
/// assert_eq!(out["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03");
/// ```
#[derive(Clone, Debug, Default)]
pub struct TraceContextPropagator {
    _private: (),
}

impl TraceContextPropagator {
    /// The propagator.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, never all zeros.
    pub trace_id: TraceId,
    /// The parent id, never all zeros.
    pub parent_id: SpanId,
    /// The flags as received (all eight bits).
    pub flags: u8,
}

/// Lowercase hex digit values; 0xff marks every other byte.
const HEX: [u8; 256] = {
    let mut t = [0xff_u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Eight lowercase hex digits, read as a little-endian word, to four bytes
/// (as a little-endian word); `None` unless all eight are lowercase hex
/// digits. All eight are checked and converted at once, with no per-digit
/// branch or table lookup: ids are the bulk of every `traceparent`.
#[inline]
fn hex8(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const LOW_NIBBLES: u64 = ONES * 0x0f;
    const EVEN_NIBBLES: u64 = 0x000f_000f_000f_000f;
    // For bytes below 0x80, b + (0x80 - lo) has its high bit set exactly
    // when b >= lo, and never carries into the next byte.
    let at_least = |lo: u64| word.wrapping_add(ONES * (0x80 - lo)) & HIGH;
    let digit = at_least(u64::from(b'0')) & !at_least(u64::from(b'9') + 1);
    let letter = at_least(u64::from(b'a')) & !at_least(u64::from(b'f') + 1);
    if word & HIGH != 0 || digit | letter != HIGH {
        return None;
    }
    // '0'..'9' end in 0..9; 'a'..'f' end in 1..6, plus 9.
    let nibbles = (word & LOW_NIBBLES) + (letter >> 7) * 9;
    // Byte 2k takes nibble 2k as its high half and nibble 2k+1 as its low
    // half; then the even bytes are packed together.
    let pairs = ((nibbles & EVEN_NIBBLES) << 4) | ((nibbles >> 8) & EVEN_NIBBLES);
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    u32::try_from((quads | (quads >> 16)) & 0xffff_ffff).ok()
}

fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0_u8; N];
    if N.is_multiple_of(4) {
        for (o, digits) in out.chunks_exact_mut(4).zip(s.chunks_exact(8)) {
            let word = u64::from_le_bytes(digits.try_into().ok()?);
            o.copy_from_slice(&hex8(word)?.to_le_bytes());
        }
        return Some(out);
    }
    let mut bad = 0_u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | (lo & 0x0f);
    }
    // Any invalid digit has its high bits set.
    (bad & 0xf0 == 0).then_some(out)
}

/// Parses one `traceparent` value; `None` when it is invalid.
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    parse_traceparent_bytes(value.as_bytes())
}

/// Parses one `traceparent` value given as bytes (any non-ASCII byte makes
/// it invalid).
pub fn parse_traceparent_bytes(value: &[u8]) -> Option<TraceParent> {
    let v = trim_ows(value);
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let [version] = parse_hex::<1>(&v[0..2])?;
    match version {
        0xff => return None,
        0x00 if v.len() != 55 => return None,
        // A future version's tail: after a `-`, ASCII only (the fixed
        // fields are checked as hex below), as the generic carrier reads it.
        _ if v.len() > 55 && (v[55] != b'-' || !v[56..].is_ascii()) => return None,
        _ => {}
    }
    let trace_id = u128::from_be_bytes(parse_hex::<16>(&v[3..35])?);
    let parent_id = u64::from_be_bytes(parse_hex::<8>(&v[36..52])?);
    let [flags] = parse_hex::<1>(&v[53..55])?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::from(trace_id),
        parent_id: SpanId::from(parent_id),
        flags,
    })
}

fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && b[b.len() - 1] != b' '
}

/// Parses the joined `tracestate` lines; `None` when the list must be
/// discarded (an invalid member, or more than 32 members). A key listed
/// twice keeps its first (leftmost, most recent) value, as the
/// specification allows.
pub fn parse_tracestate(joined: &str) -> Option<Vec<(&str, &str)>> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    let mut listed = 0;
    for member in joined.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        listed += 1;
        if listed > MAX_TRACESTATE_MEMBERS {
            return None;
        }
        if !members.iter().any(|(k, _)| *k == key) {
            members.push((key, value));
        }
    }
    Some(members)
}

/// Renders members as a `tracestate` value of at most 512 characters,
/// dropping whole members: those over 128 characters first, then from the
/// right.
pub fn render_tracestate<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut kept: Vec<(&str, &str)> = members.into_iter().collect();
    let len = |m: &[(&str, &str)]| -> usize {
        m.iter().map(|(k, v)| k.len() + 1 + v.len()).sum::<usize>() + m.len().saturating_sub(1)
    };
    if len(&kept) > MAX_TRACESTATE_LEN {
        // Longest first, among those over 128 characters.
        while len(&kept) > MAX_TRACESTATE_LEN {
            let longest = kept
                .iter()
                .enumerate()
                .filter(|(_, (k, v))| k.len() + 1 + v.len() > LONG_MEMBER)
                .max_by_key(|(i, (k, v))| (k.len() + v.len(), usize::MAX - i))
                .map(|(i, _)| i);
            match longest {
                Some(i) => {
                    kept.remove(i);
                }
                None => break,
            }
        }
        while len(&kept) > MAX_TRACESTATE_LEN {
            kept.pop();
        }
    }
    let mut out = String::with_capacity(len(&kept));
    for (i, (k, v)) in kept.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Renders a version `00` `traceparent` for `sc`, with the sampled and
/// random flags only.
pub fn render_traceparent(sc: &SpanContext, random: bool) -> String {
    String::from_utf8_lossy(&traceparent_bytes(sc, random)).into_owned()
}

/// [`render_traceparent`] as its 55 bytes, for a header value built
/// without an intermediate `String`.
pub fn traceparent_bytes(sc: &SpanContext, random: bool) -> [u8; 55] {
    let mut flags = sc.trace_flags().to_u8() & (FLAG_SAMPLED | FLAG_RANDOM);
    if random {
        flags |= FLAG_RANDOM;
    }
    // By hand: `format!` with the ids' `Display` costs about 2,300
    // instructions per response (callgrind), a digit table per nibble
    // about 340, eight digits at a time (`hex_word`) about 100.
    let mut out = [0_u8; 55];
    out[..3].copy_from_slice(b"00-");
    let hex = |dst: &mut [u8], bytes: &[u8]| {
        for (digits, word) in dst.chunks_exact_mut(8).zip(bytes.chunks_exact(4)) {
            let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            digits.copy_from_slice(&hex_word(word));
        }
    };
    hex(&mut out[3..35], &sc.trace_id().to_bytes());
    out[35] = b'-';
    hex(&mut out[36..52], &sc.span_id().to_bytes());
    out[52] = b'-';
    out[53..].copy_from_slice(&hex_word(u32::from(flags))[6..]);
    out
}

/// `word` as eight lower-case hex digits, most significant first: each
/// nibble spread into a byte of its own, then `'0'` added, and the
/// distance to `'a'` where the nibble is 10 or more.
fn hex_word(word: u32) -> [u8; 8] {
    let x = u64::from(word);
    let mut v = ((x & 0xffff_0000) << 16) | (x & 0x0000_ffff);
    v = ((v & 0x0000_ff00_0000_ff00) << 8) | (v & 0x0000_00ff_0000_00ff);
    v = ((v & 0x00f0_00f0_00f0_00f0) << 4) | (v & 0x000f_000f_000f_000f);
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

fn is_random(cx: &Context, sc: &SpanContext) -> bool {
    cx.get::<RandomTraceId>()
        .is_some_and(|r| r.0 == sc.trace_id())
}

/// Strips spaces and tabs (and only those) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

impl TraceContextPropagator {
    /// Extracts from raw header lines: all `traceparent` lines, and a
    /// function giving all `tracestate` lines in order (called only for a
    /// valid `traceparent`). The same rules as
    /// [`TextMapPropagator::extract_with_context`], without building a list
    /// of lines first.
    pub fn extract_lines<'a, I>(
        &self,
        cx: &Context,
        traceparent: impl Iterator<Item = &'a [u8]>,
        tracestate: impl FnOnce() -> I,
    ) -> Context
    where
        I: Iterator<Item = &'a [u8]>,
    {
        self.extract_lines_mapped(cx, traceparent, tracestate, |sc| sc)
    }

    /// [`extract_lines`](Self::extract_lines), the caller's span context
    /// passed through `map` before it goes into the context.
    pub(crate) fn extract_lines_mapped<'a, I>(
        &self,
        cx: &Context,
        mut traceparent: impl Iterator<Item = &'a [u8]>,
        tracestate: impl FnOnce() -> I,
        map: impl FnOnce(SpanContext) -> SpanContext,
    ) -> Context
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let (Some(line), None) = (traceparent.next(), traceparent.next()) else {
            return cx.clone();
        };
        let Some(parent) = parse_traceparent_bytes(line) else {
            return cx.clone();
        };
        // Read only once `traceparent` is known to be valid.
        let mut joined: Option<String> = None;
        for line in tracestate() {
            let Ok(line) = std::str::from_utf8(line) else {
                // Not ASCII: the list is invalid.
                joined = Some("\u{fffd}".to_owned());
                break;
            };
            match &mut joined {
                None => joined = Some(line.to_owned()),
                Some(j) => {
                    j.push(',');
                    j.push_str(line);
                }
            }
        }
        build_context(cx, parent, joined.as_deref(), map)
    }
}

fn build_context(
    cx: &Context,
    parent: TraceParent,
    tracestate: Option<&str>,
    map: impl FnOnce(SpanContext) -> SpanContext,
) -> Context {
    let members = tracestate.and_then(parse_tracestate).unwrap_or_default();
    let (trace_state, carried) = if members.is_empty() {
        (TraceState::default(), None)
    } else {
        match TraceState::from_key_value(members.iter().copied()) {
            Ok(ts) => (ts, None),
            Err(_) => (
                TraceState::default(),
                Some(CarriedTraceState {
                    trace_id: parent.trace_id,
                    header: render_tracestate(members),
                }),
            ),
        }
    };
    let sc = SpanContext::new(
        parent.trace_id,
        parent.parent_id,
        TraceFlags::new(parent.flags & (FLAG_SAMPLED | FLAG_RANDOM)),
        true,
        trace_state,
    );
    let mut cx = cx.with_remote_span_context(map(sc));
    if parent.flags & FLAG_RANDOM != 0 {
        cx = cx.with_value(RandomTraceId(parent.trace_id));
    }
    if let Some(carried) = carried {
        cx = cx.with_value(carried);
    }
    cx
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(TRACEPARENT, render_traceparent(sc, is_random(cx, sc)));
        let ts = sc.trace_state();
        let header = ts.header();
        if !header.is_empty() {
            let members = header.split(',').filter_map(|m| m.split_once('='));
            injector.set(TRACESTATE, render_tracestate(members));
        } else if let Some(carried) = cx
            .get::<CarriedTraceState>()
            .filter(|c| c.trace_id == sc.trace_id())
        {
            injector.set(TRACESTATE, carried.header.clone());
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let lines = extractor.get_all(TRACEPARENT);
        let parent = match lines.as_deref() {
            Some([one]) => parse_traceparent(one),
            // No header, or more than one line: invalid, a new trace.
            _ => None,
        };
        let Some(parent) = parent else {
            return cx.clone();
        };
        let joined = extractor.get_all(TRACESTATE).map(|lines| lines.join(","));
        build_context(cx, parent, joined.as_deref(), |sc| sc)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(TRACE_CONTEXT_FIELDS.as_slice())
    }
}

static TRACE_CONTEXT_FIELDS: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned()]);

#[cfg(test)]
mod tests {
    #[test]
    fn eight_digits_at_a_time_write_what_format_writes() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = (x >> 16) as u32;
            assert_eq!(hex_word(word), *format!("{word:08x}").as_bytes());
            let sc = SpanContext::new(
                TraceId::from(u128::from(x) << 64 | u128::from(!x)),
                SpanId::from(x.rotate_left(7)),
                TraceFlags::new((x & 1) as u8),
                true,
                TraceState::default(),
            );
            let want = format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            );
            assert_eq!(
                String::from_utf8_lossy(&traceparent_bytes(&sc, false)),
                want
            );
        }
        for word in [0, u32::MAX, 0x0a0b_0c0d, 0x9999_aaaa] {
            assert_eq!(hex_word(word), *format!("{word:08x}").as_bytes());
        }
    }

    use super::*;

    /// The table-driven conversion, one digit at a time.
    fn by_table<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
        let mut out = [0_u8; N];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
            if hi | lo == 0xff {
                return None;
            }
            *o = hi << 4 | lo;
        }
        Some(out)
    }

    #[test]
    fn the_hand_rendered_traceparent_equals_the_formatted_one() {
        let mut x: u128 = 0x0af7651916cd43dd8448eb211c80319c;
        for i in 0..2000_u32 {
            // A simple LCG walks ids with every digit in every place.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (trace, span) = (x | 1, (x >> 64) as u64 | 1);
            let sc = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::new((i % 4) as u8),
                true,
                TraceState::default(),
            );
            let flags = sc.trace_flags().to_u8() & (FLAG_SAMPLED | FLAG_RANDOM);
            assert_eq!(
                render_traceparent(&sc, false),
                format!("00-{}-{}-{flags:02x}", sc.trace_id(), sc.span_id())
            );
        }
    }

    #[test]
    fn eight_digits_at_once_agree_with_the_table_for_every_byte_anywhere() {
        let valid = *b"0af7651916cd43dd";
        for pos in 0..16 {
            for b in 0..=255_u8 {
                let mut digits = valid;
                digits[pos] = b;
                assert_eq!(
                    parse_hex::<8>(&digits),
                    by_table::<8>(&digits),
                    "byte {b:#04x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn eight_digits_at_once_agree_with_the_table_on_random_words() {
        // Digits drawn mostly from around the hex ranges, to hit the edges.
        let alphabet = b"/0123456789:@`abcdefgABCDEFG\x7f\x80\xb0\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            let mut digits = [0_u8; 32];
            for d in &mut digits {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly valid digits, so whole ids parse too.
                *d = if state.is_multiple_of(4) {
                    alphabet[(state >> 8) as usize % alphabet.len()]
                } else {
                    b"0123456789abcdef"[(state >> 8) as usize % 16]
                };
            }
            assert_eq!(parse_hex::<16>(&digits), by_table::<16>(&digits));
        }
    }
}
