//! Reading what to enqueue: CSV files, JSON Lines (of `data` objects or of whole events), a JSON
//! file holding one whole event, or a single invite given as command-line flags.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::csv_rows::read_csv;
use super::item::{InputError, Item, Origin};

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// From the file name (`.csv`, `.jsonl`/`.ndjson`, `.json`), else from the content.
    #[default]
    Auto,
    Csv,
    Jsonl,
    /// One whole event (or one `data` object) per file.
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "csv" => Ok(Self::Csv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown format {other:?}: use csv, jsonl, json or auto"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Json => "json",
        })
    }
}

/// Reads one file.
pub fn read_file(path: &Path, format: Format) -> Result<Vec<Item>, InputError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError {
        file: name.clone(),
        reason: format!("cannot be read ({e})"),
    })?;
    parse(&name, &text, format)
}

/// The items in `text`, read from the file `name`.
pub fn parse(name: &str, text: &str, format: Format) -> Result<Vec<Item>, InputError> {
    match resolve(name, text, format) {
        Format::Csv => read_csv(name, text),
        Format::Jsonl => Ok(read_jsonl(name, text)),
        Format::Json | Format::Auto => Ok(vec![classify(Origin::new(name, 0), text)]),
    }
}

/// The format of a file under `--format auto`.
fn resolve(name: &str, text: &str, format: Format) -> Format {
    if format != Format::Auto {
        return format;
    }
    let lower = name.to_ascii_lowercase();
    let whole_json = || serde_json::from_str::<Value>(text).is_ok();
    if lower.ends_with(".csv") {
        Format::Csv
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        Format::Jsonl
    } else if lower.ends_with(".json") {
        // A .json file is one event, unless it is really JSON Lines.
        if !whole_json() && looks_like_jsonl(text) {
            Format::Jsonl
        } else {
            Format::Json
        }
    } else if text.trim_start().starts_with('{') {
        if whole_json() {
            Format::Json
        } else {
            Format::Jsonl
        }
    } else {
        Format::Csv
    }
}

fn looks_like_jsonl(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.len() > 1
        && lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
}

fn read_jsonl(name: &str, text: &str) -> Vec<Item> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| classify(Origin::new(name, i as u64 + 1), l.trim()))
        .collect()
}

/// An object with any envelope field is a whole event; any other object is the `data` of an
/// `invite.requested`; everything else is an event the decoder will refuse with a reason.
fn classify(origin: Origin, text: &str) -> Item {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map))
            if !["version", "type", "id", "data"]
                .iter()
                .any(|k| map.contains_key(*k)) =>
        {
            Item::Data { origin, data: map }
        }
        _ => Item::Event {
            origin,
            text: text.to_string(),
        },
    }
}

/// One invite from command-line flags.
#[derive(Clone, Debug, Default)]
pub struct SingleInvite {
    pub email: String,
    /// `NAME=VALUE`.
    pub attributes: Vec<String>,
    pub groups: Vec<String>,
    pub locale: Option<String>,
    pub expires_in_days: Option<u64>,
    pub invited_by: Option<String>,
    pub external_id: Option<String>,
    pub redirect_url: Option<String>,
}

impl SingleInvite {
    /// The invite as an item; a malformed `--attribute` is an error.
    pub fn into_item(self) -> Result<Item, InputError> {
        let mut data = Map::new();
        data.insert("email".into(), Value::String(self.email));
        let mut attributes = Map::new();
        for a in &self.attributes {
            let (name, value) = a.split_once('=').ok_or_else(|| InputError {
                file: "--attribute".into(),
                reason: format!("{a:?}: expected NAME=VALUE, e.g. given_name=Jane"),
            })?;
            attributes.insert(name.trim().to_string(), Value::String(value.to_string()));
        }
        if !attributes.is_empty() {
            data.insert("attributes".into(), Value::Object(attributes));
        }
        if !self.groups.is_empty() {
            data.insert(
                "groups".into(),
                Value::Array(self.groups.into_iter().map(Value::String).collect()),
            );
        }
        let fields = [
            ("locale", self.locale),
            ("invited_by", self.invited_by),
            ("external_id", self.external_id),
            ("redirect_url", self.redirect_url),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                data.insert(name.into(), Value::String(v));
            }
        }
        if let Some(days) = self.expires_in_days {
            data.insert("expires_in_days".into(), Value::from(days));
        }
        Ok(Item::Data {
            origin: Origin::new("--email", 0),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_are_picked_from_names_then_content() {
        let event = r#"{"version":1,"type":"invite.requested","id":"e","data":{}}"#;
        let pretty = "{\n  \"version\": 1,\n  \"type\": \"invite.requested\"\n}\n";
        let lines = format!("{event}\n{event}\n");
        assert_eq!(resolve("a.csv", "", Format::Auto), Format::Csv);
        assert_eq!(resolve("a.JSONL", "", Format::Auto), Format::Jsonl);
        assert_eq!(resolve("a.ndjson", "", Format::Auto), Format::Jsonl);
        assert_eq!(resolve("a.json", pretty, Format::Auto), Format::Json);
        assert_eq!(resolve("a.json", &lines, Format::Auto), Format::Jsonl);
        assert_eq!(resolve("a.json", "{broken", Format::Auto), Format::Json);
        assert_eq!(resolve("stdin", &lines, Format::Auto), Format::Jsonl);
        assert_eq!(resolve("stdin", pretty, Format::Auto), Format::Json);
        assert_eq!(resolve("stdin", "email\n", Format::Auto), Format::Csv);
        assert_eq!(resolve("a.csv", "", Format::Jsonl), Format::Jsonl);
    }

    #[test]
    fn json_lines_hold_data_objects_or_whole_events() {
        let text = "{\"email\":\"a@example.com\"}\n\n{\"version\":1,\"type\":\"invite.revoke\"}\nnot json\n";
        let items = parse("x.jsonl", text, Format::Auto).unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            matches!(&items[0], Item::Data { origin, data } if origin.line == 1 && data["email"] == "a@example.com")
        );
        assert!(matches!(&items[1], Item::Event { origin, .. } if origin.line == 3));
        assert!(
            matches!(&items[2], Item::Event { origin, text } if origin.line == 4 && text == "not json")
        );
    }

    #[test]
    fn a_json_file_is_one_item_kept_as_written() {
        let text =
            "{\n \"version\": 1, \"type\": \"invite.requested\", \"id\": \"e\", \"data\": {}\n}\n";
        let items = parse("one.json", text, Format::Auto).unwrap();
        assert_eq!(
            items,
            [Item::Event {
                origin: Origin::new("one.json", 0),
                text: text.to_string()
            }]
        );
        assert_eq!(items[0].origin().label(false), "one.json");
    }

    #[test]
    fn labels_name_the_line_and_the_file_when_needed() {
        let o = Origin::new("new.csv", 7);
        assert_eq!(o.label(false), "line 7");
        assert_eq!(o.label(true), "new.csv line 7");
    }

    #[test]
    fn flags_make_a_data_item() {
        let item = SingleInvite {
            email: "a@b.com".into(),
            attributes: vec!["given_name=Jane".into(), "family_name=Doe".into()],
            groups: vec!["employees".into()],
            locale: Some("en".into()),
            invited_by: Some("Priya".into()),
            external_id: Some("HR-1".into()),
            expires_in_days: Some(3),
            ..Default::default()
        }
        .into_item()
        .unwrap();
        let Item::Data { data, .. } = item else {
            panic!("{item:?}")
        };
        assert_eq!(
            Value::Object(data),
            json!({
                "email": "a@b.com",
                "attributes": {"given_name": "Jane", "family_name": "Doe"},
                "groups": ["employees"],
                "locale": "en",
                "invited_by": "Priya",
                "external_id": "HR-1",
                "expires_in_days": 3
            })
        );
        let e = SingleInvite {
            email: "a@b.com".into(),
            attributes: vec!["given_name".into()],
            ..Default::default()
        }
        .into_item()
        .unwrap_err();
        assert!(e.to_string().contains("expected NAME=VALUE"), "{e}");
    }
}
