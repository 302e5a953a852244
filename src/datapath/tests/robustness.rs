use std::net::Ipv4Addr;

use super::*;
use crate::stats::Ctr;
use crate::types::{IfIdx, PacketBuf, Verdict};
use crate::wire::{PROTO_TCP, PROTO_UDP};

/// Random bytes and mutated valid frames, in every mode: never a panic, every frame gets
/// exactly one verdict, and the counter invariants hold.
#[test]
fn garbage_and_mutated_frames_are_counted_never_panic() {
    for mode in Mode::ALL {
        let mut d = datapath_in(mode);
        let mut next = xorshift(0x5359_u64 + mode.name().len() as u64);
        let valid = [
            pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN),
            pkt(CLIENT, VIP, 5353, 53, PROTO_UDP, 0),
            pkt(
                Ipv4Addr::new(10, 20, 1, 11),
                CLIENT,
                80,
                40000,
                PROTO_TCP,
                ACK,
            ),
        ];
        let n = 30_000;
        for i in 0..n {
            let mut f: Vec<u8> = if i % 3 == 0 {
                let len = (next() % 120) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut f = valid[i % valid.len()].clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() as usize) % f.len();
                    f[at] = next() as u8;
                }
                if next().is_multiple_of(5) {
                    let cut = (next() as usize) % f.len();
                    f.truncate(cut);
                }
                // Keep many of them addressed to us so they get past the MAC check.
                if next().is_multiple_of(2) && f.len() >= 6 {
                    f[0..6].copy_from_slice(&LB_MAC);
                }
                f
            };
            let len_before = f.len();
            let v = d.process(&mut f, IfIdx(0), i as u32, false);
            if let Verdict::Forward(_) | Verdict::Reply = v {
                assert!(!f.bytes().is_empty() || len_before == 0);
            }
        }
        d.publish();
        assert_eq!(d.ctr.get(Ctr::RxPackets), n as u64);
        assert_eq!(d.ctr.check_invariants_rx(), Ok(()), "{mode}");
    }
}
