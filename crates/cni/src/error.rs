//! The CNI error object and its well-known codes.
//!
//! Every failure a plugin reports goes through [`CniError`], so that the runtime always
//! gets the JSON object the spec prescribes (on stdout, with a non-zero exit) and the
//! operator gets a message that names the offending variable or field.

use serde_json::{Map, Value};

/// The error codes reserved by the spec (0–99). Plugin-specific codes start at
/// [`code::FIRST_PLUGIN`].
pub mod code {
    /// The configuration's `cniVersion` is not one the plugin speaks.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A configuration field is not supported; the message names key and value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown: the runtime need not clean up (e.g. call `DEL`).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A `CNI_*` environment variable is missing or invalid; the message names it.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading stdin.
    pub const IO: u32 = 5;
    /// Content could not be decoded, e.g. stdin is not JSON.
    pub const DECODE: u32 = 6;
    /// The network configuration is well-formed JSON but not valid.
    pub const INVALID_CONFIG: u32 = 7;
    /// Not in the spec's table but used by the reference Go `skel` package: `CNI_NETNS`
    /// is the plugin's own network namespace.
    pub const INVALID_NETNS: u32 = 8;
    /// A transient condition: the runtime should retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// `STATUS`: the plugin cannot service `ADD` requests.
    pub const STATUS_UNAVAILABLE: u32 = 50;
    /// `STATUS`: unavailable, and existing containers may have limited connectivity.
    pub const STATUS_LIMITED: u32 = 51;
    /// The first code free for plugin-specific errors.
    pub const FIRST_PLUGIN: u32 = 100;
}

/// A CNI error: a code from [`code`] (or 100+), a short message and optional details.
///
/// `Display` shows the message, followed by `": details"` when there are details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", details_suffix(.details))]
pub struct CniError {
    /// Numeric code, see [`code`].
    pub code: u32,
    /// Short message; for environment and configuration errors it starts with the name of
    /// the variable or the JSON path of the field.
    pub msg: String,
    /// Optional longer explanation.
    pub details: Option<String>,
}

fn details_suffix(details: &Option<String>) -> String {
    details
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl CniError {
    /// An error with any code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// Adds (or replaces) the details text.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Code 1: the requested CNI version is not supported.
    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(code::INCOMPATIBLE_VERSION, msg)
    }

    /// Code 2: the spec requires the message to carry the key (and value) of the field,
    /// so the message is `"<field>: <msg>"`.
    pub fn unsupported_field(field: &str, msg: impl AsRef<str>) -> Self {
        Self::new(
            code::UNSUPPORTED_FIELD,
            format!("{field}: {}", msg.as_ref()),
        )
    }

    /// Code 3: the container does not exist; the runtime need not clean up.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(code::UNKNOWN_CONTAINER, msg)
    }

    /// Code 4: the message is `"<var>: <msg>"` because the spec requires it to name the
    /// invalid variable.
    pub fn invalid_env(var: &str, msg: impl AsRef<str>) -> Self {
        Self::new(code::INVALID_ENV, format!("{var}: {}", msg.as_ref()))
    }

    /// Code 5: I/O failure.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO, msg)
    }

    /// Code 6: content could not be decoded.
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(code::DECODE, msg)
    }

    /// Code 7: the message is `"<field path>: <msg>"`, e.g.
    /// `ipam.ranges[0][0].subnet: invalid CIDR "10.0.0.0/33"`.
    pub fn invalid_config(field: &str, msg: impl AsRef<str>) -> Self {
        Self::new(code::INVALID_CONFIG, format!("{field}: {}", msg.as_ref()))
    }

    /// Code 11: transient condition, the runtime should retry.
    pub fn try_again_later(msg: impl Into<String>) -> Self {
        Self::new(code::TRY_AGAIN_LATER, msg)
    }

    /// Code 50 (`STATUS`): the plugin cannot service `ADD` requests.
    pub fn status_unavailable(msg: impl Into<String>) -> Self {
        Self::new(code::STATUS_UNAVAILABLE, msg)
    }

    /// Code 51 (`STATUS`): unavailable, and existing containers may be affected.
    pub fn status_limited(msg: impl Into<String>) -> Self {
        Self::new(code::STATUS_LIMITED, msg)
    }

    /// A plugin-specific error; `code` should be 100 or more (codes below are reserved
    /// by the spec and would mislead the runtime).
    pub fn custom(code: u32, msg: impl Into<String>) -> Self {
        debug_assert!(
            code >= code::FIRST_PLUGIN,
            "CNI codes below 100 are reserved"
        );
        Self::new(code, msg)
    }

    /// The error object as the spec defines it: `cniVersion`, `code`, `msg` and, only when
    /// present, `details`. `version` is the version of the request (or the latest one
    /// when the request could not be read).
    pub fn to_json(&self, version: &str) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), Value::from(version));
        obj.insert("code".into(), Value::from(self.code));
        obj.insert("msg".into(), Value::from(self.msg.as_str()));
        if let Some(details) = &self.details {
            obj.insert("details".into(), Value::from(details.as_str()));
        }
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constructors_carry_spec_codes() {
        let cases = [
            (CniError::incompatible_version("v"), 1),
            (CniError::unsupported_field("f", "m"), 2),
            (CniError::unknown_container("c"), 3),
            (CniError::invalid_env("CNI_IFNAME", "m"), 4),
            (CniError::io("m"), 5),
            (CniError::decode("m"), 6),
            (CniError::invalid_config("mtu", "m"), 7),
            (CniError::try_again_later("m"), 11),
            (CniError::status_unavailable("m"), 50),
            (CniError::status_limited("m"), 51),
            (CniError::custom(101, "m"), 101),
        ];
        for (err, want) in cases {
            assert_eq!(err.code, want, "{err}");
        }
        assert_eq!(code::INVALID_CONFIG, 7);
    }

    #[test]
    fn messages_name_the_variable_or_field() {
        let e = CniError::invalid_env("CNI_IFNAME", "is empty");
        assert_eq!(e.msg, "CNI_IFNAME: is empty");
        let e = CniError::invalid_config("ipam.subnet", "invalid CIDR \"x\"");
        assert_eq!(e.msg, "ipam.subnet: invalid CIDR \"x\"");
        let e = CniError::unsupported_field("hairpinMode", "value true is not supported");
        assert_eq!(e.msg, "hairpinMode: value true is not supported");
    }

    #[test]
    fn display_appends_details() {
        assert_eq!(CniError::io("read stdin").to_string(), "read stdin");
        let e = CniError::io("read stdin").with_details("broken pipe");
        assert_eq!(e.to_string(), "read stdin: broken pipe");
    }

    #[test]
    fn json_omits_absent_details() {
        let e = CniError::invalid_config("mtu", "too large");
        assert_eq!(
            e.to_json("1.1.0"),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "mtu: too large"})
        );
        let e = e.with_details("at most 65535");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({"cniVersion": "0.4.0", "code": 7, "msg": "mtu: too large",
                   "details": "at most 65535"})
        );
    }
}
