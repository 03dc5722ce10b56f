//! CSV rows to `data` objects of `invite.requested` events.
//!
//! The header row names the columns: `email`; `groups` (separated by `;`); `locale`,
//! `expires_in_days`, `invited_by`, `external_id`, `redirect_url`; `metadata.KEY` for metadata;
//! every other column (`given_name`, `family_name`, `custom:department`...) is a Cognito
//! attribute — whether the pool has it is checked by the worker, against the live schema.
//! Empty cells are left out. Cells are trimmed; lines starting with `#` are comments. The
//! known column names are matched case-insensitively; attribute names exactly.

use serde_json::{Map, Value};

use super::item::{InputError, Item, Origin};

/// What a column becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Column {
    Email,
    Groups,
    /// A string field of `data` (`locale`, `invited_by`...).
    Field(&'static str),
    ExpiresInDays,
    Metadata(String),
    Attribute(String),
}

const FIELDS: [&str; 4] = ["locale", "invited_by", "external_id", "redirect_url"];

fn column(name: &str) -> Column {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "email" => Column::Email,
        "groups" => Column::Groups,
        "expires_in_days" => Column::ExpiresInDays,
        _ => {
            if let Some(f) = FIELDS.iter().find(|f| **f == lower) {
                Column::Field(f)
            } else if let Some(key) = lower
                .starts_with("metadata.")
                .then(|| &name["metadata.".len()..])
            {
                Column::Metadata(key.to_string())
            } else {
                Column::Attribute(name.to_string())
            }
        }
    }
}

/// The rows of a CSV file (`file` names it in errors), each with its line number.
pub fn read_csv(file: &str, text: &str) -> Result<Vec<Item>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let fail = |reason: String| InputError {
        file: file.to_string(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| fail(format!("cannot read the header row ({e})")))?
        .clone();
    if header.iter().all(str::is_empty) {
        return Err(fail("has no header row".into()));
    }
    let mut columns = Vec::with_capacity(header.len());
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(fail(format!("header column {} has no name", i + 1)));
        }
        if header.iter().take(i).any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(fail(format!("header names the column {name:?} twice")));
        }
        columns.push(column(name));
    }
    if !columns.contains(&Column::Email) {
        return Err(fail(format!(
            "the header row has no email column (it has: {})",
            header.iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut lines = LineIndex::new(text);
    let mut items = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| lines.line_at(p.byte())).unwrap_or(0);
                items.push(Item::Unreadable {
                    origin: Origin::new(file, line),
                    reason: format!("row: cannot be read ({e})"),
                    email: None,
                });
                continue;
            }
        };
        let line = record
            .position()
            .map(|p| lines.line_at(p.byte()))
            .unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() > columns.len() {
            items.push(Item::Unreadable {
                origin: Origin::new(file, line),
                reason: format!(
                    "row: has {} cells but the header names {} columns",
                    record.len(),
                    columns.len()
                ),
                email: email_cell(&columns, &record),
            });
            continue;
        }
        items.push(Item::Data {
            origin: Origin::new(file, line),
            data: row_data(&columns, &record),
        });
    }
    Ok(items)
}

/// Line numbers for record offsets, counted incrementally: records come in file order, so each
/// call scans only the text since the previous one, and a whole file costs one pass (a count from
/// the start for every record made large files quadratic).
struct LineIndex<'a> {
    text: &'a str,
    /// The byte offset counted up to, and the 1-based line it is on.
    offset: usize,
    line: u64,
    /// Bytes scanned so far (for the test that the count stays linear).
    scanned: usize,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
            scanned: 0,
        }
    }

    /// The 1-based line where the record at byte `offset` starts. The csv crate's own line count
    /// goes wrong around comment lines, and its record offsets point at the comment lines read
    /// just before the record, so those are skipped here.
    fn line_at(&mut self, offset: u64) -> u64 {
        let text = self.text;
        let mut start = (offset as usize).min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        if start < self.offset {
            // Not in file order (never expected): count again from the start.
            self.offset = 0;
            self.line = 1;
        }
        let skipped = &text.as_bytes()[self.offset..start];
        self.scanned += skipped.len();
        self.line += skipped.iter().filter(|b| **b == b'\n').count() as u64;
        self.offset = start;
        let mut line = self.line;
        while text[start..].starts_with('#') {
            match text[start..].find('\n') {
                Some(end) => {
                    start += end + 1;
                    line += 1;
                }
                None => break,
            }
        }
        line
    }
}

fn email_cell(columns: &[Column], record: &csv::StringRecord) -> Option<String> {
    let i = columns.iter().position(|c| *c == Column::Email)?;
    record.get(i).filter(|e| !e.is_empty()).map(str::to_string)
}

/// The `data` object for one row; malformed values are passed on as they are, for the event
/// decoder to name.
fn row_data(columns: &[Column], record: &csv::StringRecord) -> Map<String, Value> {
    let mut data = Map::new();
    let mut attributes = Map::new();
    let mut metadata = Map::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let text = || Value::String(cell.to_string());
        match column {
            Column::Email => {
                data.insert("email".into(), text());
            }
            Column::Groups => {
                let groups: Vec<Value> = cell
                    .split(';')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(|g| Value::String(g.to_string()))
                    .collect();
                if !groups.is_empty() {
                    data.insert("groups".into(), Value::Array(groups));
                }
            }
            Column::Field(name) => {
                data.insert((*name).into(), text());
            }
            Column::ExpiresInDays => {
                let value = cell
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| text());
                data.insert("expires_in_days".into(), value);
            }
            Column::Metadata(key) => {
                metadata.insert(key.clone(), text());
            }
            Column::Attribute(name) => {
                attributes.insert(name.clone(), text());
            }
        }
    }
    if !attributes.is_empty() {
        data.insert("attributes".into(), Value::Object(attributes));
    }
    if !metadata.is_empty() {
        data.insert("metadata".into(), Value::Object(metadata));
    }
    data
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(item: &Item) -> (u64, Value) {
        match item {
            Item::Data { origin, data } => (origin.line, Value::Object(data.clone())),
            other => panic!("not a data row: {other:?}"),
        }
    }

    #[test]
    fn columns_map_to_the_event_contract() {
        let csv = "\u{feff}Email,given_name,family_name,custom:department,groups,locale,expires_in_days,invited_by,external_id,redirect_url,metadata.start_date\n\
                   jane@example.com, Jane ,Doe,Engineering,employees; admins ;,en,14,Priya (HR),HR-1,https://app.example.com/,2026-12-01\n";
        let items = read_csv("new.csv", csv).unwrap();
        assert_eq!(items.len(), 1);
        let (line, value) = data(&items[0]);
        assert_eq!(line, 2);
        assert_eq!(
            value,
            json!({
                "email": "jane@example.com",
                "attributes": {"given_name": "Jane", "family_name": "Doe", "custom:department": "Engineering"},
                "groups": ["employees", "admins"],
                "locale": "en",
                "expires_in_days": 14,
                "invited_by": "Priya (HR)",
                "external_id": "HR-1",
                "redirect_url": "https://app.example.com/",
                "metadata": {"start_date": "2026-12-01"}
            })
        );
    }

    #[test]
    fn empty_cells_are_left_out_and_bad_values_passed_on() {
        let csv = "email,given_name,family_name,expires_in_days,groups\n\
                   max@example.com,,Mustermann,soon,\n";
        let (_, value) = data(&read_csv("f.csv", csv).unwrap()[0]);
        assert_eq!(
            value,
            json!({
                "email": "max@example.com",
                "attributes": {"family_name": "Mustermann"},
                "expires_in_days": "soon"
            })
        );
    }

    #[test]
    fn line_numbers_cost_one_pass_over_the_file() {
        let rows = 20_000;
        let text: String = (0..rows)
            .map(|i| format!("p{i}@example.com,Given,Family\n"))
            .collect();
        let mut lines = LineIndex::new(&text);
        let mut offset = 0;
        for (i, row) in text.split_inclusive('\n').enumerate() {
            assert_eq!(lines.line_at(offset as u64), i as u64 + 1);
            offset += row.len();
        }
        assert!(
            lines.scanned <= text.len(),
            "scanned {} bytes of a {}-byte file",
            lines.scanned,
            text.len()
        );
        let items = read_csv("big.csv", &format!("email,given_name,family_name\n{text}")).unwrap();
        assert_eq!(items.len(), rows);
        assert_eq!(items[rows - 1].origin().line, rows as u64 + 1);
    }

    #[test]
    fn line_numbers_count_comments_quoted_newlines_and_skip_blank_rows() {
        let csv = "# new starters, December\n\
                   email,given_name\n\
                   a@example.com,A\n\
                   ,\n\
                   # a comment\n\
                   b@example.com,\"two\nlines\"\n\
                   # two comments\n\
                   # in a row\n\
                   c@example.com,C\n";
        let lines: Vec<u64> = read_csv("f.csv", csv)
            .unwrap()
            .iter()
            .map(|i| data(i).0)
            .collect();
        assert_eq!(lines, [3, 6, 10]);
    }

    #[test]
    fn a_row_with_too_many_cells_is_unreadable() {
        let csv = "email,given_name\na@example.com,A,extra\n";
        match &read_csv("f.csv", csv).unwrap()[0] {
            Item::Unreadable {
                origin,
                reason,
                email,
            } => {
                assert_eq!(origin.line, 2);
                assert_eq!(reason, "row: has 3 cells but the header names 2 columns");
                assert_eq!(email.as_deref(), Some("a@example.com"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_header_is_an_error_for_the_whole_file() {
        let e = read_csv("f.csv", "name,given_name\nx,y\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.csv: the header row has no email column (it has: name, given_name)"
        );
        let e = read_csv("f.csv", "email,Email\n").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = read_csv("f.csv", "email,,x\n").unwrap_err();
        assert!(e.to_string().contains("column 2 has no name"), "{e}");
        assert!(read_csv("f.csv", "").is_err());
    }
}
