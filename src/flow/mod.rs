//! Per-core connection table: fixed capacity chosen at start, no allocation after, owned by
//! exactly one worker so it needs no locks.
//!
//! Two parts, as in IPVS/DPVS a connection is reachable by two tuples:
//! - **conn buckets**: the [`Conn`]s themselves (32 bytes: the client tuple, what the backend
//!   side's tuple needs beyond the backend, whose address and port the table keeps per
//!   backend id, the TCP state, last-seen time, service, backend and NAT data), two to a
//!   64-byte bucket, placed by 2-choice cuckoo hashing of the forward (client) tuple: the
//!   two buckets are picked by multiply-shift of each half of one 64-bit hash, a conn goes to
//!   the first unless it is full, and a bounded cuckoo search (depth 8) moves conns to their
//!   other bucket when both are. There are 3/2 conn slots per conn of capacity, so most conns
//!   sit in their first bucket and **a forward packet reads one cache line**, the conn itself.
//! - an **index** of reverse tuples (NAT conns only: the tuple of the backend's replies) to
//!   their conn's location: 2-choice hashing over 64-byte buckets of eight (signature, conn
//!   reference) slots, cuckoo depth 2. A reply reads its index bucket and its conn.
//!
//! A conn's location is its [`ConnId`]; inserting may move other conns (their index entries
//! follow), so an id is valid until the next insert. What must outlive that (a fragment's
//! conn) keeps the tuple instead.
//!
//! Why conns sit in their buckets: a DSR packet at 64k flows paid for two table lines (index
//! bucket, conn) not in L2, and in a table of the default size (1M conns) with 64k live the
//! two are different lines for every flow: twice the memory per packet. perf/README.md has
//! the measurements.
//!
//! Memory per flow of capacity: 3/2 × 32 bytes of conn buckets + 9/8 × 8 bytes of index +
//! 3/2 × 4 bytes of per-slot words (the SYN proxy's) = 63 bytes.
//!
//! A conn idle for longer than its state's timeout is dead: a lookup that meets it reclaims it
//! (and reports a miss), and the incremental [`FlowTable::sweep`] reclaims the rest, so the
//! `active` count and per-backend counts stay honest. Reclaiming calls back the caller (to
//! free NAT ports and per-backend counts). A full table refuses the new conn, counted, and
//! never evicts a live one.
//!
//! | file | |
//! |---|---|
//! | `key` | [`FlowKey`], the 5-tuple, and its fixed hash |
//! | `conn` | [`Conn`], its state, the TCP state machine, idle timeouts |
//! | `table` | [`FlowTable`]: the cuckoo conn buckets and the reverse-tuple index |

mod conn;
mod key;
mod table;

pub use conn::{Conn, ConnId, Dir, FlowState, Timeouts, flags};
pub use key::FlowKey;
pub use table::{FlowCounters, FlowTable, NO_HINT, TableFull};
