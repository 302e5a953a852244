//! One connection ([`Conn`], 32 bytes: two to a cache line), its state and the TCP state
//! machine that moves it, the idle timeouts by state, and which of its tuples a packet
//! matched ([`Dir`]).

use super::key::FlowKey;
use crate::wire::{TH_ACK, TH_FIN, TH_RST, TH_SYN};

/// Connection state, which picks the idle timeout.
///
/// A TCP conn is trusted (long-lived) only once its handshake has been seen complete in the
/// right order; until then it is *half-open* ([`FlowState::is_half_open`]): it lives for
/// `tcp_syn_s` and the table may reclaim it under pressure (see `FlowTable::insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// TCP: the client's SYN seen (half-open).
    TcpSyn = 0,
    TcpEstablished = 1,
    /// TCP: FIN or RST seen.
    TcpClosing = 2,
    Udp = 3,
    /// TCP, NAT modes: the backend's SYN-ACK seen, the client's ACK not yet (half-open).
    TcpSynAck = 4,
    /// TCP: first seen mid-stream (a restart, an ECMP change), adopted on trust until the
    /// flow shows it is real: a second segment from the client (DSR) or an answer from the
    /// backend (NAT modes) (half-open).
    TcpAdopted = 5,
    /// TCP, SYN proxy: the client's cookie ACK validated, our SYN sent to the backend, its
    /// SYN-ACK awaited (half-open; see `datapath::synproxy`).
    TcpSynProxy = 6,
}

impl FlowState {
    pub fn from_u8(v: u8) -> FlowState {
        match v {
            0 => FlowState::TcpSyn,
            1 => FlowState::TcpEstablished,
            2 => FlowState::TcpClosing,
            4 => FlowState::TcpSynAck,
            5 => FlowState::TcpAdopted,
            6 => FlowState::TcpSynProxy,
            _ => FlowState::Udp,
        }
    }

    /// A TCP conn whose handshake has not been seen complete.
    #[inline]
    pub fn is_half_open(self) -> bool {
        half_open(self as u8)
    }
}

/// [`FlowState::is_half_open`] of a stored state byte.
#[inline]
fn half_open(state: u8) -> bool {
    // TcpSyn, TcpSynAck, TcpAdopted, TcpSynProxy.
    (1u8 << (state & 7)) & 0b0111_0001 != 0
}

/// Idle timeouts in milliseconds, indexed by `FlowState as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts(pub [u32; 8]);

impl Timeouts {
    pub fn from_config(t: &crate::config::FlowTimeouts) -> Self {
        let ms = |s: u32| s.saturating_mul(1000);
        let syn = ms(t.tcp_syn_s);
        Timeouts([
            syn,
            ms(t.tcp_established_s),
            ms(t.tcp_closing_s),
            ms(t.udp_s),
            syn,
            syn,
            syn,
            syn,
        ])
    }

    /// These timeouts with UDP conns' idle time cut to `udp_ms` (under pressure).
    pub fn with_udp(mut self, udp_ms: u32) -> Self {
        self.0[FlowState::Udp as usize] = udp_ms;
        self
    }
}

/// Which tuple of a conn a packet matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client -> VIP (the tuple the flow was created from).
    Forward,
    /// Backend -> us (NAT modes only).
    Reverse,
}

/// Where a conn sits in the table (valid until the next insert, which may move it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(pub u32);

/// `Conn::flags` bits.
pub mod flags {
    /// The conn is live (its slot is in use).
    pub const IN_USE: u8 = 1;
    /// The reverse tuple is indexed (NAT modes).
    pub const REVERSE: u8 = 2;
    /// The conn holds a source-NAT port that must be given back.
    pub const SNAT: u8 = 4;
    /// SYN proxy: the two sides' sequence numbers differ by the conn's `FlowTable::aux`
    /// (its own path, not the fast lane; see `datapath::synproxy`).
    pub const SEQ_ADJ: u8 = 8;
}

/// One connection: 32 bytes, so a conn bucket of two is one cache line (the buckets are
/// 2 MiB aligned). The reverse tuple (what the backend side sends us) is
/// `backend address:port -> rev_dst:rev_dport`; the backend's address and port are the same for
/// every conn of that backend id and live in the table's endpoint list, not here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// Forward tuple: client -> VIP.
    pub client: u32,
    pub vip: u32,
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    state: u8,
    pub flags: u8,
    /// Index of the SNAT address (proxy mode).
    pub snat_idx: u8,
    /// Milliseconds, wrapping.
    pub(super) last_seen: u32,
    /// Stable backend id (see `lb::BackendId`).
    pub backend: u32,
    pub service: u16,
    /// Where the backend side's packets go (NAT modes): the SNAT port (proxy) or the client
    /// port (gateway) ...
    pub rev_dport: u16,
    /// ... at the SNAT address (proxy) or the client (gateway).
    pub rev_dst: u32,
}

const _: () = assert!(std::mem::size_of::<Conn>() == 32);

impl Conn {
    /// A new conn for the forward tuple `fwd`.
    pub fn new(fwd: &FlowKey, state: FlowState, service: u16, backend: u32) -> Conn {
        Conn {
            client: fwd.src,
            vip: fwd.dst,
            cport: fwd.src_port,
            vport: fwd.dst_port,
            proto: fwd.proto,
            state: state as u8,
            service,
            backend,
            ..Conn::default()
        }
    }

    /// Adds the reverse tuple (replies from the backend side) to be indexed too. Its source
    /// must be the conn's backend (address and port, as given to
    /// [`FlowTable::set_backend`]).
    pub fn with_reverse(mut self, rev: &FlowKey) -> Conn {
        self.rev_dst = rev.dst;
        self.rev_dport = rev.dst_port;
        self.flags |= flags::REVERSE;
        self
    }

    /// The tuple of direction `dir`; `backend` is the backend's (address, port), which the
    /// reverse tuple starts from.
    #[inline]
    pub fn key(&self, dir: Dir, backend: (u32, u16)) -> FlowKey {
        let (src, dst, src_port, dst_port) = match dir {
            Dir::Forward => (self.client, self.vip, self.cport, self.vport),
            Dir::Reverse => (backend.0, self.rev_dst, backend.1, self.rev_dport),
        };
        FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            proto: self.proto,
        }
    }

    /// What decides where a packet of this conn travelling in `dir` goes: its backend id
    /// going forward, its client address going back.
    #[inline]
    pub fn hop_key(&self, dir: Dir) -> u32 {
        match dir {
            Dir::Forward => self.backend,
            Dir::Reverse => self.client,
        }
    }

    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.state)
    }
    /// Whether the conn is in state `s` (`state() == s` without decoding the stored byte).
    #[inline]
    pub fn is(&self, s: FlowState) -> bool {
        self.state == s as u8
    }
    pub fn set_state(&mut self, s: FlowState) {
        self.state = s as u8;
    }
    /// When the conn last saw a packet (ms, wrapping).
    #[inline]
    pub fn last_seen(&self) -> u32 {
        self.last_seen
    }
    pub fn touch(&mut self, now: u32) {
        self.last_seen = now;
    }
    /// Whether `k` is this conn's forward tuple: the conn's first 13 bytes are that tuple in
    /// `FlowKey`'s field order, so this is a 64-bit and a 32-bit compare and a byte, not a
    /// `FlowKey` built and compared field by field (the fast lane's lookup check).
    #[inline(always)]
    pub fn is_forward(&self, k: &FlowKey) -> bool {
        let ((a, p), (b, q)) = (self.words(), k.words());
        (a ^ b) | u64::from(p ^ q) | u64::from(self.proto ^ k.proto) == 0
    }
    /// [`FlowKey::words`] of the forward tuple.
    #[inline(always)]
    pub(super) fn words(&self) -> (u64, u32) {
        (
            u64::from(self.client) | (u64::from(self.vip) << 32),
            u32::from(self.cport) | (u32::from(self.vport) << 16),
        )
    }

    /// Whether this slot holds a conn (alive or expired) whose forward tuple is `k`.
    #[inline(always)]
    pub(super) fn holds_forward(&self, k: &FlowKey) -> bool {
        self.in_use() && self.is_forward(k)
    }
    pub fn has_reverse(&self) -> bool {
        self.flags & flags::REVERSE != 0
    }
    #[inline]
    pub(super) fn in_use(&self) -> bool {
        self.flags & flags::IN_USE != 0
    }
    #[inline]
    pub fn expired(&self, now: u32, t: &Timeouts) -> bool {
        now.wrapping_sub(self.last_seen) > t.0[usize::from(self.state & 7)]
    }

    /// Whether the conn is half-open (see [`FlowState`]).
    #[inline]
    pub fn is_half_open(&self) -> bool {
        half_open(self.state)
    }

    /// Whether a segment with `flags` leaves the conn as it is without a look at the state
    /// machine: the common segment, an ACK (no RST, no FIN) of an established conn, costs a
    /// flag test and one compare (the state compared as stored, not decoded first).
    #[inline(always)]
    pub fn tcp_steady(&self, flags: u8) -> bool {
        self.is(FlowState::TcpEstablished) && flags & (TH_RST | TH_FIN) == 0
    }

    /// The TCP part of the conn's state machine, from a segment's flags byte and the
    /// direction it travels (the fast lane and the full path both call it; so does the
    /// table's [`super::FlowTable::track_tcp`], which keeps the half-open count). Returns
    /// whether the state changed (HA sync streams changes to the peer).
    ///
    /// Only what has been seen is trusted: a NAT conn is established by the client's ACK
    /// after the backend's SYN-ACK, a DSR conn (whose replies bypass us) by the client's ACK
    /// after its SYN; an adopted one by a second client segment (DSR) or the backend's answer.
    #[inline]
    pub fn track_tcp(&mut self, flags: u8, dir: Dir) -> bool {
        if self.tcp_steady(flags) {
            return false;
        }
        let nat = self.has_reverse();
        let next = if flags & (TH_RST | TH_FIN) != 0 {
            FlowState::TcpClosing
        } else {
            match (self.state(), dir) {
                // Port reuse after close: a new connection on the same backend.
                (FlowState::TcpClosing, Dir::Forward) if flags & (TH_SYN | TH_ACK) == TH_SYN => {
                    FlowState::TcpSyn
                }
                (FlowState::TcpSyn, Dir::Reverse)
                    if flags & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK =>
                {
                    FlowState::TcpSynAck
                }
                (FlowState::TcpSyn, Dir::Forward)
                    if !nat && flags & (TH_SYN | TH_ACK) == TH_ACK =>
                {
                    FlowState::TcpEstablished
                }
                (FlowState::TcpSynAck, Dir::Forward) if flags & (TH_SYN | TH_ACK) == TH_ACK => {
                    FlowState::TcpEstablished
                }
                (FlowState::TcpAdopted, Dir::Forward) if !nat && flags & TH_SYN == 0 => {
                    FlowState::TcpEstablished
                }
                (FlowState::TcpAdopted, Dir::Reverse) if flags & TH_SYN == 0 => {
                    FlowState::TcpEstablished
                }
                (s, _) => s,
            }
        };
        let changed = !self.is(next);
        self.set_state(next);
        changed
    }
}
