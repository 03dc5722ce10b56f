//! What bootstrap did, resource by resource, and what it records in the state file.

use std::fmt;
use std::path::PathBuf;

/// Resource labels used in the report.
pub mod resource {
    pub const QUEUE: &str = "queue";
    pub const DEAD_LETTER_QUEUE: &str = "dead-letter queue";
    pub const EVENTS_QUEUE: &str = "events queue";
    pub const TABLE: &str = "table";
    pub const USER_POOL: &str = "user pool";
    pub const APP_CLIENT: &str = "app client";
    pub const GROUP: &str = "group";
    pub const EMAIL_IDENTITY: &str = "email identity";
    pub const FEEDBACK_DLQ: &str = "feedback dead-letter queue";
    pub const FEEDBACK_TOPIC: &str = "feedback topic";
    pub const FEEDBACK_QUEUE: &str = "feedback queue";
    pub const FEEDBACK_SUBSCRIPTION: &str = "feedback subscription";
    pub const CONFIGURATION_SET: &str = "configuration set";
    pub const EVENT_DESTINATION: &str = "event destination";
}

/// How bootstrap came by a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Bootstrap created it.
    Created,
    /// It existed already and bootstrap found it by name.
    Found,
    /// The configuration named it.
    Configured,
    /// Not needed with this configuration.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Found => "found",
            Outcome::Configured => "configured",
            Outcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    /// One of the [`resource`] labels.
    pub resource: &'static str,
    /// The URL, id or name.
    pub id: String,
    pub outcome: Outcome,
    /// Changes made to an existing resource, and things the operator should know.
    pub notes: Vec<String>,
    /// Where the id goes in the state file (`section`, `key`), if it is recorded.
    pub state_key: Option<(&'static str, &'static str)>,
}

/// What bootstrap did. `Display` prints an aligned table.
#[derive(Clone, Debug)]
pub struct BootstrapReport {
    pub rows: Vec<ReportRow>,
    /// The state file the created and found resources are recorded in.
    pub state_file: PathBuf,
}

impl BootstrapReport {
    pub(crate) fn new(state_file: PathBuf) -> Self {
        Self {
            rows: Vec::new(),
            state_file,
        }
    }

    pub(crate) fn push(
        &mut self,
        resource: &'static str,
        id: impl Into<String>,
        outcome: Outcome,
        notes: Vec<String>,
    ) {
        self.add(ReportRow {
            resource,
            id: id.into(),
            outcome,
            notes,
            state_key: None,
        });
    }

    /// Adds a row whose id is recorded under `[section] key` when it was created or found.
    pub(crate) fn push_recorded(
        &mut self,
        resource: &'static str,
        id: impl Into<String>,
        outcome: Outcome,
        notes: Vec<String>,
        state_key: (&'static str, &'static str),
    ) {
        self.add(ReportRow {
            resource,
            id: id.into(),
            outcome,
            notes,
            state_key: Some(state_key),
        });
    }

    /// Logs the row as well: if a later step fails, the log still says what was done.
    fn add(&mut self, row: ReportRow) {
        tracing::info!(resource = row.resource, id = %row.id, outcome = %row.outcome, notes = ?row.notes, "bootstrap");
        self.rows.push(row);
    }

    /// The first row for `resource`.
    pub fn get(&self, resource: &str) -> Option<&ReportRow> {
        self.rows.iter().find(|r| r.resource == resource)
    }

    /// The rows of resources bootstrap created.
    pub fn created(&self) -> impl Iterator<Item = &ReportRow> {
        self.rows.iter().filter(|r| r.outcome == Outcome::Created)
    }

    /// `(section, key, value)` for every recorded row that was created or found (configured ones
    /// already come from the configuration).
    pub(crate) fn state_entries(&self) -> Vec<(&'static str, &'static str, String)> {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Created | Outcome::Found))
            .filter_map(|r| {
                r.state_key
                    .map(|(section, key)| (section, key, r.id.clone()))
            })
            .collect()
    }
}

impl fmt::Display for BootstrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADERS: [&str; 3] = ["RESOURCE", "ID / URL", "STATUS"];
        let width = |i: usize, cell: fn(&ReportRow) -> String| {
            self.rows
                .iter()
                .map(|r| cell(r).chars().count())
                .chain([HEADERS[i].len()])
                .max()
                .unwrap_or(0)
        };
        let w0 = width(0, |r| r.resource.to_string());
        let w1 = width(1, |r| r.id.clone());
        let w2 = width(2, |r| r.outcome.to_string());
        writeln!(
            f,
            "{:<w0$}  {:<w1$}  {}",
            HEADERS[0], HEADERS[1], HEADERS[2]
        )?;
        for row in &self.rows {
            let status = row.outcome.as_str();
            if row.notes.is_empty() {
                writeln!(f, "{:<w0$}  {:<w1$}  {status}", row.resource, row.id)?;
            } else {
                writeln!(
                    f,
                    "{:<w0$}  {:<w1$}  {status:<w2$}  ({})",
                    row.resource,
                    row.id,
                    row.notes.join("; ")
                )?;
            }
        }
        if !self.state_entries().is_empty() {
            write!(f, "recorded in {}", self.state_file.display())?;
        } else {
            write!(f, "nothing to record in {}", self.state_file.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootstrapReport {
        let mut report = BootstrapReport::new(PathBuf::from(".local/bootstrap.toml"));
        report.push_recorded(
            resource::QUEUE,
            "http://localhost/1/q",
            Outcome::Created,
            vec![],
            ("queue", "url"),
        );
        report.push_recorded(
            resource::DEAD_LETTER_QUEUE,
            "http://localhost/1/q-dlq",
            Outcome::Found,
            vec!["redrive policy added".into()],
            ("queue", "dlq_url"),
        );
        report.push_recorded(
            resource::USER_POOL,
            "us-east-1_abc",
            Outcome::Configured,
            vec![],
            ("cognito", "user_pool_id"),
        );
        report.push(
            resource::EMAIL_IDENTITY,
            "no-reply@example.com",
            Outcome::Skipped,
            vec!["email.transport is smtp".into()],
        );
        report
    }

    #[test]
    fn prints_an_aligned_table() {
        let text = sample().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "RESOURCE           ID / URL                  STATUS"
        );
        assert_eq!(
            lines[1],
            "queue              http://localhost/1/q      created"
        );
        assert_eq!(
            lines[2],
            "dead-letter queue  http://localhost/1/q-dlq  found       (redrive policy added)"
        );
        assert_eq!(
            lines[3],
            "user pool          us-east-1_abc             configured"
        );
        assert_eq!(
            lines[4],
            "email identity     no-reply@example.com      skipped     (email.transport is smtp)"
        );
        assert_eq!(lines[5], "recorded in .local/bootstrap.toml");
    }

    #[test]
    fn records_only_created_and_found_resources() {
        let entries = sample().state_entries();
        assert_eq!(
            entries,
            vec![
                ("queue", "url", "http://localhost/1/q".to_string()),
                ("queue", "dlq_url", "http://localhost/1/q-dlq".to_string())
            ]
        );
    }
}
