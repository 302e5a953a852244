//! The fast lane: packets of established conns, decided in a few dozen instructions.
//!
//! Nearly every packet a balancer sees belongs to a conn it already knows, and such a packet
//! needs little: the conn, the next hop's MAC, a rewrite. The full decision ([`Datapath::process`])
//! walks the configuration snapshot for all of that (interface, service, backend, route,
//! neighbour map) packet after packet. The fast lane instead keeps what the snapshot and the
//! neighbour table say about a next hop in small per-worker caches, and otherwise takes exactly
//! the same decision:
//!
//! 1. [`Datapath::pre_parse`] (the worker's first pass over a burst, which also prefetches the
//!    conn-table buckets) accepts only an IPv4 packet to the receiving interface's MAC,
//!    untagged or with that interface's 802.1Q tag ([`Gate`]), without options, not a
//!    fragment, TCP or UDP, every length and the header checksum valid, and computes its
//!    tuple and hash once.
//! 2. [`Datapath::fast_path`] forwards it if its conn exists and the conn's service, next hop
//!    and VLAN need nothing special; otherwise it returns `None` having changed and counted
//!    nothing, and the frame takes the full path (which then reaches the same decision the slow
//!    way: creating the conn, asking for a MAC, answering TTL expiry, re-tagging, ...).
//!
//! The caches are tagged with a generation (epoch) bumped by every snapshot and neighbour change, so
//! a reload, a drain, a health transition or a new MAC is seen by the very next packet. The
//! unit test `fast_lane_decides_exactly_like_the_full_path` runs every frame through both and
//! compares frames, verdicts and counters.

use super::Datapath;
use crate::config::Mode;
use crate::flow::{ConnId, Dir, FlowKey, NO_HINT, Timeouts, flags};
use crate::lb::Snapshot;
use crate::mode::nat_endpoints;
use crate::stats::Ctr;
use crate::types::IfIdx;
use crate::wire::{self, PROTO_TCP, PROTO_UDP};

/// What the fast lane accepts on one interface: frames to its MAC, with its VLAN tag (or
/// untagged where it has none). Read once per burst ([`Datapath::fast_gate`]), so the
/// first pass checks the destination with the frame's bytes at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    mac: [u8; 6],
    vlan: u16,
}

/// What the first pass learned about a frame the fast lane may take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pre {
    pub key: FlowKey,
    /// `key.hash()`.
    pub hash: u64,
    /// The conn or conn bucket the prefetch pass found for it
    /// ([`crate::flow::FlowTable::prefetch_conn`]), or [`NO_HINT`].
    pub hint: u32,
    /// The IPv4 total length.
    total: u16,
    /// 802.1Q VLAN id, or [`NO_VLAN`].
    vlan: u16,
    /// Offset of the IPv4 header (14 or 18).
    l3: u8,
}

/// Bytes of the IP packet the fast lane reads and writes: the header without options and
/// the TCP header up to its checksum (ports, data offset, flags) or UDP's.
const FAST_IP: usize = wire::NAT_FIXED;

/// "Untagged" in the fast lane's VLAN fields (real ids are 12 bits).
const NO_VLAN: u16 = u16::MAX;

fn vlan_code(v: Option<u16>) -> u16 {
    v.unwrap_or(NO_VLAN)
}

/// Where a conn's packets in one direction go: egress interface and the frame's first 12
/// bytes (destination MAC = next hop, source MAC = egress port), valid while `epoch` is the
/// datapath's current generation.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Hop {
    /// Backend id (forward cache) or client address (reverse cache).
    key: u32,
    epoch: u32,
    iface: u16,
    vlan: u16,
    macs: [u8; 12],
}

/// Slots of the direct-mapped reverse-direction cache (client address -> hop).
const REV_SLOTS: usize = 1024;

/// Bits of the VIP filter ([`FastCache::vips`]).
const VIP_BITS: usize = 256;

/// The VIP filter's bit for an address.
#[inline]
fn vip_bit(addr: u32) -> usize {
    (addr.wrapping_mul(0x9e37_79b1) >> 24) as usize % VIP_BITS
}

/// Per-worker caches of the fast lane. Rebuilt or invalidated on the control path only.
pub(super) struct FastCache {
    epoch: u32,
    /// Per interface: (MAC, VLAN code).
    ifaces: Vec<([u8; 6], u16)>,
    /// The idle timeouts in force (read here every packet: one load less than through the
    /// datapath).
    timeouts: Timeouts,
    /// Per service id: the mode, or `None` when its packets must take the full path.
    services: Vec<Option<Mode>>,
    /// Per backend id: the hop of forward packets.
    fwd: Vec<Hop>,
    /// Direct-mapped by client address: the hop of replies to that client.
    rev: Box<[Hop; REV_SLOTS]>,
    /// A filter of the VIP addresses: bit [`vip_bit`] of each is set. A packet to an
    /// address without its bit is not to a VIP, so its tuple is most likely a conn's
    /// reverse tuple (a reply to a SNAT address or, in gateway mode, to a client); only
    /// prefetching follows the guess, never a decision.
    vips: [u64; VIP_BITS / 64],
}

impl FastCache {
    pub(super) fn new(snap: &Snapshot) -> FastCache {
        let mut c = FastCache {
            epoch: 0,
            timeouts: snap.timeouts,
            ifaces: Vec::new(),
            services: Vec::new(),
            fwd: Vec::new(),
            rev: Box::new([Hop::default(); REV_SLOTS]),
            vips: [0; VIP_BITS / 64],
        };
        c.rebuild(snap);
        c
    }

    /// The conn timeouts in force (UDP's cut under pressure).
    pub(super) fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }

    /// A new snapshot: interfaces and services re-read, every hop forgotten.
    pub(super) fn rebuild(&mut self, snap: &Snapshot) {
        self.timeouts = snap.timeouts;
        self.ifaces.clear();
        self.ifaces
            .extend(snap.interfaces.iter().map(|i| (i.mac, vlan_code(i.vlan))));
        self.services.clear();
        self.services.extend(snap.services.iter().map(|s| {
            // Removed services, (with routing off) gateway replies, services whose VIP the
            // HA peer owns and DSR services with remote backends have extra rules on the full
            // path; they are rare, so they stay there.
            // A DSR service with a peer site's VIP as backend has full-NAT conns too; a
            // service with an access list has it checked on every packet.
            let special = s.removed
                || !s.owned
                || (s.mode == Mode::Gateway && !snap.routing)
                || (s.mode == Mode::Dsr && s.has_remote)
                || s.acl.is_some();
            (!special).then_some(s.mode)
        }));
        self.vips = [0; VIP_BITS / 64];
        for s in &snap.services {
            let b = vip_bit(u32::from(s.vip));
            self.vips[b / 64] |= 1 << (b % 64);
        }
        self.fwd.clear();
        self.fwd.resize(snap.backends.len(), Hop::default());
        self.invalidate();
    }

    /// Something a hop depends on changed (a neighbour's MAC): forget every hop.
    pub(super) fn invalidate(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: entries of generation 0 would look valid again.
            self.fwd.fill(Hop::default());
            self.rev.fill(Hop::default());
            self.epoch = 1;
        }
    }
}

impl Datapath {
    /// The fast lane's gate for frames received on `in_if` (`None`: an interface the
    /// snapshot does not know; its frames take the full path).
    #[inline]
    pub fn fast_gate(&self, in_if: IfIdx) -> Option<Gate> {
        let &(mac, vlan) = self.fast.ifaces.get(usize::from(in_if.0))?;
        Some(Gate { mac, vlan })
    }

    /// Whether a packet to `dst` is most likely a conn's reverse tuple: some conn has one
    /// (only NAT conns do) and `dst` is not a VIP (a guess for the prefetches, see
    /// [`FastCache::vips`]).
    #[inline(always)]
    fn guess_reverse(&self, dst: u32) -> bool {
        let b = vip_bit(dst);
        self.flows.has_reverse_tuples() && self.fast.vips[b / 64] & (1 << (b % 64)) == 0
    }

    /// Prefetch stage 1 for a frame the first pass accepted (`pre`): the line its tuple most
    /// likely is in, by the guessed direction. Returns what stage 2
    /// ([`crate::flow::FlowTable::prefetch_conn`]) is to be given, through the frame's hint.
    #[inline(always)]
    pub fn prefetch_buckets(&self, pre: &Pre) -> u32 {
        self.flows
            .prefetch_buckets(pre.hash, self.guess_reverse(pre.key.dst))
    }

    /// First pass over a frame received where `gate` says (see the module documentation):
    /// `Some` only for a frame the fast lane can take; everything checked here is re-checked
    /// by the full path.
    #[inline(always)]
    pub fn pre_parse(frame: &[u8], gate: &Gate) -> Option<Pre> {
        let (l3, vlan) = match frame.get(12..14)? {
            [8, 0] => (14, NO_VLAN),
            [0x81, 0] if frame.get(16..18)? == [8, 0] => {
                (18, u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
            }
            _ => return None,
        };
        // Everything read here and in the fast lane lies in the first FAST_IP bytes of the
        // IP packet (a fixed-size view: no bounds check per field); a shorter frame (a UDP
        // datagram of under 10 bytes, not padded to Ethernet's 60) takes the full path.
        let ip: &[u8; FAST_IP] = frame.get(l3..l3 + FAST_IP)?.try_into().ok()?;
        let avail = frame.len() - l3;
        // Addressed to the interface, on its VLAN: the full path's first check (the frame
        // holds at least l3 + FAST_IP bytes here).
        if frame[0..6] != gate.mac || vlan != gate.vlan || ip[0] != 0x45 {
            return None;
        }
        let total = u16::from_be_bytes([ip[2], ip[3]]);
        // More-fragments or an offset: fragments have their own rules.
        if usize::from(total) > avail || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
            return None;
        }
        let proto = ip[9];
        let l4_ok = match proto {
            // Exactly the full path's TCP check (smoltcp's): a data offset of at least 20
            // bytes that fits the segment.
            PROTO_TCP => {
                total >= 40 && {
                    let doff = u16::from(ip[32] >> 4) * 4;
                    doff >= 20 && doff <= total - 20
                }
            }
            PROTO_UDP => total >= 28,
            _ => false,
        };
        let header: &[u8; 20] = ip[..20].try_into().ok()?;
        if !l4_ok || !wire::ipv4_header_checksum_ok20(header) {
            return None;
        }
        let key = FlowKey {
            src: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
            dst: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
            src_port: u16::from_be_bytes([ip[20], ip[21]]),
            dst_port: u16::from_be_bytes([ip[22], ip[23]]),
            proto,
        };
        Some(Pre {
            key,
            hash: key.hash(),
            hint: NO_HINT,
            total,
            vlan,
            l3: l3 as u8,
        })
    }

    /// [`Datapath::pre_parse`] into `out` (the worker's per-burst array: written in place,
    /// not built and copied); `false` leaves `out` unspecified.
    #[inline(always)]
    pub fn pre_parse_into(frame: &[u8], gate: &Gate, out: &mut Pre) -> bool {
        match Self::pre_parse(frame, gate) {
            Some(p) => {
                *out = p;
                true
            }
            None => false,
        }
    }

    /// Forwards a packet of an established conn in place and counts it as the full path
    /// would, returning the egress interface; `None` (nothing changed, nothing counted) sends
    /// the frame down the full path. `pre` must be `pre_parse(frame, &gate)` with the gate of
    /// the interface the frame came in on, under the current snapshot.
    #[inline]
    pub fn fast_path(&mut self, frame: &mut [u8], pre: &Pre, now: u32) -> Option<IfIdx> {
        self.fast_lane::<false>(frame, pre, now)
    }

    /// [`Datapath::fast_path`] for a frame another worker handed over (see `handover`): it
    /// was counted as received there, so here it counts as `steered_in`, as the full path
    /// counts it.
    #[inline]
    pub fn fast_path_steered(&mut self, frame: &mut [u8], pre: &Pre, now: u32) -> Option<IfIdx> {
        self.fast_lane::<true>(frame, pre, now)
    }

    #[inline(always)]
    fn fast_lane<const STEERED: bool>(
        &mut self,
        frame: &mut [u8],
        pre: &Pre,
        now: u32,
    ) -> Option<IfIdx> {
        let (id, dir) = self.flows.find_hinted(&pre.key, pre.hash, pre.hint)?;
        let c = self.flows.conn(id);
        if c.expired(now, &self.fast.timeouts) || c.flags & flags::SEQ_ADJ != 0 {
            // Dead: the full path reclaims it and starts a new conn. SYN-proxied: the full
            // path moves its sequence numbers.
            return None;
        }
        // The mode is decided once per packet, by its service: each mode runs its own copy
        // of the rest, without the other's tests.
        match (*self.fast.services.get(usize::from(c.service))?)? {
            Mode::Dsr => self.fast_forward::<false, STEERED>(frame, pre, now, id, dir),
            Mode::Proxy | Mode::Gateway => {
                self.fast_forward::<true, STEERED>(frame, pre, now, id, dir)
            }
        }
    }

    /// The rest of [`Datapath::fast_path`] for conn `id`, met in direction `dir`, of a service
    /// in a NAT mode (`NAT`) or in DSR; handed over by another worker (`STEERED`) or not.
    #[inline(always)]
    fn fast_forward<const NAT: bool, const STEERED: bool>(
        &mut self,
        frame: &mut [u8],
        pre: &Pre,
        now: u32,
        id: ConnId,
        dir: Dir,
    ) -> Option<IfIdx> {
        let c = self.flows.conn(id);
        // Only what is needed, not a copy of the whole conn.
        let (service, backend, client) = (c.service, c.backend, c.client);
        let nat = NAT.then(|| nat_endpoints(c, self.flows.endpoint(backend), dir));
        let hop = match dir {
            Dir::Forward => self.fwd_hop(backend)?,
            Dir::Reverse => self.rev_hop(client)?,
        };
        if hop.vlan != pre.vlan {
            return None; // re-tagging may have to grow the frame
        }
        // The frame as fixed-size parts (the pre-parse proved their lengths): no bounds
        // checks below, and nothing to fail once decided.
        let frame_len = frame.len();
        let (eth, ip) = frame.split_at_mut_checked(usize::from(pre.l3))?;
        let macs: &mut [u8; 12] = eth.first_chunk_mut()?;
        let ip: &mut [u8; FAST_IP] = ip.first_chunk_mut()?;
        if NAT && ip[8] <= 1 {
            return None; // TTL expiry: the full path answers it
        }
        // Decided: from here on, exactly what the full path does for this packet. The MACs
        // first, straight from the hop cache (the hop is a reference into it: no copy).
        *macs = hop.macs;
        let iface = hop.iface;
        if STEERED {
            self.ctr.inc(Ctr::SteeredIn);
        } else {
            self.ctr.inc(Ctr::RxPackets);
            self.ctr.add(Ctr::RxBytes, frame_len as u64);
        }
        self.ctr.inc(Ctr::Forwarded);
        self.svc_ctr.count(service, backend, usize::from(pre.total));
        // The flags read before the rewrite (which leaves them as they are) and the conn's
        // bookkeeping after it: in this order the NAT body compiles to fewer instructions
        // (perf/instructions proxy 1000: 473.0 against 487.2 with the bookkeeping first).
        let tcp_flags = (pre.key.proto == PROTO_TCP).then_some(ip[20 + 13]);
        if let Some((src, dst)) = nat {
            // The pre-parse checked everything the translation needs (no options, TCP with
            // 40 bytes or UDP with 28 at least, within the frame) and the TTL was checked
            // above: the same one-pass translation `nat_translate` picks for this packet.
            wire::nat_apply_fixed(ip, pre.key.proto == PROTO_UDP, src, dst);
        }
        let changed = self.flows.touch_track(id, now, tcp_flags, dir);
        if changed && self.sync.is_some() {
            self.sync_conn(id, now);
        }
        Some(IfIdx(iface))
    }

    /// The hop of forward packets to `backend`, from the cache or filled in.
    #[inline]
    fn fwd_hop(&mut self, backend: u32) -> Option<&Hop> {
        let slot = backend as usize;
        if self.fast.fwd.get(slot)?.epoch != self.fast.epoch {
            let h = self.fill_hop(Dir::Forward, backend)?;
            self.fast.fwd[slot] = h;
        }
        self.fast.fwd.get(slot)
    }

    /// The hop of replies to `client`: a route lookup and a neighbour, cached per client
    /// address.
    #[inline]
    fn rev_hop(&mut self, client: u32) -> Option<&Hop> {
        let slot = (client.wrapping_mul(0x9e37_79b9) >> 22) as usize % REV_SLOTS;
        let h = self.fast.rev.get(slot)?;
        if h.epoch != self.fast.epoch || h.key != client {
            let h = self.fill_hop(Dir::Reverse, client)?;
            self.fast.rev[slot] = h;
        }
        self.fast.rev.get(slot)
    }

    /// Works a hop out the full path's way (`next_hop`, then the neighbour table); `None`
    /// when that way would drop or ask for a MAC.
    #[cold]
    fn fill_hop(&self, dir: Dir, key: u32) -> Option<Hop> {
        let (iface, target) = self.next_hop(dir, key).ok()?;
        let mac = *self.neigh.get(u32::from(target))?;
        let eg = self.snap.interfaces.get(usize::from(iface.0))?;
        let mut macs = [0; 12];
        macs[..6].copy_from_slice(&mac);
        macs[6..].copy_from_slice(&eg.mac);
        Some(Hop {
            key,
            epoch: self.fast.epoch,
            iface: iface.0,
            vlan: vlan_code(eg.vlan),
            macs,
        })
    }
}
