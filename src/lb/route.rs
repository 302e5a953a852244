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
mod tests;
