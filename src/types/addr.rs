//! Address types beyond the standard library's: MAC addresses and IPv4 prefixes, written
//! and read as operators write them (`02:00:00:00:00:10`, `10.20.0.10/24`), so that the
//! configuration deserializes straight into them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `FromStr`'s error for [`MacAddr`] and [`Ipv4Cidr`]: what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrParseError(&'static str);

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not {}", self.0)
    }
}

impl std::error::Error for AddrParseError {}

const MAC_EXPECTED: &str = "a MAC address (six hex pairs, 02:00:00:00:00:10)";
const CIDR_EXPECTED: &str = "an IPv4 address/prefix (a.b.c.d/len)";

impl FromStr for MacAddr {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = AddrParseError(MAC_EXPECTED);
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or(bad)?;
            if p.len() != 2 {
                return Err(bad);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad)?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(bad),
        }
    }
}

/// An IPv4 prefix, `addr/len`. `addr` keeps the host bits as written (an interface's own
/// address with its subnet's length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Cidr {
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
    /// The prefix with its host bits cleared (the network).
    pub fn network(self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = AddrParseError(CIDR_EXPECTED);
        let (a, l) = s.split_once('/').ok_or(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad)?;
        let len: u8 = l.parse().map_err(|_| bad)?;
        if len > 32 {
            return Err(bad);
        }
        Ok(Ipv4Cidr { addr, len })
    }
}

/// Serde as the text operators write: `Display` out, `FromStr` in, and a parse error names
/// the value and what was expected.
macro_rules! serde_as_text {
    ($t:ty, $expected:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|_| de::Error::invalid_value(Unexpected::Str(&s), &$expected))
            }
        }
    };
}

serde_as_text!(MacAddr, MAC_EXPECTED);
serde_as_text!(Ipv4Cidr, CIDR_EXPECTED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_prefix_parse_print_and_refuse_what_they_are_not() {
        let c: Ipv4Cidr = "10.20.0.10/24".parse().unwrap();
        assert!(c.contains("10.20.0.200".parse().unwrap()));
        assert!(!c.contains("10.20.1.1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.20.0.10/24");
        assert_eq!(c.network().to_string(), "10.20.0.0/24");
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Cidr>()
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        for bad in [
            "10.20.0.10",
            "10.20.0.10/33",
            "10.20.0.300/24",
            "/24",
            "x/y",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let m: MacAddr = "02:00:00:00:00:1f".parse().unwrap();
        assert_eq!(m, MacAddr([2, 0, 0, 0, 0, 0x1f]));
        assert_eq!(m.to_string(), "02:00:00:00:00:1f");
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:0",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
