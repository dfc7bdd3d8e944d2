//! The attachment list of a `GC` call.
//!
//! Spec 1.1.0 names the key `cni.dev/valid-attachments`; the first runtimes (and libcni,
//! which still sends both) used `cni.dev/attachments`. The new key wins when both are
//! present.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::config::from_value;
use crate::error::CniError;

/// The spec's key for the still-valid attachments.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The older spelling, still sent by runtimes.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One still-valid attachment: the `(CNI_CONTAINERID, CNI_IFNAME)` of an earlier `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID` as given to `ADD`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` as given to `ADD`.
    pub ifname: String,
}

#[derive(Deserialize)]
struct GcKeys {
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        deserialize_with = "present_list"
    )]
    valid: Option<Vec<Attachment>>,
    #[serde(
        rename = "cni.dev/attachments",
        default,
        deserialize_with = "present_list"
    )]
    legacy: Option<Vec<Attachment>>,
}

/// The valid attachments of a `GC` configuration, or `None` when neither key is present
/// (then the plugin must not collect anything). A malformed list is code 7 naming the
/// JSON path, e.g. `cni.dev/valid-attachments[0]: missing field `ifname``.
pub fn valid_attachments(conf: &Value) -> Result<Option<Vec<Attachment>>, CniError> {
    let keys: GcKeys = from_value(conf, "network config")?;
    Ok(keys.valid.or(keys.legacy))
}

/// A key that is present counts even when its value is `null`: libcni marshals an empty
/// Go slice as `null`, which means "no attachment is valid any more".
pub(crate) fn present_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Attachment>>, D::Error> {
    Ok(Some(
        Option::<Vec<Attachment>>::deserialize(d)?.unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use serde_json::json;

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn reads_spec_key() {
        let conf = json!({"cniVersion": "1.1.0", "name": "pods", "type": "tweed",
            "cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "eth0"}]});
        assert_eq!(
            valid_attachments(&conf).unwrap(),
            Some(vec![att("abc", "eth0")])
        );
    }

    #[test]
    fn reads_legacy_key() {
        let conf = json!({"cni.dev/attachments": [{"containerID": "x1", "ifname": "net1"}]});
        assert_eq!(
            valid_attachments(&conf).unwrap(),
            Some(vec![att("x1", "net1")])
        );
    }

    #[test]
    fn spec_key_wins_over_legacy() {
        let conf = json!({
            "cni.dev/attachments": [{"containerID": "old", "ifname": "eth0"}],
            "cni.dev/valid-attachments": [{"containerID": "new", "ifname": "eth0"}]});
        assert_eq!(
            valid_attachments(&conf).unwrap(),
            Some(vec![att("new", "eth0")])
        );
    }

    #[test]
    fn absent_is_none_and_null_or_empty_is_empty() {
        assert_eq!(valid_attachments(&json!({"name": "n"})).unwrap(), None);
        let null = json!({"cni.dev/valid-attachments": null});
        assert_eq!(valid_attachments(&null).unwrap(), Some(vec![]));
        let empty = json!({"cni.dev/valid-attachments": []});
        assert_eq!(valid_attachments(&empty).unwrap(), Some(vec![]));
    }

    #[test]
    fn malformed_entries_name_the_path() {
        let conf = json!({"cni.dev/valid-attachments": [
            {"containerID": "a", "ifname": "eth0"}, {"containerID": "b"}]});
        let e = valid_attachments(&conf).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg
                .starts_with("cni.dev/valid-attachments[1]: missing field `ifname`"),
            "{}",
            e.msg
        );
        let conf = json!({"cni.dev/attachments": [{"containerID": 5, "ifname": "eth0"}]});
        let e = valid_attachments(&conf).unwrap_err();
        assert!(
            e.msg
                .starts_with("cni.dev/attachments[0].containerID: invalid type"),
            "{}",
            e.msg
        );
    }
}
