//! A segment's subnets as a lease pool, and why a claim from it failed in
//! the segment's own terms.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::leasing::AcquireError;
use crate::pools::{Pool, Pools};

/// The subnets' blocks (subnet, block length) as a lease pool: every
/// block may be handed out (a block is not a network of its own, so none
/// is reserved).
pub(super) fn block_pool(ipv4: Option<(Ipv4Net, u8)>, ipv6: Option<(Ipv6Net, u8)>) -> Pools {
    const CHECKED: &str = "block length checked by validate";
    Pools {
        ipv4: ipv4.map(|(subnet, len)| Pool {
            network: subnet,
            subnet_len: len,
            min: Ipv4Net::new(subnet.network(), len).expect(CHECKED),
            max: Ipv4Net::new(subnet.broadcast(), len)
                .expect(CHECKED)
                .trunc(),
        }),
        ipv6: ipv6.map(|(subnet, len)| Pool {
            network: subnet,
            subnet_len: len,
            min: Ipv6Net::new(subnet.network(), len).expect(CHECKED),
            max: Ipv6Net::new(subnet.broadcast(), len)
                .expect(CHECKED)
                .trunc(),
        }),
    }
}

/// Why a claim failed, in the segment's terms (the pod-subnet wording of
/// [`AcquireError`] names the wrong knobs).
pub(super) fn unclaimed_reason(segment: &str, pool: &Pools, e: &AcquireError) -> String {
    // (subnet, block length, the keys that set them) per family.
    let v4 = pool
        .ipv4
        .as_ref()
        .map(|p| (IpNet::V4(p.network), p.subnet_len, "Subnet", "BlockLen"));
    let v6 = pool.ipv6.as_ref().map(|p| {
        (
            IpNet::V6(p.network),
            p.subnet_len,
            "IPv6Subnet",
            "IPv6BlockLen",
        )
    });
    match e {
        AcquireError::NoFreeSubnet { network, size, .. } => {
            // The family that ran out is the one the error names.
            let full = [&v4, &v6]
                .into_iter()
                .flatten()
                .find(|f| f.0 == *network)
                .or(v4.as_ref().or(v6.as_ref()))
                .expect("a segment's pool has a family");
            let (subnet, len, subnet_key, len_key) = full;
            format!(
                "segment {segment}: all {size} blocks (/{len}) of {subnet_key} {subnet} are claimed by other nodes; give the segment a larger {subnet_key} or a longer {len_key}"
            )
        }
        other => {
            let subnets: Vec<String> = [&v4, &v6]
                .into_iter()
                .flatten()
                .map(|f| format!("{} {}", f.2, f.0))
                .collect();
            format!(
                "segment {segment}: claiming blocks of {}: {other}",
                subnets.join(" and ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_the_subnet_is_in_the_pool() {
        let pool = block_pool(Some(("192.168.50.0/24".parse().unwrap(), 28)), None);
        let p = pool.ipv4.unwrap();
        assert_eq!(p.size(), 16);
        assert_eq!(p.subnet(0), Some("192.168.50.0/28".parse().unwrap()));
        assert_eq!(p.subnet(15), Some("192.168.50.240/28".parse().unwrap()));
        let whole = block_pool(Some(("10.1.0.0/30".parse().unwrap(), 30)), None)
            .ipv4
            .unwrap();
        assert_eq!(whole.size(), 1);
        let v6 = block_pool(None, Some(("fd00:50::/48".parse().unwrap(), 64)))
            .ipv6
            .unwrap();
        assert_eq!(v6.size(), 1 << 16);
        assert_eq!(v6.subnet(0), Some("fd00:50::/64".parse().unwrap()));
        assert_eq!(
            v6.subnet(0xffff),
            Some("fd00:50:0:ffff::/64".parse().unwrap())
        );
    }

    #[test]
    fn a_full_subnet_names_the_segment_knobs() {
        let pool = block_pool(
            Some(("192.168.50.0/24".parse().unwrap(), 28)),
            Some(("fd00:50::/120".parse().unwrap(), 124)),
        );
        let full = |network: &str, subnet_len| AcquireError::NoFreeSubnet {
            network: network.parse().unwrap(),
            subnet_len,
            size: 16,
        };
        let text = unclaimed_reason("lab1", &pool, &full("192.168.50.0/24", 28));
        assert!(
            text.contains("all 16 blocks (/28) of Subnet 192.168.50.0/24"),
            "{text}"
        );
        assert!(text.contains("BlockLen"), "{text}");
        let text = unclaimed_reason("lab1", &pool, &full("fd00:50::/120", 124));
        assert!(
            text.contains("all 16 blocks (/124) of IPv6Subnet fd00:50::/120"),
            "{text}"
        );
        assert!(text.contains("longer IPv6BlockLen"), "{text}");
    }
}
