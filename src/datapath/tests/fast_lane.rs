use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::*;
use crate::config::OnDown;
use crate::datapath::Datapath;
use crate::flow::NO_HINT;
use crate::lb::{BackendKey, BackendRuntime};
use crate::stats::Ctr;
use crate::types::{IfIdx, Verdict};
use crate::wire::{PROTO_TCP, PROTO_UDP};

/// The fast lane (datapath/fast.rs) is an optimisation only. Two datapaths see the same
/// stream - flows opening, carrying data, closing and reopening, replies, TTL 1, VLAN tags,
/// damaged frames, a backend going down, a neighbour vanishing and coming back with a new
/// MAC, time passing so conns expire - one through `process` only, one the way the worker
/// does it (fast lane first). Every verdict, output frame and counter must be identical.
#[test]
fn fast_lane_decides_exactly_like_the_full_path() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rnd = move || {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let cases = Mode::ALL.into_iter().flat_map(|m| [(m, false), (m, true)]);
    for (mode, tagged) in cases {
        let mut c = config(mode);
        for s in &mut c.services {
            s.on_backend_down = OnDown::Drop;
        }
        if tagged {
            c.interfaces[0].vlan = Some(7);
        }
        let up = snapshot(&c);
        let b11 = B1;
        let down = snapshot_with(&c, &move |k: &BackendKey| BackendRuntime {
            healthy: k.1 != b11,
            ..BackendRuntime::default()
        });
        let (mut full, _) = datapath_on(&up, 1024, 1, 0);
        let (mut fast, _) = datapath_on(&up, 1024, 1, 0);
        let mut last_out: HashMap<(u8, bool), Vec<u8>> = HashMap::new();
        let (mut lane, n) = (0, 8000u32);
        let mut old_hint = NO_HINT;
        for step in 0..n {
            let router: Ipv4Addr = "10.20.0.1".parse().unwrap();
            match step {
                2000 => [&mut full, &mut fast]
                    .map(|d| d.set_snapshot(down.clone()))
                    .len(),
                3000 => [&mut full, &mut fast]
                    .map(|d| d.set_snapshot(up.clone()))
                    .len(),
                4000 => [&mut full, &mut fast]
                    .map(|d| d.set_neighbour(b11, None))
                    .len(),
                4500 => [&mut full, &mut fast]
                    .map(|d| d.set_neighbour(b11, Some([2, 0, 0, 0, 0, 0x77])))
                    .len(),
                5500 => [&mut full, &mut fast]
                    .map(|d| d.set_neighbour(router, Some([2, 0, 0, 0, 0, 0x66])))
                    .len(),
                _ => 0,
            };
            let now = step * 7;
            let c = (rnd() % 48) as u8;
            let udp = rnd() % 4 == 0;
            let client = Ipv4Addr::new(10, 20, 9, 2 + c);
            let (proto, dport) = if udp {
                (PROTO_UDP, 53)
            } else {
                (PROTO_TCP, 80)
            };
            let flags = [SYN, ACK, ACK, ACK, ACK, 0x11, 0x04, 0x18][(rnd() % 8) as usize];
            let mut f = pkt(client, VIP, 40000 + u16::from(c), dport, proto, flags);
            let kind = rnd() % 10;
            match kind {
                // A reply to what was last sent for this flow, mirrored.
                0..=2 => {
                    if let Some(o) = last_out.get(&(c, udp)) {
                        let (s, sp, d, dp) = tuple(o);
                        f = pkt(d, s, dp, sp, proto, ACK);
                    }
                }
                3 => {
                    f[14 + 8] = 1; // TTL 1 (checksum fixed below)
                }
                // 4: the wrong tagging (below).
                5 => {
                    for _ in 0..(1 + rnd() % 3) {
                        let at = (rnd() as usize) % f.len();
                        f[at] = rnd() as u8;
                    }
                    if rnd() % 2 == 0 {
                        f[0..6].copy_from_slice(&LB_MAC);
                    }
                }
                _ => {}
            }
            if f.len() > 34 && f[12] == 8 && f[14 + 8] == 1 {
                smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
            }
            if tagged != (kind == 4) {
                f.splice(12..12, [0x81, 0, 0, 7]);
            }
            let mut f1 = f.clone();
            let mut f2 = f;
            let v1 = full.process(&mut f1, IfIdx(0), now, false);
            let gate = fast.fast_gate(IfIdx(0)).expect("interface 0");
            let mut pre = Datapath::pre_parse(&f2, &gate);
            if let Some(p) = &mut pre {
                // The worker's hint, or none, or a stale one from an earlier packet.
                let stage1 = fast.prefetch_buckets(p);
                let fresh = fast.flows.prefetch_conn(&p.key, p.hash, stage1);
                p.hint = [fresh, fresh, NO_HINT, old_hint][(rnd() % 4) as usize];
                old_hint = fresh;
            }
            let v2 = match pre.and_then(|p| fast.fast_path(&mut f2, &p, now)) {
                Some(out) => {
                    lane += 1;
                    Verdict::Forward(out)
                }
                None => fast.process_hinted(&mut f2, IfIdx(0), now, pre.map(|p| p.hash)),
            };
            assert_eq!(v1, v2, "{mode} tagged {tagged} step {step}");
            assert_eq!(f1, f2, "{mode} step {step}: frames differ");
            assert_eq!(
                full.ctr.0, fast.ctr.0,
                "{mode} step {step}: counters differ"
            );
            if step % 97 == 0 || step == n - 1 {
                assert!(full.svc_ctr.svc == fast.svc_ctr.svc, "{mode} step {step}");
                assert!(
                    full.svc_ctr.backend == fast.svc_ctr.backend,
                    "{mode} {step}"
                );
                // Conns too: tuples, TCP state, last seen, backend.
                let conns = |d: &Datapath| d.flows.snapshot(usize::MAX);
                assert!(
                    conns(&full) == conns(&fast),
                    "{mode} step {step}: conns differ"
                );
            }
            if matches!(v1, Verdict::Forward(_)) {
                if f1.get(12) == Some(&0x81) {
                    f1.drain(12..16);
                }
                if f1.len() >= 34 && f1[12] == 8 {
                    last_out.insert((c, udp), f1);
                }
            }
        }
        // The comparison means something only if both lanes were taken often.
        assert!(
            lane > n / 4 && lane < n - n / 10,
            "{mode}: fast lane took {lane}"
        );
    }
}

/// One frame the worker's way with two workers (`handover`): worker `w`'s fast lane, else
/// the hand-over in the fast lane, else the full path; a handed-over frame through the
/// owner's fast lane, else its full path. Returns the verdict where the frame ended;
/// `lane` counts the frames the fast lane handed over.
fn two_workers_fast(
    ws: &mut [Datapath; 2],
    w: usize,
    f: &mut Vec<u8>,
    now: u32,
    lane: &mut u32,
) -> Verdict {
    let gate = ws[w].fast_gate(IfIdx(0)).unwrap();
    let mut owner = None;
    if let Some(pre) = Datapath::pre_parse(f, &gate) {
        if let Some(out) = ws[w].fast_path(f, &pre, now) {
            return Verdict::Forward(out);
        }
        owner = ws[w].fast_handover(&pre, f.len());
        *lane += u32::from(owner.is_some());
    }
    let o = match owner {
        Some(o) => usize::from(o),
        None => match ws[w].process(f, IfIdx(0), now, false) {
            Verdict::Steer(o) => usize::from(o),
            v => return v,
        },
    };
    if let Some(pre) = Datapath::pre_parse(f, &gate)
        && let Some(out) = ws[o].fast_path_steered(f, &pre, now)
    {
        return Verdict::Forward(out);
    }
    ws[o].process(f, IfIdx(0), now, true)
}

/// The same with the full path alone.
fn two_workers_full(ws: &mut [Datapath; 2], w: usize, f: &mut Vec<u8>, now: u32) -> Verdict {
    match ws[w].process(f, IfIdx(0), now, false) {
        Verdict::Steer(o) => ws[usize::from(o)].process(f, IfIdx(0), now, true),
        v => v,
    }
}

/// Two workers, frames landing on either as RSS would put them: the hand-over in the fast
/// lane (`fast_handover`, `fast_path_steered`) sends every frame to the same worker and makes
/// the same frames, verdicts and counters as the full path's hand-over; an access-listed
/// service and DSR stay with the full path's rules.
#[test]
fn fast_lane_hands_frames_over_like_the_full_path() {
    for mode in Mode::ALL {
        let mut c = config(mode);
        // The DNS service (UDP/53) with an access list: its frames are handed over by the
        // full path, after the list.
        c.services[1].allow = vec!["10.20.9.0/24".parse().unwrap()];
        let snap = snapshot(&c);
        let mut full = [0, 1].map(|me| datapath_on(&snap, 4096, 2, me).0);
        let mut fast = [0, 1].map(|me| datapath_on(&snap, 4096, 2, me).0);
        let mut lane = 0;
        for i in 0..600u32 {
            let now = i;
            let client = Ipv4Addr::new(10, 20, 9, 2 + (i % 40) as u8);
            let (proto, dport) = if i % 5 == 0 {
                (PROTO_UDP, 53)
            } else {
                (PROTO_TCP, 80)
            };
            let sport = 30000 + (i / 3) as u16;
            // The flow's first frame, its client's next one and the backend's answer,
            // each on the worker a hash of its own tuple picks (here: by turns).
            let flags = [SYN, ACK, ACK][(i % 3) as usize];
            let mut f = pkt(client, VIP, sport, dport, proto, flags);
            let w = ((i / 2) % 2) as usize;
            let mut g = f.clone();
            let vf = two_workers_full(&mut full, w, &mut f, now);
            let vg = two_workers_fast(&mut fast, w, &mut g, now, &mut lane);
            assert_eq!(vf, vg, "{mode} frame {i}");
            assert_eq!(f, g, "{mode} frame {i}");
            if mode != Mode::Dsr && vf != Verdict::Drop(crate::types::DropReason::NoFlow) {
                // The backend's answer to what went out (NAT modes).
                let (src, sport2, dst, dport2) = tuple(&f);
                let flags = if flags == SYN { SYN | ACK } else { ACK };
                let mut r = pkt(dst, src, dport2, sport2, proto, flags);
                let mut s = r.clone();
                let w = ((i / 3) % 2) as usize;
                let vf = two_workers_full(&mut full, w, &mut r, now);
                let vg = two_workers_fast(&mut fast, w, &mut s, now, &mut lane);
                assert_eq!(vf, vg, "{mode} answer {i}");
                assert_eq!(r, s, "{mode} answer {i}");
            }
        }
        for k in 0..2 {
            for ctr in [
                Ctr::RxPackets,
                Ctr::RxBytes,
                Ctr::Forwarded,
                Ctr::SteeredIn,
                Ctr::FlowsCreated,
            ] {
                assert_eq!(
                    full[k].ctr.get(ctr),
                    fast[k].ctr.get(ctr),
                    "{mode}: worker {k}, {ctr:?}"
                );
            }
        }
        let handed = full[0].ctr.get(Ctr::SteeredIn) + full[1].ctr.get(Ctr::SteeredIn);
        if mode == Mode::Dsr {
            assert_eq!((lane, handed), (0, 0), "dsr conns are not handed over");
        } else {
            // About half the frames; those of the access-listed service by the full path.
            assert!(
                handed > 400 && u64::from(lane) < handed && lane > 300,
                "{mode}: {lane} of {handed}"
            );
        }
    }
}
