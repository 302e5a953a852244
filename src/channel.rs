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
}

/// Management's handles on one worker.
pub struct WorkerLink {
    pub control: Arc<ArrayQueue<Control>>,
    pub events: Arc<ArrayQueue<Event>>,
    pub retired: Arc<ArrayQueue<Arc<Snapshot>>>,
    pub stats: Arc<WorkerStats>,
    /// Flow dumps the worker answers `Control::DumpFlows` with.
    pub flows: Arc<ArrayQueue<Vec<Conn>>>,
}
