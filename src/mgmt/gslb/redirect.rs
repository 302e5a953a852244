//! HTTP redirect to a peer site: while a `redirect` service has no backend up, the workers
//! send its new TCP conns to the kernel, where this server, listening on the VIP, answers
//! every request with `302 Found` to the target plus the request's path (the kernel's TCP,
//! the management's strict HTTP server, `mgmt::http`: nothing hand-written on the wire).
//!
//! Any client of the VIP reaches it, so it has the server's bounds: a slow or idle client
//! is cut off and cannot hold the others up. Its heads may be longer than the API's
//! ([`LIMITS`]): browsers send cookies, and a path to keep may be long.

use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::mgmt::http::{self, Head, Limits, Reply, Response};

/// The redirect servers' bounds: a head of 16 KiB with a target of 8 KiB, no workers (every
/// answer is made at once, on the server's thread).
pub const LIMITS: Limits = Limits {
    head_bytes: 16 * 1024,
    target_bytes: 8 * 1024,
    workers: 0,
    ..Limits::DEFAULT
};

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

/// Serves redirects on `vip` until the returned server is dropped.
pub fn serve(
    vip: SocketAddrV4,
    target: String,
    ctr: Arc<Counters>,
) -> std::io::Result<http::Server> {
    serve_on(http::listen(SocketAddr::V4(vip))?, LIMITS, target, ctr)
}

/// Serves redirects on `listener` within `limits`.
pub(super) fn serve_on(
    listener: TcpListener,
    limits: Limits,
    target: String,
    ctr: Arc<Counters>,
) -> std::io::Result<http::Server> {
    http::start(listener, "sy-redirect", limits, move |head: &Head| {
        let loc = location(&target, &head.target);
        ctr.redirects.fetch_add(1, Ordering::Relaxed);
        Reply::Now(
            Response::text(
                302,
                "text/plain; charset=UTF-8",
                format!("moved to {loc}\n"),
            )
            .header("Location", loc),
        )
    })
}
