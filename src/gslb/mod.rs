//! GSLB answers as the workers use them: per configured name, the DNS answers it can give
//! (one candidate's VIP, every VIP, or an error code), precomputed by the management core
//! into each snapshot from the sites' states, and a wheel per client region saying which
//! answer each query gets in turn. A worker answering a query looks the name up, finds the
//! client's region, takes the next turn of the wheel and splices the answer's bytes after
//! the question: no allocation and no lock per query.
//!
//! The answers' bytes are built with hickory-proto (a whole response for the name, of which
//! the part after the question is kept: its names are compression pointers to the question
//! at offset 12, which every query for the name has at the same place and length).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHasher;

use crate::config::{GslbConfig, NameConfig, Policy, WhenDown};
use crate::types::Ipv4Cidr;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// DNS response codes the answers use.
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;

/// What management knows of one candidate answer of a name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Its service is up (here: a backend takes new conns and the VIP is ours; at a peer
    /// site: the peer says so, with rise/fall applied).
    pub up: bool,
    /// Active conns over capacity (`least_load`); 0 when unknown.
    pub load: f64,
}

/// One answer a name can give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records: `tail` is the wire form of the answer section that follows the question.
    Records {
        vips: Vec<Ipv4Addr>,
        tail: Box<[u8]>,
    },
    /// An error code, no records (fail-closed).
    Rcode(u8),
}

impl Answer {
    pub fn count(&self) -> u16 {
        match self {
            Answer::Records { vips, .. } => vips.len() as u16,
            Answer::Rcode(_) => 0,
        }
    }
}

/// A name's answers and wheels.
#[derive(Debug, Clone, PartialEq)]
pub struct NameEntry {
    pub name: String,
    pub ttl: u32,
    pub answers: Vec<Answer>,
    /// Wheel `r` serves clients of region slot `r` (0: of no region, and every client when
    /// the policy is not `region`): the answer index of each turn.
    wheels: Vec<Box<[u16]>>,
}

impl NameEntry {
    /// The answer of turn `turn` for region slot `region`.
    #[inline]
    pub fn pick(&self, region: usize, turn: u32) -> &Answer {
        let w = self.wheels.get(region).unwrap_or(&self.wheels[0]);
        let i = w[turn as usize % w.len()];
        &self.answers[usize::from(i)]
    }

    /// The distinct answers a region slot gives, with their share of turns (what `ctl
    /// gslb` shows).
    pub fn shares(&self, region: usize) -> Vec<(&Answer, f64)> {
        let w = self.wheels.get(region).unwrap_or(&self.wheels[0]);
        let mut out: Vec<(usize, usize)> = Vec::new();
        for &i in w.iter() {
            match out.iter_mut().find(|(a, _)| *a == usize::from(i)) {
                Some(e) => e.1 += 1,
                None => out.push((usize::from(i), 1)),
            }
        }
        out.into_iter()
            .map(|(i, n)| (&self.answers[i], n as f64 / w.len() as f64))
            .collect()
    }
}

/// Every name's answers; built by management, read by the workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Lowercase wire-form name (length-prefixed labels, the root's 0 included) -> entry.
    by_name: FxMap<Box<[u8]>, u16>,
    pub entries: Vec<NameEntry>,
    /// Region prefixes, longest first, with their slot (1-based; 0 is "no region").
    regions: Vec<(Ipv4Cidr, u16)>,
    /// Region names by slot (0: none).
    pub region_names: Vec<String>,
}

impl Table {
    /// Builds every name's answers from `cfg`, with `local_vip(service)` the VIP of a local
    /// service and `state(name, answer)` what is known of candidate `answer` of name `name`
    /// (indices into `cfg.names` and its `answers`).
    pub fn build(
        cfg: &GslbConfig,
        local_vip: impl Fn(&str) -> Option<Ipv4Addr>,
        state: impl Fn(usize, usize) -> Candidate,
    ) -> Table {
        let mut regions: Vec<(Ipv4Cidr, u16)> = cfg
            .regions
            .iter()
            .enumerate()
            .flat_map(|(r, rc)| rc.prefixes.iter().map(move |p| (*p, r as u16 + 1)))
            .collect();
        regions.sort_by_key(|(p, _)| std::cmp::Reverse(p.len));
        let mut t = Table {
            regions,
            region_names: std::iter::once(String::new())
                .chain(cfg.regions.iter().map(|r| r.name.clone()))
                .collect(),
            ..Table::default()
        };
        for (j, n) in cfg.names.iter().enumerate() {
            let vips: Vec<Option<Ipv4Addr>> = n
                .answers
                .iter()
                .map(|a| match &a.site {
                    None => local_vip(&a.service),
                    Some(_) => a.vip,
                })
                .collect();
            let states: Vec<Candidate> = (0..n.answers.len()).map(|a| state(j, a)).collect();
            let entry = build_entry(cfg, n, &vips, &states);
            t.by_name
                .insert(wire_name(&n.name).into_boxed_slice(), j as u16);
            t.entries.push(entry);
        }
        t
    }

    /// The entry of a lowercase wire-form name.
    #[inline]
    pub fn lookup(&self, wire_lower: &[u8]) -> Option<u16> {
        self.by_name.get(wire_lower).copied()
    }

    /// The region slot of a client (its resolver's address): the longest matching prefix.
    #[inline]
    pub fn region_of(&self, client: Ipv4Addr) -> usize {
        self.regions
            .iter()
            .find(|(p, _)| p.contains(client))
            .map_or(0, |(_, r)| usize::from(*r))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `name` in DNS wire form, lowercase: length-prefixed labels and the root's 0.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 2);
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        v.push(l.len() as u8);
        v.extend(l.bytes().map(|b| b.to_ascii_lowercase()));
    }
    v.push(0);
    v
}

/// The answer section (after the question) of a response to `name` A with `vips`, as
/// hickory-proto encodes it.
fn records_tail(name: &str, ttl: u32, vips: &[Ipv4Addr]) -> Box<[u8]> {
    let Ok(n) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
        return Box::new([]);
    };
    let mut m = Message::response(0, OpCode::Query);
    m.add_query(Query::query(n.clone(), RecordType::A));
    for v in vips {
        m.add_answer(Record::from_rdata(n.clone(), ttl, RData::A(A(*v))));
    }
    let Ok(bytes) = m.to_vec() else {
        return Box::new([]);
    };
    let question = wire_name(name).len() + 4;
    bytes.get(12 + question..).unwrap_or_default().into()
}

/// The A records of `vips`, or SERVFAIL where hickory cannot encode the name (validation
/// keeps such names out; never an answer that counts records it lacks).
fn records(name: &str, ttl: u32, vips: Vec<Ipv4Addr>) -> Answer {
    let tail = records_tail(name, ttl, &vips);
    if tail.is_empty() {
        Answer::Rcode(RCODE_SERVFAIL)
    } else {
        Answer::Records { vips, tail }
    }
}

/// Answer indices repeated by weight and interleaved (smooth weighted round robin), so
/// consecutive turns spread as the weights say.
fn wheel(members: &[(u16, u32)]) -> Box<[u16]> {
    let total: i64 = members.iter().map(|(_, w)| i64::from(*w)).sum();
    if total == 0 {
        return Box::new([]);
    }
    let mut current = vec![0i64; members.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, (_, w)) in current.iter_mut().zip(members) {
            *c += i64::from(*w);
        }
        let best = (0..members.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        out.push(members[best].0);
    }
    out.into_boxed_slice()
}

fn build_entry(
    cfg: &GslbConfig,
    n: &NameConfig,
    vips: &[Option<Ipv4Addr>],
    states: &[Candidate],
) -> NameEntry {
    // Answers 0..k: each candidate alone (index = candidate); then the "when down" one.
    let mut answers: Vec<Answer> = vips
        .iter()
        .map(|v| match v {
            Some(v) => records(&n.name, n.ttl, vec![*v]),
            None => Answer::Rcode(RCODE_SERVFAIL),
        })
        .collect();
    let down = answers.len() as u16;
    answers.push(match n.when_down {
        WhenDown::All => {
            let mut all: Vec<Ipv4Addr> = Vec::new();
            for v in vips.iter().flatten() {
                if !all.contains(v) {
                    all.push(*v);
                }
            }
            if all.is_empty() {
                Answer::Rcode(RCODE_SERVFAIL)
            } else {
                records(&n.name, n.ttl, all)
            }
        }
        WhenDown::Servfail => Answer::Rcode(RCODE_SERVFAIL),
        WhenDown::Refused => Answer::Rcode(RCODE_REFUSED),
    });
    let up = |i: usize| states[i].up && vips[i].is_some();
    let pick = |policy: Policy, among: &dyn Fn(usize) -> bool| -> Box<[u16]> {
        let cands: Vec<usize> = (0..vips.len()).filter(|&i| up(i) && among(i)).collect();
        let w = match policy {
            Policy::Weighted | Policy::Region => wheel(
                &cands
                    .iter()
                    .map(|&i| (i as u16, n.answers[i].weight))
                    .collect::<Vec<_>>(),
            ),
            Policy::LocalFirst => {
                let local: Vec<(u16, u32)> = cands
                    .iter()
                    .filter(|&&i| n.answers[i].site.is_none())
                    .map(|&i| (i as u16, n.answers[i].weight))
                    .collect();
                if local.is_empty() {
                    wheel(
                        &cands
                            .iter()
                            .map(|&i| (i as u16, n.answers[i].weight))
                            .collect::<Vec<_>>(),
                    )
                } else {
                    wheel(&local)
                }
            }
            Policy::LeastLoad => cands
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    states[a]
                        .load
                        .partial_cmp(&states[b].load)
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(|i| vec![i as u16].into_boxed_slice())
                .unwrap_or_default(),
        };
        if w.is_empty() { Box::new([down]) } else { w }
    };
    let all = |_: usize| true;
    let wheels = if n.policy == Policy::Region {
        let fallback = pick(n.fallback, &all);
        let mut ws = vec![fallback.clone()];
        for r in &cfg.regions {
            let mine = |i: usize| n.answers[i].regions.iter().any(|x| x == &r.name);
            let w = pick(Policy::Weighted, &mine);
            ws.push(if w.len() == 1 && w[0] == down {
                fallback.clone()
            } else {
                w
            });
        }
        ws
    } else {
        vec![pick(n.policy, &all)]
    };
    NameEntry {
        name: n.name.clone(),
        ttl: n.ttl,
        answers,
        wheels,
    }
}
