//! The worker's neighbour cache: MACs management resolved (a map sized once, never grown
//! on the data path), and rate-limited requests to resolve the ones a packet needs and
//! nobody knows yet.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use rustc_hash::FxHasher;

use super::Datapath;
use crate::channel::{Event, NEIGH_CAPACITY};
use crate::stats::Ctr;
use crate::types::IfIdx;

/// Re-ask management to resolve the same address at most this often.
const RESOLVE_EVERY_MS: u32 = 500;

/// Slots of the table of recent resolve requests (direct-mapped by address).
const ASKED_SLOTS: usize = 64;

/// Known MACs by address, and the resolve requests recently sent.
pub(super) struct NeighCache {
    macs: HashMap<u32, [u8; 6], BuildHasherDefault<FxHasher>>,
    /// (address, when) of the last request per slot.
    asked: [(u32, u32); ASKED_SLOTS],
}

impl NeighCache {
    pub(super) fn new() -> Self {
        let mut macs = HashMap::default();
        macs.reserve(NEIGH_CAPACITY);
        NeighCache {
            macs,
            asked: [(0, 0); ASKED_SLOTS],
        }
    }

    #[inline]
    pub(super) fn get(&self, ip: u32) -> Option<&[u8; 6]> {
        self.macs.get(&ip)
    }

    /// Sets (or, with `None`, forgets) a neighbour's MAC; a new one beyond the capacity is
    /// not cached.
    pub(super) fn set(&mut self, ip: u32, mac: Option<[u8; 6]>) {
        match mac {
            Some(m) if self.macs.len() < NEIGH_CAPACITY || self.macs.contains_key(&ip) => {
                self.macs.insert(ip, m);
            }
            Some(_) => {}
            None => {
                self.macs.remove(&ip);
            }
        }
    }

    /// Whether to ask management to resolve `ip` now (not asked within the last
    /// `RESOLVE_EVERY_MS`); records the request.
    fn should_ask(&mut self, ip: u32, now: u32) -> bool {
        let slot = (ip as usize).wrapping_mul(0x9e37_79b9) >> 26 & (ASKED_SLOTS - 1);
        let (asked_ip, at) = self.asked[slot];
        if asked_ip != ip || now.wrapping_sub(at) > RESOLVE_EVERY_MS {
            self.asked[slot] = (ip, now);
            return true;
        }
        false
    }
}

impl Datapath {
    /// The MAC of `ip`, or `None` after asking management to resolve it (rate-limited).
    #[inline]
    pub(super) fn mac_for(&mut self, ip: Ipv4Addr, iface: IfIdx, now: u32) -> Option<[u8; 6]> {
        let k = u32::from(ip);
        if let Some(m) = self.neigh.get(k) {
            return Some(*m);
        }
        if self.neigh.should_ask(k, now) && self.events.push(Event::Resolve { ip, iface }).is_err()
        {
            self.ctr.inc(Ctr::EventsLost);
        }
        None
    }
}
