//! `switchyard ctl`: the operator's CLI over the management API. Human tables by default,
//! `--json` for scripts. The API is found from `--api URL`, else `[api] listen` of
//! `--config F`, else the default address.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use crate::config::{Config, ConfigError, DEFAULT_API};

#[derive(Subcommand, Debug)]
pub enum CtlCmd {
    /// Totals, uptime, reloads, the HA pair.
    Status,
    /// Exit 0 when the node is fit to carry traffic (workers progressing, ports up, HA bulk
    /// resync complete), else 1 with the reasons: for keepalived's track_script.
    Health,
    /// Services with their traffic.
    Services,
    /// Backends: state, health, weight, conns, traffic.
    Backends,
    /// Stop new flows to a backend; established ones finish (optionally forced after a timeout).
    Drain {
        service: String,
        /// ADDRESS or ADDRESS:PORT
        backend: String,
        #[arg(long)]
        timeout_s: Option<u64>,
    },
    /// Undo a drain.
    Enable { service: String, backend: String },
    /// Set a backend's weight at run time (0 = no new flows).
    Weight {
        service: String,
        backend: String,
        weight: u32,
    },
    /// Re-read the configuration file.
    Reload,
    /// Worker and health-probe latency quantiles.
    Latency {
        /// Start the histograms afresh (then show them, empty).
        #[arg(long)]
        reset: bool,
    },
    /// GSLB: names and what they answer now, peer sites and their services.
    Gslb,
    /// Scale-out (`[bgp]`): what this node announces; drain it or announce again.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Live conns.
    Flows {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Announced VIPs, drained or not, live conns.
    Status,
    /// Withdraw every VIP; existing flows keep flowing. With --wait: until they are gone (no
    /// conn left, or none forwarded for --idle-s: the routers send them elsewhere).
    Drain {
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 2.0)]
        idle_s: f64,
        /// With --wait: give up (exit 1) after this long.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// Announce the VIPs again.
    Enable,
}

/// What `ctl` could not do.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{}: {source}", path.display())]
    Config { path: PathBuf, source: ConfigError },
    #[error("{}: [api] listen is empty (API disabled)", .0.display())]
    ApiDisabled(PathBuf),
    #[error("drained, but {0} conns still live at the timeout")]
    DrainTimeout(u64),
    #[error("cannot reach the API at {base}: {source}")]
    Unreachable { base: String, source: ureq::Error },
    #[error("{url}: HTTP {code}")]
    Status { url: String, code: u16 },
    #[error("reading {url}: {source}")]
    Read { url: String, source: ureq::Error },
    #[error("bad JSON from {url}: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    /// The API's own answer to a refused request.
    #[error("{0}")]
    Refused(String),
    /// `ctl health`: the node is not fit to carry traffic (why).
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

/// `ctl health`: `GET /health`, whose 503 is an answer, not a failure to reach the API.
fn health(base: &str, json: bool) -> Result<String, CtlError> {
    // keepalived's track_script runs this every second: a hung API is a failed check soon.
    let (status, v, _) = call_any_status(base, "GET", "/health", Some(Duration::from_secs(2)))?;
    let ok = status == 200;
    let out = if json {
        serde_json::to_string_pretty(&v).unwrap_or_default()
    } else {
        let why: Vec<String> = v["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        if ok {
            "healthy".to_string()
        } else {
            why.join("; ")
        }
    };
    if ok {
        Ok(out)
    } else {
        Err(CtlError::Unhealthy(out))
    }
}

/// The HA pair's line of `ctl status` (nothing on a single node).
fn ha_line(h: &Value) -> String {
    if h.is_null() {
        return String::new();
    }
    let p = &h["peer"];
    format!(
        "\nha: role {}  ready {}  peer {} {} ({})  sync sent {} received {} installed {} \
         (failed {}, dropped {})  lag {} ms  failovers {}  last failover {}",
        s(&h["role"]),
        s(&h["ready"]),
        s(&p["address"]),
        if p["up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        },
        s(&p["role"]),
        s(&h["records_sent"]),
        s(&h["records_received"]),
        s(&h["records_installed"]),
        s(&h["records_install_failed"]),
        s(&h["records_dropped"]),
        s(&h["sync_lag_ms"]),
        s(&h["failovers"]),
        s(&h["last_failover"]),
    )
}

/// The API token ctl sends (`SWITCHYARD_API_TOKEN`, else `--config`'s `[api] token_file`).
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn token() -> Option<&'static str> {
    TOKEN
        .get_or_init(|| {
            std::env::var("SWITCHYARD_API_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.trim().to_string())
        })
        .as_deref()
}

/// A request to `url` with the token, if there is one.
fn authorized<B>(r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    match token() {
        Some(t) => r.header("Authorization", format!("Bearer {t}")),
        None => r,
    }
}

/// Where the API is: `--api`, else the config's `[api] listen`, else the default.
pub fn api_base(api: Option<&str>, config: Option<&PathBuf>) -> Result<String, CtlError> {
    let addr = match (api, config) {
        (Some(a), _) => a.to_string(),
        (None, Some(c)) => {
            let cfg = Config::load(c).map_err(|source| CtlError::Config {
                path: c.clone(),
                source,
            })?;
            if let Ok(t) = cfg.api.token() {
                let _ = TOKEN.set(t);
            }
            match cfg.api.listen {
                Some(a) => a.to_string(),
                None => return Err(CtlError::ApiDisabled(c.clone())),
            }
        }
        (None, None) => DEFAULT_API.to_string(),
    };
    Ok(if addr.starts_with("http://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    })
}

fn call(base: &str, method: &str, path: &str) -> Result<Value, CtlError> {
    let url = format!("{base}{path}");
    let resp = if method == "POST" {
        authorized(ureq::post(&url)).send_empty()
    } else {
        authorized(ureq::get(&url)).call()
    };
    match resp {
        Ok(mut r) => {
            let text = r
                .body_mut()
                .read_to_string()
                .map_err(|source| CtlError::Read {
                    url: url.clone(),
                    source,
                })?;
            serde_json::from_str(&text).map_err(|source| CtlError::Json { url, source })
        }
        Err(ureq::Error::StatusCode(code)) => Err(CtlError::Status { url, code }),
        Err(source) => Err(CtlError::Unreachable {
            base: base.to_string(),
            source,
        }),
    }
}

/// ureq treats 4xx as errors without the body; ask again for the body to show the message.
fn call_with_error_body(base: &str, method: &str, path: &str) -> Result<Value, CtlError> {
    let (status, v, text) = call_any_status(base, method, path, None)?;
    if status >= 400 {
        return Err(CtlError::Refused(
            v["error"].as_str().unwrap_or(&text).to_string(),
        ));
    }
    Ok(v)
}

/// One request whatever its status: (status, the JSON body, the body as text).
fn call_any_status(
    base: &str,
    method: &str,
    path: &str,
    timeout: Option<Duration>,
) -> Result<(u16, Value, String), CtlError> {
    let url = format!("{base}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into();
    let resp = if method == "POST" {
        authorized(agent.post(&url)).send_empty()
    } else {
        authorized(agent.get(&url)).call()
    };
    let mut r = resp.map_err(|source| CtlError::Unreachable {
        base: base.to_string(),
        source,
    })?;
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .read_to_string()
        .map_err(|source| CtlError::Read {
            url: url.clone(),
            source,
        })?;
    let v: Value = serde_json::from_str(&text).map_err(|source| CtlError::Json { url, source })?;
    Ok((status, v, text))
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A")
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn us(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1000.0))
}

/// Runs one ctl command; returns what to print.
pub fn run(base: &str, cmd: &CtlCmd, json: bool) -> Result<String, CtlError> {
    let v = match cmd {
        CtlCmd::Status => call(base, "GET", "/status")?,
        CtlCmd::Health => return health(base, json),
        CtlCmd::Services => call(base, "GET", "/services")?,
        CtlCmd::Backends => call(base, "GET", "/backends")?,
        CtlCmd::Latency { reset: false } => call(base, "GET", "/latency")?,
        CtlCmd::Latency { reset: true } => call(base, "POST", "/latency/reset")?,
        CtlCmd::Flows { limit } => call(base, "GET", &format!("/flows?limit={limit}"))?,
        CtlCmd::Gslb => call(base, "GET", "/gslb")?,
        CtlCmd::Node {
            cmd: NodeCmd::Status,
        } => call(base, "GET", "/node")?,
        CtlCmd::Node {
            cmd: NodeCmd::Enable,
        } => call_with_error_body(base, "POST", "/node/enable")?,
        CtlCmd::Node {
            cmd:
                NodeCmd::Drain {
                    wait,
                    idle_s,
                    timeout_s,
                },
        } => {
            let mut v = call_with_error_body(base, "POST", "/node/drain")?;
            let until = std::time::Instant::now() + Duration::from_secs(*timeout_s);
            let gone = |v: &Value| {
                v["active_conns"].as_u64().unwrap_or(0) == 0
                    || v["idle_s"].as_f64().unwrap_or(0.0) >= *idle_s
            };
            while *wait && !gone(&v) {
                if std::time::Instant::now() > until {
                    return Err(CtlError::DrainTimeout(
                        v["active_conns"].as_u64().unwrap_or(0),
                    ));
                }
                std::thread::sleep(Duration::from_millis(500));
                v = call(base, "GET", "/node")?;
            }
            v
        }
        CtlCmd::Reload => call_with_error_body(base, "POST", "/reload")?,
        CtlCmd::Drain {
            service,
            backend,
            timeout_s,
        } => {
            let t = timeout_s.map_or(String::new(), |t| format!("&timeout_s={t}"));
            call_with_error_body(
                base,
                "POST",
                &format!(
                    "/backends/drain?service={service}&backend={}{t}",
                    enc(backend)
                ),
            )?
        }
        CtlCmd::Enable { service, backend } => call_with_error_body(
            base,
            "POST",
            &format!(
                "/backends/enable?service={service}&backend={}",
                enc(backend)
            ),
        )?,
        CtlCmd::Weight {
            service,
            backend,
            weight,
        } => call_with_error_body(
            base,
            "POST",
            &format!(
                "/backends/weight?service={service}&backend={}&weight={weight}",
                enc(backend)
            ),
        )?,
    };
    if json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    Ok(match cmd {
        CtlCmd::Status => {
            let c = &v["counters"];
            format!(
                "switchyard {}  up {}s  workers {}  services {}  backends up {} / down {}  reloads {} (failed {})\n\
                 rx {}  tx {}  forwarded {}  replied {}  flows active {}  created {}",
                s(&v["version"]),
                s(&v["uptime_s"]),
                s(&v["workers"]),
                s(&v["services"]),
                s(&v["backends_up"]),
                s(&v["backends_down"]),
                s(&v["reloads"]),
                s(&v["reloads_failed"]),
                s(&c["rx_packets"]),
                s(&c["tx_packets"]),
                s(&c["forwarded"]),
                s(&c["replied"]),
                s(&c["flows_active"]),
                s(&c["flows_created"]),
            ) + &ha_line(&v["ha"])
        }
        CtlCmd::Health => unreachable!("answered above"),
        CtlCmd::Services => table(
            &[
                "SERVICE",
                "VIP",
                "PROTO",
                "MODE",
                "SCHEDULER",
                "UP",
                "FLOWS",
                "PACKETS",
                "BYTES",
            ],
            v.as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![
                        s(&x["name"]),
                        format!("{}:{}", s(&x["vip"]), s(&x["port"])),
                        s(&x["protocol"]),
                        s(&x["mode"]),
                        s(&x["scheduler"]),
                        format!("{}/{}", s(&x["backends_up"]), s(&x["backends"])),
                        s(&x["flows"]),
                        s(&x["packets"]),
                        s(&x["bytes"]),
                    ]
                })
                .collect(),
        ),
        CtlCmd::Backends => table(
            &[
                "SERVICE",
                "BACKEND",
                "STATE",
                "WEIGHT",
                "CONNS",
                "FLOWS",
                "PACKETS",
                "LAST ERROR",
            ],
            v.as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![
                        s(&x["service"]),
                        format!("{}:{}", s(&x["address"]), s(&x["port"])),
                        s(&x["state"]),
                        format!("{}/{}", s(&x["weight"]), s(&x["configured_weight"])),
                        s(&x["active_conns"]),
                        s(&x["flows"]),
                        s(&x["packets"]),
                        x["health"]["last_error"]
                            .as_str()
                            .filter(|e| !e.is_empty())
                            .unwrap_or("-")
                            .to_string(),
                    ]
                })
                .collect(),
        ),
        CtlCmd::Latency { .. } => {
            let mut rows: Vec<Vec<String>> = v["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, x)| {
                    vec![
                        format!("worker {i}"),
                        s(&x["count"]),
                        us(&x["p50_ns"]),
                        us(&x["p90_ns"]),
                        us(&x["p99_ns"]),
                        us(&x["p999_ns"]),
                        us(&x["max_ns"]),
                    ]
                })
                .collect();
            rows.extend(
                v["health_probes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        vec![
                            format!("probe {} {}", s(&x["service"]), s(&x["backend"])),
                            s(&x["count"]),
                            us(&x["p50_ns"]),
                            us(&x["p90_ns"]),
                            us(&x["p99_ns"]),
                            us(&x["p999_ns"]),
                            us(&x["max_ns"]),
                        ]
                    }),
            );
            table(
                &[
                    "WHAT", "COUNT", "P50 us", "P90 us", "P99 us", "P99.9 us", "MAX us",
                ],
                rows,
            )
        }
        CtlCmd::Flows { .. } => table(
            &[
                "SERVICE", "PROTO", "CLIENT", "VIP", "LOCAL", "BACKEND", "STATE",
            ],
            v["flows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![
                        s(&x["service"]),
                        s(&x["protocol"]),
                        s(&x["client"]),
                        s(&x["vip"]),
                        s(&x["local"]),
                        s(&x["backend"]),
                        s(&x["state"]),
                    ]
                })
                .collect(),
        ),
        CtlCmd::Gslb => gslb_tables(&v),
        CtlCmd::Node { .. } => format!(
            "announced: {}; drained: {}; live conns: {}; last forwarded {:.1} s ago",
            list(&v["announced"]),
            s(&v["drained"]),
            s(&v["active_conns"]),
            v["idle_s"].as_f64().unwrap_or(0.0)
        ),
        CtlCmd::Reload => format!(
            "reloaded; applied: {}; needs restart (not applied): {}",
            list(&v["applied"]),
            list(&v["restart_required"])
        ),
        CtlCmd::Drain { .. } | CtlCmd::Enable { .. } | CtlCmd::Weight { .. } => {
            format!(
                "{} {}: {}",
                s(&v["service"]),
                s(&v["backend"]),
                if v["weight"].is_null() {
                    s(&v["state"])
                } else {
                    format!("weight {}", s(&v["weight"]))
                }
            )
        }
    })
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `ctl gslb`: one table of names (each region's answers now), one of peer services.
fn gslb_tables(v: &Value) -> String {
    if v["enabled"] == Value::Bool(false) {
        return "no [gslb] configured".into();
    }
    let mut names = Vec::new();
    for n in v["names"].as_array().into_iter().flatten() {
        for r in n["answers_now"].as_array().into_iter().flatten() {
            let answers: Vec<String> = r["answers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let what = if a["a"].is_array() {
                        list(&a["a"])
                    } else {
                        s(&a["rcode"])
                    };
                    format!("{what} {:.0}%", a["share"].as_f64().unwrap_or(0.0) * 100.0)
                })
                .collect();
            names.push(vec![
                s(&n["name"]),
                s(&n["policy"]),
                s(&r["region"]),
                answers.join("; "),
                s(&n["queries_workers"]),
                s(&n["queries_kernel"]),
            ]);
        }
    }
    let mut sites = Vec::new();
    for site in v["sites"].as_array().into_iter().flatten() {
        for (name, svc) in site["services"].as_object().into_iter().flatten() {
            sites.push(vec![
                s(&site["name"]),
                s(&site["reachable"]),
                name.clone(),
                if svc["up"] == Value::Bool(true) {
                    "up".into()
                } else {
                    "down".into()
                },
                s(&svc["transitions"]),
                format!(
                    "{}/{}",
                    s(&svc["last_report"]["healthy"]),
                    s(&svc["last_report"]["backends"])
                ),
                s(&svc["last_report"]["conns"]),
            ]);
        }
    }
    format!(
        "{}\n{}",
        table(
            &[
                "NAME",
                "POLICY",
                "REGION",
                "ANSWERS NOW",
                "Q WORKERS",
                "Q KERNEL"
            ],
            names
        ),
        table(
            &[
                "SITE",
                "REACHABLE",
                "SERVICE",
                "STATE",
                "CHANGES",
                "HEALTHY",
                "CONNS"
            ],
            sites
        )
    )
}
