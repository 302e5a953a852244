//! HTTP redirect to a peer site: while a `redirect` service has no backend up, the workers
//! send its new TCP conns to the kernel, where this server, listening on the VIP, answers
//! every request with `302 Found` to the target plus the request's path (the kernel's TCP,
//! tiny_http's HTTP: nothing hand-written on the wire).

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Default)]
pub struct Counters {
    pub redirects: AtomicU64,
}

impl Counters {
    pub fn json(&self) -> Value {
        json!({ "sent": self.redirects.load(Ordering::Relaxed) })
    }
}

/// The `Location` of a request for `path` redirected to `target`.
pub fn location(target: &str, path: &str) -> String {
    let base = target.trim_end_matches('/');
    let path = if path.starts_with('/') { path } else { "/" };
    format!("{base}{path}")
}

/// Serves redirects on `vip` until `stop`.
pub fn serve(
    vip: SocketAddrV4,
    target: String,
    ctr: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, Box<dyn std::error::Error + Send + Sync>> {
    let server = tiny_http::Server::http(vip)?;
    let t = std::thread::Builder::new()
        .name("sy-redirect".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let loc = location(&target, req.url());
                let mut r = tiny_http::Response::from_string(format!("moved to {loc}\n"))
                    .with_status_code(302);
                if let Ok(h) = tiny_http::Header::from_bytes(&b"Location"[..], loc.as_bytes()) {
                    r = r.with_header(h);
                }
                if let Ok(h) = tiny_http::Header::from_bytes(&b"Connection"[..], &b"close"[..]) {
                    r = r.with_header(h);
                }
                ctr.redirects.fetch_add(1, Ordering::Relaxed);
                let _ = req.respond(r);
            }
        })?;
    Ok(t)
}
