//! TCP and UDP headers: the ports and the TCP flags the conn table keys and tracks.

use smoltcp::wire::TcpPacket;

use super::ipv4::Ipv4Meta;
use super::{PROTO_TCP, PROTO_UDP};
use crate::types::DropReason;

/// TCP flags the flow state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Ports (and TCP flags) of the L4 header in `frame[l4..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Meta {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: TcpFlags,
}

pub fn parse_l4(frame: &[u8], ip: &Ipv4Meta) -> Result<L4Meta, DropReason> {
    let seg = &frame[ip.l4..ip.end];
    match ip.proto {
        PROTO_TCP => {
            let tcp = TcpPacket::new_checked(seg).map_err(|_| DropReason::TruncatedL4)?;
            if usize::from(tcp.header_len()) < 20 {
                return Err(DropReason::TruncatedL4);
            }
            Ok(L4Meta {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                tcp: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
            })
        }
        PROTO_UDP => {
            if seg.len() < 8 {
                return Err(DropReason::TruncatedL4);
            }
            Ok(L4Meta {
                src_port: u16::from_be_bytes([seg[0], seg[1]]),
                dst_port: u16::from_be_bytes([seg[2], seg[3]]),
                tcp: TcpFlags::default(),
            })
        }
        _ => Ok(L4Meta {
            src_port: 0,
            dst_port: 0,
            tcp: TcpFlags::default(),
        }),
    }
}
