//! A keyed slot table: items live in a vector, a hash index finds them by
//! id, and removed slots are reused. Iteration follows slot order, which
//! depends only on the sequence of operations (never on hashing).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use reclaim_model::Id;

/// Ids come from the engine or the simulator, not from an adversary, so a
/// fast non-cryptographic hash is enough; SipHash would cost more than the
/// rest of a lookup.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher {
    state: u64,
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl IdHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(MULTIPLIER).rotate_left(23);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n) | 0x100);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A final avalanche, so that the table's bucket bits (low) and tag
        // bits (high) both depend on every input bit.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h
    }
}

/// A hash map keyed by ids with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;

/// Items of type `T` keyed by id, in slots.
#[derive(Clone, Debug)]
pub(crate) struct Table<T> {
    slots: Vec<Option<(Id, T)>>,
    index: IdMap<u32>,
    free: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            index: IdMap::default(),
            free: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    /// Makes room for `additional` more items without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.index.reserve(additional);
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True if the id is present.
    #[inline]
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The item with this id.
    #[inline]
    pub fn get(&self, id: &str) -> Option<&T> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_ref().map(|(_, v)| v)
    }

    /// The item with this id, mutably.
    #[inline]
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_mut().map(|(_, v)| v)
    }

    /// Inserts a new item; returns it back if the id is taken.
    pub fn insert(&mut self, id: Id, value: T) -> Result<(), T> {
        if self.index.contains_key(id.as_str()) {
            return Err(value);
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some((id.clone(), value));
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 items");
                self.slots.push(Some((id.clone(), value)));
                slot
            }
        };
        self.index.insert(id, slot);
        Ok(())
    }

    /// Removes the item with this id.
    pub fn remove(&mut self, id: &str) -> Option<(Id, T)> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    /// Every item, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &T)> {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(id, v)| (id, v)))
    }

    /// Every item, mutably, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Id, &mut T)> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.as_mut().map(|(id, v)| (&*id, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_lookups_work() {
        let mut t = Table::default();
        t.insert(Id::new("a"), 1).unwrap();
        t.insert(Id::new("b"), 2).unwrap();
        assert_eq!(t.insert(Id::new("a"), 3), Err(3));
        assert_eq!(t.remove("a").map(|(_, v)| v), Some(1));
        assert!(!t.contains("a"));
        t.insert(Id::new("c"), 4).unwrap();
        let order: Vec<&str> = t.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["c", "b"], "c reuses a's slot");
        *t.get_mut("b").unwrap() += 10;
        assert_eq!(t.get("b"), Some(&12));
        assert_eq!(t.len(), 2);
        for (_, v) in t.iter_mut() {
            *v = 0;
        }
        assert_eq!(t.get("c"), Some(&0));
    }

    #[test]
    fn hasher_separates_similar_ids() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        let hash = |s: &str| build.hash_one(s);
        assert_ne!(hash("sha256:0001"), hash("sha256:0002"));
        assert_ne!(hash("a"), hash("a\0"));
        assert_ne!(hash(""), hash("\0"));
    }
}
