//! Hostile input that must cost nothing lasting: new flows from sources no client can have
//! are dropped and counted; ICMP errors we originate are held to a per-worker budget.

use std::net::Ipv4Addr;

use super::*;
use crate::datapath::icmp::{ICMP_ERRORS_BURST, ICMP_ERRORS_PER_S};
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
