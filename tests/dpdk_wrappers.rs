//! The safe DPDK layer against real DPDK (in this test process, EAL with --no-huge and
//! virtual devices): mbuf ownership returns buffers to the pool, bulk free, the SP/SC mbuf
//! ring keeps order and leaves what does not fit, ports open with N queues and burst.
//! One test function: EAL starts once per process.

use switchyard::dpdk::{DpdkError, Eal, MbufArray, MbufRing, Mempool, Port, QueueId};

#[test]
fn dpdk_wrappers_own_free_and_move_mbufs() {
    let prefix = format!("sy-wrap-{}", std::process::id());
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "-m",
        "128",
        "--no-pci",
        "--file-prefix",
        &prefix,
        "--vdev=net_null0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    assert!(eal.tsc_hz() > 0);
    let pool = Mempool::new("wrap_pool", 1023, 0).expect("mempool");
    assert_eq!(pool.available(), 1023);

    // Owned mbufs: allocation takes from the pool, dropping the array gives them back (bulk).
    let mut a: MbufArray<32> = MbufArray::new();
    for i in 0..10u8 {
        let mut m = pool.alloc().expect("alloc");
        let buf = m.append(60).expect("tailroom");
        buf.fill(i);
        assert!(a.push(m).is_ok());
    }
    assert_eq!(pool.available(), 1013);

    // SP/SC ring of 8 slots holds 7: the first 7 go in order, 3 stay in the array.
    let ring = MbufRing::new("wrap_ring", 8).expect("ring");
    assert_eq!(ring.enqueue(&mut a), 7);
    assert_eq!(ring.count(), 7);
    assert_eq!(a.len(), 3);
    assert_eq!(a.data_mut(0).unwrap()[0], 7, "leftovers keep their order");
    let mut b: MbufArray<32> = MbufArray::new();
    assert_eq!(ring.dequeue(&mut b), 7);
    for i in 0..7 {
        let d = b.data_mut(i).unwrap();
        assert_eq!((d.len(), d[0]), (60, i as u8));
    }
    drop(a);
    drop(b);
    assert_eq!(pool.available(), 1023, "every mbuf went back to the pool");

    // A ring dropped with mbufs inside frees them.
    let mut c: MbufArray<32> = MbufArray::new();
    for _ in 0..5 {
        assert!(c.push(pool.alloc().unwrap()).is_ok());
    }
    assert_eq!(ring.enqueue(&mut c), 5);
    drop(ring);
    assert_eq!(pool.available(), 1023);

    // A port with two queue pairs: tx hands ownership to the driver, rx gives us mbufs.
    let mut port = Port::open("net_null0", 2, &pool, 256, 256, None).expect("net_null0");
    assert_eq!(port.queues, 2);
    let mut t: MbufArray<32> = MbufArray::new();
    for _ in 0..16 {
        let mut m = pool.alloc().unwrap();
        m.append(64).unwrap();
        assert!(t.push(m).is_ok());
    }
    let (sent, dropped) = t.tx_burst(port.id, QueueId(1));
    assert_eq!((sent, dropped), (16, 0));
    let mut r: MbufArray<32> = MbufArray::new();
    let n = r.rx_burst(port.id, QueueId(0));
    assert!(n > 0, "net_null produces packets");
    for i in 0..n {
        drop(r.take(i));
    }
    r.reset();
    assert_eq!(pool.available(), 1023);
    assert!(port.link().up);

    // Asking for more queues than a device has, or a device that is not there: clear errors.
    match Port::open("net_nosuch", 1, &pool, 256, 256, None) {
        Err(DpdkError::NoSuchPort { present, .. }) => assert!(present.contains("net_null0")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a missing port"),
    }
    port.stop();
    drop(port);
    drop(pool);
    drop(eal);
}
