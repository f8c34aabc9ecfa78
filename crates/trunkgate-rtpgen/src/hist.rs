//! A small log-linear histogram of microsecond values: exact below 2,048 µs, then 1,024
//! sub-buckets per power of two (≤ 0.1% error). Mergeable across threads.

const EXACT: u64 = 2048;
const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;

#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        let n = EXACT as usize + (MAX_EXP as usize - 10) * SUB as usize;
        Self {
            buckets: vec![0; n],
            count: 0,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let e = (63 - v.leading_zeros()).min(MAX_EXP - 1); // e >= 11
        let shift = e - SUB_BITS;
        let sub = (v >> shift).min(2 * SUB - 1) - SUB;
        EXACT as usize + (e as usize - 11) * SUB as usize + sub as usize
    }

    fn value_of(i: usize) -> u64 {
        if (i as u64) < EXACT {
            return i as u64;
        }
        let j = i as u64 - EXACT;
        let e = 11 + j / SUB;
        let sub = j % SUB;
        let shift = e - u64::from(SUB_BITS);
        // Midpoint of the bucket.
        ((SUB + sub) << shift) + ((1u64 << shift) >> 1)
    }

    pub fn record(&mut self, v: u64) {
        let i = Self::index(v);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.sum += u128::from(v);
        if v > self.max {
            self.max = v;
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += *b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// Value at quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return Self::value_of(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_exact_and_log() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 500);
        assert_eq!(h.quantile(0.99), 990);
        assert_eq!(h.max(), 1000);
        let mut h = Histogram::new();
        h.record(1_000_000);
        let q = h.quantile(0.5);
        assert!((999_000..=1_001_000).contains(&q), "{q}");
        h.record(u64::MAX / 2);
        assert_eq!(h.count(), 2);
    }
}
