//! `[gslb]`: this site is one of several that answer DNS for global names. Each name has
//! candidate answers (a VIP of a local service, or of a service at a peer site), a policy
//! that picks among the ones that are up, a TTL, and what to answer when none is. Peers are
//! polled for their services' health and load (`[[gslb.sites]]`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Protocol, err, ipv4_text};
use crate::types::Ipv4Cidr;
pub use crate::types::MAX_GSLB_NAMES;
/// Most candidate answers per name, and regions.
pub const MAX_GSLB_ANSWERS: usize = 16;
pub const MAX_GSLB_REGIONS: usize = 64;

/// `[gslb]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GslbConfig {
    /// The zone this site is authoritative for (its parent delegates it to the sites'
    /// DNS addresses); every name is in it.
    pub zone: String,
    /// Addresses that answer DNS (UDP and TCP port 53): each in an interface's subnet, on an
    /// interface with the exception path. Not one of the interface's own addresses.
    #[serde(deserialize_with = "ipv4_text::list")]
    pub dns_addresses: Vec<Ipv4Addr>,
    /// The zone's name servers (its NS records; the parent's delegation names the same).
    #[serde(default)]
    pub nameservers: Vec<NameServerConfig>,
    /// The SOA's responsible mailbox, as a name (without a dot: below the zone).
    #[serde(default = "default_hostmaster")]
    pub hostmaster: String,
    /// TTL of negative answers and of the SOA and NS records.
    #[serde(default = "default_zone_ttl")]
    pub zone_ttl: u32,
    /// Where peer sites poll this site's `/gslb` (an own interface address with the exception
    /// path, and a port). Absent: nobody polls this site.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Shared key of the site exchange, hex (at least 16 bytes): polls and answers carry an
    /// HMAC-SHA256 of it. Needed with `listen` or `sites`.
    #[serde(default)]
    pub key: String,
    /// How often each peer is polled, and how long a poll may take.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u32,
    #[serde(default = "default_poll_timeout_ms")]
    pub poll_timeout_ms: u32,
    /// Good polls (with the service up) to count a peer's service up, failed ones to count it
    /// down: hysteresis, so answers do not flap.
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Conns one healthy backend is taken to carry (a service's capacity for `least_load` and
    /// what `/gslb` reports).
    #[serde(default = "default_backend_capacity")]
    pub backend_capacity: u32,
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    #[serde(default)]
    pub names: Vec<NameConfig>,
}

/// `[[gslb.nameservers]]`: an NS record of the zone; a name server inside the zone needs its
/// address (answered as its A record, the glue the parent also holds).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NameServerConfig {
    pub name: String,
    #[serde(default, deserialize_with = "ipv4_text::opt")]
    pub address: Option<Ipv4Addr>,
}

/// `[[gslb.regions]]`: clients (their resolvers' addresses) by prefix.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub prefixes: Vec<Ipv4Cidr>,
}

/// `[[gslb.sites]]`: a peer site, polled at `api` (its `[gslb] listen`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    pub api: SocketAddr,
}

/// How a name's answer is picked among its candidates that are up.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The local candidates while one is up, else the others (each set spread by weight).
    LocalFirst,
    /// Every candidate that is up, spread by weight.
    Weighted,
    /// The candidate with the lowest load (active conns over capacity).
    LeastLoad,
    /// The candidates of the client's region (by its resolver's address) that are up; the
    /// `fallback` policy otherwise.
    Region,
}

/// What a name answers when none of its candidates is up.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenDown {
    /// Fail open: every candidate's VIP.
    #[default]
    All,
    /// Fail closed: SERVFAIL.
    Servfail,
    /// Fail closed: REFUSED.
    Refused,
}

/// `[[gslb.names]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NameConfig {
    pub name: String,
    pub policy: Policy,
    /// `region`'s policy for clients of no region, or whose region has nothing up.
    #[serde(default = "default_fallback")]
    pub fallback: Policy,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub when_down: WhenDown,
    pub answers: Vec<AnswerConfig>,
}

/// A candidate answer: a service here (no `site`) or at a peer site.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// The peer site (`[[gslb.sites]] name`); absent: this site.
    #[serde(default)]
    pub site: Option<String>,
    /// The service's name there (here: a `[[services]] name`).
    pub service: String,
    /// The VIP answered: a peer site's must be given; here it is the service's.
    #[serde(default, deserialize_with = "ipv4_text::opt")]
    pub vip: Option<Ipv4Addr>,
    #[serde(default = "default_answer_weight")]
    pub weight: u32,
    /// Regions whose clients this candidate serves (`region` policy).
    #[serde(default)]
    pub regions: Vec<String>,
}

fn default_hostmaster() -> String {
    "hostmaster".to_string()
}
fn default_zone_ttl() -> u32 {
    60
}
fn default_poll_interval_ms() -> u32 {
    1000
}
fn default_poll_timeout_ms() -> u32 {
    800
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_backend_capacity() -> u32 {
    1000
}
fn default_fallback() -> Policy {
    Policy::Weighted
}
fn default_ttl() -> u32 {
    10
}
fn default_answer_weight() -> u32 {
    1
}

impl GslbConfig {
    /// The key's bytes (`None`: no key).
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        super::hex_bytes(&self.key)
    }
}

/// A DNS name as configured: lowercase, no trailing dot, labels of 1-63 letters, digits and
/// hyphens (and `_`), a hyphen neither first nor last in a label, 253 characters at most.
pub fn valid_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && !n.ends_with('.')
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// Whether `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

impl Config {
    pub(super) fn validate_gslb(&self) -> Result<(), ConfigError> {
        for (i, s) in self.services.iter().enumerate() {
            if let Some(r) = &s.redirect {
                let k = format!("services[{i}].redirect");
                if s.protocol != Protocol::Tcp {
                    return Err(err(k, "only a TCP service can redirect (HTTP)"));
                }
                let rest = r
                    .strip_prefix("http://")
                    .or_else(|| r.strip_prefix("https://"));
                if rest.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                    return Err(err(k, format!("{r:?} is not an http:// or https:// URL")));
                }
                // The kernel holds a redirecting VIP as a local address, so a probe to that VIP
                // routed to a DSR backend would be delivered locally instead.
                if let Some(d) = self
                    .services
                    .iter()
                    .find(|d| d.vip == s.vip && d.mode == super::Mode::Dsr && d.health.is_some())
                {
                    return Err(err(
                        k,
                        format!(
                            "the VIP {} is also DSR service {:?}'s, whose health checks go to \
                             the VIP: the kernel would answer them itself",
                            s.vip, d.name
                        ),
                    ));
                }
                if !self.vip_interface_has_exception_path(s) {
                    return Err(err(
                        k,
                        "the redirect is served by the kernel: the VIP's interface needs \
                         exception_path = true",
                    ));
                }
            }
        }
        let Some(g) = &self.gslb else {
            return Ok(());
        };
        let zone = g.zone.to_ascii_lowercase();
        if !valid_dns_name(&g.zone) {
            return Err(err(
                "gslb.zone",
                format!(
                    "{:?} is not a DNS name (lowercase, no trailing dot)",
                    g.zone
                ),
            ));
        }
        if g.dns_addresses.is_empty() {
            return Err(err(
                "gslb.dns_addresses",
                "at least one address answers DNS",
            ));
        }
        let own = self.own_addresses();
        let vips: HashSet<Ipv4Addr> = self.services.iter().map(|s| s.vip).collect();
        let snat: HashSet<Ipv4Addr> = self
            .interfaces
            .iter()
            .flat_map(|i| i.snat_addresses.iter().copied())
            .collect();
        for (j, a) in g.dns_addresses.iter().enumerate() {
            let k = format!("gslb.dns_addresses[{j}]");
            if own.contains(a) || vips.contains(a) || snat.contains(a) {
                return Err(err(
                    k,
                    format!("{a} is already an interface address, a VIP or a SNAT address"),
                ));
            }
            let Some(ifc) = self.interfaces.iter().find(|i| {
                i.address.contains(*a) || i.secondary_addresses.iter().any(|c| c.contains(*a))
            }) else {
                return Err(err(k, format!("{a} is in no interface's subnet")));
            };
            if !ifc.exception_path {
                return Err(err(
                    k,
                    format!(
                        "interface {:?} has no exception path (TCP and unusual queries are \
                         answered by the kernel side)",
                        ifc.name
                    ),
                ));
            }
        }
        if g.nameservers.is_empty() {
            return Err(err(
                "gslb.nameservers",
                "the zone needs its NS records (the names the parent delegates to)",
            ));
        }
        for (j, n) in g.nameservers.iter().enumerate() {
            let k = format!("gslb.nameservers[{j}]");
            if !valid_dns_name(&n.name) {
                return Err(err(k, format!("{:?} is not a DNS name", n.name)));
            }
            if in_zone(&n.name, &zone) && n.address.is_none() {
                return Err(err(
                    k,
                    format!("{:?} is inside the zone: it needs its address", n.name),
                ));
            }
        }
        if !valid_dns_name(&g.hostmaster) {
            return Err(err("gslb.hostmaster", "not a DNS name"));
        }
        if g.zone_ttl > 86_400 {
            return Err(err("gslb.zone_ttl", "must be 0-86400"));
        }
        if let Some(l) = g.listen {
            let SocketAddr::V4(v4) = l else {
                return Err(err("gslb.listen", "an IPv4 address:port"));
            };
            let Some(ifc) = self.interfaces.iter().find(|i| {
                i.address.addr == *v4.ip()
                    || i.secondary_addresses.iter().any(|c| c.addr == *v4.ip())
            }) else {
                return Err(err(
                    "gslb.listen",
                    format!("{} is not one of this node's interface addresses", v4.ip()),
                ));
            };
            if !ifc.exception_path || v4.port() == 0 {
                return Err(err(
                    "gslb.listen",
                    "needs a port and an interface with the exception path (peers reach it \
                     through the kernel)",
                ));
            }
        }
        if (g.listen.is_some() || !g.sites.is_empty())
            && (g.key.len() < 32 || g.key.len() % 2 != 0 || g.key_bytes().is_none())
        {
            return Err(err(
                "gslb.key",
                "the site exchange needs a shared key: hex, at least 32 digits (16 bytes)",
            ));
        }
        if g.poll_interval_ms < 100 || g.poll_interval_ms > 600_000 {
            return Err(err("gslb.poll_interval_ms", "must be 100-600000"));
        }
        if g.poll_timeout_ms == 0 || g.poll_timeout_ms > g.poll_interval_ms {
            return Err(err(
                "gslb.poll_timeout_ms",
                "must be > 0 and <= poll_interval_ms",
            ));
        }
        if g.rise == 0 || g.fall == 0 || g.rise > 100 || g.fall > 100 {
            return Err(err("gslb.rise", "rise and fall must be 1-100"));
        }
        if g.backend_capacity == 0 {
            return Err(err("gslb.backend_capacity", "must be > 0"));
        }
        if g.regions.len() > MAX_GSLB_REGIONS {
            return Err(err("gslb.regions", format!("at most {MAX_GSLB_REGIONS}")));
        }
        let mut region_names = HashSet::new();
        for (j, r) in g.regions.iter().enumerate() {
            if r.name.is_empty() || !region_names.insert(r.name.as_str()) {
                return Err(err(
                    format!("gslb.regions[{j}].name"),
                    "empty or listed twice",
                ));
            }
            if r.prefixes.is_empty() {
                return Err(err(format!("gslb.regions[{j}].prefixes"), "at least one"));
            }
        }
        let mut site_names = HashSet::new();
        for (j, s) in g.sites.iter().enumerate() {
            if s.name.is_empty() || s.name == "local" || !site_names.insert(s.name.as_str()) {
                return Err(err(
                    format!("gslb.sites[{j}].name"),
                    "empty, \"local\" or listed twice",
                ));
            }
        }
        if g.names.len() > MAX_GSLB_NAMES {
            return Err(err("gslb.names", format!("at most {MAX_GSLB_NAMES}")));
        }
        let mut names = HashSet::new();
        for (j, n) in g.names.iter().enumerate() {
            let k = |f: &str| format!("gslb.names[{j}].{f}");
            if !valid_dns_name(&n.name) || !in_zone(&n.name, &zone) || n.name == zone {
                return Err(err(
                    k("name"),
                    format!("{:?} is not a DNS name below the zone {zone:?}", n.name),
                ));
            }
            if !names.insert(n.name.as_str()) {
                return Err(err(k("name"), format!("{:?} listed twice", n.name)));
            }
            if n.ttl > 86_400 {
                return Err(err(k("ttl"), "must be 0-86400"));
            }
            if n.fallback == Policy::Region {
                return Err(err(k("fallback"), "cannot be region"));
            }
            if n.policy == Policy::Region && g.regions.is_empty() {
                return Err(err(k("policy"), "region needs [[gslb.regions]]"));
            }
            if n.answers.is_empty() || n.answers.len() > MAX_GSLB_ANSWERS {
                return Err(err(
                    k("answers"),
                    format!("1-{MAX_GSLB_ANSWERS} candidate answers"),
                ));
            }
            for (a, c) in n.answers.iter().enumerate() {
                let ak = |f: &str| format!("gslb.names[{j}].answers[{a}].{f}");
                match &c.site {
                    None => {
                        let Some(s) = self.services.iter().find(|s| s.name == c.service) else {
                            return Err(err(
                                ak("service"),
                                format!("no service named {:?} here", c.service),
                            ));
                        };
                        if c.vip.is_some_and(|v| v != s.vip) {
                            return Err(err(
                                ak("vip"),
                                format!("service {:?}'s VIP is {}", s.name, s.vip),
                            ));
                        }
                    }
                    Some(site) => {
                        if !g.sites.iter().any(|s| &s.name == site) {
                            return Err(err(
                                ak("site"),
                                format!("no [[gslb.sites]] named {site:?}"),
                            ));
                        }
                        if c.vip.is_none() {
                            return Err(err(ak("vip"), "a peer site's answer needs its VIP"));
                        }
                    }
                }
                if c.weight == 0 || c.weight > 100 {
                    return Err(err(ak("weight"), "must be 1-100"));
                }
                for r in &c.regions {
                    if !region_names.contains(r.as_str()) {
                        return Err(err(ak("regions"), format!("no region named {r:?}")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the interface that announces `s`'s VIP has the exception path.
    pub(super) fn vip_interface_has_exception_path(&self, s: &super::ServiceConfig) -> bool {
        let ifc = match &s.interface {
            Some(n) => self.interfaces.iter().find(|i| &i.name == n),
            None => self
                .interfaces
                .iter()
                .find(|i| i.address.contains(s.vip))
                .or(self.interfaces.first()),
        };
        ifc.is_some_and(|i| i.exception_path)
    }
}
