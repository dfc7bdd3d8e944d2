//! What eth0 gives the guest, noted in eth0's alias by `poststart` so that
//! `create-runtime` can give it back (see the module above).

use std::net::Ipv4Addr;

use ipnet::IpNet;

/// eth0's alias while the guest has its address: what to give back.
const SAVED_PREFIX: &str = "tweed-urunc-hook";

/// What eth0 gave the guest: `tweed-urunc-hook <address> via <gateway>`.
#[derive(Debug, PartialEq)]
pub struct Saved {
    pub address: IpNet,
    pub gateway: Ipv4Addr,
}

impl Saved {
    pub fn parse(alias: &str) -> Option<Saved> {
        let rest = alias.strip_prefix(SAVED_PREFIX)?.trim();
        let (address, gateway) = rest.split_once(" via ")?;
        Some(Saved {
            address: address.parse().ok()?,
            gateway: gateway.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SAVED_PREFIX} {} via {}", self.address, self.gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_eth0_gave_up_reads_back_from_its_alias() {
        let saved = Saved {
            address: "10.244.1.6/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
        };
        assert_eq!(
            saved.to_string(),
            "tweed-urunc-hook 10.244.1.6/24 via 10.244.1.1"
        );
        assert_eq!(Saved::parse(&saved.to_string()), Some(saved));
        assert_eq!(Saved::parse("tweed/eth0"), None);
        assert_eq!(Saved::parse("tweed-urunc-hook 10.244.1.6/24"), None);
    }
}
