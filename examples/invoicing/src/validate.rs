//! What `garde` does not know: the normalisation of text fields as they are read
//! (`serde` `deserialize_with`), and the formats of this domain as `garde` custom rules.
//! Lengths, `required` and e-mail addresses are `garde`'s own rules, on the input types
//! of [`crate::model`].

use garde::Error;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

use crate::money;

/// Reads an optional text, trimmed; empty is absent.
pub fn trimmed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty()))
}

/// Reads an optional code: spaces removed, upper-cased; empty is absent.
pub fn code<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value
        .map(|value| value.replace(' ', "").to_uppercase())
        .filter(|value| !value.is_empty()))
}

/// Reads an optional JSON number exactly, as a [`Decimal`] ([`money::parse_exact`]): a
/// string is refused like any other type, and a number with more than 28 decimals too.
pub fn exact_decimal<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Decimal>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    money::parse_exact(number.as_str())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{number} is not a decimal number this API can hold"
            ))
        })
}

/// No control characters but line breaks.
pub fn plain<C>(value: &Option<String>, _: &C) -> garde::Result {
    match value {
        Some(value) if value.chars().any(|c| c.is_control() && c != '\n') => {
            Err(Error::new("must not contain control characters"))
        }
        _ => Ok(()),
    }
}

/// A SIRET: exactly 14 digits (spaces removed when read).
pub fn siret(value: &str) -> garde::Result {
    if value.len() == 14 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::new("must be 14 digits"))
    }
}

/// An intra-community VAT number: 2 letters then 2 to 13 letters or digits.
pub fn vat_number<C>(value: &Option<String>, _: &C) -> garde::Result {
    let Some(value) = value else { return Ok(()) };
    let ok = (4..=15).contains(&value.len())
        && value.bytes().take(2).all(|b| b.is_ascii_uppercase())
        && value.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            "must be a country code followed by 2 to 13 letters or digits",
        ))
    }
}

/// An ISO 3166-1 alpha-2 country code (the format, not the list).
pub fn country<C>(value: &Option<String>, _: &C) -> garde::Result {
    letters(value, 2, "must be an ISO 3166-1 alpha-2 code such as FR")
}

/// An ISO 4217 currency code (the format, not the list).
pub fn currency<C>(value: &Option<String>, _: &C) -> garde::Result {
    letters(value, 3, "must be an ISO 4217 code such as EUR")
}

fn letters(value: &Option<String>, len: usize, message: &'static str) -> garde::Result {
    match value {
        Some(value) if value.len() != len || !value.bytes().all(|b| b.is_ascii_uppercase()) => {
            Err(Error::new(message))
        }
        _ => Ok(()),
    }
}

/// A calendar date `YYYY-MM-DD` (years 1900 to 9999). Dates in this format compare as
/// strings in calendar order.
pub fn date<C>(value: &Option<String>, _: &C) -> garde::Result {
    let Some(value) = value else { return Ok(()) };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(value, format) {
        Ok(date) if value.len() == 10 && (1900..=9999).contains(&date.year()) => Ok(()),
        _ => Err(Error::new("must be a date YYYY-MM-DD")),
    }
}

/// A decimal in `(0, max]` (`min_exclusive`) or `[0, max]`, with at most `decimals`
/// decimals.
pub fn decimal(
    min_exclusive: bool,
    max: Decimal,
    decimals: u32,
) -> impl FnOnce(&Option<Decimal>, &()) -> garde::Result {
    move |value, _| {
        let Some(value) = *value else { return Ok(()) };
        let low = if min_exclusive { "> 0" } else { "≥ 0" };
        if (min_exclusive && value <= Decimal::ZERO) || value < Decimal::ZERO || value > max {
            Err(Error::new(format!("must be {low} and at most {max}")))
        } else if money::decimals(value) > decimals {
            Err(Error::new(format!("at most {decimals} decimals")))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn dates() {
        for good in ["2024-02-29", "2000-02-29", "1900-01-01", "9999-12-31"] {
            assert!(date(&some(good), &()).is_ok(), "{good}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01T00:00",
            "+024-01-01",
            "0000-01-01",
            "２０２４-01-01",
        ] {
            assert!(date(&some(bad), &()).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(siret("73282932000074").is_ok());
        assert!(siret("7328293200007").is_err());
        assert!(siret("7328293200007a").is_err());
        assert!(vat_number(&some("FR40303265045"), &()).is_ok());
        assert!(vat_number(&some("1234"), &()).is_err());
        assert!(country(&some("FR"), &()).is_ok());
        assert!(country(&some("FRA"), &()).is_err());
        assert!(currency(&some("EUR"), &()).is_ok());
        assert!(currency(&some("€"), &()).is_err());
    }

    #[test]
    fn decimals() {
        let quantity =
            |text: &str| decimal(true, Decimal::from(1_000_000), 3)(&money::parse_exact(text), &());
        assert!(quantity("1.5").is_ok());
        assert!(quantity("2.000").is_ok());
        assert!(quantity("0.001").is_ok());
        assert!(quantity("1e-12").is_err());
        assert!(quantity("1.0001").is_err());
        assert!(quantity("0").is_err());
        assert!(quantity("1000000.001").is_err());
        let rate =
            |text: &str| decimal(false, Decimal::ONE_HUNDRED, 2)(&money::parse_exact(text), &());
        assert!(rate("0").is_ok());
        assert!(rate("5.5").is_ok());
        assert!(rate("5.555").is_err());
        assert!(rate("100.01").is_err());
    }
}
