//! The worker poll loop: one per worker lcore, owning rx/tx queue `i` of every port and a
//! [`Datapath`]. Per round: apply control messages, pull a burst from each port, decide each
//! frame, transmit per egress port, bulk-free drops, reclaim a slice of expired flows, publish
//! counters. Fixed arrays only; no allocation, lock, syscall or formatting per packet (the
//! optional idle sleep is the one syscall, and only when a whole round found nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::datapath::{Control, Datapath, Verdict};
use crate::dpdk::{BURST, Mbuf, MbufArray, Mempool, PortId, QueueId, tsc};
use crate::lb::{IfIdx, Snapshot};
use crate::stats::{Ctr, WorkerStats};
use crate::wire::{self, DropReason};

/// Flow-table buckets reclaimed per poll round.
const SWEEP_BUCKETS: usize = 64;
/// Control messages applied per poll round (bounded so a flood cannot stall rx).
const CONTROL_PER_ROUND: usize = 64;
const TX_BUF: usize = 2 * BURST;

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
}

impl Worker {
    /// Runs until `stop` is set. Returns the lcore exit code.
    pub fn run(mut self) -> i32 {
        let mut rx: MbufArray<BURST> = MbufArray::new();
        let mut tx: Vec<MbufArray<TX_BUF>> = self.ports.iter().map(|_| MbufArray::new()).collect();
        let mut drops: MbufArray<BURST> = MbufArray::new();
        let start = tsc();
        let ticks_per_ms = (self.tsc_hz / 1000).max(1);
        tracing::info!(worker = self.index, queue = self.queue.0, "worker started");
        while !self.stop.load(Ordering::Relaxed) {
            let now = ((tsc() - start) / ticks_per_ms) as u32;
            self.apply_control(&mut tx);
            let mut got = 0;
            for pi in 0..self.ports.len() {
                let n = rx.rx_burst(self.ports[pi], self.queue);
                got += n;
                for i in 0..n {
                    let Some(mut m) = rx.take(i) else { continue };
                    let verdict = match m.data_mut() {
                        Some(frame) => self.dp.process(frame, IfIdx(pi as u16), now),
                        None => {
                            self.dp.count_unparseable(0, DropReason::MultiSegment);
                            Verdict::Drop(DropReason::MultiSegment)
                        }
                    };
                    match verdict {
                        Verdict::Forward(out) => self.enqueue(&mut tx, usize::from(out.0), m),
                        Verdict::Reply => self.enqueue(&mut tx, pi, m),
                        Verdict::Consumed | Verdict::Drop(_) => {
                            if let Err(m) = drops.push(m) {
                                drops.free_all();
                                let _ = drops.push(m);
                            }
                        }
                    }
                }
                rx.reset();
            }
            for (pi, buf) in tx.iter_mut().enumerate() {
                let (sent, unsent) = buf.tx_burst(self.ports[pi], self.queue);
                self.dp.ctr.add(Ctr::TxPackets, sent as u64);
                for _ in 0..unsent {
                    self.dp.ctr.drop(DropReason::TxFull);
                }
            }
            drops.free_all();
            let t = self.dp.snap.timeouts;
            self.dp.flows.sweep(now, &t, SWEEP_BUCKETS);
            self.dp.sync_flow_counters();
            self.stats.publish(&self.dp.ctr);
            if got == 0 && !self.idle_sleep.is_zero() {
                std::thread::sleep(self.idle_sleep);
            }
        }
        self.stats.publish(&self.dp.ctr);
        tracing::info!(worker = self.index, "worker stopped");
        0
    }

    #[inline]
    fn enqueue(&mut self, tx: &mut [MbufArray<TX_BUF>], port: usize, m: Mbuf) {
        if tx[port].is_full() {
            let (sent, unsent) = tx[port].tx_burst(self.ports[port], self.queue);
            self.dp.ctr.add(Ctr::TxPackets, sent as u64);
            for _ in 0..unsent {
                self.dp.ctr.drop(DropReason::TxFull);
            }
        }
        // Cannot fail: the buffer was flushed above if it was full.
        let _ = tx[port].push(m);
    }

    fn apply_control(&mut self, tx: &mut [MbufArray<TX_BUF>]) {
        for _ in 0..CONTROL_PER_ROUND {
            let Some(msg) = self.control.pop() else { break };
            match msg {
                Control::SetNeighbour { idx, mac } => self.dp.set_neighbour(idx, mac),
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
