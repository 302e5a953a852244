//! An HA pair's data plane: answering and balancing only what this node owns, VRRP to the
//! kernel, and flow sync between two datapaths (the peer's install on failover gives the
//! same backend and SNAT tuple, every mode).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::*;
use crate::channel::{SyncBatch, SyncLink, SyncOp, SyncRecord};
use crate::datapath::Datapath;
use crate::stats::Ctr;
use crate::testkit::{SNAT_FLOAT, ha_config, snapshot_owning};
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::{ARP_FRAME_LEN, PROTO_TCP, PROTO_UDP, build_arp_request};

fn everything(c: &crate::config::Config) -> HashSet<Ipv4Addr> {
    c.floating()
}

/// Worker 0 of 1 of an HA node owning `owned`, sync on (batches of `interval_ms`).
fn node(mode: Mode, owned: &HashSet<Ipv4Addr>) -> (Datapath, SyncLink) {
    let c = ha_config(mode);
    let (mut d, _) = datapath_on(&snapshot_owning(&c, owned), 1024, 1, 0);
    let link = SyncLink::new(8);
    d.enable_sync(link.clone(), 10, 10_000);
    (d, link)
}

/// Every record the worker handed over by `now` (batches older than the interval).
fn drain(d: &mut Datapath, link: &SyncLink, now: u32) -> Vec<Box<SyncBatch>> {
    d.sync_round(now);
    let mut out = Vec::new();
    while let Some(b) = link.full.pop() {
        out.push(b);
    }
    out
}

fn arp_for(d: &mut Datapath, target: Ipv4Addr) -> Verdict {
    let mut f = vec![0u8; ARP_FRAME_LEN];
    build_arp_request(&mut f, None, ROUTER_MAC, ROUTER, target);
    d.process(&mut f, IfIdx(0), 0, false)
}

#[test]
fn a_node_answers_and_balances_only_what_it_owns() {
    let c = ha_config(Mode::Proxy);
    let gw = Ipv4Addr::new(10, 20, 1, 1);
    let (mut backup, _) = node(Mode::Proxy, &HashSet::new());
    for a in [VIP, SNAT_FLOAT, gw] {
        assert_eq!(
            arp_for(&mut backup, a),
            Verdict::Drop(DropReason::ArpNotForUs),
            "{a}"
        );
    }
    // Its own addresses stay its own.
    assert_eq!(
        arp_for(&mut backup, Ipv4Addr::new(10, 20, 0, 10)),
        Verdict::Reply
    );
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    assert_eq!(
        backup.process(&mut f, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NotOwner)
    );
    let (mut master, _) = node(Mode::Proxy, &everything(&c));
    for a in [VIP, SNAT_FLOAT, gw] {
        assert_eq!(arp_for(&mut master, a), Verdict::Reply, "{a}");
    }
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    assert_eq!(
        master.process(&mut f, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(
        tuple(&f).0,
        SNAT_FLOAT,
        "proxy conns leave from the floating address"
    );
}

#[test]
fn vrrp_adverts_go_to_keepalived_only_in_a_pair() {
    // 224.0.0.18, protocol 112, to the VRRP multicast MAC.
    let advert = || {
        let mut f = pkt(
            Ipv4Addr::new(10, 20, 0, 20),
            Ipv4Addr::new(224, 0, 0, 18),
            0,
            0,
            PROTO_UDP,
            0,
        );
        f[0..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
        f[14 + 9] = 112;
        with_ip_checksum(f, 14)
    };
    let (mut pair, _) = node(Mode::Dsr, &HashSet::new());
    assert_eq!(
        pair.process(&mut advert(), IfIdx(0), 0, false),
        Verdict::ToKernel
    );
    let mut single = datapath_in(Mode::Dsr);
    assert_eq!(
        single.process(&mut advert(), IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NotForUs)
    );
}

/// The master opens conns; the backup installs what it streams; after a failover the
/// backup (now owner) sends each flow's next packets exactly where the master did, with the
/// same SNAT tuple, both directions.
#[test]
fn synced_conns_continue_on_the_peer_after_failover() {
    for mode in Mode::ALL {
        let c = ha_config(mode);
        let all = everything(&c);
        let (mut a, la) = node(mode, &all);
        let (mut b, lb) = node(mode, &HashSet::new());
        let mut sent = Vec::new();
        for p in 0..50u16 {
            let mut syn = pkt(CLIENT, VIP, 30000 + p, 80, PROTO_TCP, SYN);
            assert_eq!(
                a.process(&mut syn, IfIdx(0), 1, false),
                Verdict::Forward(IfIdx(0))
            );
            if mode != Mode::Dsr {
                // The backend's SYN-ACK: a NAT conn is established by the client's ACK after it.
                let (s, sp, d, dp) = tuple(&syn);
                let mut sa = pkt(d, s, dp, sp, PROTO_TCP, SYN | ACK);
                a.process(&mut sa, IfIdx(0), 1, false);
            }
            let mut ack = pkt(CLIENT, VIP, 30000 + p, 80, PROTO_TCP, ACK);
            a.process(&mut ack, IfIdx(0), 2, false);
            sent.push(ack);
        }
        let mut udp = pkt(CLIENT, VIP, 5353, 53, PROTO_UDP, 0);
        a.process(&mut udp, IfIdx(0), 2, false);
        let batches = drain(&mut a, &la, 100);
        assert!(!batches.is_empty(), "{mode}: nothing streamed");
        let records: usize = batches.iter().map(|x| x.len).sum();
        // A create and an established per TCP conn (and the SYN-ACK's state in NAT modes),
        // one UDP conn.
        let per_conn = if mode == Mode::Dsr { 2 } else { 3 };
        assert_eq!(records, 50 * per_conn + 1, "{mode}");
        for batch in batches {
            b.sync_install(batch, 100);
        }
        assert_eq!(
            b.ctr.get(Ctr::SyncInstalled),
            50 * per_conn as u64 + 1,
            "{mode}"
        );
        assert_eq!(b.ctr.get(Ctr::SyncInstallFailed), 0, "{mode}");
        assert_eq!(b.flows.active(), 51, "{mode}");
        // While the master owns the VIP the backup carries nothing of it.
        let mut early = pkt(CLIENT, VIP, 30000, 80, PROTO_TCP, ACK);
        assert_eq!(
            b.process(&mut early, IfIdx(0), 101, false),
            Verdict::Drop(DropReason::NotOwner),
            "{mode}"
        );
        assert!(
            drain(&mut b, &lb, 150).is_empty(),
            "{mode}: a backup streams nothing back"
        );
        // Failover: the backup owns everything now.
        b.set_snapshot(snapshot_owning(&c, &all));
        for (p, on_a) in sent.iter().enumerate() {
            let mut f = pkt(CLIENT, VIP, 30000 + p as u16, 80, PROTO_TCP, ACK);
            assert_eq!(
                b.process(&mut f, IfIdx(0), 200, false),
                Verdict::Forward(IfIdx(0))
            );
            assert_eq!(
                f, *on_a,
                "{mode}: flow {p} goes elsewhere after the failover"
            );
        }
        assert_eq!(b.flows.active(), 51, "{mode}: no conn was made anew");
        // NAT modes: the backend's reply to the synced tuple reaches the client from the VIP.
        if mode != Mode::Dsr {
            let (src, sport, dst, dport) = tuple(&sent[0]);
            let mut r = pkt(dst, src, dport, sport, PROTO_TCP, ACK);
            assert_eq!(
                b.process(&mut r, IfIdx(0), 201, false),
                Verdict::Forward(IfIdx(0))
            );
            assert_eq!(tuple(&r), (VIP, 80, CLIENT, 30000), "{mode}");
        }
    }
}

#[test]
fn the_peer_gets_deletes_and_a_bulk_resync_brings_everything() {
    let c = ha_config(Mode::Proxy);
    let all = everything(&c);
    let (mut a, la) = node(Mode::Proxy, &all);
    for p in 0..300u16 {
        let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, SYN);
        a.process(&mut f, IfIdx(0), 1, false);
    }
    // A fresh peer asks for everything: 300 conns arrive through a bulk resync, in slices.
    let (mut b, _) = node(Mode::Proxy, &HashSet::new());
    let _ = drain(&mut a, &la, 50);
    a.sync_all();
    let mut now = 60;
    while a.ctr.get(Ctr::SyncBulks) == 0 {
        for batch in drain(&mut a, &la, now) {
            b.sync_install(batch, now);
        }
        now += 20;
        assert!(now < 10_000, "the bulk resync never ends");
    }
    for batch in drain(&mut a, &la, now + 20) {
        b.sync_install(batch, now);
    }
    assert_eq!(b.flows.active(), 300);
    // The master's conns end (RST): the peer hears and frees them, SNAT ports included.
    for p in 0..300u16 {
        let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, 0x04);
        a.process(&mut f, IfIdx(0), now, false);
    }
    a.sweep(now + 20_000, 4096);
    for batch in drain(&mut a, &la, now + 20_100) {
        b.sync_install(batch, now + 20_100);
    }
    assert_eq!(b.flows.active(), 0, "deletes reached the peer");
}

/// A persistence template from the peer whose netmask is past 32 (the fuzz target `frames`
/// found it: `masked` subtracted past zero and panicked; without overflow checks it made a
/// nonsense mask) is refused and counted; the same template with /24 is installed.
#[test]
fn a_peer_template_with_a_netmask_past_32_is_refused() {
    let (mut b, _) = node(Mode::Dsr, &HashSet::new());
    // The test configuration's dns service (udp/53 -> B1).
    let template = |netmask: u8| SyncRecord {
        op: SyncOp::Persist,
        proto: PROTO_UDP,
        state: netmask,
        client: u32::from(CLIENT),
        vip: u32::from(VIP),
        vport: 53,
        backend: u32::from(B1),
        bport: 53,
        ..SyncRecord::default()
    };
    let mut batch = SyncBatch::new();
    for netmask in [33, 40, 255, 24] {
        batch.push(template(netmask));
    }
    b.sync_install(batch, 0);
    assert_eq!(b.ctr.get(Ctr::SyncInstallFailed), 3);
    assert_eq!(b.ctr.get(Ctr::SyncInstalled), 1);
}

/// A conn from the peer that does not have the shape its service's mode gives conns here (a
/// DSR-shaped conn of what is a proxy or gateway service on this node, a gateway conn whose
/// reverse tuple is not its client, a proxy conn without a SNAT port) is refused and
/// counted, and the service's packets are decided as if it had never come; the fuzz target
/// `frames` found a DSR-shaped record of a proxy service, installed on every worker, sent on
/// from source 0.0.0.0:0 by the fast lane of a worker that does not own it.
#[test]
fn a_peer_conn_that_does_not_fit_its_mode_here_is_refused() {
    let record = |flags: u8, rev_dst: Ipv4Addr, rev_dport: u16| SyncRecord {
        op: SyncOp::Upsert,
        proto: PROTO_TCP,
        state: 1,
        flags,
        client: u32::from(CLIENT),
        vip: u32::from(VIP),
        cport: 40000,
        vport: 80,
        backend: u32::from(B1),
        bport: 80,
        rev_dport,
        rev_dst: u32::from(rev_dst),
    };
    let (rev, snat) = (crate::flow::flags::REVERSE, crate::flow::flags::SNAT);
    let cases = [
        // (mode here, what the peer sent, fits)
        (Mode::Proxy, record(0, Ipv4Addr::UNSPECIFIED, 0), false),
        (Mode::Proxy, record(rev, SNAT_FLOAT, 2001), false),
        (Mode::Proxy, record(rev | snat, SNAT_FLOAT, 2001), true),
        (Mode::Gateway, record(0, Ipv4Addr::UNSPECIFIED, 0), false),
        (Mode::Gateway, record(rev, SNAT_FLOAT, 2001), false),
        (Mode::Gateway, record(rev | snat, SNAT_FLOAT, 2001), false),
        (Mode::Gateway, record(rev, CLIENT, 40000), true),
        (Mode::Dsr, record(rev, CLIENT, 40000), false),
        (Mode::Dsr, record(0, Ipv4Addr::UNSPECIFIED, 0), true),
    ];
    for (mode, r, fits) in cases {
        let c = ha_config(mode);
        let (mut b, _) = node(mode, &everything(&c));
        let mut batch = SyncBatch::new();
        batch.push(r);
        b.sync_install(batch, 0);
        let what = format!(
            "{mode}: flags {:#x} reverse {}",
            r.flags,
            Ipv4Addr::from(r.rev_dst)
        );
        assert_eq!(b.ctr.get(Ctr::SyncInstalled), u64::from(fits), "{what}");
        assert_eq!(
            b.ctr.get(Ctr::SyncInstallFailed),
            u64::from(!fits),
            "{what}"
        );
        assert_eq!(b.flows.active(), usize::from(fits), "{what}");
        // The client's next segment: the synced conn's backend, or decided afresh (a
        // mid-flow segment of a proxy conn cannot be adopted); never from 0.0.0.0.
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
        let v = b.process(&mut f, IfIdx(0), 1, false);
        if mode == Mode::Proxy && !fits {
            assert_eq!(v, Verdict::Drop(DropReason::NatMidflow), "{what}");
        } else {
            assert_eq!(v, Verdict::Forward(IfIdx(0)), "{what}");
            assert_ne!(tuple(&f).0, Ipv4Addr::UNSPECIFIED, "{what}");
        }
    }
}
