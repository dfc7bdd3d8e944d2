//! JSON decoding with error codes and field paths.
//!
//! Stdin is decoded in two steps so each failure gets the right code: bytes that are not
//! JSON are a decode failure (6), JSON of the wrong shape is an invalid configuration (7)
//! whose message starts with the JSON path of the field, e.g. `mtu: invalid type: string
//! "x", expected u32`. The plugin uses the same [`from_value`] for its own fields, so all
//! configuration errors read alike.

use std::borrow::Borrow;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CniError, code};

/// Parses stdin as JSON. Not JSON, or JSON that is not an object, is code 6.
pub fn parse_json(bytes: &[u8]) -> Result<Value, CniError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| CniError::decode(format!("network config is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CniError::decode(format!(
            "network config must be a JSON object, not {}",
            kind(&value)
        )));
    }
    Ok(value)
}

/// "an array", "a string", ... for messages about the wrong kind of JSON value.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserialises `T` from `value` (owned or borrowed). A mismatch is code 7 whose message
/// starts with the JSON path of the field (`ipam.ranges[0][0].subnet: ...`); errors about
/// the whole value (a missing field at the top, say) start with `what` instead.
pub fn from_value<T: DeserializeOwned>(
    value: impl Borrow<Value>,
    what: &str,
) -> Result<T, CniError> {
    deserialize_tracked(value.borrow()).map_err(|TrackedError { path, msg }| {
        let at = if path.is_empty() { what } else { &path };
        CniError::new(code::INVALID_CONFIG, format!("{at}: {msg}"))
    })
}

/// [`from_value`] for a value found at `prefix` inside the configuration (`"ipam"`):
/// paths in messages are written from the top, e.g. `ipam.ranges[0][0].subnet: ...`,
/// and errors about the whole value start with `prefix`.
pub fn from_value_at<T: DeserializeOwned>(
    value: impl Borrow<Value>,
    prefix: &str,
) -> Result<T, CniError> {
    deserialize_tracked(value.borrow()).map_err(|TrackedError { path, msg }| {
        CniError::invalid_config(&join_path(prefix, &path), msg)
    })
}

/// A deserialisation error with the JSON path where it happened (empty at the root).
pub(crate) struct TrackedError {
    pub(crate) path: String,
    pub(crate) msg: String,
}

/// Deserialises while tracking the path, leaving the error's code and wording to the
/// caller.
pub(crate) fn deserialize_tracked<T: DeserializeOwned>(value: &Value) -> Result<T, TrackedError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = if e.path().iter().next().is_none() {
            String::new()
        } else {
            e.path().to_string()
        };
        TrackedError {
            path,
            msg: e.into_inner().to_string(),
        }
    })
}

/// `prefix` followed by `path` in the same notation: `prevResult` + `ips[0]` is
/// `prevResult.ips[0]`, `prevResult` + `[0]` is `prevResult[0]`.
pub(crate) fn join_path(prefix: &str, path: &str) -> String {
    if path.is_empty() || prefix.is_empty() || path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn broken_json_is_code_6() {
        for bad in [&b""[..], b"{", b"{\"cniVersion\": }", b"\xff"] {
            let e = parse_json(bad).unwrap_err();
            assert_eq!(e.code, code::DECODE, "{e}");
            assert!(
                e.msg.starts_with("network config is not valid JSON"),
                "{}",
                e.msg
            );
        }
    }

    #[test]
    fn non_object_is_code_6() {
        let e = parse_json(b"[1,2]").unwrap_err();
        assert_eq!(e.code, code::DECODE);
        assert_eq!(e.msg, "network config must be a JSON object, not an array");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // Fields exist to be type-checked by the deserialiser.
    struct PluginConf {
        mtu: Option<u32>,
        ipam: Option<Ipam>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Ipam {
        ranges: Vec<Vec<Range>>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Range {
        subnet: ipnet::IpNet,
    }

    #[test]
    fn type_errors_start_with_the_path() {
        let v =
            parse_json(br#"{"cniVersion":"1.0.0","name":"n","type":"tweed","mtu":"x"}"#).unwrap();
        let e = from_value::<PluginConf>(&v, "tweed config").unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert_eq!(e.msg, "mtu: invalid type: string \"x\", expected u32");

        let v = json!({"ipam": {"ranges": [[{"subnet": "10.0.0.0/33"}]]}});
        let e = from_value::<PluginConf>(&v, "tweed config").unwrap_err();
        assert!(e.msg.starts_with("ipam.ranges[0][0].subnet: "), "{}", e.msg);
    }

    #[test]
    fn nested_values_report_full_paths() {
        let v = json!({"ranges": [[{"subnet": 5}]]});
        let e = from_value_at::<Ipam>(v.clone(), "ipam").unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.starts_with("ipam.ranges[0][0].subnet: invalid type"),
            "{}",
            e.msg
        );
        let e = from_value_at::<Ipam>(&json!({}), "ipam").unwrap_err();
        assert_eq!(e.msg, "ipam: missing field `ranges`");
        // Owned and borrowed values are both accepted.
        assert!(from_value::<Range>(json!({"subnet": "10.0.0.0/8"}), "x").is_ok());
    }

    #[test]
    fn root_errors_start_with_what() {
        let e = from_value::<Range>(&json!({}), "tweed config").unwrap_err();
        assert_eq!(e.msg, "tweed config: missing field `subnet`");
    }

    #[test]
    fn join_paths() {
        assert_eq!(join_path("prevResult", ""), "prevResult");
        assert_eq!(
            join_path("prevResult", "ips[0].address"),
            "prevResult.ips[0].address"
        );
        assert_eq!(join_path("prevResult", "[0]"), "prevResult[0]");
        assert_eq!(join_path("", "mtu"), "mtu");
    }
}
