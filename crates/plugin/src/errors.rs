//! tweed's own CNI error codes (100 and up) and the conversions that turn
//! internal failures into CNI errors with the right code.
//!
//! | code | meaning |
//! |---|---|
//! | 100 | the kernel refused a network change |
//! | 101 | no free address left in a range |
//! | 102 | a requested address is taken or outside every range |
//! | 103 | the interface already exists in the container |
//! | 104 | a delegated plugin could not be run or answered nonsense |
//! | 105 | CHECK found the attachment not as ADD left it |
//! | 106 | the bridge name belongs to a device that is not a bridge |
//! | 107 | the node lease file (or a segment's block file) exists but is invalid |

use tweed_cni::error::CniError;
use tweed_ipam::IpamError;
use tweed_netlink::NetlinkError;

use tweed_node::SubnetEnvError;

pub const KERNEL: u32 = 100;
pub const IPAM_EXHAUSTED: u32 = 101;
pub const IPAM_UNAVAILABLE: u32 = 102;
pub const INTERFACE_EXISTS: u32 = 103;
pub const DELEGATE_FAILED: u32 = 104;
pub const CHECK_FAILED: u32 = 105;
pub const BRIDGE_CONFLICT: u32 = 106;
pub const LEASE_INVALID: u32 = 107;

/// A kernel refusal, with what we were doing.
pub fn kernel(e: NetlinkError) -> CniError {
    match e {
        NetlinkError::Netns { .. } => CniError::custom(KERNEL, e.to_string()),
        other => CniError::custom(KERNEL, other.to_string()),
    }
}

/// What a guest attachment needs from the kernel, by build option.
#[derive(Debug, Clone, Copy)]
pub struct KernelOption {
    pub option: &'static str,
    pub what: &'static str,
}

pub const TUN: KernelOption = KernelOption {
    option: "CONFIG_TUN",
    what: "tap devices (/dev/net/tun)",
};
pub const MACVTAP: KernelOption = KernelOption {
    option: "CONFIG_MACVTAP",
    what: "macvtap devices",
};
pub const SCH_INGRESS: KernelOption = KernelOption {
    option: "CONFIG_NET_SCH_INGRESS",
    what: "the tc ingress qdisc",
};
pub const REDIRECT: KernelOption = KernelOption {
    option: "CONFIG_NET_CLS_U32 and CONFIG_NET_ACT_MIRRED",
    what: "the tc u32 filter with the mirred redirect action",
};

/// A kernel refusal that, for this step, means the kernel was built (or
/// booted) without `need`: the error names the option instead of leaving
/// the operator with "Operation not supported". Unknown device kinds
/// answer EOPNOTSUPP, unknown qdisc, filter and action kinds ENOENT; a
/// missing /dev/net/tun is ENOENT (no node) or ENODEV (no driver).
pub fn kernel_needing(e: NetlinkError, need: KernelOption) -> CniError {
    let missing = match &e {
        NetlinkError::Netns { source, .. } => {
            matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ENODEV))
        }
        other => matches!(
            other.errno(),
            Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV)
        ),
    };
    if missing {
        CniError::custom(
            KERNEL,
            format!(
                "this kernel has no {} ({} is not built or its module not loaded): {e}",
                need.what, need.option
            ),
        )
    } else {
        kernel(e)
    }
}

pub fn ipam(e: IpamError) -> CniError {
    match &e {
        IpamError::InvalidConfig { field, reason } => CniError::invalid_config(field, reason),
        IpamError::Exhausted { .. } => CniError::custom(IPAM_EXHAUSTED, e.to_string()),
        IpamError::InvalidArgument { name, reason } => CniError::invalid_env(name, reason),
        IpamError::Io { .. } => CniError::io(e.to_string()),
        // A requested address that is taken, a gateway, outside every
        // range, or two in one set; or the attachment already holds one.
        IpamError::RequestedNotInRange { .. }
        | IpamError::AlreadyReserved { .. }
        | IpamError::RequestedIsGateway { .. }
        | IpamError::MultipleRequestedInSet { .. }
        | IpamError::DuplicateAllocation { .. } => {
            CniError::custom(IPAM_UNAVAILABLE, e.to_string())
        }
    }
}

pub fn lease(e: SubnetEnvError) -> CniError {
    match e {
        SubnetEnvError::Missing { .. } => CniError::try_again_later(e.to_string()),
        SubnetEnvError::Unreadable { .. } => CniError::io(e.to_string()),
        SubnetEnvError::Invalid { .. } => CniError::custom(LEASE_INVALID, e.to_string()),
    }
}

pub fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::custom(CHECK_FAILED, msg.into())
}
