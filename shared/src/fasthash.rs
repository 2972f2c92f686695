//! A hasher for the collection's own maps, keyed by pids and cgroup file
//! paths: one multiplication per integer, per byte for bytes (Fibonacci
//! hashing). The keys come from the kernel, not from a network peer, and
//! SipHash (and `Path`'s component-wise hashing) was a visible part of a
//! collection's time.

use std::hash::Hasher;

/// FNV-1a of `s`: stable across runs and platforms (a container's shard,
/// its place in a spread schedule).
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_i32(&mut self, i: i32) {
        self.0 = (self.0 ^ u64::from(i as u32)).wrapping_mul(K);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn distinct_keys_spread_over_the_high_bits() {
        let b = BuildHasherDefault::<FastHasher>::default();
        let mut tops: Vec<u64> = (1..=1000).map(|pid: i32| b.hash_one(pid) >> 57).collect();
        tops.sort_unstable();
        tops.dedup();
        // hashbrown picks its control byte from the top 7 bits.
        assert!(tops.len() > 100, "{}", tops.len());
        let a = b.hash_one(std::ffi::OsStr::new(
            "/sys/fs/cgroup/pids/docker/a/pids.max",
        ));
        let c = b.hash_one(std::ffi::OsStr::new(
            "/sys/fs/cgroup/pids/docker/b/pids.max",
        ));
        assert_ne!(a, c);
    }
}
