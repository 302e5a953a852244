//! ARP on the balancer's ports: requests for its addresses (interface, secondary, SNAT,
//! VIPs announced there) answered in place, and what hosts show of their MACs reported to
//! management.

use super::Datapath;
use crate::channel::Event;
use crate::lb::LocalKind;
use crate::stats::Ctr;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::{self};

impl Datapath {
    pub(super) fn arp(&mut self, frame: &mut [u8], l3: usize, in_if: IfIdx) -> Verdict {
        let a = match wire::parse_arp(frame, l3) {
            Ok(a) => a,
            Err(r) => return Verdict::Drop(r),
        };
        // A floating address the HA peer owns is not ours to answer for.
        let ours = matches!(self.snap.local(a.target_ip),
            Some((i, k)) if i == in_if && k != LocalKind::Standby);
        // Learn from replies to us, and from requests for us that show a new MAC.
        if ours && !a.sender_ip.is_unspecified() {
            let known = self.neigh.get(u32::from(a.sender_ip)).copied();
            if (!a.is_request || known != Some(a.sender_mac))
                && self
                    .events
                    .push(Event::Neighbour {
                        ip: a.sender_ip,
                        mac: a.sender_mac,
                        iface: in_if,
                    })
                    .is_err()
            {
                self.ctr.inc(Ctr::EventsLost);
            }
        }
        if a.is_request && ours && a.sender_ip != a.target_ip {
            let mac = self.snap.interfaces[usize::from(in_if.0)].mac;
            wire::arp_request_to_reply(frame, l3, &a, mac);
            return Verdict::Reply;
        }
        if !a.is_request && ours {
            return Verdict::Consumed;
        }
        Verdict::Drop(DropReason::ArpNotForUs)
    }
}
