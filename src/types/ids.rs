//! Ids that cross module boundaries, as newtypes, and the limits that size the tables indexed
//! by them.

/// Index of an interface in the configuration, which is also the index of its port in every
/// worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfIdx(pub u16);

/// Stable index into `Snapshot::backends`: what a conn remembers. Management keeps it across
/// snapshots (reloads, drains, health changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub u32);

/// Index of a source-NAT address in `Snapshot::snat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnatIdx(pub u8);

/// Upper bound on backends per snapshot (sizes the per-backend load and counter arrays).
pub const MAX_BACKENDS: usize = 4096;

/// Upper bound on services per snapshot (sizes the per-service counter arrays).
pub const MAX_SERVICES: usize = 1024;
/// Most GSLB names one site answers for (the workers' per-name counters are sized by it).
pub const MAX_GSLB_NAMES: usize = 256;
