//! The order's state machine (SPEC §2): checkout → pay (authorize → capture, or purchase) →
//! ship; cancel releases. Each transition returns the next state or why it is not allowed.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Incomplete,
    Complete,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payment {
    Unpaid,
    Authorized,
    Paid,
    /// Every unit of money paid has been given back (Elastic Path's `refunded`).
    Refunded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shipping {
    Unfulfilled,
    Fulfilled,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Status { Incomplete => "incomplete", Complete => "complete", Cancelled => "cancelled" });
names!(Payment { Unpaid => "unpaid", Authorized => "authorized", Paid => "paid", Refunded => "refunded" });
names!(Shipping { Unfulfilled => "unfulfilled", Fulfilled => "fulfilled" });

/// How a payment is asked for: `purchase` takes the money at once, `authorize` reserves it
/// for a later `capture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentMethod {
    Purchase,
    Authorize,
}

names!(PaymentMethod { Purchase => "purchase", Authorize => "authorize" });

/// Why a transition is not allowed. Each is a 409 at the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order is cancelled")]
    Cancelled,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("a payment for the order is in progress")]
    BeingPaid,
    #[error("the order is not authorized, so there is nothing to capture")]
    NotAuthorized,
    #[error("only a paid order can be shipped")]
    NotPaid,
    #[error("the order is already shipped")]
    Shipped,
    #[error("only a paid transaction can be refunded, and never for more than was paid")]
    NotRefundable,
}

/// An order's state. `paying` is true while a payment attempt holds an allocation whose
/// outcome is not yet recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub status: Status,
    pub payment: Payment,
    pub shipping: Shipping,
    pub paying: bool,
}

/// What cancelling does to stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCancel {
    /// The order held an allocation: release it.
    Release,
    /// Nothing was allocated: just close the order.
    Close,
}

impl OrderState {
    /// A new order, as checkout makes it.
    pub fn checked_out() -> Self {
        OrderState {
            status: Status::Incomplete,
            payment: Payment::Unpaid,
            shipping: Shipping::Unfulfilled,
            paying: false,
        }
    }

    /// Starting a payment attempt (its allocation is made in the same step).
    pub fn begin_payment(self) -> Result<Self, OrderError> {
        if self.status == Status::Cancelled {
            return Err(OrderError::Cancelled);
        }
        if self.paying {
            return Err(OrderError::BeingPaid);
        }
        if self.payment != Payment::Unpaid {
            return Err(OrderError::AlreadyPaid);
        }
        Ok(OrderState {
            paying: true,
            ..self
        })
    }

    /// The gateway approved the attempt.
    pub fn payment_succeeded(self, method: PaymentMethod) -> Self {
        match method {
            PaymentMethod::Purchase => OrderState {
                status: Status::Complete,
                payment: Payment::Paid,
                paying: false,
                ..self
            },
            PaymentMethod::Authorize => OrderState {
                payment: Payment::Authorized,
                paying: false,
                ..self
            },
        }
    }

    /// The attempt failed (declined, error, timeout, expiry): the order may be paid again.
    pub fn payment_failed(self) -> Self {
        OrderState {
            paying: false,
            ..self
        }
    }

    pub fn capture(self) -> Result<Self, OrderError> {
        if self.status == Status::Cancelled {
            return Err(OrderError::Cancelled);
        }
        match self.payment {
            Payment::Authorized => Ok(OrderState {
                status: Status::Complete,
                payment: Payment::Paid,
                ..self
            }),
            Payment::Paid | Payment::Refunded => Err(OrderError::AlreadyPaid),
            Payment::Unpaid => Err(OrderError::NotAuthorized),
        }
    }

    /// Voiding (cancelling) the order's authorization before it is captured: its allocation is
    /// released and the order is unpaid again (it may be paid anew).
    pub fn void(self) -> Result<Self, OrderError> {
        if self.status == Status::Cancelled {
            return Err(OrderError::Cancelled);
        }
        if self.paying {
            return Err(OrderError::BeingPaid);
        }
        match self.payment {
            Payment::Authorized => Ok(OrderState {
                payment: Payment::Unpaid,
                ..self
            }),
            Payment::Paid | Payment::Refunded => Err(OrderError::AlreadyPaid),
            Payment::Unpaid => Err(OrderError::NotAuthorized),
        }
    }

    /// Giving back `amount` of the `paid` money, of which `refunded` was given back already.
    /// Moves no stock and keeps the order's status (a cancelled order may be refunded); the
    /// payment becomes `refunded` once everything paid has been given back.
    pub fn refund(self, amount: i64, paid: i64, refunded: i64) -> Result<Self, OrderError> {
        if self.payment != Payment::Paid || amount < 1 || refunded < 0 {
            return Err(OrderError::NotRefundable);
        }
        let after = refunded
            .checked_add(amount)
            .ok_or(OrderError::NotRefundable)?;
        if after > paid {
            return Err(OrderError::NotRefundable);
        }
        let payment = match after == paid {
            true => Payment::Refunded,
            false => Payment::Paid,
        };
        Ok(OrderState { payment, ..self })
    }

    pub fn ship(self) -> Result<Self, OrderError> {
        if self.status == Status::Cancelled {
            return Err(OrderError::Cancelled);
        }
        if self.shipping == Shipping::Fulfilled {
            return Err(OrderError::Shipped);
        }
        if self.payment != Payment::Paid {
            return Err(OrderError::NotPaid);
        }
        Ok(OrderState {
            shipping: Shipping::Fulfilled,
            ..self
        })
    }

    pub fn cancel(self) -> Result<(Self, OnCancel), OrderError> {
        if self.shipping == Shipping::Fulfilled {
            return Err(OrderError::Shipped);
        }
        if self.status == Status::Cancelled {
            return Err(OrderError::Cancelled);
        }
        if self.paying {
            return Err(OrderError::BeingPaid);
        }
        let on_cancel = match self.payment {
            Payment::Unpaid => OnCancel::Close,
            Payment::Authorized | Payment::Paid | Payment::Refunded => OnCancel::Release,
        };
        Ok((
            OrderState {
                status: Status::Cancelled,
                ..self
            },
            on_cancel,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchase_then_ship() {
        let s = OrderState::checked_out().begin_payment().expect("pay");
        assert_eq!(s.begin_payment(), Err(OrderError::BeingPaid));
        assert_eq!(s.cancel(), Err(OrderError::BeingPaid));
        let s = s.payment_succeeded(PaymentMethod::Purchase);
        assert_eq!(
            (s.status, s.payment, s.paying),
            (Status::Complete, Payment::Paid, false)
        );
        assert_eq!(s.begin_payment(), Err(OrderError::AlreadyPaid));
        let s = s.ship().expect("ship");
        assert_eq!(s.shipping, Shipping::Fulfilled);
        assert_eq!(s.ship(), Err(OrderError::Shipped));
        assert_eq!(s.cancel(), Err(OrderError::Shipped));
    }

    #[test]
    fn authorize_then_capture() {
        let s = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_succeeded(PaymentMethod::Authorize);
        assert_eq!(
            (s.status, s.payment),
            (Status::Incomplete, Payment::Authorized)
        );
        assert_eq!(s.ship(), Err(OrderError::NotPaid));
        let s = s.capture().expect("capture");
        assert_eq!((s.status, s.payment), (Status::Complete, Payment::Paid));
        assert_eq!(s.capture(), Err(OrderError::AlreadyPaid));
    }

    #[test]
    fn a_failed_payment_may_be_tried_again() {
        let s = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_failed();
        assert_eq!(s, OrderState::checked_out());
        assert!(s.begin_payment().is_ok());
        assert_eq!(
            OrderState::checked_out().capture(),
            Err(OrderError::NotAuthorized)
        );
    }

    #[test]
    fn cancelling_releases_only_what_was_allocated() {
        let (s, on) = OrderState::checked_out().cancel().expect("cancel");
        assert_eq!((s.status, on), (Status::Cancelled, OnCancel::Close));
        assert_eq!(s.cancel(), Err(OrderError::Cancelled));
        assert_eq!(s.begin_payment(), Err(OrderError::Cancelled));
        let paid = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_succeeded(PaymentMethod::Purchase);
        assert_eq!(paid.cancel().map(|(_, on)| on), Ok(OnCancel::Release));
        let authorized = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_succeeded(PaymentMethod::Authorize);
        let (cancelled, on) = authorized.cancel().expect("cancel");
        assert_eq!(on, OnCancel::Release);
        assert_eq!(cancelled.capture(), Err(OrderError::Cancelled));
        assert_eq!(cancelled.ship(), Err(OrderError::Cancelled));
    }

    #[test]
    fn a_void_unpays_an_authorized_order_once() {
        let authorized = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_succeeded(PaymentMethod::Authorize);
        let voided = authorized.void().expect("void");
        assert_eq!(voided, OrderState::checked_out());
        assert_eq!(voided.void(), Err(OrderError::NotAuthorized));
        assert_eq!(voided.capture(), Err(OrderError::NotAuthorized));
        let captured = authorized.capture().expect("capture");
        assert_eq!(captured.void(), Err(OrderError::AlreadyPaid));
        let (cancelled, _) = authorized.cancel().expect("cancel");
        assert_eq!(cancelled.void(), Err(OrderError::Cancelled));
    }

    #[test]
    fn refunds_never_exceed_what_was_paid() {
        let paid = OrderState::checked_out()
            .begin_payment()
            .expect("pay")
            .payment_succeeded(PaymentMethod::Purchase);
        let partly = paid.refund(40, 100, 0).expect("partial");
        assert_eq!(partly.payment, Payment::Paid);
        assert_eq!(partly.refund(61, 100, 40), Err(OrderError::NotRefundable));
        let all = partly.refund(60, 100, 40).expect("the rest");
        assert_eq!(
            (all.status, all.payment),
            (Status::Complete, Payment::Refunded)
        );
        assert_eq!(all.refund(1, 100, 100), Err(OrderError::NotRefundable));
        assert_eq!(paid.refund(0, 100, 0), Err(OrderError::NotRefundable));
        assert_eq!(paid.refund(101, 100, 0), Err(OrderError::NotRefundable));
        assert_eq!(
            OrderState::checked_out().refund(1, 100, 0),
            Err(OrderError::NotRefundable)
        );
        let (cancelled, _) = paid.cancel().expect("cancel");
        assert_eq!(
            cancelled.refund(100, 100, 0).map(|s| (s.status, s.payment)),
            Ok((Status::Cancelled, Payment::Refunded))
        );
        assert_eq!(all.ship(), Err(OrderError::NotPaid));
        assert_eq!(all.begin_payment(), Err(OrderError::AlreadyPaid));
    }

    #[test]
    fn state_names_round_trip() {
        for s in [Status::Incomplete, Status::Complete, Status::Cancelled] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for p in [
            Payment::Unpaid,
            Payment::Authorized,
            Payment::Paid,
            Payment::Refunded,
        ] {
            assert_eq!(Payment::parse(p.as_str()), Some(p));
        }
        assert_eq!(Shipping::parse("fulfilled"), Some(Shipping::Fulfilled));
        assert_eq!(PaymentMethod::parse("refund"), None);
    }
}
