//! The per-client rate limit (`limits.per_client`): each client address — an IPv4 address, or
//! the /64 of an IPv6 one, after the trusted-proxy rule — may make `requests_per_minute`
//! requests a minute, in bursts of up to `burst`; past that it is answered `429` with
//! `Retry-After` (case 12a of `docs/request-handling.md`).
//!
//! The count is the generic cell rate algorithm: one number per client, the time its next
//! request would be exactly on schedule ("theoretical arrival time"). A request is allowed when
//! that time is at most `(burst - 1)` intervals ahead of now, and moves it one interval on.
//!
//! Memory is fixed, whatever the number of clients: [`SLOTS`] slots of 32 bytes (8 MiB), in
//! [`SHARDS`] shards each behind its own lock (a request takes one, uncontended in practice).
//! A client's slot is picked by a hash of its address; a client whose slot another one took
//! starts afresh, so under a flood of distinct addresses a limited client may get a new burst
//! early — the limit errs towards letting a request through, never towards refusing one that
//! was within it.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Slots in the table: the most clients counted at once.
pub const SLOTS: usize = SHARDS * SLOTS_PER_SHARD;
/// Shards of the table, each behind one lock.
pub const SHARDS: usize = 256;
const SLOTS_PER_SHARD: usize = 1024;

/// A limit: the interval between two requests on schedule, and how far ahead of schedule a
/// client may run (`(burst - 1)` intervals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Rate {
    /// `requests_per_minute` (≥ 1) in bursts of up to `burst` (≥ 1).
    pub fn new(requests_per_minute: u64, burst: u64) -> Rate {
        let interval_ns = 60_000_000_000 / requests_per_minute.max(1);
        Rate { interval_ns, tolerance_ns: interval_ns.saturating_mul(burst.max(1) - 1) }
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The client: an IPv4-mapped address, or an IPv6 /64 (low bits zero); 0 for none.
    key: u128,
    /// Nanoseconds since the table's epoch at which the client's next request is on schedule.
    due_ns: u64,
}

/// The clients counted so far.
pub struct ClientTable {
    epoch: Instant,
    shards: Box<[Mutex<Box<[Slot]>>]>,
}

impl Default for ClientTable {
    fn default() -> Self {
        ClientTable {
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![Slot::default(); SLOTS_PER_SHARD].into_boxed_slice()))
                .collect(),
        }
    }
}

impl std::fmt::Debug for ClientTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTable").field("slots", &SLOTS).finish_non_exhaustive()
    }
}

/// The address a client is counted under: itself (IPv4) or its /64 (IPv6).
fn key(client: IpAddr) -> u128 {
    match client {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

impl ClientTable {
    /// Counts one request of `client` at `now` under `rate`: `Ok` when it is within the limit,
    /// else the seconds (at least 1) after which it would be.
    pub fn check(&self, client: IpAddr, rate: Rate, now: Instant) -> Result<(), u64> {
        let key = key(client);
        // A multiplicative hash of both halves; the high bits pick the shard, the next the slot.
        let mixed = ((key as u64) ^ ((key >> 64) as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let shard = (mixed >> 56) as usize % SHARDS;
        let index = (mixed >> 40) as usize % SLOTS_PER_SHARD;
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let mut slots = self.shards[shard].lock().expect("a slot update never panics");
        let slot = &mut slots[index];
        if slot.key != key {
            *slot = Slot { key, due_ns: now_ns };
        }
        let due = slot.due_ns.max(now_ns);
        let ahead = due - now_ns;
        if ahead > rate.tolerance_ns {
            let wait_ns = ahead - rate.tolerance_ns;
            return Err(wait_ns.div_ceil(1_000_000_000).max(1));
        }
        slot.due_ns = due + rate.interval_ns;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_with_the_wait_said() {
        let table = ClientTable::default();
        let rate = Rate::new(60, 3); // one a second, three at once
        let t0 = table.epoch + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(table.check(ip("192.0.2.1"), rate, t0), Ok(()));
        }
        assert_eq!(table.check(ip("192.0.2.1"), rate, t0), Err(1));
        assert_eq!(table.check(ip("192.0.2.2"), rate, t0), Ok(()), "another client is unaffected");
        assert_eq!(table.check(ip("192.0.2.1"), rate, t0 + Duration::from_millis(999)), Err(1));
        assert_eq!(table.check(ip("192.0.2.1"), rate, t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(table.check(ip("192.0.2.1"), rate, t0 + Duration::from_secs(1)), Err(1));
        // Idle for long: a whole burst again, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(table.check(ip("192.0.2.1"), rate, later), Ok(()));
        }
        assert!(table.check(ip("192.0.2.1"), rate, later).is_err());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let table = ClientTable::default();
        let rate = Rate::new(1, 1);
        let now = table.epoch;
        assert!(table.check(ip("2001:db8:1:2::1"), rate, now).is_ok());
        assert_eq!(table.check(ip("2001:db8:1:2:ffff::9"), rate, now), Err(60), "same /64");
        assert!(table.check(ip("2001:db8:1:3::1"), rate, now).is_ok(), "another /64");
        assert!(table.check(ip("203.0.113.7"), rate, now).is_ok());
        assert!(table.check(ip("::ffff:203.0.113.7"), rate, now).is_err(), "the same client");
    }

    #[test]
    fn memory_is_fixed_however_many_clients() {
        let table = ClientTable::default();
        let rate = Rate::new(60, 1);
        for n in 0..(4 * SLOTS as u32) {
            let _ = table.check(IpAddr::V4(n.into()), rate, table.epoch);
        }
        assert_eq!(table.shards.len() * SLOTS_PER_SHARD, SLOTS);
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }
}
