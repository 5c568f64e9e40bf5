//! Durations as Prometheus writes them (`5m`, `1h12m`, `500ms`).

use std::time::Duration;

/// Reads a Prometheus duration: one or more `<integer><unit>` parts, units
/// `d`, `h`, `m`, `s`, `ms`, largest first (`1h30m`, `500ms`, `30d`).
pub(crate) fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.bytes().next()? {
                b'd' => (86_400_000, 1),
                b'h' => (3_600_000, 1),
                b'm' => (60_000, 1),
                b's' => (1_000, 1),
                _ => return None,
            }
        };
        if unit_ms >= last_unit {
            return None;
        }
        last_unit = unit_ms;
        rest = &rest[len..];
        total = total.checked_add(Duration::from_millis(n.checked_mul(unit_ms)?))?;
    }
    (!total.is_zero()).then_some(total)
}

/// Writes a duration the way Prometheus reads it, to the millisecond:
/// `5m`, `1h12m`, `30s`, `2s500ms`.
pub(crate) fn format(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ] {
        if ms >= unit {
            out.push_str(&(ms / unit).to_string());
            out.push_str(name);
            ms %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for (text, secs) in [
            ("5m", 300.0),
            ("1h12m", 4320.0),
            ("30d", 2_592_000.0),
            ("500ms", 0.5),
        ] {
            let d = parse(text).expect(text);
            assert!((d.as_secs_f64() - secs).abs() < 1e-9, "{text}");
            assert_eq!(format(d), text);
        }
        assert_eq!(format(Duration::from_secs(72 * 60)), "1h12m");
        for bad in ["", "5", "m", "5x", "1m1h", "-1m", "0s", "1.5h", "5m5m"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
