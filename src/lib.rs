//! spool: durable message queues in one local SQLite file.
//!
//! The binary is a thin wrapper around [`main`]: parse the command line into a
//! [`Cli`], run the chosen command, and map its outcome onto the exit codes of
//! [`error::Exit`].

pub mod commands;
pub mod contract;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod input;
pub mod output;
pub mod parse;
pub mod store;
pub mod suggest;
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub mod testing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};

use crate::error::Exit;
use crate::output::{ColorChoice, Output};

/// Durable message queues in one local SQLite file.
#[derive(Debug, Parser)]
#[command(
    name = "spool",
    version,
    about = "Durable message queues in one local SQLite file",
    long_about = "Durable message queues in one local SQLite file.\n\n\
        Producers publish JSON events; consumers lease them with a visibility timeout \
        and ack them when done. A consumer that dies just lets its lease run out, and \
        the message is delivered again.",
    propagate_version = true,
    max_term_width = 100,
    after_help = "Examples:
  jq -c '.orders[]' export.json | spool publish orders
  spool consume orders -n 10 | ./handle | spool ack
  spool work orders --until-empty --concurrency 4 -- ./charge-card.sh
  spool stats"
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: commands::Command,
}

impl Cli {
    /// The command-line definition, each subcommand's arguments built only
    /// when clap needs them ([`commands::defer_arguments`]). Use it rather
    /// than `Cli::command()`.
    pub fn definition() -> clap::Command {
        commands::defer_arguments(<Cli as clap::CommandFactory>::command())
    }

    /// Parses the process's arguments, as `Cli::try_parse` does, with
    /// [`Cli::definition`].
    ///
    /// The command tree and the matches are left undropped (`mem::forget`):
    /// the process needs neither again, and freeing their thousands of
    /// small allocations cost about 90,000 instructions, 3% of a
    /// one-message command. What stays allocated is a few tens of KiB, once
    /// per process (`serve` and `work` too: they parse once).
    fn try_parse_lazily() -> Result<Cli, clap::Error> {
        use clap::FromArgMatches;
        let mut cmd = Cli::definition();
        // A flag typed on the command line wins over its variable, which
        // clap would otherwise still read (and refuse, when empty or
        // invalid) for the subcommand's copy of the global flag.
        for (id, flag, _) in OPTION_VARIABLES {
            if typed(flag) {
                cmd = cmd.mut_arg(id, |a| a.env(None::<&str>));
            }
        }
        let mut matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
        let cli = Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd));
        std::mem::forget(matches);
        std::mem::forget(cmd);
        cli
    }
}

/// Options every command takes, before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The database: a SQLite file, or a postgres:// URL [default: $XDG_DATA_HOME/spool/spool.db]
    #[arg(
        long,
        global = true,
        env = "SPOOL_DB",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub db: Option<PathBuf>,
    /// Machine output: JSON even on a terminal
    #[arg(long, global = true)]
    pub json: bool,
    /// No ids, counts, progress or summaries (errors are still shown)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour output
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: ColorChoice,
    /// How long to wait for another process's write lock
    #[arg(long, global = true, value_name = "DUR", default_value = "10s", value_parser = parse::duration)]
    pub busy_timeout: Duration,
    /// Commit durability: `full` fsyncs every commit, `normal` survives a process crash only
    #[arg(
        long,
        global = true,
        env = "SPOOL_SYNC",
        hide_env_values = true,
        value_enum,
        default_value_t,
        value_name = "MODE"
    )]
    pub sync: store::Sync,
}

impl GlobalArgs {
    /// The database path: `--db`, `$SPOOL_DB`, else the XDG data folder.
    pub fn db_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.db {
            return Ok(path.clone());
        }
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/share"))
            });
        match data_home {
            Some(dir) => Ok(dir.join("spool").join("spool.db")),
            None => Err(error::Failure::usage(
                "cannot find a default database: neither XDG_DATA_HOME nor HOME is set. Pass `--db PATH` or set SPOOL_DB",
            )
            .into()),
        }
    }
}

/// What every command gets: the global options and the output policy.
#[derive(Debug, Clone)]
pub struct Context {
    /// Global options.
    pub global: GlobalArgs,
    /// Output policy.
    pub out: Output,
}

impl Context {
    fn store_options(&self) -> anyhow::Result<store::Options> {
        Ok(store::Options {
            location: store::Location::of(&self.global.db_path()?),
            busy_timeout: self.global.busy_timeout,
            sync: self.global.sync,
        })
    }

    /// Opens the database for writing, creating it on first use.
    pub fn store(&self) -> anyhow::Result<store::Db> {
        Ok(store::Db::open(&self.store_options()?)?)
    }

    /// Opens the database for writing if it exists; `None`, creating
    /// nothing, when it does not. For commands that must not create it when
    /// they refuse their input, or that find nothing to act on in an empty
    /// database (an unknown queue or receipt).
    pub fn existing_store(&self) -> anyhow::Result<Option<store::Db>> {
        Ok(store::Db::open_existing(&self.store_options()?)?)
    }

    /// Opens the database for reading only; `None` when it does not exist yet.
    pub fn read_store(&self) -> anyhow::Result<Option<store::Db>> {
        Ok(store::Db::open_read_only(&self.store_options()?)?)
    }
}

/// Runs spool with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    commands::docs::complete_if_asked();
    let cli = match Cli::try_parse_lazily() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    ExitCode::from(run(cli) as u8)
}

/// Runs a parsed command line, reporting any error on stderr.
pub fn run(cli: Cli) -> Exit {
    let out = Output::new(cli.global.json, cli.global.quiet, cli.global.color);
    let ctx = Context {
        global: cli.global,
        out,
    };
    match commands::run(&ctx, cli.command) {
        Ok(exit) => exit,
        Err(err) if error::is_broken_pipe(&err) => Exit::Ok,
        Err(err) => {
            let code = error::exit_code(&err);
            if err.downcast_ref::<error::Silent>().is_none() {
                eprintln!("spool: error: {}", chain(&err));
            }
            code
        }
    }
}

/// The error and its causes, joined as one line.
pub(crate) fn chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// clap quotes a refused value as typed; a newline or tab in it would break
/// the message (and a carriage return could hide it on a terminal), so such a
/// value is shown escaped, as spool's own messages do.
fn escape_invalid_value(err: &clap::Error, text: String) -> String {
    use clap::error::{ContextKind, ContextValue};
    /// Characters of a refused value shown; a longer one (a 5,000-byte
    /// `--key`) is cut, as the reason says how long it was.
    const SHOWN: usize = 80;
    let Some(ContextValue::String(value)) = err.get(ContextKind::InvalidValue) else {
        return text;
    };
    let long = value.chars().count() > SHOWN;
    if !long && !value.chars().any(char::is_control) {
        return text;
    }
    let mut shown: String = value
        .chars()
        .take(SHOWN)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if long {
        shown.push('…');
    }
    text.replacen(value.as_str(), &shown, 1)
}

/// Prints a clap error as `spool: error: …` (help and version go to stdout).
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        let code = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
        return ExitCode::from(code);
    }
    if let Some(text) = empty_variable(&err) {
        eprintln!("spool: error: {text}");
        return ExitCode::from(Exit::Usage as u8);
    }
    let text = escape_invalid_value(&err, err.render().to_string());
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    eprint!("spool: error: {text}");
    ExitCode::from(Exit::Usage as u8)
}

/// The variables clap reads global options from. An empty one is taken as
/// a flag given an empty value, and clap's message would name the flag,
/// which the user never typed: name the variable instead.
const OPTION_VARIABLES: [(&str, &str, &str); 2] =
    [("db", "--db", "SPOOL_DB"), ("sync", "--sync", "SPOOL_SYNC")];

/// True when `flag` is on the command line (`--db x` or `--db=x`).
fn typed(flag: &str) -> bool {
    std::env::args_os().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
    })
}

fn empty_variable(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let (_, flag, var) = OPTION_VARIABLES
        .iter()
        .find(|(_, flag, _)| arg.split_whitespace().next() == Some(*flag))?;
    if typed(flag) {
        return None;
    }
    let value = std::env::var_os(var)?;
    if value.is_empty() {
        return Some(format!(
            "{var} is set but empty; unset it, or set it to a value (as `{flag}` takes)"
        ));
    }
    // Not empty but refused: clap's reason, said of the variable.
    let text = err.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    Some(format!("{var}: {}", text.trim_end()))
}
