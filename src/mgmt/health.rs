//! Health checks, run by the management core: one checker thread per checked backend, each
//! connecting through the kernel's TCP/IP stack (the exception path puts the balancer's
//! address on a kernel interface on the same network as client traffic).
//!
//! Kinds: `tcp` (connect), `http` (GET path, expected status, optional body substring), `dns`
//! (A query over UDP, an answer expected). A backend goes down after `fall` consecutive
//! failures and comes back after `rise` consecutive successes; transitions are logged and
//! counted, and each probe's round trip goes into a per-backend histogram.
//!
//! DSR backends are checked **on the VIP**: the probe is addressed to VIP:port but routed to
//! that backend (a socket mark selects a policy-routing table holding `VIP/32 via backend`),
//! so a server that is up but lacks the VIP on its loopback fails the check.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{HealthConfig, HealthKind, Mode};
use crate::lb::{BackendKey, Snapshot};

/// First socket mark / routing table used for DSR checks (one per backend id above it).
const MARK_BASE: u32 = 0x5359_0000;

/// Everything one checker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: HealthKind,
    pub target: SocketAddrV4,
    /// DSR: the backend the probe to the VIP is routed to, and the mark selecting that route.
    pub via: Option<(Ipv4Addr, u32)>,
    /// Our address the probe is sent from (selects the exception path's routing table).
    pub source: Option<Ipv4Addr>,
    pub path: String,
    pub expect_status: u16,
    pub expect_body: Option<String>,
    pub query: String,
    pub interval: Duration,
    pub timeout: Duration,
}

struct Result_ {
    key: BackendKey,
    ok: bool,
    rtt: Duration,
    error: String,
}

struct State {
    up: bool,
    ok_streak: u32,
    fail_streak: u32,
    transitions: u64,
    last_error: String,
    checks: u64,
    rtt: Box<Histogram<u64>>,
    rise: u32,
    fall: u32,
}

struct Checker {
    /// What this checker probes (a reload that changes it restarts the checker).
    probe: Probe,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub struct Health {
    plan: HashMap<BackendKey, (Probe, u32, u32)>,
    states: HashMap<BackendKey, State>,
    checkers: HashMap<BackendKey, Checker>,
    tx: Sender<Result_>,
    rx: Receiver<Result_>,
    running: bool,
    rules: Vec<u32>,
}

/// The probes a snapshot asks for: (probe, rise, fall) per checked backend.
pub fn plan(snap: &Snapshot) -> HashMap<BackendKey, (Probe, u32, u32)> {
    let mut out = HashMap::new();
    for (bid, b) in snap.backends.iter().enumerate() {
        if b.removed {
            continue;
        }
        let s = &snap.services[usize::from(b.service)];
        let Some(h) = &s.health else { continue };
        let port = h.port.unwrap_or(b.port);
        let ifc = &snap.interfaces[usize::from(b.iface.0)];
        let source = std::iter::once(&ifc.net)
            .chain(&ifc.secondary)
            .find(|c| c.contains(b.addr))
            .map_or(ifc.addr, |c| c.addr);
        // A remote backend (a peer site's VIP) is checked at that VIP, through the WAN.
        let (target, via) = if s.mode == Mode::Dsr && !b.remote {
            (
                SocketAddrV4::new(s.vip, h.port.unwrap_or(s.port)),
                Some((b.addr, MARK_BASE + bid as u32)),
            )
        } else {
            (SocketAddrV4::new(b.addr, port), None)
        };
        out.insert(
            (s.name.clone(), b.addr, b.port),
            (probe_of(h, target, via, Some(source)), h.rise, h.fall),
        );
    }
    out
}

fn probe_of(
    h: &HealthConfig,
    target: SocketAddrV4,
    via: Option<(Ipv4Addr, u32)>,
    source: Option<Ipv4Addr>,
) -> Probe {
    Probe {
        kind: h.kind,
        target,
        via,
        source,
        path: h.path.clone(),
        expect_status: h.expect_status,
        expect_body: h.expect_body.clone(),
        query: h.query.clone(),
        interval: Duration::from_millis(u64::from(h.interval_ms)),
        timeout: Duration::from_millis(u64::from(h.timeout_ms)),
    }
}

impl Health {
    pub fn new(snap: &Snapshot) -> Health {
        let (tx, rx) = channel();
        Health {
            plan: plan(snap),
            states: HashMap::new(),
            checkers: HashMap::new(),
            tx,
            rx,
            running: false,
            rules: Vec::new(),
        }
    }

    /// Starts the checkers (after the workers run, so probes have a data plane).
    pub fn start(&mut self, snap: &Snapshot) {
        self.running = true;
        self.plan = plan(snap);
        self.respawn();
    }

    /// A new snapshot: checkers whose probe changed are restarted, gone ones stopped.
    pub fn sync(&mut self, snap: &Snapshot) {
        self.plan = plan(snap);
        if self.running {
            self.respawn();
        }
    }

    fn respawn(&mut self) {
        let stale: Vec<BackendKey> = self
            .checkers
            .keys()
            .filter(|k| !self.plan.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            if let Some(c) = self.checkers.remove(&k) {
                c.stop.store(true, Ordering::Relaxed);
            }
            self.states.remove(&k);
        }
        for (key, (probe, rise, fall)) in self.plan.clone() {
            let st = self.states.entry(key.clone()).or_insert_with(|| State {
                up: true,
                ok_streak: 0,
                fail_streak: 0,
                transitions: 0,
                last_error: String::new(),
                checks: 0,
                rtt: Box::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")),
                rise,
                fall,
            });
            st.rise = rise;
            st.fall = fall;
            if self.checkers.get(&key).is_some_and(|c| c.probe == probe) {
                continue;
            }
            if let Some(c) = self.checkers.remove(&key) {
                c.stop.store(true, Ordering::Relaxed);
            }
            if let Some((backend, mark)) = probe.via {
                self.route_via(probe.target, backend, mark);
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (s2, tx, k2, p2) = (stop.clone(), self.tx.clone(), key.clone(), probe.clone());
            let thread = std::thread::Builder::new()
                .name("sy-health".into())
                .spawn(move || checker(k2, p2, tx, s2))
                .ok();
            self.checkers.insert(
                key,
                Checker {
                    probe,
                    stop,
                    thread,
                },
            );
        }
    }

    /// Policy routing for a DSR probe: packets marked `mark` reach `vip` through `backend`.
    fn route_via(&mut self, vip: SocketAddrV4, backend: Ipv4Addr, mark: u32) {
        let m = mark.to_string();
        let _ = Command::new("ip")
            .args(["rule", "del", "fwmark", &m, "table", &m])
            .output();
        let a = Command::new("ip")
            .args(["rule", "add", "fwmark", &m, "table", &m])
            .output();
        let b = Command::new("ip")
            .args([
                "route",
                "replace",
                &format!("{}/32", vip.ip()),
                "via",
                &backend.to_string(),
                "table",
                &m,
            ])
            .output();
        match (a, b) {
            (Ok(a), Ok(b)) if a.status.success() && b.status.success() => self.rules.push(mark),
            (a, b) => tracing::warn!(
                ?a,
                ?b,
                "cannot route DSR health probes to {backend} (is the exception path up?)"
            ),
        }
    }

    pub fn stop(&mut self) {
        self.running = false;
        // Checkers notice the flag after their current probe; a probe may be blocked for up to
        // its timeout, and shutdown must not wait for that, so they are not joined (they hold
        // nothing that needs cleaning up, and end with the process).
        for (_, c) in self.checkers.drain() {
            c.stop.store(true, Ordering::Relaxed);
            drop(c.thread);
        }
        for m in self.rules.drain(..) {
            let m = m.to_string();
            let _ = Command::new("ip")
                .args(["rule", "del", "fwmark", &m, "table", &m])
                .output();
            let _ = Command::new("ip")
                .args(["route", "flush", "table", &m])
                .output();
        }
    }

    /// Takes the checkers' results; returns backends whose health state changed.
    pub fn poll(&mut self) -> Vec<(BackendKey, bool)> {
        let mut changed = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            let Some(st) = self.states.get_mut(&r.key) else {
                continue;
            };
            st.checks += 1;
            if r.ok {
                let _ = st.rtt.record(r.rtt.as_nanos().max(1) as u64);
                st.ok_streak += 1;
                st.fail_streak = 0;
                if !st.up && st.ok_streak >= st.rise {
                    st.up = true;
                    st.transitions += 1;
                    tracing::warn!(service = %r.key.0, backend = %r.key.1, "backend UP after {} good checks", st.ok_streak);
                    changed.push((r.key.clone(), true));
                }
            } else {
                st.fail_streak += 1;
                st.ok_streak = 0;
                st.last_error = r.error;
                if st.up && st.fail_streak >= st.fall {
                    st.up = false;
                    st.transitions += 1;
                    tracing::warn!(service = %r.key.0, backend = %r.key.1, error = %st.last_error, "backend DOWN after {} failed checks", st.fail_streak);
                    changed.push((r.key.clone(), false));
                }
            }
        }
        changed
    }

    pub fn transitions(&self, key: &BackendKey) -> u64 {
        self.states.get(key).map_or(0, |s| s.transitions)
    }

    pub fn view(&self, key: &BackendKey) -> Value {
        match self.states.get(key) {
            None => Value::Null,
            Some(s) => json!({
                "up": s.up,
                "checks": s.checks,
                "transitions": s.transitions,
                "ok_streak": s.ok_streak,
                "fail_streak": s.fail_streak,
                "last_error": s.last_error,
            }),
        }
    }

    /// Forgets every probe's round-trip times (`POST /latency/reset`).
    pub fn reset_latency(&mut self) {
        for s in self.states.values_mut() {
            s.rtt.reset();
        }
    }

    pub fn latency_view(&self) -> Value {
        let mut v: Vec<Value> = self
            .states
            .iter()
            .map(|(k, s)| {
                let h = &s.rtt;
                json!({
                    "service": k.0,
                    "backend": format!("{}:{}", k.1, k.2),
                    "count": h.len(),
                    "p50_ns": h.value_at_quantile(0.5),
                    "p90_ns": h.value_at_quantile(0.9),
                    "p99_ns": h.value_at_quantile(0.99),
                    "p999_ns": h.value_at_quantile(0.999),
                    "max_ns": h.max(),
                })
            })
            .collect();
        v.sort_by_key(|x| x["backend"].as_str().unwrap_or("").to_string());
        json!(v)
    }
}

fn checker(key: BackendKey, p: Probe, tx: Sender<Result_>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let res = probe(&p);
        let rtt = t.elapsed();
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let _ = tx.send(Result_ {
            key: key.clone(),
            ok: res.is_ok(),
            rtt,
            error: res.err().map(|e| e.to_string()).unwrap_or_default(),
        });
        // Sleep the rest of the interval in short steps so a stop is quick.
        while t.elapsed() < p.interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(p.interval));
        }
    }
}

/// Why a probe failed (shown as the backend's `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A socket step (`socket`, `SO_MARK`, `bind`, `connect`, `send`, `read`, ...) failed.
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    #[error("timeout reading the response")]
    Timeout,
    #[error("no HTTP status line")]
    NoStatusLine,
    #[error("status {got}, expected {want}")]
    Status { got: u16, want: u16 },
    #[error("body lacks {0:?}")]
    BodyLacks(String),
    #[error("short DNS response")]
    DnsShort,
    #[error("not a response to our query")]
    DnsNotOurs,
    #[error("rcode {0}")]
    DnsRcode(u8),
    #[error("no answer records")]
    DnsNoAnswer,
}

/// The `map_err` of a socket step.
fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProbeError {
    let step = step.into();
    move |source| ProbeError::Io { step, source }
}

fn socket(p: &Probe, ty: Type, proto: Protocol) -> Result<Socket, ProbeError> {
    let s = Socket::new(Domain::IPV4, ty, Some(proto)).map_err(io("socket"))?;
    if let Some((_, mark)) = p.via {
        s.set_mark(mark).map_err(io("SO_MARK"))?;
    }
    if let Some(src) = p.source {
        s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
            .map_err(io(format!("bind {src}")))?;
    }
    s.set_read_timeout(Some(p.timeout))
        .map_err(io("SO_RCVTIMEO"))?;
    s.set_write_timeout(Some(p.timeout))
        .map_err(io("SO_SNDTIMEO"))?;
    Ok(s)
}

/// Sends an HTTP/1.0 request on `stream` and reads the response (64 KiB at most) until the
/// server closes or `deadline`.
pub(crate) fn http_exchange(
    stream: &mut std::net::TcpStream,
    req: &str,
    deadline: Instant,
) -> Result<Vec<u8>, ProbeError> {
    stream.write_all(req.as_bytes()).map_err(io("send"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 65536 {
        if Instant::now() > deadline {
            return Err(ProbeError::Timeout);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io("read")(e)),
        }
    }
    Ok(buf)
}

/// A TCP connection from `source` to `target` within `timeout` (reads and writes time out
/// alike).
pub(crate) fn connect(
    source: Option<Ipv4Addr>,
    target: SocketAddrV4,
    timeout: Duration,
) -> Result<std::net::TcpStream, ProbeError> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    if let Some(src) = source {
        s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
            .map_err(io(format!("bind {src}")))?;
    }
    s.set_read_timeout(Some(timeout))
        .map_err(io("SO_RCVTIMEO"))?;
    s.set_write_timeout(Some(timeout))
        .map_err(io("SO_SNDTIMEO"))?;
    s.connect_timeout(&SocketAddr::V4(target).into(), timeout)
        .map_err(io(format!("connect {target}")))?;
    Ok(s.into())
}

/// One probe; Err says what failed.
pub fn probe(p: &Probe) -> Result<(), ProbeError> {
    let deadline = Instant::now() + p.timeout;
    match p.kind {
        HealthKind::Tcp | HealthKind::Http => {
            let s = socket(p, Type::STREAM, Protocol::TCP)?;
            s.connect_timeout(&SocketAddr::V4(p.target).into(), p.timeout)
                .map_err(io(format!("connect {}", p.target)))?;
            if p.kind == HealthKind::Tcp {
                return Ok(());
            }
            let mut stream: std::net::TcpStream = s.into();
            let req = format!(
                "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n",
                p.path,
                p.target.ip()
            );
            let buf = http_exchange(&mut stream, &req, deadline)?;
            let text = String::from_utf8_lossy(&buf);
            let status: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or(ProbeError::NoStatusLine)?;
            if status != p.expect_status {
                return Err(ProbeError::Status {
                    got: status,
                    want: p.expect_status,
                });
            }
            if let Some(want) = &p.expect_body {
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                if !body.contains(want.as_str()) {
                    return Err(ProbeError::BodyLacks(want.clone()));
                }
            }
            Ok(())
        }
        HealthKind::Dns => {
            let s = socket(p, Type::DGRAM, Protocol::UDP)?;
            let udp: std::net::UdpSocket = s.into();
            let id = (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x5359;
            let q = dns_query(id, &p.query);
            udp.send_to(&q, SocketAddr::V4(p.target))
                .map_err(io("send"))?;
            let mut buf = [0u8; 1500];
            let (n, _) = udp.recv_from(&mut buf).map_err(io("no answer"))?;
            dns_check(id, &buf[..n])
        }
    }
}

/// A DNS query for `name` type A, recursion desired.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A response to query `id` with RCODE 0 and at least one answer.
pub fn dns_check(id: u16, r: &[u8]) -> Result<(), ProbeError> {
    if r.len() < 12 {
        return Err(ProbeError::DnsShort);
    }
    if u16::from_be_bytes([r[0], r[1]]) != id || r[2] & 0x80 == 0 {
        return Err(ProbeError::DnsNotOurs);
    }
    let rcode = r[3] & 0x0f;
    if rcode != 0 {
        return Err(ProbeError::DnsRcode(rcode));
    }
    if u16::from_be_bytes([r[6], r[7]]) == 0 {
        return Err(ProbeError::DnsNoAnswer);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
