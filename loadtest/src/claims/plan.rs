//! Who fires which claims in the storm: `buyers` distinct buyers fire
//! `claims` claims in all. Every buyer claims at least once; `doubles` of
//! them hold two sockets and claim on both at the same moment (the race
//! one coupon per buyer must survive); the claims left over are retries,
//! spread evenly over all buyers. Both sockets of a buyer split its claims.
//! Doubled buyers are spread evenly over the indices, so every worker gets
//! its share. Pure arithmetic on the buyer's index: the coordinator and
//! every worker derive the same plan from the same three numbers.

use anyhow::ensure;
use serde::{Deserialize, Serialize};

/// The storm's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub buyers: u64,
    pub claims: u64,
    /// Buyers on two sockets at once.
    pub doubles: u64,
}

impl Shape {
    /// `double_share` of the buyers on two sockets (as many as the claims
    /// allow: each of them needs one claim per socket).
    pub fn new(buyers: u64, claims: u64, double_share: f64) -> anyhow::Result<Self> {
        ensure!(buyers >= 1, "at least one buyer");
        ensure!(claims >= buyers, "--claims ({claims}) must be at least --buyers ({buyers}): every buyer claims once");
        ensure!((0.0..=1.0).contains(&double_share), "--double-share must be 0..=1");
        let wanted = (buyers as f64 * double_share).round() as u64;
        Ok(Self { buyers, claims, doubles: wanted.min(claims - buyers) })
    }

    /// Claims beyond each buyer's first and each second socket's first.
    pub fn retries(&self) -> u64 {
        self.claims - self.buyers - self.doubles
    }

    /// Doubled buyers among `0..i`.
    fn doubles_before(&self, i: u64) -> u64 {
        // Below 2^64 for any run this tool accepts (buyers ≤ 10^6).
        (u128::from(i) * u128::from(self.doubles) / u128::from(self.buyers)) as u64
    }

    pub fn doubled(&self, i: u64) -> bool {
        self.doubles_before(i + 1) > self.doubles_before(i)
    }

    /// Buyer `i`'s claims on its first and second socket (0: no second).
    pub fn claims_of(&self, i: u64) -> (u32, u32) {
        let r = u128::from(self.retries());
        let b = u128::from(self.buyers);
        let extra = ((u128::from(i) + 1) * r / b - u128::from(i) * r / b) as u64;
        let doubled = self.doubled(i);
        let total = 1 + u64::from(doubled) + extra;
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        if doubled { (total.div_ceil(2), total / 2) } else { (total, 0) }
    }

    /// Sockets of buyers `first..first + count`.
    pub fn sockets_in(&self, first: u64, count: u64) -> u64 {
        count + self.doubles_before(first + count) - self.doubles_before(first)
    }

    pub fn sockets(&self) -> u64 {
        self.sockets_in(0, self.buyers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::coordinator::split;

    fn check(shape: Shape) {
        let (mut claims, mut doubles, mut sockets) = (0u64, 0u64, 0u64);
        for i in 0..shape.buyers {
            let (a, b) = shape.claims_of(i);
            assert!(a >= 1, "buyer {i} claims at least once");
            assert_eq!(b > 0, shape.doubled(i), "buyer {i}: a second socket exactly when doubled");
            assert!(a.abs_diff(b) <= 1 || b == 0, "both sockets share the claims");
            claims += u64::from(a + b);
            doubles += u64::from(shape.doubled(i));
            sockets += 1 + u64::from(b > 0);
        }
        assert_eq!((claims, doubles, sockets), (shape.claims, shape.doubles, shape.sockets()), "{shape:?}");
    }

    #[test]
    fn every_claim_is_fired_once_and_every_buyer_claims() {
        let s = Shape::new(2_000, 5_000, 0.1).unwrap();
        assert_eq!((s.doubles, s.retries()), (200, 2_800));
        check(s);
        check(Shape::new(15_000, 50_000, 0.1).unwrap());
        check(Shape::new(7, 7, 0.5).unwrap());
        check(Shape::new(3, 100, 1.0).unwrap());
        check(Shape::new(1, 1, 0.0).unwrap());
    }

    #[test]
    fn doubles_are_capped_by_the_claims_and_spread_out() {
        let s = Shape::new(10, 12, 0.5).unwrap();
        assert_eq!((s.doubles, s.retries()), (2, 0), "only two claims to spare for second sockets");
        check(s);
        let s = Shape::new(1_000, 3_000, 0.1).unwrap();
        let parts = split(1_000, 4);
        let per: Vec<u64> = parts.iter().map(|&(f, c)| s.sockets_in(f, c) - c).collect();
        assert_eq!(per, [25, 25, 25, 25], "every worker gets its share of doubled buyers");
        assert_eq!(parts.iter().map(|&(f, c)| s.sockets_in(f, c)).sum::<u64>(), s.sockets());
        assert!(Shape::new(10, 9, 0.0).is_err());
        assert!(Shape::new(0, 9, 0.0).is_err());
        assert!(Shape::new(10, 10, 1.5).is_err());
    }
}
