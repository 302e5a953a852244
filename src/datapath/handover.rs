//! Which worker owns a packet's conn, and handing a packet to it without the full path.
//!
//! A NAT conn lives on one worker ([`crate::mode::snat`]: its client endpoint decides, and
//! its SNAT ports come from that worker's slice), so both directions meet there without
//! locks. A NIC's RSS spreads frames by a hash of their own tuple, so with N workers about
//! (N-1)/N of the frames of NAT services reach a worker that does not own their conn and go
//! to the owner over an SPSC ring. Both ends of that hand-over stay in the fast lane:
//!
//! - the receiving worker, whose table misses the frame, asks [`Datapath::fast_handover`]
//!   (the owner, by the same rule as the full path's [`Datapath::owner`]) before sending it
//!   down the full path;
//! - the owner runs a handed-over frame through the fast lane like one of its own
//!   ([`Datapath::fast_path_steered`]), the full path only when that declines.
//!
//! Anything the rule cannot decide from the tuple alone (a service with an access list, DNS,
//! an address the HA peer holds, a VIP without the service) takes the full path, which
//! decides it the same way as before.

use super::Datapath;
use super::fast::Pre;
use crate::config::Mode;
use crate::flow::FlowKey;
use crate::lb::LocalKind;
use crate::mode::snat::{owner_of, port_owner};
use crate::stats::Ctr;
use crate::types::DropReason;

impl Datapath {
    /// The worker that owns the conn of a TCP/UDP packet with tuple `key` (NAT conns only):
    /// `None` for a DSR service's packet and where no NAT conn can be meant (a port outside
    /// the SNAT range); `Err` for a packet that is for nobody here. `local` is what the
    /// destination is to us, `service` the service of a packet to a VIP.
    #[inline]
    pub(super) fn owner(
        &self,
        key: &FlowKey,
        local: Option<LocalKind>,
        service: Option<u16>,
    ) -> Result<Option<usize>, DropReason> {
        let workers = self.me.count;
        Ok(match (local, service) {
            (Some(LocalKind::Vip), Some(si))
                if self.snap.services[usize::from(si)].mode == Mode::Dsr =>
            {
                None
            }
            (Some(LocalKind::Vip), _) => Some(owner_of(key.src, key.src_port, workers)),
            (Some(_), _) => port_owner(key.dst_port, workers, self.snap.nat_ports),
            (None, _) if self.snap.routing => Some(owner_of(key.dst, key.dst_port, workers)),
            (None, _) => return Err(DropReason::NotForUs),
        })
    }

    /// For a fast-lane frame (`pre`) this worker has no conn for: the other worker that owns
    /// its conn, with the frame counted as received (`frame_len` bytes) exactly as the full
    /// path counts a frame it hands over; `None` (nothing counted) when the frame is this
    /// worker's or the full path must decide. Out of line: only the fast lane's misses call
    /// it, and the burst loop it is called from stays small.
    #[inline(never)]
    pub fn fast_handover(&mut self, pre: &Pre, frame_len: usize) -> Option<u16> {
        if self.me.count <= 1 {
            return None;
        }
        let key = &pre.key;
        let local = self.snap.local(key.dst.into()).map(|(_, k)| k);
        let service = match local {
            Some(LocalKind::Vip) => {
                let si = self.snap.service(key.dst.into(), key.dst_port, key.proto)?;
                // The access list is checked before the hand-over: the full path's job.
                if self.snap.services[usize::from(si)].acl.is_some() {
                    return None;
                }
                Some(si)
            }
            Some(LocalKind::Dns | LocalKind::Standby) => return None,
            _ => None,
        };
        let owner = self.owner(key, local, service).ok()??;
        if owner == self.me.index {
            return None;
        }
        self.ctr.inc(Ctr::RxPackets);
        self.ctr.add(Ctr::RxBytes, frame_len as u64);
        Some(owner as u16)
    }
}
