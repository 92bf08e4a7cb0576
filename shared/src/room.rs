//! Giving a collection's room back once it has mostly emptied. A map or a
//! queue keeps its capacity: after a burst had filled a worker's server
//! transaction table (10,000 transactions, about 9 MB of buckets), an idle
//! worker held that for good.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// A collection whose capacity can be given back.
pub trait Room {
    /// How many entries it holds.
    fn entries(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, min_capacity: usize);
}

impl<K: Eq + Hash, V, S: BuildHasher> Room for HashMap<K, V, S> {
    fn entries(&self) -> usize {
        HashMap::len(self)
    }
    fn capacity(&self) -> usize {
        HashMap::capacity(self)
    }
    fn shrink_to(&mut self, min_capacity: usize) {
        HashMap::shrink_to(self, min_capacity);
    }
}

impl<T> Room for VecDeque<T> {
    fn entries(&self) -> usize {
        VecDeque::len(self)
    }
    fn capacity(&self) -> usize {
        VecDeque::capacity(self)
    }
    fn shrink_to(&mut self, min_capacity: usize) {
        VecDeque::shrink_to(self, min_capacity);
    }
}

/// Shrinks `c` to twice its length (at least `keep`) once it is less than
/// an eighth full. Meant to be checked at each removal: the rare shrink is
/// paid for by the removals before it, and happens again only after the
/// collection halved twice more.
pub fn shrink_when_sparse<R: Room>(c: &mut R, keep: usize) {
    if c.capacity() > keep && c.entries() * 8 < c.capacity() {
        c.shrink_to(keep.max(c.entries() * 2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_empties_after_a_burst_gives_its_room_back_and_keeps_its_entries() {
        let mut map: HashMap<u32, [u8; 400]> = HashMap::new();
        for i in 0..10_000 {
            map.insert(i, [i as u8; 400]);
        }
        let full = map.capacity();
        assert!(full >= 10_000);
        for i in 100..10_000 {
            map.remove(&i);
            shrink_when_sparse(&mut map, 256);
            assert!(map.capacity() >= map.len());
        }
        assert!(map.capacity() <= 1024, "{} of {full} kept", map.capacity());
        assert!((0..100).all(|i| map[&i] == [i as u8; 400]));
        // A small table is left alone.
        let cap = map.capacity();
        map.remove(&0);
        shrink_when_sparse(&mut map, 256);
        assert!(map.capacity() >= map.len() && map.capacity() <= cap);
    }

    #[test]
    fn a_queue_keeps_its_order_and_at_least_keep() {
        let mut q: VecDeque<u32> = (0..10_000).collect();
        while q.len() > 10 {
            q.pop_front();
            shrink_when_sparse(&mut q, 256);
        }
        assert!(
            q.capacity() >= 256 && q.capacity() < 1024,
            "{}",
            q.capacity()
        );
        assert!(q.iter().copied().eq(9_990..10_000));
    }
}
