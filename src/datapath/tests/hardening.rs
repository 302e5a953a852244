//! Hostile input that must cost nothing lasting: new flows from sources no client can have
//! are dropped and counted; ICMP errors we originate are held to a per-worker budget.

use std::net::Ipv4Addr;

use super::*;
use crate::datapath::icmp::{ICMP_ERRORS_BURST, ICMP_ERRORS_PER_S};
use crate::stats::Ctr;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::{ETH_HDR, PROTO_TCP, PROTO_UDP};

#[test]
fn martian_sources_get_no_conn() {
    for mode in Mode::ALL {
        let (mut d, _) = datapath(&config(mode), 1, 0);
        for src in [
            Ipv4Addr::new(0, 0, 0, 1),
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(224, 0, 0, 5),
            Ipv4Addr::new(240, 1, 2, 3),
            Ipv4Addr::BROADCAST,
            VIP,
            Ipv4Addr::new(10, 20, 0, 10),
        ] {
            for proto in [PROTO_TCP, PROTO_UDP] {
                let dport = if proto == PROTO_TCP { 80 } else { 53 };
                let mut f = pkt(src, VIP, 40000, dport, proto, SYN);
                assert_eq!(
                    d.process(&mut f, IfIdx(0), 0, false),
                    Verdict::Drop(DropReason::MartianSource),
                    "{mode:?} from {src}"
                );
            }
        }
        assert_eq!(d.flows.active(), 0, "{mode:?}: no conn was made");
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
    }
}

#[test]
fn icmp_errors_we_originate_are_rate_limited() {
    let mut d = datapath_in(Mode::Gateway);
    let server = Ipv4Addr::new(10, 20, 1, 11);
    let expire = |d: &mut crate::datapath::Datapath, now: u32, port: u16| {
        let mut g = pkt(server, CLIENT, port, 22, PROTO_TCP, SYN);
        g[14 + 8] = 1;
        let mut g = with_ip_checksum(g, ETH_HDR);
        d.process(&mut g, IfIdx(0), now, false)
    };
    // A burst at one instant: the burst's worth answered, the rest dropped and counted.
    let answered = (0..200u16)
        .filter(|&i| expire(&mut d, 1000, 1000 + i) == Verdict::Reply)
        .count();
    assert_eq!(answered, ICMP_ERRORS_BURST as usize);
    assert_eq!(
        expire(&mut d, 1000, 5000),
        Verdict::Drop(DropReason::IcmpRateLimited)
    );
    // Over the next second, the rate.
    let mut more = 0;
    for ms in 1001..=2000u32 {
        if expire(&mut d, ms, (ms % 60000) as u16 + 2000) == Verdict::Reply {
            more += 1;
        }
        // Try twice per millisecond: at most the rate gets through.
        if expire(&mut d, ms, (ms % 60000) as u16 + 3000) == Verdict::Reply {
            more += 1;
        }
    }
    assert!(
        (ICMP_ERRORS_PER_S as usize - 5..=ICMP_ERRORS_PER_S as usize + 5).contains(&more),
        "{more} errors in a second"
    );
}

#[test]
fn a_service_access_list_refuses_new_and_established_conns_of_denied_clients() {
    for mode in Mode::ALL {
        let mut c = config(mode);
        c.services[0].allow = vec!["10.20.9.0/24".parse().unwrap()];
        c.services[0].deny = vec!["10.20.9.66/32".parse().unwrap()];
        let (mut d, _) = datapath(&c, 1, 0);
        let ok = |d: &mut crate::datapath::Datapath, src: Ipv4Addr, flags: u8, now: u32| {
            let mut f = pkt(src, VIP, 40000, 80, PROTO_TCP, flags);
            d.process(&mut f, IfIdx(0), now, false)
        };
        assert_eq!(
            ok(&mut d, CLIENT, SYN, 0),
            Verdict::Forward(IfIdx(0)),
            "{mode:?}"
        );
        for src in [Ipv4Addr::new(10, 20, 9, 66), Ipv4Addr::new(172, 16, 0, 1)] {
            assert_eq!(
                ok(&mut d, src, SYN, 0),
                Verdict::Drop(DropReason::AclDenied),
                "{mode:?} {src}"
            );
        }
        // A reload that denies the client cuts its established conn too.
        let mut narrower = c.clone();
        narrower.services[0]
            .deny
            .push("10.20.9.0/28".parse().unwrap());
        d.set_snapshot(snapshot(&narrower));
        assert_eq!(
            ok(&mut d, CLIENT, ACK, 1),
            Verdict::Drop(DropReason::AclDenied),
            "{mode:?}"
        );
    }
}

/// `f` (a TCP frame from `pkt`) with sequence and acknowledgment numbers, checksum redone.
fn numbered(mut f: Vec<u8>, seq: u32, ack: u32) -> Vec<u8> {
    let ip = crate::wire::parse_ipv4(&f, ETH_HDR).unwrap();
    f[ip.l4 + 4..ip.l4 + 8].copy_from_slice(&seq.to_be_bytes());
    f[ip.l4 + 8..ip.l4 + 12].copy_from_slice(&ack.to_be_bytes());
    let mut t = smoltcp::wire::TcpPacket::new_unchecked(&mut f[ip.l4..ip.end]);
    t.fill_checksum(&ip.src.into(), &ip.dst.into());
    f
}

fn seq_ack(f: &[u8]) -> (u32, u32, u8) {
    let ip = crate::wire::parse_ipv4(f, ETH_HDR).unwrap();
    let s = crate::wire::tcp_seg(f, &ip).unwrap();
    (s.seq, s.ack, s.flags)
}

/// With SYN cookies on, a SYN makes no conn: it is answered with a cookie. The client's ACK
/// with that cookie makes the conn and a SYN to the backend; the backend's SYN-ACK is
/// answered with our ACK; then data flows both ways with the sequence numbers moved by the
/// difference of the ISNs, checksums valid. An ACK without a valid cookie makes nothing.
#[test]
fn the_syn_proxy_makes_conns_only_for_valid_cookies() {
    for mode in [Mode::Proxy, Mode::Gateway] {
        let mut c = config(mode);
        c.protection.syn_cookies = crate::config::SynCookies::On;
        let (mut d, _) = datapath(&c, 1, 0);
        d.sweep(1, 1); // the cookie mode is assessed between bursts
        let mut syn = numbered(pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN), 1000, 0);
        assert_eq!(
            d.process(&mut syn, IfIdx(0), 2, false),
            Verdict::Reply,
            "{mode}"
        );
        assert_eq!(tuple(&syn), (VIP, 80, CLIENT, 40000));
        assert!(l4_checksum_ok(&syn));
        let (cookie, ack, fl) = seq_ack(&syn);
        assert_eq!((ack, fl), (1001, SYN | ACK));
        assert_eq!(d.flows.active(), 0, "{mode}: a SYN holds nothing");
        // A spoofed ACK with a wrong cookie: nothing made.
        let mut bad = numbered(
            pkt(CLIENT, VIP, 40001, 80, PROTO_TCP, ACK),
            1001,
            cookie + 1,
        );
        assert!(matches!(
            d.process(&mut bad, IfIdx(0), 2, false),
            Verdict::Drop(_) | Verdict::Forward(_)
        ));
        let made_by_bad = d.flows.active();
        assert_eq!(d.ctr.get(Ctr::SynCookiesValid), 0, "{mode}");
        // The client's ACK: our SYN goes to the backend with the client's ISN.
        let mut a = numbered(
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK),
            1001,
            cookie + 1,
        );
        assert_eq!(
            d.process(&mut a, IfIdx(0), 3, false),
            Verdict::Forward(IfIdx(0)),
            "{mode}"
        );
        let (src, sport, backend, bport) = tuple(&a);
        assert_eq!(seq_ack(&a), (1000, 0, SYN));
        assert!(l4_checksum_ok(&a));
        assert_eq!(d.flows.active(), made_by_bad + 1);
        assert_eq!(d.ctr.get(Ctr::SynCookiesValid), 1);
        // The client's segments before the backend answered: one that starts at the client's
        // first byte sends our SYN again (the backend may have missed it); others wait.
        let mut again = numbered(
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK),
            1001,
            cookie + 1,
        );
        assert_eq!(
            d.process(&mut again, IfIdx(0), 3, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(seq_ack(&again), (1000, 0, SYN));
        assert_eq!(tuple(&again), (src, sport, backend, bport));
        let mut later = numbered(
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK),
            2001,
            cookie + 1,
        );
        assert_eq!(
            d.process(&mut later, IfIdx(0), 3, false),
            Verdict::Drop(DropReason::SynProxyPending)
        );
        // The backend's SYN-ACK (ISN 5000): we ACK it ourselves.
        let mut sa = numbered(
            pkt(backend, src, bport, sport, PROTO_TCP, SYN | ACK),
            5000,
            1001,
        );
        assert_eq!(
            d.process(&mut sa, IfIdx(0), 4, false),
            Verdict::Reply,
            "{mode}"
        );
        assert_eq!(tuple(&sa), (src, sport, backend, bport));
        assert_eq!(seq_ack(&sa), (1001, 5001, ACK));
        assert!(l4_checksum_ok(&sa));
        // Data both ways, numbers moved.
        let mut up = numbered(
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK),
            1001,
            cookie + 1,
        );
        assert_eq!(
            d.process(&mut up, IfIdx(0), 5, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(tuple(&up), (src, sport, backend, bport));
        assert_eq!(seq_ack(&up), (1001, 5001, ACK));
        assert!(l4_checksum_ok(&up));
        let mut down = numbered(pkt(backend, src, bport, sport, PROTO_TCP, ACK), 5001, 1001);
        assert_eq!(
            d.process(&mut down, IfIdx(0), 5, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(tuple(&down), (VIP, 80, CLIENT, 40000));
        assert_eq!(seq_ack(&down), (cookie + 1, 1001, ACK));
        assert!(l4_checksum_ok(&down));
        assert_eq!(
            d.flows.half_open(),
            made_by_bad,
            "{mode}: only the adopted stranger (gateway)"
        );
        assert_eq!(d.ctr.get(Ctr::SynCookiesSent), 1);
        // The client closes; a new SYN on the same tuple cannot take the old sequence shift:
        // the old conn goes and the SYN gets a cookie of its own.
        let mut fin = numbered(
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK | 0x01),
            1001,
            cookie + 1,
        );
        assert_eq!(
            d.process(&mut fin, IfIdx(0), 6, false),
            Verdict::Forward(IfIdx(0))
        );
        let before = d.flows.active();
        let mut again = numbered(pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN), 9000, 0);
        assert_eq!(
            d.process(&mut again, IfIdx(0), 7, false),
            Verdict::Reply,
            "{mode}"
        );
        assert_eq!(seq_ack(&again).1, 9001);
        assert_eq!(d.flows.active(), before - 1);
    }
}

/// Spoofed SYNs in proxy mode with cookies off leave half-open conns only: the backend's
/// SYN-ACK does not make them established (the client never ACKs), and enough of them
/// switch `auto` cookies on.
#[test]
fn half_open_conns_switch_auto_cookies_on() {
    let mut c = config(Mode::Proxy);
    c.protection.syn_cookie_half_open = 100;
    let (mut d, _) = datapath(&c, 1, 0);
    for p in 0..100u16 {
        let mut f = pkt(
            Ipv4Addr::new(10, 99, (p >> 8) as u8, p as u8),
            VIP,
            1000,
            80,
            PROTO_TCP,
            SYN,
        );
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        let (s, sp, b, bp) = tuple(&f);
        let mut sa = pkt(b, s, bp, sp, PROTO_TCP, SYN | ACK);
        assert_eq!(
            d.process(&mut sa, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
    }
    assert_eq!(d.flows.half_open(), 100);
    d.sweep(1, 1);
    d.publish();
    assert_eq!(d.ctr.get(Ctr::SynCookiesOn), 1);
    assert_eq!(d.ctr.get(Ctr::FlowsHalfOpen), 100);
    let mut f = pkt(Ipv4Addr::new(10, 98, 0, 1), VIP, 1000, 80, PROTO_TCP, SYN);
    assert_eq!(d.process(&mut f, IfIdx(0), 1, false), Verdict::Reply);
    assert_eq!(d.flows.active(), 100);
}

/// `new_flows_per_s` holds a service to its rate (this worker's share), and
/// `new_flows_per_source_per_s` one client to its own, leaving other clients alone; packets
/// of conns already made are never limited.
#[test]
fn new_flow_limits_per_service_and_per_source() {
    let mut c = config(Mode::Dsr);
    c.services[0].new_flows_per_source_per_s = 10;
    let (mut d, _) = datapath(&c, 1, 0);
    let one = Ipv4Addr::new(10, 30, 0, 1);
    let mut ok = 0;
    for p in 0..20u16 {
        let mut f = pkt(one, VIP, 1000 + p, 80, PROTO_TCP, SYN);
        ok += usize::from(d.process(&mut f, IfIdx(0), 0, false) == Verdict::Forward(IfIdx(0)));
    }
    assert_eq!(ok, 10);
    assert_eq!(d.ctr.dropped(DropReason::SourceRateLimited), 10);
    let mut other = pkt(Ipv4Addr::new(10, 30, 0, 2), VIP, 1000, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut other, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    // An established conn's packets pass; a second later the client has 10 more.
    let mut more = pkt(one, VIP, 1000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut more, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    let mut later = pkt(one, VIP, 2000, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut later, IfIdx(0), 1000, false),
        Verdict::Forward(IfIdx(0))
    );

    let mut c = config(Mode::Dsr);
    c.services[0].new_flows_per_s = 100;
    // Two workers: this one takes half of the rate.
    let (mut d, _) = datapath(&c, 2, 0);
    let mut ok = 0;
    for i in 0..200u32 {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 31, 0, 0)) + i);
        let mut f = pkt(src, VIP, 1000, 80, PROTO_TCP, SYN);
        ok += usize::from(d.process(&mut f, IfIdx(0), 0, false) == Verdict::Forward(IfIdx(0)));
    }
    assert_eq!(ok, 50);
    assert_eq!(d.ctr.dropped(DropReason::ServiceRateLimited), 150);
}

/// With the table half full, UDP conns idle out after `udp_pressure_ms`, not `udp_s`, and
/// the sweep finds them; without pressure they stay.
#[test]
fn udp_conns_idle_out_fast_under_pressure() {
    for (conns, reclaimed) in [(40u16, false), (60, true)] {
        let mut c = config(Mode::Proxy);
        c.flows.capacity_per_core = 100;
        let (mut d, _) = datapath(&c, 1, 0);
        for p in 0..conns {
            let mut f = pkt(CLIENT, VIP, 1000 + p, 53, PROTO_UDP, 0);
            assert_eq!(
                d.process(&mut f, IfIdx(0), 0, false),
                Verdict::Forward(IfIdx(0))
            );
        }
        for t in 1..=1500 {
            d.sweep(t, 4);
        }
        d.publish();
        assert_eq!(
            d.ctr.get(Ctr::UdpPressure),
            0,
            "the sweep ended the pressure"
        );
        let left = d.flows.active();
        if reclaimed {
            // Reclaimed until the pressure ended (below half the table).
            assert!(
                (40..50).contains(&left),
                "{conns} conns: {left} left, pressure should have reclaimed down to < 50"
            );
        } else {
            assert_eq!(left, usize::from(conns), "no pressure: udp_s holds");
        }
    }
}

/// A segment of no known conn (a restart, an ECMP change, or a spoofed ACK) is adopted
/// half-open (DSR): only a second segment of the flow makes it established. In proxy mode it
/// makes nothing.
#[test]
fn a_mid_stream_segment_is_adopted_half_open_until_the_flow_shows_it_is_real() {
    let (mut d, _) = datapath(&config(Mode::Dsr), 1, 0);
    let mut a = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut a, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!((d.flows.active(), d.flows.half_open()), (1, 1));
    let mut b = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut b, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!((d.flows.active(), d.flows.half_open()), (1, 0));

    let (mut d, _) = datapath(&config(Mode::Proxy), 1, 0);
    let mut a = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut a, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NatMidflow)
    );
    assert_eq!(d.flows.active(), 0);
}
