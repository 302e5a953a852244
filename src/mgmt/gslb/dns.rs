//! The kernel side's DNS server for the GSLB zone: every query the workers leave to it (TCP,
//! types other than A, the zone's own records, odd or large queries), parsed and answered with
//! hickory-proto. Authoritative for `[gslb] zone`: configured names answer A from the running
//! snapshot's table (the same wheels the workers turn) and other types with an empty NOERROR
//! and the SOA; the apex answers SOA and NS; in-zone name servers their address; other names
//! in the zone NXDOMAIN; names outside it REFUSED. EDNS(0) is answered with an OPT record
//! (version 0, else BADVERS); UDP answers larger than the client takes are truncated (TC).
//! What does not parse as a DNS query is dropped and counted.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde_json::{Value, json};

use crate::config::{GslbConfig, MAX_GSLB_NAMES, in_zone};
use crate::gslb::{Answer, Table, wire_name};

/// The UDP payload size offered (and the most sent), as the workers do.
const EDNS_PAYLOAD: u16 = 1232;
/// Simultaneous TCP clients served; more wait in the listen queue.
const MAX_TCP_CLIENTS: usize = 32;
/// A TCP client idle for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// The zone's own records.
struct Zone {
    apex: Name,
    soa: Record,
    ns: Vec<Record>,
    /// A records of name servers inside the zone.
    glue: Vec<Record>,
    neg_ttl: u32,
}

fn fqdn(n: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", n.trim_end_matches('.'))).ok()
}

impl Zone {
    fn new(g: &GslbConfig) -> Option<Zone> {
        let apex = fqdn(&g.zone)?;
        let first_ns = g
            .nameservers
            .first()
            .and_then(|n| fqdn(&n.name))
            .unwrap_or_else(|| apex.clone());
        let rname = if g.hostmaster.contains('.') {
            fqdn(&g.hostmaster)?
        } else {
            fqdn(&format!("{}.{}", g.hostmaster, g.zone))?
        };
        // The serial: the start time, so a restarted site's zone is newer.
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        let ttl = g.zone_ttl;
        let soa = Record::from_rdata(
            apex.clone(),
            ttl,
            RData::SOA(SOA::new(first_ns, rname, serial, 3600, 600, 86_400, ttl)),
        );
        let ns = g
            .nameservers
            .iter()
            .filter_map(|n| fqdn(&n.name))
            .map(|n| Record::from_rdata(apex.clone(), ttl, RData::NS(NS(n))))
            .collect();
        let glue = g
            .nameservers
            .iter()
            .filter(|n| in_zone(&n.name, &g.zone))
            .filter_map(|n| {
                Some(Record::from_rdata(
                    fqdn(&n.name)?,
                    ttl,
                    RData::A(A(n.address?)),
                ))
            })
            .collect();
        Some(Zone {
            apex,
            soa,
            ns,
            glue,
            neg_ttl: ttl,
        })
    }
}

/// Counters of the kernel-side server.
#[derive(Default)]
pub struct DnsCounters {
    pub udp: AtomicU64,
    pub tcp: AtomicU64,
    pub malformed: AtomicU64,
    pub refused: AtomicU64,
    pub nxdomain: AtomicU64,
    pub truncated: AtomicU64,
    pub notimp: AtomicU64,
    pub formerr: AtomicU64,
    pub badvers: AtomicU64,
}

/// What the DNS server threads share with the management loop.
pub struct Shared {
    zone: Option<Zone>,
    table: RwLock<Arc<Table>>,
    turns: Box<[AtomicU32]>,
    queries: Box<[AtomicU64]>,
    last: Mutex<Vec<Option<String>>>,
    pub counters: DnsCounters,
    tcp_clients: AtomicUsize,
}

impl Shared {
    pub fn new(g: &GslbConfig) -> Shared {
        Shared {
            zone: Zone::new(g),
            table: RwLock::new(Arc::new(Table::default())),
            turns: (0..MAX_GSLB_NAMES).map(|_| AtomicU32::new(0)).collect(),
            queries: (0..MAX_GSLB_NAMES).map(|_| AtomicU64::new(0)).collect(),
            last: Mutex::new(vec![None; MAX_GSLB_NAMES]),
            counters: DnsCounters::default(),
            tcp_clients: AtomicUsize::new(0),
        }
    }

    /// The table of the snapshot just installed.
    pub fn set_table(&self, t: Arc<Table>) {
        if let Ok(mut g) = self.table.write() {
            *g = t;
        }
    }

    pub fn name_queries(&self, i: usize) -> u64 {
        self.queries.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn last_answer(&self, i: usize) -> Option<String> {
        self.last
            .lock()
            .ok()
            .and_then(|l| l.get(i).cloned().flatten())
    }

    pub fn counters_json(&self) -> Value {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "udp": g(&c.udp), "tcp": g(&c.tcp), "malformed": g(&c.malformed),
            "refused": g(&c.refused), "nxdomain": g(&c.nxdomain), "truncated": g(&c.truncated),
            "notimp": g(&c.notimp), "formerr": g(&c.formerr), "badvers": g(&c.badvers),
        })
    }

    /// The response to query `q` from `client` (None: dropped, counted as malformed).
    pub fn respond(&self, q: &[u8], client: Ipv4Addr, tcp: bool) -> Option<Vec<u8>> {
        let c = &self.counters;
        let inc = |a: &AtomicU64| {
            a.fetch_add(1, Ordering::Relaxed);
        };
        let req = match Message::from_vec(q) {
            Ok(m) if m.metadata.message_type == MessageType::Query => m,
            _ => {
                inc(&c.malformed);
                return None;
            }
        };
        let md = &req.metadata;
        let mut resp = Message::response(md.id, md.op_code);
        resp.metadata.recursion_desired = md.recursion_desired;
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            usize::from(
                req.edns
                    .as_ref()
                    .map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD)),
            )
        };
        if let Some(e) = &req.edns {
            let mut o = Edns::new();
            o.set_max_payload(EDNS_PAYLOAD);
            resp.set_edns(o);
            if e.version() > 0 {
                inc(&c.badvers);
                resp.metadata.response_code = ResponseCode::BADVERS;
                return encode(resp, limit, c);
            }
        }
        if md.op_code != OpCode::Query {
            inc(&c.notimp);
            resp.metadata.response_code = ResponseCode::NotImp;
            return encode(resp, limit, c);
        }
        if req.queries.len() != 1 {
            inc(&c.formerr);
            resp.metadata.response_code = ResponseCode::FormErr;
            return encode(resp, limit, c);
        }
        let query = &req.queries[0];
        resp.add_query(query.clone());
        let Some(zone) = &self.zone else {
            inc(&c.refused);
            resp.metadata.response_code = ResponseCode::Refused;
            return encode(resp, limit, c);
        };
        let name = query.name();
        if query.query_class() != DNSClass::IN || !zone.apex.zone_of(name) {
            inc(&c.refused);
            resp.metadata.response_code = ResponseCode::Refused;
            return encode(resp, limit, c);
        }
        resp.metadata.authoritative = true;
        let qtype = query.query_type();
        let table = self.table.read().map(|t| t.clone()).ok();
        let id = table
            .as_ref()
            .and_then(|t| t.lookup(&wire_name(&name.to_ascii())));
        let soa_only = |resp: &mut Message| {
            let mut soa = zone.soa.clone();
            soa.ttl = zone.neg_ttl;
            resp.add_authority(soa);
        };
        if let (Some(t), Some(id)) = (&table, id) {
            let i = usize::from(id);
            if let Some(q) = self.queries.get(i) {
                q.fetch_add(1, Ordering::Relaxed);
            }
            if qtype == RecordType::A {
                let turn = self.turns[i]
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1);
                let e = &t.entries[i];
                let ans = e.pick(t.region_of(client), turn);
                let text = match ans {
                    Answer::Records { vips, .. } => {
                        for v in vips {
                            resp.add_answer(Record::from_rdata(
                                name.clone(),
                                e.ttl,
                                RData::A(A(*v)),
                            ));
                        }
                        vips.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                    Answer::Rcode(r) => {
                        resp.metadata.response_code = ResponseCode::from_low(*r);
                        rcode_name(*r).to_string()
                    }
                };
                if let Ok(mut l) = self.last.lock()
                    && let Some(slot) = l.get_mut(i)
                {
                    *slot = Some(text);
                }
            } else {
                soa_only(&mut resp);
            }
        } else if name == &zone.apex {
            match qtype {
                RecordType::SOA => {
                    resp.add_answer(zone.soa.clone());
                }
                RecordType::NS => {
                    for r in &zone.ns {
                        resp.add_answer(r.clone());
                    }
                    for g in &zone.glue {
                        resp.add_additional(g.clone());
                    }
                }
                _ => soa_only(&mut resp),
            }
        } else if let Some(glue) = zone.glue.iter().find(|g| g.name == *name) {
            if qtype == RecordType::A {
                resp.add_answer(glue.clone());
            } else {
                soa_only(&mut resp);
            }
        } else {
            inc(&c.nxdomain);
            resp.metadata.response_code = ResponseCode::NXDomain;
            soa_only(&mut resp);
        }
        encode(resp, limit, c)
    }
}

/// The wire form of `resp`, truncated (TC, no records) when larger than `limit`.
fn encode(resp: Message, limit: usize, c: &DnsCounters) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    c.truncated.fetch_add(1, Ordering::Relaxed);
    let mut t = resp.truncate();
    t.metadata.authoritative = resp.metadata.authoritative;
    t.to_vec().ok()
}

pub fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        5 => "REFUSED",
        _ => "other",
    }
}

/// Serves DNS on `addr`:53, UDP and TCP, until `stop`.
pub fn serve(
    addr: Ipv4Addr,
    sh: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let sa = SocketAddrV4::new(addr, 53);
    let udp = UdpSocket::bind(sa)?;
    udp.set_read_timeout(Some(Duration::from_millis(200)))?;
    let tcp = TcpListener::bind(sa)?;
    tcp.set_nonblocking(true)?;
    let (sh2, stop2) = (sh.clone(), stop.clone());
    let u = std::thread::Builder::new()
        .name("sy-gslb-dns".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, SocketAddr::V4(from))) = udp.recv_from(&mut buf) else {
                    continue;
                };
                sh.counters.udp.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = sh.respond(&buf[..n], *from.ip(), false) {
                    let _ = udp.send_to(&r, from);
                }
            }
        })?;
    let t = std::thread::Builder::new()
        .name("sy-gslb-dnstcp".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((s, SocketAddr::V4(from))) => {
                        if sh2.tcp_clients.load(Ordering::Relaxed) >= MAX_TCP_CLIENTS {
                            continue; // dropped: the client retries
                        }
                        sh2.tcp_clients.fetch_add(1, Ordering::Relaxed);
                        let sh3 = sh2.clone();
                        let spawned = std::thread::Builder::new()
                            .name("sy-gslb-dnsconn".into())
                            .spawn(move || {
                                tcp_client(s, *from.ip(), &sh3);
                                sh3.tcp_clients.fetch_sub(1, Ordering::Relaxed);
                            });
                        if spawned.is_err() {
                            sh2.tcp_clients.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok(vec![u, t])
}

/// One TCP client: length-prefixed queries until it closes or idles.
fn tcp_client(mut s: TcpStream, from: Ipv4Addr, sh: &Shared) {
    if s.set_nonblocking(false).is_err()
        || s.set_read_timeout(Some(TCP_IDLE)).is_err()
        || s.set_write_timeout(Some(TCP_IDLE)).is_err()
    {
        return;
    }
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        sh.counters.tcp.fetch_add(1, Ordering::Relaxed);
        let Some(r) = sh.respond(&q, from, true) else {
            return; // not DNS: close
        };
        let mut out = Vec::with_capacity(r.len() + 2);
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(&r);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}
