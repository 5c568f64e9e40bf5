//! W3C Baggage: a codec and propagator faithful to the specification.

use std::fmt;
use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

/// `baggage`.
pub const BAGGAGE: &str = "baggage";
/// Members always propagated.
pub const MAX_MEMBERS: usize = 64;
/// Bytes (all `baggage` header lines together) always propagated.
pub const MAX_BYTES: usize = 8192;
/// The most raw header text [`decode`] reads: twice [`MAX_BYTES`], room for
/// members that do not fit to be skipped and later ones kept, and a bound
/// on the work whatever a caller sends.
pub const MAX_READ_BYTES: usize = 2 * MAX_BYTES;

/// One decoded member: the key, the value (percent-decoded; invalid UTF-8
/// as U+FFFD) and the properties as they travel (`k=v;flag`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key (an RFC 7230 token).
    pub key: String,
    /// The decoded value.
    pub value: String,
    /// Properties, `;`-separated, each `k` or `k=v` with `v` still encoded;
    /// empty when there are none.
    pub properties: String,
}

/// What [`decode`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Valid members within the limits, in order (a repeated key keeps its
    /// last value).
    pub members: Vec<Member>,
    /// Members skipped as invalid.
    pub invalid: usize,
    /// Valid members dropped because the limits were reached.
    pub over_limit: usize,
    /// Bytes of the header not read: past [`MAX_READ_BYTES`] of raw header
    /// text nothing more is parsed, so a hostile header costs what the
    /// limits allow and no more.
    pub unread_bytes: usize,
}

/// `tchar` of RFC 7230, the characters of a baggage key.
#[inline]
fn is_tchar(b: u8) -> bool {
    OCTET[usize::from(b)] & 4 != 0
}

/// Per byte: 0 outside `baggage-octet` (printable ASCII except space, `"`,
/// `,`, `;` and `\`); bit 1 for an octet; bit 2 for an octet written as is
/// (all but `%`); bit 4 for a `tchar`.
const OCTET: [u8; 256] = {
    let mut t = [0_u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        if b != 0x22 && b != 0x2c && b != 0x3b && b != 0x5c {
            t[b] = if b == 0x25 { 1 } else { 3 };
        }
        let tchar = (b as u8).is_ascii_alphanumeric()
            || matches!(
                b as u8,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if tchar {
            t[b] |= 4;
        }
        b += 1;
    }
    t
};

/// Whether `key` is a valid baggage key (an RFC 7230 token).
///
/// ```
/// assert!(looptel_core::baggage::is_key("tenant.id"));
/// assert!(!looptel_core::baggage::is_key("tenant id"));
/// assert!(!looptel_core::baggage::is_key(""));
/// ```
pub fn is_key(key: &str) -> bool {
    is_token(key.as_bytes())
}

/// `baggage-octet`.
#[inline]
fn is_baggage_octet(b: u8) -> bool {
    OCTET[usize::from(b)] != 0
}

/// A `baggage-octet` other than `%`: written without escaping.
#[inline]
fn is_plain(b: u8) -> bool {
    OCTET[usize::from(b)] & 2 != 0
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| is_tchar(*b))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes an encoded value; `None` when it has a byte outside
/// `baggage-octet` or a broken `%` escape.
fn decode_value(v: &[u8]) -> Option<String> {
    if !v.iter().all(|b| is_baggage_octet(*b)) {
        return None;
    }
    if !v.contains(&b'%') {
        // Baggage-octets are ASCII: one copy, no decoding.
        return std::str::from_utf8(v).ok().map(str::to_owned);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hi = hex(*v.get(i + 1)?)?;
            let lo = hex(*v.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn valid_encoded(v: &[u8]) -> bool {
    decode_value(v).is_some()
}

/// Parses one list member; `None` when it is invalid.
pub fn parse_member(member: &[u8]) -> Option<Member> {
    let mut parts = member.split(|b| *b == b';');
    let kv = parts.next()?;
    let eq = kv.iter().position(|b| *b == b'=')?;
    let key = trim_ows(&kv[..eq]);
    let value = trim_ows(&kv[eq + 1..]);
    if !is_token(key) {
        return None;
    }
    let value = decode_value(value)?;
    let mut properties = String::new();
    for p in parts {
        let p = trim_ows(p);
        let (k, v) = match p.iter().position(|b| *b == b'=') {
            Some(i) => (trim_ows(&p[..i]), Some(trim_ows(&p[i + 1..]))),
            None => (p, None),
        };
        if !is_token(k) || v.is_some_and(|v| !valid_encoded(v)) {
            return None;
        }
        if !properties.is_empty() {
            properties.push(';');
        }
        // Tokens and baggage-octets are ASCII.
        properties.push_str(std::str::from_utf8(k).ok()?);
        if let Some(v) = v {
            properties.push('=');
            properties.push_str(std::str::from_utf8(v).ok()?);
        }
    }
    Some(Member {
        key: std::str::from_utf8(key).ok()?.to_owned(),
        value,
        properties,
    })
}

/// Appends `value` percent-encoded: every byte outside `baggage-octet`,
/// and `%` itself.
pub fn encode_value(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_plain(b) {
            continue;
        }
        // Runs of octets that need no escape (ASCII) are copied whole.
        out.push_str(std::str::from_utf8(&bytes[start..i]).unwrap_or_default());
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
        start = i + 1;
    }
    out.push_str(std::str::from_utf8(&bytes[start..]).unwrap_or_default());
}

/// The encoded length of a member.
pub fn encoded_len(key: &str, value: &str, properties: &str) -> usize {
    let value_len: usize = value.bytes().map(|b| if is_plain(b) { 1 } else { 3 }).sum();
    key.len()
        + 1
        + value_len
        + if properties.is_empty() {
            0
        } else {
            1 + properties.len()
        }
}

/// Decodes all `baggage` header lines (in order, as if joined with `,`).
/// Invalid members are skipped, valid ones kept; beyond 64 members or 8192
/// bytes whole members are dropped. At most [`MAX_READ_BYTES`] of raw
/// header text is read: the member that straddles that point and everything after
/// it are not parsed ([`Decoded::unread_bytes`]), so the work is bounded by
/// the limits, not by the input.
pub fn decode<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut d = Decoded::default();
    // Keys are tokens, taken as they stand: a repeated one is found by a
    // scan of the (at most 64) members kept, cheaper than hashing for the
    // few members a header holds.
    let mut bytes = 0;
    // Raw header bytes that may still be read.
    let mut budget = MAX_READ_BYTES;
    let mut lines = lines.into_iter();
    while let Some(line) = lines.next() {
        let cut = line.len() > budget;
        let window = if cut { &line[..budget] } else { line };
        budget -= window.len();
        let mut pieces = window.split(|b| *b == b',').peekable();
        while let Some(raw) = pieces.next() {
            if cut && pieces.peek().is_none() {
                // Cut short: not a member as sent.
                d.unread_bytes += raw.len();
                break;
            }
            let raw = trim_ows(raw);
            if raw.is_empty() {
                continue;
            }
            let Some(m) = parse_member(raw) else {
                d.invalid += 1;
                continue;
            };
            // The key as it stands in `raw` (validated by `parse_member`).
            let key = trim_ows(raw.split(|b| *b == b'=').next().unwrap_or_default());
            let existing = d.members.iter().position(|m| m.key.as_bytes() == key);
            let len = encoded_len(&m.key, &m.value, &m.properties);
            let (count, base) = match existing {
                Some(i) => {
                    let old = &d.members[i];
                    (
                        d.members.len(),
                        bytes - encoded_len(&old.key, &old.value, &old.properties),
                    )
                }
                None => (
                    d.members.len() + 1,
                    bytes + usize::from(!d.members.is_empty()),
                ),
            };
            if count > MAX_MEMBERS || base + len > MAX_BYTES {
                d.over_limit += 1;
                continue;
            }
            bytes = base + len;
            match existing {
                Some(i) => d.members[i] = m,
                None => d.members.push(m),
            }
        }
        if cut {
            d.unread_bytes += line.len() - window.len();
            d.unread_bytes += lines.map(<[u8]>::len).sum::<usize>();
            break;
        }
    }
    d
}

/// A copy of `baggage` (the type is not `Clone`).
pub fn copy(baggage: &Baggage) -> Baggage {
    let mut out = Baggage::new();
    for (k, (v, m)) in baggage {
        let _ = out.insert_with_metadata(k.clone(), v.clone(), m.clone());
    }
    out
}

/// `cx`, extracted by another propagator onto `base`, with `base`'s baggage
/// members put back where the caller's replaced them: the members a service
/// set itself win over the caller's, whichever propagator read the caller's.
pub(crate) fn keep_members(base: &Context, cx: Context) -> Context {
    let own = base.baggage();
    let theirs = cx.baggage();
    if own.is_empty()
        || own
            .iter()
            .all(|(k, (v, _))| theirs.get(k.as_str()).is_some_and(|t| t == v))
    {
        return cx;
    }
    let merged = own_first(
        own,
        theirs
            .iter()
            .map(|(k, (v, m))| (k.clone(), v.clone(), m.clone())),
    );
    cx.with_baggage(merged)
}

/// `own`'s members, then those of `theirs` under a key `own` lacks: the
/// members a service set itself win over a caller's and count first
/// against the W3C limits (64 members, 8192 bytes).
fn own_first<K, V, M>(own: &Baggage, theirs: impl IntoIterator<Item = (K, V, M)>) -> Baggage
where
    K: Into<opentelemetry::Key> + AsRef<str>,
    V: Into<opentelemetry::StringValue>,
    M: Into<opentelemetry::baggage::BaggageMetadata>,
{
    let mut baggage = copy(own);
    for (k, v, m) in theirs {
        if baggage.get(k.as_ref()).is_none() {
            let _ = baggage.insert_with_metadata(k, v, m);
        }
    }
    baggage
}

/// Baggage contexts built once per distinct text and shared: a `Context`
/// holding only a baggage, found again by the bytes it was built from (a
/// `baggage` header line, a member's key and value). Cloning one is two
/// reference counts; building one is an OpenTelemetry `Baggage` — a hash
/// map, every key checked byte by byte — and a context entry map, about
/// 1,800 instructions for one member (`scripts/bench.sh`, service-unsampled).
///
/// Bounded: at most `max_entries` texts of at most `max_len` bytes are
/// kept (the texts come from requests); a longer text's context is built
/// each time, and a full table starts over, so that texts seen once (a
/// scan, a burst of junk) do not keep the ones seen since out for good. The
/// text is compared on every hit, so two texts with the same hash never
/// share a context.
///
/// ```
/// use looptel_core::baggage::SharedContexts;
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::{Context, KeyValue};
///
/// let shared = SharedContexts::new(1024, 512);
/// let build = || Ok::<_, ()>(Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]));
/// let a = shared.get_or_build(&[b"tenant.id=acme"], build).unwrap();
/// let b = shared.get_or_build::<()>(&[b"tenant.id=acme"], || unreachable!()).unwrap();
/// assert_eq!(b.baggage().get("tenant.id").map(|v| v.as_str()), Some("acme"));
/// assert_eq!(shared.len(), 1);
/// ```
#[derive(Debug)]
pub struct SharedContexts {
    table: std::sync::RwLock<ContextTable>,
    max_entries: usize,
    max_len: usize,
}

/// Contexts by the hash of their text, the text kept to compare.
type ContextTable = std::collections::HashMap<u64, (Box<[u8]>, Context), rustc_hash::FxBuildHasher>;

impl SharedContexts {
    /// At most `max_entries` texts of at most `max_len` bytes each.
    pub fn new(max_entries: usize, max_len: usize) -> Self {
        Self {
            table: std::sync::RwLock::default(),
            max_entries,
            max_len,
        }
    }

    /// The context built from the text `parts` make when joined (give a
    /// separator as a part of its own where two texts could join alike):
    /// the one kept, or `build`'s, kept when there is room.
    ///
    /// # Errors
    /// `build`'s error, when it fails (nothing is kept then).
    pub fn get_or_build<E>(
        &self,
        parts: &[&[u8]],
        build: impl FnOnce() -> Result<Context, E>,
    ) -> Result<Context, E> {
        use std::hash::Hasher as _;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut h = rustc_hash::FxHasher::default();
        for part in parts {
            h.write(part);
        }
        let hash = h.finish();
        let same = |text: &[u8]| {
            text.len() == len && {
                let mut rest = text;
                parts.iter().all(|p| {
                    let (head, tail) = rest.split_at(p.len());
                    rest = tail;
                    head == *p
                })
            }
        };
        let mut keep = false;
        {
            let table = self
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match table.get(&hash) {
                Some((text, cx)) if same(text) => return Ok(cx.clone()),
                Some(_) => {} // another text with the same hash
                None => keep = len <= self.max_len,
            }
        }
        let cx = build()?;
        if keep {
            let mut table = self
                .table
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Full: start over, so that a table filled by texts seen once (a
            // scan, a burst of junk) does not keep out the texts seen since.
            // The old contexts are dropped after the lock is let go.
            let old = (table.len() >= self.max_entries).then(|| std::mem::take(&mut *table));
            table
                .entry(hash)
                .or_insert_with(|| (parts.concat().into_boxed_slice(), cx.clone()));
            drop(table);
            drop(old);
        }
        Ok(cx)
    }

    /// How many contexts are kept.
    pub fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decides which members are injected; implemented by baggage policies.
pub trait InjectPolicy: Send + Sync + fmt::Debug {
    /// Whether the member with `key` may leave the service.
    fn allows(&self, key: &str) -> bool;

    /// Told the encoded size of each header written.
    fn injected(&self, _bytes: usize) {}
}

/// W3C Baggage, faithful to the specification.
///
/// Extraction reads every `baggage` header line; everything within 64
/// members and 8192 bytes is kept unchanged in meaning — values with `=`,
/// percent-encoded spaces and tabs, properties `;k=v` and `;k`. Invalid
/// members are skipped without losing valid ones; beyond the limits whole
/// members are dropped, never part of one. Injection writes one `baggage`
/// header, values percent-encoded outside `baggage-octet` (and `%`), within
/// the same limits, and without the members an [`InjectPolicy`] refuses.
///
/// ```
/// use std::collections::HashMap;
/// use looptel_core::baggage::BaggagePropagator;
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::propagation::TextMapPropagator;
///
/// let p = BaggagePropagator::new();
/// let headers = HashMap::from([(
///     "baggage".to_owned(),
///     "tenant.id=acme, q=a%20b=c;ttl=60".to_owned(),
/// )]);
/// let cx = p.extract(&headers);
/// assert_eq!(cx.baggage().get("q").map(|v| v.as_str()), Some("a b=c"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct BaggagePropagator {
    policy: Option<Arc<dyn InjectPolicy>>,
}

static FIELDS: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| [BAGGAGE.to_owned()]);

impl BaggagePropagator {
    /// Propagates every member.
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects only the members `policy` allows.
    pub fn with_policy(policy: Arc<dyn InjectPolicy>) -> Self {
        Self {
            policy: Some(policy),
        }
    }

    /// Adds `decoded` to the baggage of `cx`.
    pub fn context_with(cx: &Context, decoded: Decoded) -> Context {
        if decoded.members.is_empty() {
            return cx.clone();
        }
        let mut baggage = copy(cx.baggage());
        for m in decoded.members {
            let _ = baggage.insert_with_metadata(m.key, m.value, m.properties);
        }
        cx.with_baggage(baggage)
    }

    /// Adds `decoded` to the baggage of `cx` under the members `cx` has:
    /// a member of a key `cx` already holds is not taken, and `cx`'s members
    /// count first against the limits (extraction onto a base whose members
    /// the service set itself).
    pub(crate) fn context_under(cx: &Context, decoded: Decoded) -> Context {
        let own = cx.baggage();
        if own.is_empty() {
            return Self::context_with(cx, decoded);
        }
        if decoded.members.is_empty() {
            return cx.clone();
        }
        let merged = own_first(
            own,
            decoded
                .members
                .into_iter()
                .map(|m| (m.key, m.value, m.properties)),
        );
        cx.with_baggage(merged)
    }

    /// Encodes the baggage of `cx` as one header value; `None` when empty.
    pub fn encode(&self, cx: &Context) -> Option<String> {
        let baggage = cx.baggage();
        if baggage.is_empty() {
            return None;
        }
        let mut out = String::new();
        let mut members = 0;
        for (key, (value, metadata)) in baggage {
            let key = key.as_str();
            if self.policy.as_ref().is_some_and(|p| !p.allows(key)) {
                continue;
            }
            let (value, properties) = (value.as_str(), metadata.as_str());
            let len = encoded_len(key, value, properties) + usize::from(!out.is_empty());
            if members == MAX_MEMBERS || out.len() + len > MAX_BYTES {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            encode_value(value, &mut out);
            if !properties.is_empty() {
                out.push(';');
                out.push_str(properties);
            }
            members += 1;
        }
        if let Some(p) = &self.policy {
            p.injected(out.len());
        }
        (!out.is_empty()).then_some(out)
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(header) = self.encode(cx) {
            injector.set(BAGGAGE, header);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(lines) = extractor.get_all(BAGGAGE) else {
            return cx.clone();
        };
        Self::context_with(cx, decode(lines.iter().map(|l| l.as_bytes())))
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_hostile_header_is_read_only_up_to_the_limit() {
        // 10,000 members, about 118 KB: only the first 16 KiB are read.
        let flood = (0..10_000)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let d = decode([flood.as_bytes()]);
        assert_eq!(d.members.len(), MAX_MEMBERS);
        assert!(
            d.unread_bytes > flood.len() - MAX_READ_BYTES,
            "{}",
            d.unread_bytes
        );
        // What was read and dropped is bounded by the limits too.
        assert!(d.over_limit < MAX_READ_BYTES / 4, "{}", d.over_limit);
        // Later lines are not read either.
        let d = decode([flood.as_bytes(), b"late=1"]);
        assert!(d.members.iter().all(|m| m.key != "late"));
        assert!(d.unread_bytes >= flood.len() - MAX_READ_BYTES + "late=1".len());
        // A member cut by the limit is not kept cut short.
        let long = format!("a={}", "x".repeat(MAX_READ_BYTES));
        let d = decode([long.as_bytes()]);
        assert!(
            d.members.is_empty(),
            "{:?}",
            d.members.first().map(|m| m.value.len())
        );
        // Within the limit, everything is read.
        let d = decode([&b"a=1, b=2"[..], b"c=3"]);
        assert_eq!((d.members.len(), d.unread_bytes), (3, 0));
    }
}
