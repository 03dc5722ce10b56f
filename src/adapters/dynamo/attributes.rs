//! JSON values <-> DynamoDB attribute values, so a record is stored as native attributes (readable
//! in the console, usable in expressions) rather than as one opaque JSON string.
//!
//! | JSON   | DynamoDB |
//! |--------|----------|
//! | object | `M`      |
//! | array  | `L`      |
//! | string | `S`      |
//! | number | `N`      |
//! | bool   | `BOOL`   |
//! | null   | `NULL`   |
//!
//! Numbers travel as their decimal text. On the way back an `N` that is an integer becomes a JSON
//! integer (`u64`, else `i64`) and anything else an `f64`. DynamoDB normalises numbers it stores
//! (`2.0` comes back as `2`), so a float with no fractional part in free-form metadata may return
//! as an integer; every number the record itself defines is an integer and round-trips exactly.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

/// Converts a JSON value to the attribute value that stores it.
pub fn to_attribute_value(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute_value).collect()),
        Value::Object(fields) => AttributeValue::M(to_attribute_map(fields)),
    }
}

/// Converts the fields of a JSON object to an attribute map (a DynamoDB item or `M` value).
pub fn to_attribute_map(fields: &Map<String, Value>) -> HashMap<String, AttributeValue> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), to_attribute_value(v)))
        .collect()
}

/// Converts an attribute value back to JSON. Sets and binary values, which this service never
/// writes, are an error naming the attribute's path.
pub fn from_attribute_value(value: &AttributeValue) -> Result<Value, String> {
    convert(value, "$")
}

/// Converts an attribute map (a DynamoDB item or `M` value) back to a JSON object.
pub fn from_attribute_map(
    fields: &HashMap<String, AttributeValue>,
) -> Result<Map<String, Value>, String> {
    convert_map(fields, "$")
}

fn convert(value: &AttributeValue, path: &str) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => {
            Value::Number(parse_number(n).ok_or_else(|| format!("{path}: {n:?} is not a number"))?)
        }
        AttributeValue::L(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| convert(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(fields) => Value::Object(convert_map(fields, path)?),
        other => {
            return Err(format!(
                "{path}: unsupported attribute type {}",
                type_name(other)
            ))
        }
    })
}

fn convert_map(
    fields: &HashMap<String, AttributeValue>,
    path: &str,
) -> Result<Map<String, Value>, String> {
    fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), convert(v, &format!("{path}.{k}"))?)))
        .collect()
}

fn parse_number(text: &str) -> Option<Number> {
    let text = text.trim();
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::B(_) => "B",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Ss(_) => "SS",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_json_shape() {
        let value = json!({
            "s": "text", "empty": "", "t": true, "f": false, "null": null,
            "u": u64::MAX, "i": -42, "float": 1.25, "whole_float": 2.0, "tiny": 1e-7, "big": 1e300,
            "list": [1, "two", [3.5], {"four": null}], "nested": {"deeper": {"x": [true]}}
        });
        let back = from_attribute_value(&to_attribute_value(&value)).expect("round trip");
        assert_eq!(back, value);
    }

    #[test]
    fn maps_types_to_native_attributes() {
        let av = to_attribute_value(&json!({"n": 7, "l": [null], "b": true}));
        let AttributeValue::M(m) = av else {
            panic!("object becomes M")
        };
        assert_eq!(m["n"], AttributeValue::N("7".into()));
        assert_eq!(m["l"], AttributeValue::L(vec![AttributeValue::Null(true)]));
        assert_eq!(m["b"], AttributeValue::Bool(true));
    }

    #[test]
    fn reads_numbers_dynamodb_normalised() {
        assert_eq!(
            from_attribute_value(&AttributeValue::N("12".into())).unwrap(),
            json!(12)
        );
        assert_eq!(
            from_attribute_value(&AttributeValue::N("-3".into())).unwrap(),
            json!(-3)
        );
        assert_eq!(
            from_attribute_value(&AttributeValue::N("0.5".into())).unwrap(),
            json!(0.5)
        );
        assert_eq!(
            from_attribute_value(&AttributeValue::N("1E+3".into())).unwrap(),
            json!(1000.0)
        );
    }

    #[test]
    fn rejects_what_it_never_writes_with_the_path() {
        let err = from_attribute_value(&AttributeValue::M(HashMap::from([(
            "a".to_string(),
            AttributeValue::L(vec![AttributeValue::Ss(vec!["x".into()])]),
        )])))
        .unwrap_err();
        assert!(err.contains("$.a[0]") && err.contains("SS"), "{err}");
        let err = from_attribute_value(&AttributeValue::N("abc".into())).unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }
}
