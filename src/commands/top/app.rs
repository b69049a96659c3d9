//! The state of `spool top` and its key handling, apart from the terminal:
//! tests drive an [`App`] with keys, refresh it from a database and render it
//! to a test backend.
//!
//! Reading goes through the store's read-only queries ([`App::refresh`]);
//! changing goes through an [`Action`], which the event loop runs after the
//! user confirmed it, on a writing store opened only for that action.

use std::collections::HashMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::text::Line;
use ratatui::widgets::ListState;

use crate::Context;
use crate::commands::peek::StateArg;
use crate::commands::queue;
use crate::store::{
    self, Counts, Db, PeekQuery, Peeked, QueueInfo, RateHistory, ReplayFilter, ScheduleInfo, State,
};

/// The screens, from the outermost in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Every queue and topic with counts and rates.
    Queues,
    /// The messages of one queue, as `peek` lists them.
    Messages,
    /// One message in full.
    Message,
}

/// The state tabs of the message list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Ready, delayed and leased: what `peek` shows by default.
    Pending,
    /// Only ready messages.
    Ready,
    /// Only delayed messages (including those held behind their group).
    Delayed,
    /// Only leased messages.
    Leased,
    /// Only acked messages.
    Acked,
    /// Only dead messages.
    Dead,
    /// Every state.
    All,
}

impl Filter {
    /// The tabs in order; keys `1` to `7` pick them.
    pub const TABS: [Filter; 7] = [
        Filter::Pending,
        Filter::Ready,
        Filter::Delayed,
        Filter::Leased,
        Filter::Acked,
        Filter::Dead,
        Filter::All,
    ];

    /// The tab's name.
    pub fn label(self) -> &'static str {
        match self {
            Filter::Pending => "pending",
            Filter::Ready => "ready",
            Filter::Delayed => "delayed",
            Filter::Leased => "leased",
            Filter::Acked => "acked",
            Filter::Dead => "dead",
            Filter::All => "all",
        }
    }

    /// How many messages of a queue with these counts the tab holds.
    pub fn count(self, c: &Counts) -> i64 {
        match self {
            Filter::Pending => c.ready + c.delayed + c.leased,
            Filter::Ready => c.ready,
            Filter::Delayed => c.delayed,
            Filter::Leased => c.leased,
            Filter::Acked => c.acked,
            Filter::Dead => c.dead,
            Filter::All => c.ready + c.delayed + c.leased + c.acked + c.dead,
        }
    }

    /// The state this tab shows, when it shows just one (for purge).
    fn single(self) -> Option<StateArg> {
        match self {
            Filter::Ready => Some(StateArg::Ready),
            Filter::Delayed => Some(StateArg::Delayed),
            Filter::Leased => Some(StateArg::Leased),
            Filter::Acked => Some(StateArg::Acked),
            Filter::Dead => Some(StateArg::Dead),
            Filter::Pending | Filter::All => None,
        }
    }

    fn query(self, limit: usize) -> PeekQuery {
        let pending = self == Filter::Pending;
        let all = self == Filter::All;
        PeekQuery {
            ready: pending || all || self == Filter::Ready,
            delayed: pending || all || self == Filter::Delayed,
            leased: pending || all || self == Filter::Leased,
            acked: all || self == Filter::Acked,
            dead: all || self == Filter::Dead,
            limit,
        }
    }
}

/// A change to the database, run after the user confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every dead message of the queue back to ready (`replay QUEUE --dead`).
    ReplayDead {
        /// The queue.
        queue: String,
    },
    /// One acked or dead message back to ready (`replay QUEUE --id ID`).
    ReplayOne {
        /// The queue.
        queue: String,
        /// The message id.
        id: i64,
    },
    /// Delete every message in one state (`queue purge QUEUE --state STATE`).
    Purge {
        /// The queue.
        queue: String,
        /// The state to purge.
        state: StateArg,
    },
    /// A leased message back to ready without counting the attempt.
    Release {
        /// The queue.
        queue: String,
        /// The message id.
        id: i64,
    },
}

impl Action {
    /// The queue the action changes.
    pub fn queue(&self) -> &str {
        match self {
            Action::ReplayDead { queue }
            | Action::ReplayOne { queue, .. }
            | Action::Purge { queue, .. }
            | Action::Release { queue, .. } => queue,
        }
    }

    /// Runs the action through the same store calls as the equivalent
    /// command, on a writing store opened for it and closed after; returns
    /// what happened, for the status line.
    pub fn run(&self, ctx: &Context) -> anyhow::Result<String> {
        let mut store = queue::existing_store(ctx, self.queue())?;
        Ok(match self {
            Action::ReplayDead { queue } => {
                let filter = ReplayFilter {
                    dead: true,
                    ..ReplayFilter::default()
                };
                let done = store.replay(queue, &filter, None)?;
                format!("replayed {} dead message(s) of `{queue}`", done.ids.len())
            }
            Action::ReplayOne { queue, id } => {
                let filter = ReplayFilter {
                    acked: true,
                    dead: true,
                    ids: vec![*id],
                    ..ReplayFilter::default()
                };
                if store.replay(queue, &filter, None)?.ids.is_empty() {
                    format!("message {id} is neither acked nor dead any more: nothing replayed")
                } else {
                    format!("replayed message {id} of `{queue}`: ready again")
                }
            }
            Action::Purge { queue, state } => {
                let removed = store.purge(queue, &queue::purge_states(&[*state]))?;
                format!(
                    "purged {removed} {} message(s) of `{queue}`",
                    state_name(*state)
                )
            }
            Action::Release { queue, id } => {
                if store.release_lease(queue, *id)? {
                    format!("released message {id} of `{queue}`: ready again, attempt not counted")
                } else {
                    format!("message {id} is not leased any more: nothing changed")
                }
            }
        })
    }
}

fn state_name(state: StateArg) -> &'static str {
    match state {
        StateArg::Ready => "ready",
        StateArg::Delayed => "delayed",
        StateArg::Leased => "leased",
        StateArg::Acked => "acked",
        StateArg::Dead => "dead",
        StateArg::All => "all",
    }
}

/// A question waiting for `y`.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// What will happen, for people.
    pub question: String,
    /// What runs on `y`.
    pub action: Action,
}

/// A one-line message under the main view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// True for a failure.
    pub error: bool,
}

/// What the event loop does after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Only redraw.
    Redraw,
    /// Read the database again now (the view changed).
    Refresh,
    /// Run this confirmed action, then refresh.
    Run(Action),
    /// Leave `top`.
    Quit,
}

/// The message list of one queue.
#[derive(Debug)]
pub struct MessageList {
    /// The queue.
    pub queue: String,
    /// Its counts and settings, as of the last refresh.
    pub info: Option<QueueInfo>,
    /// The state tab shown.
    pub filter: Filter,
    /// The first `limit` messages of the tab, in delivery order.
    pub rows: Vec<Peeked>,
    /// How many rows to read: grows as the user scrolls down.
    pub limit: usize,
    /// Selection and scroll position.
    pub state: ListState,
}

/// One message in full.
#[derive(Debug)]
pub struct Detail {
    /// The queue.
    pub queue: String,
    /// The message id.
    pub id: i64,
    /// The queue's counts and settings.
    pub info: Option<QueueInfo>,
    /// The message, or `None` once it is gone (purged, retention).
    pub message: Option<Peeked>,
    /// True after a refresh found the message gone.
    pub gone: bool,
    /// First body line shown.
    pub scroll: usize,
    /// The body's lines as last drawn, and the width they were wrapped to
    /// (a message's body never changes, so they are made once per width).
    pub lines: Option<(u16, Vec<Line<'static>>)>,
}

/// Whether there is a database to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// Not read yet.
    Unknown,
    /// The file does not exist (yet): shown as empty, polled for.
    Missing,
    /// Open.
    Open,
}

/// Rows read per step of the message list, beyond what fits on screen.
const MESSAGE_STEP: usize = 50;

/// Everything `top` shows.
#[derive(Debug)]
pub struct App {
    /// Colours allowed (`--color`, `NO_COLOR`, terminal).
    pub color: bool,
    /// The database path, for the header.
    pub db_path: String,
    /// The screen shown.
    pub screen: Screen,
    /// Whether the database exists.
    pub database: Database,
    /// Every queue and topic, by name.
    pub queues: Vec<QueueInfo>,
    /// Per-minute rates by queue name.
    pub rates: HashMap<String, RateHistory>,
    /// Every schedule, by name (shown under the queue list).
    pub schedules: Vec<ScheduleInfo>,
    /// Selection and scroll position of the queue list.
    pub queue_state: ListState,
    /// The message list, on the Messages and Message screens.
    pub list: Option<MessageList>,
    /// The message shown on the Message screen.
    pub detail: Option<Detail>,
    /// A confirmation prompt, when one is open.
    pub prompt: Option<Prompt>,
    /// The help overlay is open.
    pub help: bool,
    /// The last outcome or error.
    pub status: Option<Status>,
    /// Minutes of rates the sparklines show (set from the terminal width).
    pub spark_minutes: usize,
    /// Rows of the list or body on screen (set when drawing), for paging.
    pub page: usize,
}

/// A key press without modifiers, for tests and scripts.
pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

enum Move {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
}

fn movement(code: KeyCode) -> Option<Move> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => Move::Up,
        KeyCode::Down | KeyCode::Char('j') => Move::Down,
        KeyCode::PageUp => Move::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Move::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Move::Home,
        KeyCode::End | KeyCode::Char('G') => Move::End,
        _ => return None,
    })
}

/// The position after a move in a list of `len` items.
fn moved(pos: usize, len: usize, m: &Move, page: usize) -> usize {
    let last = len.saturating_sub(1);
    let page = page.max(1);
    match m {
        Move::Up => pos.saturating_sub(1),
        Move::Down => (pos + 1).min(last),
        Move::PageUp => pos.saturating_sub(page),
        Move::PageDown => (pos + page).min(last),
        Move::Home => 0,
        Move::End => last,
    }
}

fn is_back(code: KeyCode) -> bool {
    matches!(
        code,
        KeyCode::Esc | KeyCode::Char('q') | KeyCode::Left | KeyCode::Backspace
    )
}

impl App {
    /// A new `top` on the queue list, with nothing read yet.
    pub fn new(color: bool, db_path: String) -> App {
        App {
            color,
            db_path,
            screen: Screen::Queues,
            database: Database::Unknown,
            queues: Vec::new(),
            rates: HashMap::new(),
            schedules: Vec::new(),
            queue_state: ListState::default(),
            list: None,
            detail: None,
            prompt: None,
            help: false,
            status: None,
            spark_minutes: 8,
            page: 10,
        }
    }

    /// The queue or topic selected in the queue list.
    pub fn selected_queue(&self) -> Option<&QueueInfo> {
        self.queues.get(self.queue_state.selected()?)
    }

    /// The message selected in the message list.
    pub fn selected_message(&self) -> Option<&Peeked> {
        let list = self.list.as_ref()?;
        list.rows.get(list.state.selected()?)
    }

    /// Handles one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        if key.kind == KeyEventKind::Release {
            return Outcome::Redraw;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Outcome::Quit;
        }
        if let Some(prompt) = self.prompt.take() {
            if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                self.status = Some(info("working…"));
                return Outcome::Run(prompt.action);
            }
            self.status = Some(info("cancelled: nothing changed"));
            return Outcome::Redraw;
        }
        if self.help {
            self.help = false;
            return Outcome::Redraw;
        }
        self.status = None;
        if key.code == KeyCode::Char('?') {
            self.help = true;
            return Outcome::Redraw;
        }
        match self.screen {
            Screen::Queues => self.queues_key(key.code),
            Screen::Messages => self.messages_key(key.code),
            Screen::Message => self.message_key(key.code),
        }
    }

    /// Takes the outcome of an action: its message goes to the status line.
    pub fn finish(&mut self, result: anyhow::Result<String>) {
        self.status = Some(match result {
            Ok(text) => info(&text),
            Err(err) => Status {
                text: format!("error: {err:#}"),
                error: true,
            },
        });
    }

    fn queues_key(&mut self, code: KeyCode) -> Outcome {
        if let Some(m) = movement(code) {
            let pos = self.queue_state.selected().unwrap_or(0);
            let to = moved(pos, self.queues.len(), &m, self.page);
            self.queue_state.select(Some(to));
            return Outcome::Redraw;
        }
        let Some(q) = self.selected_queue() else {
            return if is_back(code) {
                Outcome::Quit
            } else {
                Outcome::Redraw
            };
        };
        let (name, is_topic, dead) = (q.name.clone(), q.is_topic, q.counts.dead);
        match code {
            KeyCode::Enter | KeyCode::Right if is_topic => {
                self.status = Some(info(&format!(
                    "`{name}` is a topic: it holds no messages itself. Open one of its queues"
                )));
                Outcome::Redraw
            }
            KeyCode::Enter | KeyCode::Right => {
                self.open_queue(name);
                Outcome::Refresh
            }
            KeyCode::Char('d') => self.ask_replay_dead(&name, is_topic, dead),
            c if is_back(c) => Outcome::Quit,
            _ => Outcome::Redraw,
        }
    }

    /// Shows the messages of `queue`, pending ones first.
    pub fn open_queue(&mut self, queue: String) {
        self.list = Some(MessageList {
            queue,
            info: None,
            filter: Filter::Pending,
            rows: Vec::new(),
            limit: self.page + MESSAGE_STEP,
            state: ListState::default().with_selected(Some(0)),
        });
        self.screen = Screen::Messages;
    }

    fn messages_key(&mut self, code: KeyCode) -> Outcome {
        let page = self.page;
        let Some(list) = self.list.as_mut() else {
            self.screen = Screen::Queues;
            return Outcome::Refresh;
        };
        if let Some(m) = movement(code) {
            let pos = list.state.selected().unwrap_or(0);
            let to = moved(pos, list.rows.len(), &m, page);
            list.state.select(Some(to));
            // Near the end of what was read while more exist: read further.
            if list.rows.len() >= list.limit && to + page >= list.rows.len() {
                list.limit += page + MESSAGE_STEP;
                return Outcome::Refresh;
            }
            return Outcome::Redraw;
        }
        let tab = Filter::TABS
            .iter()
            .position(|f| *f == list.filter)
            .unwrap_or(0);
        let n = Filter::TABS.len();
        let new_tab = match code {
            KeyCode::Tab => Some((tab + 1) % n),
            KeyCode::BackTab => Some((tab + n - 1) % n),
            KeyCode::Char(c @ '1'..='7') => Some(c as usize - '1' as usize),
            _ => None,
        };
        if let Some(t) = new_tab {
            list.filter = Filter::TABS[t];
            list.rows.clear();
            list.limit = page + MESSAGE_STEP;
            list.state.select(Some(0));
            return Outcome::Refresh;
        }
        let queue = list.queue.clone();
        let filter = list.filter;
        let dead = list.info.as_ref().map_or(0, |i| i.counts.dead);
        let count = list.info.as_ref().map_or(0, |i| filter.count(&i.counts));
        match code {
            KeyCode::Enter | KeyCode::Right => {
                let Some(id) = self.selected_message().map(|m| m.delivery.id) else {
                    return Outcome::Redraw;
                };
                self.open_message(queue, id);
                Outcome::Refresh
            }
            KeyCode::Char('d') => self.ask_replay_dead(&queue, false, dead),
            KeyCode::Char('r') => match self.selected_message().cloned() {
                Some(m) => self.ask_replay_one(&queue, &m),
                None => Outcome::Redraw,
            },
            KeyCode::Char('l') => match self.selected_message().cloned() {
                Some(m) => self.ask_release(&queue, &m),
                None => Outcome::Redraw,
            },
            KeyCode::Char('x') => self.ask_purge(&queue, filter, count),
            c if is_back(c) => {
                self.list = None;
                self.screen = Screen::Queues;
                Outcome::Refresh
            }
            _ => Outcome::Redraw,
        }
    }

    /// Shows message `id` of `queue` in full.
    pub fn open_message(&mut self, queue: String, id: i64) {
        self.detail = Some(Detail {
            queue,
            id,
            info: None,
            message: None,
            gone: false,
            scroll: 0,
            lines: None,
        });
        self.screen = Screen::Message;
    }

    fn message_key(&mut self, code: KeyCode) -> Outcome {
        let page = self.page;
        let Some(detail) = self.detail.as_mut() else {
            self.screen = Screen::Messages;
            return Outcome::Refresh;
        };
        if let Some(m) = movement(code) {
            // The upper bound is set when drawing, which knows the body's height.
            detail.scroll = moved(detail.scroll, usize::MAX, &m, page);
            return Outcome::Redraw;
        }
        let queue = detail.queue.clone();
        let message = detail.message.clone();
        match (code, message) {
            (KeyCode::Char('r'), Some(m)) => self.ask_replay_one(&queue, &m),
            (KeyCode::Char('l'), Some(m)) => self.ask_release(&queue, &m),
            (c, _) if is_back(c) => {
                self.detail = None;
                self.screen = Screen::Messages;
                Outcome::Refresh
            }
            _ => Outcome::Redraw,
        }
    }

    fn ask(&mut self, question: String, action: Action) -> Outcome {
        self.prompt = Some(Prompt { question, action });
        Outcome::Redraw
    }

    fn tell(&mut self, text: String) -> Outcome {
        self.status = Some(info(&text));
        Outcome::Redraw
    }

    fn ask_replay_dead(&mut self, queue: &str, is_topic: bool, dead: i64) -> Outcome {
        if is_topic {
            return self.tell(format!(
                "`{queue}` is a topic: its queues hold its messages"
            ));
        }
        if dead == 0 {
            return self.tell(format!("`{queue}` has no dead messages"));
        }
        self.ask(
            format!(
                "Replay the {dead} dead message(s) of `{queue}`? They become ready again with their attempts reset, as `spool replay {queue} --dead`."
            ),
            Action::ReplayDead {
                queue: queue.to_owned(),
            },
        )
    }

    fn ask_replay_one(&mut self, queue: &str, m: &Peeked) -> Outcome {
        let id = m.delivery.id;
        let state = m.state.name();
        if !matches!(m.state, State::Acked | State::Dead) {
            return self.tell(format!(
                "message {id} is {state}: only acked or dead messages can be replayed"
            ));
        }
        self.ask(
            format!(
                "Replay message {id} ({state}) of `{queue}`? It becomes ready again with its attempts reset, as `spool replay {queue} --{state} --id {id}`."
            ),
            Action::ReplayOne {
                queue: queue.to_owned(),
                id,
            },
        )
    }

    fn ask_release(&mut self, queue: &str, m: &Peeked) -> Outcome {
        let id = m.delivery.id;
        if m.state != State::Leased {
            return self.tell(format!(
                "message {id} is {}: only a leased message can be released",
                m.state.name()
            ));
        }
        self.ask(
            format!(
                "Release the lease on message {id} of `{queue}`? It becomes ready at once and this delivery does not count as an attempt; the consumer holding it can no longer ack it."
            ),
            Action::Release {
                queue: queue.to_owned(),
                id,
            },
        )
    }

    fn ask_purge(&mut self, queue: &str, filter: Filter, count: i64) -> Outcome {
        let Some(state) = filter.single() else {
            return self.tell(
                "purge works on one state: pick the ready, delayed, leased, acked or dead tab first"
                    .to_owned(),
            );
        };
        let name = filter.label();
        if count == 0 {
            return self.tell(format!("`{queue}` has no {name} messages"));
        }
        let warning = if state == StateArg::Leased {
            " Their consumers' acks will fail."
        } else {
            ""
        };
        self.ask(
            format!(
                "Purge the {count} {name} message(s) of `{queue}`? They are deleted for good, as `spool queue purge {queue} --state {name}`.{warning}"
            ),
            Action::Purge {
                queue: queue.to_owned(),
                state,
            },
        )
    }

    /// Reads what the current screen shows, each query a short read
    /// transaction. `None`: the database does not exist (yet); the view shows
    /// it empty. A queue or message that disappeared takes the view back out.
    pub fn refresh(&mut self, store: Option<&Db>) {
        let Some(store) = store else {
            self.database = Database::Missing;
            self.queues.clear();
            self.rates.clear();
            self.schedules.clear();
            if self.screen != Screen::Queues {
                self.back_to_queues("the database is gone".to_owned());
            }
            return;
        };
        self.database = Database::Open;
        let result = match self.screen {
            Screen::Queues => self.load_queues(store),
            Screen::Messages => self.load_messages(store),
            Screen::Message => self.load_detail(store),
        };
        if let Err(err) = result {
            self.read_failed(err);
        }
    }

    fn read_failed(&mut self, err: store::Error) {
        match err {
            store::Error::UnknownQueue { name, .. } if self.screen != Screen::Queues => {
                self.back_to_queues(format!("queue `{name}` no longer exists"));
            }
            other => {
                self.status = Some(Status {
                    text: format!("error: {other}"),
                    error: true,
                });
            }
        }
    }

    fn back_to_queues(&mut self, why: String) {
        self.list = None;
        self.detail = None;
        self.screen = Screen::Queues;
        self.status = Some(info(&why));
    }

    fn load_queues(&mut self, store: &Db) -> store::Result<()> {
        let selected = self.selected_queue().map(|q| q.name.clone());
        self.queues = store.queue_infos()?;
        self.rates = store.rate_histories(self.spark_minutes)?;
        self.schedules = store.schedule_infos()?;
        let pos = selected
            .and_then(|name| self.queues.iter().position(|q| q.name == name))
            .or(self.queue_state.selected())
            .unwrap_or(0);
        let last = self.queues.len().saturating_sub(1);
        self.queue_state.select(Some(pos.min(last)));
        Ok(())
    }

    fn load_messages(&mut self, store: &Db) -> store::Result<()> {
        let Some(list) = self.list.as_mut() else {
            return Ok(());
        };
        let names = [list.queue.clone()];
        list.info = store.queue_infos_named(&names)?.pop();
        let selected = list
            .state
            .selected()
            .and_then(|i| list.rows.get(i))
            .map(|m| m.delivery.id);
        list.rows = store.peek(&list.queue, &list.filter.query(list.limit))?;
        let pos = selected
            .and_then(|id| list.rows.iter().position(|m| m.delivery.id == id))
            .or(list.state.selected())
            .unwrap_or(0);
        list.state
            .select(Some(pos.min(list.rows.len().saturating_sub(1))));
        Ok(())
    }

    fn load_detail(&mut self, store: &Db) -> store::Result<()> {
        let Some(detail) = self.detail.as_mut() else {
            return Ok(());
        };
        let names = [detail.queue.clone()];
        detail.info = store.queue_infos_named(&names)?.pop();
        match store.peek_id(&detail.queue, detail.id)? {
            Some(m) => {
                detail.message = Some(m);
                detail.gone = false;
            }
            None => detail.gone = true,
        }
        Ok(())
    }
}

fn info(text: &str) -> Status {
    Status {
        text: text.to_owned(),
        error: false,
    }
}
