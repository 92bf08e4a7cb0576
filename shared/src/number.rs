//! Phone numbers as Bulkhead routes them: `+` and 3–15 digits (E.164 length),
//! after removing visual separators and adding a missing `+`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A normalized phone number such as `+15550100`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Number(String);

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a phone number: expected '+' and 3-15 digits (separators ' -.()' are allowed)"
)]
pub struct NumberError(pub String);

const MIN_DIGITS: usize = 3;
const MAX_DIGITS: usize = 15;

impl Number {
    /// Normalizes `s`: drops ` -.()`, adds a missing `+`, checks 3–15 digits.
    pub fn parse(s: &str) -> Result<Self, NumberError> {
        Self::normalize(s).ok_or_else(|| NumberError(s.to_owned()))
    }

    /// Like [`Number::parse`] but without allocating an error: the router's
    /// hot path calls this for every dialed user part.
    pub fn normalize(s: &str) -> Option<Self> {
        let s = s.trim();
        let rest = s.strip_prefix('+').unwrap_or(s);
        let mut out = String::with_capacity(MAX_DIGITS + 1);
        out.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => out.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
        }
        let digits = out.len() - 1;
        (MIN_DIGITS..=MAX_DIGITS)
            .contains(&digits)
            .then_some(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Number {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Number> for String {
    fn from(n: Number) -> String {
        n.0
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_separators_and_plus() {
        for (input, want) in [
            ("+15550100", "+15550100"),
            ("15550100", "+15550100"),
            ("+1 (555) 010-0", "+15550100"),
            ("1.555.0100", "+15550100"),
            ("911", "+911"),
        ] {
            assert_eq!(Number::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn refuses_non_numbers() {
        for bad in [
            "",
            "+",
            "12",
            "first.last",
            "+1555x",
            &"1".repeat(16),
            "++1555",
            "+1555;npdi",
        ] {
            assert!(Number::parse(bad).is_err(), "{bad}");
        }
    }
}
