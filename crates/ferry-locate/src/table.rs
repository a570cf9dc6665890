//! The flattened lookup table.
//!
//! Prefixes nest, so "longest match" is a question about a tree; but once every overlap is decided
//! at build time, the address space falls apart into disjoint intervals, each with one answer.
//! Storing only each interval's first address and its answer turns a lookup into one search over
//! dense arrays: no allocation, nothing to lock, and a fixed number of steps. IPv4 starts are
//! found through a direct index on the address's first 16 bits (65,536 entries) and a search of
//! the few starts in that /16: two or three cache lines a lookup, where a binary search touches
//! one per level, and under load (the redirector shares its cores with the network stack) each
//! of those is a cache miss. IPv6 starts, too clustered for a 16-bit index, are searched in
//! Eytzinger order, which measured faster than a search of the sorted array once IPv4 and IPv6
//! lookups share the cache (see `docs/locations.md`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The value of addresses that no prefix covers.
pub(crate) const NONE: u32 = u32::MAX;

/// Slots of the direct index: one per 16-bit key prefix.
const SLOTS: usize = 1 << 16;

/// Which of two overlapping prefixes answers for the addresses they share: the greater rank.
/// Field order is precedence order: any range source beats the country database, then the longer
/// prefix wins, then the one added first (so the operator's `cidrs`, added first, win ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    pub range: bool,
    pub len: u8,
    pub order: Reverse<u32>,
}

/// One prefix to be flattened: its inclusive address range, its rank and its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub first: u128,
    pub last: u128,
    pub rank: Rank,
    pub value: u32,
}

/// How a table keys addresses. The binary search compares `Hi` only: an IPv6 address is split so
/// that the search runs over 8-byte keys (half the cache lines of `u128`, and one compare each);
/// `Lo` breaks ties between starts in the same /64, which only prefixes longer than /64 create.
pub(crate) trait Key {
    type Hi: Copy + Ord;
    type Lo: Copy + Ord;
    /// `None` for an address outside the family (the 2^32 bound after a span ending at 255.255.255.255).
    fn split(addr: u128) -> Option<(Self::Hi, Self::Lo)>;
    /// The direct index's slot for a key (its first 16 bits), for a family searched that way.
    fn slot(hi: Self::Hi) -> Option<usize>;
}

pub(crate) enum V4 {}
pub(crate) enum V6 {}

impl Key for V4 {
    type Hi = u32;
    type Lo = ();
    #[inline]
    fn split(addr: u128) -> Option<(u32, ())> {
        Some((u32::try_from(addr).ok()?, ()))
    }
    #[inline]
    fn slot(hi: u32) -> Option<usize> {
        Some((hi >> 16) as usize)
    }
}

impl Key for V6 {
    type Hi = u64;
    type Lo = u64;
    #[inline]
    fn split(addr: u128) -> Option<(u64, u64)> {
        Some(((addr >> 64) as u64, addr as u64))
    }
    #[inline]
    fn slot(_: u64) -> Option<usize> {
        None
    }
}

/// Disjoint intervals covering the whole address space: their sorted starts (the first is 0), as
/// `hi` and `lo` halves, and the value of each interval, which runs up to the next start.
/// Adjacent intervals have different values, so the table is as small as the answers allow.
pub(crate) struct Table<K: Key> {
    /// For a family with [`Key::slot`]: entry `b` is the index in `hi` of the first start whose
    /// slot is `b` or more (65,537 entries, the last one `hi.len()`); empty otherwise.
    direct: Box<[u32]>,
    /// For a family without: `hi` in Eytzinger order (a complete binary search tree laid out level by level, root at 1),
    /// with `rank` giving each node's index in the sorted arrays: the first levels of every search
    /// share a few cache lines, where a search of the sorted array touches a new line per step.
    tree: Box<[K::Hi]>,
    rank: Box<[u32]>,
    hi: Box<[K::Hi]>,
    lo: Box<[K::Lo]>,
    values: Box<[u32]>,
}

impl<K: Key> Table<K> {
    /// Flattens the spans with a sweep over their start and end points, keeping the active spans
    /// in a max-heap by rank: the top of the heap answers until another span starts or it ends.
    pub(crate) fn build(mut spans: Vec<Span>) -> Table<K> {
        // A prefix listed more than once (AWS lists one per service) is flattened once, at its best rank.
        spans.sort_unstable_by_key(|s| (s.first, s.last, Reverse(s.rank)));
        spans.dedup_by_key(|s| (s.first, s.last));

        let (mut hi, mut lo, mut values) = (Vec::new(), Vec::new(), Vec::<u32>::new());
        let mut pending = spans.iter().peekable();
        let mut active = BinaryHeap::new();
        let mut at = 0u128;
        while let Some((at_hi, at_lo)) = K::split(at) {
            while let Some(s) = pending.next_if(|s| s.first <= at) {
                active.push((s.rank, s.last, s.value));
            }
            while active.peek().is_some_and(|&(_, last, _)| last < at) {
                active.pop();
            }
            let value = active.peek().map_or(NONE, |&(_, _, value)| value);
            if values.last() != Some(&value) {
                hi.push(at_hi);
                lo.push(at_lo);
                values.push(value);
            }
            // The answer changes only where a span starts or where the winning span ends.
            let next_start = pending.peek().map(|s| s.first);
            let top_end = active.peek().and_then(|&(_, last, _)| last.checked_add(1));
            at = match (next_start, top_end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
        }
        let (mut direct, mut tree, mut rank) = (Vec::new(), Vec::new(), Vec::new());
        if K::slot(hi[0]).is_some() {
            let mut next = 0;
            for b in 0..=SLOTS {
                while next < hi.len() && K::slot(hi[next]).is_some_and(|s| s < b) {
                    next += 1;
                }
                direct.push(next as u32);
            }
        } else {
            // Node 0 is no node: it is where a search for an address above every start ends up.
            tree = vec![hi[0]; hi.len() + 1];
            rank = vec![hi.len() as u32; hi.len() + 1];
            eytzinger(&hi, &mut tree, &mut rank, &mut 0, 1);
        }
        Table {
            direct: direct.into(),
            tree: tree.into(),
            rank: rank.into(),
            hi: hi.into(),
            lo: lo.into(),
            values: values.into(),
        }
    }

    /// The value of the interval holding `addr` (an address of the table's family), or [`NONE`].
    #[inline]
    pub(crate) fn get(&self, addr: u128) -> u32 {
        let Some((hi, lo)) = K::split(addr) else { return NONE };
        // i: the number of starts <= hi. The first start is 0 <= addr, so i is at least 1.
        let mut i = match K::slot(hi) {
            Some(b) => {
                // Every start before the slot's first is below hi; search the slot's own.
                let (from, to) = (self.direct[b] as usize, self.direct[b + 1] as usize);
                from + self.hi[from..to].partition_point(|&start| start <= hi)
            }
            None => {
                // Descend to a leaf, going right past starts <= hi; the path's last left turn is
                // the first start above hi (strip the trailing right turns and that left turn),
                // and its rank is the number of starts <= hi.
                let mut k = 1;
                while k < self.tree.len() {
                    k = 2 * k + usize::from(self.tree[k] <= hi);
                }
                self.rank[k >> (k.trailing_ones() + 1)] as usize
            }
        };
        while self.hi[i - 1] == hi && self.lo[i - 1] > lo {
            i -= 1;
        }
        self.values[i - 1]
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        size_of_val(&*self.direct)
            + size_of_val(&*self.tree)
            + size_of_val(&*self.rank)
            + size_of_val(&*self.hi)
            + size_of_val(&*self.lo)
            + size_of_val(&*self.values)
    }
}

/// Fills `tree[k]`'s subtree with the next sorted keys, in order.
fn eytzinger<T: Copy>(sorted: &[T], tree: &mut [T], rank: &mut [u32], next: &mut usize, k: usize) {
    if k < tree.len() {
        eytzinger(sorted, tree, rank, next, 2 * k);
        tree[k] = sorted[*next];
        rank[k] = *next as u32;
        *next += 1;
        eytzinger(sorted, tree, rank, next, 2 * k + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: u128, last: u128, range: bool, len: u8, order: u32, value: u32) -> Span {
        Span { first, last, rank: Rank { range, len, order: Reverse(order) }, value }
    }

    #[test]
    fn nested_prefixes_split_their_parent() {
        // 0..=255 (value 1) holds 16..=31 (value 2); 300..=301 (value 3) is alone.
        let t: Table<V4> = Table::build(vec![
            span(0, 255, true, 24, 0, 1),
            span(16, 31, true, 28, 1, 2),
            span(300, 301, true, 31, 2, 3),
        ]);
        assert_eq!(&*t.hi, [0, 16, 32, 256, 300, 302]);
        assert_eq!(&*t.values, [1, 2, 1, NONE, 3, NONE]);
        assert_eq!(
            [t.get(0), t.get(15), t.get(16), t.get(31), t.get(32), t.get(299), t.get(301), t.get(u32::MAX.into())],
            [1, 1, 2, 2, 1, NONE, 3, NONE]
        );
    }

    #[test]
    fn ties_go_to_the_first_added_and_ranges_beat_country() {
        let t: Table<V4> = Table::build(vec![
            span(0, 255, true, 24, 1, 1),
            span(0, 255, true, 24, 0, 2),    // same prefix, added earlier: wins
            span(16, 31, false, 28, 2, 3),   // longer, but country: loses
            span(512, 767, false, 24, 3, 4), // country where no range is
        ]);
        assert_eq!([t.get(20), t.get(600), t.get(300)], [2, 4, NONE]);
    }

    #[test]
    fn spans_reaching_the_top_of_the_space() {
        let t: Table<V4> = Table::build(vec![span(0xFFFF_FF00, 0xFFFF_FFFF, true, 24, 0, 7)]);
        assert_eq!([t.get(u32::MAX.into()), t.get(0xFFFF_FEFF)], [7, NONE]);
        let t: Table<V6> =
            Table::build(vec![span(0, u128::MAX, true, 0, 0, 5), span(u128::MAX, u128::MAX, true, 128, 1, 6)]);
        assert_eq!([t.get(0), t.get(u128::MAX - 1), t.get(u128::MAX)], [5, 5, 6]);
        // Starts inside one /64 (here a /128 in a /48) are told apart by their lower halves.
        let net = 0x2600_1f16_8000_0000_u128 << 64;
        let t: Table<V6> = Table::build(vec![
            span(net, net | ((1 << 80) - 1), true, 48, 0, 1),
            span(net | 5, net | 5, true, 128, 1, 2),
        ]);
        assert_eq!(
            [t.get(net), t.get(net | 4), t.get(net | 5), t.get(net | 6), t.get(net | (1 << 64))],
            [1, 1, 2, 1, 1]
        );
        let empty: Table<V6> = Table::build(Vec::new());
        assert_eq!(empty.get(42), NONE);
    }

    /// Every tree shape, complete or not (IPv6, searched in Eytzinger order), and every slot
    /// filling of the direct index (IPv4): single addresses `step * j` (value j) with gaps
    /// between them, within one slot and across slots.
    #[test]
    fn both_searches_agree_with_the_sorted_order_at_every_size() {
        fn check<K: Key>(n: u32, step: u128, shift: u32) {
            let at = |j: u128| (step * j) << shift;
            let t: Table<K> = Table::build((0..n).map(|j| span(at(j.into()), at(j.into()), true, 32, j, j)).collect());
            for x in 0..(step * u128::from(n) + 3) {
                let want = if x % step == 0 && x / step < n.into() { (x / step) as u32 } else { NONE };
                assert_eq!(t.get(x << shift), want, "{n} spans, address {x} << {shift}");
            }
        }
        for n in 0..70u32 {
            check::<V6>(n, 3, 0);
            check::<V6>(n, 3, 70); // keys told apart by their upper halves only
            check::<V4>(n, 3, 0); // all in slot 0
            check::<V4>(n, 3, 15); // two starts a slot, and empty slots between
        }
    }
}
