use super::*;
use crate::flow::FlowState;

const T: Timeouts = Timeouts([1_000, 60_000, 2_000, 5_000, 1_000, 1_000, 1_000, 1_000]);

fn key(i: u32) -> FlowKey {
    FlowKey {
        src: 0x0a00_0000 | i,
        dst: 0x0a14_0064,
        src_port: (i % 50_000) as u16 + 1024,
        dst_port: 80,
        proto: 6,
    }
}

fn none(_: &Conn) {}

/// A small table whose backend 1 is 10.20.0.11:80, a client tuple (`key(1)`) and the
/// reverse tuple a NAT conn of it would have (backend -> 10.20.0.10:20001).
fn nat_fixture() -> (FlowTable, FlowKey, FlowKey) {
    let mut t = FlowTable::new(64);
    let rev = FlowKey {
        src: 0x0a14_000b,
        dst: 0x0a14_000a,
        src_port: 80,
        dst_port: 20001,
        proto: 6,
    };
    t.set_backend(1, rev.src, rev.src_port);
    (t, key(1), rev)
}

fn ins(t: &mut FlowTable, k: &FlowKey, st: FlowState, backend: u32) -> Result<ConnId, TableFull> {
    t.insert(Conn::new(k, st, 0, backend), 0)
}

#[test]
fn insert_then_hit() {
    let mut t = FlowTable::new(1024);
    let k = key(1);
    assert!(t.lookup(&k, k.hash(), 0, &T, &mut none).is_none());
    let id = t.insert(Conn::new(&k, FlowState::TcpSyn, 3, 7), 0).unwrap();
    let (got, dir) = t.lookup(&k, k.hash(), 10, &T, &mut none).unwrap();
    assert_eq!((got, dir), (id, Dir::Forward));
    let c = t.conn(id);
    assert_eq!((c.service, c.backend, c.state()), (3, 7, FlowState::TcpSyn));
    assert_eq!(t.active(), 1);
    assert!(
        t.lookup(&key(2), key(2).hash(), 10, &T, &mut none)
            .is_none()
    );
}

#[test]
fn signature_collisions_are_resolved_by_the_tuple() {
    // Reverse tuples go through the index's signatures: decoys with the right signature
    // that point at another NAT conn are skipped by the tuple check.
    let (mut t, f1, r1) = nat_fixture();
    let (f2, r2, r3) = (
        key(2),
        FlowKey {
            dst_port: 20002,
            ..r1
        },
        FlowKey {
            dst_port: 20003,
            ..r1
        },
    );
    let id1 = t
        .insert(Conn::new(&f1, FlowState::TcpSyn, 0, 1).with_reverse(&r1), 0)
        .unwrap();
    let id2 = t
        .insert(Conn::new(&f2, FlowState::TcpSyn, 0, 1).with_reverse(&r2), 0)
        .unwrap();
    let h = r1.hash();
    let (a, b) = candidates(h, t.n_buckets);
    for bi in [a, b] {
        t.index[bi].sig = [sig_of(h); WAYS];
        t.index[bi].r = [conn_ref(id2.0, Dir::Reverse); WAYS];
    }
    t.index[a].r[WAYS - 1] = conn_ref(id1.0, Dir::Reverse);
    assert_eq!(
        t.lookup(&r1, h, 1, &T, &mut none),
        Some((id1, Dir::Reverse))
    );
    // Only in the second bucket: found there after eight mismatches in the first.
    if a != b {
        t.index[a].r[WAYS - 1] = conn_ref(id2.0, Dir::Reverse);
        t.index[b].r[3] = conn_ref(id1.0, Dir::Reverse);
        assert_eq!(
            t.lookup(&r1, h, 1, &T, &mut none),
            Some((id1, Dir::Reverse))
        );
    }
    // A tuple whose signature matches everywhere but which has no conn: a miss.
    let h3 = r3.hash();
    let (a3, b3) = candidates(h3, t.n_buckets);
    for bi in [a3, b3] {
        t.index[bi].sig = [sig_of(h3); WAYS];
        t.index[bi].r = [conn_ref(id2.0, Dir::Reverse); WAYS];
    }
    assert_eq!(t.lookup(&r3, h3, 1, &T, &mut none), None);
}

#[test]
fn forward_tuples_are_found_in_either_conn_bucket_by_the_whole_tuple() {
    let mut t = FlowTable::new(64);
    let k = key(1);
    let (a, b) = t.conn_candidates(k.hash());
    // Conns differing from `k` in one field each fill its first bucket: none matches.
    let near = [
        FlowKey {
            src_port: k.src_port + 1,
            ..k
        },
        FlowKey { proto: 17, ..k },
    ];
    for (w, n) in near.iter().enumerate() {
        let mut c = Conn::new(n, FlowState::TcpEstablished, 0, 9);
        c.flags |= flags::IN_USE;
        t.conns[a * CWAYS + w] = c;
    }
    assert_eq!(t.lookup(&k, k.hash(), 1, &T, &mut none), None);
    // An empty slot never matches, not even the all-zero tuple.
    let zero = FlowKey::default();
    assert_eq!(t.find(&zero, zero.hash()), None);
    // `k` in its second bucket (when it has two): found there.
    if a != b {
        let mut c = Conn::new(&k, FlowState::TcpEstablished, 0, 7);
        c.flags |= flags::IN_USE;
        t.conns[b * CWAYS + 1] = c;
        let id = ConnId((b * CWAYS + 1) as u32);
        assert_eq!(
            t.lookup(&k, k.hash(), 1, &T, &mut none),
            Some((id, Dir::Forward))
        );
        // The first bucket's conn with k's addresses and ports (not its protocol) may be
        // the hint: checked, and the answer is still k's conn.
        let h = t.prefetch_conn(&k, k.hash(), t.prefetch_buckets(k.hash(), false));
        assert_eq!(
            t.lookup_hinted(&k, k.hash(), h, 1, &T, &mut none),
            Some((id, Dir::Forward))
        );
    }
}

#[test]
fn a_stale_or_wrong_hint_never_changes_the_answer() {
    let (mut t, fwd, rev) = nat_fixture();
    let other = key(2);
    let nat = Conn::new(&fwd, FlowState::TcpSyn, 0, 1).with_reverse(&rev);
    let id = t.insert(nat, 0).unwrap();
    // The two prefetch stages, with the packet's direction guessed right or wrong.
    let stages = |t: &FlowTable, k: &FlowKey, reverse: bool| {
        t.prefetch_conn(k, k.hash(), t.prefetch_buckets(k.hash(), reverse))
    };
    let hint = stages(&t, &fwd, false);
    let rev_hint = stages(&t, &rev, true);
    assert_eq!(
        (hint, rev_hint),
        (conn_ref(id.0, Dir::Forward), conn_ref(id.0, Dir::Reverse))
    );
    let hinted =
        |t: &mut FlowTable, k: &FlowKey, h: u32| t.lookup_hinted(k, k.hash(), h, 1, &T, &mut none);
    // A wrong guess of the direction: no hint, or one naming a bucket without the tuple.
    let wrong = stages(&t, &rev, false);
    assert_eq!(hinted(&mut t, &rev, wrong), Some((id, Dir::Reverse)));
    assert_eq!(stages(&t, &fwd, true), NO_HINT);
    assert_eq!(hinted(&mut t, &fwd, hint), Some((id, Dir::Forward)));
    assert_eq!(hinted(&mut t, &rev, rev_hint), Some((id, Dir::Reverse)));
    // A hint naming another conn, the other direction, or nothing: found by the search.
    assert_eq!(hinted(&mut t, &rev, hint), Some((id, Dir::Reverse)));
    assert_eq!(hinted(&mut t, &fwd, rev_hint), Some((id, Dir::Forward)));
    assert_eq!(hinted(&mut t, &fwd, NO_HINT), Some((id, Dir::Forward)));
    assert_eq!(hinted(&mut t, &other, hint), None);
    let h = stages(&t, &other, false);
    assert_eq!(hinted(&mut t, &other, h), None);
    // The conn is gone; a conn without a reverse tuple whose forward tuple is the old
    // reverse tuple takes its place in the table: the old hints must find only it.
    t.sweep(10_000, &T, usize::MAX, &mut none);
    t.insert(Conn::new(&other, FlowState::TcpSyn, 0, 1), 10_000)
        .unwrap();
    let reused = t
        .insert(Conn::new(&rev, FlowState::TcpSyn, 0, 1), 10_000)
        .unwrap();
    for k in [&fwd, &rev] {
        for h in [hint, rev_hint] {
            let got = t.lookup_hinted(k, k.hash(), h, 10_001, &T, &mut none);
            let want = (k == &rev).then_some((reused, Dir::Forward));
            assert_eq!(got, want, "{k:?} hint {h}");
        }
    }
    // A reverse hint at a conn whose reverse fields spell the tuple but that has no
    // reverse tuple indexed: the search's answer, not the hinted one.
    let c = t.conn_mut(reused);
    (c.rev_dst, c.rev_dport) = (rev.dst, rev.dst_port);
    assert_eq!(t.key_of(t.conn(reused), Dir::Reverse), rev);
    let wrong = conn_ref(reused.0, Dir::Reverse);
    assert_eq!(
        t.lookup_hinted(&rev, rev.hash(), wrong, 10_001, &T, &mut none),
        Some((reused, Dir::Forward))
    );
}

#[test]
fn reverse_tuple_finds_the_same_conn() {
    let (mut t, fwd, rev) = nat_fixture();
    let id = t
        .insert(
            Conn::new(&fwd, FlowState::TcpSyn, 0, 1).with_reverse(&rev),
            0,
        )
        .unwrap();
    assert_eq!(
        t.lookup(&rev, rev.hash(), 1, &T, &mut none),
        Some((id, Dir::Reverse))
    );
    assert_eq!(
        t.lookup(&fwd, fwd.hash(), 1, &T, &mut none),
        Some((id, Dir::Forward))
    );
    // Reclaiming removes both index entries and reports the conn once.
    let mut seen = Vec::new();
    t.sweep(10_000, &T, usize::MAX, &mut |c: &Conn| seen.push(c.backend));
    assert_eq!(seen, vec![1]);
    assert!(t.lookup(&rev, rev.hash(), 1, &T, &mut none).is_none());
    assert!(t.lookup(&fwd, fwd.hash(), 1, &T, &mut none).is_none());
    assert_eq!(t.active(), 0);
}

#[test]
fn expiry_follows_the_state_timeout() {
    let mut t = FlowTable::new(64);
    let k = key(1);
    let h = k.hash();
    ins(&mut t, &k, FlowState::TcpSyn, 0).unwrap();
    // A SYN-only conn is gone after the 1 s SYN timeout, and reclaim is told.
    let mut reclaimed = 0;
    assert!(
        t.lookup(&k, h, 1_001, &T, &mut |_: &Conn| reclaimed += 1)
            .is_none()
    );
    assert_eq!((t.active(), reclaimed, t.counters.expired), (0, 1, 1));
    // An established one lives on until 60 s after its last packet.
    let id = ins(&mut t, &k, FlowState::TcpSyn, 0).unwrap();
    t.conn_mut(id).set_state(FlowState::TcpEstablished);
    assert!(t.lookup(&k, h, 59_000, &T, &mut none).is_some());
    let c = t.conn_mut(id);
    c.touch(59_000);
    c.set_state(FlowState::TcpClosing);
    assert!(t.lookup(&k, h, 60_999, &T, &mut none).is_some());
    assert!(t.lookup(&k, h, 61_001, &T, &mut none).is_none());
}

#[test]
fn sweep_reclaims_expired_conns() {
    let mut t = FlowTable::new(256);
    for i in 0..100 {
        ins(&mut t, &key(i), FlowState::Udp, 0).unwrap();
    }
    assert_eq!(t.active(), 100);
    assert_eq!(t.sweep(4_000, &T, usize::MAX, &mut none), 0);
    assert_eq!(t.sweep(5_001, &T, usize::MAX, &mut none), 100);
    assert_eq!(t.active(), 0);
    // Slots are reusable afterwards.
    for i in 0..256 {
        ins(&mut t, &key(1000 + i), FlowState::Udp, 0).unwrap();
    }
}

#[test]
fn full_table_refuses_new_conns_and_keeps_old_ones() {
    let cap = 64;
    let mut t = FlowTable::new(cap);
    let mut inserted = Vec::new();
    let mut refused = 0;
    for i in 0..1_000 {
        let k = key(i);
        match ins(&mut t, &k, FlowState::TcpEstablished, i) {
            Ok(_) => inserted.push((k, i)),
            Err(TableFull) => refused += 1,
        }
    }
    // The configured capacity is what an operator gets: all of it, never more.
    assert_eq!(inserted.len(), cap);
    assert_eq!(t.active(), cap);
    assert_eq!(t.counters.full, refused as u64);
    for (k, backend) in &inserted {
        let (id, _) = t
            .lookup(k, k.hash(), 1, &T, &mut none)
            .expect("old conn lost");
        assert_eq!(t.conn(id).backend, *backend);
    }
}

#[test]
fn large_nat_table_fills_to_its_configured_capacity() {
    let cap = 200_000;
    let mut t = FlowTable::new(cap);
    for i in 0..cap as u32 {
        let k = FlowKey {
            src: i,
            dst: 0x0a14_0064,
            src_port: (i >> 16) as u16,
            dst_port: 80,
            proto: 17,
        };
        let rev = FlowKey {
            src: 0x0a14_000b,
            dst: 0x0a14_000a + (i >> 16),
            src_port: 53,
            dst_port: i as u16,
            proto: 17,
        };
        t.set_backend(i, rev.src, rev.src_port);
        let c = Conn::new(&k, FlowState::Udp, 0, i).with_reverse(&rev);
        assert!(t.insert(c, 0).is_ok(), "refused at {i}");
    }
    assert_eq!(t.active(), cap);
    assert_eq!(t.counters.full, 0);
    // Conns moved by the cuckoo search took their reverse entries along: every conn is
    // still found by both tuples, in one of its two conn buckets, and most (a lookup
    // reads one line) in the first.
    let mut first = 0;
    for id in 0..t.conns.len() {
        let c = t.conns[id];
        if !c.in_use() {
            continue;
        }
        let (f, r) = (t.key_of(&c, Dir::Forward), t.key_of(&c, Dir::Reverse));
        let id = ConnId(id as u32);
        assert_eq!(t.find(&f, f.hash()), Some((id, Dir::Forward)));
        assert_eq!(t.find(&r, r.hash()), Some((id, Dir::Reverse)));
        let (a, b) = t.conn_candidates(f.hash());
        let bi = id.0 as usize / CWAYS;
        assert!(bi == a || bi == b);
        first += usize::from(bi == a);
    }
    assert!(
        first * 10 > cap * 7,
        "{first} of {cap} in their first bucket"
    );
}

#[test]
fn churn_in_a_small_full_table_keeps_every_conn_findable() {
    // A tiny table run at its capacity with random inserts and removals: deep cuckoo
    // searches happen all the time, in the conn buckets and in the index. After every
    // step each live conn must sit in one of its buckets and be found by both tuples.
    let (mut t, _, rev0) = nat_fixture();
    let cap = t.capacity();
    let mut live: Vec<(FlowKey, FlowKey)> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for step in 0..20_000u32 {
        if next() % 3 != 0 {
            let f = FlowKey {
                src_port: step as u16,
                ..key(next() as u32 % 5000)
            };
            let r = FlowKey {
                dst_port: 1024 + step as u16,
                ..rev0
            };
            if t.find(&f, f.hash()).is_none() && t.find(&r, r.hash()).is_none() {
                let c = Conn::new(&f, FlowState::Udp, 0, 1).with_reverse(&r);
                if t.insert(c, 0).is_ok() {
                    live.push((f, r));
                }
            }
        } else if !live.is_empty() {
            let (f, _) = live.swap_remove(next() as usize % live.len());
            let (id, _) = t.find(&f, f.hash()).expect("live conn");
            t.remove(id, &mut none);
        }
        for (f, r) in &live {
            let (id, dir) = t
                .find(f, f.hash())
                .unwrap_or_else(|| panic!("step {step}: {f:?} lost"));
            assert_eq!(dir, Dir::Forward);
            assert_eq!(t.find(r, r.hash()), Some((id, Dir::Reverse)), "step {step}");
            let (a, b) = t.conn_candidates(f.hash());
            let bi = id.0 as usize / CWAYS;
            assert!(bi == a || bi == b, "step {step}: not in its buckets");
        }
        assert_eq!(t.active(), live.len());
        assert!(live.len() <= cap);
    }
    assert!(
        t.counters.full > 0,
        "the table never filled: the test did not test"
    );
}

#[test]
fn million_flow_table_is_at_most_64_bytes_per_flow() {
    for cap in [1 << 20, 1_000_000, 1_500_000] {
        let b = FlowTable::new(cap).bytes_per_flow();
        assert!(b <= 64, "{cap}: {b} bytes per flow");
    }
}
