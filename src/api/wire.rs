//! Serde shapes of Graph API JSON, parsed defensively: an unexpected shape
//! becomes `None` or an error value, never a panic. Pure, no I/O.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The fields of the Meta error envelope `{"error": {...}}` that matter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub is_transient: Option<bool>,
}

impl ErrorBody {
    /// Parses an error envelope; `None` when the body is not one.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let e = v.get("error")?.as_object()?;
        let mut message: String = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .chars()
            .take(300)
            .collect();
        if let Some(user_msg) = e.get("error_user_msg").and_then(Value::as_str) {
            message.push_str(": ");
            message.extend(user_msg.chars().take(300));
        }
        Some(Self {
            message,
            code: e.get("code").and_then(Value::as_i64),
            subcode: e.get("error_subcode").and_then(Value::as_i64),
            is_transient: e.get("is_transient").and_then(Value::as_bool),
        })
    }
}

/// A collection answer `{"data": [...]}` with optional cursor paging.
#[derive(Debug, Deserialize)]
pub(crate) struct Collection {
    /// The items, unparsed: a full answer held as raw JSON costs a fraction
    /// of the memory of parsed values. Required: an answer without `data`
    /// is not a (possibly empty) collection.
    pub data: Vec<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(default)]
    pub next: Option<String>,
}

/// Takes the signed URL field out of an image object, so the object can be
/// stored without the secret. Removes every `thumb_*_url` field.
pub(crate) fn take_thumb_url(obj: &mut Map<String, Value>, field: &str) -> Option<String> {
    let url = obj.get(field).and_then(Value::as_str).map(str::to_string);
    obj.retain(|k, _| !(k.starts_with("thumb_") && k.ends_with("_url")));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelopes_and_rejects_others() {
        let b = ErrorBody::parse(
            br#"{"error":{"message":"Application request limit reached","type":"MLYApiException","is_transient":true,"code":4,"fbtrace_id":"x"}}"#,
        )
        .unwrap();
        assert_eq!(b.code, Some(4));
        assert_eq!(b.is_transient, Some(true));
        assert!(ErrorBody::parse(b"<html>").is_none());
        assert!(ErrorBody::parse(br#"{"error":"x"}"#).is_none());
    }

    #[test]
    fn strips_every_signed_url() {
        let mut m: Map<String, Value> = serde_json::from_str(
            r#"{"id":"1","thumb_1024_url":"https://a/b?oh=1","thumb_256_url":"https://c"}"#,
        )
        .unwrap();
        assert_eq!(
            take_thumb_url(&mut m, "thumb_1024_url").as_deref(),
            Some("https://a/b?oh=1")
        );
        assert_eq!(m.len(), 1);
    }
}
