//! The network configuration read from stdin.
//!
//! [`NetConf`] holds the generic keys every plugin shares. Unknown keys are ignored on
//! purpose: the plugin decodes its own keys from the same [`serde_json::Value`] with
//! [`from_value`], so both see the same input and report errors the same way.

mod decode;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::{Map, Value};

pub(crate) use decode::{TrackedError, deserialize_tracked, join_path, kind};
pub use decode::{from_value, from_value_at, parse_json};

use crate::env::{Command, validate_cni_name};
use crate::error::CniError;
use crate::gc::{Attachment, present_list};
pub use crate::result::Dns;
use crate::result::{CniResult, null_as_default};
use crate::version::CniVersion;

/// The generic part of a plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetConf {
    /// `cniVersion`: required; checked by [`NetConf::version`].
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// `name`: the network name, required for every command but `VERSION` (checked by
    /// [`NetConf::validate`]).
    #[serde(default)]
    pub name: String,
    /// `type`: the plugin binary's name.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// `ipam`: handed to the IPAM code as is.
    #[serde(default)]
    pub ipam: Option<Value>,
    /// `dns`: resolver settings the plugin may pass into its result.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// `args`: the runtime's structured arguments (`{"cni": {...}}`).
    #[serde(default)]
    pub args: Option<Value>,
    /// `prevResult`: the previous plugin's result in a chain, and the reference for
    /// `CHECK`. Read it with [`NetConf::prev_result`].
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// `runtimeConfig`: capability arguments from the runtime.
    #[serde(
        rename = "runtimeConfig",
        default,
        deserialize_with = "null_as_default"
    )]
    pub runtime_config: RuntimeConfig,
    /// `cni.dev/valid-attachments` of a `GC` call; see [`NetConf::valid_attachments`].
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        deserialize_with = "present_list"
    )]
    pub gc_valid_attachments: Option<Vec<Attachment>>,
    /// The older `cni.dev/attachments` spelling of the same list.
    #[serde(
        rename = "cni.dev/attachments",
        default,
        deserialize_with = "present_list"
    )]
    pub gc_attachments: Option<Vec<Attachment>>,
}

/// Capability arguments (`runtimeConfig`). The conventional ones tweed uses are typed;
/// the rest (`portMappings`, `bandwidth`, ...) stay in [`RuntimeConfig::extra`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RuntimeConfig {
    /// `ips` capability: requested addresses in CIDR notation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ips: Vec<String>,
    /// `mac` capability: requested MAC address (validate with [`crate::args::parse_mac`]).
    #[serde(default)]
    pub mac: Option<String>,
    /// `dns` capability: resolver settings from the runtime, preferred over `dns`.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Every other capability, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A configuration ready for use: the raw value (for the plugin's own keys), the
/// generic part and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Stdin as JSON.
    pub raw: Value,
    /// The generic keys.
    pub conf: NetConf,
    /// `cniVersion`, parsed and checked against the command.
    pub version: CniVersion,
}

/// Parses and validates stdin for `command` in one go: code 6 if it is not a JSON
/// object, 7 for a bad field, 1 for a version that is unsupported or too old for the
/// command.
pub fn load(stdin: &[u8], command: Command) -> Result<Loaded, CniError> {
    let raw = parse_json(stdin)?;
    let conf = NetConf::from_value(&raw)?;
    let version = conf.validate(command)?;
    Ok(Loaded { raw, conf, version })
}

impl NetConf {
    /// Decodes the generic keys (code 7 with the field path on a mismatch).
    pub fn from_value(value: &Value) -> Result<NetConf, CniError> {
        from_value(value, "network config")
    }

    /// `cniVersion` parsed; code 1 naming `cniVersion` when unsupported.
    pub fn version(&self) -> Result<CniVersion, CniError> {
        self.cni_version
            .parse()
            .map_err(|e: CniError| CniError::incompatible_version(format!("cniVersion: {}", e.msg)))
    }

    /// Checks what the spec requires before `command` may run: a supported version that
    /// has the command (`CHECK` from 0.4.0, `STATUS`/`GC` from 1.1.0; code 1) and, except
    /// for `VERSION`, a valid network name (code 7). Returns the version.
    pub fn validate(&self, command: Command) -> Result<CniVersion, CniError> {
        let version = self.version()?;
        let min = match command {
            Command::Check if !version.supports_check() => Some(CniVersion::V0_4_0),
            Command::Status | Command::Gc if !version.supports_status_gc() => {
                Some(CniVersion::V1_1_0)
            }
            _ => None,
        };
        if let Some(min) = min {
            return Err(CniError::incompatible_version(format!(
                "cniVersion: {command} needs CNI version {min} or later, the config has {version}"
            )));
        }
        if command != Command::Version {
            validate_cni_name(&self.name, "network name")
                .map_err(|m| CniError::invalid_config("name", m.to_string()))?;
        }
        Ok(version)
    }

    /// `prevResult` decoded, if present (code 6 naming `prevResult.<path>` when broken).
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        self.prev_result
            .as_ref()
            .filter(|v| !v.is_null())
            .map(CniResult::from_json)
            .transpose()
    }

    /// The still-valid attachments of a `GC` call, `cni.dev/valid-attachments` preferred
    /// over `cni.dev/attachments`; `None` when neither is present. Same rule as
    /// [`crate::gc::valid_attachments`].
    pub fn valid_attachments(&self) -> Option<&[Attachment]> {
        self.gc_valid_attachments
            .as_deref()
            .or(self.gc_attachments.as_deref())
    }
}
