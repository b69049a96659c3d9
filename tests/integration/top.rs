//! `spool top`: rendering tests on a test backend (the app driven by keys,
//! on a database built with the CLI), and one end-to-end run in tmux.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;
use spool::commands::top::app::{App, Outcome, Screen, key};
use spool::commands::top::ui;

use crate::common::*;
use crate::schedule_views::{add_schedule, pause_schedule};

/// `top` on a test backend: the app, a terminal, and the context actions run in.
struct Top {
    app: App,
    ctx: spool::Context,
    terminal: Terminal<TestBackend>,
}

impl Top {
    fn new(env: &Env, color: bool) -> Top {
        Top::sized(env, color, 80, 24)
    }

    fn sized(env: &Env, color: bool, width: u16, height: u16) -> Top {
        let db = env.db.to_str().unwrap();
        let cli = spool::Cli::try_parse_from(["spool", "--db", db, "top"]).unwrap();
        let out = spool::output::Output::new(false, false, spool::output::ColorChoice::Never);
        let ctx = spool::Context {
            global: cli.global,
            out,
        };
        let mut top = Top {
            app: App::new(color, db.to_owned()),
            ctx,
            terminal: Terminal::new(TestBackend::new(width, height)).unwrap(),
        };
        top.app.spark_minutes = ui::Columns::for_width(width).spark;
        top.refresh();
        top
    }

    /// Reads the database as the event loop does every second.
    fn refresh(&mut self) {
        let store = self.ctx.read_store().unwrap();
        self.app.refresh(store.as_ref());
    }

    /// Draws and returns the screen, one string per row.
    fn screen(&mut self) -> Vec<String> {
        self.terminal.draw(|f| ui::draw(f, &mut self.app)).unwrap();
        let buf = self.terminal.backend().buffer();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn text(&mut self) -> String {
        self.screen().join("\n")
    }

    /// Presses a key and does what the event loop would: refresh, or run a
    /// confirmed action and then refresh. Draws first, as the loop does.
    fn press(&mut self, code: KeyCode) -> Outcome {
        self.screen();
        let outcome = self.app.on_key(key(code));
        match &outcome {
            Outcome::Refresh => self.refresh(),
            Outcome::Run(action) => {
                let result = action.run(&self.ctx);
                self.app.finish(result);
                self.refresh();
            }
            Outcome::Redraw | Outcome::Quit => {}
        }
        outcome
    }

    fn type_keys(&mut self, keys: &str) {
        for c in keys.chars() {
            self.press(KeyCode::Char(c));
        }
    }

    /// Selects the queue named `name` in the queue list.
    fn select(&mut self, name: &str) {
        let pos = self
            .app
            .queues
            .iter()
            .position(|q| q.name == name)
            .unwrap_or_else(|| panic!("no queue {name}"));
        self.press(KeyCode::Home);
        for _ in 0..pos {
            self.press(KeyCode::Down);
        }
        assert_eq!(self.app.selected_queue().unwrap().name, name);
    }

    fn open(&mut self, name: &str) {
        self.select(name);
        self.press(KeyCode::Enter);
        assert_eq!(self.app.screen, Screen::Messages);
    }
}

/// The row of the screen that starts with `name`, split at spaces.
fn row<'a>(screen: &'a [String], name: &str) -> Vec<&'a str> {
    screen
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{}", screen.join("\n")))
        .split_whitespace()
        .collect()
}

/// `orders` (max 1 attempt): 3 ready (8–10), 5 delayed (11–15), 1 leased
/// (7), 4 acked (3–6), 2 dead (1, 2): all counts differ, so a column mixed up
/// shows. Plus `alpha` with one message, and a topic `events` → `audit`,
/// `billing`.
fn build(env: &Env) {
    env.run(&["queue", "create", "orders", "--max-attempts", "1"])
        .success();
    for i in 1..=10 {
        env.publish(
            "orders",
            &format!(r#"{{"order":{i},"customer":"ada","items":[{{"sku":"A-1","qty":2}}]}}"#),
        );
    }
    for m in env.consume("orders", &["-n", "2"]) {
        env.run(&["nack", receipt(&m)]).success();
    }
    env.consume("orders", &["-n", "4", "--ack"]);
    env.consume("orders", &["--visibility", "1h"]);
    let later = "{\"later\":true}\n".repeat(5);
    env.run_with_input(&["publish", "orders", "--delay", "1h"], later)
        .success();
    env.publish("alpha", "1");
    env.run(&["subscribe", "events", "audit"]).success();
    env.run(&["subscribe", "events", "billing"]).success();
}

/// Every delivery (id, queue, state, attempts, has a lease token, is done)
/// and every queue's counters: what two databases must agree on.
type Snapshot = (
    Vec<Vec<serde_json::Value>>,
    std::collections::BTreeMap<String, [i64; 7]>,
    Vec<Vec<serde_json::Value>>,
);

fn snapshot(env: &Env) -> Snapshot {
    let deliveries = env.rows(
        "SELECT msg_id, queue_id, state, attempts, lease IS NULL, done_at IS NULL
         FROM deliveries ORDER BY msg_id, queue_id",
        &[],
    );
    let messages = env.rows("SELECT id FROM messages ORDER BY id", &[]);
    (deliveries, env.counters(), messages)
}

fn dead_count(env: &Env) -> i64 {
    let run = env.run(&["stats", "orders"]);
    let stats: serde_json::Value = serde_json::from_str(run.success().stdout.trim()).unwrap();
    stats["queues"][0]["dead"].as_i64().unwrap()
}

#[test]
fn the_queue_list_shows_counts_rates_and_topics() {
    let env = Env::new();
    build(&env);
    let mut top = Top::new(&env, false);
    let screen = top.screen();
    let header = row(&screen, "QUEUE");
    assert_eq!(
        header[..8],
        [
            "QUEUE", "READY", "DELAY", "LEASE", "ACKED", "DEAD", "OLDEST", "PUB/m"
        ]
    );
    // name, ready, delayed, leased, acked, dead, oldest, pub/min, spark, ack/min, spark
    let orders = row(&screen, "orders");
    assert_eq!(orders[1..6], ["3", "5", "1", "4", "2"], "{orders:?}");
    assert_eq!(orders[7], "15", "published in the last minute: {orders:?}");
    assert_eq!(orders[9], "4", "acked in the last minute: {orders:?}");
    assert!(
        orders[8].ends_with('█'),
        "this minute is the busiest: {orders:?}"
    );
    assert_eq!(row(&screen, "alpha")[1..6], ["1", "0", "0", "0", "0"]);
    let topic = screen.iter().find(|l| l.starts_with("events")).unwrap();
    assert!(topic.contains("topic → audit, billing"), "{topic}");
    // Every row fits 80 columns, and the footer shows the keys in full.
    let footer = screen.last().unwrap();
    assert!(
        footer.contains("enter open") && footer.contains("? help") && footer.contains("q quit")
    );
    // The selected queue's settings below the list.
    top.select("orders");
    let text = top.text();
    assert!(text.contains("max attempts 1"), "{text}");
}

#[test]
fn the_message_view_shows_the_body_pretty_printed_with_its_metadata() {
    let env = Env::new();
    let id = env
        .run(&[
            "publish",
            "pay",
            r#"{"customer":"ada","items":[{"sku":"A-1","qty":2}],"total":12.50}"#,
            "--header",
            "trace=abc-123",
            "--key",
            "order-7",
            "--priority",
            "3",
        ])
        .stdout
        .trim()
        .to_owned();
    let mut top = Top::new(&env, true);
    top.open("pay");
    let list = top.screen();
    let header = list.iter().position(|l| l.contains("STATE")).unwrap();
    // Each heading ends where its column's values end.
    for (heading, value) in [("ATT", "0"), ("KEY", "order-7")] {
        let end = |line: &str, text: &str| line.find(text).map(|i| i + text.len());
        let at = |line: &str, text: &str| line.find(text);
        if heading == "KEY" {
            assert_eq!(at(&list[header], heading), at(&list[header + 1], value));
        } else {
            assert_eq!(
                end(&list[header], heading),
                end(&list[header + 1], value),
                "{list:?}"
            );
        }
    }
    let list = list.join("\n");
    assert!(list.contains(r#"{"customer":"ada""#), "{list}");
    top.press(KeyCode::Enter);
    assert_eq!(top.app.screen, Screen::Message);
    let screen = top.screen();
    let text = screen.join("\n");
    for expected in [
        format!("message {id} of `pay` · ready"),
        "attempts   0 of 5 · priority 3".to_owned(),
        "key, group order-7 · -".to_owned(),
        "headers    trace: abc-123".to_owned(),
        "body (JSON, 64 B)".to_owned(),
    ] {
        assert!(text.contains(&expected), "lacks {expected:?}:\n{text}");
    }
    let body: Vec<&str> = screen
        .iter()
        .skip_while(|l| !l.contains("body (JSON"))
        .skip(1)
        .map(|l| l.trim_end())
        .take(10)
        .collect();
    assert_eq!(
        body,
        [
            " {",
            r#"   "customer": "ada","#,
            r#"   "items": ["#,
            "     {",
            r#"       "sku": "A-1","#,
            r#"       "qty": 2"#,
            "     }",
            "   ],",
            r#"   "total": 12.50"#,
            " }",
        ]
    );
    // Syntax colour: keys cyan, strings green, numbers yellow.
    let buf = top.terminal.backend().buffer();
    let y = screen
        .iter()
        .position(|l| l.contains(r#""customer""#))
        .unwrap() as u16;
    let x = screen[y as usize].find('"').unwrap() as u16;
    assert_eq!(buf[(x, y)].fg, Color::Cyan);
    let x = screen[y as usize].find("\"ada").unwrap() as u16;
    assert_eq!(buf[(x, y)].fg, Color::Green);
    // Back out: Esc to the list, q to the queues, q to quit.
    assert_eq!(top.press(KeyCode::Esc), Outcome::Refresh);
    assert_eq!(top.app.screen, Screen::Messages);
    top.press(KeyCode::Char('q'));
    assert_eq!(top.app.screen, Screen::Queues);
    assert_eq!(top.press(KeyCode::Char('q')), Outcome::Quit);
}

#[test]
fn replaying_dead_messages_after_confirmation_matches_spool_replay() {
    let (by_command, by_top) = (Env::new(), Env::new());
    build(&by_command);
    build(&by_top);
    by_command.run(&["replay", "orders", "--dead"]).success();

    let mut top = Top::new(&by_top, false);
    top.select("orders");
    top.press(KeyCode::Char('d'));
    let question = &top.app.prompt.as_ref().unwrap().question;
    assert!(
        question.starts_with("Replay the 2 dead message(s) of `orders`?"),
        "{question}"
    );
    assert!(
        top.text().contains("Replay the 2 dead"),
        "the prompt is drawn"
    );
    assert_eq!(dead_count(&by_top), 2, "nothing happens before `y`");
    assert!(matches!(top.press(KeyCode::Char('y')), Outcome::Run(_)));
    assert_eq!(dead_count(&by_top), 0);
    assert_eq!(snapshot(&by_top), snapshot(&by_command));
    assert!(
        top.text()
            .contains("replayed 2 dead message(s) of `orders`")
    );
    // The list shows it at the next refresh.
    assert_eq!(
        row(&top.screen(), "orders")[1..6],
        ["5", "5", "1", "4", "0"]
    );
}

#[test]
fn purging_a_state_after_confirmation_matches_queue_purge() {
    let (by_command, by_top) = (Env::new(), Env::new());
    build(&by_command);
    build(&by_top);
    by_command
        .run(&["queue", "purge", "orders", "--state", "dead"])
        .success();

    let mut top = Top::new(&by_top, false);
    top.open("orders");
    // The pending tab mixes states: purge asks for one.
    top.press(KeyCode::Char('x'));
    assert!(top.app.prompt.is_none());
    assert!(top.text().contains("purge works on one state"));
    top.press(KeyCode::Char('6'));
    let ids: Vec<i64> = top
        .app
        .list
        .as_ref()
        .unwrap()
        .rows
        .iter()
        .map(|m| m.delivery.id)
        .collect();
    assert_eq!(ids, [1, 2], "the dead tab");
    top.type_keys("xy");
    assert_eq!(snapshot(&by_top), snapshot(&by_command));
    assert_eq!(dead_count(&by_top), 0);
    assert!(top.text().contains("no dead messages in `orders`"));
}

#[test]
fn replaying_one_message_after_confirmation_matches_replay_by_id() {
    let (by_command, by_top) = (Env::new(), Env::new());
    build(&by_command);
    build(&by_top);
    by_command
        .run(&["replay", "orders", "--dead", "--id", "2"])
        .success();

    let mut top = Top::new(&by_top, false);
    top.open("orders");
    // A ready message cannot be replayed.
    top.press(KeyCode::Char('r'));
    assert!(top.app.prompt.is_none());
    top.press(KeyCode::Char('6'));
    top.press(KeyCode::Down);
    assert_eq!(top.app.selected_message().unwrap().delivery.id, 2);
    top.press(KeyCode::Enter);
    top.press(KeyCode::Char('r'));
    let question = &top.app.prompt.as_ref().unwrap().question;
    assert!(
        question.contains("as `spool replay orders --dead --id 2`"),
        "{question}"
    );
    assert!(top.text().contains("confirm"));
    top.press(KeyCode::Char('y'));
    assert_eq!(snapshot(&by_top), snapshot(&by_command));
    assert!(top.text().contains("message 2 of `orders` · ready"));
}

#[test]
fn releasing_a_lease_makes_the_message_ready_without_counting_the_attempt() {
    let env = Env::new();
    env.run(&["queue", "create", "jobs", "--max-attempts", "1"])
        .success();
    let id = env.publish("jobs", r#"{"job":1}"#);
    let held = env.consume_one("jobs", &["--visibility", "1h"]);
    let mut top = Top::new(&env, false);
    top.open("jobs");
    top.press(KeyCode::Char('4'));
    top.press(KeyCode::Char('l'));
    assert!(top.text().contains("Release the lease on message"));
    top.press(KeyCode::Char('y'));
    assert_eq!(env.state_of("jobs", id), Some(0), "ready");
    // The consumer that held it can no longer ack it.
    env.run(&["ack", receipt(&held)]).code(3);
    // On its last allowed attempt, yet delivered again rather than dead.
    let again = env.consume_one("jobs", &[]);
    assert_eq!(again["attempt"], 1);
    assert!(top.text().contains("released message"));
}

#[test]
fn answering_anything_but_y_changes_nothing() {
    let env = Env::new();
    build(&env);
    let before = snapshot(&env);
    let mut top = Top::new(&env, false);
    top.select("orders");
    for answer in [KeyCode::Char('n'), KeyCode::Esc, KeyCode::Enter] {
        top.press(KeyCode::Char('d'));
        assert!(top.app.prompt.is_some());
        assert_eq!(top.press(answer), Outcome::Redraw);
        assert!(top.app.prompt.is_none());
    }
    assert_eq!(snapshot(&env), before);
    assert!(top.text().contains("cancelled: nothing changed"));
}

/// Every cell of the buffer without colour: only reverse video and bold.
fn colourless(top: &Top) -> bool {
    top.terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
}

#[test]
fn without_colour_no_cell_is_coloured_on_any_screen() {
    let env = Env::new();
    build(&env);
    let never = spool::output::Output::new(false, false, spool::output::ColorChoice::Never);
    assert!(!never.color, "`--color never` turns colour off");
    for color in [false, true] {
        let mut top = Top::new(&env, color);
        let mut coloured = Vec::new();
        top.select("orders");
        top.screen();
        coloured.push(!colourless(&top));
        top.press(KeyCode::Enter);
        top.press(KeyCode::Char('7'));
        top.screen();
        coloured.push(!colourless(&top));
        top.press(KeyCode::Enter);
        top.screen();
        coloured.push(!colourless(&top));
        top.press(KeyCode::Char('?'));
        top.screen();
        assert_eq!(coloured, [color; 3], "color {color}");
        if !color {
            assert!(colourless(&top), "help overlay");
        }
    }
}

#[test]
fn dead_counts_are_red_when_colour_is_on() {
    let env = Env::new();
    build(&env);
    let mut top = Top::new(&env, true);
    let screen = top.screen();
    let y = screen.iter().position(|l| l.starts_with("orders")).unwrap();
    // The DEAD column ends at name + 5 count columns.
    let cols = ui::Columns::for_width(80);
    let x = (cols.name + 5 * 6 - 1) as u16;
    assert_eq!(screen[y].chars().nth(x as usize), Some('2'));
    assert_eq!(
        top.terminal.backend().buffer()[(x, y as u16)].fg,
        Color::Red
    );
}

#[test]
fn scrolling_down_reads_further_messages() {
    let env = Env::new();
    let lines: String = (1..=150).map(|i| format!("{i}\n")).collect();
    env.run_with_input(&["publish", "many"], lines).success();
    let mut top = Top::new(&env, false);
    top.open("many");
    let first = top.app.list.as_ref().unwrap().rows.len();
    assert!(first < 150, "reads a screenful and some, not all: {first}");
    for _ in 0..10 {
        top.press(KeyCode::End);
    }
    assert_eq!(top.app.selected_message().unwrap().delivery.id, 150);
    let text = top.text();
    assert!(text.contains("many · pending · 150 of 150"), "{text}");
    top.press(KeyCode::Home);
    assert_eq!(top.app.selected_message().unwrap().delivery.id, 1);
}

#[test]
fn a_missing_database_shows_empty_and_is_not_created() {
    let env = Env::new();
    let mut top = Top::new(&env, false);
    assert!(top.text().contains("No database yet"));
    assert!(!env.database_exists());
    env.publish("late", "1");
    top.refresh();
    assert_eq!(row(&top.screen(), "late")[1], "1");
}

#[test]
fn a_queue_deleted_while_open_takes_top_back_to_the_list() {
    let env = Env::new();
    build(&env);
    let mut top = Top::new(&env, false);
    top.open("alpha");
    env.run(&["queue", "delete", "alpha", "--force"]).success();
    top.refresh();
    assert_eq!(top.app.screen, Screen::Queues);
    assert!(top.text().contains("queue `alpha` no longer exists"));
}

#[test]
fn small_terminals_and_every_screen_draw_without_panicking() {
    let env = Env::new();
    build(&env);
    for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1)] {
        let mut top = Top::sized(&env, true, w, h);
        top.select("orders");
        for k in [
            KeyCode::Enter,
            KeyCode::Char('7'),
            KeyCode::Enter,
            KeyCode::Char('?'),
        ] {
            top.press(k);
            top.screen();
        }
        top.press(KeyCode::Esc);
        top.press(KeyCode::Char('r'));
        top.screen();
    }
}

#[test]
fn top_refuses_politely_without_a_terminal() {
    let env = Env::new();
    let run = env.run(&["top"]);
    run.code(2)
        .stderr_has("needs a terminal")
        .stderr_has("spool stats")
        .stderr_has("spool peek");
    env.run(&["top", "--json"])
        .code(2)
        .stderr_has("spool stats --json");
    assert!(!env.database_exists());
}

// ---- End to end, in tmux ----

/// Says on stderr why an end-to-end test did not run. Written to stderr
/// directly: the test harness swallows `eprintln!` of passing tests, and a
/// skip must be seen in `cargo test`'s output.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why}, so `spool top` was not tested end to end in tmux (.ci/run installs tmux)"
    );
}

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: PathBuf,
    /// Where the shell in the pane writes spool's exit status.
    exit_file: PathBuf,
}

/// How long the screen may take to show what a step expects. Generous: the
/// machine may be loaded; the loop returns as soon as the text is there.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);

impl Tmux {
    /// Starts `spool top` in an 80×24 tmux session, or `None` (after saying
    /// why on stderr) where tmux is missing or cannot run.
    fn start(env: &Env, extra_env: &str, args: &str) -> Option<Tmux> {
        let version = Command::new("tmux").arg("-V").output();
        if !version.is_ok_and(|o| o.status.success()) {
            skipped("tmux is not installed");
            return None;
        }
        let socket = env.path("tmux.sock");
        let conf = env.path("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -s escape-time 0\n").unwrap();
        // The exit status goes to a file rather than being read from tmux's
        // idea of a dead pane, which is the shell's and comes later.
        let exit_file = env.path("top.exit");
        let command = format!(
            "env {extra_env} SPOOL_DB='{}' '{}' top {args}; echo $? > '{}'",
            env.db.display(),
            bin(),
            exit_file.display()
        );
        let started = Tmux::command(&socket)
            .arg("-f")
            .arg(&conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                "80",
                "-y",
                "24",
                &command,
            ])
            .output();
        match started {
            Ok(o) if o.status.success() => Some(Tmux { socket, exit_file }),
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr);
                skipped(&format!(
                    "tmux cannot start a session here ({})",
                    why.trim()
                ));
                None
            }
            Err(e) => {
                skipped(&format!("tmux cannot run here ({e})"));
                None
            }
        }
    }

    fn command(socket: &Path) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .arg("-u")
            .arg("-S")
            .arg(socket);
        cmd
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Tmux::command(&self.socket).args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "top"])
    }

    /// The screen with its escape sequences (colours, reverse video).
    fn capture_styled(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-t", "top"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Polls the screen until `text` appears; returns that screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "`{text}` did not appear within {SCREEN_TIMEOUT:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `spool top` has exited and returns its exit status.
    fn wait_exit(&self) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            // The shell creates the file before it writes the status: an
            // empty file is not an answer yet.
            if let Ok(status) = std::fs::read_to_string(&self.exit_file)
                && status.ends_with('\n')
            {
                return status.trim().to_owned();
            }
            if Instant::now() >= deadline {
                let shell = self.tmux(&["display-message", "-p", "-t", "top", "#{pane_pid}"]);
                let ps = Command::new("ps")
                    .args(["-o", "pid,stat,wchan:24,args", "--ppid", shell.trim()])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "spool top did not exit within {SCREEN_TIMEOUT:?}.\nProcesses:\n{ps}\nScreen:\n{}",
                    self.capture()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Tmux::command(&self.socket).arg("kill-server").output();
    }
}

/// SGR colour parameters (foreground or background) in captured text.
fn has_colour(styled: &str) -> bool {
    styled.split("\x1b[").skip(1).any(|seq| {
        let Some(params) = seq.split('m').next() else {
            return false;
        };
        params.split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

#[test]
fn end_to_end_in_tmux_replay_the_dead_messages_of_a_queue() {
    let env = Env::new();
    env.run(&["queue", "create", "orders", "--max-attempts", "1"])
        .success();
    for i in 1..=4 {
        env.publish("orders", &format!(r#"{{"order":{i}}}"#));
    }
    for m in env.consume("orders", &["-n", "3"]) {
        env.run(&["nack", receipt(&m)]).success();
    }
    env.publish("alpha", "1");
    let Some(tmux) = Tmux::start(&env, "NO_COLOR=1", "") else {
        return;
    };
    tmux.wait_for("orders");
    tmux.keys(&["j"]);
    tmux.wait_for(" orders ─");
    // NO_COLOR: three dead messages, yet nothing red (or any colour).
    let styled = tmux.capture_styled();
    assert!(!has_colour(&styled), "colour despite NO_COLOR: {styled:?}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("orders · pending");
    tmux.keys(&["d"]);
    tmux.wait_for("Replay the 3 dead message(s) of `orders`?");
    tmux.keys(&["y"]);
    tmux.wait_for("replayed 3 dead message(s) of `orders`");
    let states: Vec<i64> = (1..=4)
        .map(|id| env.state_of("orders", id).unwrap())
        .collect();
    assert_eq!(states, [0, 0, 0, 0], "all ready again");
    tmux.keys(&["q"]);
    tmux.wait_for("q quit");
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), "0");
}

#[test]
fn end_to_end_in_tmux_top_waits_for_the_database_to_appear() {
    let env = Env::new();
    let Some(tmux) = Tmux::start(&env, "", "") else {
        return;
    };
    tmux.wait_for("No database yet");
    assert!(!env.database_exists(), "top does not create the database");
    env.publish("late", "1");
    tmux.wait_for("late ");
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), "0");
}

/// One dead message in `orders`: its count is red where colour is on.
fn one_dead(env: &Env) {
    env.run(&["queue", "create", "orders", "--max-attempts", "1"])
        .success();
    env.publish("orders", "1");
    let m = env.consume_one("orders", &[]);
    env.run(&["nack", receipt(&m)]).success();
}

#[test]
fn end_to_end_in_tmux_colours_by_default() {
    let env = Env::new();
    one_dead(&env);
    let Some(tmux) = Tmux::start(&env, "", "") else {
        return;
    };
    tmux.wait_for("orders");
    assert!(has_colour(&tmux.capture_styled()), "the dead count is red");
    tmux.keys(&["C-c"]);
    assert_eq!(tmux.wait_exit(), "0");
}

#[test]
fn end_to_end_in_tmux_color_never_turns_colour_off() {
    let env = Env::new();
    one_dead(&env);
    let Some(tmux) = Tmux::start(&env, "", "--color never") else {
        return;
    };
    tmux.wait_for("orders");
    let styled = tmux.capture_styled();
    assert!(
        !has_colour(&styled),
        "colour despite --color never: {styled:?}"
    );
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), "0");
}

/// Processes whose environment holds `SPOOL_DB=<db>` and that run `top`.
fn top_processes(db: &str) -> Vec<String> {
    let needle = format!("SPOOL_DB={db}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&environ).contains(&needle)
                && cmdline.split(|&b| b == 0).any(|arg| arg == b"top")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn top_ends_when_its_terminal_goes_away() {
    let env = Env::new();
    env.publish("orders", "1");
    let Some(tmux) = Tmux::start(&env, "", "") else {
        return;
    };
    tmux.wait_for("orders");
    let db = env.db.display().to_string();
    assert!(
        !top_processes(&db).is_empty(),
        "the test cannot find the running top"
    );
    // The terminal goes away under it, as when a window is closed.
    drop(tmux);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = top_processes(&db);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = top_processes(&db);
    }
    assert!(
        left.is_empty(),
        "top still runs without a terminal: {left:?}"
    );
}

/// The words of the schedules panel's row for `name` (its first word).
fn schedule_row(screen: &[String], name: &str) -> Vec<String> {
    let start = screen
        .iter()
        .position(|l| l.contains(" schedules "))
        .unwrap_or_else(|| panic!("no schedules panel:\n{}", screen.join("\n")));
    row(&screen[start..], name)
        .iter()
        .map(|w| (*w).to_owned())
        .collect()
}

#[test]
fn the_queue_list_shows_the_schedules_under_it() {
    let env = Env::new();
    build(&env);
    let mut top = Top::new(&env, false);
    let text = top.text();
    assert!(
        !text.contains(" schedules "),
        "no panel without schedules:\n{text}"
    );
    let hour = Duration::from_secs(3600);
    add_schedule(&env, "tick", "ticks", hour);
    add_schedule(&env, "idle", "ticks", hour);
    add_schedule(&env, "fan", "events", hour);
    pause_schedule(&env, "idle");
    assert_eq!(env.consume("ticks", &["--ack"]).len(), 1, "tick fires");
    top.refresh();
    let screen = top.screen();
    // name → target, next, last, paused.
    let tick = schedule_row(&screen, "tick");
    assert_eq!(tick[..5], ["tick", "→", "ticks", "next", "in"], "{tick:?}");
    assert!(tick[5] == "59m" || tick[5] == "1h", "{tick:?}");
    assert_eq!(tick[6], "last");
    assert_eq!(tick[8], "ago", "{tick:?}");
    assert!(!tick.contains(&"paused".to_owned()), "{tick:?}");
    assert_eq!(
        schedule_row(&screen, "idle"),
        [
            "idle", "→", "ticks", "next", "due", "last", "never", "paused"
        ]
    );
    assert_eq!(
        schedule_row(&screen, "fan"),
        ["fan", "→", "events", "next", "due", "last", "never"]
    );
    // The queue list and the selected queue's details are still there.
    assert_eq!(row(&screen, "orders")[1..6], ["3", "5", "1", "4", "2"]);
    top.select("orders");
    assert!(top.text().contains("max attempts 1"));
    // More schedules than the panel holds: the rest are counted.
    for name in ["s1", "s2", "s3"] {
        add_schedule(&env, name, "alpha", hour);
    }
    top.refresh();
    let screen = top.screen();
    let more = screen.iter().find(|l| l.contains("… and")).unwrap();
    assert!(more.contains("… and 2 more"), "4 of 6 shown: {more}");
    assert!(screen.iter().any(|l| l.trim_start().starts_with("fan ")));
    assert!(!screen.iter().any(|l| l.trim_start().starts_with("tick ")));
    // Small terminals still draw.
    for (w, h) in [(40, 10), (80, 12), (20, 5)] {
        let mut small = Top::sized(&env, true, w, h);
        small.screen();
    }
}
