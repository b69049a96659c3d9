//! The rules of `spool schedule`, as pure functions (no SQL, the same on both
//! backends): what a schedule's rule is, when its occurrences fall, and which
//! of them are due at a given moment. The store fires due occurrences lazily,
//! inside claims; the command line parses and shows rules with this module.
//!
//! Times are milliseconds since the Unix epoch, as the store keeps them.
//!
//! # Occurrences
//!
//! A schedule has a rule and a start (START). With `--every DUR` its
//! occurrences are START, START+DUR, START+2×DUR, … With `--cron EXPR` they
//! are the times the expression names, in its zone, at or after START.
//!
//! # Cron expressions
//!
//! Five fields, minute hour day-of-month month day-of-week, each `*`, a
//! number, a list (`1,15`), a range (`1-5`), a step (`*/15`, `0-30/10`), or
//! names (`MON`, `JAN`, in their own field only); day-of-week takes 0 or 7
//! for Sunday. When both day fields are restricted a day matches either (as
//! Vixie cron does: `0 0 13 * FRI` fires on every 13th and on every Friday);
//! when one of them is `*` only the other counts (a stepped `*/2` counts
//! as restricted, where Vixie cron takes any field that starts with `*` as
//! a star). The nicknames `@hourly`,
//! `@daily`, `@weekly`, `@monthly`, `@yearly` and `@annually` stand for
//! their five fields. The expression is parsed and matched by the `croner`
//! crate (five fields only, day fields combined with OR); the extensions it
//! has beyond Vixie cron (`L`, `W`, `#`, `?`, the `+` that makes the day
//! fields AND, seconds and years) are refused here, so a stored rule means
//! what any cron user expects. An expression that matches no date at all
//! (`0 0 30 2 *`) is refused too.
//!
//! # Zones and daylight saving
//!
//! An expression names wall-clock times in its zone (an IANA name, from the
//! system's time zone database; UTC by default). croner only finds the
//! wall-clock times that match: it searches on a zone-less civil date and
//! time (the `Wall` adapter below). Turning a wall-clock time into an
//! instant is done here, by one rule:
//!
//! **an occurrence at wall-clock time W fires at the first instant at which
//! the zone's clock shows W or later.**
//!
//! Most wall-clock times are shown once, and fire then. A time skipped when
//! the clock jumps forward (02:30 on a spring-forward day in Europe/Berlin)
//! fires at the moment of the jump, the next valid time (03:00); several
//! skipped times (`*/15` in that hour) and the time right after the jump
//! fire as one occurrence. A time shown twice when the clock goes back fires
//! the first time only. The instants this gives never decrease as W
//! increases, so the first occurrence at or after a moment (or the last at
//! or before it) is one croner search, from the highest wall-clock time the
//! clock showed before (or at) that moment, and one step from the wall-clock
//! time found to its instant.
//! croner's own time-zone handling differs (it fires interval patterns in
//! both halves of a repeated hour and skips them in a skipped hour), which
//! is why it is not used.
//!
//! # Catching up
//!
//! [`Rule::due`] returns the occurrences not yet published: after the last
//! published one (or from START) up to now. With [`CatchUp::Latest`] only the
//! newest of them, with [`CatchUp::All`] each one, oldest first, at most
//! `max` ([`MAX_CATCH_UP`]): when more are due, the newest `max` are kept and
//! the older ones are dropped, so a long outage never holds back what is
//! current. The work is bounded whatever the gap: `every` is arithmetic, and
//! a cron rule searches backwards from now, once for `Latest` and at most
//! `max` times for `All`. Each search is croner's, which skips whole years,
//! months, days and hours that cannot match.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, CronDateTime, Resolution};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// At most this many occurrences are published at once by `--catch-up all`
/// (SPEC: "at most 1,000"); the newest are kept.
pub const MAX_CATCH_UP: usize = 1_000;

/// A schedule's rule: a fixed interval or a cron expression in a zone. Make
/// one with [`Rule::every`] or [`Rule::cron`], which refuse what the
/// command line must refuse (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `--every DUR`: an occurrence every DUR from the start (above zero; a
    /// zero built by hand counts as 1 ms).
    Every(Duration),
    /// `--cron EXPR [--tz ZONE]`.
    Cron(Cron),
}

/// A parsed cron expression and its zone, as [`Rule::cron`] accepted them.
#[derive(Clone)]
pub struct Cron {
    expr: String,
    zone: String,
    // Boxed: croner's parsed form is a few hundred bytes of bit fields.
    pattern: Box<croner::Cron>,
    tz: TimeZone,
}

impl PartialEq for Cron {
    /// The same expression (as written, spaces aside) in the same zone:
    /// what `schedule add` compares. `@daily` and `0 0 * * *` differ.
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone == other.zone
    }
}

impl Eq for Cron {}

impl fmt::Debug for Cron {
    /// The expression and zone (croner's parsed form is thousands of bits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cron")
            .field("expr", &self.expr)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Cron {
    /// The expression, its fields separated by one space.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's IANA name (`UTC` by default).
    pub fn zone(&self) -> &str {
        &self.zone
    }
}

/// Why a rule was refused. Each message names the offending value and how
/// to write it; the command line exits 2 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `--every 0s` (or under a millisecond).
    #[error("`--every` must be above zero, like `30s` or `5m`")]
    ZeroInterval,
    /// Not five fields.
    #[error(
        "cron expression `{expr}` has {found} field{s}: write five (minute hour day-of-month month day-of-week), like `0 3 * * *`, or a nickname such as `@daily`",
        s = if *found == 1 { "" } else { "s" }
    )]
    FieldCount {
        /// The expression as given.
        expr: String,
        /// How many fields it has.
        found: usize,
    },
    /// `@something` that is not a known nickname.
    #[error(
        "unknown cron nickname `{expr}`: use `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` or `@annually`"
    )]
    UnknownNickname {
        /// The expression as given.
        expr: String,
    },
    /// One field is not valid.
    #[error("cron expression `{expr}`: the {field} field `{text}` is not valid: {reason}")]
    BadField {
        /// The expression as given.
        expr: String,
        /// Which field: `minute`, `hour`, `day-of-month`, `month` or
        /// `day-of-week`.
        field: &'static str,
        /// The field as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// croner refused a combination of fields each valid alone (not known
    /// to happen).
    #[error("cron expression `{expr}` is not valid: {reason}")]
    Refused {
        /// The expression as given.
        expr: String,
        /// croner's reason.
        reason: String,
    },
    /// The fields are valid but no date matches them.
    #[error(
        "cron expression `{expr}` matches no date (such as February 30th): check its day-of-month and month"
    )]
    NeverMatches {
        /// The expression as given.
        expr: String,
    },
    /// The zone is not in the time zone database.
    #[error(
        "unknown time zone `{zone}`: give an IANA name, like `Europe/Paris`, `America/New_York` or `UTC`"
    )]
    UnknownZone {
        /// The zone as given.
        zone: String,
    },
}

/// What `--catch-up` publishes when several occurrences are due at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Only the newest due occurrence (the default).
    #[default]
    Latest,
    /// Each due occurrence, oldest first, at most [`MAX_CATCH_UP`].
    All,
}

impl FromStr for CatchUp {
    type Err = String;

    /// `latest` or `all`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All),
            _ => Err(format!("invalid catch-up `{s}`: write `latest` or `all`")),
        }
    }
}

impl fmt::Display for CatchUp {
    /// `latest` or `all`, as `--catch-up` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        })
    }
}

impl fmt::Display for Rule {
    /// The rule as `schedule list` shows it: `every 5m`, or
    /// `cron "0 3 * * *" in Europe/Paris`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Every(d) => write!(f, "every {}", crate::parse::format_duration(*d)),
            Rule::Cron(c) => write!(f, "cron \"{}\" in {}", c.expr, c.zone),
        }
    }
}

/// The fields of a cron expression, in order, as error messages name them.
const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
/// The values each field takes, for error messages.
const RANGES: [&str; 5] = [
    "0-59",
    "0-23",
    "1-31",
    "1-12 or JAN-DEC",
    "0-7 (0 and 7 are Sunday) or SUN-SAT",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const NICKNAMES: [&str; 6] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

impl Rule {
    /// `--every DUR`: refused when DUR is zero (below a millisecond, the
    /// store's unit).
    pub fn every(every: Duration) -> Result<Rule, RuleError> {
        if every.as_millis() == 0 {
            return Err(RuleError::ZeroInterval);
        }
        Ok(Rule::Every(every))
    }

    /// `--cron EXPR [--tz ZONE]` (UTC without a zone). Refuses an expression
    /// that is not five valid fields or a known nickname, one that matches
    /// no date, and a zone the time zone database does not know.
    pub fn cron(expr: &str, tz: Option<&str>) -> Result<Rule, RuleError> {
        let (tz, zone) = zone(tz)?;
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let pattern = Box::new(parse_cron(&expr)?);
        let cron = Cron {
            expr,
            zone,
            pattern,
            tz,
        };
        // Any valid day matches within 28 years (a leap day within eight,
        // on its weekday within 28), so a search from 2000 that finds
        // nothing means the day fields can never match.
        let from = Wall(DateTime::constant(2000, 1, 1, 0, 0, 0, 0));
        if cron.pattern.find_next_occurrence(&from, true).is_err() {
            return Err(RuleError::NeverMatches { expr: cron.expr });
        }
        Ok(Rule::Cron(cron))
    }

    /// The rule as `schedule list` shows it (see the [`Display`](fmt::Display)
    /// implementation).
    pub fn describe(&self) -> String {
        self.to_string()
    }

    /// The first occurrence at or after `t` of a schedule that started at
    /// `start`: the next one `schedule list` shows. `None` when there is
    /// none before the end of time (year 5000 for cron, the end of the
    /// millisecond clock for `every`).
    pub fn next_at_or_after(&self, start: i64, t: i64) -> Option<i64> {
        let t = t.max(start);
        match self {
            Rule::Every(every) => {
                let step = step_ms(*every);
                let k = (i128::from(t) - i128::from(start) + step - 1) / step;
                i64::try_from(i128::from(start) + k * step).ok()
            }
            Rule::Cron(cron) => cron.first_at_or_after(t),
        }
    }

    /// The occurrences due at `now` that were not published yet: those
    /// after `last_fired` (from `start` when nothing was published) and at
    /// or before `now`. With [`CatchUp::Latest`] the newest of them, with
    /// [`CatchUp::All`] each one, oldest first, at most `max`: the newest
    /// `max` when more are due (`max` is ignored for `Latest`). Empty when
    /// none is due.
    pub fn due(
        &self,
        start: i64,
        last_fired: Option<i64>,
        now: i64,
        catch_up: CatchUp,
        max: usize,
    ) -> Vec<i64> {
        let from = match last_fired {
            Some(last) => last.saturating_add(1).max(start),
            None => start,
        };
        let max = match catch_up {
            CatchUp::Latest => 1,
            CatchUp::All => max,
        };
        if now < from || max == 0 {
            return Vec::new();
        }
        match self {
            Rule::Every(every) => every_due(start, step_ms(*every), from, now, max),
            Rule::Cron(cron) => cron.newest_in(from, now, max),
        }
    }
}

/// An interval in milliseconds, at least 1.
fn step_ms(every: Duration) -> i128 {
    i128::try_from(every.as_millis())
        .unwrap_or(i128::MAX)
        .max(1)
}

/// The newest `max` occurrences START + k×step within `from..=now`
/// (`start <= from <= now`), oldest first: computed, not enumerated.
fn every_due(start: i64, step: i128, from: i64, now: i64, max: usize) -> Vec<i64> {
    let (start, from, now) = (i128::from(start), i128::from(from), i128::from(now));
    let first = (from - start + step - 1) / step;
    let last = (now - start) / step;
    if first > last {
        return Vec::new();
    }
    let max = i128::try_from(max).unwrap_or(i128::MAX);
    let first = first.max(last - max + 1);
    (first..=last)
        .filter_map(|k| i64::try_from(start + k * step).ok())
        .collect()
}

/// Looks up `--tz`: the zone and its name (`UTC` without one).
fn zone(tz: Option<&str>) -> Result<(TimeZone, String), RuleError> {
    let Some(name) = tz else {
        return Ok((TimeZone::UTC, "UTC".to_owned()));
    };
    let unknown = || RuleError::UnknownZone {
        zone: name.to_owned(),
    };
    // jiff takes `Etc/Unknown` as a zone that is UTC under another name: a
    // placeholder, not something a user means.
    if name.eq_ignore_ascii_case("Etc/Unknown") {
        return Err(unknown());
    }
    let tz = TimeZone::get(name).map_err(|_| unknown())?;
    let canonical = tz.iana_name().unwrap_or(name).to_owned();
    Ok((tz, canonical))
}

/// Parses a cron expression with croner, configured for Vixie cron's five
/// fields: no seconds, no year, day fields combined with OR.
fn parse_cron(expr: &str) -> Result<croner::Cron, RuleError> {
    if expr.starts_with('@') {
        if !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(expr)) {
            return Err(RuleError::UnknownNickname {
                expr: expr.to_owned(),
            });
        }
    } else {
        let fields: Vec<&str> = expr.split(' ').collect();
        if fields.len() != 5 || expr.is_empty() {
            return Err(RuleError::FieldCount {
                expr: expr.to_owned(),
                found: if expr.is_empty() { 0 } else { fields.len() },
            });
        }
        for (i, text) in fields.iter().enumerate() {
            check_field(i, text).map_err(|reason| bad_field(expr, i, text, reason))?;
        }
    }
    croner_parser()
        .parse(expr)
        .map_err(|e| blame_field(expr, e))
}

fn croner_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build()
}

fn bad_field(expr: &str, i: usize, text: &str, reason: String) -> RuleError {
    RuleError::BadField {
        expr: expr.to_owned(),
        field: FIELDS[i],
        text: text.to_owned(),
        reason,
    }
}

/// Refuses what croner would accept but Vixie cron does not: characters
/// other than digits, `*`, `,`, `-` and `/`, names outside their field
/// (croner replaces `MON` anywhere, so `0 0 * MON *` would mean January),
/// and empty list items (`1,,2`).
/// The syntax itself (ranges, steps, bounds) is croner's to check.
fn check_field(i: usize, text: &str) -> Result<(), String> {
    let names: &[&str] = match FIELDS[i] {
        "month" => &MONTH_NAMES,
        "day-of-week" => &DAY_NAMES,
        _ => &[],
    };
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        let upper = word.to_ascii_uppercase();
        if names.contains(&upper.as_str()) {
            continue;
        }
        return Err(if DAY_NAMES.contains(&upper.as_str()) {
            format!("`{word}` is a day name: day names belong in the day-of-week field (the fifth)")
        } else if MONTH_NAMES.contains(&upper.as_str()) {
            format!("`{word}` is a month name: month names belong in the month field (the fourth)")
        } else if names.is_empty() {
            format!("`{word}` is not a number")
        } else {
            format!("`{word}` is not a number or a name ({})", names.join(", "))
        });
    }
    if text.split(',').any(str::is_empty) {
        return Err(
            "a list has an empty item: separate values with single commas, like `1,15`".into(),
        );
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/')))
    {
        return Err(format!(
            "`{c}` is not supported: use numbers, names, `*`, lists (`,`), ranges (`-`) and steps (`/`)"
        ));
    }
    Ok(())
}

/// Turns croner's error for a whole expression into one that names the
/// field at fault, found by parsing each field alone (the others `*`).
fn blame_field(expr: &str, whole: CronError) -> RuleError {
    let fields: Vec<&str> = expr.split(' ').collect();
    for (i, text) in fields.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = text;
        if let Err(e) = croner_parser().parse(&alone.join(" ")) {
            return bad_field(expr, i, text, croner_reason(i, &e));
        }
    }
    // Only reachable if croner refuses a combination of valid fields.
    RuleError::Refused {
        expr: expr.to_owned(),
        reason: whole.to_string(),
    }
}

/// croner's message for a field (`Number out of bounds.`), lowercased,
/// with the values the field takes: croner's messages do not give them.
fn croner_reason(i: usize, e: &CronError) -> String {
    let text = match e {
        CronError::ComponentError(m)
        | CronError::InvalidPattern(m)
        | CronError::IllegalCharacters(m) => m.clone(),
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "refused".to_owned(),
    };
    format!("{text} (the {} is {})", FIELDS[i], RANGES[i])
}

impl Cron {
    /// The first occurrence at or after `t`: the first matching wall-clock
    /// time above the highest one the clock showed before `t`.
    fn first_at_or_after(&self, t: i64) -> Option<i64> {
        let before = ms(t)?.checked_sub(SignedDuration::from_nanos(1)).ok()?;
        let above = self.wall_high(before);
        let wall = self
            .pattern
            .find_next_occurrence(&Wall(above), false)
            .ok()?;
        self.first_instant(wall.0)
    }

    /// The last occurrence at or before `t`: the last matching wall-clock
    /// time at or below the highest one the clock showed up to `t`.
    fn last_at_or_before(&self, t: i64) -> Option<i64> {
        let below = self.wall_high(ms(t)?);
        let wall = self
            .pattern
            .find_previous_occurrence(&Wall(below), true)
            .ok()?;
        self.first_instant(wall.0)
    }

    /// The newest `max` occurrences within `from..=now`, oldest first,
    /// found backwards from `now` (so a long gap costs nothing extra).
    fn newest_in(&self, from: i64, now: i64, max: usize) -> Vec<i64> {
        let mut found = Vec::new();
        let mut upto = now;
        while found.len() < max {
            match self.last_at_or_before(upto) {
                Some(at) if at >= from => {
                    found.push(at);
                    upto = at - 1;
                }
                _ => break,
            }
        }
        found.reverse();
        found
    }

    /// The highest wall-clock time the zone's clock showed at or before
    /// `at`. That is the time at `at`, except in the hour after the clock
    /// went back, when it is the time just before the change.
    fn wall_high(&self, at: Timestamp) -> DateTime {
        let mut high = self.tz.to_datetime(at);
        // The changes that matter lie within a day or two (no zone has
        // repeated more than a day); usually none, or one, is looked at.
        let horizon = at.checked_sub(SignedDuration::from_hours(48)).ok();
        let after = at.checked_add(SignedDuration::from_nanos(1)).unwrap_or(at);
        for change in self.tz.preceding(after) {
            if horizon.is_some_and(|h| change.timestamp() < h) {
                break;
            }
            let Ok(just_before) = change
                .timestamp()
                .checked_sub(SignedDuration::from_nanos(1))
            else {
                break;
            };
            high = high.max(self.tz.to_datetime(just_before));
        }
        high
    }

    /// The first instant at which the clock shows `wall` or later: the
    /// instant of a time shown once, the first of one shown twice, the
    /// moment of the jump for one skipped.
    fn first_instant(&self, wall: DateTime) -> Option<i64> {
        let ambiguous = self.tz.to_ambiguous_timestamp(wall);
        let at = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                ambiguous.earlier().ok()?
            }
            AmbiguousOffset::Gap { after, .. } => {
                // `wall` read with the offset after the jump lies before it.
                let before_jump = after.to_timestamp(wall).ok()?;
                self.tz.following(before_jump).next()?.timestamp()
            }
        };
        Some(at.as_millisecond())
    }
}

/// Milliseconds since the epoch as a jiff timestamp (`None` out of range).
fn ms(t: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(t).ok()
}

/// A zone-less wall-clock time, for croner to search on: croner matches the
/// fields and this module decides the instant (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Wall(DateTime);

impl CronDateTime for Wall {
    fn to_civil(&self) -> CivilDateTime {
        let d = self.0;
        // jiff's parts are always in range.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(i32::from(d.year()), d.month() as u32, d.day() as u32),
            CivilTime::from_parts_unchecked(d.hour() as u32, d.minute() as u32, d.second() as u32),
        )
    }

    fn civil_weekday(&self) -> croner::Weekday {
        croner::Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let d = DateTime::new(
            year,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        Ok(Resolution::Single(Wall(d)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(Wall)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000;
    const MIN: i64 = 60 * SEC;
    const DAY: i64 = 24 * 60 * MIN;

    /// An RFC 3339 time as milliseconds since the epoch.
    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("a valid test time")
            .as_millisecond()
    }

    fn cron(expr: &str, tz: Option<&str>) -> Rule {
        Rule::cron(expr, tz).unwrap_or_else(|e| {
            panic!("{e} (zones come from the system's time zone database: is tzdata installed?)")
        })
    }

    /// The first `n` occurrences at or after `from` of a schedule started
    /// at `start`, as RFC 3339 in UTC.
    fn occurrences(rule: &Rule, start: i64, from: i64, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = from;
        while out.len() < n {
            let Some(next) = rule.next_at_or_after(start, t) else {
                break;
            };
            out.push(ms(next).expect("in range").to_string());
            t = next + 1;
        }
        out
    }

    fn utc(rule: &str, from: &str, n: usize) -> Vec<String> {
        let from = at(from);
        occurrences(&cron(rule, None), from, from, n)
    }

    fn bad(expr: &str) -> RuleError {
        Rule::cron(expr, None).expect_err("a rule to refuse")
    }

    fn bad_field(expr: &str) -> (&'static str, String, String) {
        match bad(expr) {
            RuleError::BadField {
                field,
                text,
                reason,
                ..
            } => (field, text, reason),
            other => panic!("`{expr}`: expected a bad field, got {other:?}"),
        }
    }

    #[test]
    fn every_steps_from_its_start() {
        let rule = Rule::every(Duration::from_secs(300)).unwrap();
        let start = 1_000;
        assert_eq!(rule.next_at_or_after(start, 0), Some(start));
        assert_eq!(rule.next_at_or_after(start, start), Some(start));
        assert_eq!(
            rule.next_at_or_after(start, start + 1),
            Some(start + 300 * SEC)
        );
        assert_eq!(
            rule.next_at_or_after(start, start + 600 * SEC),
            Some(start + 600 * SEC)
        );
        assert_eq!(
            rule.next_at_or_after(start, start + 600 * SEC + 1),
            Some(start + 900 * SEC)
        );
    }

    #[test]
    fn every_refuses_zero() {
        assert_eq!(Rule::every(Duration::ZERO), Err(RuleError::ZeroInterval));
        assert_eq!(
            Rule::every(Duration::from_micros(999)),
            Err(RuleError::ZeroInterval)
        );
        assert_eq!(
            RuleError::ZeroInterval.to_string(),
            "`--every` must be above zero, like `30s` or `5m`"
        );
        assert!(Rule::every(Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn every_catches_up_latest_or_all_after_a_gap() {
        let rule = Rule::every(Duration::from_secs(60)).unwrap();
        let s = at("2026-01-01T00:00:00Z");
        let now = s + 7 * MIN + 30 * SEC;
        // Published up to S+2m: S+3m … S+7m are due.
        let last = Some(s + 2 * MIN);
        assert_eq!(
            rule.due(s, last, now, CatchUp::Latest, 1000),
            vec![s + 7 * MIN]
        );
        assert_eq!(
            rule.due(s, last, now, CatchUp::All, 1000),
            (3..=7).map(|k| s + k * MIN).collect::<Vec<_>>()
        );
        // Nothing published yet: from START itself.
        assert_eq!(
            rule.due(s, None, now, CatchUp::All, 1000),
            (0..=7).map(|k| s + k * MIN).collect::<Vec<_>>()
        );
        // An occurrence exactly at now is due; one published is not again.
        assert_eq!(rule.due(s, None, s, CatchUp::All, 1000), vec![s]);
        assert_eq!(
            rule.due(s, Some(s), s + 59 * SEC, CatchUp::All, 1000),
            Vec::<i64>::new()
        );
        assert_eq!(
            rule.due(s, Some(s + 7 * MIN), now, CatchUp::Latest, 1000),
            Vec::<i64>::new()
        );
        // Before the start nothing is due.
        assert_eq!(
            rule.due(s, None, s - 1, CatchUp::Latest, 1000),
            Vec::<i64>::new()
        );
        // A last occurrence from before the start (a changed start) counts
        // from the start.
        assert_eq!(
            rule.due(s, Some(s - DAY), s + MIN, CatchUp::All, 1000),
            vec![s, s + MIN]
        );
    }

    #[test]
    fn catch_up_all_keeps_the_newest_max() {
        let every = Rule::every(Duration::from_secs(1)).unwrap();
        let s = at("2026-01-01T00:00:00Z");
        assert_eq!(
            every.due(s, None, s + 9 * SEC, CatchUp::All, 3),
            vec![s + 7 * SEC, s + 8 * SEC, s + 9 * SEC]
        );
        assert_eq!(
            every.due(s, None, s + 9 * SEC, CatchUp::All, 0),
            Vec::<i64>::new()
        );
        assert_eq!(
            every.due(s, None, s + 9 * SEC, CatchUp::Latest, 0),
            vec![s + 9 * SEC]
        );

        let minutely = cron("* * * * *", None);
        assert_eq!(
            minutely.due(s, None, s + 10 * MIN + 5 * SEC, CatchUp::All, 3),
            vec![s + 8 * MIN, s + 9 * MIN, s + 10 * MIN]
        );
        assert_eq!(
            minutely.due(s, Some(s + 8 * MIN), s + 10 * MIN, CatchUp::All, 1000),
            vec![s + 9 * MIN, s + 10 * MIN]
        );
        assert_eq!(
            minutely.due(s, Some(s + 8 * MIN), s + 10 * MIN, CatchUp::Latest, 1000),
            vec![s + 10 * MIN]
        );
    }

    #[test]
    fn a_year_long_gap_is_computed_not_walked() {
        let s = at("2026-01-01T00:00:00Z");
        let year = 365 * DAY;
        let every = Rule::every(Duration::from_secs(1)).unwrap();
        assert_eq!(
            every.due(s, Some(s), s + year + 500, CatchUp::Latest, MAX_CATCH_UP),
            vec![s + year]
        );
        let all = every.due(s, Some(s), s + year + 500, CatchUp::All, MAX_CATCH_UP);
        assert_eq!(all.len(), MAX_CATCH_UP);
        assert_eq!(all.first(), Some(&(s + year - 999 * SEC)));
        assert_eq!(all.last(), Some(&(s + year)));

        let minutely = cron("* * * * *", None);
        assert_eq!(
            minutely.due(
                s,
                Some(s),
                s + year + 30 * SEC,
                CatchUp::Latest,
                MAX_CATCH_UP
            ),
            vec![s + year]
        );
        let all = minutely.due(s, Some(s), s + year + 30 * SEC, CatchUp::All, MAX_CATCH_UP);
        assert_eq!(all.len(), MAX_CATCH_UP);
        assert_eq!(all.first(), Some(&(s + year - 999 * MIN)));
    }

    #[test]
    fn cron_starts_at_its_start() {
        let rule = cron("0 * * * *", None);
        let start = at("2026-01-01T10:30:00Z");
        assert_eq!(
            rule.next_at_or_after(start, 0),
            Some(at("2026-01-01T11:00:00Z"))
        );
        assert_eq!(
            rule.due(start, None, at("2026-01-01T10:59:59Z"), CatchUp::All, 10),
            Vec::<i64>::new()
        );
        assert_eq!(
            rule.due(start, None, at("2026-01-01T12:10:00Z"), CatchUp::All, 10),
            vec![at("2026-01-01T11:00:00Z"), at("2026-01-01T12:00:00Z")]
        );
        // An occurrence exactly at the start counts.
        assert_eq!(
            rule.next_at_or_after(at("2026-01-01T10:00:00Z"), 0),
            Some(at("2026-01-01T10:00:00Z"))
        );
    }

    #[test]
    fn cron_lists_ranges_and_steps() {
        assert_eq!(
            utc("0,30 9-10 * * *", "2026-01-05T00:00:00Z", 5),
            [
                "2026-01-05T09:00:00Z",
                "2026-01-05T09:30:00Z",
                "2026-01-05T10:00:00Z",
                "2026-01-05T10:30:00Z",
                "2026-01-06T09:00:00Z",
            ]
        );
        assert_eq!(
            utc("*/20 * * * *", "2026-01-05T00:01:00Z", 4),
            [
                "2026-01-05T00:20:00Z",
                "2026-01-05T00:40:00Z",
                "2026-01-05T01:00:00Z",
                "2026-01-05T01:20:00Z",
            ]
        );
        assert_eq!(
            utc("0-30/15 12 * * *", "2026-01-05T00:00:00Z", 4),
            [
                "2026-01-05T12:00:00Z",
                "2026-01-05T12:15:00Z",
                "2026-01-05T12:30:00Z",
                "2026-01-06T12:00:00Z",
            ]
        );
    }

    #[test]
    fn cron_names_in_any_case() {
        // 2026-01-04 is a Sunday.
        let weekdays = [
            "2026-01-05T12:00:00Z",
            "2026-01-06T12:00:00Z",
            "2026-01-07T12:00:00Z",
            "2026-01-12T12:00:00Z",
        ];
        assert_eq!(utc("0 12 * * MON-WED", "2026-01-04T00:00:00Z", 4), weekdays);
        assert_eq!(utc("0 12 * * mon-wed", "2026-01-04T00:00:00Z", 4), weekdays);
        assert_eq!(utc("0 12 * * 1-3", "2026-01-04T00:00:00Z", 4), weekdays);
        assert_eq!(
            utc("0 0 1 JUN,dec *", "2026-01-04T00:00:00Z", 3),
            [
                "2026-06-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "2027-06-01T00:00:00Z",
            ]
        );
    }

    #[test]
    fn cron_sunday_is_0_or_7() {
        // 2026-01-04 and 2026-01-11 are Sundays.
        let sundays = ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"];
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
            assert_eq!(utc(expr, "2026-01-01T00:00:00Z", 2), sundays, "{expr}");
        }
        assert_eq!(
            utc("0 0 * * 5-7", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-09T00:00:00Z",
            ]
        );
    }

    #[test]
    fn cron_day_fields_combine_with_or_when_both_are_restricted() {
        // Fridays and 13ths: 2026-03-13 is both, 2026-04-13 a Monday.
        assert_eq!(
            utc("0 0 13 * FRI", "2026-03-01T00:00:00Z", 8),
            [
                "2026-03-06T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-03-20T00:00:00Z",
                "2026-03-27T00:00:00Z",
                "2026-04-03T00:00:00Z",
                "2026-04-10T00:00:00Z",
                "2026-04-13T00:00:00Z",
                "2026-04-17T00:00:00Z",
            ]
        );
        // A stepped field is restricted too: the 1st, 11th, 21st, 31st and
        // Mondays (2026-01-05, 2026-01-12).
        assert_eq!(
            utc("0 0 */10 * MON", "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-01T00:00:00Z",
                "2026-01-05T00:00:00Z",
                "2026-01-11T00:00:00Z",
                "2026-01-12T00:00:00Z",
                "2026-01-19T00:00:00Z",
            ]
        );
        // With one of them `*`, only the other counts.
        assert_eq!(
            utc("0 0 13 * *", "2026-03-01T00:00:00Z", 2),
            ["2026-03-13T00:00:00Z", "2026-04-13T00:00:00Z"]
        );
        assert_eq!(
            utc("0 0 * * FRI", "2026-03-01T00:00:00Z", 2),
            ["2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z"]
        );
    }

    #[test]
    fn cron_nicknames() {
        let from = "2026-01-05T10:30:00Z"; // a Monday
        assert_eq!(
            utc("@hourly", from, 2),
            ["2026-01-05T11:00:00Z", "2026-01-05T12:00:00Z"]
        );
        assert_eq!(
            utc("@daily", from, 2),
            ["2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z"]
        );
        assert_eq!(
            utc("@weekly", from, 2),
            ["2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"]
        );
        assert_eq!(
            utc("@monthly", from, 2),
            ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]
        );
        for yearly in ["@yearly", "@annually", "@YEARLY"] {
            assert_eq!(
                utc(yearly, from, 2),
                ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]
            );
        }
        assert_eq!(
            bad("@midnight"),
            RuleError::UnknownNickname {
                expr: "@midnight".into()
            }
        );
    }

    #[test]
    fn a_skipped_local_time_fires_once_at_the_next_valid_time() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z).
        let daily = cron("30 2 * * *", Some("Europe/Berlin"));
        let from = at("2026-03-28T00:00:00Z");
        assert_eq!(
            occurrences(&daily, from, from, 3),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 skipped: 03:00 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        // Every quarter hour: the four skipped ones and 03:00 are one
        // occurrence at 03:00.
        let quarterly = cron("*/15 * * * *", Some("Europe/Berlin"));
        let from = at("2026-03-29T00:30:00Z"); // 01:30 CET
        let expected = [
            "2026-03-29T00:30:00Z",
            "2026-03-29T00:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z",
        ];
        assert_eq!(occurrences(&quarterly, from, from, 4), expected);
        let due = quarterly.due(from, None, at("2026-03-29T01:20:00Z"), CatchUp::All, 100);
        assert_eq!(due, expected.map(at));
        // A moment exactly at the jump finds the skipped 02:30.
        assert_eq!(
            daily.next_at_or_after(0, at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            daily.due(0, None, at("2026-03-29T01:00:00Z"), CatchUp::Latest, 1),
            vec![at("2026-03-29T01:00:00Z")]
        );
        // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
        let ny = cron("30 2 * * *", Some("America/New_York"));
        let from = at("2026-03-08T00:00:00Z");
        assert_eq!(
            occurrences(&ny, from, from, 2),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_the_first_time() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z),
        // so 02:00-02:59 is shown twice.
        let daily = cron("30 2 * * *", Some("Europe/Berlin"));
        let from = at("2026-10-24T12:00:00Z");
        assert_eq!(
            occurrences(&daily, from, from, 2),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, not again at 02:30 CET
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        let half_hourly = cron("*/30 * * * *", Some("Europe/Berlin"));
        let from = at("2026-10-24T23:30:00Z"); // 01:30 CEST
        let expected = [
            "2026-10-24T23:30:00Z", // 01:30 CEST
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T02:00:00Z", // 03:00 CET: 02:00 and 02:30 CET are repeats
            "2026-10-25T02:30:00Z",
        ];
        assert_eq!(occurrences(&half_hourly, from, from, 5), expected);
        // During the second 02:xx the newest due is still the first 02:30,
        // and the next is 03:00 CET.
        let in_repeat = at("2026-10-25T01:45:00Z"); // 02:45 CET
        assert_eq!(
            half_hourly.due(from, None, in_repeat, CatchUp::Latest, 1),
            vec![at("2026-10-25T00:30:00Z")]
        );
        assert_eq!(
            half_hourly.due(
                from,
                Some(at("2026-10-25T00:30:00Z")),
                in_repeat,
                CatchUp::All,
                10
            ),
            Vec::<i64>::new()
        );
        assert_eq!(
            half_hourly.next_at_or_after(from, in_repeat),
            Some(at("2026-10-25T02:00:00Z"))
        );
        assert_eq!(
            half_hourly.due(from, None, at("2026-10-25T02:00:00Z"), CatchUp::All, 10),
            expected[..4].iter().map(|t| at(t)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn cron_bad_fields_are_named() {
        let reason = |expr| bad_field(expr).2;
        assert_eq!(
            bad_field("0 25 * * *"),
            (
                "hour",
                "25".into(),
                "number out of bounds (the hour is 0-23)".into()
            )
        );
        assert_eq!(bad_field("61 * * * *").0, "minute");
        assert_eq!(
            reason("0-60 * * * *"),
            "range out of bounds (the minute is 0-59)"
        );
        assert_eq!(bad_field("0 0 32 * *").0, "day-of-month");
        assert_eq!(bad_field("0 0 0 * *").0, "day-of-month");
        assert_eq!(bad_field("0 0 * 13 *").0, "month");
        assert_eq!(bad_field("0 0 * * 8").0, "day-of-week");
        assert_eq!(bad_field("0 0 1-40 * *").0, "day-of-month");
        assert_eq!(bad_field("*/0 * * * *").0, "minute");
        assert_eq!(bad_field("0 x * * *").0, "hour");
        assert_eq!(
            reason("1,,2 * * * *"),
            "a list has an empty item: separate values with single commas, like `1,15`"
        );
        assert_eq!(
            reason("0 0 * MON *"),
            "`MON` is a day name: day names belong in the day-of-week field (the fifth)"
        );
        assert_eq!(
            reason("0 0 * * JAN"),
            "`JAN` is a month name: month names belong in the month field (the fourth)"
        );
        assert_eq!(
            reason("0 0 * * MONDAY"),
            "`MONDAY` is not a number or a name (SUN, MON, TUE, WED, THU, FRI, SAT)"
        );
        // croner's extensions are not Vixie cron's.
        assert_eq!(reason("0 0 L * *"), "`L` is not a number");
        assert_eq!(bad_field("0 0 * * 5#2").0, "day-of-week");
        assert_eq!(bad_field("0 0 ? * *").0, "day-of-month");
        assert_eq!(bad_field("0 0 * * +MON").0, "day-of-week");
        assert_eq!(
            bad("0 25 * * *").to_string(),
            "cron expression `0 25 * * *`: the hour field `25` is not valid: number out of bounds (the hour is 0-23)"
        );
    }

    #[test]
    fn cron_needs_five_fields_and_a_date() {
        assert_eq!(
            bad("0 0 * * * *"),
            RuleError::FieldCount {
                expr: "0 0 * * * *".into(),
                found: 6
            }
        );
        assert!(matches!(
            bad("0 0 * *"),
            RuleError::FieldCount { found: 4, .. }
        ));
        assert!(matches!(bad("  "), RuleError::FieldCount { found: 0, .. }));
        assert_eq!(
            bad("0 0 30 2 *"),
            RuleError::NeverMatches {
                expr: "0 0 30 2 *".into()
            }
        );
        // A leap day is a date.
        assert_eq!(
            utc("0 0 29 2 *", "2026-01-01T00:00:00Z", 1),
            ["2028-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn unknown_zones_are_refused() {
        for zone in ["Mars/Olympus_Mons", "Etc/Unknown", ""] {
            assert_eq!(
                Rule::cron("0 3 * * *", Some(zone)),
                Err(RuleError::UnknownZone { zone: zone.into() }),
                "{zone}"
            );
        }
        assert_eq!(
            RuleError::UnknownZone {
                zone: "Mars/Olympus_Mons".into()
            }
            .to_string(),
            "unknown time zone `Mars/Olympus_Mons`: give an IANA name, like `Europe/Paris`, `America/New_York` or `UTC`"
        );
    }

    #[test]
    fn rules_describe_themselves_as_schedule_list_shows_them() {
        assert_eq!(
            Rule::every(Duration::from_secs(300)).unwrap().describe(),
            "every 5m"
        );
        assert_eq!(
            Rule::every(Duration::from_secs(5400)).unwrap().to_string(),
            "every 1h30m"
        );
        let paris = cron(" 0  3 * * *", Some("Europe/Paris"));
        assert_eq!(paris.describe(), "cron \"0 3 * * *\" in Europe/Paris");
        assert_eq!(cron("@daily", None).describe(), "cron \"@daily\" in UTC");
        let Rule::Cron(c) = &paris else {
            panic!("a cron rule")
        };
        assert_eq!((c.expr(), c.zone()), ("0 3 * * *", "Europe/Paris"));
        assert_eq!(paris, cron("0 3 * * *", Some("Europe/Paris")));
        assert_ne!(paris, cron("0 3 * * *", None));
    }

    #[test]
    fn catch_up_reads_and_writes_its_flag_values() {
        for (text, value) in [("latest", CatchUp::Latest), ("all", CatchUp::All)] {
            assert_eq!(text.parse::<CatchUp>(), Ok(value));
            assert_eq!(value.to_string(), text);
        }
        assert_eq!(CatchUp::default(), CatchUp::Latest);
        assert_eq!(
            "some".parse::<CatchUp>(),
            Err("invalid catch-up `some`: write `latest` or `all`".into())
        );
    }
}
