//! Invoice totals in integer cents, computed the way EN 16931 (Factur-X) does:
//!
//! 1. **Line net** = quantity × unit price, rounded to the cent, half away from zero
//!    (`1.5 × 0.99 € = 1.485 €` → `1.49 €`). Quantities have at most 3 decimals.
//! 2. **VAT per rate**: the line nets are summed per VAT rate, and each sum × rate is
//!    rounded to the cent, half away from zero. VAT is *not* rounded line by line, so
//!    ten lines of 0.05 € at 20 % give 0.10 € of VAT, not 10 × 0.01 €. VAT rates have at
//!    most 2 decimals (5.5 %, 2.1 %).
//! 3. **Total net** = sum of the line nets; **total VAT** = sum of the VAT per rate;
//!    **total gross** = total net + total VAT.
//!
//! Quantities and rates are [`Decimal`]s parsed from the JSON text itself
//! ([`parse_exact`]), never through `f64`; every step is exact decimal arithmetic,
//! checked for overflow.

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// One invoice line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Quantity (at most 3 decimals).
    pub quantity: Decimal,
    /// Unit price in cents.
    pub unit_price_cents: i64,
    /// VAT rate in percent (at most 2 decimals).
    pub vat_rate: Decimal,
}

/// The totals of an invoice, in cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum of the line nets.
    pub net_cents: i64,
    /// Sum of the VAT per rate.
    pub vat_cents: i64,
    /// Net + VAT.
    pub gross_cents: i64,
}

fn to_cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
}

impl Line {
    /// Quantity × unit price, rounded to the cent; `None` on overflow.
    pub fn net_cents(&self) -> Option<i64> {
        self.net().and_then(|net| net.to_i64())
    }

    fn net(&self) -> Option<Decimal> {
        self.quantity
            .checked_mul(Decimal::from(self.unit_price_cents))
            .map(to_cents)
    }
}

/// The totals of `lines`, or `None` if an amount does not fit in 64 bits.
pub fn totals(lines: &[Line]) -> Option<Totals> {
    let mut net = Decimal::ZERO;
    let mut net_per_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for line in lines {
        let line_net = line.net()?;
        net = net.checked_add(line_net)?;
        let base = net_per_rate.entry(line.vat_rate.normalize()).or_default();
        *base = base.checked_add(line_net)?;
    }
    let mut vat = Decimal::ZERO;
    for (rate, base) in net_per_rate {
        vat = vat.checked_add(to_cents(base.checked_mul(rate)? / Decimal::ONE_HUNDRED))?;
    }
    Some(Totals {
        net_cents: net.to_i64()?,
        vat_cents: vat.to_i64()?,
        gross_cents: net.checked_add(vat)?.to_i64()?,
    })
}

/// The exact value of a JSON number's text (`1.5`, `2`, `1e-12`, `2.5E3`), or `None`
/// when it is not exactly representable: more than 28 digits after the point, or too
/// large. Unlike `Decimal::from_scientific`, nothing is rounded.
pub fn parse_exact(text: &str) -> Option<Decimal> {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (text, 0),
    };
    let mut value = Decimal::from_str_exact(mantissa).ok()?;
    let scale = i64::from(value.scale()).checked_sub(exponent)?;
    if scale >= 0 {
        value.set_scale(u32::try_from(scale).ok()?).ok()?;
    } else {
        value.set_scale(0).ok()?;
        for _ in 0..scale.unsigned_abs().min(29) {
            value = value.checked_mul(Decimal::TEN)?;
        }
    }
    Some(value)
}

/// The number of decimals of `value` (of the number, not of its spelling: `2.50` has 1).
pub fn decimals(value: Decimal) -> u32 {
    value.normalize().scale()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        parse_exact(text).expect("a decimal")
    }

    fn line(quantity: &str, unit_price_cents: i64, vat_rate: &str) -> Line {
        Line {
            quantity: dec(quantity),
            unit_price_cents,
            vat_rate: dec(vat_rate),
        }
    }

    #[test]
    fn line_nets_round_half_away_from_zero() {
        assert_eq!(line("1.5", 99, "20").net_cents(), Some(149)); // 148.5
        assert_eq!(line("1", 99, "20").net_cents(), Some(99));
        assert_eq!(line("0.333", 100, "20").net_cents(), Some(33)); // 33.3
        assert_eq!(line("0.335", 100, "20").net_cents(), Some(34)); // 33.5
        assert_eq!(line("2", 0, "20").net_cents(), Some(0));
    }

    #[test]
    fn vat_is_rounded_per_rate_not_per_line() {
        let lines = vec![line("1", 5, "20"); 10];
        assert_eq!(
            totals(&lines),
            Some(Totals {
                net_cents: 50,
                vat_cents: 10,
                gross_cents: 60
            })
        );
    }

    #[test]
    fn several_rates() {
        // 3 × 12.50 € at 20 %, 1 × 9.99 € at 5.5 %, 2 × 1.05 € at 5.50 % (the same rate).
        let lines = [
            line("3", 1250, "20"),
            line("1", 999, "5.5"),
            line("2", 105, "5.50"),
        ];
        // Net 37.50 + 9.99 + 2.10 = 49.59; VAT 7.50 + round(12.09 × 5.5 % = 0.66495) = 8.16.
        assert_eq!(
            totals(&lines),
            Some(Totals {
                net_cents: 4959,
                vat_cents: 816,
                gross_cents: 5775
            })
        );
    }

    #[test]
    fn huge_amounts_are_refused_not_wrapped() {
        let lines = vec![line("1000000", 1_000_000_000_000, "100"); 10];
        assert_eq!(totals(&lines), None);
        assert_eq!(line("1000000", i64::MAX, "0").net_cents(), None);
    }

    #[test]
    fn json_numbers_parse_exactly() {
        assert_eq!(dec("1e-12"), Decimal::new(1, 12));
        assert_eq!(dec("1.5"), Decimal::new(15, 1));
        assert_eq!(dec("2.5E3"), Decimal::from(2500));
        assert_eq!(dec("-0.0"), Decimal::ZERO);
        assert_eq!(decimals(dec("1e-12")), 12);
        assert_eq!(decimals(dec("2.000")), 0);
        assert_eq!(decimals(dec("0.125")), 3);
        // What a float parse or `from_scientific` would round to a nearby number.
        for text in [
            "0.00000000000000000000000000001",
            "1.00000000000000000000000000000000001",
            "1.0000000000000000000000000000001e0",
            "1e-29",
            "1e300",
            "79228162514264337593543950336",
            "1e",
            "",
        ] {
            assert_eq!(parse_exact(text), None, "{text}");
        }
    }
}
