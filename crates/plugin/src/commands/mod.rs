//! One module per CNI command. Each takes the parsed call and returns the
//! JSON to print (ADD, VERSION) or nothing.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

use tweed_cni::env::Environment;
use tweed_cni::error::CniError;

use crate::calllog::CallRecord;
use crate::conf::Conf;

/// Everything one invocation knows.
pub struct Call<'a> {
    pub env: &'a Environment,
    pub conf: &'a Conf,
    /// stdin as received, for delegated plugins.
    pub stdin: &'a [u8],
    pub record: &'a mut CallRecord,
}

impl<'a> Call<'a> {
    /// CNI_CONTAINERID, which the environment check guarantees for the
    /// per-container commands.
    pub fn container_id(&self) -> &'a str {
        self.env.container_id.as_deref().unwrap_or_default()
    }

    pub fn ifname(&self) -> &'a str {
        self.env.ifname.as_deref().unwrap_or_default()
    }
}

/// Converts an error message about a missing per-command variable.
pub fn missing(var: &str) -> CniError {
    CniError::invalid_env(var, format!("{var} is required for this command"))
}
