//! Site exchange: each site serves its services' health and load at `/gslb` on
//! `[gslb] listen`, and polls its peers' over the exception path.
//!
//! Both directions are authenticated with the shared key (HMAC-SHA256): the poller picks a
//! fresh random nonce and signs `poll <nonce>`; the server refuses a bad signature or a nonce
//! it has seen (a replayed poll), and signs `report <nonce> <body>`, so a poller takes only an
//! answer to its own poll from a holder of the key.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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

/// Serves `/gslb` on `listen` until `stop`.
pub fn serve(
    listen: SocketAddr,
    key: Vec<u8>,
    report: Arc<Mutex<Value>>,
    ctr: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, Box<dyn std::error::Error + Send + Sync>> {
    let server = tiny_http::Server::http(listen)?;
    let t = std::thread::Builder::new()
        .name("sy-gslb-api".into())
        .spawn(move || {
            let mut seen: HashSet<String> = HashSet::new();
            let mut order: VecDeque<String> = VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let url = req.url().to_string();
                let auth = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string());
                let nonce = url
                    .strip_prefix("/gslb?nonce=")
                    .filter(|n| n.len() == 32 && unhex(n).is_some())
                    .map(str::to_string);
                let reply = |status: u16, body: String, sig: Option<String>| {
                    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
                    if let Some(s) = sig
                        && let Ok(h) =
                            tiny_http::Header::from_bytes(&b"X-SY-HMAC"[..], s.as_bytes())
                    {
                        r = r.with_header(h);
                    }
                    r
                };
                let (Some(nonce), Some(auth)) = (nonce, auth) else {
                    ctr.refused.fetch_add(1, Ordering::Relaxed);
                    let (status, msg) = if url == "/gslb" || url.starts_with("/gslb?") {
                        (
                            401,
                            "{\"error\":\"a poll is GET /gslb?nonce=<32 hex> with its signature\"}",
                        )
                    } else {
                        (404, "{\"error\":\"no such endpoint\"}")
                    };
                    let _ = req.respond(reply(status, msg.into(), None));
                    continue;
                };
                let sig = auth.strip_prefix("SY-HMAC ").unwrap_or_default();
                if !verify(&key, &[b"poll ", nonce.as_bytes()], sig) {
                    ctr.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = req.respond(reply(401, "{\"error\":\"bad signature\"}".into(), None));
                    continue;
                }
                if !seen.insert(nonce.clone()) {
                    ctr.replayed.fetch_add(1, Ordering::Relaxed);
                    let _ =
                        req.respond(reply(401, "{\"error\":\"nonce seen before\"}".into(), None));
                    continue;
                }
                order.push_back(nonce.clone());
                if order.len() > SEEN_NONCES
                    && let Some(old) = order.pop_front()
                {
                    seen.remove(&old);
                }
                let body = report
                    .lock()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| "{}".into());
                let s = report_signature(&key, &nonce, body.as_bytes());
                ctr.served.fetch_add(1, Ordering::Relaxed);
                let _ = req.respond(reply(200, body, Some(s)));
            }
        })?;
    Ok(t)
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
