//! DNS queries the workers answer in place (GSLB): the query checked just enough to know it
//! is an ordinary one (one question, an uncompressed name, class IN, at most an EDNS(0) OPT
//! record), and the frame turned into the answer where it lies.
//!
//! This is the one place DNS is read by hand, because a worker may not allocate per packet
//! and a DNS library's message parser does; anything unusual is left to the management core,
//! which parses and answers with hickory-proto, and the answers spliced here are built with
//! hickory-proto too (`gslb`).

use smoltcp::wire::{EthernetFrame, Ipv4Packet, UdpPacket};

use super::eth::set_macs;
use super::ipv4::Ipv4Meta;
use crate::types::PacketBuf;

pub const DNS_PORT: u16 = 53;
/// The UDP payload size the workers' answers offer in their OPT record (and the most they
/// send): the DNS flag day's 1232.
pub const EDNS_PAYLOAD: u16 = 1232;
const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
pub const TYPE_A: u16 = 1;
/// Bytes of the OPT record the workers append (root name, type, class, TTL, empty RDATA).
const OPT_LEN: usize = 11;

/// What the workers need of a query they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsQuery {
    pub id: u16,
    /// Recursion desired (copied into the answer).
    pub rd: bool,
    pub qtype: u16,
    /// Offset in the message just past the question: where the answer goes.
    pub question_end: usize,
    /// The query's EDNS(0) UDP payload size (at least 512), if it had an OPT record.
    pub edns: Option<u16>,
}

/// Why a query is not one for the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsParse {
    /// Not a DNS query at all: dropped and counted.
    Malformed,
    /// A query, but an unusual one (other opcode, several questions, a compressed question,
    /// another class, records besides one OPT, EDNS version > 0): for the management core.
    Other,
}

fn rd16(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// Reads the query message `m` (the UDP payload); the question's name goes into `name`,
/// lowercase, in wire form (length-prefixed labels and the root's 0), and its length is
/// returned with the query.
pub fn parse_dns_query(m: &[u8], name: &mut [u8; 255]) -> Result<(DnsQuery, usize), DnsParse> {
    if m.len() < HEADER {
        return Err(DnsParse::Malformed);
    }
    let flags = rd16(m, 2).ok_or(DnsParse::Malformed)?;
    if flags & 0x8000 != 0 {
        return Err(DnsParse::Malformed); // a response
    }
    let opcode = (flags >> 11) & 0xf;
    let counts = [4, 6, 8, 10].map(|at| rd16(m, at).unwrap_or(0));
    if opcode != 0 || flags & 0x0200 != 0 || counts[0] != 1 || counts[1] != 0 || counts[2] != 0 {
        return Err(DnsParse::Other);
    }
    if counts[3] > 1 {
        return Err(DnsParse::Other);
    }
    // The question's name, uncompressed.
    let mut at = HEADER;
    let mut n = 0usize;
    loop {
        let len = usize::from(*m.get(at).ok_or(DnsParse::Malformed)?);
        if len & 0xc0 == 0xc0 {
            return Err(DnsParse::Other);
        }
        if len > 63 {
            return Err(DnsParse::Malformed);
        }
        if n + 1 + len > name.len() {
            return Err(DnsParse::Malformed);
        }
        let label = m.get(at + 1..at + 1 + len).ok_or(DnsParse::Malformed)?;
        name[n] = len as u8;
        for (d, s) in name[n + 1..n + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += 1 + len;
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qtype = rd16(m, at).ok_or(DnsParse::Malformed)?;
    let qclass = rd16(m, at + 2).ok_or(DnsParse::Malformed)?;
    let question_end = at + 4;
    if qclass != CLASS_IN {
        return Err(DnsParse::Other);
    }
    let mut edns = None;
    if counts[3] == 1 {
        // The one additional record must be an OPT of EDNS version 0 ending the message.
        let r = question_end;
        if m.get(r) != Some(&0) || rd16(m, r + 1) != Some(TYPE_OPT) {
            return Err(DnsParse::Other);
        }
        let size = rd16(m, r + 3).ok_or(DnsParse::Malformed)?;
        let version = *m.get(r + 6).ok_or(DnsParse::Malformed)?;
        let rdlen = usize::from(rd16(m, r + 9).ok_or(DnsParse::Malformed)?);
        if r + OPT_LEN + rdlen > m.len() {
            return Err(DnsParse::Malformed);
        }
        if version != 0 || r + OPT_LEN + rdlen != m.len() {
            return Err(DnsParse::Other);
        }
        edns = Some(size.max(512));
    } else if question_end != m.len() {
        return Err(DnsParse::Other);
    }
    Ok((
        DnsQuery {
            id: rd16(m, 0).unwrap_or(0),
            rd: flags & 0x0100 != 0,
            qtype,
            question_end,
            edns,
        },
        n,
    ))
}

/// Turns the query frame into its answer in place: the header (a response, authoritative,
/// `rcode`, `ancount` answers), the question as asked, `tail` (the answer section), an OPT
/// record when the query had one; UDP ports, IPv4 addresses and MACs swapped, lengths and
/// checksums redone. Returns false, leaving the frame as it was, when the answer would be
/// larger than the client takes (512 bytes, or its EDNS size up to [`EDNS_PAYLOAD`]) or the
/// buffer can hold.
#[allow(clippy::too_many_arguments)]
pub fn dns_answer_in_place<P: PacketBuf + ?Sized>(
    p: &mut P,
    l3: usize,
    ip: &Ipv4Meta,
    q: &DnsQuery,
    our_mac: [u8; 6],
    rcode: u8,
    ancount: u16,
    tail: &[u8],
) -> bool {
    let dns = ip.l4 + 8;
    let opt = if q.edns.is_some() { OPT_LEN } else { 0 };
    let len = q.question_end + tail.len() + opt;
    let limit = q.edns.map_or(512, |s| s.min(EDNS_PAYLOAD));
    if len > usize::from(limit) || !p.set_len(dns + len) {
        return false;
    }
    let frame = p.bytes();
    let m = &mut frame[dns..];
    let mut flags = 0x8000 | 0x0400 | u16::from(rcode & 0xf);
    if q.rd {
        flags |= 0x0100;
    }
    m[2..4].copy_from_slice(&flags.to_be_bytes());
    m[4..6].copy_from_slice(&1u16.to_be_bytes());
    m[6..8].copy_from_slice(&ancount.to_be_bytes());
    m[8..10].copy_from_slice(&0u16.to_be_bytes());
    m[10..12].copy_from_slice(&(u16::from(q.edns.is_some())).to_be_bytes());
    m[q.question_end..q.question_end + tail.len()].copy_from_slice(tail);
    if q.edns.is_some() {
        let o = &mut m[q.question_end + tail.len()..len];
        o[0] = 0;
        o[1..3].copy_from_slice(&TYPE_OPT.to_be_bytes());
        o[3..5].copy_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        o[5..11].fill(0); // extended rcode, version 0, no flags; no options
    }
    let peer_mac = EthernetFrame::new_unchecked(&frame[..]).src_addr().0;
    set_macs(frame, our_mac, peer_mac);
    {
        let mut u = UdpPacket::new_unchecked(&mut frame[ip.l4..]);
        let (sport, dport) = (u.src_port(), u.dst_port());
        u.set_src_port(dport);
        u.set_dst_port(sport);
        u.set_len((8 + len) as u16);
        u.fill_checksum(&ip.dst.into(), &ip.src.into());
    }
    let mut pkt = Ipv4Packet::new_unchecked(&mut frame[l3..]);
    pkt.set_total_len((ip.l4 - l3 + 8 + len) as u16);
    pkt.set_src_addr(ip.dst);
    pkt.set_dst_addr(ip.src);
    pkt.set_hop_limit(64);
    pkt.clear_flags();
    pkt.set_dont_frag(true);
    pkt.fill_checksum();
    true
}

#[cfg(test)]
mod tests {
    //! Queries read (the good ones, every way of being cut short or unusual, and a fixed
    //! pseudo-random stream of bytes and mutations), and answers made in place, read back
    //! with hickory-proto and smoltcp as independent oracles.

    use std::net::Ipv4Addr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
    use smoltcp::wire::{IpAddress, Ipv4Packet, UdpPacket};

    use super::*;
    use crate::testkit::frames::xorshift;
    use crate::testkit::{LB_MAC, ROUTER_MAC};
    use crate::wire::{ETH_HDR, PROTO_UDP, parse_ipv4};

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 9, 2);
    const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 53);
    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x53];
    const VIPS: [Ipv4Addr; 3] = [
        Ipv4Addr::new(10, 20, 0, 100),
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(198, 51, 100, 1),
    ];
    const NAME: &str = "www.g.example.com";
    /// Offset of the question's end in a query for [`NAME`].
    const QEND: usize = 12 + 19 + 4;

    /// A query for `name` (as written, case kept) of `rtype`, id 0xbeef, RD set, with an
    /// OPT record offering `edns` if given; made by hickory-proto.
    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0xbeef, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        let n = Name::from_ascii(format!("{name}.")).unwrap();
        m.add_query(Query::query(n, rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// A query by hand: header `flags` and the four `counts`, then `body` (question and
    /// records as given).
    fn raw(flags: u16, counts: [u16; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend(flags.to_be_bytes());
        for c in counts {
            m.extend(c.to_be_bytes());
        }
        m.extend(body);
        m
    }

    /// `name`'s question (wire name, type, class).
    fn question(name: &[u8], qtype: u16, qclass: u16) -> Vec<u8> {
        let mut q = name.to_vec();
        q.extend(qtype.to_be_bytes());
        q.extend(qclass.to_be_bytes());
        q
    }

    /// An OPT record: payload `size`, EDNS `version`, `rdata` (its options).
    fn opt(size: u16, version: u8, rdata: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41];
        o.extend(size.to_be_bytes());
        o.extend([0, version, 0, 0]);
        o.extend((rdata.len() as u16).to_be_bytes());
        o.extend(rdata);
        o
    }

    fn parse(m: &[u8]) -> Result<(DnsQuery, Vec<u8>), DnsParse> {
        let mut name = [0u8; 255];
        parse_dns_query(m, &mut name).map(|(q, n)| (q, name[..n].to_vec()))
    }

    /// Ethernet (router -> us, 802.1Q tag `vlan` if given) + IPv4 (with `ip_opts` bytes of
    /// NOP options) + UDP `client`:40053 -> 10.20.0.53:53 carrying `payload`, checksums valid.
    fn frame(client: Ipv4Addr, vlan: Option<u16>, ip_opts: usize, payload: &[u8]) -> Vec<u8> {
        let l3 = if vlan.is_some() { 18 } else { ETH_HDR };
        let ihl = 20 + ip_opts;
        let mut f = vec![0u8; l3 + ihl + 8 + payload.len()];
        f[0..6].copy_from_slice(&LB_MAC);
        f[6..12].copy_from_slice(&ROUTER_MAC);
        if let Some(v) = vlan {
            f[12..14].copy_from_slice(&[0x81, 0x00]);
            f[14..16].copy_from_slice(&v.to_be_bytes());
        }
        f[l3 - 2..l3].copy_from_slice(&[0x08, 0x00]);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[l3..]);
            ip.set_version(4);
            ip.set_header_len(ihl as u8);
            ip.set_total_len((ihl + 8 + payload.len()) as u16);
            ip.set_ident(0x4242);
            ip.set_hop_limit(57);
            ip.set_next_header(PROTO_UDP.into());
            ip.set_src_addr(client);
            ip.set_dst_addr(DNS_ADDR);
        }
        f[l3 + 20..l3 + ihl].fill(1);
        Ipv4Packet::new_unchecked(&mut f[l3..]).fill_checksum();
        let mut u = UdpPacket::new_unchecked(&mut f[l3 + ihl..]);
        u.set_src_port(40053);
        u.set_dst_port(DNS_PORT);
        u.set_len((8 + payload.len()) as u16);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(&IpAddress::Ipv4(client), &IpAddress::Ipv4(DNS_ADDR));
        f
    }

    /// What a GSLB name's answers for [`NAME`] look like (as `gslb` builds them, with
    /// hickory-proto, TTL 42): answer `i` is `VIPS[i]` alone, the last all of them; each the
    /// addresses and the wire form of the answer section after the question.
    fn gslb_answers() -> Vec<(Vec<Ipv4Addr>, Vec<u8>)> {
        let mut sets: Vec<Vec<Ipv4Addr>> = VIPS.iter().map(|v| vec![*v]).collect();
        sets.push(VIPS.to_vec());
        sets.into_iter()
            .map(|vips| {
                let n = Name::from_ascii(format!("{NAME}.")).unwrap();
                let mut m = Message::response(0, OpCode::Query);
                m.add_query(Query::query(n.clone(), RecordType::A));
                for v in &vips {
                    m.add_answer(hickory_proto::rr::Record::from_rdata(
                        n.clone(),
                        42,
                        RData::A((*v).into()),
                    ));
                }
                let bytes = m.to_vec().unwrap();
                let tail = bytes[QEND..].to_vec();
                (vips, tail)
            })
            .collect()
    }

    fn records(a: &(Vec<Ipv4Addr>, Vec<u8>)) -> (&[Ipv4Addr], &[u8]) {
        (&a.0, &a.1)
    }

    /// `name` in lowercase DNS wire form.
    fn wire_name(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.') {
            v.push(l.len() as u8);
            v.extend(l.bytes().map(|b| b.to_ascii_lowercase()));
        }
        v.push(0);
        v
    }

    /// The query in `f` (a frame from [`frame`]) answered in place with `rcode`, `ancount`
    /// and `tail`; the frame's IPv4 offset `l3`.
    fn answer(f: &mut Vec<u8>, l3: usize, rcode: u8, ancount: u16, tail: &[u8]) -> bool {
        let ip = parse_ipv4(f, l3).unwrap();
        let (q, _) = parse(&f[ip.l4 + 8..ip.end]).unwrap();
        dns_answer_in_place(f, l3, &ip, &q, OUR_MAC, rcode, ancount, tail)
    }

    /// Checks an answer frame from `client` below the DNS layer (addresses, ports, MACs,
    /// lengths, checksums by smoltcp) and returns its DNS message.
    fn check_frame(f: &[u8], l3: usize, client: Ipv4Addr) -> Message {
        assert_eq!(f[0..6], ROUTER_MAC, "to the query's sender");
        assert_eq!(f[6..12], OUR_MAC);
        let ip = Ipv4Packet::new_checked(&f[l3..]).unwrap();
        assert!(ip.verify_checksum(), "IPv4 checksum");
        assert_eq!(ip.src_addr(), DNS_ADDR);
        assert_eq!(ip.dst_addr(), client);
        assert_eq!(usize::from(ip.total_len()), f.len() - l3, "no trailer");
        assert_eq!(ip.hop_limit(), 64);
        assert!(ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0);
        let meta = parse_ipv4(f, l3).unwrap();
        let u = UdpPacket::new_checked(&f[meta.l4..]).unwrap();
        assert!(
            u.verify_checksum(&IpAddress::Ipv4(DNS_ADDR), &IpAddress::Ipv4(client)),
            "UDP checksum"
        );
        assert_eq!((u.src_port(), u.dst_port()), (DNS_PORT, 40053));
        assert_eq!(usize::from(u.len()), f.len() - meta.l4);
        Message::from_vec(u.payload()).unwrap_or_else(|e| panic!("answer unreadable: {e}"))
    }

    fn a_records(m: &Message, ttl: u32) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .map(|r| {
                assert_eq!(r.ttl, ttl);
                assert_eq!(r.dns_class, DNSClass::IN);
                assert_eq!(r.name, m.queries[0].name().clone());
                match &r.data {
                    RData::A(a) => a.0,
                    other => panic!("not A: {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn an_ordinary_query_is_read_with_its_name_lowercased() {
        let m = query("WWW.G.Example.com", RecordType::A, None);
        let (q, name) = parse(&m).unwrap();
        assert_eq!(
            q,
            DnsQuery {
                id: 0xbeef,
                rd: true,
                qtype: TYPE_A,
                question_end: QEND,
                edns: None,
            }
        );
        assert_eq!(name, wire_name(NAME));
        // Other types are read too (the datapath decides what to do with them).
        let m = query(NAME, RecordType::AAAA, None);
        assert_eq!(parse(&m).unwrap().0.qtype, 28);
        // RD clear.
        let m = raw(0, [1, 0, 0, 0], &question(&wire_name(NAME), 1, 1));
        let (q, _) = parse(&m).unwrap();
        assert_eq!((q.id, q.rd, q.question_end), (0x1234, false, QEND));
    }

    #[test]
    fn a_query_with_an_edns_opt_record_is_read_with_its_payload_size() {
        let m = query(NAME, RecordType::A, Some(4096));
        let (q, name) = parse(&m).unwrap();
        assert_eq!((q.edns, q.question_end), (Some(4096), QEND));
        assert_eq!(name, wire_name(NAME));
        let q1 = question(&wire_name(NAME), 1, 1);
        // A size below 512 means 512 (RFC 6891 6.2.5).
        let m = raw(0, [1, 0, 0, 1], &[&q1[..], &opt(100, 0, &[])].concat());
        assert_eq!(parse(&m).unwrap().0.edns, Some(512));
        // Options (here a cookie) are fine.
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let m = raw(0, [1, 0, 0, 1], &[&q1[..], &opt(1232, 0, &cookie)].concat());
        assert_eq!(parse(&m).unwrap().0.edns, Some(1232));
    }

    #[test]
    fn a_query_cut_short_anywhere_is_malformed() {
        for m in [
            query(NAME, RecordType::A, None),
            query(NAME, RecordType::A, Some(1232)),
        ] {
            for cut in 0..m.len() {
                let r = parse(&m[..cut]);
                if cut < QEND {
                    assert_eq!(r, Err(DnsParse::Malformed), "cut at {cut}");
                } else {
                    // Into the OPT record: not answered either way.
                    assert!(r.is_err(), "cut at {cut}: {r:?}");
                }
            }
        }
        // Cut inside the OPT record past its type: malformed too.
        let m = query(NAME, RecordType::A, Some(1232));
        for cut in QEND + 3..m.len() {
            assert_eq!(parse(&m[..cut]), Err(DnsParse::Malformed), "cut at {cut}");
        }
    }

    #[test]
    fn a_compressed_question_is_for_the_kernel_side() {
        // The whole name a pointer, a pointer after a label, and pointers to themselves or
        // each other (loops): never followed.
        for name in [
            &[0xc0, 0x0c][..],
            &[3, b'w', b'w', b'w', 0xc0, 0x0c],
            &[3, b'w', b'w', b'w', 0xc0, 0x10],
            &[0xff, 0xff],
        ] {
            let m = raw(0x0100, [1, 0, 0, 0], &question(name, 1, 1));
            assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Other), "{name:?}");
            // Even cut right after the pointer.
            let m = raw(0x0100, [1, 0, 0, 0], name);
            assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Other), "{name:?}");
        }
    }

    #[test]
    fn extended_label_types_and_long_labels_are_malformed() {
        // Each as a label of that many bytes, and of its low 6 bits' many (what a reader
        // that took the type bits for length, or masked them off, would accept).
        for first in [64u8, 65, 0x40 | 5, 0x7f, 0x80, 0x80 | 0x3f, 0xbf] {
            for len in [usize::from(first), usize::from(first & 0x3f)] {
                let mut name = vec![first];
                name.extend(std::iter::repeat_n(b'a', len));
                name.push(0);
                let m = raw(0, [1, 0, 0, 0], &question(&name, 1, 1));
                assert_eq!(
                    parse(&m).map(|_| ()),
                    Err(DnsParse::Malformed),
                    "{first:#x} with {len} bytes"
                );
            }
        }
        let mut name = vec![63];
        name.extend([b'A'; 63]);
        name.push(0);
        let m = raw(0, [1, 0, 0, 0], &question(&name, 1, 1));
        let (_, got) = parse(&m).unwrap();
        assert_eq!(
            got[1..64],
            [b'a'; 63],
            "a 63-byte label is fine, lowercased"
        );
    }

    /// A wire name of `labels` labels of the given lengths and the root.
    fn name_of(labels: &[usize]) -> Vec<u8> {
        let mut n = Vec::new();
        for &l in labels {
            n.push(l as u8);
            n.extend(std::iter::repeat_n(b'x', l));
        }
        n.push(0);
        n
    }

    #[test]
    fn names_longer_than_255_bytes_are_malformed() {
        let max = name_of(&[63, 63, 63, 61]);
        assert_eq!(max.len(), 255);
        let m = raw(0, [1, 0, 0, 0], &question(&max, 1, 1));
        let (q, got) = parse(&m).unwrap();
        assert_eq!((got, q.question_end), (max, 12 + 255 + 4));
        for labels in [
            &[63, 63, 63, 62][..],
            &[63, 63, 63, 63],
            &[63; 8],
            &[1; 128],
        ] {
            let long = name_of(labels);
            assert!(long.len() > 255);
            let m = raw(0, [1, 0, 0, 0], &question(&long, 1, 1));
            assert_eq!(
                parse(&m).map(|_| ()),
                Err(DnsParse::Malformed),
                "{}",
                long.len()
            );
        }
        // Hickory agrees the 255-byte one is a name.
        let mut m = raw(
            0,
            [1, 0, 0, 0],
            &question(&name_of(&[63, 63, 63, 61]), 1, 1),
        );
        assert_eq!(Message::from_vec(&m).unwrap().queries.len(), 1);
        m.truncate(m.len() - 1);
        assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Malformed));
    }

    #[test]
    fn a_response_is_malformed_whatever_else_it_holds() {
        let q1 = question(&wire_name(NAME), 1, 1);
        for (flags, counts) in [
            (0x8000, [1, 0, 0, 0]),
            (0x8400, [1, 1, 0, 0]),
            (0x8100 | 0x2800, [65535, 65535, 65535, 65535]),
            (0xffff, [0, 0, 0, 0]),
        ] {
            let m = raw(flags, counts, &q1);
            assert_eq!(
                parse(&m).map(|_| ()),
                Err(DnsParse::Malformed),
                "{flags:#x}"
            );
        }
        let mut m = query(NAME, RecordType::A, None);
        m[2] |= 0x80;
        assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Malformed));
    }

    #[test]
    fn unusual_queries_are_for_the_kernel_side() {
        let name = wire_name(NAME);
        let q1 = question(&name, 1, 1);
        let with_opt = |o: Vec<u8>| [&q1[..], &o].concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("opcode notify", raw(4 << 11, [1, 0, 0, 0], &q1)),
            ("opcode status", raw(2 << 11, [1, 0, 0, 0], &q1)),
            ("truncated flag", raw(0x0200, [1, 0, 0, 0], &q1)),
            ("no question", raw(0, [0, 0, 0, 0], &[])),
            (
                "two questions",
                raw(0, [2, 0, 0, 0], &[&q1[..], &q1].concat()),
            ),
            ("65535 questions", raw(0, [65535, 0, 0, 0], &q1)),
            ("an answer", raw(0, [1, 1, 0, 0], &q1)),
            ("an authority", raw(0, [1, 0, 1, 0], &q1)),
            ("65535 additionals", raw(0, [1, 0, 0, 65535], &q1)),
            (
                "two additionals",
                raw(0, [1, 0, 0, 2], &with_opt(opt(512, 0, &[]))),
            ),
            ("class CH", raw(0, [1, 0, 0, 0], &question(&name, 16, 3))),
            ("class ANY", raw(0, [1, 0, 0, 0], &question(&name, 1, 255))),
            (
                "EDNS version 1",
                raw(0, [1, 0, 0, 1], &with_opt(opt(512, 1, &[]))),
            ),
            (
                "trailing bytes",
                raw(0, [1, 0, 0, 0], &[&q1[..], &[0]].concat()),
            ),
            (
                "bytes after the OPT",
                raw(
                    0,
                    [1, 0, 0, 1],
                    &[&with_opt(opt(512, 0, &[]))[..], &[0]].concat(),
                ),
            ),
            ("additional count, no record", raw(0, [1, 0, 0, 1], &q1)),
            ("additional not an OPT", {
                let mut a = vec![0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4];
                a.splice(0..0, q1.iter().copied());
                raw(0, [1, 0, 0, 1], &a)
            }),
            ("OPT with a name", {
                let mut o = opt(512, 0, &[]);
                o.splice(0..1, [1, b'x', 0]);
                raw(0, [1, 0, 0, 1], &with_opt(o))
            }),
        ];
        for (what, m) in cases {
            assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Other), "{what}");
        }
        // An OPT record whose options run past the end is not a query.
        let mut o = opt(512, 0, &[0; 8]);
        o.truncate(o.len() - 2);
        let m = raw(0, [1, 0, 0, 1], &with_opt(o));
        assert_eq!(parse(&m).map(|_| ()), Err(DnsParse::Malformed));
    }

    /// What holds of every query read: the name is well formed and lowercase, the offsets
    /// fit the message, the header's fields are the message's.
    fn check_read(m: &[u8], q: &DnsQuery, name: &[u8]) {
        let n = name.len();
        assert!((1..=255).contains(&n));
        let mut at = 0;
        while name[at] != 0 {
            assert!(name[at] <= 63);
            at += 1 + usize::from(name[at]);
        }
        assert_eq!(at, n - 1, "one root label, at the end");
        assert!(!name.iter().any(u8::is_ascii_uppercase));
        assert_eq!(m[12..12 + n].to_ascii_lowercase(), name);
        assert_eq!(q.question_end, 12 + n + 4);
        assert_eq!(q.id, u16::from_be_bytes([m[0], m[1]]));
        assert_eq!(q.qtype, u16::from_be_bytes([m[12 + n], m[13 + n]]));
        assert_eq!(q.rd, m[2] & 1 == 1);
        assert_eq!(m[2] & 0xfa, 0, "a plain query: QR, opcode and TC clear");
        match q.edns {
            None => assert_eq!(q.question_end, m.len()),
            Some(s) => {
                assert!(s >= 512);
                assert!(q.question_end + OPT_LEN <= m.len());
            }
        }
    }

    /// Where hickory-proto reads the message as well, it reads the same query.
    fn agrees_with_hickory(m: &[u8], q: &DnsQuery, name: &[u8]) -> bool {
        let Ok(h) = Message::from_vec(m) else {
            return false;
        };
        assert_eq!(h.metadata.id, q.id);
        assert_eq!(h.metadata.recursion_desired, q.rd);
        assert_eq!(h.queries.len(), 1);
        assert_eq!(u16::from(h.queries[0].query_type()), q.qtype);
        let mut wire = Vec::new();
        for l in h.queries[0].name().iter() {
            wire.push(l.len() as u8);
            wire.extend(l.to_ascii_lowercase());
        }
        wire.push(0);
        assert_eq!(wire, name);
        assert_eq!(h.edns.as_ref().map(|e| e.max_payload().max(512)), q.edns);
        true
    }

    #[test]
    fn random_bytes_never_panic_and_what_is_read_is_consistent() {
        let mut next = xorshift(0xd15_0001);
        let mut name = [0u8; 255];
        let (mut read, mut with_opt) = (0, 0);
        for i in 0..200_000u32 {
            let mut m: Vec<u8> = if i.is_multiple_of(2) {
                let len = (next() % 96) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Random but shaped like a query, to reach the name and the OPT record: a
                // plain header, random labels, type and maybe class, an OPT of a random
                // size and version maybe; then perhaps one byte changed.
                let ar = (next() % 2) as u16;
                let mut m = raw(next() as u16 & 0x0100, [1, 0, 0, ar], &[]);
                for _ in 0..next() % 5 {
                    let l = (next() % 12) as usize;
                    m.push(l as u8);
                    m.extend((0..l).map(|_| next() as u8));
                }
                m.push(0);
                let class = if next().is_multiple_of(4) {
                    next() as u16
                } else {
                    1
                };
                m.extend([next() as u8, next() as u8]);
                m.extend(class.to_be_bytes());
                if ar == 1 {
                    m.extend(opt(next() as u16, (next() % 2) as u8, &[]));
                }
                if next().is_multiple_of(2) {
                    let at = next() as usize % m.len();
                    m[at] = next() as u8;
                }
                m
            };
            if i.is_multiple_of(7) {
                m.truncate(next() as usize % (m.len() + 1));
            }
            if let Ok((q, n)) = parse_dns_query(&m, &mut name) {
                check_read(&m, &q, &name[..n]);
                agrees_with_hickory(&m, &q, &name[..n]);
                read += 1;
                with_opt += usize::from(q.edns.is_some());
            }
        }
        assert!(read > 10_000, "only {read} read");
        assert!(with_opt > 1_000, "only {with_opt} with an OPT record");
    }

    #[test]
    fn mutated_queries_never_panic_and_agree_with_hickory() {
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let q1 = question(&wire_name(NAME), 1, 1);
        let valid = [
            query(NAME, RecordType::A, None),
            query("a.b", RecordType::AAAA, Some(1232)),
            raw(
                0x0100,
                [1, 0, 0, 1],
                &[&q1[..], &opt(4096, 0, &cookie)].concat(),
            ),
            raw(
                0,
                [1, 0, 0, 0],
                &question(&name_of(&[63, 63, 63, 61]), 1, 1),
            ),
        ];
        let tail = gslb_answers().pop().unwrap();
        let (_, tail) = records(&tail);
        let mut next = xorshift(0xd15_0002);
        let mut name = [0u8; 255];
        let (mut read, mut agreed, mut answered) = (0, 0, 0);
        for i in 0..200_000usize {
            let mut m = valid[i % valid.len()].clone();
            for _ in 0..(1 + next() % 3) {
                let at = (next() as usize) % m.len();
                m[at] = match next() % 4 {
                    0 => 0,
                    1 => 0xc0,
                    2 => m[at] ^ (1 << (next() % 8)),
                    _ => next() as u8,
                };
            }
            match next() % 8 {
                0 => m.truncate((next() as usize) % (m.len() + 1)),
                1 => m.extend((0..next() % 4).map(|_| next() as u8)),
                _ => {}
            }
            let Ok((q, n)) = parse_dns_query(&m, &mut name) else {
                continue;
            };
            read += 1;
            check_read(&m, &q, &name[..n]);
            agreed += usize::from(agrees_with_hickory(&m, &q, &name[..n]));
            // Every query read can be answered in place into a well-formed frame.
            if i.is_multiple_of(16) {
                let mut f = frame(CLIENT, None, 0, &m);
                let ip = parse_ipv4(&f, ETH_HDR).unwrap();
                let before = f.clone();
                let opt_len = if q.edns.is_some() { OPT_LEN } else { 0 };
                let limit = usize::from(q.edns.map_or(512, |s| s.min(EDNS_PAYLOAD)));
                let fits = q.question_end + tail.len() + opt_len <= limit;
                let ok = dns_answer_in_place(&mut f, ETH_HDR, &ip, &q, OUR_MAC, 0, 3, tail);
                assert_eq!(ok, fits);
                if !ok {
                    assert_eq!(f, before);
                    continue;
                }
                answered += 1;
                let ip = parse_ipv4(&f, ETH_HDR).unwrap();
                let u = UdpPacket::new_checked(&f[ip.l4..]).unwrap();
                assert!(u.verify_checksum(&IpAddress::Ipv4(DNS_ADDR), &IpAddress::Ipv4(CLIENT)));
                let dns = u.payload();
                assert_eq!(dns[..2], m[..2], "id kept");
                assert_eq!(
                    dns[12..q.question_end],
                    m[12..q.question_end],
                    "question kept"
                );
                assert_eq!(dns[q.question_end..q.question_end + tail.len()], *tail);
            }
        }
        assert!(read > 10_000, "{read}");
        assert!(agreed > read / 2, "hickory read {agreed} of {read}");
        assert!(answered > 100, "{answered}");
    }

    #[test]
    fn an_answer_made_in_place_reads_back_as_the_gslb_answer() {
        let answers = gslb_answers();
        for (a, ttl_vips) in answers
            .iter()
            .zip([&VIPS[..1], &VIPS[1..2], &VIPS[2..3], &VIPS[..]])
        {
            let (vips, tail) = records(a);
            assert_eq!(vips, ttl_vips);
            let qname = "WWW.g.Example.COM";
            let m = query(qname, RecordType::A, None);
            let mut f = frame(CLIENT, None, 0, &m);
            assert!(answer(&mut f, ETH_HDR, 0, a.0.len() as u16, tail));
            let r = check_frame(&f, ETH_HDR, CLIENT);
            assert_eq!(r.metadata.id, 0xbeef);
            assert_eq!(r.metadata.message_type, MessageType::Response);
            assert_eq!(r.metadata.op_code, OpCode::Query);
            assert!(r.metadata.authoritative);
            assert!(r.metadata.recursion_desired, "RD copied");
            assert!(!r.metadata.truncation && !r.metadata.recursion_available);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(r.queries.len(), 1);
            assert_eq!(r.queries[0].name().to_ascii(), format!("{qname}."));
            assert_eq!(r.queries[0].query_type(), RecordType::A);
            assert_eq!(a_records(&r, 42), *vips);
            assert!(r.edns.is_none() && r.additionals.is_empty() && r.authorities.is_empty());
        }
    }

    #[test]
    fn an_answer_to_an_edns_query_carries_our_opt_record() {
        let answers = gslb_answers();
        let (vips, tail) = records(&answers[3]);
        for size in [512, 1232, 4096] {
            let m = query(NAME, RecordType::A, Some(size));
            let mut f = frame(CLIENT, None, 0, &m);
            assert!(answer(&mut f, ETH_HDR, 0, 3, tail));
            let r = check_frame(&f, ETH_HDR, CLIENT);
            assert_eq!(a_records(&r, 42), vips);
            let e = r.edns.as_ref().expect("an OPT record");
            assert_eq!(
                (e.max_payload(), e.version(), e.rcode_high()),
                (EDNS_PAYLOAD, 0, 0)
            );
            assert!(e.options().options.is_empty());
        }
        // A query's options are not echoed.
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let q1 = question(&wire_name(NAME), 1, 1);
        let m = raw(0, [1, 0, 0, 1], &[&q1[..], &opt(1400, 0, &cookie)].concat());
        let mut f = frame(CLIENT, None, 0, &m);
        assert!(answer(&mut f, ETH_HDR, 0, 3, tail));
        let r = check_frame(&f, ETH_HDR, CLIENT);
        assert_eq!(r.metadata.id, 0x1234);
        assert!(!r.metadata.recursion_desired);
        assert!(r.edns.as_ref().unwrap().options().options.is_empty());
    }

    #[test]
    fn an_error_answer_has_the_code_and_no_records() {
        for (rcode, want) in [(2, ResponseCode::ServFail), (5, ResponseCode::Refused)] {
            for edns in [None, Some(1232)] {
                let m = query(NAME, RecordType::A, edns);
                let mut f = frame(CLIENT, None, 0, &m);
                assert!(answer(&mut f, ETH_HDR, rcode, 0, &[]));
                let r = check_frame(&f, ETH_HDR, CLIENT);
                assert_eq!(r.metadata.response_code, want);
                assert!(r.metadata.authoritative);
                assert!(r.answers.is_empty());
                assert_eq!(r.queries.len(), 1);
                assert_eq!(r.edns.is_some(), edns.is_some());
            }
        }
    }

    #[test]
    fn answers_keep_vlan_tags_and_ip_options() {
        let answers = gslb_answers();
        let (vips, tail) = records(&answers[1]);
        let m = query(NAME, RecordType::A, None);
        for (vlan, opts) in [(Some(7), 0), (None, 8), (Some(4094), 40)] {
            let mut f = frame(CLIENT, vlan, opts, &m);
            let l3 = if vlan.is_some() { 18 } else { ETH_HDR };
            assert!(answer(&mut f, l3, 0, 1, tail));
            if let Some(v) = vlan {
                assert_eq!(f[12..16], [0x81, 0, (v >> 8) as u8, v as u8]);
            }
            assert_eq!(f[l3] & 0x0f, (20 + opts as u8) / 4);
            let r = check_frame(&f, l3, CLIENT);
            assert_eq!(a_records(&r, 42), vips);
        }
    }

    #[test]
    fn ethernet_padding_after_the_query_is_dropped_from_the_answer() {
        let m = query("a.b", RecordType::A, None);
        let mut f = frame(CLIENT, None, 0, &m);
        f.extend([0xee; 6]);
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let (q, _) = parse(&f[ip.l4 + 8..ip.end]).unwrap();
        assert!(dns_answer_in_place(
            &mut f,
            ETH_HDR,
            &ip,
            &q,
            OUR_MAC,
            2,
            0,
            &[]
        ));
        let r = check_frame(&f, ETH_HDR, CLIENT);
        assert!(r.answers.is_empty());
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    /// A message of `question_end` + `tail` (+ OPT) bytes against each limit.
    #[test]
    fn an_answer_larger_than_the_client_takes_is_refused_and_the_frame_left_alone() {
        let q1 = question(&wire_name(NAME), 1, 1);
        // (the query's OPT size if any, the most answer bytes it takes)
        for (edns, limit) in [
            (None, 512),
            (Some(100), 512),
            (Some(512), 512),
            (Some(600), 600),
            (Some(1232), 1232),
            (Some(4096), 1232),
            (Some(65535), 1232),
        ] {
            let m = match edns {
                None => raw(0x0100, [1, 0, 0, 0], &q1),
                Some(s) => raw(0x0100, [1, 0, 0, 1], &[&q1[..], &opt(s, 0, &[])].concat()),
            };
            let opt_len = if edns.is_some() { 11 } else { 0 };
            let fits = limit - QEND - opt_len;
            for extra in [0, 1, 100] {
                let tail = vec![0u8; fits + extra];
                let mut f = frame(CLIENT, None, 0, &m);
                let before = f.clone();
                let ok = answer(&mut f, ETH_HDR, 0, 0, &tail);
                assert_eq!(
                    ok,
                    extra == 0,
                    "{edns:?}: {} bytes",
                    QEND + opt_len + tail.len()
                );
                if ok {
                    let meta = parse_ipv4(&f, ETH_HDR).unwrap();
                    assert_eq!(f.len() - meta.l4 - 8, limit);
                } else {
                    assert_eq!(f, before, "{edns:?}: unchanged");
                }
            }
        }
    }

    /// A buffer that cannot grow past `cap`.
    struct Fixed {
        f: Vec<u8>,
        cap: usize,
    }

    impl PacketBuf for Fixed {
        fn bytes(&mut self) -> &mut [u8] {
            &mut self.f
        }
        fn set_len(&mut self, len: usize) -> bool {
            len <= self.cap && {
                self.f.resize(len, 0);
                true
            }
        }
    }

    #[test]
    fn an_answer_the_buffer_cannot_hold_is_refused_and_the_frame_left_alone() {
        let answers = gslb_answers();
        let (_, tail) = records(&answers[3]);
        let m = query(NAME, RecordType::A, None);
        let f = frame(CLIENT, None, 0, &m);
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let (q, _) = parse(&f[ip.l4 + 8..]).unwrap();
        let need = f.len() + tail.len();
        for (cap, ok) in [(f.len(), false), (need - 1, false), (need, true)] {
            let mut b = Fixed { f: f.clone(), cap };
            assert_eq!(
                dns_answer_in_place(&mut b, ETH_HDR, &ip, &q, OUR_MAC, 0, 3, tail),
                ok,
                "room for {cap}"
            );
            if ok {
                assert_eq!(check_frame(&b.f, ETH_HDR, CLIENT).answers.len(), 3);
            } else {
                assert_eq!(b.f, f);
            }
        }
    }
}
