//! The worker's neighbour cache: MACs management resolved, and rate-limited requests to
//! resolve the ones a packet needs and nobody knows yet.

use std::net::Ipv4Addr;

use super::{Datapath, RESOLVE_EVERY_MS};
use crate::channel::Event;
use crate::stats::Ctr;
use crate::types::IfIdx;

impl Datapath {
    /// The MAC of `ip`, or `None` after asking management to resolve it (rate-limited).
    #[inline]
    pub(super) fn mac_for(&mut self, ip: Ipv4Addr, iface: IfIdx, now: u32) -> Option<[u8; 6]> {
        let k = u32::from(ip);
        if let Some(m) = self.neigh.get(&k) {
            return Some(*m);
        }
        let slot = (k as usize).wrapping_mul(0x9e37_79b9) >> 26 & 63;
        let (asked_ip, at) = self.resolve_asked[slot];
        if asked_ip != k || now.wrapping_sub(at) > RESOLVE_EVERY_MS {
            self.resolve_asked[slot] = (k, now);
            if self.events.push(Event::Resolve { ip, iface }).is_err() {
                self.ctr.inc(Ctr::EventsLost);
            }
        }
        None
    }
}
