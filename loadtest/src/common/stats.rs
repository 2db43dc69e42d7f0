//! Latency and gap distributions: microsecond values in an HdrHistogram
//! (three significant digits, growing as larger values arrive) with the
//! exact count, sum, minimum and maximum beside it, so that means and
//! extremes are exact while percentiles are within 0.1 %; mergeable across
//! worker processes and small on the wire (HdrHistogram's V2 encoding,
//! base64, inside the JSON line). Also the merging of what the workers
//! counted by cause. It owns no clocks and no I/O.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Significant decimal digits every histogram keeps: finer than any
/// figure we report, and a few hundred kilobytes at most per histogram.
const SIGFIGS: u8 = 3;

/// Microsecond values: HdrHistogram buckets plus the exact sum, minimum
/// and maximum.
#[derive(Debug, Clone)]
pub struct Histogram {
    h: hdrhistogram::Histogram<u64>,
    sum: u64,
    /// `u64::MAX` while empty.
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn buckets() -> hdrhistogram::Histogram<u64> {
    // Auto-resizing from a lowest value of 1: `new` fails only for more
    // than five significant digits.
    hdrhistogram::Histogram::new(SIGFIGS).expect("three significant digits are valid")
}

impl Histogram {
    pub fn new() -> Self {
        Self { h: buckets(), sum: 0, min: u64::MAX, max: 0 }
    }

    pub fn record(&mut self, v: u64) {
        // Beyond what HdrHistogram can track (2^62): counted in its top
        // bucket, while the exact maximum keeps the value.
        if self.h.record(v).is_err() {
            self.h.saturating_record(v);
        }
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.h.add(&other.h).is_err() {
            for v in other.h.iter_recorded() {
                self.h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.sum as f64 / self.count() as f64)
    }

    /// The value below which a fraction `q` (0..=1) of the recorded values
    /// fall (the top of the bucket holding that rank), clamped to the exact
    /// minimum and maximum (so p0 and p100 are exact).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        (self.count() > 0).then(|| self.h.value_at_quantile(q.clamp(0.0, 1.0)).clamp(self.min, self.max))
    }

    /// Every non-empty bucket as (its top value, clamped to the exact
    /// extremes; its count), for charts.
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.h.iter_recorded().map(|v| (v.value_iterated_to().clamp(self.min, self.max), v.count_at_value()))
    }

    /// Summary in milliseconds, the unit every report uses.
    pub fn summary_ms(&self) -> Percentiles {
        let ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
        Percentiles {
            count: self.count(),
            min: ms((self.count() > 0).then_some(self.min)),
            p50: ms(self.quantile(0.50)),
            p90: ms(self.quantile(0.90)),
            p99: ms(self.quantile(0.99)),
            p999: ms(self.quantile(0.999)),
            max: ms(self.max()),
            mean: self.mean().map(|m| m / 1000.0),
        }
    }
}

/// Equal when the same values were recorded (however the buckets grew).
impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        (self.sum, self.min, self.max, self.count()) == (other.sum, other.min, other.max, other.count())
            && self
                .h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(other.h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())))
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

/// Every worker's counts of one kind added up, field by field, a tally
/// cause by cause, and lists one after the other: for structs of whole
/// numbers, tallies and lists, which is what the workers' counts are.
pub fn summed<'a, T: Serialize + DeserializeOwned + Default + 'a>(parts: impl IntoIterator<Item = &'a T>) -> T {
    let mut total = Value::Null;
    for part in parts {
        if let Ok(v) = serde_json::to_value(part) {
            add(&mut total, v);
        }
    }
    serde_json::from_value(total).unwrap_or_default()
}

fn add(total: &mut Value, part: Value) {
    match (total, part) {
        (Value::Number(a), Value::Number(b)) => *a = (a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0)).into(),
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                add(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (t @ Value::Null, p) => *t = p,
        _ => {}
    }
}

/// Counts one more of `why`.
pub fn tally(map: &mut BTreeMap<String, u64>, why: &str) {
    match map.get_mut(why) {
        Some(n) => *n += 1,
        None => {
            map.insert(why.to_owned(), 1);
        }
    }
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

/// The wire form: the buckets in HdrHistogram's V2 encoding (runs of
/// empty buckets cost a byte or two), base64, and the exact extremes.
#[derive(Serialize, Deserialize)]
struct Wire {
    v2: String,
    sum: u64,
    min: u64,
    max: u64,
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&self.h, &mut bytes).map_err(serde::ser::Error::custom)?;
        Wire { v2: BASE64.encode(bytes), sum: self.sum, min: self.min, max: self.max }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Wire::deserialize(d)?;
        let bytes = BASE64.decode(&wire.v2).map_err(D::Error::custom)?;
        let mut h: hdrhistogram::Histogram<u64> =
            Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| D::Error::custom(format!("{e:?}")))?;
        // A merge may bring larger values than this worker saw.
        h.auto(true);
        if !h.is_empty() && wire.min > wire.max {
            return Err(D::Error::custom("a histogram whose minimum exceeds its maximum"));
        }
        Ok(Self { h, sum: wire.sum, min: wire.min, max: wire.max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) as f64 <= expected as f64 / 100.0
    }

    #[test]
    fn every_value_lies_in_the_bucket_it_is_counted_in() {
        let h = Histogram::new();
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let (low, high) = (h.h.lowest_equivalent(v), h.h.highest_equivalent(v));
            assert!(low <= v && (v <= high || high == u64::MAX), "{v} not in [{low}, {high}]");
        }
        // Even past what the buckets can track, the extremes stay exact.
        let mut h = Histogram::new();
        h.record(u64::MAX);
        assert_eq!((h.max(), h.quantile(1.0), h.count()), (Some(u64::MAX), Some(u64::MAX), 1));
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
        assert!(serde_json::from_str::<Histogram>(r#"{"v2":"bm90IGEgaGlzdG9ncmFt","sum":1,"min":1,"max":1}"#).is_err());
        // What arrives can still grow: a merge of larger values fits.
        let mut back = back;
        back.merge(&{
            let mut big = Histogram::new();
            big.record(3_600_000_000);
            big
        });
        assert_eq!(back.max(), Some(3_600_000_000));
    }

    #[test]
    fn counts_add_up_field_by_field_and_cause_by_cause() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        struct Counts {
            ok: u64,
            failed: u64,
            errors: BTreeMap<String, u64>,
            notes: Vec<String>,
        }
        let a = Counts { ok: 2, failed: 1, errors: BTreeMap::from([("x".into(), 1)]), notes: vec!["a".into()] };
        let b = Counts { ok: 3, failed: 0, errors: BTreeMap::from([("x".into(), 2), ("y".into(), 5)]), notes: vec![] };
        let want = Counts {
            ok: 5,
            failed: 1,
            errors: BTreeMap::from([("x".into(), 3), ("y".into(), 5)]),
            notes: vec!["a".into()],
        };
        assert_eq!(summed([&a, &b]), want);
        assert_eq!(summed::<Counts>([]), Counts::default());
    }

    #[test]
    fn summary_is_in_milliseconds() {
        let mut h = Histogram::new();
        h.record(2_000);
        let s = h.summary_ms();
        assert_eq!((s.count, s.min, s.max), (1, Some(2.0), Some(2.0)));
    }
}
