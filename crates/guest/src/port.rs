//! Ports a pod declares for its guest: `8080` (TCP) or `53/udp`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A transport port, TCP unless it says `/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
}

impl Port {
    pub fn tcp(number: u16) -> Port {
        Port {
            number,
            protocol: Protocol::Tcp,
        }
    }

    pub fn udp(number: u16) -> Port {
        Port {
            number,
            protocol: Protocol::Udp,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.protocol.as_str())
    }
}

/// Why a port (or a list of them) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPort {
    #[error("{0:?}: protocol must be tcp or udp")]
    Protocol(String),
    #[error("{0:?} is not a port (1-65535, optionally /tcp or /udp)")]
    Number(String),
    #[error("{0} is listed twice")]
    Twice(Port),
}

impl FromStr for Port {
    type Err = InvalidPort;

    fn from_str(s: &str) -> Result<Port, InvalidPort> {
        let (number, protocol) = match s.trim().split_once('/') {
            None => (s.trim(), Protocol::Tcp),
            Some((n, p)) => {
                let protocol = match p.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return Err(InvalidPort::Protocol(s.into())),
                };
                (n, protocol)
            }
        };
        match number.parse::<u16>() {
            Ok(n) if n > 0 => Ok(Port {
                number: n,
                protocol,
            }),
            _ => Err(InvalidPort::Number(s.into())),
        }
    }
}

/// Parses a comma-separated list (`"8080,53/udp"`), refusing duplicates.
pub fn parse_list(s: &str) -> Result<Vec<Port>, InvalidPort> {
    let mut out: Vec<Port> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port: Port = part.parse()?;
        if out.contains(&port) {
            return Err(InvalidPort::Twice(port));
        }
        out.push(port);
    }
    Ok(out)
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Port, D::Error> {
        // Configs may say 8080 or "8080/tcp".
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u16::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .map(Port::tcp)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a port (1-65535)"))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_protocols() {
        assert_eq!("8080".parse::<Port>(), Ok(Port::tcp(8080)));
        assert_eq!("53/UDP".parse::<Port>(), Ok(Port::udp(53)));
        assert!("0".parse::<Port>().is_err());
        assert!("70000".parse::<Port>().is_err());
        assert!("80/sctp".parse::<Port>().is_err());
        assert_eq!(
            parse_list("80, 53/udp,"),
            Ok(vec![Port::tcp(80), Port::udp(53)])
        );
        assert!(
            parse_list("80,80/tcp")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn json_accepts_numbers_and_strings() {
        let v: Vec<Port> = serde_json::from_str(r#"[8080, "53/udp"]"#).unwrap();
        assert_eq!(v, vec![Port::tcp(8080), Port::udp(53)]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"["8080/tcp","53/udp"]"#
        );
        assert!(serde_json::from_str::<Vec<Port>>("[0]").is_err());
    }
}
