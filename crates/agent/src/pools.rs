//! Subnet-pool arithmetic: the pools node subnets (and segment blocks) are
//! cut from, for both address families. Leasing takes [`Pools`], not the
//! whole configuration, so anything with subnets to hand out (the pod
//! network, a segment's blocks) can use it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::{ConfigError, err};

/// One pool per family; either may be off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pools {
    pub ipv4: Option<Pool<Ipv4Net>>,
    pub ipv6: Option<Pool<Ipv6Net>>,
}

impl Pools {
    /// The whole network(s), for masquerade and routing decisions.
    pub fn networks(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        if let Some(p) = &self.ipv4 {
            out.push(IpNet::V4(p.network));
        }
        if let Some(p) = &self.ipv6 {
            out.push(IpNet::V6(p.network));
        }
        out
    }
}

/// The pool node subnets of one family are cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool<N> {
    pub network: N,
    pub subnet_len: u8,
    /// First and last subnet that may be handed out.
    pub min: N,
    pub max: N,
}

/// Operations both families need from their network type.
pub trait Family: Copy + Eq + std::fmt::Display + std::str::FromStr {
    type Addr: Copy + Eq + std::str::FromStr + Into<IpAddr>;
    fn new(addr: Self::Addr, len: u8) -> Option<Self>;
    fn addr(&self) -> Self::Addr;
    fn prefix(&self) -> u8;
    fn max_prefix() -> u8;
    fn trunc(&self) -> Self;
    fn contains_net(&self, other: &Self) -> bool;
    fn index_in(&self, network: &Self) -> u128;
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self>;
}

impl Family for Ipv4Net {
    type Addr = Ipv4Addr;
    fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        Ipv4Net::new(addr, len).ok()
    }
    fn addr(&self) -> Ipv4Addr {
        Ipv4Net::addr(self)
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
    fn max_prefix() -> u8 {
        32
    }
    fn trunc(&self) -> Self {
        Ipv4Net::trunc(self)
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn index_in(&self, network: &Self) -> u128 {
        let off = u32::from(self.network()) - u32::from(network.network());
        u128::from(off >> (32 - self.prefix_len()))
    }
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self> {
        let step = 1u128 << (32 - len);
        let base = u128::from(u32::from(network.network()));
        let addr = base.checked_add(n.checked_mul(step)?)?;
        let addr = u32::try_from(addr).ok()?;
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len).ok()?;
        network.contains(&net).then_some(net)
    }
}

impl Family for Ipv6Net {
    type Addr = Ipv6Addr;
    fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        Ipv6Net::new(addr, len).ok()
    }
    fn addr(&self) -> Ipv6Addr {
        Ipv6Net::addr(self)
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
    fn max_prefix() -> u8 {
        128
    }
    fn trunc(&self) -> Self {
        Ipv6Net::trunc(self)
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn index_in(&self, network: &Self) -> u128 {
        let off = u128::from(self.network()) - u128::from(network.network());
        off >> (128 - self.prefix_len())
    }
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self> {
        let shift = 128 - u32::from(len);
        let step = 1u128.checked_shl(shift)?;
        let addr = u128::from(network.network()).checked_add(n.checked_mul(step)?)?;
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len).ok()?;
        network.contains(&net).then_some(net)
    }
}

/// Builds and checks a pool. flannel's defaults: SubnetMin is the second
/// subnet of the network (the first holds the network address), SubnetMax
/// the last.
pub(crate) fn build<N: Family>(
    network: N,
    subnet_len: u8,
    min: Option<&str>,
    max: Option<&str>,
    fields: (&str, &str, &str),
    longest: u8,
) -> Result<Pool<N>, ConfigError> {
    let (len_field, min_field, max_field) = fields;
    if network.trunc() != network {
        return Err(err(
            if N::max_prefix() == 32 {
                "Network"
            } else {
                "IPv6Network"
            },
            format!(
                "{network} has host bits set; did you mean {}?",
                network.trunc()
            ),
        ));
    }
    if subnet_len <= network.prefix() || subnet_len > longest {
        return Err(err(
            len_field,
            format!(
                "{subnet_len} must be longer than the network's /{} and at most {longest}",
                network.prefix()
            ),
        ));
    }
    let count_bits = u32::from(subnet_len - network.prefix());
    let last_index = if count_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << count_bits) - 1
    };
    let parse_bound = |v: Option<&str>, field: &str, default: u128| -> Result<N, ConfigError> {
        match v {
            None => N::nth_subnet(&network, subnet_len, default)
                .ok_or_else(|| err(field, "the network has no room for such a subnet")),
            Some(s) => {
                let addr: N::Addr = s
                    .parse()
                    .map_err(|_| err(field, format!("{s:?} is not an address")))?;
                let net = N::new(addr, subnet_len).ok_or_else(|| err(field, "bad address"))?;
                if net.trunc() != net {
                    return Err(err(
                        field,
                        format!("{s} is not the start of a /{subnet_len} subnet"),
                    ));
                }
                if !network.contains_net(&net) {
                    return Err(err(field, format!("{s} is outside {network}")));
                }
                Ok(net)
            }
        }
    };
    let min_net = parse_bound(min, min_field, 1.min(last_index))?;
    let max_net = parse_bound(max, max_field, last_index)?;
    if min_net.index_in(&network) > max_net.index_in(&network) {
        return Err(err(
            min_field,
            format!("{min_net} comes after {max_field} {max_net}"),
        ));
    }
    Ok(Pool {
        network,
        subnet_len,
        min: min_net,
        max: max_net,
    })
}

impl<N: Family> Pool<N> {
    /// log2 of the number of subnets in the network.
    pub fn subnet_bits(&self) -> u8 {
        self.subnet_len - self.network.prefix()
    }

    /// How many subnets the pool holds.
    pub fn size(&self) -> u128 {
        self.max.index_in(&self.network) - self.min.index_in(&self.network) + 1
    }

    /// The `i`-th subnet of the pool (0 = `min`).
    pub fn subnet(&self, i: u128) -> Option<N> {
        if i >= self.size() {
            return None;
        }
        N::nth_subnet(
            &self.network,
            self.subnet_len,
            self.min.index_in(&self.network) + i,
        )
    }

    pub fn contains(&self, subnet: &N) -> bool {
        subnet.prefix() == self.subnet_len
            && self.network.contains_net(subnet)
            && (self.min.index_in(&self.network)..=self.max.index_in(&self.network))
                .contains(&subnet.index_in(&self.network))
    }
}
