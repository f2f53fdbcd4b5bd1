//! The lab's errors, with the context to act on them.

use std::io;
use std::path::PathBuf;

use crate::model::DescriptionError;

/// What went wrong, with the context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab description is invalid; the message names the key (and line).
    #[error("{}: {source}", file.display())]
    Description { file: PathBuf, source: DescriptionError },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// A file the lab wrote (`lab.json`, `expected.json`) in the wrong form.
    #[error("{context}: {source}")]
    Json { context: String, source: serde_json::Error },
    /// Building a lab needs root.
    #[error("the lab needs root (network namespaces, veth, sysctl)")]
    NotRoot,
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// Bad arguments (the CLI exits 64).
    #[error("{0}")]
    Usage(String),
    /// The lab is not in the state the operation needs.
    #[error("{0}")]
    State(String),
}

impl LabError {
    pub fn io(context: impl Into<String>, source: io::Error) -> LabError {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A run prefix that is not 1-8 of `[a-z0-9]` starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix {0:?}: use 1-8 of a-z and 0-9, starting with a letter")]
pub struct PrefixError(pub String);
