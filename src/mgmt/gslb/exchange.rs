//! Site exchange: each site serves its services' health and load at `/gslb` on
//! `[gslb] listen`, and polls its peers' over the exception path.
//!
//! Both directions are authenticated with the shared key (HMAC-SHA256): the poller picks a
//! fresh random nonce and signs `poll <nonce>`; the server refuses a bad signature or a nonce
//! it has seen (a replayed poll), and signs `report <nonce> <body>`, so a poller takes only an
//! answer to its own poll from a holder of the key.
//!
//! The server is the management's strict HTTP server (`mgmt::http`, one thread, bounded
//! heads, time and connections): whoever reaches `listen` cannot hold it up. A poll is
//! answered at once on its thread, the nonces it has seen behind a lock of its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::ServiceReport;
use crate::config::Config;
use crate::mgmt::health::{connect, http_exchange};
use crate::mgmt::http::{self, Head, Limits, Reply, Response};

/// Nonces remembered against replay.
const SEEN_NONCES: usize = 4096;
/// The largest report a poller reads.
const MAX_REPORT: usize = 64 * 1024;

/// Counters of the exchange (both sides).
#[derive(Default)]
pub struct Counters {
    pub served: AtomicU64,
    pub refused: AtomicU64,
    pub replayed: AtomicU64,
}

impl Counters {
    pub fn json(&self) -> Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "served": g(&self.served), "refused": g(&self.refused),
            "replayed": g(&self.replayed),
        })
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        m.update(p);
    }
    m
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    crate::config::hex_bytes(s)
}

/// The signature a poll with `nonce` carries.
pub fn poll_signature(key: &[u8], nonce: &str) -> String {
    hex(&mac(key, &[b"poll ", nonce.as_bytes()])
        .finalize()
        .into_bytes())
}

/// The signature of a report `body` answering `nonce`.
pub fn report_signature(key: &[u8], nonce: &str, body: &[u8]) -> String {
    hex(&mac(key, &[b"report ", nonce.as_bytes(), b" ", body])
        .finalize()
        .into_bytes())
}

fn verify(key: &[u8], parts: &[&[u8]], sig_hex: &str) -> bool {
    unhex(sig_hex).is_some_and(|s| mac(key, parts).verify_slice(&s).is_ok())
}

/// Where polls come from: the `listen` address, else the first exception-path interface's.
pub fn poll_source(cfg: &Config) -> Option<Ipv4Addr> {
    if let Some(SocketAddr::V4(l)) = cfg.gslb.as_ref().and_then(|g| g.listen) {
        return Some(*l.ip());
    }
    cfg.interfaces
        .iter()
        .find(|i| i.exception_path)
        .map(|i| i.address.addr)
}

/// Serves `/gslb` on `listen` until the returned server is dropped.
pub fn serve(
    listen: SocketAddr,
    key: Vec<u8>,
    report: Arc<Mutex<Value>>,
    ctr: Arc<Counters>,
) -> std::io::Result<http::Server> {
    serve_on(http::listen(listen)?, LIMITS, key, report, ctr)
}

/// Serves `/gslb` on `listener` within `limits`.
pub(super) fn serve_on(
    listener: TcpListener,
    limits: Limits,
    key: Vec<u8>,
    report: Arc<Mutex<Value>>,
    ctr: Arc<Counters>,
) -> std::io::Result<http::Server> {
    let ex = Exchange {
        key,
        report,
        ctr,
        seen: Mutex::new(Nonces::default()),
    };
    http::start(listener, "sy-gslb-api", limits, move |head: &Head| {
        Reply::Now(ex.answer(head))
    })
}

/// The site exchange's server bounds: the API's, without workers (a poll is answered at
/// once, on the server's thread).
pub const LIMITS: Limits = Limits {
    workers: 0,
    ..Limits::DEFAULT
};

/// The nonces of the last [`SEEN_NONCES`] good polls.
#[derive(Default)]
struct Nonces {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Nonces {
    /// Remembers `nonce`; false when it was seen before (a replay).
    fn insert(&mut self, nonce: &str) -> bool {
        if !self.seen.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back(nonce.to_string());
        if self.order.len() > SEEN_NONCES
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// What `/gslb` answers with.
struct Exchange {
    key: Vec<u8>,
    report: Arc<Mutex<Value>>,
    ctr: Arc<Counters>,
    seen: Mutex<Nonces>,
}

impl Exchange {
    /// The answer to one request: the signed report to a good poll, else 401 (a poll
    /// unsigned, badly signed or replayed) or 404 (anything but `/gslb`).
    fn answer(&self, head: &Head) -> Response {
        let reply =
            |status: u16, body: String| Response::text(status, "text/plain; charset=UTF-8", body);
        let url = head.target.as_str();
        let auth = head
            .values("Authorization")
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim);
        let nonce = url
            .strip_prefix("/gslb?nonce=")
            .filter(|n| n.len() == 32 && unhex(n).is_some());
        let (Some(nonce), Some(auth)) = (nonce, auth) else {
            self.ctr.refused.fetch_add(1, Ordering::Relaxed);
            let (status, msg) = if url == "/gslb" || url.starts_with("/gslb?") {
                (
                    401,
                    "{\"error\":\"a poll is GET /gslb?nonce=<32 hex> with its signature\"}",
                )
            } else {
                (404, "{\"error\":\"no such endpoint\"}")
            };
            return reply(status, msg.into());
        };
        let sig = auth.strip_prefix("SY-HMAC ").unwrap_or_default();
        if !verify(&self.key, &[b"poll ", nonce.as_bytes()], sig) {
            self.ctr.refused.fetch_add(1, Ordering::Relaxed);
            return reply(401, "{\"error\":\"bad signature\"}".into());
        }
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nonce);
        if !fresh {
            self.ctr.replayed.fetch_add(1, Ordering::Relaxed);
            return reply(401, "{\"error\":\"nonce seen before\"}".into());
        }
        let body = self
            .report
            .lock()
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "{}".into());
        let s = report_signature(&self.key, nonce, body.as_bytes());
        self.ctr.served.fetch_add(1, Ordering::Relaxed);
        reply(200, body).header("X-SY-HMAC", s)
    }
}

/// One poll's outcome: the peer's services, or why there are none.
pub struct PollResult {
    pub site: usize,
    pub report: Result<HashMap<String, ServiceReport>, String>,
}

/// Polls one peer site.
pub struct Poller {
    pub site: usize,
    pub target: SocketAddr,
    pub source: Option<Ipv4Addr>,
    pub key: Vec<u8>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Poller {
    pub fn spawn(
        self,
        tx: Sender<PollResult>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sy-gslb-poll".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(100)));
                        continue;
                    }
                    next = now + self.interval;
                    let report = self.poll();
                    if tx
                        .send(PollResult {
                            site: self.site,
                            report,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
    }

    /// One poll.
    pub fn poll(&self) -> Result<HashMap<String, ServiceReport>, String> {
        let SocketAddr::V4(target) = self.target else {
            return Err("not an IPv4 peer".into());
        };
        let nonce = random_nonce().map_err(|e| format!("nonce: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let mut s = connect(self.source, target, self.timeout).map_err(|e| e.to_string())?;
        let req = format!(
            "GET /gslb?nonce={nonce} HTTP/1.0\r\nHost: {target}\r\nAuthorization: SY-HMAC {}\r\n\
             User-Agent: switchyard-gslb\r\nConnection: close\r\n\r\n",
            poll_signature(&self.key, &nonce)
        );
        let resp = http_exchange(&mut s, &req, deadline).map_err(|e| e.to_string())?;
        parse_report(&self.key, &nonce, &resp)
    }
}

/// Checks and reads a `/gslb` response to the poll with `nonce`.
pub fn parse_report(
    key: &[u8],
    nonce: &str,
    resp: &[u8],
) -> Result<HashMap<String, ServiceReport>, String> {
    if resp.len() >= MAX_REPORT {
        return Err("report too large".into());
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let body = &resp[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("status {status}"));
    }
    let sig = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("X-SY-HMAC")
                .then(|| v.trim().to_string())
        })
        .ok_or("unsigned report")?;
    if !verify(key, &[b"report ", nonce.as_bytes(), b" ", body], &sig) {
        return Err("bad report signature".into());
    }
    #[derive(serde::Deserialize)]
    struct Report {
        services: HashMap<String, ServiceReport>,
    }
    serde_json::from_slice::<Report>(body)
        .map(|r| r.services)
        .map_err(|e| format!("report: {e}"))
}

fn random_nonce() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex(&b))
}

/// Where a poller connects from and to, for a site's `api` (tests).
pub fn target(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(addr, port))
}
