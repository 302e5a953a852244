//! The sync protocol's datagrams: a versioned header, a length-checked body, and (with a
//! key) an HMAC-SHA256 trailer. Big-endian throughout; every decode checks every length and
//! returns what was wrong, never panics.
//!
//! ```text
//! 0  "SYHA"     4   magic
//! 4  version    1   VERSION
//! 5  kind       1   Msg's kind
//! 6  flags      1   bit 0: an HMAC trailer follows the body
//! 7  0          1
//! 8  node       4   the sender's boot id (random per start)
//! 12 seq        4   the sender's datagram counter
//! 16 body len   2
//! 18 0          2
//! 20 body       ...
//!    HMAC       32  HMAC-SHA256 of bytes 0 .. 20 + body len, keyed by [ha] key
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::channel::{SyncOp, SyncRecord};

pub const MAGIC: [u8; 4] = *b"SYHA";
pub const VERSION: u8 = 1;
const HEADER: usize = 20;
const TAG: usize = 32;
/// Bytes of one record on the wire.
pub const RECORD: usize = 32;
/// Records per datagram: header, count and records, and a tag fit a 1500-byte MTU.
pub const RECORDS_PER_DATAGRAM: usize = 40;

/// The role a node reports in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It owns every floating address.
    Master,
    /// It owns none.
    Backup,
    /// It owns some (a transition, or keepalived's config lists only some).
    Partial,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
            Role::Partial => "partial",
        }
    }
    fn code(self) -> u8 {
        match self {
            Role::Master => 1,
            Role::Backup => 2,
            Role::Partial => 3,
        }
    }
    fn from_code(c: u8) -> Option<Role> {
        match c {
            1 => Some(Role::Master),
            2 => Some(Role::Backup),
            3 => Some(Role::Partial),
            _ => None,
        }
    }
}

/// One datagram's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Sent every second and on a role change: who the sender is and how it is set up.
    Hello {
        role: Role,
        ready: bool,
        workers: u16,
        nat_ports: (u16, u16),
    },
    /// "Send me everything you have" (a node that (re)started).
    BulkRequest,
    /// The bulk resync begins (records follow).
    BulkStart,
    /// The bulk resync is complete: `records` were sent in it.
    BulkEnd { records: u64 },
    /// Conn changes and templates.
    Records(Vec<SyncRecord>),
}

impl Msg {
    fn kind(&self) -> u8 {
        match self {
            Msg::Hello { .. } => 1,
            Msg::BulkRequest => 2,
            Msg::BulkStart => 3,
            Msg::BulkEnd { .. } => 4,
            Msg::Records(_) => 5,
        }
    }
}

/// What was wrong with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than its header or its stated length")]
    Truncated,
    #[error("not a Switchyard sync datagram")]
    BadMagic,
    #[error("protocol version {0}, this node speaks {VERSION}")]
    Version(u8),
    #[error("no HMAC, or a wrong one")]
    BadTag,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("malformed body")]
    Body,
}

/// A decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub node: u32,
    pub seq: u32,
    pub msg: Msg,
}

fn tag(key: &[u8], data: &[u8]) -> [u8; TAG] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn put_record(b: &mut Vec<u8>, r: &SyncRecord) {
    b.extend_from_slice(&[r.op as u8, r.proto, r.state, r.flags]);
    b.extend_from_slice(&r.client.to_be_bytes());
    b.extend_from_slice(&r.vip.to_be_bytes());
    b.extend_from_slice(&r.cport.to_be_bytes());
    b.extend_from_slice(&r.vport.to_be_bytes());
    b.extend_from_slice(&r.backend.to_be_bytes());
    b.extend_from_slice(&r.bport.to_be_bytes());
    b.extend_from_slice(&r.rev_dport.to_be_bytes());
    b.extend_from_slice(&r.rev_dst.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
}

fn get_record(b: &[u8; RECORD]) -> Option<SyncRecord> {
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some(SyncRecord {
        op: SyncOp::from_u8(b[0])?,
        proto: b[1],
        state: b[2],
        flags: b[3],
        client: u32_at(4),
        vip: u32_at(8),
        cport: u16_at(12),
        vport: u16_at(14),
        backend: u32_at(16),
        bport: u16_at(20),
        rev_dport: u16_at(22),
        rev_dst: u32_at(24),
    })
}

/// The datagram of `msg` from boot id `node`, numbered `seq`, tagged with `key` if any.
/// `Records` must hold at most [`RECORDS_PER_DATAGRAM`].
pub fn encode(node: u32, seq: u32, msg: &Msg, key: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + RECORD * RECORDS_PER_DATAGRAM);
    match msg {
        Msg::Hello {
            role,
            ready,
            workers,
            nat_ports,
        } => {
            body.extend_from_slice(&[role.code(), u8::from(*ready)]);
            body.extend_from_slice(&workers.to_be_bytes());
            body.extend_from_slice(&nat_ports.0.to_be_bytes());
            body.extend_from_slice(&nat_ports.1.to_be_bytes());
        }
        Msg::BulkRequest | Msg::BulkStart => {}
        Msg::BulkEnd { records } => body.extend_from_slice(&records.to_be_bytes()),
        Msg::Records(rs) => {
            body.extend_from_slice(&(rs.len() as u16).to_be_bytes());
            body.extend_from_slice(&[0; 2]);
            for r in rs {
                put_record(&mut body, r);
            }
        }
    }
    let mut d = Vec::with_capacity(HEADER + body.len() + TAG);
    d.extend_from_slice(&MAGIC);
    d.extend_from_slice(&[VERSION, msg.kind(), u8::from(key.is_some()), 0]);
    d.extend_from_slice(&node.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0; 2]);
    d.extend_from_slice(&body);
    if let Some(k) = key {
        let t = tag(k, &d);
        d.extend_from_slice(&t);
    }
    d
}

/// Decodes a datagram; with `key`, only one carrying the right HMAC.
pub fn decode(d: &[u8], key: Option<&[u8]>) -> Result<Datagram, DecodeError> {
    let h: &[u8; HEADER] = d
        .get(..HEADER)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    if h[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if h[4] != VERSION {
        return Err(DecodeError::Version(h[4]));
    }
    let (kind, tagged) = (h[5], h[6] & 1 != 0);
    let node = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let seq = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let end = HEADER + len;
    let want = end + if tagged { TAG } else { 0 };
    if d.len() != want {
        return Err(DecodeError::Truncated);
    }
    if let Some(k) = key {
        if !tagged {
            return Err(DecodeError::BadTag);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes any key length");
        mac.update(&d[..end]);
        mac.verify_slice(&d[end..])
            .map_err(|_| DecodeError::BadTag)?;
    }
    let body = &d[HEADER..end];
    let msg = match kind {
        1 => {
            let b: &[u8; 8] = body.try_into().map_err(|_| DecodeError::Body)?;
            Msg::Hello {
                role: Role::from_code(b[0]).ok_or(DecodeError::Body)?,
                ready: b[1] != 0,
                workers: u16::from_be_bytes([b[2], b[3]]),
                nat_ports: (
                    u16::from_be_bytes([b[4], b[5]]),
                    u16::from_be_bytes([b[6], b[7]]),
                ),
            }
        }
        2 | 3 if !body.is_empty() => return Err(DecodeError::Body),
        2 => Msg::BulkRequest,
        3 => Msg::BulkStart,
        4 => {
            let b: &[u8; 8] = body.try_into().map_err(|_| DecodeError::Body)?;
            Msg::BulkEnd {
                records: u64::from_be_bytes(*b),
            }
        }
        5 => {
            let (n, rest) = body.split_at_checked(4).ok_or(DecodeError::Body)?;
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            if n > RECORDS_PER_DATAGRAM || rest.len() != n * RECORD {
                return Err(DecodeError::Body);
            }
            let recs = rest
                .chunks_exact(RECORD)
                .map(|c| get_record(c.try_into().expect("RECORD bytes")))
                .collect::<Option<Vec<_>>>()
                .ok_or(DecodeError::Body)?;
            Msg::Records(recs)
        }
        k => return Err(DecodeError::Kind(k)),
    };
    Ok(Datagram { node, seq, msg })
}

/// Which datagrams of the peer were seen: within one boot of the peer, a datagram whose
/// sequence number was seen already, or is 64 or more behind the newest, is refused (a
/// replay from the LAN; with a key, one cannot be forged). A new boot id starts afresh.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    boot: Option<u32>,
    top: u32,
    /// Bit i: sequence number `top - i` seen.
    seen: u64,
}

impl ReplayWindow {
    /// Whether to take datagram (`boot`, `seq`); records it when so.
    pub fn accept(&mut self, boot: u32, seq: u32) -> bool {
        if self.boot != Some(boot) {
            *self = ReplayWindow {
                boot: Some(boot),
                top: seq,
                seen: 1,
            };
            return true;
        }
        let ahead = seq.wrapping_sub(self.top);
        if ahead != 0 && ahead < u32::MAX / 2 {
            self.seen = if ahead >= 64 { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.top = seq;
            return true;
        }
        let behind = self.top.wrapping_sub(seq);
        if behind >= 64 || self.seen & (1 << behind) != 0 {
            return false;
        }
        self.seen |= 1 << behind;
        true
    }
}

#[cfg(test)]
mod tests;
