//! Message attributes: checked as SQS checks them, kept as spool headers
//! (the value under the attribute's name; a type other than plain `String`
//! noted in the header `spool-sqs-types`), and digested as SQS digests them
//! (`MD5OfMessageBody`, `MD5OfMessageAttributes`), since the SDKs compare.

use md5::{Digest as _, Md5};
use serde_json::{Map, Value};

use super::errors::SqsError;
use super::sigv4::hex;

/// The header that keeps the types of the attributes that are not plain
/// `String`: `name=Type,name=Type`.
pub const TYPES_HEADER: &str = "spool-sqs-types";

/// Attributes one message may carry, as SQS allows.
const MAX_ATTRIBUTES: usize = 10;

/// One String or Number message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// `String`, `Number`, or one of them with a custom label (`Number.int`).
    pub data_type: String,
    /// Its value as text.
    pub value: String,
}

/// The lower-case hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// `MD5OfMessageAttributes` as SQS computes it: the attributes sorted by
/// name, each as its name, its type (both with a 4-byte big-endian length)
/// and a transport byte (1: string) followed by its value with its length.
/// `None` when there are none.
pub fn md5_of_attributes(attributes: &[Attribute]) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut sorted: Vec<&Attribute> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut bytes = Vec::new();
    let put = |bytes: &mut Vec<u8>, part: &[u8]| {
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
        bytes.extend_from_slice(part);
    };
    for a in sorted {
        put(&mut bytes, a.name.as_bytes());
        put(&mut bytes, a.data_type.as_bytes());
        bytes.push(1);
        put(&mut bytes, a.value.as_bytes());
    }
    Some(md5_hex(&bytes))
}

/// The `MessageAttributes` of a send request, checked.
pub fn parse(input: Option<&Value>) -> Result<Vec<Attribute>, SqsError> {
    let Some(value) = input else {
        return Ok(Vec::new());
    };
    let map = value
        .as_object()
        .ok_or_else(|| SqsError::invalid("MessageAttributes must be a map"))?;
    if map.len() > MAX_ATTRIBUTES {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            map.len()
        )));
    }
    map.iter().map(|(name, v)| attribute(name, v)).collect()
}

fn attribute(name: &str, value: &Value) -> Result<Attribute, SqsError> {
    check_name(name)?;
    let data_type = value
        .get("DataType")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SqsError::invalid(format!(
                "The message attribute '{name}' must contain a DataType."
            ))
        })?;
    let base = data_type.split('.').next().unwrap_or("");
    if data_type.len() > 256 {
        return Err(SqsError::invalid(format!(
            "The message attribute '{name}' has a DataType longer than 256 characters."
        )));
    }
    match base {
        "String" | "Number" => {}
        "Binary" => {
            return Err(SqsError::invalid(format!(
                "The message attribute '{name}' is Binary: spool keeps String and Number attributes only (as headers)."
            )));
        }
        _ => {
            return Err(SqsError::invalid(format!(
                "The message attribute '{name}' has an invalid message attribute type {data_type}: use String or Number."
            )));
        }
    }
    let text = value
        .get("StringValue")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            SqsError::invalid(format!(
                "The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{base}'."
            ))
        })?;
    if base == "Number" && !is_number(text) {
        return Err(SqsError::invalid(format!(
            "Can't cast the value of message attribute '{name}' to a number: `{text}`."
        )));
    }
    Ok(Attribute {
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        value: text.to_owned(),
    })
}

/// SQS's rules for attribute names: 1–256 of letters, digits, `_ - .`, no
/// `..`, not starting or ending with `.`, not starting with `AWS.` or
/// `Amazon.`; spool adds its own types header.
fn check_name(name: &str) -> Result<(), SqsError> {
    let lower = name.to_ascii_lowercase();
    let fine = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.contains("..")
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if !fine {
        return Err(SqsError::invalid(format!(
            "Message attribute name '{name}' is invalid: use 1 to 256 letters, digits, '_', '-' and '.', not starting with 'AWS.' or 'Amazon.'."
        )));
    }
    if lower == TYPES_HEADER {
        return Err(SqsError::invalid(format!(
            "Message attribute name '{name}' is reserved: spool keeps the attributes' types under it."
        )));
    }
    Ok(())
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits.parse::<f64>().is_ok_and(f64::is_finite)
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

/// The headers that keep `attributes`: each value under its name, then the
/// types header when some type is not plain `String`.
pub fn to_headers(attributes: &[Attribute]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = attributes
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    let types: Vec<String> = attributes
        .iter()
        .filter(|a| a.data_type != "String")
        .map(|a| format!("{}={}", a.name, a.data_type))
        .collect();
    if !types.is_empty() {
        headers.push((TYPES_HEADER.to_owned(), types.join(",")));
    }
    headers
}

/// The attributes a message's headers (a JSON object text) stand for:
/// every header but the types header, typed by it (`String` otherwise).
pub fn from_headers(headers: Option<&str>) -> Vec<Attribute> {
    let Some(map) = headers.and_then(|h| serde_json::from_str::<Map<String, Value>>(h).ok()) else {
        return Vec::new();
    };
    let types: Vec<(&str, &str)> = map
        .get(TYPES_HEADER)
        .and_then(Value::as_str)
        .map(|t| t.split(',').filter_map(|p| p.split_once('=')).collect())
        .unwrap_or_default();
    map.iter()
        .filter(|(name, _)| name.as_str() != TYPES_HEADER)
        .map(|(name, value)| Attribute {
            name: name.clone(),
            data_type: types
                .iter()
                .find(|(n, _)| n == name)
                .map_or("String", |(_, t)| t)
                .to_owned(),
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

/// The attributes as SQS answers them: `{"name":{"DataType","StringValue"}}`.
pub fn to_json(attributes: &[Attribute]) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    serde_json::json!({ "DataType": a.data_type, "StringValue": a.value }),
                )
            })
            .collect(),
    )
}

/// True when `name` is asked for by ReceiveMessage's
/// `MessageAttributeNames`: `All`, `.*`, a `prefix.*` or the name itself.
pub fn wanted(asked: &[String], name: &str) -> bool {
    asked.iter().any(|a| {
        a == "All"
            || a == ".*"
            || a == name
            || a.strip_suffix(".*")
                .is_some_and(|prefix| name.starts_with(&format!("{prefix}.")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, data_type: &str, value: &str) -> Attribute {
        Attribute {
            name: name.into(),
            data_type: data_type.into(),
            value: value.into(),
        }
    }

    #[test]
    fn digests_follow_sqs() {
        // MD5 of the empty string and of "hello".
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        // The encoding, written out: sorted by name, lengths big-endian.
        let attrs = [attr("b", "Number", "12"), attr("a", "String", "x")];
        let mut expected = Vec::new();
        for (n, t, v) in [("a", "String", "x"), ("b", "Number", "12")] {
            for part in [n, t] {
                expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
                expected.extend_from_slice(part.as_bytes());
            }
            expected.push(1);
            expected.extend_from_slice(&(v.len() as u32).to_be_bytes());
            expected.extend_from_slice(v.as_bytes());
        }
        assert_eq!(md5_of_attributes(&attrs), Some(md5_hex(&expected)));
        assert_eq!(md5_of_attributes(&[]), None);
    }

    #[test]
    fn attributes_survive_headers_with_their_types() {
        let attrs = vec![
            attr("price", "Number.float", "1.50"),
            attr("who", "String", "ann"),
        ];
        let headers = to_headers(&attrs);
        let json = crate::commands::publish::headers_json(&headers).expect("headers");
        let mut back = from_headers(Some(&json));
        back.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, attrs);
        // A header published by spool is a String attribute.
        assert_eq!(
            from_headers(Some(r#"{"source":"shop"}"#)),
            vec![attr("source", "String", "shop")]
        );
    }

    #[test]
    fn bad_attributes_are_refused() {
        let refused = |v: Value| parse(Some(&v)).is_err();
        assert!(refused(
            serde_json::json!({"b": {"DataType": "Binary", "BinaryValue": "AA=="}})
        ));
        assert!(refused(
            serde_json::json!({"n": {"DataType": "Number", "StringValue": "abc"}})
        ));
        assert!(refused(
            serde_json::json!({"AWS.x": {"DataType": "String", "StringValue": "v"}})
        ));
        assert!(refused(
            serde_json::json!({"s": {"DataType": "String", "StringValue": ""}})
        ));
        assert!(refused(
            serde_json::json!({TYPES_HEADER: {"DataType": "String", "StringValue": "v"}})
        ));
        let fine = parse(Some(
            &serde_json::json!({"n": {"DataType": "Number", "StringValue": "-1.5e3"}}),
        ))
        .expect("a number");
        assert_eq!(fine, vec![attr("n", "Number", "-1.5e3")]);
        assert!(wanted(&["All".into()], "x"));
        assert!(wanted(&["a.*".into()], "a.b"));
        assert!(!wanted(&["a.*".into()], "ab"));
        assert!(!wanted(&[], "x"));
    }
}
