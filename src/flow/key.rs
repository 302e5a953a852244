//! The 5-tuple a conn is found by, and its one hash: a fixed function, so that every
//! Switchyard in front of the same servers maps a flow alike.

use std::net::Ipv4Addr;

/// A 5-tuple as seen on the wire, source first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl FlowKey {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            src_port,
            dst_port,
            proto,
        }
    }

    /// Addresses and ports (all but the protocol) as two words: a quick filter.
    #[inline(always)]
    pub fn words(&self) -> (u64, u32) {
        (
            u64::from(self.src) | (u64::from(self.dst) << 32),
            u32::from(self.src_port) | (u32::from(self.dst_port) << 16),
        )
    }

    /// Equality with all fields compared at once, without a branch per field (the conn-table
    /// lookup's key check).
    #[inline]
    pub fn same(&self, o: &FlowKey) -> bool {
        (self.src ^ o.src)
            | (self.dst ^ o.dst)
            | u32::from(self.src_port ^ o.src_port)
            | u32::from(self.dst_port ^ o.dst_port)
            | u32::from(self.proto ^ o.proto)
            == 0
    }

    /// One 64-bit hash per packet, used for the table and for Maglev. It is a fixed function
    /// (not the NIC's RSS hash, not a seeded std hasher) so that every Switchyard instance in
    /// front of the same servers sends a flow to the same backend; perf/gen.py computes it
    /// too. Two 64x64->128-bit multiplies, each folded to 64 bits (high half xor low half):
    /// the first mixes the addresses with the ports, the second spreads every bit of that
    /// over the result. About a dozen instructions: under a third of two MurmurHash3
    /// finalisers, which this replaced (callgrind, perf/README.md).
    #[inline]
    pub fn hash(&self) -> u64 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.src_port) << 32)
            | (u64::from(self.dst_port) << 16)
            | u64::from(self.proto);
        // `a ^ b'` as well: a product with a zero factor would lose the other operand.
        let h = mum(a ^ 0x9e37_79b9_7f4a_7c15, b ^ 0xff51_afd7_ed55_8ccd) ^ a ^ b.rotate_left(32);
        mum(h ^ 0xc4ce_b9fe_1a85_ec53, 0x2545_f491_4f6c_dd1d)
    }
}

/// The 128-bit product of `x` and `y`, folded to 64 bits.
#[inline]
fn mum(x: u64, y: u64) -> u64 {
    let m = u128::from(x) * u128::from(y);
    (m as u64) ^ ((m >> 64) as u64)
}

#[cfg(test)]
mod tests;
