//! The registry of coupon kinds. A kind says what it takes off the part of
//! an order it applies to, and which values it accepts; caps, minimum spend
//! and targets are the campaign's, the same for every kind. A new kind is
//! one more type here and one more entry in `KINDS`.

use super::{Money, Terms, mul_div_floor};

pub trait CouponKind: Send + Sync + std::fmt::Debug + 'static {
    /// The kind's name on the wire and in the database.
    fn name(&self) -> &'static str;

    /// The discount on `base` (the applicable subtotal, > 0) before the
    /// campaign's cap; callers clamp it to `0..=min(cap, base)`.
    fn discount(&self, terms: &Terms, base: Money) -> Money;

    /// Why `value` is not acceptable for this kind, if it is not.
    fn check_value(&self, value: i64) -> Result<(), String>;
}

/// An amount off.
#[derive(Debug)]
pub struct Fixed;

/// A percentage off, rounded down to the minor unit.
#[derive(Debug)]
pub struct Percent;

/// Above this no value is plausible money (10^13 minor units).
pub const MAX_AMOUNT: Money = 10_000_000_000_000;

impl CouponKind for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn discount(&self, terms: &Terms, base: Money) -> Money {
        terms.value.min(base)
    }

    fn check_value(&self, value: i64) -> Result<(), String> {
        if (1..=MAX_AMOUNT).contains(&value) {
            Ok(())
        } else {
            Err(format!("must be an amount from 1 to {MAX_AMOUNT} minor units"))
        }
    }
}

impl CouponKind for Percent {
    fn name(&self) -> &'static str {
        "percent"
    }

    fn discount(&self, terms: &Terms, base: Money) -> Money {
        mul_div_floor(base, terms.value.clamp(0, 100), 100)
    }

    fn check_value(&self, value: i64) -> Result<(), String> {
        if (1..=100).contains(&value) { Ok(()) } else { Err("must be a percentage from 1 to 100".into()) }
    }
}

/// Every kind a campaign may be.
pub static KINDS: &[&dyn CouponKind] = &[&Fixed, &Percent];

pub fn kind_named(name: &str) -> Option<&'static dyn CouponKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}
