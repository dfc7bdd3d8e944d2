//! Typed address ranges and host-local's allocation order over them.
//!
//! The semantics follow host-local (containernetworking/plugins,
//! `plugins/ipam/host-local/backend/allocator/range.go`, `range_set.go` and
//! the iterator in `allocator.go`) because tweed and host-local must pick
//! addresses from one shared store without stepping on each other, and an
//! operator who switches between them must see the same pools.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::IpamError;

/// One allocatable range: `start..=end` inside `subnet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet in network-address form (host bits are rejected, as
    /// host-local ≥ 1.1 does). Its prefix length is the one handed out.
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub start: IpAddr,
    /// Last address handed out (inclusive).
    pub end: IpAddr,
    /// The gateway reported to the pod and never handed out. Validation always
    /// fills it in (host-local claims network+1 when none is configured);
    /// `None` is only possible for a hand-built `Range` and means "no gateway".
    pub gateway: Option<IpAddr>,
}

impl Range {
    /// Builds a range with host-local's defaults and checks:
    ///
    /// * the subnet leaves room for hosts (IPv4 prefix ≤ 30, IPv6 ≤ 126:
    ///   host-local refuses anything with fewer than 2 host bits);
    /// * the subnet has no host bits set;
    /// * `start` defaults to network+1, `end` to broadcast−1 (IPv4) or the
    ///   last address of the subnet (IPv6: there is no broadcast);
    /// * `gateway` defaults to network+1, which is why the first pod gets .2;
    /// * every given address has the subnet's family and lies inside it, and
    ///   `start ≤ end`.
    ///
    /// `field` prefixes error field paths, e.g. `ipam.ranges[0][1]` gives
    /// `ipam.ranges[0][1].rangeStart`.
    pub fn new(
        subnet: IpNet,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
        field: &str,
    ) -> Result<Range, IpamError> {
        let subnet_field = format!("{field}.subnet");
        if let IpNet::V6(v6) = subnet
            && v6.addr().to_ipv4_mapped().is_some()
        {
            return Err(IpamError::config(
                subnet_field,
                format!("{subnet} is an IPv4-mapped IPv6 subnet; write the IPv4 subnet instead"),
            ));
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(IpamError::config(
                subnet_field,
                format!(
                    "{subnet} is too small to allocate from (the prefix length must be at most {})",
                    subnet.max_prefix_len() - 2
                ),
            ));
        }
        if subnet.addr() != subnet.network() {
            return Err(IpamError::config(
                subnet_field,
                format!(
                    "{subnet} has host bits set; for a /{} the network address is {}",
                    subnet.prefix_len(),
                    subnet.network()
                ),
            ));
        }

        let network = to_bits(subnet.network());
        let first = from_bits(&subnet, network + 1);
        let last = match subnet {
            IpNet::V4(_) => from_bits(&subnet, to_bits(subnet.broadcast()) - 1),
            IpNet::V6(_) => subnet.broadcast(),
        };

        let start = match start {
            Some(ip) => inside(&subnet, ip, &format!("{field}.rangeStart"))?,
            None => first,
        };
        let end_given = end.is_some();
        let end = match end {
            Some(ip) => inside(&subnet, ip, &format!("{field}.rangeEnd"))?,
            None => last,
        };
        if to_bits(start) > to_bits(end) {
            return Err(if end_given {
                IpamError::config(
                    format!("{field}.rangeEnd"),
                    format!("rangeEnd {end} is before rangeStart {start}"),
                )
            } else {
                IpamError::config(
                    format!("{field}.rangeStart"),
                    format!("rangeStart {start} is after the default rangeEnd {end}"),
                )
            });
        }
        let gateway = match gateway {
            Some(ip) => inside(&subnet, ip, &format!("{field}.gateway"))?,
            None => first,
        };
        Ok(Range {
            subnet,
            start,
            end,
            gateway: Some(gateway),
        })
    }

    /// True for IPv4 ranges.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.subnet, IpNet::V4(_))
    }

    /// Whether `ip` is one of the range's addresses (`start..=end`). Like
    /// host-local, addresses of the subnet outside that window are not "in"
    /// the range, so they cannot be requested either.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.is_ipv4()
            && to_bits(self.start) <= to_bits(ip)
            && to_bits(ip) <= to_bits(self.end)
    }

    /// Whether two ranges share an address (ranges of different families never do).
    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && to_bits(self.start) <= to_bits(other.end)
            && to_bits(other.start) <= to_bits(self.end)
    }

    /// How many addresses this range can hand out (the gateway excluded),
    /// saturating for the absurd case of a whole IPv6 space.
    pub fn allocatable(&self) -> u128 {
        // end - start is the count minus one; it is exact when the gateway
        // is in the window, and only saturates for a whole address space.
        let span_less_one = to_bits(self.end) - to_bits(self.start);
        match self.gateway {
            Some(gw) if self.contains(gw) => span_less_one,
            _ => span_less_one.saturating_add(1),
        }
    }

    /// The address with this range's prefix length, as handed to the pod;
    /// `None` when `ip` is of the other family.
    pub fn with_prefix(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.is_ipv4() {
            return None;
        }
        IpNet::new(ip, self.subnet.prefix_len()).ok()
    }
}

/// host-local's notation `start-end`, used in error messages.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The ranges one attachment gets exactly one address from (host-local's
/// "range set"); one set per address family is the dual-stack setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// True for IPv4 sets (judged by the first range; validation keeps sets
    /// single-family). `None` for an empty set.
    pub fn is_ipv4(&self) -> Option<bool> {
        self.0.first().map(Range::is_ipv4)
    }

    /// How many addresses the set can hand out, gateways excluded.
    pub fn allocatable(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |n, r| n.saturating_add(r.allocatable()))
    }

    /// Every allocatable address once, in host-local's order, each with the
    /// index of its range: round-robin starting just after `last_reserved`
    /// (when it lies in the set) through the end of its range, on through the
    /// following ranges, wrapping to the first, and ending with
    /// `last_reserved` itself; without a usable `last_reserved`, from the
    /// first range's start. Each range's gateway is skipped.
    ///
    /// Round-robin matters: a crash-looping pod does not get the address it
    /// just released until the whole set has been used.
    pub fn candidates(
        &self,
        last_reserved: Option<IpAddr>,
    ) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
        let n = self.0.len();
        // (range index, first, last) stretches of the walk, inclusive.
        let mut stretches: Vec<(usize, u128, u128)> = Vec::with_capacity(n + 1);
        let resume = last_reserved.and_then(|ip| {
            let ip = ip.to_canonical();
            self.0.iter().position(|r| r.contains(ip)).map(|k| (k, ip))
        });
        match resume {
            Some((k, ip)) => {
                let r = &self.0[k];
                let at = to_bits(ip);
                if at < to_bits(r.end) {
                    stretches.push((k, at + 1, to_bits(r.end)));
                }
                for i in (k + 1..n).chain(0..k) {
                    stretches.push((i, to_bits(self.0[i].start), to_bits(self.0[i].end)));
                }
                stretches.push((k, to_bits(r.start), at));
            }
            None => {
                for (i, r) in self.0.iter().enumerate() {
                    stretches.push((i, to_bits(r.start), to_bits(r.end)));
                }
            }
        }
        stretches.into_iter().flat_map(move |(i, lo, hi)| {
            let r = &self.0[i];
            (lo..=hi)
                .map(move |bits| (i, from_bits(&r.subnet, bits)))
                .filter(move |(_, ip)| Some(*ip) != r.gateway)
        })
    }
}

/// host-local's notation: ranges joined by commas.
impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Canonicalises `ip` (IPv4-mapped IPv6 becomes IPv4, like Go's `To4`) and
/// checks it has the subnet's family and lies inside it.
fn inside(subnet: &IpNet, ip: IpAddr, field: &str) -> Result<IpAddr, IpamError> {
    let ip = ip.to_canonical();
    if ip.is_ipv4() != matches!(subnet, IpNet::V4(_)) {
        return Err(IpamError::config(
            field,
            format!("{ip} is not of the same address family as subnet {subnet}"),
        ));
    }
    if !subnet.contains(&ip) {
        return Err(IpamError::config(
            field,
            format!("{ip} is not inside subnet {subnet}"),
        ));
    }
    Ok(ip)
}

/// An address as a number, so ranges can be walked and compared.
pub(crate) fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The inverse of [`to_bits`] in `subnet`'s family. IPv4 callers only pass
/// values that came from IPv4 addresses, so the narrowing keeps every bit.
fn from_bits(subnet: &IpNet, bits: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(subnet: &str, start: &str, end: &str) -> Range {
        let ip = |s: &str| s.parse().ok();
        Range::new(subnet.parse().unwrap(), ip(start), ip(end), None, "t").unwrap()
    }

    fn walk(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(|s| s.parse().unwrap()))
            .map(|(i, ip)| format!("{i}:{ip}"))
            .collect()
    }

    #[test]
    fn walk_without_cursor_starts_at_the_first_range() {
        let set = RangeSet(vec![
            range("10.0.0.0/29", "", "10.0.0.3"),
            range("10.0.1.0/29", "10.0.1.5", ""),
        ]);
        assert_eq!(
            walk(&set, None),
            ["0:10.0.0.2", "0:10.0.0.3", "1:10.0.1.5", "1:10.0.1.6"]
        );
        // A cursor outside the set is ignored, as in host-local.
        assert_eq!(walk(&set, Some("10.0.0.5")), walk(&set, None));
    }

    #[test]
    fn walk_resumes_after_cursor_and_ends_with_it() {
        let set = RangeSet(vec![
            range("10.0.0.0/29", "", "10.0.0.3"),
            range("10.0.1.0/29", "10.0.1.5", ""),
        ]);
        assert_eq!(
            walk(&set, Some("10.0.0.2")),
            ["0:10.0.0.3", "1:10.0.1.5", "1:10.0.1.6", "0:10.0.0.2"]
        );
        // Cursor at the end of a range moves on to the next range.
        assert_eq!(
            walk(&set, Some("10.0.0.3")),
            ["1:10.0.1.5", "1:10.0.1.6", "0:10.0.0.2", "0:10.0.0.3"]
        );
        // Cursor at the end of the last range wraps to the first.
        assert_eq!(
            walk(&set, Some("10.0.1.6")),
            ["0:10.0.0.2", "0:10.0.0.3", "1:10.0.1.5", "1:10.0.1.6"]
        );
    }

    #[test]
    fn ipv6_walk_reaches_the_last_address() {
        let set = RangeSet(vec![range("fd00::/126", "", "")]);
        assert_eq!(walk(&set, Some("fd00::3")), ["0:fd00::2", "0:fd00::3"]);
        let full = RangeSet(vec![range("::/0", "::", "")]);
        assert_eq!(full.allocatable(), u128::MAX);
        let last = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().ok();
        let first: Vec<IpAddr> = full.candidates(last).take(2).map(|(_, ip)| ip).collect();
        assert_eq!(
            first,
            ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"].map(|s| s.parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn counts_exclude_the_gateway() {
        assert_eq!(range("10.0.0.0/24", "", "").allocatable(), 253);
        assert_eq!(
            range("10.0.0.0/24", "10.0.0.10", "10.0.0.19").allocatable(),
            10
        );
    }
}
