//! Event contracts: the JSON Schema a queue or topic checks every message
//! against on publish.
//!
//! A [`Contract`] is a schema compiled once and reused for a whole batch, so
//! checking a message costs one parse of its body and one walk of the
//! compiled rules. Drafts 2020-12 (the default when `$schema` is absent),
//! 2019-09, 7, 6 and 4 are understood, through the `jsonschema` crate built
//! without its file and network resolvers: a `$ref` may only point inside the
//! schema itself, and one that points elsewhere is refused when the schema is
//! set, not discovered on the first publish.

use std::fmt;

use serde_json::Value;

/// A compiled JSON Schema, with the text it was compiled from.
pub struct Contract {
    text: String,
    value: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("text", &self.text)
            .finish()
    }
}

/// Why a message does not meet a contract: where, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The JSON pointer of the failing part of the message (empty: the whole message).
    pub pointer: String,
    /// The rule it broke, in words (`-5 is less than the minimum of 0`).
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(root): {}", self.reason)
        } else {
            write!(f, "{}: {}", self.pointer.escape_debug(), self.reason)
        }
    }
}

/// A reason longer than this names the value as "the value" instead of
/// quoting it: a message may be a megabyte of JSON.
const MAX_REASON: usize = 200;

impl Contract {
    /// Compiles a schema from its text. The error is the reason it was
    /// refused, for people: not JSON, not a valid schema, or a `$ref` that
    /// points outside the document.
    pub fn compile(text: &str) -> Result<Contract, String> {
        let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let reason = e.to_string();
            let reason = reason.split(" at line ").next().unwrap_or(&reason);
            format!(
                "it is not JSON: {reason} at line {}, column {}",
                e.line(),
                e.column()
            )
        })?;
        if !value.is_object() && !value.is_boolean() {
            return Err("a schema is a JSON object (or `true` or `false`)".into());
        }
        let validator = jsonschema::options()
            .offline()
            .build(&value)
            .map_err(|e| compile_error(&e))?;
        Ok(Contract {
            text: text.to_owned(),
            value,
            validator,
        })
    }

    /// The schema text, as given (surrounding whitespace trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when `other` is the same schema, written the same or differently
    /// (key order and whitespace do not count).
    pub fn same_as(&self, other: &Contract) -> bool {
        self.value == other.value
    }

    /// True when the JSON `text` is this schema, written the same or differently.
    pub fn same_text(&self, text: &str) -> bool {
        serde_json::from_str::<Value>(text).is_ok_and(|v| v == self.value)
    }

    /// Checks a parsed message; the first rule it breaks is the error.
    pub fn check(&self, message: &Value) -> Result<(), Violation> {
        match self.validator.validate(message) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut reason = e.to_string();
                if reason.chars().count() > MAX_REASON {
                    reason = e.masked_with("the value").to_string();
                }
                Err(Violation {
                    pointer: e.instance_path().as_str().to_owned(),
                    reason,
                })
            }
        }
    }

    /// Checks a message body as stored: raw text never meets a contract, and
    /// a JSON body is parsed once here.
    pub fn check_body(&self, body: &[u8], raw: bool) -> Result<(), Violation> {
        self.check(&parse_body(body, raw)?)
    }
}

/// Parses a body for checking; raw text and invalid JSON are violations of
/// any contract.
pub fn parse_body(body: &[u8], raw: bool) -> Result<Value, Violation> {
    if raw {
        return Err(Violation {
            pointer: String::new(),
            reason: "the body is raw text, not JSON".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| Violation {
        pointer: String::new(),
        reason: format!("the body is not JSON: {e}"),
    })
}

/// Explains why a schema did not compile.
fn compile_error(err: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match err.kind() {
        K::Referencing(jsonschema::ReferencingError::Unretrievable { uri, .. }) => format!(
            "its `$ref` to `{uri}` points outside the schema. spool resolves only references inside the schema (like `#/$defs/item`), never files or URLs: copy the definition into the schema's `$defs`"
        ),
        K::Referencing(inner) => format!("it is not a valid JSON Schema: {inner}"),
        _ => {
            let at = err.instance_path().as_str();
            if at.is_empty() {
                format!("it is not a valid JSON Schema: {err}")
            } else {
                format!("it is not a valid JSON Schema: at {at}: {err}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract(schema: Value) -> Contract {
        Contract::compile(&schema.to_string()).expect("a valid schema")
    }

    #[test]
    fn a_broken_rule_names_its_pointer_and_reason() {
        let c = contract(json!({
            "type": "object",
            "properties": {"amount": {"type": "number", "minimum": 0}},
            "required": ["amount"]
        }));
        assert!(c.check(&json!({"amount": 3})).is_ok());
        let v = c.check(&json!({"amount": -5})).unwrap_err();
        assert_eq!(v.to_string(), "/amount: -5 is less than the minimum of 0");
        let v = c.check(&json!({})).unwrap_err();
        assert_eq!(v.pointer, "");
        assert!(v.reason.contains("\"amount\""), "{v}");
        assert!(v.to_string().starts_with("(root): "), "{v}");
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        let c = contract(json!({"properties": {"a/b~": {"type": "string"}}}));
        let v = c.check(&json!({"a/b~": 1})).unwrap_err();
        assert_eq!(v.pointer, "/a~1b~0");
    }

    #[test]
    fn huge_values_are_not_quoted_in_the_reason() {
        let c = contract(json!({"type": "string"}));
        let big = json!(vec![1; 1000]);
        let v = c.check(&big).unwrap_err();
        assert!(v.reason.len() < MAX_REASON, "{}", v.reason);
        assert!(v.reason.contains("the value"), "{}", v.reason);
    }

    #[test]
    fn draft_7_and_2020_12_both_work() {
        let d7 = contract(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
            "items": {"$ref": "#/definitions/pos"}
        }));
        assert!(d7.check(&json!([1, 2])).is_ok());
        assert_eq!(d7.check(&json!([1, 0])).unwrap_err().pointer, "/1");
        let d2020 = contract(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
            "prefixItems": [{"type": "string"}],
            "items": {"$ref": "#/$defs/pos"}
        }));
        assert!(d2020.check(&json!(["a", 1])).is_ok());
        assert_eq!(d2020.check(&json!(["a", -1])).unwrap_err().pointer, "/1");
    }

    #[test]
    fn invalid_schemas_are_refused_with_a_reason() {
        let not_json = Contract::compile("{\"type\": ").unwrap_err();
        assert!(not_json.contains("not JSON"), "{not_json}");
        let bad_type = Contract::compile(r#"{"type": "nmber"}"#).unwrap_err();
        assert!(bad_type.contains("not a valid JSON Schema"), "{bad_type}");
        let bad_min = Contract::compile(r#"{"minimum": "zero"}"#).unwrap_err();
        assert!(bad_min.contains("not a valid JSON Schema"), "{bad_min}");
        let array = Contract::compile("[1]").unwrap_err();
        assert!(array.contains("JSON object"), "{array}");
    }

    #[test]
    fn external_references_are_refused() {
        for target in [
            "https://example.com/order.json",
            "file:///etc/order.json",
            "order.json",
        ] {
            let err = Contract::compile(&json!({"$ref": target}).to_string()).unwrap_err();
            assert!(err.contains("never files or URLs"), "{target}: {err}");
        }
        let missing = Contract::compile(r##"{"$ref": "#/$defs/nope"}"##).unwrap_err();
        assert!(missing.contains("/$defs/nope"), "{missing}");
        assert!(!missing.contains("URLs"), "{missing}");
    }

    #[test]
    fn sameness_ignores_layout_and_key_order() {
        let a = Contract::compile("{\"type\": \"object\", \"required\": [\"a\"]}").unwrap();
        let b =
            Contract::compile("\n{ \"required\": [\"a\"],\n  \"type\": \"object\" }\n").unwrap();
        let c = Contract::compile("{\"type\": \"object\"}").unwrap();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&c));
        assert_eq!(
            b.text(),
            "{ \"required\": [\"a\"],\n  \"type\": \"object\" }"
        );
    }

    #[test]
    fn raw_bodies_never_meet_a_contract() {
        let c = contract(json!(true));
        assert!(c.check_body(b"{}", false).is_ok());
        assert!(c.check_body(b"{}", true).is_err());
        assert!(c.check_body(b"{", false).is_err());
    }
}
