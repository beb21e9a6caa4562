//! Key choosers: YCSB's zipfian generator (Gray et al., "Quickly generating billion-record
//! synthetic databases", SIGMOD '94, as implemented by YCSB's `ZipfianGenerator`) and its
//! scrambled variant, plus uniform.
//!
//! The scrambled chooser draws a zipfian *rank* and hashes it (FNV-1a 64) onto the key
//! space, so the popular items are spread over the whole key range instead of clustering
//! at its start — YCSB's default `requestdistribution=zipfian` does the same.

use rand::Rng;

/// YCSB's default skew.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Zipfian over `0..items` with `P(i) ∝ 1/(i+1)^theta` (item 0 the most popular).
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    half_pow_theta: f64,
}

/// `sum_{i=1..n} 1/i^theta`; O(n), done once per generator (≈5 ms for 1 M items).
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    /// A generator over `0..items` (`items >= 1`) with skew `theta` in (0, 1).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        let zetan = zeta(items, theta);
        let zeta2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            items,
            theta,
            alpha,
            zetan,
            eta,
            half_pow_theta: 0.5f64.powf(theta),
        }
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The next rank in `0..items`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + self.half_pow_theta {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// FNV-1a over the 8 little-endian bytes of `v` (YCSB's `fnvhash64`).
pub fn fnv1a64(v: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// How the record number of the next operation is chosen.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform { items: u64 },
    ScrambledZipfian(Zipfian),
}

impl KeyChooser {
    pub fn uniform(items: u64) -> KeyChooser {
        KeyChooser::Uniform {
            items: items.max(1),
        }
    }

    pub fn zipfian(items: u64) -> KeyChooser {
        KeyChooser::ScrambledZipfian(Zipfian::new(items, ZIPFIAN_CONSTANT))
    }

    /// A record number in `0..items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Uniform { items } => rng.random_range(0..*items),
            KeyChooser::ScrambledZipfian(z) => fnv1a64(z.sample(rng)) % z.items(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn zipfian_stays_in_range_and_is_skewed_towards_rank_zero() {
        let z = Zipfian::new(10_000, ZIPFIAN_CONSTANT);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 10_000];
        let n = 200_000;
        for _ in 0..n {
            let r = z.sample(&mut rng);
            assert!(r < 10_000);
            counts[r as usize] += 1;
        }
        // P(0) = 1/zeta(10000, 0.99) ≈ 0.098; the top 1 % of ranks take over half the draws.
        let p0 = f64::from(counts[0]) / f64::from(n);
        assert!((0.08..0.12).contains(&p0), "P(rank 0) = {p0}");
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[1000]);
        let top: u32 = counts[..100].iter().sum();
        assert!(f64::from(top) / f64::from(n) > 0.5);
    }

    #[test]
    fn scrambled_zipfian_spreads_hot_keys_over_the_key_space() {
        let chooser = KeyChooser::zipfian(1_000);
        let mut rng = SmallRng::seed_from_u64(11);
        let mut counts = vec![0u32; 1_000];
        for _ in 0..50_000 {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        let hottest = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .map(|(i, _)| i as u64);
        assert_eq!(hottest, Some(fnv1a64(0) % 1_000));
        assert_ne!(hottest, Some(0), "scrambling moves the hot key away from 0");
    }

    #[test]
    fn uniform_covers_the_range() {
        let chooser = KeyChooser::uniform(10);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            seen[chooser.next(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn single_item_generators_return_zero() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(Zipfian::new(1, ZIPFIAN_CONSTANT).sample(&mut rng), 0);
        assert_eq!(KeyChooser::zipfian(1).next(&mut rng), 0);
    }
}
