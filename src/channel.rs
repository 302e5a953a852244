//! The channel between the management core and each worker: the messages both sides speak
//! and the queues that carry them. Every queue has exactly one producer and one consumer
//! (bounded, lock-free `ArrayQueue`s); a worker reads its control queue between bursts, so
//! nothing here is on the per-packet path.
//!
//! It names the snapshot (`lb`) and the conn (`flow`) it carries, so it sits above those
//! layers and below the worker, the datapath and management, which all speak it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::flow::Conn;
use crate::lb::Snapshot;
use crate::stats::WorkerStats;
use crate::types::IfIdx;

/// Most neighbours management tracks and a worker caches (the worker's map is sized for
/// them once and never grows on the data path).
pub const NEIGH_CAPACITY: usize = 4096;

/// Worker -> management messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// ARP showed a host's MAC.
    Neighbour {
        ip: Ipv4Addr,
        mac: [u8; 6],
        iface: IfIdx,
    },
    /// A packet needs the MAC of `ip` and it is not known.
    Resolve { ip: Ipv4Addr, iface: IfIdx },
}

/// Management -> worker messages, applied between bursts.
#[derive(Debug, Clone)]
pub enum Control {
    /// Sets (or clears) a neighbour's MAC in the worker's cache.
    SetNeighbour { ip: Ipv4Addr, mac: Option<[u8; 6]> },
    /// Builds and sends an ARP request (gratuitous when `sender == target`).
    SendArp {
        iface: IfIdx,
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// Replaces the worker's snapshot (reload).
    Snapshot(Arc<Snapshot>),
    /// Copies up to this many live conns to management (diagnostics, between bursts).
    DumpFlows(usize),
    /// Conns and templates the HA peer streamed: install them (the batch goes back through
    /// `SyncLink::installed`).
    SyncInstall(Box<SyncBatch>),
    /// Stream every conn and template to the peer (its bulk resync), a slice per round.
    SyncAll,
}

/// Management's handles on one worker.
pub struct WorkerLink {
    pub control: Arc<ArrayQueue<Control>>,
    pub events: Arc<ArrayQueue<Event>>,
    pub retired: Arc<ArrayQueue<Arc<Snapshot>>>,
    pub stats: Arc<WorkerStats>,
    /// Flow dumps the worker answers `Control::DumpFlows` with.
    pub flows: Arc<ArrayQueue<Vec<Conn>>>,
    /// HA flow sync (with `[ha]`).
    pub sync: Option<SyncLink>,
}

/// What a sync record says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncOp {
    /// A conn as it is now: created, its state changed, or refreshed (the peer ages it from
    /// the moment it hears of it).
    #[default]
    Upsert = 1,
    /// The conn ended.
    Delete = 2,
    /// A persistence template: (service, masked client) -> backend.
    Persist = 3,
}

impl SyncOp {
    pub fn from_u8(v: u8) -> Option<SyncOp> {
        match v {
            1 => Some(SyncOp::Upsert),
            2 => Some(SyncOp::Delete),
            3 => Some(SyncOp::Persist),
            _ => None,
        }
    }
}

/// One conn change (or persistence template) a worker streams to the HA peer, or installs
/// from it. It names the service by its VIP, port and protocol and the backend by address and
/// port: ids are per node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncRecord {
    pub op: SyncOp,
    pub proto: u8,
    /// The conn's state (`FlowState as u8`); a template's persistence netmask.
    pub state: u8,
    /// The conn's `flow::flags` (`REVERSE`, `SNAT`).
    pub flags: u8,
    /// The forward tuple: client -> VIP (a template: the masked client address).
    pub client: u32,
    pub vip: u32,
    pub cport: u16,
    pub vport: u16,
    /// The backend's address and port.
    pub backend: u32,
    pub bport: u16,
    /// Where the backend side's packets go (NAT conns): SNAT address and port (proxy), the
    /// client (gateway).
    pub rev_dport: u16,
    pub rev_dst: u32,
}

/// Records per batch.
pub const SYNC_BATCH: usize = 256;

/// A batch of sync records, recycled between a worker and management (never allocated or
/// freed by the worker).
#[derive(Debug, Clone)]
pub struct SyncBatch {
    pub len: usize,
    /// When the first record went in (the worker's milliseconds).
    pub since: u32,
    pub recs: [SyncRecord; SYNC_BATCH],
}

impl SyncBatch {
    pub fn new() -> Box<SyncBatch> {
        Box::new(SyncBatch {
            len: 0,
            since: 0,
            recs: [SyncRecord::default(); SYNC_BATCH],
        })
    }

    pub fn records(&self) -> &[SyncRecord] {
        &self.recs[..self.len]
    }

    /// Appends `r`; false when full.
    pub fn push(&mut self, r: SyncRecord) -> bool {
        match self.recs.get_mut(self.len) {
            Some(slot) => {
                *slot = r;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// The queues of HA flow sync between management and one worker.
#[derive(Clone)]
pub struct SyncLink {
    /// Worker -> management: batches of the worker's conn changes, to send.
    pub full: Arc<ArrayQueue<Box<SyncBatch>>>,
    /// Management -> worker: empty batches to fill.
    pub empty: Arc<ArrayQueue<Box<SyncBatch>>>,
    /// Worker -> management: install batches (`Control::SyncInstall`) applied, to reuse.
    pub installed: Arc<ArrayQueue<Box<SyncBatch>>>,
}

impl SyncLink {
    /// The queues, with `batches` empty batches for the worker to fill.
    pub fn new(batches: usize) -> SyncLink {
        let l = SyncLink {
            full: Arc::new(ArrayQueue::new(batches)),
            empty: Arc::new(ArrayQueue::new(batches)),
            installed: Arc::new(ArrayQueue::new(1024)),
        };
        for _ in 0..batches {
            let _ = l.empty.push(SyncBatch::new());
        }
        l
    }
}
