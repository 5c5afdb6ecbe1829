//! Money: integer minor units in one ISO 4217 currency, never a float (SPEC §2 "Products and
//! prices"). Arithmetic is checked: a sum or product that would leave the allowed range, or mix
//! currencies, is an error the caller must handle, never a wrapped or mixed amount.

use std::fmt;

use crate::limits::MONEY_AMOUNT_MAX;
use crate::stock::Quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be an ISO 4217 code of three capital letters, such as USD")]
    BadCurrency,
    #[error("amount must be a whole number of minor units from -{MONEY_AMOUNT_MAX} to {MONEY_AMOUNT_MAX}")]
    OutOfRange,
    #[error("amounts in different currencies cannot be added")]
    CurrencyMismatch,
}

/// An ISO 4217 currency code: exactly three ASCII capital letters (`USD`, `EUR`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars: Elastic Path's default currency.
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(MoneyError::BadCurrency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII capitals, checked in `parse`: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// An amount of money: whole minor units (cents) of one currency, within
/// ±[`MONEY_AMOUNT_MAX`] so that no sum of a bounded number of amounts can overflow `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor.unsigned_abs() > MONEY_AMOUNT_MAX as u64 {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    pub fn zero(currency: Currency) -> Self {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The sum of two amounts of one currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        Money::new(sum, self.currency)
    }

    /// The difference of two amounts of one currency (`self - other`).
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let difference = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        Money::new(difference, self.currency)
    }

    /// A unit price times a quantity: a line's value.
    pub fn checked_mul(self, quantity: Quantity) -> Result<Money, MoneyError> {
        let quantity = i64::try_from(quantity.get()).map_err(|_| MoneyError::OutOfRange)?;
        let product = self
            .amount_minor
            .checked_mul(quantity)
            .ok_or(MoneyError::OutOfRange)?;
        Money::new(product, self.currency)
    }

    /// The sum of many amounts of `currency` (zero for none).
    pub fn sum(
        currency: Currency,
        amounts: impl IntoIterator<Item = Money>,
    ) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }
}

/// A catalog price: an amount, and whether it includes tax (Elastic Path's `includes_tax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Price {
    pub amount: Money,
    pub includes_tax: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("USD").expect("USD is a code")
    }

    #[test]
    fn currencies_are_three_capital_letters() {
        assert_eq!(usd().as_str(), "USD");
        for bad in ["", "US", "usd", "USDX", "U$D", "ÉUR"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::BadCurrency),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_are_bounded_at_the_limit() {
        assert!(Money::new(MONEY_AMOUNT_MAX, usd()).is_ok());
        assert!(Money::new(-MONEY_AMOUNT_MAX, usd()).is_ok());
        assert_eq!(
            Money::new(MONEY_AMOUNT_MAX + 1, usd()),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(Money::new(i64::MIN, usd()), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn amounts_of_different_currencies_do_not_add() {
        let eur = Currency::parse("EUR").expect("EUR is a code");
        let a = Money::new(100, usd()).expect("in range");
        let b = Money::new(100, eur).expect("in range");
        assert_eq!(a.checked_add(b), Err(MoneyError::CurrencyMismatch));
        assert_eq!(a.checked_sub(b), Err(MoneyError::CurrencyMismatch));
    }

    #[test]
    fn a_line_beyond_the_limit_is_an_error_not_a_wrap() {
        let price = Money::new(1_000_000_000_000, usd()).expect("in range");
        let q = Quantity::new(1_000_000_000).expect("a quantity");
        assert_eq!(price.checked_mul(q), Err(MoneyError::OutOfRange));
    }

    proptest! {
        /// Checked arithmetic agrees with i128 arithmetic wherever the result is in range,
        /// and refuses exactly where it is not.
        #[test]
        fn arithmetic_matches_wide_integers(
            a in -MONEY_AMOUNT_MAX..=MONEY_AMOUNT_MAX,
            b in -MONEY_AMOUNT_MAX..=MONEY_AMOUNT_MAX,
            q in 1i64..=1_000_000_000,
        ) {
            let (ma, mb) = (Money::new(a, usd()).expect("a"), Money::new(b, usd()).expect("b"));
            let in_range = |x: i128| x.unsigned_abs() <= MONEY_AMOUNT_MAX as u128;
            let sum = i128::from(a) + i128::from(b);
            prop_assert_eq!(ma.checked_add(mb).ok().map(|m| i128::from(m.amount_minor())),
                            in_range(sum).then_some(sum));
            let difference = i128::from(a) - i128::from(b);
            prop_assert_eq!(ma.checked_sub(mb).ok().map(|m| i128::from(m.amount_minor())),
                            in_range(difference).then_some(difference));
            let product = i128::from(a) * i128::from(q);
            let quantity = Quantity::new(q).expect("a quantity");
            prop_assert_eq!(ma.checked_mul(quantity).ok().map(|m| i128::from(m.amount_minor())),
                            in_range(product).then_some(product));
        }
    }
}
