//! Why a command failed, and the exit status that tells a script.

use std::fmt;
use std::process::ExitCode;

/// The exit statuses (see `--help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done; nothing stuck or parked where the command looks.
    Ok = 0,
    /// The command failed.
    Error = 1,
    /// The command line is wrong (clap uses it too).
    Usage = 2,
    /// Done, and something needs attention: stuck shards, parked rows.
    Attention = 3,
    /// Nothing to act on.
    NotFound = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A command that could not be done: what to print, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn error(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Error,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A library error, with a hint when the outbox tables are missing.
impl From<diesel_outbox::Error> for Failure {
    fn from(error: diesel_outbox::Error) -> Self {
        let message = error.to_string();
        let missing = message.contains("no such table") || message.contains("does not exist");
        if missing {
            Failure::error(format!(
                "{message}: are the outbox tables there? Create them with `diesel-outbox migrate`"
            ))
        } else {
            Failure::error(message)
        }
    }
}
