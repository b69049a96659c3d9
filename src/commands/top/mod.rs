//! `spool top`: an interactive terminal view of queues and topics.
//!
//! [`app`] holds the state and the key handling, [`ui`] draws it; this module
//! owns the terminal and the event loop, so both can be tested without one.
//!
//! # Reading
//!
//! `top` reads through the store's read-only connection, with the same
//! queries as `stats` and `peek` (plus [`crate::store::Store::rate_histories`] for the
//! sparklines), each its own short read transaction. The connection stays
//! open between refreshes but holds no transaction, so it never blocks a
//! writer nor holds back a checkpoint. A missing database shows as empty and
//! is looked for again at every refresh.
//!
//! # Changing
//!
//! Each action (replay, purge, release) asks for confirmation, then opens a
//! writing store for just that action, calls the same store function as the
//! equivalent command, and closes it.
//!
//! # Performance
//!
//! The loop sleeps in `poll` until a key arrives or the next refresh (every
//! `--interval`, default 1s) is due, and draws only after one of those;
//! ratatui then writes just the cells that changed.

pub mod app;
mod json;
pub mod ui;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};

use crate::Context;
use crate::error::{Exit, Failure};
use crate::parse;
use crate::store::Db;
use app::{App, Outcome};

const EXAMPLES: &str = "\
Examples:
  spool top                      # every queue and topic, refreshed every second
  spool top --interval 5s
  spool --db /var/lib/app/spool.db top

Keys: arrows or j/k move, Enter opens, Esc or q goes back, ? shows every key.";

/// Watch queues and topics live, look into messages, and fix what is stuck.
///
/// A live list of queues and topics with their counts, the age of the oldest
/// ready message, and publish and ack rates with a sparkline of the last
/// minutes; under it the schedules, with their next and last occurrence. Enter opens a queue's messages (as `peek` lists them, by state),
/// Enter again one message with its body, headers, attempts and lease. Dead
/// messages can be replayed, a state purged and a stuck lease released, each
/// after a confirmation. Reads never block writers. Needs a terminal: for
/// scripts, use `spool stats` and `spool peek`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Time between refreshes
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse::positive_duration)]
    pub interval: Duration,
}

/// Runs `spool top`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    if ctx.out.json {
        return Err(Failure::usage(
            "`spool top` is interactive and has no JSON output. Use `spool stats --json` or `spool peek QUEUE --json`",
        )
        .into());
    }
    if !std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "`spool top` is interactive and needs a terminal, but stdout is not one. Use `spool stats` (or `spool stats --watch`) for counts and `spool peek QUEUE` for messages",
        )
        .into());
    }
    // A file that is not a spool database fails here, before the screen is taken.
    let first = ctx.read_store()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let shown = crate::commands::shown_db(ctx)?;
    let mut app = App::new(ctx.out.color, shown.display().to_string());
    let mut reader = Reader { ctx, store: first };
    watch_for_a_lost_terminal(Arc::clone(&stop));
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, &mut app, &mut reader, args.interval, &stop);
    ratatui::try_restore().context("cannot restore the terminal")?;
    result.map(|()| Exit::Ok)
}

/// The read-only connection, opened when the database appears.
struct Reader<'a> {
    ctx: &'a Context,
    store: Option<Db>,
}

impl Reader<'_> {
    fn refresh(&mut self, app: &mut App) {
        // A file removed under an open connection would still be readable: look.
        if self
            .store
            .as_ref()
            .and_then(|s| s.file())
            .is_some_and(|path| !path.exists())
        {
            self.store = None;
        }
        if self.store.is_none() {
            match self.ctx.read_store() {
                Ok(store) => self.store = store,
                Err(err) => {
                    app.finish(Err(err));
                    return;
                }
            }
        }
        app.refresh(self.store.as_ref());
    }
}

/// How often the loop wakes to notice SIGTERM/SIGHUP between refreshes.
const SIGNAL_CHECK: Duration = Duration::from_millis(250);

fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    reader: &mut Reader<'_>,
    every: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut next = Instant::now();
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            app.spark_minutes = ui::Columns::for_width(terminal.size()?.width).spark;
            reader.refresh(app);
            next = Instant::now() + every;
            dirty = true;
        }
        if dirty {
            terminal.draw(|f| ui::draw(f, app))?;
            dirty = false;
        }
        let timeout = next
            .saturating_duration_since(Instant::now())
            .min(SIGNAL_CHECK);
        if !event::poll(timeout)? {
            continue;
        }
        dirty = true;
        match event::read()? {
            Event::Key(key) => match app.on_key(key) {
                Outcome::Quit => return Ok(()),
                Outcome::Redraw => {}
                Outcome::Refresh => next = Instant::now(),
                Outcome::Run(action) => {
                    terminal.draw(|f| ui::draw(f, app))?;
                    app.finish(action.run(reader.ctx));
                    next = Instant::now();
                }
            },
            Event::Resize(..) => next = Instant::now(),
            _ => {}
        }
    }
    Ok(())
}

/// Ends the process when the terminal goes away or a stop signal is not
/// obeyed within a second. A terminal that hangs up (its window closed, tmux
/// or ssh gone) reads as end-of-file forever, and crossterm's event loop
/// spins on that inside `poll`/`read` without returning to the main loop, so
/// the main loop cannot be relied on to notice. `top` only reads, and its
/// actions are single transactions, so ending it at any point loses nothing.
fn watch_for_a_lost_terminal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut stopping_since: Option<Instant> = None;
        loop {
            std::thread::sleep(Duration::from_millis(250));
            if stop.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() < Duration::from_secs(1) {
                    continue;
                }
            } else if !terminal_hung_up() {
                continue;
            }
            // The terminal is gone: there is nobody to restore it for.
            std::process::exit(0);
        }
    });
}

/// True when standard input, the terminal `top` reads keys from, has hung
/// up or failed: nothing will ever be typed there again.
fn terminal_hung_up() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&now)) {
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        Err(_) => true,
    }
}
