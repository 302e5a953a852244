use super::*;
use crate::testkit::frames::xorshift;

fn record(i: u32) -> SyncRecord {
    SyncRecord {
        op: SyncOp::Upsert,
        proto: 6,
        state: 1,
        flags: 6,
        client: 0xac10_0000 | i,
        vip: 0x0a14_0064,
        cport: 40000 + i as u16,
        vport: 80,
        backend: 0x0a14_010b,
        bport: 8080,
        rev_dport: 1024 + i as u16,
        rev_dst: 0x0a14_0032,
    }
}

#[test]
fn every_message_round_trips_with_and_without_a_key() {
    let key = b"0123456789abcdef0123456789abcdef";
    let msgs = [
        Msg::Hello {
            role: Role::Master,
            ready: true,
            workers: 2,
            nat_ports: (1024, 65535),
        },
        Msg::BulkRequest,
        Msg::BulkStart,
        Msg::BulkEnd { records: 123_456 },
        Msg::Records((0..40).map(record).collect()),
        Msg::Records(Vec::new()),
    ];
    for m in msgs {
        for k in [None, Some(&key[..])] {
            let d = encode(7, 9, &m, k);
            assert!(d.len() <= 1472, "{} bytes", d.len());
            let back = decode(&d, k).unwrap();
            assert_eq!(
                back,
                Datagram {
                    node: 7,
                    seq: 9,
                    msg: m.clone()
                }
            );
        }
    }
}

#[test]
fn a_wrong_or_missing_tag_is_refused() {
    let key = b"0123456789abcdef0123456789abcdef";
    let d = encode(1, 1, &Msg::Records(vec![record(1)]), Some(key));
    assert_eq!(
        decode(&d, Some(b"another key, 32 bytes long......")),
        Err(DecodeError::BadTag)
    );
    let plain = encode(1, 1, &Msg::BulkRequest, None);
    assert_eq!(decode(&plain, Some(key)), Err(DecodeError::BadTag));
    let mut flipped = d.clone();
    flipped[30] ^= 1;
    assert_eq!(decode(&flipped, Some(key)), Err(DecodeError::BadTag));
}

#[test]
fn damaged_datagrams_are_errors_never_panics() {
    let good = encode(3, 4, &Msg::Records((0..5).map(record).collect()), None);
    assert_eq!(decode(&good[..10], None), Err(DecodeError::Truncated));
    assert_eq!(
        decode(&good[..good.len() - 1], None),
        Err(DecodeError::Truncated)
    );
    let mut v = good.clone();
    v[4] = 2;
    assert_eq!(decode(&v, None), Err(DecodeError::Version(2)));
    let mut m = good.clone();
    m[0] = b'X';
    assert_eq!(decode(&m, None), Err(DecodeError::BadMagic));
    let mut op = good.clone();
    op[24] = 9; // the first record's op
    assert_eq!(decode(&op, None), Err(DecodeError::Body));
    // Random bytes and random mutations of a good datagram: an answer, never a panic.
    let mut rnd = xorshift(0x5359_4841);
    for i in 0..20_000 {
        let mut d = if i % 2 == 0 {
            good.clone()
        } else {
            (0..(rnd() % 300) as usize).map(|_| rnd() as u8).collect()
        };
        if !d.is_empty() {
            let at = (rnd() as usize) % d.len();
            d[at] = rnd() as u8;
        }
        let _ = decode(&d, None);
        let _ = decode(&d, Some(b"k"));
    }
}

#[test]
fn replay_window_refuses_repeats_and_stale_within_a_boot() {
    let mut w = ReplayWindow::default();
    assert!(w.accept(7, 10));
    assert!(!w.accept(7, 10), "the same datagram twice");
    assert!(w.accept(7, 12));
    assert!(w.accept(7, 11), "late but unseen");
    assert!(!w.accept(7, 11));
    assert!(w.accept(7, 100));
    assert!(!w.accept(7, 12), "64 or more behind the newest");
    assert!(w.accept(7, 99));
    // The peer restarted: its new boot id starts afresh, low sequence numbers and all.
    assert!(w.accept(8, 1));
    assert!(w.accept(8, 2));
    assert!(!w.accept(8, 1));
    // Sequence numbers wrap.
    let mut w = ReplayWindow::default();
    assert!(w.accept(1, u32::MAX));
    assert!(w.accept(1, 0));
    assert!(!w.accept(1, u32::MAX));
}
