//! The worker poll loop: one per worker lcore, owning rx/tx queue `i` of every port and a
//! [`Datapath`]. Per round: apply control messages, pull a burst from each port, decide each
//! frame, transmit per egress port, bulk-free drops, reclaim a slice of expired flows, publish
//! counters. Fixed arrays only; no allocation, lock, syscall or formatting per packet (the
//! optional idle sleep is the one syscall, and only when a whole round found nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::channel::Control;
use crate::datapath::{Datapath, Pre};
use crate::dpdk::{BURST, Mbuf, MbufArray, MbufRing, Mempool, PortId, QueueId, tsc};
use crate::lb::Snapshot;
use crate::stats::{Ctr, LatencyHistogram, WorkerStats};
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire;

/// How often service/backend counters and the latency histogram are handed over.
const PUBLISH_EVERY_MS: u32 = 100;
/// Conn slots checked for expiry per poll round (at 10 Mpps, some 300,000 rounds a second, a
/// 1M-conn table is swept in under a second; more per round costs instructions and cache
/// misses on the hot path; lookups reclaim the dead conns they meet in between).
const SWEEP_BUCKETS: usize = 4;
/// Conn slots checked in a round that received nothing.
const SWEEP_IDLE: usize = 1024;
/// Control messages applied per poll round (bounded so a flood cannot stall rx).
const CONTROL_PER_ROUND: usize = 64;
const TX_BUF: usize = 2 * BURST;
/// How many packets ahead of processing a conn is prefetched.
const PREFETCH_AHEAD: usize = 8;
/// A round this long after the previous one means the worker stood still (wedged, or the
/// process stopped): what the kernel queued for the wire meanwhile is dropped as stale.
const STALL_MS: u64 = 1000;
/// At most this many bursts of stale kernel frames are dropped per interface after a stall.
const STALE_BURSTS: usize = 64;
/// One round in this many has its time split by phase (rx burst, work, rest): the split
/// takes two more TSC reads per port, and a TSC read costs ~15 ns on the VMs we measure on
/// (~1 ns a packet at full bursts). The busy total is read every round.
const PHASE_EVERY: u32 = 16;
// A burst's fast-lane frames are a bit mask in a u32.
const _: () = assert!(BURST <= 32);

pub struct Worker {
    pub index: usize,
    /// Port of each interface, indexed by `IfIdx`.
    pub ports: Vec<PortId>,
    pub queue: QueueId,
    pub dp: Datapath,
    pub control: Arc<ArrayQueue<Control>>,
    /// Snapshots replaced by a reload go back to management to be freed there.
    pub retired: Arc<ArrayQueue<Arc<Snapshot>>>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    pub pool: Arc<Mempool>,
    pub idle_sleep: Duration,
    pub tsc_hz: u64,
    /// `steer_out[j]`: SPSC ring to worker j (`None` for this worker itself).
    pub steer_out: Vec<Option<Arc<MbufRing>>>,
    /// SPSC rings from the other workers.
    pub steer_in: Vec<Arc<MbufRing>>,
    /// Where flow dumps go.
    pub flows_out: Arc<ArrayQueue<Vec<crate::flow::Conn>>>,
    /// Exception-path (tap) port of each interface, if it has one; with its VLAN.
    pub taps: Vec<Option<(PortId, Option<u16>)>>,
}

/// The worker's per-round buffers: fixed arrays, allocated once.
struct Bufs {
    tx: Vec<MbufArray<TX_BUF>>,
    /// Frames for the kernel, per interface.
    tap_tx: Vec<MbufArray<TX_BUF>>,
    steer: Vec<MbufArray<BURST>>,
    drops: MbufArray<BURST>,
}

/// TSC ticks of the rounds that had packets: all of them, and the sampled ones by phase.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Busy {
    total: u64,
    phases: [u64; 3],
}

impl Busy {
    /// `total` split as the sampled rounds split their time (all of it to the work phase
    /// before a busy round was sampled); the parts add up to `total`.
    fn split(&self) -> [u64; 3] {
        let sampled: u128 = self.phases.iter().map(|&p| u128::from(p)).sum();
        if sampled == 0 {
            return [0, self.total, 0];
        }
        let part = |p: u64| (u128::from(self.total) * u128::from(p) / sampled) as u64;
        let (rx, tx) = (part(self.phases[0]), part(self.phases[2]));
        [rx, self.total - rx - tx, tx]
    }
}

impl Worker {
    /// Runs until `stop` is set. Returns the lcore exit code.
    pub fn run(mut self) -> i32 {
        let mut rx: MbufArray<BURST> = MbufArray::new();
        // The first pass's results: `pre[i]` is valid where bit i of `fast` is set.
        let mut pre = [Pre::default(); BURST];
        let mut bufs = Bufs {
            tx: self.ports.iter().map(|_| MbufArray::new()).collect(),
            tap_tx: self.ports.iter().map(|_| MbufArray::new()).collect(),
            steer: self.steer_out.iter().map(|_| MbufArray::new()).collect(),
            drops: MbufArray::new(),
        };
        let start = tsc();
        let ticks_per_ms = (self.tsc_hz / 1000).max(1);
        let mut hist: Box<LatencyHistogram> = self
            .stats
            .hist_empty
            .pop()
            .unwrap_or_else(crate::stats::new_latency_histogram);
        let mut last_publish = 0u32;
        let mut last_counters = u32::MAX;
        // TSC ticks of busy rounds, and of the sampled busy rounds by phase (rx burst, work,
        // rest); see `Ctr::BusyRxNs` and `PHASE_EVERY`.
        let mut busy = Busy::default();
        let mut round = 0u32;
        tracing::info!(worker = self.index, queue = self.queue.0, "worker started");
        let stall_ticks = ticks_per_ms * STALL_MS;
        let mut last_round = tsc();
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = tsc();
            let now = ((t0 - start) / ticks_per_ms) as u32;
            let stalled = t0.saturating_sub(last_round) >= stall_ticks;
            last_round = t0;
            self.apply_control(&mut bufs.tx, now);
            let mut got = 0;
            let mut phase = [0u64; 3];
            let mut t_phase = t0;
            round = round.wrapping_add(1);
            let timed = round.is_multiple_of(PHASE_EVERY);
            for pi in 0..self.ports.len() {
                let n = rx.rx_burst(self.ports[pi], self.queue);
                let t_rx = if timed {
                    let t = tsc();
                    phase[0] += t - t_phase;
                    t
                } else {
                    0
                };
                got += n;
                // First pass: tuple and hash of every frame the fast lane may take, and the
                // conn-table buckets they need, so the loads overlap instead of stalling one
                // by one.
                let in_if = IfIdx(pi as u16);
                let mut fast = 0u32;
                if let Some(gate) = self.dp.fast_gate(in_if) {
                    for (i, p) in pre.iter_mut().enumerate().take(n) {
                        if rx
                            .data_mut(i)
                            .is_some_and(|f| Datapath::pre_parse_into(f, &gate, p))
                        {
                            fast |= 1 << i;
                            // Each frame's direction is guessed (a reply in a NAT mode or
                            // not), which decides the lines its prefetches read; what the
                            // second pass needs to know waits in the hint field.
                            p.hint = self.dp.prefetch_buckets(p);
                        }
                    }
                }
                // Conns are prefetched a few packets ahead of processing, by when their
                // bucket (prefetched above) has arrived. The bucket scan there also names
                // the conn: the lookup tries it first.
                for (i, p) in pre.iter_mut().enumerate().take(n.min(PREFETCH_AHEAD)) {
                    if fast & (1 << i) != 0 {
                        p.hint = self.dp.flows.prefetch_conn(&p.key, p.hash, p.hint);
                    }
                }
                // Bit 0 of `ahead` says whether frame i + PREFETCH_AHEAD is in the fast lane
                // (`fast`, shifted along with i; its bits past the burst are clear).
                let mut ahead = fast >> PREFETCH_AHEAD;
                for i in 0..n {
                    if ahead & 1 != 0
                        && let Some(p) = pre.get_mut(i + PREFETCH_AHEAD)
                    {
                        p.hint = self.dp.flows.prefetch_conn(&p.key, p.hash, p.hint);
                    }
                    ahead >>= 1;
                    let Some(mut m) = rx.take(i) else { continue };
                    let is_fast = fast & (1 << i) != 0;
                    if is_fast {
                        let out = m
                            .data_mut()
                            .and_then(|f| self.dp.fast_path(f, &pre[i], now));
                        if let Some(out) = out {
                            self.enqueue(&mut bufs.tx, usize::from(out.0), m);
                            continue;
                        }
                        // Not ours: straight to the worker that owns its conn.
                        let len = m.data_mut().map_or(0, |f| f.len());
                        if let Some(w) = self.dp.fast_handover(&pre[i], len) {
                            self.steer(&mut bufs, w, m);
                            continue;
                        }
                    }
                    let hint = is_fast.then(|| pre[i].hash);
                    self.handle(&mut bufs, m, in_if, now, false, hint);
                }
                rx.reset();
                if timed {
                    t_phase = tsc();
                    phase[1] += t_phase - t_rx;
                }
            }
            // What the kernel sends through the exception path goes out of the interface as is.
            for pi in 0..self.taps.len() {
                let Some((tap, vlan)) = self.taps[pi] else {
                    continue;
                };
                if stalled {
                    self.drop_stale_from_kernel(&mut rx, tap);
                    continue;
                }
                let n = rx.rx_burst(tap, self.queue);
                got += n;
                for i in 0..n {
                    if let Some(mut m) = rx.take(i) {
                        if vlan.is_some() && wire::retag(&mut m, None, vlan).is_none() {
                            self.dp.ctr.drop(DropReason::MultiSegment);
                            self.drop_mbuf(&mut bufs, m);
                            continue;
                        }
                        self.dp.ctr.inc(Ctr::FromKernel);
                        self.enqueue(&mut bufs.tx, pi, m);
                    }
                }
                rx.reset();
            }
            // Packets other workers handed us: their conns live here.
            for r in 0..self.steer_in.len() {
                let n = self.steer_in[r].dequeue(&mut rx);
                got += n;
                for i in 0..n {
                    if let Some(m) = rx.take(i) {
                        self.handle_steered(&mut bufs, m, now);
                    }
                }
                rx.reset();
            }
            for w in 0..bufs.steer.len() {
                self.flush_steer(&mut bufs, w);
            }
            let sent_before = self.dp.ctr.get(Ctr::TxPackets);
            for pi in 0..bufs.tx.len() {
                self.flush_tx(&mut bufs.tx, pi);
            }
            for pi in 0..bufs.tap_tx.len() {
                if let Some((tap, _)) = self.taps[pi] {
                    let (sent, unsent) = bufs.tap_tx[pi].tx_burst(tap, self.queue);
                    self.dp.ctr.add(Ctr::TxPackets, sent as u64);
                    for _ in 0..unsent {
                        self.dp.ctr.drop(DropReason::TxFull);
                    }
                }
            }
            let sent = self.dp.ctr.get(Ctr::TxPackets) - sent_before;
            let t_end = tsc();
            if got > 0 {
                busy.total += t_end - t0;
                if timed {
                    phase[2] = t_end - t_phase;
                    for (b, p) in busy.phases.iter_mut().zip(phase) {
                        *b += p;
                    }
                }
            }
            if sent > 0 {
                // Every packet sent this round waited from the rx burst (t0) until now.
                let ns = (t_end - t0) * 1_000_000_000 / self.tsc_hz.max(1);
                let _ = hist.record_n(ns.max(1), sent);
            }
            bufs.drops.free_all();
            // An idle round has time to spare: sweep much more, so expired conns (and their
            // NAT ports) come back quickly when traffic is light.
            self.dp
                .sweep(now, if got == 0 { SWEEP_IDLE } else { SWEEP_BUCKETS });
            self.dp.sync_round(now);
            // Counters go out once a millisecond, not every round (dozens of stores each).
            if now != last_counters {
                last_counters = now;
                self.publish_busy(&busy);
                self.dp.publish();
                self.stats.publish(&self.dp.ctr);
                self.stats.beat(now);
            }
            if now.wrapping_sub(last_publish) >= PUBLISH_EVERY_MS {
                last_publish = now;
                self.publish_slow(&mut hist);
            }
            if got == 0 && !self.idle_sleep.is_zero() {
                std::thread::sleep(self.idle_sleep);
            }
        }
        self.publish_busy(&busy);
        self.dp.publish();
        self.stats.publish(&self.dp.ctr);
        self.publish_slow(&mut hist);
        tracing::info!(worker = self.index, "worker stopped");
        0
    }

    /// The busy-time counters from TSC ticks (once a millisecond, not per round): the busy
    /// total split in the sampled rounds' proportions.
    fn publish_busy(&mut self, busy: &Busy) {
        let hz = u128::from(self.tsc_hz.max(1));
        let [rx, work, tx] = busy.split();
        let ns = |t: u64| (u128::from(t) * 1_000_000_000 / hz) as u64;
        self.dp.ctr.set(Ctr::BusyRxNs, ns(rx));
        self.dp.ctr.set(Ctr::BusyWorkNs, ns(work));
        self.dp.ctr.set(Ctr::BusyTxNs, ns(tx));
    }

    /// Service/backend counters and the latency histogram, every `PUBLISH_EVERY_MS`: the
    /// filled histogram goes to management in exchange for an empty one (never allocated here).
    fn publish_slow(&mut self, hist: &mut Box<LatencyHistogram>) {
        let snap = &self.dp.snap;
        self.stats.publish_services(
            &self.dp.svc_ctr,
            snap.services.len(),
            snap.backends.len(),
            snap.gslb.as_ref().map_or(0, |g| g.len()),
        );
        if hist.is_empty() {
            return;
        }
        if let Some(empty) = self.stats.hist_empty.pop() {
            let full = std::mem::replace(hist, empty);
            if let Err(back) = self.stats.hist_full.push(full) {
                // Management is behind: keep accumulating in the same histogram.
                let _ = self.stats.hist_empty.push(std::mem::replace(hist, back));
            }
        }
    }

    /// A frame another worker handed over: the fast lane first, as for frames of our own
    /// queues, else the full path. Out of line, so that the burst loop's code (the fast lane
    /// inlined there) stays as it is on one worker.
    #[inline(never)]
    fn handle_steered(&mut self, bufs: &mut Bufs, mut m: Mbuf, now: u32) {
        let in_if = self.ports.iter().position(|p| *p == m.port()).unwrap_or(0);
        let in_if = IfIdx(in_if as u16);
        let out = self.dp.fast_gate(in_if).and_then(|gate| {
            let f = m.data_mut()?;
            let pre = Datapath::pre_parse(f, &gate)?;
            self.dp.fast_path_steered(f, &pre, now)
        });
        match out {
            Some(out) => self.enqueue(&mut bufs.tx, usize::from(out.0), m),
            None => self.handle(bufs, m, in_if, now, true, None),
        }
    }

    /// Hands `m` to worker `w`, which owns its conn (batched per round, see `flush_steer`).
    #[inline(never)]
    fn steer(&mut self, bufs: &mut Bufs, w: u16, m: Mbuf) {
        let w = usize::from(w);
        if w >= bufs.steer.len() || self.steer_out[w].is_none() {
            self.dp.ctr.drop(DropReason::SteerFull);
            self.drop_mbuf(bufs, m);
            return;
        }
        if bufs.steer[w].is_full() {
            self.flush_steer(bufs, w);
        }
        let _ = bufs.steer[w].push(m);
    }

    #[inline]
    fn handle(
        &mut self,
        bufs: &mut Bufs,
        mut m: Mbuf,
        in_if: IfIdx,
        now: u32,
        steered: bool,
        hint: Option<u64>,
    ) {
        let verdict = if m.data_mut().is_none() {
            self.dp.count_unparseable(0, DropReason::MultiSegment);
            Verdict::Drop(DropReason::MultiSegment)
        } else if steered {
            self.dp.process(&mut m, in_if, now, true)
        } else {
            self.dp.process_hinted(&mut m, in_if, now, hint)
        };
        match verdict {
            Verdict::Forward(out) => self.enqueue(&mut bufs.tx, usize::from(out.0), m),
            Verdict::Reply => self.enqueue(&mut bufs.tx, usize::from(in_if.0), m),
            Verdict::Steer(w) => self.steer(bufs, w, m),
            Verdict::ToKernel => {
                let i = usize::from(in_if.0);
                let Some((tap, vlan)) = self.taps.get(i).copied().flatten() else {
                    self.dp.ctr.drop(DropReason::LocalNotHandled);
                    self.drop_mbuf(bufs, m);
                    return;
                };
                if vlan.is_some() && wire::retag(&mut m, vlan, None).is_none() {
                    self.dp.ctr.drop(DropReason::MultiSegment);
                    self.drop_mbuf(bufs, m);
                    return;
                }
                if bufs.tap_tx[i].is_full() {
                    let (sent, unsent) = bufs.tap_tx[i].tx_burst(tap, self.queue);
                    self.dp.ctr.add(Ctr::TxPackets, sent as u64);
                    for _ in 0..unsent {
                        self.dp.ctr.drop(DropReason::TxFull);
                    }
                }
                let _ = bufs.tap_tx[i].push(m);
            }
            Verdict::Consumed | Verdict::Drop(_) => self.drop_mbuf(bufs, m),
        }
    }

    /// After a stall: what the kernel queued on `tap` meanwhile is stale (see
    /// `DropReason::StaleFromKernel`); counted and freed. Bounded: a kernel that keeps
    /// sending is served again next round.
    #[cold]
    fn drop_stale_from_kernel(&mut self, rx: &mut MbufArray<BURST>, tap: PortId) {
        for _ in 0..STALE_BURSTS {
            let n = rx.rx_burst(tap, self.queue);
            if n == 0 {
                break;
            }
            for _ in 0..n {
                self.dp.ctr.drop(DropReason::StaleFromKernel);
            }
            rx.free_all();
        }
    }

    #[inline]
    fn drop_mbuf(&mut self, bufs: &mut Bufs, m: Mbuf) {
        if let Err(m) = bufs.drops.push(m) {
            bufs.drops.free_all();
            let _ = bufs.drops.push(m);
        }
    }

    /// Hands the buffered packets to worker `w`; what its ring cannot take is dropped.
    fn flush_steer(&mut self, bufs: &mut Bufs, w: usize) {
        let Some(ring) = &self.steer_out[w] else {
            return;
        };
        if bufs.steer[w].is_empty() {
            return;
        }
        let n = ring.enqueue(&mut bufs.steer[w]);
        self.dp.ctr.add(Ctr::SteeredOut, n as u64);
        for _ in 0..bufs.steer[w].len() {
            self.dp.ctr.drop(DropReason::SteerFull);
        }
        bufs.steer[w].free_all();
    }

    fn flush_tx(&mut self, tx: &mut [MbufArray<TX_BUF>], port: usize) {
        let (sent, unsent) = tx[port].tx_burst(self.ports[port], self.queue);
        self.dp.ctr.add(Ctr::TxPackets, sent as u64);
        for _ in 0..unsent {
            self.dp.ctr.drop(DropReason::TxFull);
        }
    }

    #[inline]
    fn enqueue(&mut self, tx: &mut [MbufArray<TX_BUF>], port: usize, m: Mbuf) {
        if let Err(m) = tx[port].push(m) {
            // Full: send what it holds, then it has room.
            self.flush_tx(tx, port);
            let _ = tx[port].push(m);
        }
    }

    fn apply_control(&mut self, tx: &mut [MbufArray<TX_BUF>], now: u32) {
        for _ in 0..CONTROL_PER_ROUND {
            let Some(msg) = self.control.pop() else { break };
            match msg {
                Control::SetNeighbour { ip, mac } => self.dp.set_neighbour(ip, mac),
                Control::SyncInstall(batch) => self.dp.sync_install(batch, now),
                Control::SyncAll => self.dp.sync_all(),
                Control::DumpFlows(n) => {
                    // Diagnostics only: this allocation happens between bursts, on request.
                    let _ = self.flows_out.push(self.dp.flows.snapshot(n));
                }
                Control::Snapshot(s) => {
                    let old = self.dp.set_snapshot(s);
                    // Management frees it; if its queue is full we free it here (rare).
                    let _ = self.retired.push(old);
                }
                Control::SendArp {
                    iface,
                    sender,
                    target,
                } => {
                    let i = usize::from(iface.0);
                    let Some(ifc) = self.dp.snap.interfaces.get(i) else {
                        continue;
                    };
                    let (mac, vlan) = (ifc.mac, ifc.vlan);
                    let len = wire::arp_frame_len(vlan);
                    let Some(mut m) = self.pool.alloc() else {
                        self.dp.ctr.inc(Ctr::GeneratedFailed);
                        continue;
                    };
                    match m.append(len as u16) {
                        Some(buf) => {
                            wire::build_arp_request(buf, vlan, mac, sender, target);
                            self.dp.ctr.inc(Ctr::Generated);
                            self.enqueue(tx, i, m);
                        }
                        None => self.dp.ctr.inc(Ctr::GeneratedFailed),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Busy;

    #[test]
    fn busy_time_is_split_as_the_sampled_rounds_split_theirs() {
        let b = Busy {
            total: 1000,
            phases: [10, 30, 10],
        };
        assert_eq!(b.split(), [200, 600, 200]);
        // Rounding never makes the parts exceed the total.
        let b = Busy {
            total: 1001,
            phases: [1, 1, 1],
        };
        let s = b.split();
        assert_eq!(s.iter().sum::<u64>(), 1001);
        // Nothing sampled yet: all of it counts as work.
        let b = Busy {
            total: 7,
            phases: [0; 3],
        };
        assert_eq!(b.split(), [0, 7, 0]);
    }
}
