use super::*;
use crate::types::{IfIdx, Verdict};
use crate::wire::PROTO_TCP;

#[test]
fn dsr_syn_goes_to_a_backend_and_sticks() {
    let mut d = datapath_in(Mode::Dsr);
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    let orig = f.clone();
    assert_eq!(
        d.process(&mut f, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(&f[12..], &orig[12..], "DSR leaves L3/L4 alone");
    let chosen = f[5];
    assert!(chosen == 0x11 || chosen == 0x12);
    for t in 1..5 {
        let mut g = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
        d.process(&mut g, IfIdx(0), t, false);
        assert_eq!(g[5], chosen);
    }
    assert_eq!(d.flows.active(), 1);
}

#[test]
fn dsr_spreads_flows_over_backends() {
    let mut d = datapath_in(Mode::Dsr);
    let mut n11 = 0;
    for p in 0..1000u16 {
        let mut f = pkt(CLIENT, VIP, 10000 + p, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        n11 += usize::from(f[5] == 0x11);
    }
    assert!((350..=650).contains(&n11), "{n11}");
}
