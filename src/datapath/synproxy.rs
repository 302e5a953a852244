//! The SYN proxy (SYN cookies) of the NAT modes, as DPVS and hardware balancers have it: while
//! it is on, a client's SYN to a proxy or gateway service gets a SYN-ACK whose sequence
//! number is a cookie (a keyed hash of the tuple, the client's ISN and the minute, with its
//! MSS), and nothing else happens: no conn, no SNAT port, no table slot. Only the client's
//! ACK carrying a valid cookie makes the conn; that ACK becomes our SYN to the backend, the
//! backend's SYN-ACK becomes our ACK to it, and from then on the conn's segments have their
//! sequence numbers moved by the difference of the two sides' ISNs (`FlowTable::aux`), on the
//! full path. A spoofed SYN flood therefore costs one reply each and holds nothing. While
//! the backend has not answered, a client segment that starts at the client's first byte (its
//! retransmission) sends our SYN again; while cookies are on, an ACK of no conn without a
//! valid cookie is dropped (`bad_cookie`) rather than adopted.
//!
//! What the proxied handshake leaves out: TCP options but the MSS (window scaling, SACK,
//! timestamps are not negotiated; the conn's windows stay below 64 KiB), and a proxied conn
//! does not survive an HA failover (the peer's copy lacks the sequence shift).
//!
//! `[protection] syn_cookies`: `on`, `off`, or `auto` (the default): on in a worker while it
//! holds `syn_cookie_half_open` half-open conns or more, until they fall below half of that.
//! Cookies stay valid for one to two minutes, whatever the mode is by then.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use super::{Datapath, Pkt};
use crate::config::{Mode, SynCookies};
use crate::flow::{ConnId, Dir, FlowKey, FlowState, flags};
use crate::stats::Ctr;
use crate::types::{DropReason, PacketBuf, Verdict};
use crate::wire::{self, Bare, TH_ACK, TH_FIN, TH_RST, TH_SYN};

/// The cookies' key, drawn once per process (every worker validates any worker's cookies).
static SECRET: OnceLock<RandomState> = OnceLock::new();

/// MSS values a cookie can carry (its low 3 bits index this).
const MSS_TABLE: [u16; 8] = [536, 1200, 1300, 1360, 1400, 1440, 1452, 1460];

/// The window of the SYN-ACK and of our ACK to the backend (no window scaling).
const WINDOW: u16 = 65535;

fn cookie_hash(key: &FlowKey, client_isn: u32, minute: u32) -> u32 {
    let mut h = SECRET.get_or_init(RandomState::new).build_hasher();
    let (a, b) = key.words();
    h.write_u64(a);
    h.write_u32(b);
    h.write_u32(client_isn);
    h.write_u32(minute);
    h.finish() as u32
}

/// The cookie "minute": 65.5 s of the packets' millisecond clock.
fn minute(now: u32) -> u32 {
    now >> 16
}

/// Our ISN for the SYN of `key` with ISN `client_isn` and MSS `mss`: 27 bits of keyed hash,
/// 2 bits of the minute, 3 bits of the MSS.
pub(super) fn make_cookie(key: &FlowKey, client_isn: u32, now: u32, mss: u16) -> u32 {
    let t = minute(now);
    let idx = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
    (cookie_hash(key, client_isn, t) & !0x1f) | ((t & 3) << 3) | idx
}

/// The MSS a cookie made for `key` and `client_isn` in this minute or the one before
/// carries; `None` for anything else.
pub(super) fn check_cookie(key: &FlowKey, client_isn: u32, cookie: u32, now: u32) -> Option<u16> {
    let t = minute(now);
    let made = (cookie >> 3) & 3;
    let t = [t, t.wrapping_sub(1)].into_iter().find(|t| t & 3 == made)?;
    (cookie_hash(key, client_isn, t) & !0x1f == cookie & !0x1f)
        .then(|| MSS_TABLE[(cookie & 7) as usize])
}

/// Rewrites the segment into the bare reply `b` to its sender.
fn reply<P: PacketBuf>(p: &mut P, pk: &Pkt, b: &Bare) -> Verdict {
    if wire::tcp_rewrite_bare(p, pk.l2.l3, &pk.ip, b) {
        Verdict::Reply
    } else {
        Verdict::Drop(DropReason::SynProxyUnsupported)
    }
}

impl Datapath {
    /// A TCP segment of no conn, to service `si`: `Some(verdict)` when the SYN proxy takes
    /// it (a SYN answered with a cookie, an ACK with a valid one), `None` for the usual way.
    pub(super) fn synproxy_new<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        key: &FlowKey,
        si: u16,
        hash: u64,
    ) -> Option<Verdict> {
        let snap = &*self.snap;
        if snap.services[usize::from(si)].mode == Mode::Dsr
            || snap.protection.syn_cookies == SynCookies::Off
        {
            return None;
        }
        let seg = wire::tcp_seg(p.bytes(), &pk.ip)?;
        match seg.flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN) {
            TH_SYN if self.cookies_on => {
                if let Err(r) = self.admissible_source(key.src) {
                    return Some(Verdict::Drop(r));
                }
                let cookie = make_cookie(key, seg.seq, pk.now, seg.mss.unwrap_or(536));
                let mss = MSS_TABLE[(cookie & 7) as usize];
                let b = Bare {
                    seq: cookie,
                    ack: seg.seq.wrapping_add(1),
                    flags: TH_SYN | TH_ACK,
                    window: WINDOW,
                    mss: Some(mss),
                    reply: true,
                };
                let v = reply(p, pk, &b);
                if v == Verdict::Reply {
                    self.ctr.inc(Ctr::SynCookiesSent);
                }
                Some(v)
            }
            TH_ACK => {
                let ours = seg.ack.wrapping_sub(1);
                let client_isn = seg.seq.wrapping_sub(1);
                let Some(mss) = check_cookie(key, client_isn, ours, pk.now) else {
                    // Under a flood, a stranger's ACK is not adopted (proxy drops it anyway).
                    return self
                        .cookies_on
                        .then_some(Verdict::Drop(DropReason::BadCookie));
                };
                self.ctr.inc(Ctr::SynCookiesValid);
                // Valid: the conn, its SNAT port and its slot exist from here on.
                let id = match self.new_conn(si, key, hash, FlowState::TcpSynProxy, pk.now) {
                    Ok(id) => id,
                    Err(r) => return Some(Verdict::Drop(r)),
                };
                self.flows.conn_mut(id).flags |= flags::SEQ_ADJ;
                self.flows.set_aux(id, ours);
                // The client's ACK becomes our SYN to the backend (any payload is dropped:
                // the client sends it again).
                Some(self.syn_to_backend(p, pk, id, client_isn, seg.window, mss))
            }
            _ => None,
        }
    }

    /// Whether a client's SYN (`tcp`) found conn `id` a closed SYN-proxied one: the new
    /// connection on its tuple cannot take the old one's sequence shift, so the old conn
    /// goes (reclaimed here) and the SYN is a new flow's.
    pub(super) fn synproxy_reuse(&mut self, id: ConnId, tcp: &wire::TcpFlags, now: u32) -> bool {
        let c = self.flows.conn(id);
        if c.flags & flags::SEQ_ADJ == 0 || !c.is(FlowState::TcpClosing) || !tcp.syn || tcp.ack {
            return false;
        }
        self.with_reclaim(now, |flows, _, reclaim| flows.remove(id, &mut { reclaim }));
        true
    }

    /// A segment of a SYN-proxied conn (`flags::SEQ_ADJ`): the backend's SYN-ACK completes the
    /// proxied handshake; later segments have their sequence numbers moved and go on.
    pub(super) fn synproxy_conn<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        id: ConnId,
        dir: Dir,
    ) -> Verdict {
        let Some(seg) = wire::tcp_seg(p.bytes(), &pk.ip) else {
            return Verdict::Drop(DropReason::TruncatedL4);
        };
        let aux = self.flows.aux(id);
        self.flows.conn_mut(id).touch(pk.now);
        if self.flows.conn(id).is(FlowState::TcpSynProxy) {
            return match dir {
                Dir::Reverse if seg.flags & (TH_SYN | TH_ACK | TH_RST) == TH_SYN | TH_ACK => {
                    // The backend's ISN is known: its numbers are ours moved by the difference.
                    self.flows.set_aux(id, aux.wrapping_sub(seg.seq));
                    self.flows.set_state(id, FlowState::TcpEstablished);
                    if self.sync.is_some() {
                        self.sync_conn(id, pk.now);
                    }
                    let b = Bare {
                        seq: seg.ack,
                        ack: seg.seq.wrapping_add(1),
                        flags: TH_ACK,
                        window: WINDOW,
                        mss: None,
                        reply: true,
                    };
                    reply(p, pk, &b)
                }
                Dir::Reverse if seg.flags & TH_RST != 0 => {
                    // Refused: the client hears it in its own numbers.
                    let l4 = pk.ip.l4;
                    let to = aux.wrapping_add(1).wrapping_sub(seg.seq);
                    wire::tcp_shift_seq(p.bytes(), l4, to, 0);
                    self.flows.set_state(id, FlowState::TcpClosing);
                    self.send(p, pk, id, dir, true)
                }
                Dir::Forward if seg.flags & TH_RST != 0 => {
                    self.flows.set_state(id, FlowState::TcpClosing);
                    self.send(p, pk, id, dir, true)
                }
                // The client sends again what we dropped while waiting: the backend may not
                // have had our SYN (or we its SYN-ACK), so it goes again, made from this
                // segment when it starts at the client's first byte (the cookie, which holds
                // the client's ISN, says so).
                Dir::Forward if seg.flags & (TH_SYN | TH_RST | TH_FIN) == 0 => {
                    let key = self.flows.key_of(self.flows.conn(id), Dir::Forward);
                    let isn = seg.seq.wrapping_sub(1);
                    match check_cookie(&key, isn, aux, pk.now) {
                        Some(mss) => self.syn_to_backend(p, pk, id, isn, seg.window, mss),
                        None => Verdict::Drop(DropReason::SynProxyPending),
                    }
                }
                _ => Verdict::Drop(DropReason::SynProxyPending),
            };
        }
        if self.flows.track_tcp(id, seg.flags, dir) && self.sync.is_some() {
            self.sync_conn(id, pk.now);
        }
        let l4 = pk.ip.l4;
        match dir {
            Dir::Forward => wire::tcp_shift_seq(p.bytes(), l4, 0, aux),
            Dir::Reverse => wire::tcp_shift_seq(p.bytes(), l4, aux, 0),
        }
        self.send(p, pk, id, dir, true)
    }

    /// Rewrites the client's segment into our SYN to conn `id`'s backend (the client's ISN,
    /// window and MSS) and sends it there.
    fn syn_to_backend<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        id: ConnId,
        client_isn: u32,
        window: u16,
        mss: u16,
    ) -> Verdict {
        let b = Bare {
            seq: client_isn,
            ack: 0,
            flags: TH_SYN,
            window,
            mss: Some(mss),
            reply: false,
        };
        if !wire::tcp_rewrite_bare(p, pk.l2.l3, &pk.ip, &b) {
            return Verdict::Drop(DropReason::SynProxyUnsupported);
        }
        let ip = match wire::parse_ipv4(p.bytes(), pk.l2.l3) {
            Ok(ip) => ip,
            Err(r) => return Verdict::Drop(r),
        };
        let pk = Pkt { ip, ..*pk };
        self.send(p, &pk, id, Dir::Forward, true)
    }

    /// Between bursts: whether SYN cookies are on in this worker.
    pub(super) fn assess_cookies(&mut self) {
        let pr = &self.snap.protection;
        let half_open = self.flows.half_open();
        let th = pr.syn_cookie_half_open as usize;
        self.cookies_on = match pr.syn_cookies {
            SynCookies::On => true,
            SynCookies::Off => false,
            SynCookies::Auto => half_open >= th || (self.cookies_on && half_open >= th / 2),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_validate_within_two_minutes_and_carry_the_mss() {
        let k = FlowKey::new(
            "10.0.0.7".parse().unwrap(),
            "10.20.0.100".parse().unwrap(),
            40000,
            80,
            6,
        );
        let c = make_cookie(&k, 1234, 5_000_000, 1460);
        assert_eq!(check_cookie(&k, 1234, c, 5_000_000), Some(1460));
        assert_eq!(check_cookie(&k, 1234, c, 5_000_000 + 65_536), Some(1460));
        // Two minutes later, another tuple, another ISN, a changed bit: refused.
        assert_eq!(check_cookie(&k, 1234, c, 5_000_000 + 2 * 65_536), None);
        let other = FlowKey {
            src_port: 40001,
            ..k
        };
        assert_eq!(check_cookie(&other, 1234, c, 5_000_000), None);
        assert_eq!(check_cookie(&k, 1235, c, 5_000_000), None);
        assert_eq!(check_cookie(&k, 1234, c ^ 0x100, 5_000_000), None);
        // The MSS is rounded down to what the cookie can carry.
        let c = make_cookie(&k, 1, 0, 1380);
        assert_eq!(check_cookie(&k, 1, c, 0), Some(1360));
        let c = make_cookie(&k, 1, 0, 100);
        assert_eq!(check_cookie(&k, 1, c, 0), Some(536));
    }
}
