//! Configuration: the TOML file an operator writes, loaded through figment with
//! `SWITCHYARD_`-prefixed environment overrides (`SWITCHYARD_FLOWS__CAPACITY_PER_CORE=4096`),
//! parsed with `deny_unknown_fields`, then validated into errors that name the key.
//!
//! Every key and its default is documented in `conf/switchyard.toml`. Keys that only take effect
//! at start (`[dpdk]`, `[cores]`, interface ports) are marked "startup-only" there; the rest are
//! the ones a later reload may change.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

mod bgp;
mod gslb;
mod ha;
mod sanity;
mod validate;

use std::net::{Ipv4Addr, SocketAddr};

pub use bgp::{BgpConfig, BgpVipConfig};
pub use gslb::{
    AnswerConfig, GslbConfig, MAX_GSLB_ANSWERS, MAX_GSLB_NAMES, MAX_GSLB_REGIONS, NameConfig,
    NameServerConfig, Policy, RegionConfig, SiteConfig, WhenDown, in_zone, valid_dns_name,
};
pub use ha::HaConfig;

use crate::types::{Ipv4Cidr, MacAddr};

/// Most conns one worker's table may hold: 2^28, 12.5 GiB of table per core.
pub const MAX_FLOWS_PER_CORE: u32 = 1 << 28;

/// A whole Switchyard configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dpdk: DpdkConfig,
    pub cores: CoresConfig,
    #[serde(default)]
    pub flows: FlowsConfig,
    #[serde(default)]
    pub arp: ArpConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub nat: NatConfig,
    #[serde(default)]
    pub api: ApiConfig,
    pub interfaces: Vec<InterfaceConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// An active/backup pair (absent: a single node).
    #[serde(default)]
    pub ha: Option<HaConfig>,
    /// Global server load balancing: DNS for global names, peer sites (absent: none).
    #[serde(default)]
    pub gslb: Option<GslbConfig>,
    /// Scale-out behind ECMP routers: VIPs announced by BGP through BIRD (absent: none).
    #[serde(default)]
    pub bgp: Option<BgpConfig>,
    /// Flood defences: SYN cookies, UDP under pressure.
    #[serde(default)]
    pub protection: ProtectionConfig,
}

/// Whether proxy and gateway services answer SYNs with cookies (the SYN proxy).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SynCookies {
    /// Switched on per worker while it holds `syn_cookie_half_open` half-open conns or
    /// more (until they fall below half of it).
    #[default]
    Auto,
    On,
    Off,
}

/// `[protection]`: what keeps real clients served through floods (live-reloadable).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionConfig {
    pub syn_cookies: SynCookies,
    /// Half-open TCP conns per worker from which `auto` cookies switch on.
    pub syn_cookie_half_open: u32,
    /// Use of a worker's conn table or SNAT ports (percent) from which UDP conns idle for
    /// `udp_pressure_ms` are reclaimed (instead of after `flows.timeouts.udp_s`).
    pub pressure_percent: u8,
    pub udp_pressure_ms: u32,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        Self {
            syn_cookies: SynCookies::Auto,
            syn_cookie_half_open: 2000,
            pressure_percent: 50,
            udp_pressure_ms: 1000,
        }
    }
}

/// Bytes of a hex string (`None`: empty, odd length or not hex).
pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// `[dpdk]`: EAL and memory. Startup-only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    /// EAL arguments. Switchyard adds `--lcores`/`--main-lcore` from `[cores]` unless they are
    /// given here.
    #[serde(default)]
    pub eal_args: Vec<String>,
    /// Mbufs in the packet pool (2^n - 1 is most memory-efficient).
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// Per-lcore mempool cache.
    #[serde(default = "default_mbuf_cache")]
    pub mbuf_cache: u32,
    /// Rx/tx descriptors per queue.
    #[serde(default = "default_desc")]
    pub rx_descriptors: u16,
    #[serde(default = "default_desc")]
    pub tx_descriptors: u16,
}

fn default_mbufs() -> u32 {
    16383
}
fn default_mbuf_cache() -> u32 {
    256
}
fn default_desc() -> u16 {
    1024
}

/// `[cores]`: which CPU runs what. Startup-only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoresConfig {
    /// CPU of the management thread (EAL main lcore).
    pub management: u32,
    /// CPUs of the worker threads; worker i owns rx/tx queue i of every port.
    pub workers: Vec<u32>,
    /// Microseconds a worker sleeps after an empty poll round; 0 spins (production).
    #[serde(default)]
    pub idle_sleep_us: u32,
    /// Lets workers share a CPU with each other or with management (tests and small labs
    /// only: poll-mode workers sharing a CPU need `idle_sleep_us` to make progress).
    #[serde(default)]
    pub allow_shared: bool,
}

/// `[flows]`: per-core connection tables.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    #[serde(default = "default_capacity")]
    pub capacity_per_core: u32,
    /// Source-persistence templates per worker.
    #[serde(default = "default_persist_capacity")]
    pub persistence_capacity_per_core: u32,
    #[serde(default)]
    pub timeouts: FlowTimeouts,
}

fn default_capacity() -> u32 {
    1 << 20
}
fn default_persist_capacity() -> u32 {
    65536
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            capacity_per_core: default_capacity(),
            persistence_capacity_per_core: default_persist_capacity(),
            timeouts: FlowTimeouts::default(),
        }
    }
}

/// `[flows.timeouts]`: idle timeouts by state, in seconds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowTimeouts {
    pub tcp_syn_s: u32,
    pub tcp_established_s: u32,
    pub tcp_closing_s: u32,
    pub udp_s: u32,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        Self {
            tcp_syn_s: 30,
            tcp_established_s: 900,
            tcp_closing_s: 10,
            udp_s: 60,
        }
    }
}

/// `[arp]`: neighbour resolution for backends.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArpConfig {
    /// Re-resolve a reachable neighbour this often.
    pub refresh_s: u32,
    /// Retry an unanswered request this often.
    pub retry_ms: u32,
    /// Forget a neighbour that has not answered for this long.
    pub expire_s: u32,
    /// Announce each VIP with a gratuitous ARP at start.
    pub gratuitous: bool,
}

impl Default for ArpConfig {
    fn default() -> Self {
        Self {
            refresh_s: 30,
            retry_ms: 1000,
            expire_s: 120,
            gratuitous: true,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter (overridden by `RUST_LOG`).
    pub level: String,
    /// JSON lines on stdout (what a container's log collector reads) instead of text on
    /// stderr.
    pub json: bool,
    /// Log the aggregated counters this often (0 = never; they are always logged at exit).
    pub stats_interval_s: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            json: false,
            stats_interval_s: 0,
        }
    }
}

/// `[[interfaces]]`: a DPDK port with an address of the balancer's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    /// DPDK device name (`net_af_packet0`) or PCI address. Startup-only.
    pub port: String,
    /// The balancer's own address and prefix length, `a.b.c.d/len`.
    pub address: Ipv4Cidr,
    /// Override the port's MAC address (`02:00:00:00:00:10`).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// 802.1Q VLAN id this interface lives on; frames with another tag are dropped.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Further addresses (with prefix) on the same port: more connected subnets, e.g. the
    /// servers' gateway address in one-arm gateway mode.
    #[serde(default)]
    pub secondary_addresses: Vec<Ipv4Cidr>,
    /// Source addresses for proxy (full-NAT) mode flows leaving through this interface.
    /// Default: the interface address.
    #[serde(default, deserialize_with = "ipv4_text::list")]
    pub snat_addresses: Vec<Ipv4Addr>,
    /// Bridge traffic for the balancer's own addresses that is not balanced (ICMP, TCP/UDP to
    /// them) to a kernel interface (a DPDK `net_tap` port) carrying those addresses, so ping,
    /// ssh and the health checker use the kernel's stack over this network. Startup-only.
    #[serde(default = "default_true")]
    pub exception_path: bool,
    /// Name of that kernel interface (at most 15 characters); default `sy-<name>`.
    #[serde(default)]
    pub exception_iface: Option<String>,
    /// What the kernel side accepts from this network besides what Switchyard itself needs
    /// (replies to the kernel's own connections, ICMP, the API, VRRP and sync, BGP, GSLB):
    /// `"tcp/22"`, `"udp/161"`. Everything else to the kernel interface is dropped.
    #[serde(default)]
    pub exception_allow: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// An `exception_allow` entry: (`"tcp"` or `"udp"`, port).
pub fn parse_allow(a: &str) -> Option<(&'static str, u16)> {
    let (proto, port) = a.split_once('/')?;
    let proto = match proto {
        "tcp" => "tcp",
        "udp" => "udp",
        _ => return None,
    };
    let port: u16 = port.parse().ok()?;
    (port != 0).then_some((proto, port))
}

impl InterfaceConfig {
    /// The kernel interface of the exception path.
    pub fn kernel_iface(&self) -> String {
        self.exception_iface
            .clone()
            .unwrap_or_else(|| format!("sy-{}", self.name).chars().take(15).collect())
    }
}

/// `[api]`: the management API (HTTP, JSON and Prometheus text).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address:port to listen on; `""` in the file (`None`) disables the API.
    #[serde(with = "listen_text")]
    pub listen: Option<SocketAddr>,
    /// A file holding the API token (`SWITCHYARD_API_TOKEN` in the environment overrides
    /// it). With a token, changes (POST) need `Authorization: Bearer <token>`, and on a
    /// listen address other than loopback every call does; such an address needs one.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
}

impl ApiConfig {
    /// The API token: the environment's, else the file's (trimmed); `None` without either.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Ok(t) = std::env::var("SWITCHYARD_API_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(Some(t.trim().to_string()));
        }
        match &self.token_file {
            None => Ok(None),
            Some(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let t = t.trim();
                if t.len() < 16 {
                    return Err(format!(
                        "{}: a token of at least 16 characters",
                        p.display()
                    ));
                }
                Ok(Some(t.to_string()))
            }
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: Some(DEFAULT_API),
            token_file: None,
        }
    }
}

/// Where the API listens by default, and where `switchyard ctl` looks when given neither
/// `--api` nor `--config`.
pub const DEFAULT_API: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));

/// IPv4 addresses as written, with the value in the error (serde's own says only "invalid
/// IPv4 address syntax").
mod ipv4_text {
    use std::net::Ipv4Addr;

    use serde::de::{self, Unexpected};
    use serde::{Deserialize, Deserializer};

    fn parse<E: de::Error>(s: &str) -> Result<Ipv4Addr, E> {
        s.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(s), &"an IPv4 address (a.b.c.d)"))
    }

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
        parse(&String::deserialize(d)?).map(Some)
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s))
            .collect()
    }
}

/// `[api] listen` as written: `"address:port"`, or `""` for no API.
mod listen_text {
    use std::net::SocketAddr;

    use serde::de::{self, Unexpected};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| {
            de::Error::invalid_value(
                Unexpected::Str(&s),
                &"an address:port (127.0.0.1:9100), or \"\" for no API",
            )
        })
    }
}

/// `[services.health]`: how the management core checks a service's backends.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(rename = "type")]
    pub kind: HealthKind,
    /// Port to check; default: the backend's port.
    #[serde(default)]
    pub port: Option<u16>,
    /// http: path to GET.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// http: expected status.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// http: a substring the body must contain.
    #[serde(default)]
    pub expect_body: Option<String>,
    /// dns: name to query (type A, over UDP); any answer record passes.
    #[serde(default = "default_dns_name")]
    pub query: String,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_health_path() -> String {
    "/".into()
}
fn default_expect_status() -> u16 {
    200
}
fn default_dns_name() -> String {
    "health.check".into()
}
// A check's timeout outlasts TCP's first SYN retransmission (1 s), so one lost packet does
// not fail a check; with fall = 3 a lossy link (30 % loss) rarely takes a backend down.
fn default_interval_ms() -> u32 {
    2000
}
fn default_timeout_ms() -> u32 {
    1500
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    Tcp,
    Http,
    Dns,
}

/// What happens to a backend's established conns when it goes down or is disabled.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDown {
    /// Established conns keep going to it.
    #[default]
    Keep,
    /// Their packets are dropped (counted as `drop_backend_down`).
    Drop,
}

/// `[[routes]]`: a static route (connected subnets are implicit).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination prefix, `a.b.c.d/len`.
    pub prefix: Ipv4Cidr,
    /// Next hop; must be on a connected subnet.
    #[serde(deserialize_with = "ipv4_text::one")]
    pub via: Ipv4Addr,
}

/// `[nat]`: source-NAT port range for proxy mode, split evenly between workers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatConfig {
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            port_min: 1024,
            port_max: 65535,
        }
    }
}

/// `[[neighbours]]`: a static ARP entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    #[serde(deserialize_with = "ipv4_text::one")]
    pub address: Ipv4Addr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IPv4 protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Direct server return: only the destination MAC changes.
    Dsr,
    /// Full NAT: source becomes a local (SNAT) address, replies come back through us.
    Proxy,
    /// Destination NAT; servers route through the balancer, which reverse-NATs replies.
    Gateway,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Dsr, Mode::Proxy, Mode::Gateway];

    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dsr => "dsr",
            Mode::Proxy => "proxy",
            Mode::Gateway => "gateway",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    WeightedLeastConnections,
    SourceHash,
    Maglev,
}

/// `[services.persistence]`: source-address affinity.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    /// How long an affinity lives after the last new connection it served.
    pub timeout_s: u32,
    /// Client addresses sharing this many leading bits share a backend (32 = per client).
    #[serde(default = "default_netmask")]
    pub netmask: u8,
}

fn default_netmask() -> u8 {
    32
}

/// `[[services]]`: VIP + port + protocol balanced over backends.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(deserialize_with = "ipv4_text::one")]
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    #[serde(default = "default_scheduler")]
    pub scheduler: Scheduler,
    /// Interface that announces the VIP; default: the one whose subnet holds it, else the first.
    #[serde(default)]
    pub interface: Option<String>,
    /// Maglev lookup table size; must be a prime >= 65537.
    #[serde(default = "default_maglev_size")]
    pub maglev_table_size: u32,
    #[serde(default)]
    pub persistence: Option<PersistenceConfig>,
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Established conns of a backend that went down: keep or drop.
    #[serde(default)]
    pub on_backend_down: OnDown,
    /// Backend that takes new flows only while every other backend is down (the
    /// "sorry server"); without it, new flows are dropped then (`drop_no_backend`).
    #[serde(default)]
    pub sorry_backend: Option<BackendConfig>,
    /// Clients (by source address) the service takes; empty: every client. Checked on every
    /// packet to the VIP, so a reload that narrows it cuts established conns too.
    #[serde(default)]
    pub allow: Vec<Ipv4Cidr>,
    /// Clients it refuses (before `allow`).
    #[serde(default)]
    pub deny: Vec<Ipv4Cidr>,
    /// New flows per second the service takes (all clients together; 0: no limit). Over
    /// it, a new flow's first packet is dropped (`drop_service_rate_limited`).
    #[serde(default)]
    pub new_flows_per_s: u32,
    /// New flows per second one client address may open (0: no limit;
    /// `drop_source_rate_limited`).
    #[serde(default)]
    pub new_flows_per_source_per_s: u32,
    /// TCP (HTTP): while no backend can take a new conn, the site itself answers it with
    /// `302 Found` to this URL plus the request's path (GSLB's redirect to a peer site).
    #[serde(default)]
    pub redirect: Option<String>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

fn default_scheduler() -> Scheduler {
    Scheduler::Maglev
}
fn default_maglev_size() -> u32 {
    65537
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    #[serde(deserialize_with = "ipv4_text::one")]
    pub address: Ipv4Addr,
    /// Backend port (proxy/gateway may translate it); default: the service port.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A peer site's VIP (GSLB's IP proxy): takes new flows only while no local backend is
    /// up, always in full NAT from the interface's SNAT address, whatever the service's mode.
    #[serde(default)]
    pub remote: bool,
}

fn default_weight() -> u32 {
    1
}

/// A configuration error naming the key (`services[1].vip`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads `path`, applies `SWITCHYARD_*` overrides (`__` separates nested keys) and validates.
    /// `SWITCHYARD_API_TOKEN` is the API token ([`ApiConfig::token`]) and `SWITCHYARD_CONFIG`
    /// the file's path (the command line's `--config`), not keys.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(err("config", format!("file {} not found", path.display())));
        }
        let fig = Figment::new().merge(Toml::file(path)).merge(
            Env::prefixed("SWITCHYARD_")
                .split("__")
                .ignore(&["API_TOKEN", "CONFIG"]),
        );
        let cfg: Config = fig.extract().map_err(figment_error)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string (no environment overrides) and validates; used by tests.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(figment_error)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// figment's path sometimes already ends in the offending field, sometimes not.
fn with_field(path: &str, field: &str) -> String {
    if path == "config" {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Turns figment's error into one naming the key path.
fn figment_error(e: figment::Error) -> ConfigError {
    // figment names a list element by its index: `services.0.vip` is `services[0].vip`.
    let key = if e.path.is_empty() {
        "config".to_string()
    } else {
        let mut k = String::new();
        for p in &e.path {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                k.push_str(&format!("[{p}]"));
            } else {
                if !k.is_empty() {
                    k.push('.');
                }
                k.push_str(p);
            }
        }
        k
    };
    let problem = match &e.kind {
        figment::error::Kind::UnknownField(f, _) => {
            return err(with_field(&key, f), "unknown key");
        }
        figment::error::Kind::MissingField(f) => {
            return err(with_field(&key, f), "missing required key");
        }
        _ => e.kind.to_string(),
    };
    err(key, problem)
}

#[cfg(test)]
mod tests;
