//! The ground floor: the vocabulary every other module speaks, importing nothing from the
//! crate. Ids that cross module boundaries and the limits of the tables they index
//! ([`IfIdx`], [`BackendId`], [`SnatIdx`]), address types ([`MacAddr`], [`Ipv4Cidr`]), what
//! becomes of a frame ([`Verdict`], [`DropReason`]), the buffer a frame is rewritten in
//! ([`PacketBuf`]) and the fixed hash mixer ([`fmix64`]).

mod addr;
mod buf;
mod hash;
mod ids;
mod verdict;

pub use addr::{AddrParseError, Ipv4Cidr, MacAddr};
pub use buf::PacketBuf;
pub use hash::fmix64;
pub use ids::{BackendId, IfIdx, MAX_BACKENDS, MAX_GSLB_NAMES, MAX_SERVICES, SnatIdx};
pub use verdict::{DropReason, Verdict};
