//! Forwarding modes, one module each, side by side with one signature as DPVS's `xmit_*`.
//! The mode is fixed per service when the snapshot is built; the data plane dispatches once
//! per packet on the service's mode and never re-decides.
//!
//! Each mode owns what differs between modes:
//! - `open`: what a new conn needs beyond its backend: the reverse tuple (what the backend
//!   side sends back, if it comes back through us at all) and, in proxy mode, a SNAT address
//!   and port (`snat`);
//! - `xmit(frame, &Xmit) -> Verdict`: the rewrite of one packet of a conn in one direction;
//! - `icmp_rewrites`: how an ICMP error about a packet of the conn is translated;
//! - `close`: what a conn gives back when it ends (proxy: its SNAT port).
//!
//! The two NAT modes share their rewrite (`nat`): a forward packet takes the reverse tuple,
//! mirrored; a reverse packet takes the forward tuple, mirrored.

pub mod dsr;
pub mod gateway;
mod nat;
pub mod proxy;
pub mod snat;

pub use nat::{nat_endpoints, nat_rewrite, nat_translate};
use snat::SnatPortPool;

use crate::config::Mode;
use crate::flow::{Conn, Dir};
use crate::lb::{Backend, Snapshot};
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::Rewrite;

/// Everything a mode needs to send one packet of one conn.
pub struct Xmit<'a> {
    pub conn: &'a Conn,
    pub dir: Dir,
    /// IPv4 header offset and end (the frame may carry Ethernet padding after `end`).
    pub l3: usize,
    pub end: usize,
    /// False for later fragments: no L4 header to translate.
    pub has_l4: bool,
    pub egress: IfIdx,
    pub egress_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    /// The conn's backend (address, port): where its reverse tuple starts.
    pub backend: (u32, u16),
}

/// Completes a new conn (as `Conn::new` made it, for `backend`) of a service in `mode`.
/// `flow_hash` spreads proxy conns over the SNAT addresses.
pub fn open(
    mode: Mode,
    conn: Conn,
    backend: &Backend,
    snap: &Snapshot,
    snat: &mut SnatPortPool,
    flow_hash: u64,
) -> Result<Conn, DropReason> {
    match mode {
        Mode::Dsr => Ok(dsr::open(conn)),
        Mode::Gateway => Ok(gateway::open(conn, backend)),
        Mode::Proxy => proxy::open(conn, backend, snap, snat, flow_hash),
    }
}

/// Gives back what an ended conn held in its mode.
#[inline]
pub fn close(conn: &Conn, snat: &mut SnatPortPool) {
    proxy::close(conn, snat);
}

/// Rewrites one packet of `x.conn` in place for a service in `mode`.
#[inline]
pub fn xmit(mode: Mode, frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    match mode {
        Mode::Dsr => dsr::xmit(frame, x),
        Mode::Proxy => proxy::xmit(frame, x),
        Mode::Gateway => gateway::xmit(frame, x),
    }
}

/// How an ICMP error about a packet of `conn` (whose backend is at `backend`), travelling
/// in `dir`, is translated: (outer header, quoted packet); `None` when the mode leaves it as
/// it is (DSR).
pub fn icmp_rewrites(
    mode: Mode,
    conn: &Conn,
    backend: (u32, u16),
    dir: Dir,
) -> Option<(Rewrite, Rewrite)> {
    match mode {
        Mode::Dsr => None,
        Mode::Proxy => Some(proxy::icmp_rewrites(conn, backend, dir)),
        Mode::Gateway => Some(gateway::icmp_rewrites(conn, backend, dir)),
    }
}
