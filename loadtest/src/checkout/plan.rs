//! Who buys what and pays how: the payment-outcome mix (`--mix
//! ok=90,flaky=4,...`, each prefix the sandbox's), turned into exact counts
//! by largest remainder and dealt out over the buyers in a seeded shuffle,
//! with each buyer's seat count (uniform in `--seats`) and whether it asks
//! for the `best` coupon. The coordinator makes the plan once and sends
//! each worker its buyers' part. Pure: no I/O, no clocks.

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

/// A payment key's prefix, which makes the sandbox's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ok,
    Flaky,
    Decline,
    Slow,
    Lost,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Ok, Kind::Flaky, Kind::Decline, Kind::Slow, Kind::Lost];

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Flaky => "flaky",
            Kind::Decline => "decline",
            Kind::Slow => "slow",
            Kind::Lost => "lost",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.prefix() == s)
    }

    /// Whether the protocol promises this payment ends `paid` (with the
    /// server's default retries and reconciliation): all but a decline.
    pub fn ends_paid(self) -> bool {
        self != Kind::Decline
    }

    /// Whether it answers at once (not `slow`, whose confirm outlasts the
    /// client's time-out, nor `lost`, whose reply is dropped): the payments
    /// the headline throughput is measured on.
    pub fn fast(self) -> bool {
        matches!(self, Kind::Ok | Kind::Flaky | Kind::Decline)
    }
}

/// Shares of the outcomes, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mix(pub Vec<(Kind, u32)>);

impl Mix {
    /// `ok=90,flaky=4,decline=3,slow=2,lost=1` (weights, any scale).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut out: Vec<(Kind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').with_context(|| format!("{part:?} is not PREFIX=WEIGHT"))?;
            let Some(kind) = Kind::parse(name.trim()) else {
                bail!("unknown prefix {name:?}: ok, flaky, decline, slow or lost")
            };
            let weight: u32 = weight.trim().parse().with_context(|| format!("bad weight in {part:?}"))?;
            ensure!(!out.iter().any(|(k, _)| *k == kind), "{name} appears twice");
            out.push((kind, weight));
        }
        ensure!(out.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() > 0, "the mix has no weight");
        Ok(Self(out))
    }

    /// `n` split by the weights, exactly (largest remainder; ties to the
    /// one named first).
    pub fn counts(&self, n: u64) -> Vec<(Kind, u64)> {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut out: Vec<(Kind, u64, u64)> = self
            .0
            .iter()
            .map(|&(k, w)| {
                let exact = u128::from(n) * u128::from(w);
                (k, (exact / u128::from(total)) as u64, (exact % u128::from(total)) as u64)
            })
            .collect();
        let mut left = n - out.iter().map(|x| x.1).sum::<u64>();
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|&a, &b| out[b].2.cmp(&out[a].2).then(a.cmp(&b)));
        for i in order {
            if left == 0 {
                break;
            }
            out[i].1 += 1;
            left -= 1;
        }
        out.into_iter().map(|(k, c, _)| (k, c)).collect()
    }

    pub fn describe(&self) -> String {
        self.0.iter().map(|(k, w)| format!("{}={w}", k.prefix())).collect::<Vec<_>>().join(",")
    }
}

/// One buyer's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerPlan {
    /// The payment key's prefix.
    pub kind: Kind,
    /// Seats it asks `hold_best` for.
    pub seats: u8,
    /// Claims a coupon of the run's campaign and checks out with `best`.
    pub best: bool,
}

/// splitmix64, seeded: the same plan from the same seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the bias is far below what matters here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Every buyer's part: the mix's exact counts and `best_share` of the
/// buyers asking for the best coupon, each dealt out in a shuffle; seat
/// counts uniform in `seats`.
pub fn plan(n: u64, mix: &Mix, seats: (u8, u8), best_share: f64, seed: u64) -> Vec<BuyerPlan> {
    let mut rng = Rng::new(seed);
    let mut kinds: Vec<Kind> =
        mix.counts(n).into_iter().flat_map(|(k, c)| std::iter::repeat_n(k, c as usize)).collect();
    rng.shuffle(&mut kinds);
    let best_n = ((n as f64 * best_share).round() as u64).min(n);
    let mut best: Vec<bool> = (0..n).map(|i| i < best_n).collect();
    rng.shuffle(&mut best);
    let span = u64::from(seats.1 - seats.0) + 1;
    kinds
        .into_iter()
        .zip(best)
        .map(|(kind, best)| BuyerPlan { kind, seats: seats.0 + rng.below(span) as u8, best })
        .collect()
}

/// `1-2` (or `2`) as the least and most seats a buyer holds.
pub fn parse_seats(s: &str) -> anyhow::Result<(u8, u8)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u8, u8) = (a.trim().parse()?, b.trim().parse()?);
    ensure!(1 <= a && a <= b && b <= 8, "--seats must be like 1-2, between 1 and 8");
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_parses_and_splits_exactly() {
        let m = Mix::parse("ok=90,flaky=4,decline=3,slow=2,lost=1").unwrap();
        assert_eq!(m.describe(), "ok=90,flaky=4,decline=3,slow=2,lost=1");
        let c = m.counts(1_500);
        assert_eq!(c, [(Kind::Ok, 1_350), (Kind::Flaky, 60), (Kind::Decline, 45), (Kind::Slow, 30), (Kind::Lost, 15)]);
        let c = Mix::parse("ok=1,decline=1,lost=1").unwrap().counts(10);
        assert_eq!(c.iter().map(|x| x.1).sum::<u64>(), 10);
        assert_eq!(c[0], (Kind::Ok, 4), "the remainder goes to the first named");
        assert!(Mix::parse("ok=1,ok=2").is_err());
        assert!(Mix::parse("okay=1").is_err());
        assert!(Mix::parse("ok=0").is_err());
        assert!(Mix::parse("ok").is_err());
    }

    #[test]
    fn the_plan_deals_the_counts_out_and_is_seeded() {
        let m = Mix::parse("ok=90,flaky=4,decline=3,slow=2,lost=1").unwrap();
        let p = plan(1_000, &m, (1, 2), 0.2, 7);
        assert_eq!(p.len(), 1_000);
        assert_eq!(p.iter().filter(|b| b.kind == Kind::Lost).count(), 10);
        assert_eq!(p.iter().filter(|b| b.best).count(), 200);
        assert!(p.iter().all(|b| (1..=2).contains(&b.seats)));
        let twos = p.iter().filter(|b| b.seats == 2).count();
        assert!((400..600).contains(&twos), "{twos}");
        assert_eq!(p, plan(1_000, &m, (1, 2), 0.2, 7));
        assert_ne!(p, plan(1_000, &m, (1, 2), 0.2, 8));
        // The kinds are spread, not in blocks.
        assert!(p[..500].iter().any(|b| b.kind != Kind::Ok) && p[500..].iter().any(|b| b.kind != Kind::Ok));
    }

    #[test]
    fn seats_and_kinds() {
        assert_eq!(parse_seats("1-2").unwrap(), (1, 2));
        assert_eq!(parse_seats("2").unwrap(), (2, 2));
        assert!(parse_seats("0-2").is_err() && parse_seats("3-2").is_err() && parse_seats("1-9").is_err());
        assert!(Kind::Flaky.ends_paid() && !Kind::Decline.ends_paid());
        assert!(Kind::Decline.fast() && !Kind::Slow.fast() && !Kind::Lost.fast());
    }
}
