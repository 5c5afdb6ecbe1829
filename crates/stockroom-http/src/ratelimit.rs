//! Keyed rate limiters with bounded memory: governor's GCRA over a table of our own.
//!
//! governor decides (its `Quota` and GCRA arithmetic); the table it keeps its state in is ours,
//! for two things governor's own tables do not offer: a **peek** (would this key pass now?
//! without counting anything — the token endpoint asks before it spends an argon2 check, and
//! counts only failures), and a **cap on keys**, so that an attacker with many addresses cannot
//! grow the table without bound. Used for failed sign-ins, and for shoppers' checkouts and
//! payments per token and per client address ([`OrderWriteLimits`], [`limit_order_writes`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{NotUntil, Quota, RateLimiter};

/// A key, and whether a decision taken through it is recorded (`peek` records nothing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Probe<K> {
    key: K,
    record: bool,
}

/// Each key's GCRA state (its "theoretical arrival time", in governor's nanoseconds).
struct Table<K> {
    cells: Arc<Mutex<HashMap<K, u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written u64 behind.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: Hash + Eq + Clone> StateStore for Table<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut cells = lock(&self.cells);
        let (outcome, next) = decide(cells.get(&probe.key).copied().map(Nanos::from))?;
        if probe.record {
            cells.insert(probe.key.clone(), next.as_u64());
        }
        Ok(outcome)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for Table<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        lock(&self.cells).retain(|_, tat| *tat > drop_below.as_u64());
    }

    fn len(&self) -> usize {
        lock(&self.cells).len()
    }

    fn is_empty(&self) -> bool {
        lock(&self.cells).is_empty()
    }
}

/// Refused: come back after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for a `Retry-After` header: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// How often a full table may be swept of keys back to a fresh state.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Events per key within a [`Quota`], for at most `keys_max` keys at once.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: RateLimiter<Probe<K>, Table<K>, DefaultClock, NoOpMiddleware>,
    cells: Arc<Mutex<HashMap<K, u64>>>,
    clock: DefaultClock,
    burst: NonZeroU32,
    keys_max: usize,
    last_sweep: Mutex<Option<Instant>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Quota, keys_max: usize) -> Self {
        let cells = Arc::new(Mutex::new(HashMap::new()));
        let clock = DefaultClock::default();
        KeyedLimiter {
            limiter: RateLimiter::new(
                quota,
                Table {
                    cells: cells.clone(),
                },
                clock.clone(),
            ),
            cells,
            clock,
            burst: quota.burst_size(),
            keys_max: keys_max.max(1),
            last_sweep: Mutex::new(None),
        }
    }

    /// Counts one event for `key`; refused (and nothing counted) when its quota is spent, or
    /// when the table is full of keys still within their window.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        if !self.has_room_for(key) {
            return Err(Limited {
                retry_after: SWEEP_EVERY,
            });
        }
        self.decide(key, true)
    }

    /// Whether [`check`](Self::check) would count an event for `key` now; counts nothing.
    pub fn peek(&self, key: &K) -> Result<(), Limited> {
        self.decide(key, false)
    }

    /// Whether `key` has its whole burst available: no events counted recently.
    pub fn is_fresh(&self, key: &K) -> bool {
        let probe = Probe {
            key: key.clone(),
            record: false,
        };
        matches!(self.limiter.check_key_n(&probe, self.burst), Ok(Ok(())))
    }

    /// Keys held now (some may be back to a fresh state, not yet swept).
    pub fn len(&self) -> usize {
        lock(&self.cells).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn decide(&self, key: &K, record: bool) -> Result<(), Limited> {
        let probe = Probe {
            key: key.clone(),
            record,
        };
        self.limiter
            .check_key(&probe)
            .map_err(|not_until: NotUntil<_>| Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// A key already held always has room; a new one needs a free place, which a sweep of the
    /// keys back to a fresh state may make (at most once a second: a sweep walks the table).
    fn has_room_for(&self, key: &K) -> bool {
        {
            let cells = lock(&self.cells);
            if cells.contains_key(key) || cells.len() < self.keys_max {
                return true;
            }
        }
        let mut last = lock(&self.last_sweep);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < SWEEP_EVERY) {
            return false;
        }
        *last = Some(now);
        drop(last);
        self.limiter.retain_recent();
        lock(&self.cells).len() < self.keys_max
    }
}

/// Most tokens and addresses whose order writes are remembered at once, each.
const ORDER_WRITE_KEYS_MAX: usize = 65_536;

/// The routes whose requests are order writes: checkouts and payments (as the route table
/// spells them).
pub const ORDER_WRITE_ROUTES: [&str; 2] =
    ["/v2/carts/{cart}/checkout", "/v2/orders/{order}/payments"];

/// Limits on shoppers' checkouts and payments (issue 12: a shopper hoarded stock and filled
/// the disk with orders): per token and per client address, each per minute (at once or
/// spread). Administrators are not limited.
pub struct OrderWriteLimits {
    by_token: Option<KeyedLimiter<String>>,
    by_address: Option<KeyedLimiter<IpAddr>>,
}

impl OrderWriteLimits {
    /// `0` turns a limit off.
    pub fn new(per_token_per_minute: u32, per_address_per_minute: u32) -> Self {
        fn limiter<K: Hash + Eq + Clone>(n: u32) -> Option<KeyedLimiter<K>> {
            NonZeroU32::new(n)
                .map(|n| KeyedLimiter::new(governor::Quota::per_minute(n), ORDER_WRITE_KEYS_MAX))
        }
        OrderWriteLimits {
            by_token: limiter(per_token_per_minute),
            by_address: limiter(per_address_per_minute),
        }
    }

    /// Counts one order write by `token` from `address`; refused (and nothing counted) when
    /// either has spent its allowance.
    pub fn admit(&self, token: &str, address: Option<IpAddr>) -> Result<(), Limited> {
        let token = token.to_owned();
        let address = address.map(address_key);
        let by_address = self.by_address.as_ref().zip(address);
        if let Some((limiter, address)) = &by_address {
            limiter.peek(address)?;
        }
        if let Some(limiter) = &self.by_token {
            limiter.peek(&token)?;
            limiter.check(&token)?;
        }
        if let Some((limiter, address)) = &by_address {
            limiter.check(address)?;
        }
        Ok(())
    }
}

/// The middleware that applies [`OrderWriteLimits`] to a shopper's requests on
/// [`ORDER_WRITE_ROUTES`]: over a limit, 429 with `Retry-After` and nothing done. A request
/// with no valid token is left to the access check (401).
pub async fn limit_order_writes(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_order_write = req.method() == axum::http::Method::POST
        && req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|p| ORDER_WRITE_ROUTES.contains(&p.as_str()));
    if !is_order_write {
        return next.run(req).await;
    }
    let token = crate::caller::bearer(req.headers()).map(str::to_owned);
    let shopper = token.as_deref().and_then(|t| {
        let role = state.tokens.check(t, state.clock.now())?;
        (role == stockroom_domain::Role::Shopper).then_some(t)
    });
    if let Some(token) = shopper {
        let address = req
            .extensions()
            .get::<crate::caller::ClientAddr>()
            .map(|c| c.0);
        if let Err(limited) = state.order_writes.admit(token, address) {
            ::metrics::counter!("stockroom_order_writes_limited_total").increment(1);
            return crate::ApiError::TooManyRequests {
                retry_after_secs: limited.retry_after_secs(),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// The key for limits per client address: an IPv4 address, or an IPv6 address's /64 network
/// (one subscriber usually holds a whole /64, so per-address limits on IPv6 would be none).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod order_write_tests {
    use super::*;

    #[test]
    fn order_writes_are_limited_per_token_and_per_address() {
        let limits = OrderWriteLimits::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(limits.admit("t1", Some(a)).is_ok());
        assert!(limits.admit("t1", Some(a)).is_ok());
        // The token has spent its 2; another token from the same address still has room.
        let refused = limits.admit("t1", Some(b)).expect_err("token spent");
        assert!(refused.retry_after_secs() >= 1);
        assert!(limits.admit("t2", Some(a)).is_ok());
        // The address has spent its 3 (a refused request counts for neither).
        assert!(limits.admit("t3", Some(a)).is_err());
        assert!(limits.admit("t3", Some(b)).is_ok());
        let off = OrderWriteLimits::new(0, 0);
        for _ in 0..100 {
            assert!(off.admit("t", Some(a)).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(n: u32) -> Quota {
        Quota::per_minute(NonZeroU32::new(n).expect("non-zero"))
    }

    #[test]
    fn a_key_gets_its_burst_then_is_refused_with_a_wait() {
        let limiter = KeyedLimiter::new(per_minute(3), 100);
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        let refused = limiter.check(&"a").expect_err("the fourth is refused");
        assert!(refused.retry_after > Duration::from_secs(15));
        assert!(refused.retry_after <= Duration::from_secs(20));
        assert_eq!(refused.retry_after_secs(), 20);
        assert_eq!(limiter.check(&"b"), Ok(()), "other keys are not affected");
    }

    #[test]
    fn peeking_counts_nothing() {
        let limiter = KeyedLimiter::new(per_minute(2), 100);
        for _ in 0..10 {
            assert_eq!(limiter.peek(&"a"), Ok(()));
        }
        assert!(limiter.is_empty(), "a peek stores no key");
        assert!(limiter.is_fresh(&"a"));
        limiter.check(&"a").expect("first");
        assert!(!limiter.is_fresh(&"a"), "one event counted");
        assert_eq!(limiter.peek(&"a"), Ok(()), "one more would pass");
        limiter.check(&"a").expect("second");
        assert!(limiter.peek(&"a").is_err(), "the burst is spent");
        assert!(limiter.check(&"a").is_err());
    }

    #[test]
    fn the_table_holds_at_most_its_cap_of_keys() {
        let limiter = KeyedLimiter::new(per_minute(1), 3);
        for key in 0..3 {
            limiter.check(&key).expect("room");
        }
        assert!(limiter.check(&3).is_err(), "a fourth key finds no room");
        assert!(limiter.check(&4).is_err());
        assert_eq!(limiter.len(), 3);
        assert!(limiter.check(&0).is_err(), "known keys are still limited");
    }

    #[test]
    fn a_full_table_is_swept_of_keys_back_to_fresh() {
        // 1000 a second: a key is fresh again a millisecond after its event.
        let quota = Quota::per_second(NonZeroU32::new(1000).expect("non-zero"))
            .allow_burst(NonZeroU32::MIN);
        let limiter = KeyedLimiter::new(quota, 2);
        limiter.check(&1).expect("room");
        limiter.check(&2).expect("room");
        // Time passing is the point here: governor forgets a key two emission intervals (2 ms)
        // after its last event; wait 10 ms by the clock.
        let swept_after = Instant::now() + Duration::from_millis(10);
        while Instant::now() < swept_after {
            std::hint::spin_loop();
        }
        assert!(limiter.is_fresh(&1) && limiter.is_fresh(&2));
        assert_eq!(limiter.check(&3), Ok(()), "the sweep made room");
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn ipv6_addresses_are_limited_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(
            address_key(mapped),
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
    }
}
