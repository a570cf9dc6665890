//! The flattened lookup table.
//!
//! Prefixes nest, so "longest match" is a question about a tree; but once every overlap is decided
//! at build time, the address space falls apart into disjoint intervals, each with one answer.
//! Storing only each interval's first address (sorted) and its answer turns a lookup into one
//! binary search over a dense array: no pointers to chase, no allocation, nothing to lock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The value of addresses that no prefix covers.
pub(crate) const NONE: u32 = u32::MAX;

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

/// Disjoint intervals covering the whole address space: `starts` (sorted, `starts[0] == 0`) and
/// the value of each interval, which runs up to the next start. Adjacent intervals have different
/// values, so the table is as small as the answers allow.
#[derive(Debug)]
pub(crate) struct Table<A> {
    starts: Box<[A]>,
    values: Box<[u32]>,
}

impl<A: Copy + Ord + TryFrom<u128>> Table<A> {
    /// Flattens the spans with a sweep over their start and end points, keeping the active spans
    /// in a max-heap by rank: the top of the heap answers until another span starts or it ends.
    pub fn build(mut spans: Vec<Span>) -> Table<A> {
        // A prefix listed more than once (AWS lists one per service) is flattened once, at its best rank.
        spans.sort_unstable_by_key(|s| (s.first, s.last, Reverse(s.rank)));
        spans.dedup_by_key(|s| (s.first, s.last));

        let mut bounds: Vec<(u128, u32)> = Vec::new();
        let mut pending = spans.iter().peekable();
        let mut active = BinaryHeap::new();
        let mut at = 0u128;
        loop {
            while let Some(s) = pending.next_if(|s| s.first <= at) {
                active.push((s.rank, s.last, s.value));
            }
            while active.peek().is_some_and(|&(_, last, _)| last < at) {
                active.pop();
            }
            let value = active.peek().map_or(NONE, |&(_, _, value)| value);
            if bounds.last().is_none_or(|&(_, previous)| previous != value) {
                bounds.push((at, value));
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
        // An IPv4 span ending at 255.255.255.255 leaves a bound at 2^32, outside the table's type.
        let (starts, values): (Vec<A>, Vec<u32>) =
            bounds.into_iter().map_while(|(start, value)| Some((A::try_from(start).ok()?, value))).unzip();
        Table { starts: starts.into(), values: values.into() }
    }

    /// The value of the interval holding `addr`, or [`NONE`].
    #[inline]
    pub fn get(&self, addr: A) -> u32 {
        // starts[0] is 0 <= addr, so the partition point is at least 1.
        let i = self.starts.partition_point(|&start| start <= addr);
        self.values[i - 1]
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn heap_bytes(&self) -> usize {
        size_of_val(&*self.starts) + size_of_val(&*self.values)
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
        let t: Table<u32> = Table::build(vec![span(0, 255, true, 24, 0, 1), span(16, 31, true, 28, 1, 2), span(300, 301, true, 31, 2, 3)]);
        assert_eq!(&*t.starts, [0, 16, 32, 256, 300, 302]);
        assert_eq!(&*t.values, [1, 2, 1, NONE, 3, NONE]);
        assert_eq!([t.get(0), t.get(15), t.get(16), t.get(31), t.get(32), t.get(299), t.get(301), t.get(u32::MAX)], [1, 1, 2, 2, 1, NONE, 3, NONE]);
    }

    #[test]
    fn ties_go_to_the_first_added_and_ranges_beat_country() {
        let t: Table<u32> = Table::build(vec![
            span(0, 255, true, 24, 1, 1),
            span(0, 255, true, 24, 0, 2),   // same prefix, added earlier: wins
            span(16, 31, false, 28, 2, 3),  // longer, but country: loses
            span(512, 767, false, 24, 3, 4), // country where no range is
        ]);
        assert_eq!([t.get(20), t.get(600), t.get(300)], [2, 4, NONE]);
    }

    #[test]
    fn spans_reaching_the_top_of_the_space() {
        let t: Table<u32> = Table::build(vec![span(0xFFFF_FF00, 0xFFFF_FFFF, true, 24, 0, 7)]);
        assert_eq!([t.get(u32::MAX), t.get(0xFFFF_FEFF)], [7, NONE]);
        let t: Table<u128> = Table::build(vec![span(0, u128::MAX, true, 0, 0, 5), span(u128::MAX, u128::MAX, true, 128, 1, 6)]);
        assert_eq!([t.get(0), t.get(u128::MAX - 1), t.get(u128::MAX)], [5, 5, 6]);
        let empty: Table<u128> = Table::build(Vec::new());
        assert_eq!(empty.get(42), NONE);
    }
}
