//! Flows that survive a node change behind ECMP: every node with the same configuration
//! picks the same backend for a flow (Maglev over the fixed flow hash), so a node that gets a
//! mid-flow segment of a conn it never saw (the routers moved the flow) adopts it onto that
//! backend, in dsr and gateway mode. A full-NAT conn cannot be adopted (its SNAT tuple was the
//! other node's): the segment is dropped and counted.

use super::*;
use crate::config::Scheduler;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::PROTO_TCP;

/// Two "nodes" (datapaths of the same configuration); a flow opens on the first and its
/// later segments reach the second: the second sends them to the same backend.
fn adopted_on_the_same_backend(mode: Mode) {
    let mut c = config(mode);
    for s in &mut c.services {
        s.scheduler = Scheduler::Maglev;
    }
    let (mut first, _) = datapath(&c, 1, 0);
    let (mut second, _) = datapath(&c, 1, 0);
    let mut moved = 0;
    for port in 20000..20200u16 {
        let mut syn = pkt(CLIENT, VIP, port, 80, PROTO_TCP, SYN);
        assert_eq!(
            first.process(&mut syn, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        let backend = (syn[0..6].to_vec(), dst(&syn));
        let mut ack = pkt(CLIENT, VIP, port, 80, PROTO_TCP, ACK);
        assert_eq!(
            second.process(&mut ack, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0)),
            "{mode:?}: a mid-flow segment is adopted"
        );
        assert_eq!(
            (ack[0..6].to_vec(), dst(&ack)),
            backend,
            "{mode:?} port {port}"
        );
        moved += 1;
    }
    assert_eq!(moved, 200);
}

#[test]
fn dsr_flows_move_between_nodes_on_their_backend() {
    adopted_on_the_same_backend(Mode::Dsr);
}

#[test]
fn gateway_flows_move_between_nodes_on_their_backend() {
    adopted_on_the_same_backend(Mode::Gateway);
}

#[test]
fn a_proxy_flow_is_not_adopted_mid_flow() {
    let mut c = config(Mode::Proxy);
    for s in &mut c.services {
        s.scheduler = Scheduler::Maglev;
    }
    let (mut d, _) = datapath(&c, 1, 0);
    let mut ack = pkt(CLIENT, VIP, 30000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut ack, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NatMidflow)
    );
    // A SYN on the same tuple opens a conn as ever.
    let mut syn = pkt(CLIENT, VIP, 30000, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut syn, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
}
