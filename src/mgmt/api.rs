//! The management API: a small HTTP server on its own thread (tiny_http) that turns requests
//! into [`Command`]s for the management loop, which owns all state and answers them between
//! ticks. JSON for people and scripts, Prometheus/OpenMetrics text at `/metrics`
//! (prometheus-client).
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/metrics` | counters, per service/backend traffic, health, latency quantiles |
//! | GET | `/status` | totals, uptime, reloads, neighbours, the HA pair |
//! | GET | `/health` | 200 when fit to carry traffic (workers, ports, HA readiness), else 503 |
//! | GET | `/services`, `/backends` | state, weights, traffic, health |
//! | GET | `/flows?limit=N` | live conns |
//! | GET | `/latency` | per worker and per health probe: p50/p90/p99/p99.9/max |
//! | POST | `/latency/reset` | start the latency histograms afresh |
//! | POST | `/backends/drain?service=S&backend=ADDR[:PORT][&timeout_s=N]` | no new flows |
//! | POST | `/backends/enable?service=S&backend=ADDR[:PORT]` | undo drain |
//! | POST | `/backends/weight?service=S&backend=ADDR[:PORT]&weight=W` | run-time weight |
//! | POST | `/reload` | re-read the configuration file |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::Mgmt;
use crate::stats::DROP_BASE;
use crate::types::{BackendId, DropReason};

/// What the API asks the management loop.
#[derive(Debug, Clone)]
pub enum Request {
    Status,
    /// Fit to carry traffic? (200 or 503).
    Health,
    Services,
    Backends,
    Latency,
    /// Clears the latency histograms (workers' and health probes').
    LatencyReset,
    Flows(usize),
    /// GSLB names, answers, peer sites.
    Gslb,
    /// `[bgp]`: what is announced, drained, live conns.
    Node,
    NodeDrain,
    NodeEnable,
    Metrics,
    Reload,
    Drain {
        service: String,
        backend: String,
        timeout_s: Option<u64>,
    },
    Enable {
        service: String,
        backend: String,
    },
    Weight {
        service: String,
        backend: String,
        weight: u32,
    },
}

pub struct Command {
    pub req: Request,
    pub reply: Sender<Response>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        }
    }
    pub fn metrics(body: String) -> Response {
        Response {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        }
    }
    fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": msg }))
    }
}

fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%3a", ":")))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses one HTTP request into a [`Request`], or the error response to send.
pub fn parse(method: &str, url: &str) -> Result<Request, Response> {
    let path = url.split('?').next().unwrap_or("");
    let q = query(url);
    let need = |k: &str| {
        q.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| Response::error(400, &format!("missing query parameter {k:?}")))
    };
    let get = method == "GET";
    let post = method == "POST";
    match path {
        "/metrics" if get => Ok(Request::Metrics),
        "/status" | "/" if get => Ok(Request::Status),
        "/health" if get => Ok(Request::Health),
        "/services" if get => Ok(Request::Services),
        "/backends" if get => Ok(Request::Backends),
        "/latency" if get => Ok(Request::Latency),
        "/gslb" if get => Ok(Request::Gslb),
        "/node" if get => Ok(Request::Node),
        "/node/drain" if post => Ok(Request::NodeDrain),
        "/node/enable" if post => Ok(Request::NodeEnable),
        "/flows" if get => {
            let limit = match q.get("limit") {
                Some(l) => l
                    .parse()
                    .map_err(|_| Response::error(400, "limit must be a number"))?,
                None => 100,
            };
            Ok(Request::Flows(limit))
        }
        "/latency/reset" if post => Ok(Request::LatencyReset),
        "/reload" if post => Ok(Request::Reload),
        "/backends/drain" if post => Ok(Request::Drain {
            service: need("service")?,
            backend: need("backend")?,
            timeout_s: match q.get("timeout_s") {
                Some(t) => Some(
                    t.parse()
                        .map_err(|_| Response::error(400, "timeout_s must be a number"))?,
                ),
                None => None,
            },
        }),
        "/backends/enable" if post => Ok(Request::Enable {
            service: need("service")?,
            backend: need("backend")?,
        }),
        "/backends/weight" if post => Ok(Request::Weight {
            service: need("service")?,
            backend: need("backend")?,
            weight: need("weight")?
                .parse()
                .map_err(|_| Response::error(400, "weight must be a number 0-65535"))?,
        }),
        "/metrics" | "/status" | "/" | "/services" | "/backends" | "/latency" | "/flows"
        | "/gslb" | "/latency/reset" | "/reload" | "/backends/drain" | "/backends/enable"
        | "/backends/weight" => Err(Response::error(405, "method not allowed")),
        _ => Err(Response::error(404, "no such endpoint")),
    }
}

/// Compares without stopping at the first difference (the token's bytes take the same time
/// to refuse wherever a guess goes wrong).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The running API server; dropping it stops the thread.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why the API did not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("api thread: {0}")]
    Thread(std::io::Error),
}

/// Listens on `addr`; each request becomes a command for the management loop.
pub fn serve(
    addr: SocketAddr,
    to_mgmt: Sender<Command>,
    token: Option<String>,
) -> Result<ApiServer, ApiError> {
    // Off loopback, every call needs the token; on loopback, changes do (when there is one).
    let all_need_token = !addr.ip().is_loopback();
    let server = Arc::new(
        tiny_http::Server::http(addr).map_err(|source| ApiError::Listen { addr, source })?,
    );
    let srv = server.clone();
    let thread = std::thread::Builder::new()
        .name("sy-api".into())
        .spawn(move || {
            for req in srv.incoming_requests() {
                let method = req.method().as_str().to_string();
                let url = req.url().to_string();
                let openmetrics = req.headers().iter().any(|h| {
                    h.field.equiv("Accept")
                        && h.value.as_str().contains("application/openmetrics-text")
                });
                let authorized = token.as_ref().is_none_or(|t| {
                    req.headers().iter().any(|h| {
                        h.field.equiv("Authorization")
                            && constant_time_eq(
                                h.value
                                    .as_str()
                                    .strip_prefix("Bearer ")
                                    .unwrap_or("")
                                    .as_bytes(),
                                t.as_bytes(),
                            )
                    })
                });
                // No endpoint takes a body: one announced is refused, never read (a slow
                // sender cannot hold the API's thread).
                let has_body = req.body_length().is_some_and(|n| n > 0)
                    || req
                        .headers()
                        .iter()
                        .any(|h| h.field.equiv("Transfer-Encoding"));
                let mut resp = if has_body {
                    Response::error(413, "no request takes a body")
                } else if !authorized && (all_need_token || method != "GET") {
                    Response::error(401, "this call needs the API token (Authorization: Bearer)")
                } else {
                    match parse(&method, &url) {
                        Err(r) => r,
                        Ok(r) => {
                            let (tx, rx) = channel();
                            if to_mgmt.send(Command { req: r, reply: tx }).is_err() {
                                Response::error(503, "management loop stopped")
                            } else {
                                rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                                    Response::error(503, "management loop busy")
                                })
                            }
                        }
                    }
                };
                if resp.content_type.starts_with("application/openmetrics") && !openmetrics {
                    resp.body = to_prometheus_text(&resp.body);
                    resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
                }
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    resp.content_type.as_bytes(),
                )
                .expect("static header");
                let mut r = tiny_http::Response::from_string(resp.body)
                    .with_status_code(resp.status)
                    .with_header(header);
                if has_body {
                    r = r.with_header(
                        tiny_http::Header::from_bytes(&b"Connection"[..], &b"close"[..])
                            .expect("static header"),
                    );
                }
                let _ = req.respond(r);
            }
        })
        .map_err(ApiError::Thread)?;
    Ok(ApiServer {
        server,
        thread: Some(thread),
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    worker: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    service: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    worker: String,
    /// Not `quantile`: that label is reserved for summaries.
    percentile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: String,
}

/// The HA pair's metrics (with `[ha]`).
fn ha_metrics(reg: &mut Registry, h: &super::ha::Ha, per: &[crate::stats::Counters]) {
    use super::ha::Role;
    use crate::stats::Ctr;
    let role = Family::<RoleLabel, Gauge>::default();
    for r in [Role::Master, Role::Backup, Role::Partial] {
        role.get_or_create(&RoleLabel {
            role: r.name().into(),
        })
        .set(i64::from(h.role() == r));
    }
    reg.register(
        "ha_role",
        "This node's role in the HA pair (1 on the current one)",
        role,
    );
    let now = std::time::Instant::now();
    for (name, help, v) in [
        (
            "ha_ready",
            "1 once the peer's bulk resync is complete",
            i64::from(h.ready()),
        ),
        (
            "ha_peer_up",
            "1 while the peer's hellos arrive",
            i64::from(h.peer_up(now)),
        ),
        (
            "ha_sync_lag_milliseconds",
            "Age of the oldest record in the last batch sent to the peer",
            h.counters.sync_lag_ms as i64,
        ),
        (
            "ha_last_failover_timestamp_seconds",
            "When this node last became master (Unix time; 0: never)",
            h.last_failover_unix().unwrap_or(0) as i64,
        ),
    ] {
        let g = Gauge::<i64>::default();
        g.set(v);
        reg.register(name, help, g);
    }
    let sum = |c: Ctr| per.iter().map(|x| x.get(c)).sum::<u64>();
    let c = &h.counters;
    for (name, help, rows) in [
        (
            "ha_sync_records",
            "Sync records by direction",
            vec![
                ("sent", c.records_sent),
                ("received", c.records_received),
                ("installed", sum(Ctr::SyncInstalled)),
                ("install_failed", sum(Ctr::SyncInstallFailed)),
                ("dropped", sum(Ctr::SyncDropped)),
            ],
        ),
        (
            "ha_sync_datagrams",
            "Sync datagrams by direction (bad: wrong sender, HMAC, version or format)",
            vec![
                ("sent", c.datagrams_sent),
                ("received", c.datagrams_received),
                ("bad", c.datagrams_bad),
                ("send_failed", c.send_errors),
            ],
        ),
        (
            "ha_bulk_resyncs",
            "Bulk resyncs sent to and received from the peer",
            vec![("sent", c.bulks_sent), ("received", c.bulks_received)],
        ),
    ] {
        let f = Family::<DirectionLabel, Counter>::default();
        for (d, v) in rows {
            f.get_or_create(&DirectionLabel {
                direction: d.into(),
            })
            .inc_by(v);
        }
        reg.register(name, help, f);
    }
    for (name, help, v) in [
        ("ha_failovers", "Times this node became master", c.failovers),
        (
            "ha_both_active",
            "Times both nodes said master at once (split brain windows)",
            c.both_active,
        ),
    ] {
        let k = Counter::<u64>::default();
        k.inc_by(v);
        reg.register(name, help, k);
    }
}

/// Renders every metric in OpenMetrics text.
pub fn metrics(m: &Mgmt) -> String {
    let mut reg = Registry::with_prefix("switchyard");
    let (_, per) = super::totals(&m.links);
    let per_worker = |name: &str, help: &str, reg: &mut Registry, idx: usize| {
        let fam = Family::<WorkerLabel, Counter>::default();
        for (w, c) in per.iter().enumerate() {
            fam.get_or_create(&WorkerLabel {
                worker: w.to_string(),
            })
            .inc_by(c.0[idx]);
        }
        reg.register(name, help, fam);
    };
    use crate::stats::Ctr;
    for (name, help, c) in [
        ("rx_packets", "Frames received", Ctr::RxPackets),
        ("rx_bytes", "Bytes received", Ctr::RxBytes),
        ("tx_packets", "Frames the devices took", Ctr::TxPackets),
        ("forwarded_packets", "Frames forwarded", Ctr::Forwarded),
        (
            "replied_packets",
            "Frames answered (ARP, ICMP)",
            Ctr::Replied,
        ),
        (
            "consumed_packets",
            "Frames used up by the balancer",
            Ctr::Consumed,
        ),
        (
            "generated_packets",
            "Frames the balancer originated (ARP)",
            Ctr::Generated,
        ),
        (
            "steered_out_packets",
            "Frames handed to their conn's owner core",
            Ctr::SteeredOut,
        ),
        (
            "steered_in_packets",
            "Frames taken over from another core",
            Ctr::SteeredIn,
        ),
        (
            "routed_packets",
            "Frames routed (gateway mode transit)",
            Ctr::Routed,
        ),
        (
            "icmp_sent_packets",
            "ICMP errors the balancer sent",
            Ctr::IcmpSent,
        ),
        ("flows_created", "Conns created", Ctr::FlowsCreated),
        ("flows_expired", "Conns reclaimed", Ctr::FlowsExpired),
        (
            "syn_cookies_sent",
            "SYN-ACKs with a cookie the SYN proxy sent (no conn made)",
            Ctr::SynCookiesSent,
        ),
        (
            "syn_cookies_valid",
            "Client ACKs with a valid cookie (a conn made, a SYN sent to the backend)",
            Ctr::SynCookiesValid,
        ),
        ("fragments", "IPv4 fragments received", Ctr::Fragments),
        (
            "half_open_reclaimed",
            "Half-open conns reclaimed to make room for new ones",
            Ctr::HalfOpenReclaimed,
        ),
    ] {
        per_worker(name, help, &mut reg, c as usize);
    }
    for (name, help, ctr) in [
        ("flows_active", "Live conns", Ctr::FlowsActive),
        (
            "flow_capacity",
            "Conns the table holds at most",
            Ctr::FlowCapacity,
        ),
        (
            "flow_table_bytes",
            "Memory of the conn table (conn buckets and index)",
            Ctr::FlowTableBytes,
        ),
        (
            "flows_half_open",
            "Live TCP conns whose handshake is not complete",
            Ctr::FlowsHalfOpen,
        ),
        (
            "syn_cookies_on",
            "1 while the worker answers SYNs with cookies",
            Ctr::SynCookiesOn,
        ),
        (
            "udp_pressure",
            "1 while UDP conns get the short idle timeout (table or SNAT ports under pressure)",
            Ctr::UdpPressure,
        ),
    ] {
        let g = Family::<WorkerLabel, Gauge>::default();
        for (w, c) in per.iter().enumerate() {
            g.get_or_create(&WorkerLabel {
                worker: w.to_string(),
            })
            .set(c.get(ctr) as i64);
        }
        reg.register(name, help, g);
    }
    // Where a worker's busy rounds go: the driver's rx burst, deciding and rewriting, the rest
    // (tx bursts, exception path, steered frames). The worker counts nanoseconds.
    let busy = Family::<PhaseLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    for (w, c) in per.iter().enumerate() {
        for (phase, ctr) in [
            ("rx", Ctr::BusyRxNs),
            ("work", Ctr::BusyWorkNs),
            ("tx", Ctr::BusyTxNs),
        ] {
            busy.get_or_create(&PhaseLabel {
                worker: w.to_string(),
                phase: phase.into(),
            })
            .inc_by(c.get(ctr) as f64 / 1e9);
        }
    }
    reg.register("busy_seconds", "Time of busy poll rounds by phase", busy);
    if let Some(h) = m.ha() {
        ha_metrics(&mut reg, h, &per);
    }
    if let Some(b) = &m.bgp {
        b.metrics(&mut reg);
    }
    let losses = m.rx_losses();
    for (i, (name, help)) in [
        (
            "port_rx_missed",
            "Frames the port's device dropped: its rx ring was full",
        ),
        (
            "port_rx_errors",
            "Frames the port's device received in error",
        ),
        (
            "port_rx_nombuf",
            "Receive mbuf allocation failures of the port",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let fam = Family::<Vec<(&'static str, String)>, Counter>::default();
        for (port, v) in &losses {
            fam.get_or_create(&vec![("port", port.clone())])
                .inc_by(v[i]);
        }
        reg.register(name, help, fam);
    }
    if let Some(g) = &m.gslb {
        let worker = |i: usize| -> u64 { m.links.iter().map(|l| l.stats.name_answers(i)).sum() };
        g.metrics(&mut reg, &worker);
    }
    let drops = Family::<ReasonLabel, Counter>::default();
    for r in DropReason::ALL {
        let v: u64 = per.iter().map(|c| c.0[DROP_BASE + r as usize]).sum();
        drops
            .get_or_create(&ReasonLabel {
                reason: r.name().into(),
            })
            .inc_by(v);
    }
    reg.register("dropped_packets", "Frames dropped, by reason", drops);

    let (sp, sb, sf) = (
        Family::<ServiceLabel, Counter>::default(),
        Family::<ServiceLabel, Counter>::default(),
        Family::<ServiceLabel, Counter>::default(),
    );
    for (i, s) in m
        .snap
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.removed)
    {
        let [p, b, f] = m.sum3(|w| w.service(i));
        let l = ServiceLabel {
            service: s.name.clone(),
        };
        sp.get_or_create(&l).inc_by(p);
        sb.get_or_create(&l).inc_by(b);
        sf.get_or_create(&l).inc_by(f);
    }
    reg.register(
        "service_packets",
        "Packets of a service's conns forwarded",
        sp,
    );
    reg.register(
        "service_bytes",
        "IPv4 bytes of a service's conns forwarded",
        sb,
    );
    reg.register("service_flows", "Conns created for a service", sf);

    let (bp, bb, bf) = (
        Family::<BackendLabel, Counter>::default(),
        Family::<BackendLabel, Counter>::default(),
        Family::<BackendLabel, Counter>::default(),
    );
    let (up, weight, conns) = (
        Family::<BackendLabel, Gauge>::default(),
        Family::<BackendLabel, Gauge>::default(),
        Family::<BackendLabel, Gauge>::default(),
    );
    let transitions = Family::<BackendLabel, Counter>::default();
    for (i, b) in m
        .snap
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.removed)
    {
        let s = &m.snap.services[usize::from(b.service)];
        let l = BackendLabel {
            service: s.name.clone(),
            backend: format!("{}:{}", b.addr, b.port),
        };
        let [p, by, f] = m.sum3(|w| w.backend(i));
        bp.get_or_create(&l).inc_by(p);
        bb.get_or_create(&l).inc_by(by);
        bf.get_or_create(&l).inc_by(f);
        let key = (s.name.clone(), b.addr, b.port);
        let healthy = m.runtime.get(&key).is_none_or(|r| r.healthy);
        up.get_or_create(&l).set(i64::from(healthy));
        weight.get_or_create(&l).set(i64::from(b.weight));
        conns
            .get_or_create(&l)
            .set(i64::from(m.load.total(BackendId(i as u32))));
        transitions
            .get_or_create(&l)
            .inc_by(m.health.transitions(&key));
    }
    reg.register(
        "backend_packets",
        "Packets forwarded to or from a backend's conns",
        bp,
    );
    reg.register("backend_bytes", "IPv4 bytes of a backend's conns", bb);
    reg.register("backend_flows", "Conns created to a backend", bf);
    reg.register(
        "backend_up",
        "1 if the backend passes its health checks",
        up,
    );
    reg.register("backend_weight", "Effective weight for new flows", weight);
    reg.register("backend_active_conns", "Live conns to the backend", conns);
    reg.register(
        "backend_health_transitions",
        "Health state changes of the backend",
        transitions,
    );

    let lat = Family::<QuantileLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (w, h) in m.latency.iter().enumerate() {
        for (q, name) in [
            (0.5, "p50"),
            (0.9, "p90"),
            (0.99, "p99"),
            (0.999, "p99.9"),
            (1.0, "max"),
        ] {
            let v = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            lat.get_or_create(&QuantileLabel {
                worker: w.to_string(),
                percentile: name.into(),
            })
            .set(v as f64 / 1e9);
        }
    }
    reg.register(
        "worker_latency_seconds",
        "Time from rx burst to tx of the packets, quantiles since start or the last /latency/reset",
        lat,
    );
    let reloads = Counter::<u64>::default();
    reloads.inc_by(m.reloads);
    reg.register("reloads", "Successful configuration reloads", reloads);
    let failed = Counter::<u64>::default();
    failed.inc_by(m.reloads_failed);
    reg.register("reload_failures", "Rejected configuration reloads", failed);
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text: counters are named with
/// their `_total` suffix in HELP/TYPE too, and there is no `# EOF`. Served unless the scraper
/// asks for OpenMetrics.
pub fn to_prometheus_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in om.lines() {
        if l == "# EOF" {
            continue;
        }
        let fixed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(fixed.as_deref().unwrap_or(l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_get_clear_errors() {
        assert!(matches!(parse("GET", "/metrics"), Ok(Request::Metrics)));
        assert!(matches!(
            parse("GET", "/flows?limit=5"),
            Ok(Request::Flows(5))
        ));
        match parse(
            "POST",
            "/backends/drain?service=web&backend=10.20.0.11%3A80&timeout_s=3",
        ) {
            Ok(Request::Drain {
                service,
                backend,
                timeout_s,
            }) => {
                assert_eq!(
                    (service.as_str(), backend.as_str(), timeout_s),
                    ("web", "10.20.0.11:80", Some(3))
                );
            }
            _ => panic!("drain"),
        }
        let e = parse("POST", "/backends/weight?service=web&backend=10.20.0.11")
            .err()
            .unwrap();
        assert_eq!(e.status, 400);
        assert!(e.body.contains("weight"));
        assert_eq!(parse("GET", "/reload").err().unwrap().status, 405);
        assert!(matches!(
            parse("POST", "/latency/reset"),
            Ok(Request::LatencyReset)
        ));
        // A reset is a change: not by GET.
        assert_eq!(parse("GET", "/latency/reset").err().unwrap().status, 405);
        assert_eq!(parse("GET", "/nope").err().unwrap().status, 404);
        assert_eq!(parse("GET", "/flows?limit=x").err().unwrap().status, 400);
    }
}
