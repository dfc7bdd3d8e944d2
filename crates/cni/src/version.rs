//! CNI specification versions and the `VERSION` command.
//!
//! Versions are an enum rather than strings so that feature checks (`CHECK` needs 0.4.0,
//! `STATUS` and `GC` need 1.1.0) and result shapes are decided by the compiler, not by
//! string comparison.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use crate::error::CniError;

/// A CNI specification version this crate can speak. Ordered oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: first version with the `interfaces`/`ips` result and `prevResult` chaining.
    V0_3_0,
    /// 0.3.1: same result shape as 0.3.0.
    V0_3_1,
    /// 0.4.0: adds `CHECK`.
    V0_4_0,
    /// 1.0.0: drops `ips[].version`.
    V1_0_0,
    /// 1.1.0: adds `STATUS`, `GC` and more interface and route fields.
    V1_1_0,
}

/// Every supported version, oldest first (the order `VERSION` reports them in).
pub const SUPPORTED: &[CniVersion] = &[
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl CniVersion {
    /// The newest supported version, used when the request names none we know.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// The version as it appears in JSON, e.g. `"1.1.0"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// `CHECK` exists from 0.4.0 on.
    pub fn supports_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// `STATUS` and `GC` exist from 1.1.0 on.
    pub fn supports_status_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

/// `"0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"`, for error messages.
fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for CniVersion {
    type Err = CniError;

    /// Exact match only: the spec's versions are always written out in full.
    fn from_str(s: &str) -> Result<Self, CniError> {
        SUPPORTED
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::incompatible_version(format!(
                    "CNI version {s:?} is not supported; supported versions: {}",
                    supported_list()
                ))
            })
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reply to `VERSION`: echoes the requested `cniVersion` when we support it (as the
/// spec asks), otherwise answers with [`CniVersion::LATEST`] so that the reply is still a
/// version the caller can parse.
pub fn version_response(requested: Option<&str>) -> Value {
    let version = requested
        .and_then(|r| r.parse::<CniVersion>().ok())
        .unwrap_or(CniVersion::LATEST);
    let supported: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
    json!({ "cniVersion": version.as_str(), "supportedVersions": supported })
}

/// The `cniVersion` string of a `VERSION` request's stdin, if there is one.
///
/// `VERSION` must answer even for empty or odd input, so this never fails: anything that
/// is not a JSON object with a string `cniVersion` gives `None`.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    value.get("cniVersion")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    #[test]
    fn parses_and_prints_every_supported_version() {
        for v in SUPPORTED {
            assert_eq!(v.as_str().parse::<CniVersion>().ok(), Some(*v));
            assert_eq!(v.to_string(), v.as_str());
        }
        assert_eq!(CniVersion::LATEST.as_str(), "1.1.0");
    }

    #[test]
    fn unknown_version_is_code_1_and_lists_supported() {
        for bad in ["0.2.0", "1.2.0", "1.0", "v1.0.0", ""] {
            let err = bad.parse::<CniVersion>().unwrap_err();
            assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
            assert!(err.msg.contains(&format!("{bad:?}")), "{}", err.msg);
            assert!(
                err.msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
                "{}",
                err.msg
            );
        }
    }

    #[test]
    fn order_and_features() {
        assert!(CniVersion::V0_3_0 < CniVersion::V0_3_1);
        assert!(CniVersion::V1_0_0 < CniVersion::V1_1_0);
        assert!(!CniVersion::V0_3_1.supports_check());
        assert!(CniVersion::V0_4_0.supports_check());
        assert!(!CniVersion::V1_0_0.supports_status_gc());
        assert!(CniVersion::V1_1_0.supports_status_gc());
    }

    #[test]
    fn version_reply_echoes_supported_request() {
        let all = json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
        let r = version_response(Some("0.4.0"));
        assert_eq!(r, json!({"cniVersion": "0.4.0", "supportedVersions": all}));
        assert_eq!(version_response(Some("0.2.0"))["cniVersion"], "1.1.0");
        assert_eq!(version_response(None)["cniVersion"], "1.1.0");
    }

    #[test]
    fn requested_version_tolerates_anything() {
        assert_eq!(
            requested_version(br#"{"cniVersion":"1.0.0"}"#).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(requested_version(b""), None);
        assert_eq!(requested_version(b"not json"), None);
        assert_eq!(requested_version(br#"{"cniVersion":1}"#), None);
    }
}
