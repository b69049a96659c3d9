//! Drawing `spool top`: one function per screen, from an [`App`] into a
//! ratatui frame, so tests can render to a `TestBackend`.
//!
//! Made for 80×24 and up: the queue name and the sparklines take what the
//! other columns leave. Without colour (`NO_COLOR`, `--color never`) only
//! bold and reverse video mark things.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::app::{App, Database, Detail, Filter, MessageList, Screen};
use super::json;
use crate::commands::stats::{last_ago, next_in};
use crate::commands::view;
use crate::output;
use crate::parse;
use crate::store::{Peeked, QueueInfo, RateHistory, ScheduleInfo, State};

/// Width of each count column (READY … DEAD), a space included.
const COUNT_W: usize = 6;
/// Width of the OLDEST column.
const AGE_W: usize = 7;
/// The five count columns and OLDEST.
const FIXED_W: usize = 5 * COUNT_W + AGE_W;
/// A rate column without its sparkline: space, 5-digit number, space.
const RATE_W: usize = 7;
/// The queue name's width when the terminal is narrow.
const NAME_MIN: usize = 14;
/// Body lines pretty-printed at most.
const BODY_MAX_LINES: usize = 20_000;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Styles, plain where colour is off.
#[derive(Debug, Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn bar(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    fn state(self, state: State) -> Style {
        match state {
            State::Dead => self.fg(Color::Red),
            State::Leased => self.fg(Color::Yellow),
            State::Acked => self.fg(Color::Green),
            State::Delayed | State::Held => self.fg(Color::Blue),
            State::Ready => Style::new(),
        }
    }

    fn error(self) -> Style {
        if self.color {
            self.fg(Color::Red)
        } else {
            self.bold()
        }
    }
}

/// The widths of the queue list's flexible columns for a terminal width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The queue name.
    pub name: usize,
    /// Each sparkline, one bar per minute.
    pub spark: usize,
}

impl Columns {
    /// Sparklines get what is left after the fixed columns and a name of
    /// [`NAME_MIN`], split in two, from 3 to 60 minutes; then the name grows.
    pub fn for_width(width: u16) -> Columns {
        let width = usize::from(width);
        let spare = width.saturating_sub(FIXED_W + 2 * RATE_W + NAME_MIN);
        let spark = (spare / 2).clamp(3, 60);
        let name = width.saturating_sub(FIXED_W + 2 * (RATE_W + spark)).max(4);
        Columns { name, spark }
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let theme = Theme { color: app.color };
    let area = frame.area();
    let status_h = u16::from(app.status.is_some());
    let [header, main, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(status_h),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, theme);
    match app.screen {
        Screen::Queues => draw_queues(frame, main, app, theme),
        Screen::Messages => draw_messages(frame, main, app, theme),
        Screen::Message => draw_message(frame, main, app, theme),
    }
    if let Some(s) = &app.status {
        let style = if s.error { theme.error() } else { Style::new() };
        let line = Line::from(Span::styled(format!(" {}", s.text), style));
        frame.render_widget(Paragraph::new(line), status);
    }
    frame.render_widget(Paragraph::new(footer_line(app, theme)), footer);
    if let Some(prompt) = &app.prompt {
        draw_prompt(frame, area, &prompt.question, theme);
    }
    if app.help {
        draw_help(frame, area, theme);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let topics = app.queues.iter().filter(|q| q.is_topic).count();
    let queues = app.queues.len() - topics;
    let clock = jiff::ZonedDateTime::now().strftime("%H:%M:%S").to_string();
    let summary = format!(" · {queues} queue(s), {topics} topic(s)");
    let width = usize::from(area.width);
    let room = width.saturating_sub(" spool top · ".width() + summary.width() + clock.width() + 2);
    let left = format!(" spool top · {}{summary}", cut_left(&app.db_path, room));
    let gap = width.saturating_sub(left.width() + clock.width() + 1);
    let text = format!("{left}{}{clock} ", " ".repeat(gap));
    frame.render_widget(Paragraph::new(text).style(theme.bar()), area);
}

/// The last `width` columns of `text`, with an ellipsis where it was cut.
fn cut_left(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 1;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        kept.push(c);
    }
    kept.push('…');
    kept.into_iter().rev().collect()
}

/// `text` cut or padded to exactly `width` columns, left-aligned.
fn fit(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    if text.width() > width {
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if used + w + 1 > width {
                break;
            }
            used += w;
            out.push(c);
        }
        if width > 0 {
            out.push('…');
            used += 1;
        }
    } else {
        out.push_str(text);
        used = text.width();
    }
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}

/// `text` right-aligned in `width` columns (cut if longer).
fn right(text: &str, width: usize) -> String {
    if text.width() >= width {
        return fit(text, width);
    }
    format!("{}{text}", " ".repeat(width - text.width()))
}

/// A count in at most 5 characters: exact up to 99999, then `123k`, `1.2M`.
pub fn count(n: i64) -> String {
    match n {
        ..100_000 => n.to_string(),
        100_000..1_000_000 => format!("{}k", n / 1_000),
        1_000_000..10_000_000 => format!("{:.1}M", n as f64 / 1e6),
        10_000_000..1_000_000_000 => format!("{}M", n / 1_000_000),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// The last `width` values as bars, scaled to their largest: no traffic is
/// the lowest bar, the busiest minute the full one.
pub fn sparkline(values: &[i64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    let mut out = String::from(BARS[0]).repeat(width - tail.len());
    for &v in tail {
        let level = ((v.max(0) * 7 + max - 1) / max).clamp(0, 7);
        out.push(BARS[level as usize]);
    }
    out
}

fn draw_queues(frame: &mut Frame, area: Rect, app: &mut App, theme: Theme) {
    if app.queues.is_empty() {
        let text = match app.database {
            Database::Missing => format!(
                "No database yet at {}. Waiting for it: `spool publish QUEUE BODY` creates it.",
                app.db_path
            ),
            Database::Unknown => "Reading…".to_owned(),
            Database::Open => {
                "No queues yet. `spool publish QUEUE BODY` or `spool queue create QUEUE` makes one."
                    .to_owned()
            }
        };
        let p = Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(p, area.inner(ratatui::layout::Margin::new(1, 1)));
        return;
    }
    let schedules_h = schedule_rows(app.schedules.len()).map_or(0, |n| n as u16 + 1);
    let [head, list, schedules, details] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(schedules_h),
        Constraint::Length(3),
    ])
    .areas(area);
    let cols = Columns::for_width(area.width);
    app.page = usize::from(list.height).max(1);
    frame.render_widget(Paragraph::new(queue_header(cols)).style(theme.bold()), head);
    let empty = RateHistory::default();
    let items: Vec<ListItem> = app
        .queues
        .iter()
        .map(|q| {
            let rates = app.rates.get(&q.name).unwrap_or(&empty);
            ListItem::new(queue_line(q, rates, cols, theme))
        })
        .collect();
    let widget = List::new(items).highlight_style(theme.bar());
    frame.render_stateful_widget(widget, list, &mut app.queue_state);
    draw_schedules(frame, schedules, &app.schedules, theme);
    if let Some(q) = app.selected_queue() {
        draw_queue_details(frame, details, q, theme);
    }
}

/// Schedules shown under the queue list at most; more are summed up in
/// the last row.
const SCHEDULES_SHOWN: usize = 4;

/// Rows of the schedules panel for `n` schedules: none without any.
fn schedule_rows(n: usize) -> Option<usize> {
    (n > 0).then(|| n.min(SCHEDULES_SHOWN + 1))
}

/// The schedules panel: one row per schedule, as `stats` shows them (name,
/// target, next and last occurrence, paused).
fn draw_schedules(frame: &mut Frame, area: Rect, schedules: &[ScheduleInfo], theme: Theme) {
    let Some(rows) = schedule_rows(schedules.len()) else {
        return;
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(" schedules ", theme.bold()));
    let width = |f: fn(&ScheduleInfo) -> &str| {
        schedules
            .iter()
            .map(|s| f(s).width())
            .max()
            .unwrap_or(0)
            .min(20)
    };
    let (name_w, target_w) = (width(|s| &s.name), width(|s| &s.target));
    let now = crate::store::now_ms();
    let shown = if schedules.len() > rows {
        rows - 1
    } else {
        rows
    };
    let mut lines: Vec<Line> = schedules[..shown]
        .iter()
        .map(|s| {
            let text = format!(
                " {} → {}  next {}  last {}",
                fit(&s.name, name_w),
                fit(&s.target, target_w),
                fit(&next_in(s.next_at, now), 8),
                fit(&last_ago(s.last_at, now), 9),
            );
            let mut spans = vec![Span::raw(text)];
            if s.paused {
                spans.push(Span::styled("  paused", theme.fg(Color::Yellow)));
            }
            Line::from(spans)
        })
        .collect();
    if shown < schedules.len() {
        lines.push(Line::from(Span::styled(
            format!(
                " … and {} more: `spool schedule list` shows them all",
                schedules.len() - shown
            ),
            theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn queue_header(cols: Columns) -> String {
    let rate = |label: &str| {
        format!(
            "{} {}",
            right(label, RATE_W - 1),
            fit(&format!("last {}m", cols.spark), cols.spark)
        )
    };
    format!(
        "{}{}{}{}{}{}{}{}{}",
        fit("QUEUE", cols.name),
        right("READY", COUNT_W),
        right("DELAY", COUNT_W),
        right("LEASE", COUNT_W),
        right("ACKED", COUNT_W),
        right("DEAD", COUNT_W),
        right("OLDEST", AGE_W),
        rate("PUB/m"),
        rate("ACK/m"),
    )
}

/// One row of the queue list.
fn queue_line(q: &QueueInfo, rates: &RateHistory, cols: Columns, theme: Theme) -> Line<'static> {
    let mut spans = vec![Span::raw(fit(&q.name, cols.name))];
    let rate = |n: i64, series: &[i64], c: Color| {
        vec![
            Span::raw(format!(" {} ", right(&count(n), RATE_W - 2))),
            Span::styled(sparkline(series, cols.spark), theme.fg(c)),
        ]
    };
    if q.is_topic {
        let to = match q.subscribers.as_slice() {
            [] => " topic, no subscribers".to_owned(),
            subs => format!(" topic → {}", subs.join(", ")),
        };
        spans.push(Span::styled(fit(&to, FIXED_W), theme.dim()));
        spans.extend(rate(q.published_last_minute, &rates.published, Color::Cyan));
        return Line::from(spans);
    }
    let c = &q.counts;
    for n in [c.ready, c.delayed, c.leased, c.acked] {
        spans.push(Span::raw(right(&count(n), COUNT_W)));
    }
    let dead_style = if c.dead > 0 {
        theme.state(State::Dead)
    } else {
        Style::new()
    };
    spans.push(Span::styled(right(&count(c.dead), COUNT_W), dead_style));
    let oldest = q.oldest_ready_age_ms.map_or("-".to_owned(), view::age);
    spans.push(Span::raw(right(&oldest, AGE_W)));
    spans.extend(rate(q.published_last_minute, &rates.published, Color::Cyan));
    spans.extend(rate(q.acked_last_minute, &rates.acked, Color::Green));
    Line::from(spans)
}

fn draw_queue_details(frame: &mut Frame, area: Rect, q: &QueueInfo, theme: Theme) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(format!(" {} ", q.name), theme.bold()));
    let lines = if q.is_topic {
        let first = match q.subscribers.as_slice() {
            [] => "topic without subscribers: publishing to it fails until a queue subscribes"
                .to_owned(),
            subs => format!("topic: each message goes to {}", subs.join(", ")),
        };
        vec![
            Line::from(format!(" {first}")),
            Line::from(format!(
                " {} published in total, {} in the last minute",
                q.published_total, q.published_last_minute
            )),
        ]
    } else {
        let s = &q.settings;
        let settings = format!(
            "visibility {} · max attempts {} · retention {} · max size {} · retry delay {}",
            parse::format_duration(s.visibility),
            s.max_attempts,
            parse::format_duration(s.retention),
            parse::format_size(s.max_size),
            parse::format_duration(s.retry_delay),
        );
        let mut settings = settings;
        for (name, value) in s.flow.shown(false) {
            settings.push_str(&format!(" · {} {value}", name.replace('_', " ")));
        }
        let mut second = format!(" {} published in total", q.published_total);
        if let Some(age) = q.oldest_ready_age_ms {
            second.push_str(&format!(" · oldest ready published {} ago", view::age(age)));
        }
        if !q.topics.is_empty() {
            second.push_str(&format!(" · subscribes to {}", q.topics.join(", ")));
        }
        vec![Line::from(format!(" {settings}")), Line::from(second)]
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_messages(frame: &mut Frame, area: Rect, app: &mut App, theme: Theme) {
    let Some(list) = app.list.as_mut() else {
        return;
    };
    let [title, tabs, head, rows] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    app.page = usize::from(rows.height).max(1);
    let total = list
        .info
        .as_ref()
        .map_or(0, |i| list.filter.count(&i.counts));
    let position = match list.state.selected() {
        Some(i) if !list.rows.is_empty() => format!("{} of {total}", i + 1),
        _ => format!("{total}"),
    };
    let title_line = Line::from(vec![
        Span::styled(format!(" {} ", list.queue), theme.bold()),
        Span::raw(format!("· {} · {position}", list.filter.label())),
    ]);
    frame.render_widget(Paragraph::new(title_line), title);
    frame.render_widget(Paragraph::new(tab_line(list, theme)), tabs);
    if list.rows.is_empty() {
        let text = format!("  no {} messages in `{}`", list.filter.label(), list.queue);
        frame.render_widget(Paragraph::new(text), head);
        return;
    }
    let widths = MessageWidths::of(&list.rows, area.width);
    frame.render_widget(Paragraph::new(widths.header()).style(theme.bold()), head);
    let now = crate::store::now_ms();
    let items: Vec<ListItem> = list
        .rows
        .iter()
        .map(|m| ListItem::new(widths.line(m, now, theme)))
        .collect();
    let widget = List::new(items).highlight_style(theme.bar());
    frame.render_stateful_widget(widget, rows, &mut list.state);
}

fn tab_line(list: &MessageList, theme: Theme) -> Line<'static> {
    let counts = list.info.as_ref().map(|i| i.counts).unwrap_or_default();
    let mut spans = vec![Span::raw(" ")];
    for f in Filter::TABS {
        let text = format!(" {} {} ", f.label(), count(f.count(&counts)));
        let style = if f == list.filter {
            theme.bar().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

/// Column widths of the message list, fitted to the rows shown.
struct MessageWidths {
    id: usize,
    key: usize,
    body: usize,
}

impl MessageWidths {
    fn of(rows: &[Peeked], width: u16) -> MessageWidths {
        let id = rows
            .iter()
            .map(|m| m.delivery.id.to_string().len())
            .max()
            .unwrap_or(2)
            .max(2);
        let key = rows
            .iter()
            .filter_map(|m| m.delivery.key.as_deref())
            .map(|k| view::text_line(k).width())
            .max()
            .map_or(0, |w| w.clamp(3, 16) + 1);
        // id, state 8, attempt 4, age 6, key, space before the body
        let body = usize::from(width).saturating_sub(id + 8 + 4 + 6 + key + 2);
        MessageWidths { id, key, body }
    }

    fn header(&self) -> String {
        let key = if self.key > 0 {
            fit(" KEY", self.key)
        } else {
            String::new()
        };
        format!(
            "{} {}{}{}{key}  BODY",
            right("ID", self.id),
            fit("STATE", 8),
            right("ATT", 3),
            right("AGE", 6)
        )
    }

    fn line(&self, m: &Peeked, now: i64, theme: Theme) -> Line<'static> {
        let d = &m.delivery;
        let key = if self.key > 0 {
            fit(
                &format!(" {}", view::text_line(d.key.as_deref().unwrap_or(""))),
                self.key,
            )
        } else {
            String::new()
        };
        let body: String = view::body_line(&d.body, d.raw)
            .chars()
            .take(self.body + 1)
            .collect();
        Line::from(vec![
            Span::raw(right(&d.id.to_string(), self.id)),
            Span::styled(format!(" {}", fit(m.state.name(), 8)), theme.state(m.state)),
            Span::raw(format!(
                "{}{}{key}  {}",
                right(&d.attempt.to_string(), 3),
                right(&view::age(now - d.published_at), 6),
                fit(&body, self.body)
            )),
        ])
    }
}

fn draw_message(frame: &mut Frame, area: Rect, app: &mut App, theme: Theme) {
    let color = app.color;
    let Some(detail) = app.detail.as_mut() else {
        return;
    };
    let meta = meta_lines(detail, theme);
    let [top, rule, body] = Layout::vertical([
        Constraint::Length(meta.len() as u16),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(meta), top);
    let Some(m) = &detail.message else {
        return;
    };
    // One column of margin on the left, like the lines above.
    let body = Rect {
        x: body.x.saturating_add(1).min(body.right()),
        width: body.width.saturating_sub(1),
        ..body
    };
    if !matches!(&detail.lines, Some((w, _)) if *w == body.width) {
        detail.lines = Some((body.width, body_lines(m, color, body.width)));
    }
    let Some((_, lines)) = &detail.lines else {
        return;
    };
    let height = usize::from(body.height).max(1);
    app.page = height;
    detail.scroll = detail.scroll.min(lines.len().saturating_sub(height));
    let end = (detail.scroll + height).min(lines.len());
    let kind = if m.delivery.raw { "text" } else { "JSON" };
    let title = format!(
        " body ({kind}, {}) · lines {}–{end} of {} ",
        view::bytes(m.delivery.body.len() as u64),
        (detail.scroll + 1).min(end),
        lines.len()
    );
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(title, theme.bold()));
    frame.render_widget(block, rule);
    let shown: Vec<Line> = lines[detail.scroll..end].to_vec();
    frame.render_widget(Paragraph::new(shown), body);
}

/// The body as lines no wider than `width`: JSON pretty-printed and coloured,
/// raw text as it is.
fn body_lines(m: &Peeked, color: bool, width: u16) -> Vec<Line<'static>> {
    let text = String::from_utf8_lossy(&m.delivery.body);
    let lines = match m.delivery.raw {
        false => json::pretty(&text, color, BODY_MAX_LINES),
        true => None,
    }
    .unwrap_or_else(|| json::text_lines(&text, BODY_MAX_LINES));
    wrap(lines, usize::from(width).max(1))
}

/// Splits lines wider than `width` into several, keeping their styles.
fn wrap(lines: Vec<Line<'static>>, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        if line.width() <= width {
            out.push(line);
            continue;
        }
        let mut current: Vec<Span<'static>> = Vec::new();
        let mut used = 0;
        for span in line.spans {
            let mut piece = String::new();
            for c in span.content.chars() {
                let w = c.width().unwrap_or(0);
                if used + w > width {
                    if !piece.is_empty() {
                        current.push(Span::styled(std::mem::take(&mut piece), span.style));
                    }
                    out.push(Line::from(std::mem::take(&mut current)));
                    used = 0;
                }
                piece.push(c);
                used += w;
            }
            if !piece.is_empty() {
                current.push(Span::styled(piece, span.style));
            }
        }
        out.push(Line::from(current));
    }
    out
}

fn meta_lines(detail: &Detail, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let Some(m) = &detail.message else {
        let text = if detail.gone {
            format!(
                " message {} is not in `{}` (any more)",
                detail.id, detail.queue
            )
        } else {
            " reading…".to_owned()
        };
        lines.push(Line::from(text));
        return lines;
    };
    let d = &m.delivery;
    let now = crate::store::now_ms();
    lines.push(Line::from(vec![
        Span::styled(
            format!(" message {} of `{}` · ", d.id, detail.queue),
            theme.bold(),
        ),
        Span::styled(
            m.state.name().to_owned(),
            theme.state(m.state).add_modifier(Modifier::BOLD),
        ),
    ]));
    if detail.gone {
        lines.push(Line::from(Span::styled(
            " gone from the queue since (purged, or removed by retention); shown as last read",
            theme.error(),
        )));
    }
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!(" {name:<11}"), theme.dim()),
            Span::raw(value),
        ])
    };
    lines.push(field("published", when(d.published_at, now)));
    let max = detail
        .info
        .as_ref()
        .map(|i| i.settings.max_attempts)
        .unwrap_or(0);
    let attempts = match max {
        0 => format!("{} (no limit) · priority {}", d.attempt, d.priority),
        max => format!("{} of {max} · priority {}", d.attempt, d.priority),
    };
    lines.push(field("attempts", attempts));
    lines.push(field(
        "key, group",
        format!(
            "{} · {}",
            view::text_line(d.key.as_deref().unwrap_or("-")),
            view::text_line(d.group.as_deref().unwrap_or("-"))
        ),
    ));
    lines.push(field("lease", lease_text(m, now)));
    if let Some(v) = d.schema_version {
        lines.push(field("schema", format!("checked against version {v}")));
    }
    if let Some(reason) = m.dead_reason {
        lines.push(field("died", reason.name().to_owned()));
    }
    if let Some(error) = &m.last_error {
        for (i, line) in error
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .enumerate()
        {
            let name = if i == 0 { "last error" } else { "" };
            lines.push(field(name, view::text_line(line)));
        }
    }
    let headers = headers(d.headers.as_deref());
    if headers.is_empty() {
        lines.push(field("headers", "-".to_owned()));
    }
    for (i, h) in headers.into_iter().enumerate() {
        lines.push(field(if i == 0 { "headers" } else { "" }, h));
    }
    lines
}

/// A time as RFC 3339 plus how long ago (or how soon) it is.
fn when(ms: i64, now: i64) -> String {
    if ms <= now {
        format!("{} ({} ago)", output::time(ms), view::age(now - ms))
    } else {
        format!("{} (in {})", output::time(ms), view::age(ms - now))
    }
}

fn lease_text(m: &Peeked, now: i64) -> String {
    match m.state {
        State::Leased => match m.lease_end {
            Some(t) => format!("held by a consumer until {}", when(t, now)),
            None => "held by a consumer".to_owned(),
        },
        State::Delayed => match m.due_at {
            Some(t) => format!("none; due {}", when(t, now)),
            None => "none; delayed".to_owned(),
        },
        State::Held => format!(
            "none; waits behind an earlier message of group `{}`",
            view::text_line(m.delivery.group.as_deref().unwrap_or(""))
        ),
        State::Ready => "none; deliverable now".to_owned(),
        State::Acked => match m.done_at {
            Some(t) => format!("none; acked {}", when(t, now)),
            None => "none; acked".to_owned(),
        },
        State::Dead => match m.done_at {
            Some(t) => format!("none; died {}", when(t, now)),
            None => "none; dead".to_owned(),
        },
    }
}

/// Headers as `name: value`, at most 6 (then a count of the rest).
fn headers(json: Option<&str>) -> Vec<String> {
    let Some(map) = json
        .and_then(|j| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(j).ok())
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = map
        .iter()
        .take(6)
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => view::text_line(&format!("{k}: {s}")),
            other => view::text_line(&format!("{k}: {other}")),
        })
        .collect();
    if map.len() > 6 {
        out.push(format!("… and {} more", map.len() - 6));
    }
    out
}

/// The keys of the current screen, for the footer.
fn footer_keys(app: &App) -> &'static [(&'static str, &'static str)] {
    if app.prompt.is_some() {
        return &[("y", "confirm"), ("any other key", "cancel")];
    }
    if app.help {
        return &[("any key", "closes this help")];
    }
    match app.screen {
        Screen::Queues => &[
            ("↑↓", "move"),
            ("enter", "open"),
            ("d", "replay dead"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::Messages => &[
            ("tab", "state"),
            ("enter", "open"),
            ("r", "replay"),
            ("l", "release"),
            ("x", "purge"),
            ("d", "dead"),
            ("?", "help"),
            ("esc", "back"),
        ],
        Screen::Message => &[
            ("↑↓", "scroll"),
            ("r", "replay"),
            ("l", "release"),
            ("?", "help"),
            ("esc", "back"),
        ],
    }
}

fn footer_line(app: &App, theme: Theme) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (i, (key, what)) in footer_keys(app).iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(
            key.to_string(),
            theme.bar().add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!(" {what}")));
    }
    Line::from(spans)
}

/// The help overlay's text: (keys, what they do); an empty key column starts
/// a section.
pub const HELP: &[(&str, &str)] = &[
    ("", "Queue list"),
    ("↑ ↓ j k PgUp PgDn g G", "move"),
    ("Enter →", "open the queue's messages"),
    ("d", "replay the queue's dead messages"),
    ("", "Messages of a queue"),
    ("Tab Shift-Tab 1-7", "show another state"),
    ("Enter →", "open the message"),
    ("r", "replay the acked or dead message"),
    ("l", "release the leased message"),
    ("x", "purge the state shown"),
    ("d", "replay the queue's dead messages"),
    ("", "One message"),
    ("↑ ↓ PgUp PgDn g G", "scroll the body"),
    ("r  l", "replay it, release it"),
    ("", "Everywhere"),
    ("Esc q ← Backspace", "back; quit from the queue list"),
    ("? / Ctrl-C", "this help / quit"),
];

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| match *keys {
            "" => Line::from(Span::styled(format!(" {what}"), theme.bold())),
            keys => Line::from(format!("   {} {what}", fit(keys, 22))),
        })
        .collect();
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 64.min(area.width);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(Span::styled(" keys · any key closes ", theme.bold()));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

fn draw_prompt(frame: &mut Frame, area: Rect, question: &str, theme: Theme) {
    let width = 70.min(area.width.saturating_sub(4)).max(20.min(area.width));
    let mut lines: Vec<Line> = words(question, usize::from(width.saturating_sub(4)))
        .into_iter()
        .map(|l| Line::from(format!(" {l}")))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled(" y", theme.bold()),
        Span::raw(" yes    "),
        Span::styled("any other key", theme.bold()),
        Span::raw(" no"),
    ]));
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(Span::styled(" confirm ", theme.bold()));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// `text` wrapped at word boundaries to lines of at most `width` columns.
fn words(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width: width.min(area.width),
        height: height.min(area.height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_80_and_grow_sparklines_first() {
        let c = Columns::for_width(80);
        assert_eq!(c.name + FIXED_W + 2 * (RATE_W + c.spark), 80);
        assert!(c.spark >= 6 && c.name >= NAME_MIN, "{c:?}");
        let wide = Columns::for_width(200);
        assert_eq!(wide.spark, 60);
        assert_eq!(Columns::for_width(10).spark, 3);
        assert_eq!(queue_header(c).width(), 80);
    }

    #[test]
    fn counts_fit_five_characters() {
        for (n, text) in [
            (0, "0"),
            (99_999, "99999"),
            (123_456, "123k"),
            (1_234_567, "1.2M"),
            (123_456_789, "123M"),
            (2_500_000_000, "2.5G"),
        ] {
            assert_eq!(count(n), text);
        }
    }

    #[test]
    fn sparklines_scale_to_the_busiest_minute() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 5), "▁▂▃▅█");
        assert_eq!(sparkline(&[0, 0], 4), "▁▁▁▁");
        assert_eq!(sparkline(&[9, 9, 3, 9], 2), "▄█");
    }

    #[test]
    fn text_fits_its_column() {
        assert_eq!(fit("orders", 8), "orders  ");
        assert_eq!(fit("a-very-long-name", 8), "a-very-…");
        assert_eq!(right("42", 5), "   42");
        assert_eq!(cut_left("/home/me/spool.db", 10), "…/spool.db");
        assert_eq!(words("one two three four", 9), ["one two", "three", "four"]);
    }

    #[test]
    fn footers_fit_80_columns() {
        let mut app = App::new(false, "db".into());
        for screen in [Screen::Queues, Screen::Messages, Screen::Message] {
            app.screen = screen;
            let line = footer_line(&app, Theme { color: false });
            assert!(line.width() <= 80, "{screen:?}: {}", line.width());
        }
    }
}
