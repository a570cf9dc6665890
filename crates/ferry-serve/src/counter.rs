//! A Prometheus counter that the serving threads increment without sharing a cache line.
//!
//! `prometheus_client`'s `Counter` is one atomic; every request increments two of them, and with
//! one serving thread per core that line moves between cores on every request (on
//! bench/redirect.sh, the instructions after those two increments took about 1% of all of
//! Ferry's CPU). Here each thread increments its own shard, and a scrape adds the shards up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per counter: threads beyond this share shards (still correct, only slower).
const SHARDS: usize = 8;

/// One shard on a cache line of its own (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A monotonic counter (cheap to clone; clones count together).
#[derive(Clone, Default)]
pub(crate) struct ShardedCounter {
    shards: Arc<[Shard; SHARDS]>,
}

impl ShardedCounter {
    pub(crate) fn inc(&self) {
        self.inc_by(1);
    }

    pub(crate) fn inc_by(&self, n: u64) {
        self.shards[shard_of_this_thread()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShardedCounter").field(&self.get()).finish()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Threads take shards in turn as they first count, so the first [`SHARDS`] threads (the
/// serving threads among them) each have one to themselves.
fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up_and_encode_as_a_counter() {
        let counter = ShardedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..SHARDS + 3 {
                let counter = counter.clone();
                s.spawn(move || (0..1000).for_each(|_| counter.inc()));
            }
        });
        assert_eq!(counter.get(), 1000 * (SHARDS as u64 + 3));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("hits", "Hits", counter);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE hits counter\n") && text.contains(&format!("hits_total {}\n", 1000 * (SHARDS + 3))),
            "{text}"
        );
    }
}
