//! A backend's data in a lease record (`BackendData`, `BackendV6Data`),
//! kept as its compact JSON text.
//!
//! An agent holds every peer's lease, thousands of them; as a
//! `serde_json::Value` each object costs several hundred bytes of maps and
//! small strings, as text about fifty. Fields are parsed when a backend
//! asks for them, once per peer per reconcile pass.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// JSON text of an object or other non-null value; `None` is null (absent).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BackendData(Option<Box<str>>);

impl BackendData {
    pub fn null() -> BackendData {
        BackendData(None)
    }

    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }

    /// The data as a JSON value (`Null` when absent).
    pub fn value(&self) -> Value {
        self.0
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null)
    }

    /// One field of an object, e.g. `VtepMAC`.
    pub fn get(&self, field: &str) -> Option<Value> {
        match self.value() {
            Value::Object(mut map) => map.remove(field),
            _ => None,
        }
    }

    /// One string field, e.g. `VtepMAC`.
    pub fn get_str(&self, field: &str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The compact JSON text, `None` when absent.
    pub fn text(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl From<Value> for BackendData {
    fn from(v: Value) -> BackendData {
        if v.is_null() {
            BackendData(None)
        } else {
            BackendData(Some(v.to_string().into_boxed_str()))
        }
    }
}

impl fmt::Debug for BackendData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("null"))
    }
}

impl Serialize for BackendData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for BackendData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BackendData, D::Error> {
        Value::deserialize(d).map(BackendData::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_reads_fields() {
        let d = BackendData::from(json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:01"}));
        assert_eq!(d.text(), Some(r#"{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}"#));
        assert_eq!(d.get_str("VtepMAC").as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(d.get("VNI"), Some(json!(1)));
        assert_eq!(d.get("SID"), None);
        assert_eq!(serde_json::to_value(&d).unwrap(), d.value());
        let back: BackendData = serde_json::from_value(d.value()).unwrap();
        assert_eq!(back, d);
    }

    /// Found by the file_store_record fuzz target: without serde_json's
    /// correctly rounded float parser, a number written back read back as
    /// another number.
    #[test]
    fn numbers_survive_a_round_trip() {
        let text = r#"{"X":1000000020000100.2000000000000000000000000006666666666666666666}"#;
        let first: BackendData = serde_json::from_str(text).unwrap();
        let again: BackendData = serde_json::to_string(&first)
            .and_then(|t| serde_json::from_str(&t))
            .unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn null_is_absent() {
        let d = BackendData::from(Value::Null);
        assert!(d.is_null());
        assert_eq!(d.get("VtepMAC"), None);
        let parsed: BackendData = serde_json::from_str("null").unwrap();
        assert!(parsed.is_null());
    }
}
