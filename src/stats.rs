//! Counters. Each worker counts into a plain array it owns and, once per poll round, stores
//! it into its cache-line-aligned [`WorkerStats`] (one writer, relaxed atomics); the
//! management core reads and sums them. No counter is ever written by two cores.
//!
//! Invariants (asserted by the golden tests, per worker and summed):
//! - `rx_packets + steered_in = forwarded + replied + consumed + steered_out + to_kernel + Σ drop_*`
//!   except `drop_tx_full`: every frame a worker handles ends in exactly one verdict (a frame
//!   handed to the conn's owner core counts as `steered_out` there and `steered_in` at the
//!   owner, which gives it its verdict). Summed over workers, steered_in = steered_out.
//! - `routed <= forwarded`, `icmp_sent <= replied` (subsets).
//! - `tx_packets + drop_tx_full = forwarded + replied + generated + to_kernel + from_kernel`:
//!   every frame handed to a tx queue (a port's, or the exception path's tap) is either taken
//!   by the device or counted as a tx drop. `to_kernel` is also a verdict in the first line.
//! - `flows_active = flows_created - flows_expired` (per worker).

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use crate::types::{DropReason, MAX_BACKENDS, MAX_GSLB_NAMES, MAX_SERVICES};

/// Counter indices. Drops follow at `DROP_BASE + reason`.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Ctr {
    // The fast lane's three are kept apart (not side by side): adjacent, the compiler turned
    // their adds into a vector add of six instructions instead of two scalar ones.
    RxPackets = 0,
    Replied,
    Forwarded,
    Consumed,
    RxBytes,
    TxPackets,
    Generated,
    GeneratedFailed,
    FlowsCreated,
    FlowsExpired,
    FlowsActive,
    /// Gauges: the conn table's capacity and its memory in bytes (set at publish).
    FlowCapacity,
    FlowTableBytes,
    EventsLost,
    SteeredOut,
    SteeredIn,
    Routed,
    IcmpSent,
    ToKernel,
    FromKernel,
    /// Nanoseconds of busy poll rounds (rounds that received something) spent in the ports'
    /// rx bursts (the driver's receive; this also holds the round's control messages, applied
    /// just before) ...
    BusyRxNs,
    /// ... deciding and rewriting what they received (pre-parse, fast lane, full path) ...
    BusyWorkNs,
    /// ... and on the rest of the round: exception-path and steered frames, tx bursts.
    BusyTxNs,
    /// HA flow sync: records this worker handed to management for the peer ...
    SyncRecords,
    /// ... records it had no empty batch for (management behind; the periodic refresh and a
    /// bulk resync make up for them) ...
    SyncDropped,
    /// ... records from the peer installed (conns, templates, deletes) ...
    SyncInstalled,
    /// ... and ones it could not install (unknown service or backend, port taken, table full).
    SyncInstallFailed,
    /// Bulk resyncs (`Control::SyncAll`) this worker completed.
    SyncBulks,
    /// GSLB: DNS queries this worker answered itself (UDP A queries for configured names) ...
    DnsAnswered,
    /// ... and the ones to our DNS addresses it handed to the kernel (TCP, other types,
    /// other names, EDNS it does not take: management answers them).
    DnsToKernel,
    /// SYN proxy: SYN-ACKs with a cookie sent for SYNs that made no conn ...
    SynCookiesSent,
    /// ... client ACKs whose cookie was valid (each made a conn and a SYN to the backend).
    SynCookiesValid,
    /// Half-open conns reclaimed to make room (a flood recycling its own conns).
    HalfOpenReclaimed,
    /// Gauges: live half-open TCP conns, whether SYN cookies are on (0/1), whether UDP's
    /// short timeout is in force (0/1).
    FlowsHalfOpen,
    SynCookiesOn,
    UdpPressure,
    /// IPv4 fragments received (first and later ones; each then has its own verdict).
    Fragments,
}

const FIXED: usize = Ctr::Fragments as usize + 1;
pub const DROP_BASE: usize = FIXED;
pub const N_COUNTERS: usize = FIXED + DropReason::COUNT;

const NAMES: [&str; FIXED] = [
    "rx_packets",
    "replied",
    "forwarded",
    "consumed",
    "rx_bytes",
    "tx_packets",
    "generated",
    "generated_failed",
    "flows_created",
    "flows_expired",
    "flows_active",
    "flow_capacity",
    "flow_table_bytes",
    "events_lost",
    "steered_out",
    "steered_in",
    "routed",
    "icmp_sent",
    "to_kernel",
    "from_kernel",
    "busy_rx_ns",
    "busy_work_ns",
    "busy_tx_ns",
    "sync_records",
    "sync_dropped",
    "sync_installed",
    "sync_install_failed",
    "sync_bulks",
    "dns_answered",
    "dns_to_kernel",
    "syn_cookies_sent",
    "syn_cookies_valid",
    "half_open_reclaimed",
    "flows_half_open",
    "syn_cookies_on",
    "udp_pressure",
    "fragments",
];

/// A counter invariant (see the top of this module) that does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    #[error("rx_packets+steered_in {handled} != verdicts {verdicts}")]
    Verdicts { handled: u64, verdicts: u64 },
    #[error(
        "tx_packets+drop_tx_full {out} != forwarded+replied+generated+to_kernel+from_kernel {handed}"
    )]
    Tx { out: u64, handed: u64 },
    #[error("flows_active != flows_created - flows_expired")]
    Flows,
}

/// A worker's own counters (plain integers, hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters(pub [u64; N_COUNTERS]);

impl Default for Counters {
    fn default() -> Self {
        Counters([0; N_COUNTERS])
    }
}

impl Counters {
    #[inline]
    pub fn inc(&mut self, c: Ctr) {
        self.0[c as usize] += 1;
    }
    #[inline]
    pub fn add(&mut self, c: Ctr, n: u64) {
        self.0[c as usize] += n;
    }
    #[inline]
    pub fn set(&mut self, c: Ctr, v: u64) {
        self.0[c as usize] = v;
    }
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.0[DROP_BASE + r as usize] += 1;
    }
    pub fn get(&self, c: Ctr) -> u64 {
        self.0[c as usize]
    }
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.0[DROP_BASE + r as usize]
    }
    pub fn sum(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += *b;
        }
    }
    /// Name -> value, drops as `drop_<reason>`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (i, n) in NAMES.iter().enumerate() {
            m.insert((*n).into(), self.0[i].into());
        }
        for r in DropReason::ALL {
            m.insert(format!("drop_{}", r.name()), self.dropped(r).into());
        }
        Value::Object(m)
    }
    /// The first invariant alone (every frame has one verdict), for callers that do not
    /// transmit (unit tests).
    pub fn check_invariants_rx(&self) -> Result<(), InvariantError> {
        let drops: u64 = DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::TxFull)
            .map(|r| self.dropped(*r))
            .sum();
        let verdicts = self.get(Ctr::Forwarded)
            + self.get(Ctr::Replied)
            + self.get(Ctr::Consumed)
            + self.get(Ctr::SteeredOut)
            + self.get(Ctr::ToKernel)
            + drops;
        let handled = self.get(Ctr::RxPackets) + self.get(Ctr::SteeredIn);
        if handled == verdicts {
            Ok(())
        } else {
            Err(InvariantError::Verdicts { handled, verdicts })
        }
    }

    /// Checks the invariants written at the top of this module.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.check_invariants_rx()?;
        let handed = self.get(Ctr::Forwarded)
            + self.get(Ctr::Replied)
            + self.get(Ctr::Generated)
            + self.get(Ctr::ToKernel)
            + self.get(Ctr::FromKernel);
        let out = self.get(Ctr::TxPackets) + self.dropped(DropReason::TxFull);
        if handed != out {
            return Err(InvariantError::Tx { out, handed });
        }
        if self.get(Ctr::FlowsActive) != self.get(Ctr::FlowsCreated) - self.get(Ctr::FlowsExpired) {
            return Err(InvariantError::Flows);
        }
        Ok(())
    }
}

/// Per service and per backend: packets, bytes (IPv4 length) and flows (new conns), as one
/// worker counted them. Plain integers owned by the worker.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceCounters {
    pub svc: Box<CounterTable<MAX_SERVICES>>,
    pub backend: Box<CounterTable<MAX_BACKENDS>>,
    /// GSLB: DNS queries answered by this worker, per name.
    pub names: Box<[u64; MAX_GSLB_NAMES]>,
}

/// Packets, bytes and flows of `N` ids, one array each: a packet adds to two words apart,
/// two scalar adds (side by side, the compiler made a vector add of them, six instructions),
/// behind one bounds check for both (the arrays' length is known).
#[derive(Clone, PartialEq, Eq)]
pub struct CounterTable<const N: usize> {
    packets: [u64; N],
    bytes: [u64; N],
    flows: [u64; N],
}

impl<const N: usize> CounterTable<N> {
    fn new() -> Box<Self> {
        Box::new(CounterTable {
            packets: [0; N],
            bytes: [0; N],
            flows: [0; N],
        })
    }

    #[inline(always)]
    fn count(&mut self, id: usize, bytes: usize) {
        if id < N {
            self.packets[id] += 1;
            self.bytes[id] += bytes as u64;
        }
    }

    #[inline]
    fn flow(&mut self, id: usize) {
        if id < N {
            self.flows[id] += 1;
        }
    }

    /// (packets, bytes, flows) of `id` (zeros past the end).
    pub fn get(&self, id: usize) -> [u64; 3] {
        if id < N {
            [self.packets[id], self.bytes[id], self.flows[id]]
        } else {
            [0; 3]
        }
    }
}

impl Default for ServiceCounters {
    fn default() -> Self {
        ServiceCounters {
            svc: CounterTable::new(),
            backend: CounterTable::new(),
            names: Box::new([0; MAX_GSLB_NAMES]),
        }
    }
}

impl ServiceCounters {
    /// A forwarded packet of a conn.
    #[inline]
    pub fn count(&mut self, service: u16, backend: u32, bytes: usize) {
        self.svc.count(usize::from(service), bytes);
        self.backend.count(backend as usize, bytes);
    }
    /// A new conn.
    #[inline]
    pub fn flow(&mut self, service: u16, backend: u32) {
        self.svc.flow(usize::from(service));
        self.backend.flow(backend as usize);
    }
}

/// Latency histogram: nanoseconds from the rx burst to the tx burst, per packet.
pub type LatencyHistogram = Histogram<u64>;

pub fn new_latency_histogram() -> Box<LatencyHistogram> {
    // 1 ns .. 10 s at 3 significant digits (about 50 KiB).
    Box::new(Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds"))
}

/// The published copy of one worker's counters, on its own cache lines.
#[repr(align(64))]
pub struct WorkerStats {
    c: [AtomicU64; N_COUNTERS],
    svc: Box<[[AtomicU64; 3]]>,
    backend: Box<[[AtomicU64; 3]]>,
    names: Box<[AtomicU64]>,
    /// Filled latency histograms, worker -> management.
    pub hist_full: ArrayQueue<Box<LatencyHistogram>>,
    /// Emptied histograms, management -> worker (so the worker never allocates one).
    pub hist_empty: ArrayQueue<Box<LatencyHistogram>>,
    /// The worker's clock (ms since it started) at its last publish: it moves as long as the
    /// worker's loop makes progress (`ctl health`).
    heartbeat: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        let arr = |n: usize| (0..n).map(|_| [const { AtomicU64::new(0) }; 3]).collect();
        // One for the worker to start with, one to swap for a full one.
        let hist_empty = ArrayQueue::new(3);
        let _ = hist_empty.push(new_latency_histogram());
        let _ = hist_empty.push(new_latency_histogram());
        WorkerStats {
            c: [const { AtomicU64::new(0) }; N_COUNTERS],
            svc: arr(MAX_SERVICES),
            backend: arr(MAX_BACKENDS),
            names: (0..MAX_GSLB_NAMES).map(|_| AtomicU64::new(0)).collect(),
            hist_full: ArrayQueue::new(2),
            hist_empty,
            heartbeat: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    /// Called by the owning worker only.
    #[inline]
    pub fn publish(&self, c: &Counters) {
        for (a, v) in self.c.iter().zip(c.0.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }
    /// The worker's loop is alive at `now` (its ms clock).
    pub fn beat(&self, now: u32) {
        self.heartbeat.store(u64::from(now), Ordering::Relaxed);
    }
    /// The worker's clock at its last beat.
    pub fn last_beat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }
    pub fn load(&self) -> Counters {
        let mut c = Counters::default();
        for (d, a) in c.0.iter_mut().zip(self.c.iter()) {
            *d = a.load(Ordering::Relaxed);
        }
        c
    }

    /// Called by the owning worker only; the first `services`/`backends`/`names` entries.
    pub fn publish_services(
        &self,
        s: &ServiceCounters,
        services: usize,
        backends: usize,
        names: usize,
    ) {
        for (a, v) in self.names.iter().zip(s.names.iter()).take(names) {
            a.store(*v, Ordering::Relaxed);
        }
        for (id, a) in self.svc.iter().enumerate().take(services) {
            for (a, v) in a.iter().zip(s.svc.get(id)) {
                a.store(v, Ordering::Relaxed);
            }
        }
        for (id, a) in self.backend.iter().enumerate().take(backends) {
            for (a, v) in a.iter().zip(s.backend.get(id)) {
                a.store(v, Ordering::Relaxed);
            }
        }
    }

    /// (packets, bytes, flows) of a service as published.
    pub fn service(&self, id: usize) -> [u64; 3] {
        self.svc
            .get(id)
            .map_or([0; 3], |a| [0, 1, 2].map(|k| a[k].load(Ordering::Relaxed)))
    }

    /// DNS queries for GSLB name `id` this worker answered, as published.
    pub fn name_answers(&self, id: usize) -> u64 {
        self.names.get(id).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// (packets, bytes, flows) of a backend as published.
    pub fn backend(&self, id: usize) -> [u64; 3] {
        self.backend
            .get(id)
            .map_or([0; 3], |a| [0, 1, 2].map(|k| a[k].load(Ordering::Relaxed)))
    }
}
