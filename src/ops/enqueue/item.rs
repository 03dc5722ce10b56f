//! What reading an input yields, whatever the format: [`Item`]s, each with its [`Origin`], or an
//! [`InputError`] for a file that cannot be read at all. The readers ([`super::input`],
//! [`super::csv_rows`]) produce them; [`super::prepare`] turns them into messages.

use serde_json::{Map, Value};

/// Where an item came from: a file and a line (0 for a whole file or the flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: u64,
}

impl Origin {
    pub fn new(file: &str, line: u64) -> Self {
        Self {
            file: file.to_string(),
            line,
        }
    }

    /// `line 7`, or `new-starters.csv line 7` when several files are involved, or the file
    /// alone for a whole-file item.
    pub fn label(&self, with_file: bool) -> String {
        match (self.line, with_file) {
            (0, _) => self.file.clone(),
            (n, true) => format!("{} line {n}", self.file),
            (n, false) => format!("line {n}"),
        }
    }
}

/// One thing to send, as read.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// The `data` of an `invite.requested` event (a CSV row, a JSON Lines data object, flags).
    Data {
        origin: Origin,
        data: Map<String, Value>,
    },
    /// A whole event, exactly as written.
    Event { origin: Origin, text: String },
    /// Could not be read into either; nothing can be sent for it.
    Unreadable {
        origin: Origin,
        reason: String,
        email: Option<String>,
    },
}

impl Item {
    pub fn origin(&self) -> &Origin {
        match self {
            Item::Data { origin, .. }
            | Item::Event { origin, .. }
            | Item::Unreadable { origin, .. } => origin,
        }
    }
}

/// A file that cannot be read at all (missing, no header row...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct InputError {
    pub file: String,
    pub reason: String,
}
