//! Field checks. Each returns the message for the `fields` map of a 422.

/// A required text of `min..=max` characters, trimmed.
pub fn text(value: Option<&str>, min: usize, max: usize) -> Result<String, String> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err("required".into());
    }
    optional_text(Some(value), max)
        .and_then(|value| value.ok_or_else(|| "required".into()))
        .and_then(|value| {
            if value.chars().count() < min {
                Err(format!("must have at least {min} characters"))
            } else {
                Ok(value)
            }
        })
}

/// An optional text of at most `max` characters, trimmed; empty is absent.
pub fn optional_text(value: Option<&str>, max: usize) -> Result<Option<String>, String> {
    let Some(value) = value.map(str::trim).filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(format!("must have at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must not contain control characters".into());
    }
    Ok(Some(value.to_owned()))
}

/// A SIRET: exactly 14 digits (spaces allowed between groups, removed).
pub fn siret(value: &str) -> Result<String, String> {
    let digits: String = value.chars().filter(|c| *c != ' ').collect();
    if digits.len() == 14 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err("must be 14 digits".into())
    }
}

/// An intra-community VAT number: 2 letters then 2 to 13 letters or digits, upper-cased.
pub fn vat_number(value: &str) -> Result<String, String> {
    let value: String = value
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase();
    let ok = (4..=15).contains(&value.len())
        && value.bytes().take(2).all(|b| b.is_ascii_uppercase())
        && value.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(value)
    } else {
        Err("must be a country code followed by 2 to 13 letters or digits".into())
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-cased (the format, not the list).
pub fn country(value: &str) -> Result<String, String> {
    let value = value.trim().to_ascii_uppercase();
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value)
    } else {
        Err("must be an ISO 3166-1 alpha-2 code such as FR".into())
    }
}

/// An ISO 4217 currency code, upper-cased (the format, not the list).
pub fn currency(value: &str) -> Result<String, String> {
    let value = value.trim().to_ascii_uppercase();
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value)
    } else {
        Err("must be an ISO 4217 code such as EUR".into())
    }
}

/// An e-mail address: one `@`, a local part, a domain with a dot, no spaces, at most
/// 254 characters. Deliberately simple: deliverability is not checked.
pub fn email(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be an e-mail address".into())
    }
}

/// A calendar date `YYYY-MM-DD` (years 1900 to 9999). Dates in this format compare as
/// strings in calendar order.
pub fn date(value: &str) -> Result<String, String> {
    let error = || "must be a date YYYY-MM-DD".to_owned();
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(error());
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &value[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return Err(error());
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(error()),
    };
    if !(1900..=9999).contains(&year) || day == 0 || day > days {
        return Err(error());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(date("2024-02-29").is_ok());
        assert!(date("2023-02-29").is_err());
        assert!(date("2000-02-29").is_ok());
        assert!(date("1900-02-29").is_err());
        assert!(date("2024-04-31").is_err());
        assert!(date("2024-13-01").is_err());
        assert!(date("2024-1-01").is_err());
        assert!(date("2024-01-01T00:00").is_err());
        assert!(date("+024-01-01").is_err());
        assert!(date("２０２４-01-01").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("a@b.fr").is_ok());
        assert!(email("first.last+tag@example.co.uk").is_ok());
        for bad in [
            "", "a", "a@b", "@b.fr", "a@@b.fr", "a b@c.fr", "a@.fr", "a@b.", "a@b..fr",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert_eq!(siret("732 829 320 00074").unwrap(), "73282932000074");
        assert!(siret("7328293200007").is_err());
        assert!(siret("7328293200007a").is_err());
        assert_eq!(vat_number("fr 40 303265045").unwrap(), "FR40303265045");
        assert!(vat_number("1234").is_err());
        assert_eq!(country("fr").unwrap(), "FR");
        assert!(country("FRA").is_err());
        assert_eq!(currency("eur").unwrap(), "EUR");
        assert!(currency("€").is_err());
    }

    #[test]
    fn texts() {
        assert_eq!(text(Some("  Acme  "), 1, 200).unwrap(), "Acme");
        assert_eq!(text(None, 1, 200).unwrap_err(), "required");
        assert_eq!(text(Some("   "), 1, 200).unwrap_err(), "required");
        assert!(text(Some(&"x".repeat(201)), 1, 200).is_err());
        assert!(text(Some(&"é".repeat(200)), 1, 200).is_ok());
        assert!(text(Some("a\u{0}b"), 1, 200).is_err());
        assert_eq!(optional_text(Some(""), 10).unwrap(), None);
    }
}
