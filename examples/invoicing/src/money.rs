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
//! Every step is integer arithmetic: quantities are kept in thousandths and rates in
//! hundredths of a percent, so no binary floating point touches an amount.

use std::collections::BTreeMap;

/// One invoice line, in exact integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Quantity in thousandths (1.5 → 1500).
    pub quantity_milli: i64,
    /// Unit price in cents.
    pub unit_price_cents: i64,
    /// VAT rate in hundredths of a percent (20 % → 2000, 5.5 % → 550).
    pub vat_rate_bp: i64,
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

/// `n / d` rounded half away from zero (`d` > 0).
fn div_round(n: i128, d: i128) -> i128 {
    let half = d / 2;
    if n >= 0 {
        (n + half) / d
    } else {
        (n - half) / d
    }
}

impl Line {
    /// Quantity × unit price, rounded to the cent.
    pub fn net_cents(&self) -> i128 {
        div_round(
            i128::from(self.quantity_milli) * i128::from(self.unit_price_cents),
            1000,
        )
    }
}

/// The totals of `lines`, or `None` if an amount does not fit in 64 bits.
pub fn totals(lines: &[Line]) -> Option<Totals> {
    let mut net: i128 = 0;
    let mut net_per_rate: BTreeMap<i64, i128> = BTreeMap::new();
    for line in lines {
        let line_net = line.net_cents();
        net += line_net;
        *net_per_rate.entry(line.vat_rate_bp).or_default() += line_net;
    }
    let vat: i128 = net_per_rate
        .iter()
        .map(|(rate, base)| div_round(base * i128::from(*rate), 10_000))
        .sum();
    Some(Totals {
        net_cents: i64::try_from(net).ok()?,
        vat_cents: i64::try_from(vat).ok()?,
        gross_cents: i64::try_from(net + vat).ok()?,
    })
}

/// `value` × 10^`decimals` as an exact integer, or `None` if `value` has more decimals
/// (or is not finite). JSON numbers arrive as `f64`: `0.1` is not exact in binary, so a
/// tiny tolerance separates "1.5" from "1.5001".
pub fn scaled(value: f64, decimals: u32) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let scaled = value * 10f64.powi(decimals as i32);
    let rounded = scaled.round();
    if rounded.abs() > 9.0e15 || (scaled - rounded).abs() > 1e-6 {
        return None;
    }
    Some(rounded as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: f64, unit_price_cents: i64, vat_rate: f64) -> Line {
        Line {
            quantity_milli: scaled(quantity, 3).unwrap(),
            unit_price_cents,
            vat_rate_bp: scaled(vat_rate, 2).unwrap(),
        }
    }

    #[test]
    fn line_nets_round_half_away_from_zero() {
        assert_eq!(line(1.5, 99, 20.0).net_cents(), 149); // 148.5
        assert_eq!(line(1.0, 99, 20.0).net_cents(), 99);
        assert_eq!(line(0.333, 100, 20.0).net_cents(), 33); // 33.3
        assert_eq!(line(0.335, 100, 20.0).net_cents(), 34); // 33.5
        assert_eq!(line(2.0, 0, 20.0).net_cents(), 0);
    }

    #[test]
    fn vat_is_rounded_per_rate_not_per_line() {
        let lines = vec![line(1.0, 5, 20.0); 10];
        assert_eq!(
            totals(&lines).unwrap(),
            Totals {
                net_cents: 50,
                vat_cents: 10,
                gross_cents: 60
            }
        );
    }

    #[test]
    fn several_rates() {
        // 3 × 12.50 € at 20 %, 1 × 9.99 € at 5.5 %, 2 × 1.05 € at 5.5 %.
        let lines = [
            line(3.0, 1250, 20.0),
            line(1.0, 999, 5.5),
            line(2.0, 105, 5.5),
        ];
        // Net 37.50 + 9.99 + 2.10 = 49.59; VAT 7.50 + round(12.09 × 5.5 % = 0.66495) = 8.16.
        assert_eq!(
            totals(&lines).unwrap(),
            Totals {
                net_cents: 4959,
                vat_cents: 816,
                gross_cents: 5775
            }
        );
    }

    #[test]
    fn huge_amounts_are_refused_not_wrapped() {
        let lines = vec![
            Line {
                quantity_milli: 1_000_000_000,
                unit_price_cents: 1_000_000_000_000,
                vat_rate_bp: 10_000,
            };
            10
        ];
        assert_eq!(totals(&lines), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(scaled(1.5, 3), Some(1500));
        assert_eq!(scaled(0.1, 3), Some(100));
        assert_eq!(scaled(5.5, 2), Some(550));
        assert_eq!(scaled(2.1, 2), Some(210));
        assert_eq!(scaled(1.0001, 3), None);
        assert_eq!(scaled(f64::NAN, 3), None);
        assert_eq!(scaled(1e300, 3), None);
    }
}
