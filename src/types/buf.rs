//! The buffer a frame is rewritten in: an mbuf on the data plane, a `Vec` in tests, so that
//! packet logic never names a DPDK type.

/// A growable/shrinkable packet buffer: an mbuf on the data plane, a `Vec` in tests.
pub trait PacketBuf {
    fn bytes(&mut self) -> &mut [u8];
    /// Sets the frame length (growing into tailroom or trimming). False if impossible.
    fn set_len(&mut self, len: usize) -> bool;
}

impl PacketBuf for Vec<u8> {
    fn bytes(&mut self) -> &mut [u8] {
        self
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.resize(len, 0);
        true
    }
}
