//! Time as the domain sees it: an injected clock, never a direct read.

/// Microseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }
}

/// Where the current time comes from. The server uses the system clock; tests move time by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}
