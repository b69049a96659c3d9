//! Exit codes (SPEC §5) and the one place that maps errors onto them.

use crate::store;

/// The process exit codes of spool, as documented in the user guide (`docs/GUIDE.md`) and the man pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Nothing there: `consume` found no message.
    Empty = 1,
    /// Usage: bad flags or values.
    Usage = 2,
    /// Not found: unknown queue or schedule, unknown or expired receipt.
    NotFound = 3,
    /// `work`: at least one handler failed.
    HandlerFailed = 4,
    /// Bad input data: invalid JSON, invalid UTF-8, body too large, a key or
    /// group no backend can keep, a message that breaks its queue's JSON
    /// Schema, an invalid schema.
    DataErr = 65,
    /// The database cannot be opened, read or written.
    IoErr = 74,
    /// Another process held the write lock past `--busy-timeout`, or the
    /// queue is full.
    Busy = 75,
}

/// An error that carries its own exit code, for failures that are not store errors
/// (bad input lines, usage mistakes found after parsing, refused receipts).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code this failure ends the command with.
    pub exit: Exit,
    /// The message shown after `spool: error: `.
    pub message: String,
}

impl Failure {
    /// A failure with the given exit code and message.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, message)
    }

    /// Bad input data (exit 65).
    pub fn data(message: impl Into<String>) -> Self {
        Failure::new(Exit::DataErr, message)
    }
}

/// A command that already told the user what went wrong (on stderr) and only
/// needs to end with this exit code.
#[derive(Debug, thiserror::Error)]
#[error("exit {0:?}")]
pub struct Silent(pub Exit);

/// The exit code for an error returned by a command.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.exit;
        }
        if let Some(Silent(code)) = cause.downcast_ref::<Silent>() {
            return *code;
        }
        if let Some(e) = cause.downcast_ref::<store::Error>() {
            return store_exit(e);
        }
    }
    Exit::IoErr
}

/// The exit code for a store error.
pub(crate) fn store_exit(err: &store::Error) -> Exit {
    use store::Error as E;
    match err {
        E::Busy { .. } | E::PgBusy { .. } | E::QueueFull { .. } => Exit::Busy,
        E::UnknownQueue { .. } | E::NoSubscribers { .. } | E::Receipt { .. } => Exit::NotFound,
        E::BadName { .. } | E::NameIsTopic { .. } | E::NameHoldsMessages { .. } => Exit::Usage,
        E::SettingsConflict { .. } | E::QueueNotEmpty { .. } | E::TargetNotEmpty { .. } => {
            Exit::Usage
        }
        E::SelfSubscription { .. }
        | E::TopicSubscribes { .. }
        | E::SubscriberBecomesTopic { .. } => Exit::Usage,
        E::NotSubscribed { .. } | E::UnknownSchedule { .. } => Exit::NotFound,
        E::ScheduleConflict { .. } | E::ScheduleTarget { .. } => Exit::Usage,
        E::TooLarge { .. }
        | E::Invalid { .. }
        | E::NeverFits { .. }
        | E::BadLabel { .. }
        | E::Uncopyable { .. } => Exit::DataErr,
        E::RawBody { .. } => Exit::Usage,
        E::BrokenSchema { .. } | E::BrokenSchedule { .. } => Exit::IoErr,
        E::Open { .. } | E::NewerSchema { .. } | E::NotSpool { .. } | E::Sqlite(_) => Exit::IoErr,
        E::NetworkFs { .. } | E::Postgres(_) | E::Random(_) | E::Internal(_) => Exit::IoErr,
    }
}

/// True when the error is a closed stdout (`spool … | head`), which ends a command quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
