//! IPv4 routing table: connected subnets and static routes, longest prefix match.
//!
//! One hash map per prefix length present, probed from the longest present length down: a
//! lookup costs one hash probe per distinct prefix length in use (typically 2-4), whatever
//! the number of routes. Built once per snapshot, read-only on the workers.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use rustc_hash::FxHasher;

use crate::types::IfIdx;

/// Where a destination is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub iface: IfIdx,
    /// Gateway to hand the packet to; `None` = the destination is on-link.
    pub via: Option<Ipv4Addr>,
}

impl NextHop {
    /// The address whose MAC the frame goes to.
    #[inline]
    pub fn l2_target(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.via.unwrap_or(dst)
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Per prefix length: masked network -> next hop.
    by_len: Vec<HashMap<u32, NextHop, BuildHasherDefault<FxHasher>>>,
    /// Prefix lengths present, longest first.
    lens: Vec<u8>,
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

impl RouteTable {
    pub fn new() -> Self {
        RouteTable {
            by_len: (0..=32).map(|_| HashMap::default()).collect(),
            lens: Vec::new(),
        }
    }

    /// Adds `net/len -> hop`; an existing entry for the same prefix is kept (connected
    /// subnets are added first and win over a static route for the same prefix).
    pub fn add(&mut self, net: Ipv4Addr, len: u8, hop: NextHop) {
        let key = u32::from(net) & mask(len);
        self.by_len[usize::from(len)].entry(key).or_insert(hop);
        if !self.lens.contains(&len) {
            self.lens.push(len);
            self.lens.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        let d = u32::from(dst);
        self.lens
            .iter()
            .find_map(|&len| self.by_len[usize::from(len)].get(&(d & mask(len))).copied())
    }

    pub fn len(&self) -> usize {
        self.by_len.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        let on = |i| NextHop {
            iface: IfIdx(i),
            via: None,
        };
        t.add(Ipv4Addr::new(10, 20, 0, 0), 24, on(0));
        t.add(Ipv4Addr::new(10, 20, 2, 0), 24, on(1));
        t.add(
            Ipv4Addr::new(0, 0, 0, 0),
            0,
            NextHop {
                iface: IfIdx(0),
                via: Some(Ipv4Addr::new(10, 20, 0, 1)),
            },
        );
        t.add(
            Ipv4Addr::new(10, 20, 2, 128),
            25,
            NextHop {
                iface: IfIdx(1),
                via: Some(Ipv4Addr::new(10, 20, 2, 254)),
            },
        );
        assert_eq!(t.lookup(Ipv4Addr::new(10, 20, 0, 7)), Some(on(0)));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 20, 2, 7)), Some(on(1)));
        let h = t.lookup(Ipv4Addr::new(10, 20, 2, 200)).unwrap();
        assert_eq!(h.via, Some(Ipv4Addr::new(10, 20, 2, 254)));
        let d = t.lookup(Ipv4Addr::new(10, 20, 9, 2)).unwrap();
        assert_eq!(
            d.l2_target(Ipv4Addr::new(10, 20, 9, 2)),
            Ipv4Addr::new(10, 20, 0, 1)
        );
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn no_default_route_means_unreachable() {
        let mut t = RouteTable::new();
        t.add(
            Ipv4Addr::new(10, 20, 0, 0),
            24,
            NextHop {
                iface: IfIdx(0),
                via: None,
            },
        );
        assert_eq!(t.lookup(Ipv4Addr::new(192, 0, 2, 1)), None);
    }
}
