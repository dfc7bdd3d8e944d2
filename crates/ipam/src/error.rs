//! Errors from address management.
//!
//! Every variant carries enough context (field path, address, owner, file
//! path) that the message alone tells an operator what to fix, because these
//! messages end up verbatim in kubelet events.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IpamError {
    /// The `ipam` configuration (or a programmatically built spec) is wrong.
    /// `field` is the JSON path, e.g. `ipam.ranges[0][1].rangeStart`.
    #[error("invalid IPAM config: {field}: {reason}")]
    InvalidConfig { field: String, reason: String },

    /// A runtime-supplied argument (container ID, interface name) is unusable.
    /// The plugin should report this as CNI error 4 (invalid environment).
    #[error("invalid {name}: {reason}")]
    InvalidArgument { name: String, reason: String },

    /// A file or directory of the store could not be used.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A requested address (CNI `ips` capability, `IP=` argument) lies in no
    /// range of any range set.
    #[error("requested address {ip} lies in no configured range ({ranges})")]
    RequestedNotInRange { ip: IpAddr, ranges: String },

    /// A requested address is the gateway of its range; host-local refuses it too.
    #[error("requested address {ip} is the gateway of range set {range_set}")]
    RequestedIsGateway { ip: IpAddr, range_set: usize },

    /// Two requested addresses fall into the same range set, but each set
    /// yields exactly one address per attachment.
    #[error(
        "requested addresses {first} and {second} both lie in range set {range_set}; \
         only one address per range set can be assigned"
    )]
    MultipleRequestedInSet {
        range_set: usize,
        first: IpAddr,
        second: IpAddr,
    },

    /// A requested address is already reserved by someone (possibly this
    /// very attachment).
    #[error(
        "requested address {ip} is already reserved by container {owner}{}",
        owner_ifname.as_ref().map(|i| format!(" interface {i}")).unwrap_or_default()
    )]
    AlreadyReserved {
        ip: IpAddr,
        owner: String,
        owner_ifname: Option<String>,
    },

    /// The attachment already holds an address in this range set. host-local
    /// refuses a second ADD the same way, because CNI forbids duplicate ADDs.
    #[error(
        "{ip} (range set {range_set}) is already allocated to container {container_id} \
         interface {ifname}; duplicate allocation is not allowed (DEL the attachment first)"
    )]
    DuplicateAllocation {
        ip: IpAddr,
        container_id: String,
        ifname: String,
        range_set: usize,
    },

    /// Every allocatable address of the range set is reserved.
    #[error(
        "no free address in range set {range_set} ({ranges}): {}",
        if *addresses == 0 {
            "it holds no allocatable address (only the gateway)".to_string()
        } else {
            format!("all {addresses} addresses are reserved")
        }
    )]
    Exhausted {
        range_set: usize,
        /// The set's ranges as `start-end`, comma separated (host-local's notation).
        ranges: String,
        /// How many addresses the set can hand out at all (gateway excluded).
        addresses: u128,
    },
}

impl IpamError {
    /// True when a range set ran out of addresses.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, IpamError::Exhausted { .. })
    }

    /// True when the configuration is at fault (CNI error 7).
    pub fn is_invalid_config(&self) -> bool {
        matches!(self, IpamError::InvalidConfig { .. })
    }

    /// True when a runtime argument is at fault (CNI error 4).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, IpamError::InvalidArgument { .. })
    }

    /// True for file-system failures (CNI error 5).
    pub fn is_io(&self) -> bool {
        matches!(self, IpamError::Io { .. })
    }

    /// True for every problem with a requested address.
    pub fn is_requested_ip(&self) -> bool {
        matches!(
            self,
            IpamError::RequestedNotInRange { .. }
                | IpamError::RequestedIsGateway { .. }
                | IpamError::MultipleRequestedInSet { .. }
                | IpamError::AlreadyReserved { .. }
        )
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> IpamError {
        IpamError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> IpamError {
        IpamError::Io {
            path: path.into(),
            source,
        }
    }
}
