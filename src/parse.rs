//! Parsers for the values users type: durations, times, sizes and queue names.
//!
//! Each returns a `String` error that names the offending value and shows the
//! right form, so clap can print it as a usage error (exit 2).

use std::time::Duration;

/// The longest duration spool accepts anywhere (100 years): beyond it, times
/// would overflow the millisecond clock and nobody means it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const DURATION_HINT: &str = "write a whole number with a unit, like `250ms`, `30s`, `5m`, `2h` or `7d` (units may be combined: `1h30m`)";

/// Parses `250ms`, `30s`, `5m`, `2h`, `7d`, or combinations like `1h30m`.
/// A bare `0` is zero. Negative, fractional or overflowing values are refused.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}`: {DURATION_HINT}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = number.checked_mul(unit_ms).ok_or_else(too_long(text))?;
        total_ms = total_ms.checked_add(part).ok_or_else(too_long(text))?;
    }
    let total = Duration::from_millis(total_ms);
    if total > MAX_DURATION {
        return Err(too_long(text)());
    }
    Ok(total)
}

fn too_long(text: &str) -> impl Fn() -> String + '_ {
    move || format!("duration `{text}` is too long: spool accepts at most 100 years (`36500d`)")
}

/// A duration that must be above zero, such as a visibility timeout.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err(format!("duration `{text}` must be above zero, like `30s`"));
    }
    Ok(d)
}

/// A point in time given as RFC 3339 (`2026-11-27T09:00:00Z`, offsets allowed),
/// returned as milliseconds since the Unix epoch.
pub fn time_ms(text: &str) -> Result<i64, String> {
    let ts: jiff::Timestamp = text.parse().map_err(|_| {
        format!("invalid time `{text}`: write RFC 3339, like `2026-11-27T09:00:00Z` or `2026-11-27T10:00:00+01:00`")
    })?;
    Ok(ts.as_millisecond())
}

/// A delivery time for `publish --at`: RFC 3339, at most [`MAX_DURATION`]
/// (100 years) from now, the limit `--delay` has too. A valid RFC 3339 time
/// beyond what spool's clock can hold (`9999-12-31T23:59:59Z`) is refused
/// with the same message, not as an invalid time.
pub fn deliver_at(text: &str) -> Result<i64, String> {
    within_a_century(text, || {
        format!(
            "time `{text}` is too far ahead: `--at` and `--delay` reach at most 100 years from now (`--delay 36500d`)"
        )
    })
}

/// A schedule's `--start`: RFC 3339, at most 100 years from now, as
/// [`deliver_at`] (a later start would never come, or not be stored).
pub fn schedule_start(text: &str) -> Result<i64, String> {
    within_a_century(text, || {
        format!("time `{text}` is too far ahead: a schedule starts at most 100 years from now")
    })
}

/// `text` as a time no more than [`MAX_DURATION`] from now, else `too_far()`.
fn within_a_century(text: &str, too_far: impl Fn() -> String) -> Result<i64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let limit = now.saturating_add(MAX_DURATION.as_millis() as i64);
    match time_ms(text) {
        Ok(ms) if ms > limit => Err(too_far()),
        Ok(ms) => Ok(ms),
        Err(_) if beyond_the_clock(text) => Err(too_far()),
        Err(e) => Err(e),
    }
}

/// True for a well-formed RFC 3339 time in a year after those jiff's
/// timestamps reach (they end late on 9999-12-30 UTC).
fn beyond_the_clock(text: &str) -> bool {
    let civil = text
        .strip_suffix(['Z', 'z'])
        .or_else(|| {
            // Byte positions: `get` is None off a character boundary.
            let cut = text.len().checked_sub(6)?;
            let (head, offset) = (text.get(..cut)?, text.get(cut..)?.as_bytes());
            let is_offset = matches!(offset[0], b'+' | b'-') && offset[3] == b':';
            is_offset.then_some(head)
        })
        .and_then(|head| head.parse::<jiff::civil::DateTime>().ok());
    civil.is_some_and(|dt| dt.year() >= 9999)
}

/// Either a duration back from now (`1h`: an hour ago) or an absolute time,
/// as taken by `replay --since/--until`. Returns milliseconds since the epoch.
pub fn since(text: &str) -> Result<SinceArg, String> {
    match duration(text) {
        Ok(d) => return Ok(SinceArg::Ago(d)),
        // A duration, but longer than spool takes: say that.
        Err(e) if e.contains("too long") => return Err(e),
        Err(_) => {}
    }
    time_ms(text).map(SinceArg::At).map_err(|_| {
        format!("invalid time `{text}`: write a duration back from now like `2h`, or RFC 3339 like `2026-11-27T09:00:00Z`")
    })
}

/// A `--since`/`--until` value: relative to now, or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceArg {
    /// This long before now.
    Ago(Duration),
    /// This absolute time, in ms since the epoch.
    At(i64),
}

impl SinceArg {
    /// The absolute time in ms since the epoch, given the current time.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            SinceArg::Ago(d) => now_ms.saturating_sub(d.as_millis() as i64),
            SinceArg::At(t) => t,
        }
    }
}

/// Parses a size such as `512`, `64KiB`, `1MiB` (also `KB`/`MB` as 1000-based,
/// and `K`/`M`/`G` as 1024-based), returned in bytes.
pub fn size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size `{text}`: write bytes like `512`, `64KiB` or `1MiB`");
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match text[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(unit)
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// A queue's `max_size`: above zero (a limit of 0 bytes would refuse
/// every message) and at most [`crate::store::MAX_BODY_BYTES`].
pub fn positive_size(text: &str) -> Result<u64, String> {
    match size(text)? {
        0 => Err(format!(
            "size `{text}` must be above zero: a queue with a max_size of 0 refuses every message"
        )),
        n if n > crate::store::MAX_BODY_BYTES => Err(format!(
            "size `{text}` is over {}, the largest body a queue can take",
            format_size(crate::store::MAX_BODY_BYTES)
        )),
        n => Ok(n),
    }
}

/// Checks a queue or topic name: 1–128 characters from ASCII letters, digits
/// and `. _ - :`, starting with a letter or digit.
pub fn queue_name(text: &str) -> Result<String, String> {
    let rule = "names are 1–128 characters of ASCII letters, digits and `. _ - :`, starting with a letter or digit";
    let shown = text.escape_debug();
    if text.is_empty() {
        return Err(format!("empty queue name: {rule}"));
    }
    if text.len() > 128 {
        return Err(format!(
            "queue name `{shown}` is {} characters long: {rule}",
            text.len()
        ));
    }
    let first_ok = text.as_bytes()[0].is_ascii_alphanumeric();
    let all_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !first_ok || !all_ok {
        return Err(format!("invalid queue name `{shown}`: {rule}"));
    }
    Ok(text.to_owned())
}

/// `text` with its `%XX` escapes undone (and, with `plus_is_space`, each
/// `+` made a space, as in a URL's query); a `%` not followed by two hex
/// digits stays as it is. The bytes may not be UTF-8: each caller says
/// what that means.
pub fn percent_decoded(text: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    out
}

/// Parses a message key or group (`--key`, `--group`): at most
/// [`crate::store::MAX_LABEL_BYTES`] bytes, no NUL (see
/// [`crate::store::label_problem`]).
pub fn label(text: &str) -> Result<String, String> {
    match crate::store::label_problem(text) {
        Some(problem) => Err(format!("the value {problem}")),
        None => Ok(text.to_owned()),
    }
}

/// Parses a delivery rate `N/DUR` (`100/1s`, `5/1m`; `100/s` means
/// `100/1s`): N at least 1, DUR above zero.
pub fn rate(text: &str) -> Result<crate::store::flow::Rate, String> {
    let bad =
        || format!("invalid rate `{text}`: write deliveries per duration, like `100/1s` or `5/1m`");
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_alphabetic()) {
        duration(&format!("1{per}"))
    } else {
        duration(per)
    }
    .map_err(|_| bad())?;
    if count == 0 || per.is_zero() {
        return Err(format!(
            "invalid rate `{text}`: both sides must be above zero (`--rate none` removes the rate)"
        ));
    }
    Ok(crate::store::flow::Rate { count, per })
}

/// A setting that `none` removes (`--rate none`, `--ttl none`): `None`
/// inside means "remove it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrNone<T>(pub Option<T>);

fn or_none<T>(text: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<OrNone<T>, String> {
    if text == "none" {
        return Ok(OrNone(None));
    }
    parse(text).map(|v| OrNone(Some(v)))
}

/// `--rate N/DUR` or `none`.
pub fn rate_setting(text: &str) -> Result<OrNone<crate::store::flow::Rate>, String> {
    or_none(text, rate)
}

/// `--ttl DUR` (above zero) or `none`.
pub fn ttl_setting(text: &str) -> Result<OrNone<Duration>, String> {
    or_none(text, positive_duration)
}

/// `--max-length N` or `none`.
pub fn count_setting(text: &str) -> Result<OrNone<u64>, String> {
    or_none(text, |t| {
        t.parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| format!("invalid count `{t}`: write a whole number, or `none`"))
    })
}

/// `--max-bytes SIZE` or `none`.
pub fn size_setting(text: &str) -> Result<OrNone<u64>, String> {
    or_none(text, size)
}

/// Formats a duration the way users write them (`30s`, `1h30m`, `250ms`, `0`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Formats a byte count as users write sizes (`1MiB`, `64KiB`, `1000`).
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_written_and_refuse_zero() {
        let r = rate("100/1s").unwrap();
        assert_eq!((r.count, r.per), (100, Duration::from_secs(1)));
        assert_eq!(rate("5/m").unwrap().per, Duration::from_secs(60));
        assert_eq!(rate("5/1m").unwrap().to_string(), "5/1m");
        for bad in ["", "100", "0/1s", "10/0", "x/1s", "10/1x", "-1/1s", "10/"] {
            assert!(rate(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn delivery_times_end_100_years_ahead() {
        assert!(deliver_at("2100-01-01T00:00:00Z").is_ok());
        assert!(deliver_at("2000-01-01T00:00:00+01:00").is_ok());
        for far in [
            "2200-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999+00:00",
            "9999-12-31T23:59:59z",
        ] {
            let err = deliver_at(far).unwrap_err();
            assert!(err.contains("at most 100 years"), "{far}: {err}");
        }
        for bad in [
            "9999-13-31T23:59:59Z",
            "tomorrow",
            "9999-12-31T23:59:59",
            "é€9999-12-31",
        ] {
            let err = deliver_at(bad).unwrap_err();
            assert!(err.contains("invalid time"), "{bad}: {err}");
        }
        // A schedule's start too: one past the clock's reach never fired.
        assert!(schedule_start("2030-01-01T00:00:00Z").is_ok());
        for far in ["9998-12-30T00:00:00Z", "9999-12-31T00:00:00Z"] {
            let err = schedule_start(far).unwrap_err();
            assert!(
                err.contains("a schedule starts at most 100 years from now"),
                "{far}: {err}"
            );
        }
    }

    #[test]
    fn sizes_of_limits_are_above_zero() {
        assert_eq!(positive_size("1"), Ok(1));
        assert!(positive_size("0").is_err());
        assert!(positive_size("0KiB").is_err());
        assert_eq!(positive_size("512MiB"), Ok(crate::store::MAX_BODY_BYTES));
        let over = positive_size("513MiB").expect_err("over the largest body");
        assert!(over.contains("512MiB, the largest body"), "{over}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "-5s",
            "1.5.3s",
            "1.5s",
            "5",
            "s",
            "5x",
            "5 s",
            " 5s",
            "99999999999999999999s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} should be refused");
        }
        let err = duration("99999999d").unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn positive_durations_refuse_zero() {
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("1ms").is_ok());
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["250ms", "30s", "1h30m", "7d", "1d2h3m4s5ms"] {
            assert_eq!(format_duration(duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert!(size("1.5MiB").is_err());
        assert!(size("MiB").is_err());
        assert!(size("99999999999GiB").is_err());
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn times() {
        assert_eq!(time_ms("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(time_ms("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert!(time_ms("yesterday").is_err());
        assert_eq!(
            since("2h").unwrap().resolve(10_000_000),
            10_000_000 - 7_200_000
        );
        // A duration past the limit says so, not "invalid time".
        let far = since("36600d").unwrap_err();
        assert!(
            far.contains("too long: spool accepts at most 100 years"),
            "{far}"
        );
        assert!(since("soon").unwrap_err().contains("invalid time"));
    }

    #[test]
    fn percent_escapes_are_undone_and_odd_ones_kept() {
        assert_eq!(percent_decoded("%41%zz%4", false), b"A%zz%4");
        assert_eq!(percent_decoded("caf%C3%A9+au", true), "café au".as_bytes());
        assert_eq!(percent_decoded("a+b", false), b"a+b");
        assert_eq!(percent_decoded("%FF", true), [0xFF]);
    }

    #[test]
    fn queue_names() {
        for good in [
            "orders",
            "a",
            "orders.v2",
            "team:billing_retry-1",
            &"x".repeat(128),
        ] {
            assert!(queue_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-orders",
            ".x",
            "has space",
            "ünïcode",
            "tab\there",
            &"x".repeat(129),
            "a/b",
        ] {
            assert!(queue_name(bad).is_err(), "{bad}");
        }
    }
}
