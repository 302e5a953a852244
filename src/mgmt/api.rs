//! The management API: a small HTTP server on its own threads (`mgmt::http`) that turns requests
//! into [`Command`]s for the management loop, which owns all state and answers them between
//! ticks. JSON for people and scripts, Prometheus/OpenMetrics text at `/metrics`
//! (prometheus-client).
//!
//! No client can hold the API up or grow it: the head of a request within 8 KiB (431) and
//! 2 s (408), its target within 2 KiB (414), no body (413, never read), at most 64 open
//! connections (a new one beyond closes the oldest idle or slow one), one thread for every
//! socket and four that wait on the management loop; `mgmt::http` has the details.
//! Changes (POST) need the token when there is one (401), and off loopback every call does.
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
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Mgmt;
pub use super::http::Response;
use super::http::{self, Head, Limits, Reply};
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

/// The running API server; dropping it stops its threads.
pub struct ApiServer {
    _server: http::Server,
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
    let listener = http::listen(addr).map_err(|e| ApiError::Listen {
        addr,
        source: Box::new(e),
    })?;
    serve_on(listener, to_mgmt, token, Limits::DEFAULT)
}

/// Serves on `listener` within `limits`.
fn serve_on(
    listener: std::net::TcpListener,
    to_mgmt: Sender<Command>,
    token: Option<String>,
    limits: Limits,
) -> Result<ApiServer, ApiError> {
    // Off loopback, every call needs the token; on loopback, changes do (when there is one).
    let access = Access {
        reads_need_token: !listener
            .local_addr()
            .map_err(ApiError::Thread)?
            .ip()
            .is_loopback(),
        token,
    };
    let server = http::start(listener, "sy-api", limits, move |head| {
        match decide(head, &access) {
            Err(refusal) => Reply::Now(refusal),
            Ok((req, openmetrics)) => {
                let to_mgmt = to_mgmt.clone();
                Reply::Later(Box::new(move || ask(&to_mgmt, req, openmetrics)))
            }
        }
    })
    .map_err(ApiError::Thread)?;
    Ok(ApiServer { _server: server })
}

/// Who may call what.
struct Access {
    token: Option<String>,
    /// Off loopback, reads need the token too.
    reads_need_token: bool,
}

/// What a request head asks of the management loop, and whether the client takes
/// OpenMetrics; or the refusal to send at once.
fn decide(head: &Head, access: &Access) -> Result<(Request, bool), Response> {
    let openmetrics = head
        .values("Accept")
        .any(|v| contains(v, b"application/openmetrics-text"));
    let authorized = access.token.as_ref().is_none_or(|t| {
        head.values("Authorization")
            .any(|v| constant_time_eq(v.strip_prefix(b"Bearer ").unwrap_or(b""), t.as_bytes()))
    });
    // No endpoint takes a body: one announced is refused, never read (a slow sender cannot
    // hold the API up).
    let has_body = head
        .values("Content-Length")
        .any(|v| v.trim_ascii() != b"0")
        || head.values("Transfer-Encoding").next().is_some();
    if has_body {
        return Err(Response::error(413, "no request takes a body"));
    }
    if !authorized && (access.reads_need_token || head.method != "GET") {
        return Err(Response::error(
            401,
            "this call needs the API token (Authorization: Bearer)",
        ));
    }
    parse(&head.method, &head.target).map(|r| (r, openmetrics))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asks the management loop (on a worker: it answers between ticks, within 5 s).
fn ask(to_mgmt: &Sender<Command>, req: Request, openmetrics: bool) -> Response {
    let (tx, rx) = channel();
    let mut resp = if to_mgmt.send(Command { req, reply: tx }).is_err() {
        Response::error(503, "management loop stopped")
    } else {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Response::error(503, "management loop busy"))
    };
    if resp.content_type.starts_with("application/openmetrics") && !openmetrics {
        resp.body = to_prometheus_text(&resp.body);
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    }
    resp
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

    #[test]
    fn garbage_queries_get_400() {
        for target in [
            "/flows?limit=-1",
            "/flows?limit=99999999999999999999999",
            "/backends/weight?service=web&backend=10.20.0.11&weight=4294967296",
            "/backends/weight?service=web&backend=10.20.0.11&weight=%FF",
            "/backends/drain?service=web&backend=10.20.0.11&timeout_s=soon",
            "/backends/drain?service=web",
            "/backends/enable?service=&backend=10.20.0.11",
            "/backends/enable?&&==&",
        ] {
            let method = if target.starts_with("/flows") {
                "GET"
            } else {
                "POST"
            };
            assert_eq!(parse(method, target).err().unwrap().status, 400, "{target}");
        }
    }

    fn head(raw: &str) -> Head {
        http::parse_head(raw.as_bytes(), &Limits::DEFAULT)
            .unwrap()
            .unwrap()
    }

    const TOKEN: &str = "lab-token-0123456789";

    fn access(reads_need_token: bool) -> Access {
        Access {
            token: Some(TOKEN.into()),
            reads_need_token,
        }
    }

    fn refused(raw: &str, a: &Access) -> u16 {
        decide(&head(raw), a).err().map_or(0, |r| r.status)
    }

    #[test]
    fn changes_need_the_token_and_reads_on_loopback_do_not() {
        let a = access(false);
        let post = "POST /reload HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(refused(&format!("{post}\r\n"), &a), 401);
        for wrong in [
            "",
            "Bearer ",
            "Bearer lab-token",
            "lab-token-0123456789",
            "Bearer x",
        ] {
            let raw = format!("{post}Authorization: {wrong}\r\n\r\n");
            assert_eq!(refused(&raw, &a), 401, "{wrong:?}");
        }
        let good = format!("{post}Authorization: Bearer {TOKEN}\r\n\r\n");
        assert!(matches!(
            decide(&head(&good), &a),
            Ok((Request::Reload, false))
        ));
        // Among several Authorization lines, the right one counts.
        let two = format!("{post}Authorization: Bearer x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
        assert!(decide(&head(&two), &a).is_ok());
        assert!(decide(&head("GET /status HTTP/1.1\r\n\r\n"), &a).is_ok());
        // Off loopback, reads too.
        let off = access(true);
        assert_eq!(refused("GET /status HTTP/1.1\r\n\r\n", &off), 401);
        let read = format!("GET /status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        assert!(matches!(
            decide(&head(&read), &off),
            Ok((Request::Status, false))
        ));
        // Without a token, everything goes (on loopback: `check` refuses one elsewhere).
        let open = Access {
            token: None,
            reads_need_token: false,
        };
        assert!(decide(&head(&format!("{post}\r\n")), &open).is_ok());
    }

    #[test]
    fn a_body_is_refused_before_anything_else() {
        let a = access(false);
        for body in [
            "Content-Length: 1000",
            "Content-Length: junk",
            "Transfer-Encoding: chunked",
        ] {
            // Even with the token, and before a 401 without it.
            let raw = format!("POST /reload HTTP/1.1\r\n{body}\r\n\r\n");
            assert_eq!(refused(&raw, &a), 413, "{body}");
            let raw =
                format!("POST /reload HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n{body}\r\n\r\n");
            assert_eq!(refused(&raw, &a), 413, "{body}");
        }
        let empty = format!(
            "POST /reload HTTP/1.1\r\nContent-Length: 0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        assert!(decide(&head(&empty), &a).is_ok());
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let a = access(false);
        let plain = decide(&head("GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n"), &a);
        assert!(matches!(plain, Ok((Request::Metrics, false))));
        let om =
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n";
        assert!(matches!(
            decide(&head(om), &a),
            Ok((Request::Metrics, true))
        ));
    }

    /// The API on an ephemeral loopback port, with a management loop that answers every
    /// command with the request's name.
    fn api(token: Option<&str>) -> (ApiServer, SocketAddr) {
        let (tx, rx) = channel::<Command>();
        std::thread::spawn(move || {
            for c in rx {
                let name = format!("{:?}", c.req);
                let _ = c
                    .reply
                    .send(Response::json(200, &serde_json::json!({ "req": name })));
            }
        });
        let l = http::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = serve_on(l, tx, token.map(String::from), Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{e}"));
        (s, addr)
    }

    fn call(addr: SocketAddr, raw: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, out)
    }

    #[test]
    fn the_api_asks_the_management_loop_and_refuses_what_it_must() {
        let (_s, addr) = api(Some(TOKEN));
        let (code, out) = call(addr, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(code, 200, "{out}");
        assert!(out.contains("Content-Type: application/json\r\n") && out.contains("\"Status\""));
        let (code, out) = call(addr, "POST /backends/weight?service=web HTTP/1.1\r\n\r\n");
        assert_eq!(code, 401, "{out}");
        assert!(out.contains("needs the API token"), "{out}");
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let (code, out) = call(
            addr,
            &format!("POST /backends/weight?service=web&backend=b&weight=x HTTP/1.1\r\n{auth}\r\n"),
        );
        assert_eq!(code, 400, "{out}");
        let (code, out) = call(addr, &format!("POST /reload HTTP/1.1\r\n{auth}\r\n"));
        assert_eq!((code, out.contains("\"Reload\"")), (200, true), "{out}");
        assert_eq!(call(addr, "GET /nope HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(call(addr, "GET /reload HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(call(addr, "{\"json\": [1,2\r\n\r\n").0, 400);
        let (code, _) = call(
            addr,
            &format!("POST /reload HTTP/1.1\r\n{auth}Content-Length: 5\r\n\r\n{{}}"),
        );
        assert_eq!(code, 413);
    }
}
