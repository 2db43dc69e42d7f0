//! Latency and gap distributions: a log-linear histogram of microsecond
//! values that is cheap to record into (no allocation after creation),
//! mergeable across worker processes, and small on the wire (only non-empty
//! buckets travel); and the merging of what the workers counted (their
//! histograms, their counts by cause) into one. It owns no clocks and no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two: 128 keeps every bucket within 1/128
/// (< 0.8 %) of its lower bound, which is finer than any figure we report.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64 value.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// Counts of microsecond values in log-linear buckets, plus exact count,
/// sum, minimum and maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB;
    ((u64::from(shift) + 1) * SUB + sub) as usize
}

/// The values bucket `i` holds: `[low, high)`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let shift = i / SUB - 1;
    let sub = i % SUB;
    ((SUB + sub) << shift, (SUB + sub + 1).saturating_mul(1 << shift))
}

impl Histogram {
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], count: 0, sum: 0, min: u64::MAX, max: 0 }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value below which a fraction `q` (0..=1) of the recorded values
    /// fall: the middle of the bucket holding that rank, clamped to the
    /// exact minimum and maximum (so p0 and p100 are exact).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds(i);
                let mid = low + (high - low - 1) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Non-empty buckets as `(low, high, count)`, for charts.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
            let (low, high) = bounds(i);
            (low, high, c)
        })
    }

    /// Summary in milliseconds, the unit every report uses.
    pub fn summary_ms(&self) -> Percentiles {
        let ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
        Percentiles {
            count: self.count,
            min: ms((self.count > 0).then_some(self.min)),
            p50: ms(self.quantile(0.50)),
            p90: ms(self.quantile(0.90)),
            p99: ms(self.quantile(0.99)),
            p999: ms(self.quantile(0.999)),
            max: ms(self.max()),
            mean: self.mean().map(|m| m / 1000.0),
        }
    }
}

/// Every worker's histogram of one figure, merged into one.
pub fn merged<'a>(hs: impl Iterator<Item = &'a Histogram>) -> Histogram {
    let mut all = Histogram::new();
    hs.for_each(|h| all.merge(h));
    all
}

/// Every worker's counts by cause (errors, close reasons), summed per cause.
pub fn tallies<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            *out.entry(k.clone()).or_insert(0) += v;
        }
    }
    out
}

/// Percentiles of one distribution, in milliseconds (`None` when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

/// The wire form: only non-empty buckets, so a worker's report stays a few
/// kilobytes whatever the sample count.
#[derive(Serialize, Deserialize)]
struct Sparse {
    buckets: Vec<(u32, u64)>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buckets =
            self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| (i as u32, c)).collect::<Vec<_>>();
        Sparse { buckets, count: self.count, sum: self.sum, min: self.min, max: self.max }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sparse = Sparse::deserialize(d)?;
        let mut h = Histogram::new();
        for (i, c) in sparse.buckets {
            let slot = h.counts.get_mut(i as usize).ok_or_else(|| serde::de::Error::custom("bucket out of range"))?;
            *slot = c;
        }
        h.count = sparse.count;
        h.sum = sparse.sum;
        h.min = sparse.min;
        h.max = sparse.max;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) as f64 <= expected as f64 / 100.0
    }

    #[test]
    fn index_and_bounds_agree_everywhere() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let (low, high) = bounds(index(v));
            assert!(low <= v && (v < high || high == u64::MAX), "{v} not in [{low}, {high})");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [3, 1, 2] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(0.5), Some(2));
        assert_eq!(h.quantile(1.0), Some(3));
    }

    #[test]
    fn percentiles_of_a_uniform_range_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        assert!(close(h.quantile(0.5).unwrap(), 50_000));
        assert!(close(h.quantile(0.9).unwrap(), 90_000));
        assert!(close(h.quantile(0.99).unwrap(), 99_000));
        assert_eq!(h.quantile(1.0), Some(100_000), "the maximum is exact");
        assert_eq!(h.summary_ms().count, 100_000);
        assert_eq!(h.mean(), Some(50_000.5));
    }

    #[test]
    fn a_tail_shows_in_p99_not_p50() {
        let mut h = Histogram::new();
        for _ in 0..980 {
            h.record(1_500_000);
        }
        for _ in 0..20 {
            h.record(2_600_000);
        }
        assert!(close(h.quantile(0.5).unwrap(), 1_500_000));
        assert!(close(h.quantile(0.99).unwrap(), 2_600_000));
    }

    #[test]
    fn empty_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.summary_ms(), Percentiles::default());
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..5_000u64 {
            let v = v * 37 % 9_973 + 100;
            if v % 2 == 0 { &mut a } else { &mut b }.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn survives_the_wire() {
        let mut h = Histogram::new();
        for v in [5, 500, 50_000, 5_000_000] {
            h.record(v);
        }
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.len() < 200, "sparse form stays small: {json}");
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(
            serde_json::from_str::<Histogram>(r#"{"buckets":[[99999,1]],"count":1,"sum":1,"min":1,"max":1}"#).is_err()
        );
    }

    #[test]
    fn summary_is_in_milliseconds() {
        let mut h = Histogram::new();
        h.record(2_000);
        let s = h.summary_ms();
        assert_eq!((s.count, s.min, s.max), (1, Some(2.0), Some(2.0)));
    }
}
