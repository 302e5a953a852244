//! IPv4 fragment policy: **forward by fragment id after the first fragment**, no reassembly.
//!
//! The first fragment carries the L4 header, so it is balanced like any packet of its flow
//! (and, in NAT modes, translated, including its ports and the L4 checksum, which RFC 1624
//! updates without seeing the rest of the datagram). Its (source, destination, protocol, IP id)
//! is remembered for a short time with what was decided: the conn (by its tuple, looked up
//! again for each later fragment) or the core it was handed to. Later fragments of the same
//! datagram follow that decision (addresses translated, ports untouched). A later fragment
//! that arrives before its first fragment, after the entry expired, or after its conn ended,
//! is dropped and counted (`fragment_no_flow`); the sender's IP retransmission recovers.
//! Fragments addressed to the balancer itself are dropped (`fragment`). Direct-mapped, fixed
//! size, per core.

use super::{Datapath, Pkt};
use crate::flow::FlowKey;
use crate::lb::LocalKind;
use crate::types::{DropReason, PacketBuf, Verdict, fmix64};

/// What the first fragment of a datagram led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FragAction {
    /// The conn holding this tuple, looked up again for each later fragment: a conn that
    /// ended meanwhile (its table slot perhaps another conn's now) is not followed.
    Conn(FlowKey),
    /// Handed to this worker.
    Steer(u16),
}

#[derive(Clone, Copy)]
struct Entry {
    key: (u32, u32, u16, u8),
    action: FragAction,
    at: u32,
    used: bool,
}

pub(super) struct FragTable {
    e: Box<[Entry]>,
    timeout_ms: u32,
}

const SIZE: usize = 4096;

impl FragTable {
    pub fn new(timeout_ms: u32) -> Self {
        FragTable {
            e: vec![
                Entry {
                    key: (0, 0, 0, 0),
                    action: FragAction::Steer(0),
                    at: 0,
                    used: false,
                };
                SIZE
            ]
            .into_boxed_slice(),
            timeout_ms,
        }
    }

    fn slot(key: (u32, u32, u16, u8)) -> usize {
        let h = fmix64(
            (u64::from(key.0) << 32 | u64::from(key.1))
                ^ (u64::from(key.2) << 8 | u64::from(key.3)),
        );
        (h as usize) & (SIZE - 1)
    }

    pub fn remember(
        &mut self,
        src: u32,
        dst: u32,
        id: u16,
        proto: u8,
        action: FragAction,
        now: u32,
    ) {
        let key = (src, dst, id, proto);
        self.e[Self::slot(key)] = Entry {
            key,
            action,
            at: now,
            used: true,
        };
    }

    #[inline]
    pub fn find(&self, src: u32, dst: u32, id: u16, proto: u8, now: u32) -> Option<FragAction> {
        let key = (src, dst, id, proto);
        let e = &self.e[Self::slot(key)];
        (e.used && e.key == key && now.wrapping_sub(e.at) <= self.timeout_ms).then_some(e.action)
    }
}

impl Datapath {
    /// A non-first fragment: it follows its first fragment's decision.
    pub(super) fn later_fragment<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        local: Option<LocalKind>,
    ) -> Verdict {
        let (src, dst) = (u32::from(pk.ip.src), u32::from(pk.ip.dst));
        match self.frags.find(src, dst, pk.ip.id, pk.ip.proto, pk.now) {
            Some(FragAction::Steer(w)) => Verdict::Steer(w),
            Some(FragAction::Conn(key)) => match self.lookup(&key, key.hash(), pk.now) {
                Some((id, dir)) => {
                    self.flows.conn_mut(id).touch(pk.now);
                    self.send(p, pk, id, dir, false)
                }
                // The conn ended since the first fragment.
                None => Verdict::Drop(DropReason::FragmentNoFlow),
            },
            None if local == Some(LocalKind::Interface) && self.kernel(pk.in_if) => {
                Verdict::ToKernel
            }
            None if local == Some(LocalKind::Interface) => Verdict::Drop(DropReason::Fragment),
            None if local.is_none() && self.snap.routing => self.route(p, pk),
            None => Verdict::Drop(DropReason::FragmentNoFlow),
        }
    }
}
