//! `--results FILE`: one CSV line per input row — `line,email,event_id,status,message,file` —
//! so the rows that need fixing can be found, fixed and sent again (sent rows keep their event
//! ids, so sending the whole file again is harmless).

use std::io::Write;

use super::EnqueueReport;

/// The column names, in order.
pub const HEADER: [&str; 6] = ["line", "email", "event_id", "status", "message", "file"];

/// Writes `report` as CSV.
pub fn write_results<W: Write>(report: &EnqueueReport, out: W) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for r in &report.rows {
        w.write_record([
            r.origin.line.to_string().as_str(),
            r.email.as_deref().unwrap_or(""),
            r.event_id.as_deref().unwrap_or(""),
            r.status.as_str(),
            r.message.as_str(),
            r.origin.file.as_str(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::enqueue::{Origin, RowResult, RowStatus};

    #[test]
    fn one_line_per_row_with_quoting() {
        let report = EnqueueReport {
            dry_run: false,
            rows: vec![
                RowResult {
                    origin: Origin::new("new.csv", 2),
                    email: Some("jane@example.com".into()),
                    event_id: Some("bulk-1".into()),
                    status: RowStatus::Sent,
                    message: String::new(),
                },
                RowResult {
                    origin: Origin::new("new.csv", 7),
                    email: Some("jane.example.com".into()),
                    event_id: Some("bulk-2".into()),
                    status: RowStatus::Invalid,
                    message: "data.email: has no @, really".into(),
                },
            ],
        };
        let mut out = Vec::new();
        write_results(&report, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "line,email,event_id,status,message,file\n\
             2,jane@example.com,bulk-1,sent,,new.csv\n\
             7,jane.example.com,bulk-2,invalid,\"data.email: has no @, really\",new.csv\n"
        );
    }
}
