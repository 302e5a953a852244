//! Rate limits of the data plane, as per-worker token buckets over the packets' millisecond
//! clock (no locks, no shared state: each worker takes its share of a node-wide rate):
//! the ICMP errors a worker originates, and the new flows a service takes, in all and from
//! one client address.

use crate::lb::Snapshot;
use crate::types::DropReason;

/// Tokens, refilled at a rate given on each take (so one bucket array can serve services
/// with different rates).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TokenBucket {
    tokens: u32,
    last_ms: u32,
    /// Whose bucket it is (`FlowLimits`: the service id + 1; 0: nobody's yet).
    owner: u32,
}

impl TokenBucket {
    pub(super) fn full(burst: u32) -> Self {
        TokenBucket {
            tokens: burst,
            last_ms: 0,
            owner: 0,
        }
    }

    /// [`TokenBucket::take`] from a bucket of `owner`'s: one that was nobody's, or another
    /// owner's, starts full at `now`. The burst is one second's worth.
    fn take_as(&mut self, owner: u32, now: u32, per_s: u32) -> bool {
        if self.owner != owner {
            *self = TokenBucket {
                tokens: per_s,
                last_ms: now,
                owner,
            };
        }
        self.take(now, per_s, per_s)
    }

    /// One token, if there is one at `now` (ms), refilling at `per_s` up to `burst`.
    pub(super) fn take(&mut self, now: u32, per_s: u32, burst: u32) -> bool {
        let elapsed = now.wrapping_sub(self.last_ms);
        let refill = (u64::from(elapsed) * u64::from(per_s) / 1000).min(u64::from(burst)) as u32;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(burst);
            // Keep the remainder of a partial token: advance by what was credited.
            self.last_ms = if self.tokens == burst {
                now
            } else {
                self.last_ms
                    .wrapping_add((u64::from(refill) * 1000 / u64::from(per_s)) as u32)
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Buckets of the per-client limits: client addresses hash onto them (a few share one,
/// which only ever limits them sooner).
const SOURCE_BUCKETS: usize = 4096;

/// One worker's new-flow buckets.
pub(super) struct FlowLimits {
    per_service: Box<[TokenBucket; crate::types::MAX_SERVICES]>,
    per_source: Box<[TokenBucket; SOURCE_BUCKETS]>,
}

impl FlowLimits {
    pub(super) fn new() -> Self {
        FlowLimits {
            per_service: Box::new([TokenBucket::default(); crate::types::MAX_SERVICES]),
            per_source: Box::new([TokenBucket::default(); SOURCE_BUCKETS]),
        }
    }

    /// Whether service `si` may take one more new flow from `src` at `now`, this worker
    /// having `workers` - 1 peers that take their shares of the limits.
    #[inline]
    pub(super) fn admit(
        &mut self,
        snap: &Snapshot,
        si: u16,
        src: u32,
        now: u32,
        workers: usize,
    ) -> Result<(), DropReason> {
        let svc = &snap.services[usize::from(si)];
        let (all, one) = (svc.new_flows_per_s, svc.new_flows_per_source_per_s);
        if all == 0 && one == 0 {
            return Ok(());
        }
        let share = |rate: u32| rate.div_ceil(workers.max(1) as u32).max(1);
        let owner = u32::from(si) + 1;
        if one != 0 {
            let i = (src ^ u32::from(si).wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b)
                as usize
                >> 20
                & (SOURCE_BUCKETS - 1);
            if !self.per_source[i].take_as(owner, now, share(one)) {
                return Err(DropReason::SourceRateLimited);
            }
        }
        if all != 0 && !self.per_service[usize::from(si)].take_as(owner, now, share(all)) {
            return Err(DropReason::ServiceRateLimited);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut b = TokenBucket::full(10);
        let burst = (0..100).filter(|_| b.take(0, 100, 10)).count();
        assert_eq!(burst, 10);
        // 100/s: one token per 10 ms, over 1 s of 1 ms steps.
        let more = (1..=1000).filter(|&t| b.take(t, 100, 10)).count();
        assert!((99..=101).contains(&more), "{more}");
    }
}
