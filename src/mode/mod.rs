//! Forwarding modes, one module each, all with the same shape as DPVS's `xmit_*`: given the
//! frame, the parsed packet, the chosen backend and its resolved next hop, rewrite the frame
//! in place and return the verdict. The mode is fixed per service when the snapshot is built,
//! so the data plane dispatches once per packet on the service's mode and never re-decides.

pub mod dsr;

use crate::lb::{Backend, IfIdx, Interface};
use crate::wire::Ipv4Meta;

/// Everything a mode needs to forward one packet to one backend.
pub struct Xmit<'a> {
    pub ip: &'a Ipv4Meta,
    pub backend: &'a Backend,
    /// Interface the backend is reached on.
    pub egress: &'a Interface,
    pub egress_idx: IfIdx,
    /// Backend's (or next hop's) MAC.
    pub next_hop_mac: [u8; 6],
}
