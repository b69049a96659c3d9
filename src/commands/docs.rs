//! `spool completions` and `spool man`: shell completions and man pages,
//! generated from spool's own clap definition.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap_complete::Shell;

use crate::error::Exit;
use crate::{Cli, Context};

/// Print a shell completion script.
///
/// Install it where your shell looks for completions, e.g. for bash:
/// `spool completions bash > ~/.local/share/bash-completion/completions/spool`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  spool completions bash > ~/.local/share/bash-completion/completions/spool
  spool completions zsh > ~/.zfunc/_spool
  spool completions fish > ~/.config/fish/completions/spool.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum, required_unless_present = "dir")]
    pub shell: Option<Shell>,
    /// Write the scripts for every shell into this folder instead
    #[arg(long, value_name = "DIR", conflicts_with = "shell")]
    pub dir: Option<PathBuf>,
}

/// Print the man page.
///
/// Without PAGE, prints spool(1); with it, the page of one command, such as
/// `publish` or `queue-create`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  spool man | man -l -
  spool man publish | man -l -
  spool man --dir ~/.local/share/man/man1")]
pub struct ManArgs {
    /// The command whose page to print, e.g. `publish` or `queue-create`
    #[arg(value_name = "PAGE")]
    pub page: Option<String>,
    /// Write every page into this folder instead
    #[arg(long, value_name = "DIR", conflicts_with = "page")]
    pub dir: Option<PathBuf>,
}

/// The shells `spool completions` knows, with the file name each expects.
pub const SHELLS: [(Shell, &str); 5] = [
    (Shell::Bash, "spool.bash"),
    (Shell::Zsh, "_spool"),
    (Shell::Fish, "spool.fish"),
    (Shell::Elvish, "spool.elv"),
    (Shell::PowerShell, "_spool.ps1"),
];

/// The environment variable that asks spool for completions (set by the
/// scripts of `spool completions`, never by people).
pub const COMPLETE_VAR: &str = "SPOOL_COMPLETE";

/// The completion script for one shell. It asks `spool` itself for candidates
/// at each Tab (clap_complete's dynamic completion), so subcommands, flags
/// and the names of the queues in the database are all completed.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let name = shell.to_string();
    if let Some(completer) = clap_complete::env::Shells::builtins().completer(&name) {
        // Writing to a Vec cannot fail.
        let _ = completer.write_registration(COMPLETE_VAR, "spool", "spool", "spool", &mut out);
    }
    out
}

/// Answers a completion request when [`COMPLETE_VAR`] is set (and exits);
/// does nothing otherwise.
pub fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::definition)
        .var(COMPLETE_VAR)
        .complete();
}

/// The completer for arguments that name a queue or topic.
pub fn complete_queues() -> clap_complete::ArgValueCompleter {
    clap_complete::ArgValueCompleter::new(queue_names)
}

/// Completes queue and topic names from the database the command line names
/// (`--db`), or else `SPOOL_DB` or the default. Reads only; a missing or
/// unreadable database completes nothing.
pub fn queue_names(current: &std::ffi::OsStr) -> Vec<clap_complete::CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let Some(path) = completion_db() else {
        return Vec::new();
    };
    let opts = crate::store::Options {
        location: crate::store::Location::of(&path),
        busy_timeout: std::time::Duration::from_millis(200),
        sync: crate::store::Sync::Normal,
    };
    let names = match crate::store::Db::open_read_only(&opts) {
        Ok(Some(store)) => store.names().unwrap_or_default(),
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter(|n| n.starts_with(prefix.as_ref()))
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

/// The database of the command line being completed.
fn completion_db() -> Option<PathBuf> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut given = None;
    for (i, arg) in args.iter().enumerate() {
        let text = arg.to_string_lossy();
        if let Some(path) = text.strip_prefix("--db=") {
            given = Some(PathBuf::from(path));
        } else if text == "--db" {
            given = args.get(i + 1).map(PathBuf::from);
        }
    }
    if given.is_some() {
        return given;
    }
    let global = crate::GlobalArgs {
        db: std::env::var_os("SPOOL_DB").map(PathBuf::from),
        json: false,
        quiet: true,
        color: crate::output::ColorChoice::Never,
        busy_timeout: std::time::Duration::from_millis(200),
        sync: crate::store::Sync::Normal,
    };
    global.db_path().ok()
}

/// Runs `spool completions`.
pub fn completions(_ctx: &Context, args: CompletionsArgs) -> anyhow::Result<Exit> {
    if let Some(dir) = &args.dir {
        for (shell, file) in SHELLS {
            write_file(dir, file, &completion_script(shell))?;
        }
        return Ok(Exit::Ok);
    }
    let shell = args.shell.unwrap_or(Shell::Bash);
    let mut out = crate::output::stdout();
    out.write_all(&completion_script(shell))?;
    out.flush()?;
    Ok(Exit::Ok)
}

/// Every man page: (file name, roff text), spool.1 first.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::definition().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect_pages(&cmd, &mut pages)?;
    Ok(pages)
}

fn collect_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    pages.push(render_page(cmd)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_pages(sub, pages)?;
    }
    Ok(())
}

fn render_page(cmd: &clap::Command) -> anyhow::Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd.clone()).date("");
    let mut text = Vec::new();
    man.render_title(&mut text)?;
    man.render_name_section(&mut text)?;
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut text)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut text)?;
    }
    if let Some(examples) = cmd.get_after_help() {
        text.extend_from_slice(examples_section(&examples.to_string()).as_bytes());
    }
    text.extend_from_slice(exit_status_section().as_bytes());
    man.render_version_section(&mut text)?;
    Ok((man.get_filename(), text))
}

/// Escapes text for a roff line: backslashes, minus signs, and a leading dot or quote.
fn roff_escape(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn examples_section(after_help: &str) -> String {
    let body = after_help
        .trim_start()
        .strip_prefix("Examples:")
        .unwrap_or(after_help);
    let mut out = String::from(".SH EXAMPLES\n.nf\n");
    for line in body.trim_matches('\n').lines() {
        out.push_str(&roff_escape(line.strip_prefix("  ").unwrap_or(line)));
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

/// The exit codes of SPEC §5, shared by every page.
pub const EXIT_CODES: [(u8, &str); 8] = [
    (0, "done"),
    (1, "nothing there: consume found no message (after --wait)"),
    (
        2,
        "usage: bad flags or values, including a bad queue name or duration",
    ),
    (
        3,
        "not found: unknown queue (where it matters) or schedule, a topic with no subscribers, an unknown or expired receipt (or one of a dead message)",
    ),
    (4, "work: at least one handler failed"),
    (
        65,
        "bad input data: invalid JSON, invalid UTF-8, body too large, a key or group too long or holding NUL, a message that breaks its queue's JSON Schema, an invalid schema, a batch that could never fit a queue's length limits",
    ),
    (
        74,
        "the database cannot be opened, read or written (permission, not a database, disk full), or stdout cannot be written (the message names stdout and says what was committed)",
    ),
    (
        75,
        "busy: a lock held past --busy-timeout (SQLite's write lock, or a PostgreSQL lock), a PostgreSQL conflict that retrying did not resolve, or a full queue (--on-full reject); safe to retry later",
    ),
];

fn exit_status_section() -> String {
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_CODES {
        out.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff_escape(meaning)));
    }
    out
}

/// Runs `spool man`.
pub fn man(_ctx: &Context, args: ManArgs) -> anyhow::Result<Exit> {
    let pages = man_pages()?;
    if let Some(dir) = &args.dir {
        for (name, text) in &pages {
            write_file(dir, name, text)?;
        }
        return Ok(Exit::Ok);
    }
    let wanted = match &args.page {
        None => "spool.1".to_owned(),
        Some(page) => format!(
            "spool-{}.1",
            page.trim_start_matches("spool-").replace(' ', "-")
        ),
    };
    let Some((_, text)) = pages.iter().find(|(name, _)| *name == wanted) else {
        let names: Vec<&str> = pages
            .iter()
            .filter_map(|(n, _)| n.strip_prefix("spool-")?.strip_suffix(".1"))
            .collect();
        return Err(crate::error::Failure::usage(format!(
            "no man page `{}`. Pages: {}",
            args.page.unwrap_or_default(),
            names.join(", ")
        ))
        .into());
    };
    let mut out = crate::output::stdout();
    out.write_all(text)?;
    out.flush()?;
    Ok(Exit::Ok)
}

fn write_file(dir: &Path, name: &str, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("cannot write `{}`", path.display()))
}
