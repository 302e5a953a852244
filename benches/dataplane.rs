//! Micro-benchmarks of the data-plane building blocks (criterion). `cargo bench` measures;
//! `cargo test --benches` (part of the test suite) runs each once so they cannot rot.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchyard::config::Mode;
use switchyard::datapath::Datapath;
use switchyard::dpdk::HugeSlice;
use switchyard::flow::{Conn, FlowKey, FlowState, FlowTable, Timeouts};
use switchyard::lb::maglev::{MaglevBackend, MaglevTable};
use switchyard::testkit::{self, frames};
use switchyard::types::{IfIdx, Verdict};
use switchyard::wire::{self, ETH_HDR, PROTO_TCP, Rewrite};

const T: Timeouts = Timeouts([
    30_000, 900_000, 10_000, 60_000, 30_000, 30_000, 30_000, 30_000,
]);

/// A TCP ACK from client `src`:`sport` to the test configuration's VIP:80, to our MAC.
fn frame(src: u32, sport: u16) -> Vec<u8> {
    frames::pkt(
        Ipv4Addr::from(src),
        testkit::VIP,
        sport,
        80,
        PROTO_TCP,
        frames::ACK,
    )
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        src: 0xac10_0000 | (i >> 10),
        dst: 0x0a14_0064,
        src_port: 1024 + (i & 1023) as u16,
        dst_port: 80,
        proto: 6,
    }
}

fn parsing(c: &mut Criterion) {
    let f = frame(0xac10_0001, 40000);
    c.bench_function("parse eth+ipv4(checksum)+tcp", |b| {
        b.iter(|| {
            let f = black_box(&f[..]);
            let l2 = wire::parse_l2(f).unwrap();
            let ip = wire::parse_ipv4(f, l2.l3).unwrap();
            black_box(wire::parse_l4(f, &ip).unwrap())
        })
    });
}

fn flows(c: &mut Criterion) {
    const N: u32 = 1 << 20;
    let mut t = FlowTable::new(N as usize);
    for i in 0..N {
        let k = key(i);
        t.insert(Conn::new(&k, FlowState::TcpEstablished, 0, 0), 0)
            .unwrap();
    }
    let mut i = 0u32;
    c.bench_function("flow lookup hit (1M conns)", |b| {
        b.iter(|| {
            i = (i.wrapping_mul(2_654_435_761).wrapping_add(1)) % N;
            let k = key(i);
            black_box(t.lookup(&k, k.hash(), 1, &T, &mut |_| {}))
        })
    });
    c.bench_function("flow lookup miss (1M conns)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let k = key(N + (i % N));
            black_box(t.lookup(&k, k.hash(), 1, &T, &mut |_| {}))
        })
    });
    c.bench_function("flow insert+remove (1M conns)", |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(1);
                (key(2 * N + (i % N)), key(i % N))
            },
            |(k, victim)| {
                // Full table: make room first, as a steady state of churn would.
                if let Some((id, _)) = t.lookup(&victim, victim.hash(), 1, &T, &mut |_| {}) {
                    t.remove(id, &mut |_| {});
                }
                black_box(t.insert(Conn::new(&k, FlowState::TcpSyn, 0, 0), 1).is_ok())
            },
            BatchSize::SmallInput,
        )
    });
}

fn maglev(c: &mut Criterion) {
    let backends: Vec<MaglevBackend> = (0..10u8)
        .map(|i| MaglevBackend {
            addr: Ipv4Addr::new(10, 20, 1, 10 + i),
            weight: 1 + u32::from(i % 3),
        })
        .collect();
    let table = MaglevTable::build(&backends, 65537);
    let mut h = 1u64;
    c.bench_function("maglev lookup", |b| {
        b.iter(|| {
            h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            black_box(table.lookup(h))
        })
    });
    c.bench_function("maglev rebuild (10 backends, M=65537)", |b| {
        b.iter(|| black_box(MaglevTable::build(black_box(&backends), 65537)))
    });
}

fn nat(c: &mut Criterion) {
    let f = frame(0xac10_0001, 40000);
    let rw = Rewrite {
        src: Some((Ipv4Addr::new(10, 20, 0, 10), 1024)),
        dst: Some((Ipv4Addr::new(10, 20, 0, 11), 8080)),
    };
    c.bench_function("NAT rewrite, incremental checksums", |b| {
        b.iter_batched_ref(
            || f.clone(),
            |f| wire::rewrite_ipv4(black_box(f), ETH_HDR, 54, true, &rw),
            BatchSize::SmallInput,
        )
    });
}

fn pipeline(c: &mut Criterion) {
    for mode in Mode::ALL {
        let mut cfg = testkit::config(mode);
        cfg.flows.capacity_per_core = 200_000;
        // 64k proxy flows need more than one address's 64,512 SNAT ports.
        cfg.interfaces[0].snat_addresses =
            vec![Ipv4Addr::new(10, 20, 0, 200), Ipv4Addr::new(10, 20, 0, 201)];
        let (mut d, _) = testkit::datapath(&cfg, 1, 0);
        let frames: Vec<Vec<u8>> = (0..65536u32)
            .map(|i| frame(0xac10_0000 | (i >> 10), 1024 + (i & 1023) as u16))
            .collect();
        // Each conn opened by its SYN (a full-NAT conn is never adopted mid-flow).
        for i in 0..65536u32 {
            let mut syn = frames::pkt(
                Ipv4Addr::from(0xac10_0000 | (i >> 10)),
                testkit::VIP,
                1024 + (i & 1023) as u16,
                80,
                PROTO_TCP,
                frames::SYN,
            );
            d.process(&mut syn, IfIdx(0), 0, false);
        }
        for f in &frames {
            d.process(&mut f.clone(), IfIdx(0), 0, false);
        }
        let mut i = 0usize;
        c.bench_function(
            &format!("datapath {mode}: established flow, 64k conns"),
            |b| {
                b.iter_batched_ref(
                    || {
                        i = (i + 7919) % frames.len();
                        frames[i].clone()
                    },
                    |f| black_box(d.process(f, IfIdx(0), 1, false)),
                    BatchSize::SmallInput,
                )
            },
        );
        // The worker's way: a burst of 32 copied in (as a vdev would), parsed and its
        // buckets prefetched, conns prefetched, then the fast lane; no allocation per burst.
        let mut g = c.benchmark_group(format!("fast lane {mode}"));
        g.throughput(criterion::Throughput::Elements(32));
        let len = frames[0].len();
        debug_assert!(len <= 64);
        for conns in [1024usize, 65536] {
            let mut i = 0usize;
            let mut burst = [[0u8; 64]; 32];
            let mut pre = [None; 32];
            // Every conn the loop below can pick must exist (so test mode checks all of them,
            // not only the one burst it runs).
            let gate = d.fast_gate(IfIdx(0)).expect("interface 0");
            for f in &frames[..conns] {
                let mut f = f.clone();
                let p = Datapath::pre_parse(&f, &gate).expect("plain TCP");
                assert!(d.fast_path(&mut f, &p, 1).is_some(), "{mode}: no conn");
            }
            g.bench_function(format!("burst of 32, {conns} conns"), |b| {
                b.iter(|| {
                    for (f, p) in burst.iter_mut().zip(pre.iter_mut()) {
                        i = (i + 7919) & (conns - 1);
                        f[..len].copy_from_slice(&frames[i]);
                        *p = Datapath::pre_parse(&f[..len], &gate);
                        if let Some(p) = p {
                            p.hint = d.prefetch_buckets(p);
                        }
                    }
                    for p in pre.iter_mut().flatten() {
                        p.hint = d.flows.prefetch_conn(&p.key, p.hash, p.hint);
                    }
                    for (f, p) in burst.iter_mut().zip(&pre) {
                        let p = p.as_ref().expect("plain TCP");
                        let f = &mut f[..len];
                        black_box(d.fast_path(f, p, 1).expect("fast lane"));
                    }
                })
            });
        }
        g.finish();
    }
}

/// `lines` 64-byte lines, each holding the index of the next, linked in one random cycle
/// (Sattolo's algorithm), in huge-page-advised memory (as the conn table: no TLB misses in
/// the way); returns the lines and the cycle's order.
fn random_cycle(lines: usize) -> (HugeSlice<[u32; 16]>, Vec<u32>) {
    let mut next = HugeSlice::new(lines, [0u32; 16]);
    let mut order: Vec<u32> = (0..lines as u32).collect();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % i as u64) as usize);
    }
    for w in 0..lines {
        next[order[w] as usize][0] = order[(w + 1) % lines];
    }
    (next, order)
}

/// The machine's memory system, which bounds the cells of `perf/run` whose conn tables do not
/// stay in cache.
///
/// - **Latency by working set**: one dependent chain through 256 KiB .. 64 MiB of randomly
///   linked lines; where the time per line jumps is where a cache ends (on the Intel VM of
///   2026-11-30: ~10-20 ns up to 2 MiB, the L2, then ~190 ns from 3 MiB on, DRAM; the
///   105 MB L3 the VM reports does not show).
/// - **64 MiB, 32 independent chains**: as many misses in flight as the core allows, the cost
///   per line at full overlap, which is what a perfectly prefetched conn lookup can at best
///   achieve.
fn memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory latency by working set");
    g.throughput(criterion::Throughput::Elements(1024));
    for kib in [256usize, 1024, 2048, 4096, 16384, 65536] {
        let (next, order) = random_cycle(kib * 1024 / 64);
        let mut at = order[0];
        g.bench_function(format!("{kib} KiB, 1 chain"), |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    at = next[at as usize][0];
                }
                black_box(at)
            })
        });
    }
    g.finish();
    const LINES: usize = 1 << 20;
    let (next, order) = random_cycle(LINES);
    let mut g = c.benchmark_group("memory 64 MiB random lines");
    g.throughput(criterion::Throughput::Elements(1024));
    let mut chains: [u32; 32] = std::array::from_fn(|k| order[k * (LINES / 32)]);
    g.bench_function("32 chains (throughput)", |b| {
        b.iter(|| {
            for _ in 0..32 {
                for c in chains.iter_mut() {
                    *c = next[*c as usize][0];
                }
            }
            black_box(chains[0])
        })
    });
    g.finish();
}

/// Conns opened per batch (fewer than `syn_cookie_half_open`, so that cookies stay off while
/// a batch's SYNs wait for their SYN-ACKs).
const BATCH: usize = 512;
/// Live conns at which a bench expires them all (untimed) before its next batch.
const LIVE_MAX: usize = 256 * 1024;
const RST: u8 = 0x04;

/// Conn creation and teardown through the whole datapath, per mode: each conn a tuple not
/// used since its last conn expired, opened by its handshake in the right order (client SYN,
/// the backend's SYN-ACK to the address the SYN was sent from, client ACK), closed by the
/// client's RST and then reclaimed by the sweep once `tcp_closing_s` has passed. Each phase
/// is timed over a batch of conns, with the frames built before it (the SYN-ACKs from the
/// SYNs as the balancer rewrote them). Per element: one conn.
fn conns(c: &mut Criterion) {
    for mode in Mode::ALL {
        let mut cfg = testkit::config(mode);
        cfg.flows.capacity_per_core = 1 << 20;
        cfg.flows.timeouts.tcp_closing_s = 1;
        cfg.interfaces[0].snat_addresses = (0..20u8)
            .map(|k| Ipv4Addr::new(10, 20, 0, 200 + k))
            .collect();
        let (mut d, _) = testkit::datapath(&cfg, 1, 0);
        let nat = mode != Mode::Dsr;
        let mut next = 0u32;
        let mut now = 1u32;
        let mut g = c.benchmark_group(format!("conns {mode}"));
        g.throughput(criterion::Throughput::Elements(1));
        g.bench_function("open (SYN, SYN-ACK, ACK), up to 256k live", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters.div_ceil(BATCH as u64) {
                    let (open, _) = open_batch(&mut d, &mut next, &mut now, nat);
                    t += open;
                }
                t * iters as u32 / (iters.div_ceil(BATCH as u64) * BATCH as u64) as u32
            })
        });
        g.bench_function("close (RST), up to 256k live", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                let batches = iters.div_ceil(BATCH as u64);
                for _ in 0..batches {
                    let (_, clients) = open_batch(&mut d, &mut next, &mut now, nat);
                    t += close_batch(&mut d, &clients, now);
                }
                t * iters as u32 / (batches * BATCH as u64) as u32
            })
        });
        g.finish();
        // The sweep's share of a conn: one pass over the table (1M slots) reclaiming
        // LIVE_MAX closed conns, as the worker makes it slice by slice between bursts.
        expire_all(&mut d, &mut now);
        let mut g = c.benchmark_group(format!("conns {mode}"));
        g.sample_size(10);
        g.throughput(criterion::Throughput::Elements(LIVE_MAX as u64));
        g.bench_function("reclaim: a sweep over 1M slots, 256k closed conns", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    while d.flows.active() + BATCH <= LIVE_MAX {
                        let (_, clients) = open_batch(&mut d, &mut next, &mut now, nat);
                        close_batch(&mut d, &clients, now);
                    }
                    now += 1_001;
                    let live = d.flows.active();
                    let t0 = Instant::now();
                    d.sweep(now, d.flows.slots());
                    t += t0.elapsed();
                    assert_eq!(
                        d.flows.active(),
                        0,
                        "{mode}: {live} closed, not all reclaimed"
                    );
                }
                t
            })
        });
        g.finish();
        // What the open bench left established.
        expire_all(&mut d, &mut now);
    }
}

/// Opens BATCH new conns (timing only the datapath's work); returns that time and the
/// conns' clients. Expires every conn first (untimed) once LIVE_MAX are live.
fn open_batch(
    d: &mut Datapath,
    next: &mut u32,
    now: &mut u32,
    nat: bool,
) -> (Duration, Vec<(Ipv4Addr, u16)>) {
    if d.flows.active() + BATCH > LIVE_MAX {
        expire_all(d, now);
    }
    let clients: Vec<(Ipv4Addr, u16)> = (0..BATCH)
        .map(|_| {
            let i = *next;
            *next = next.wrapping_add(1) % (1 << 22);
            (
                Ipv4Addr::from(0xac10_0000 | (i >> 10)),
                1024 + (i & 1023) as u16,
            )
        })
        .collect();
    let mut syns = client_frames(&clients, frames::SYN);
    let mut acks = client_frames(&clients, frames::ACK);
    let mut t = forward_all(d, &mut syns, *now, "SYN");
    if nat {
        // The backend answers the address and port the balancer sent the SYN from.
        let mut synacks: Vec<Vec<u8>> = syns
            .iter()
            .map(|f| {
                let (src, sport, dst, dport) = frames::tuple(f);
                frames::pkt(dst, src, dport, sport, PROTO_TCP, frames::SYN | frames::ACK)
            })
            .collect();
        t += forward_all(d, &mut synacks, *now, "SYN-ACK");
    }
    t += forward_all(d, &mut acks, *now, "ACK");
    (t, clients)
}

/// The clients' RSTs of open conns (timed).
fn close_batch(d: &mut Datapath, clients: &[(Ipv4Addr, u16)], now: u32) -> Duration {
    forward_all(d, &mut client_frames(clients, RST), now, "RST")
}

/// A TCP segment with `flags` from each client to the VIP's port 80.
fn client_frames(clients: &[(Ipv4Addr, u16)], flags: u8) -> Vec<Vec<u8>> {
    clients
        .iter()
        .map(|&(a, p)| frames::pkt(a, testkit::VIP, p, 80, PROTO_TCP, flags))
        .collect()
}

/// Runs `frames` through the datapath, each of which must be forwarded; the time it took.
fn forward_all(d: &mut Datapath, frames: &mut [Vec<u8>], now: u32, what: &str) -> Duration {
    let t0 = Instant::now();
    for f in frames {
        let v = d.process(f, IfIdx(0), now, false);
        assert!(matches!(v, Verdict::Forward(_)), "{what} {v:?}");
    }
    t0.elapsed()
}

/// Expires every conn (past the longest timeout) and sweeps the whole table.
fn expire_all(d: &mut Datapath, now: &mut u32) {
    *now += 901_000;
    d.sweep(*now, d.flows.slots());
    assert_eq!(d.flows.active(), 0);
}

criterion_group!(
    benches, parsing, flows, maglev, nat, pipeline, memory, conns
);
criterion_main!(benches);
