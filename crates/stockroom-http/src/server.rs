//! Connections: accepted within caps (per process and per client address), closed when their
//! request head is slow or when they sit idle, and drained on shutdown. Also the layer that
//! reads a request's body, within its own deadline, before the request takes a slot.
//!
//! Why not hyper's own `header_read_timeout`: on a kept-alive connection its clock starts when
//! the previous response is sent, so it bounds idle time and header time together and the two
//! cannot be set apart. A small watchdog per connection keeps both: the head of a request must
//! be complete within the header-read timeout of its first byte (of the accept, for a
//! connection's first request), and a connection with no request started within the
//! keep-alive timeout of its last response is closed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use stockroom_domain::limits::BODY_BYTES_MAX;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::ratelimit::address_key;
use crate::{AppState, Limits};

// The client's address, still reachable by this module's name, as the dashboard uses it.
pub use crate::caller::ClientAddr;

/// Connections open now (`/metrics`).
const CONNECTIONS_OPEN: &str = "stockroom_connections_open";
/// Connections closed at accept because a cap was reached, by `cap`.
const CONNECTIONS_REFUSED: &str = "stockroom_connections_refused_total";
/// Connections closed by a timeout, by `timeout`.
const CONNECTIONS_TIMED_OUT: &str = "stockroom_connections_timed_out_total";

/// Accepts connections until `shutdown` completes, then stops accepting, lets every connection
/// finish the request it is serving (idle ones close at once) and returns when all are closed.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let admissions = Admissions::new(&limits);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Refused connections are dropped, which closes them at once.
        let Some(admission) = admissions.admit(peer.ip()) else {
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            peer,
        };
        tokio::spawn(connection.serve(stream, admission, stopping.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    admissions.all_closed().await;
    Ok(())
}

/// Out of descriptors (or another passing failure): wait a little rather than spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        tracing::warn!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The caps on open connections: a semaphore for the process, a count per client address.
struct Admissions {
    all: Arc<Semaphore>,
    max: u32,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_address_max: usize,
}

/// An open connection's places under both caps, given back when it is dropped.
struct Admission {
    _permit: OwnedSemaphorePermit,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Admissions {
    fn new(limits: &Limits) -> Self {
        let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX >> 3);
        Admissions {
            all: Arc::new(Semaphore::new(max as usize)),
            max,
            per_address: Arc::default(),
            per_address_max: limits.max_connections_per_address.max(1),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Admission> {
        let Ok(permit) = self.all.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED, "cap" => "max_connections").increment(1);
            return None;
        };
        let address = address_key(ip);
        {
            let mut open = lock(&self.per_address);
            let n = open.entry(address).or_insert(0);
            if *n >= self.per_address_max {
                metrics::counter!(CONNECTIONS_REFUSED, "cap" => "max_connections_per_address")
                    .increment(1);
                return None;
            }
            *n += 1;
        }
        metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
        Some(Admission {
            _permit: permit,
            per_address: self.per_address.clone(),
            address,
        })
    }

    /// Every connection holds a permit until it is closed.
    async fn all_closed(&self) {
        let _ = self.all.acquire_many(self.max).await;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = lock(&self.per_address);
        if let Some(n) = open.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.address);
            }
        }
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

struct Connection {
    router: Router,
    limits: Arc<Limits>,
    peer: SocketAddr,
}

impl Connection {
    async fn serve(
        self,
        stream: TcpStream,
        _admission: Admission,
        mut stopping: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity {
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                first: true,
            }),
            changed: Notify::new(),
        });
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let (router, limits, peer) = (self.router, self.limits.clone(), self.peer);
        let for_requests = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let client = client_addr(peer.ip(), req.headers(), &limits.trusted_proxies);
            req.extensions_mut().insert(client);
            let started = RequestStarted::new(&for_requests);
            let answer = router.clone().oneshot(req.map(Body::new));
            async move {
                let response = answer.await;
                drop(started);
                response
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .header_read_timeout(None)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let deadline = activity.phase().deadline(&self.limits);
            tokio::select! {
                _ = conn.as_mut() => break,
                () = activity.changed.notified() => {}
                _ = stopping.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(timeout) = activity.phase().expired(&self.limits) {
                        metrics::counter!(CONNECTIONS_TIMED_OUT, "timeout" => timeout).increment(1);
                        // Dropping the connection closes it; no request is being served.
                        break;
                    }
                }
            }
        }
    }
}

/// What a connection is doing, and a signal to its watchdog when that changes.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = lock(&self.phase);
        *phase = change(*phase);
        drop(phase);
        self.changed.notify_one();
    }
}

/// What a connection is doing, as its watchdog sees it.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for the first byte of a request: since the accept (`first`) or since the
    /// previous response.
    Waiting { since: Instant, first: bool },
    /// A request's head has started arriving and is not complete yet.
    Head { since: Instant },
    /// Serving requests (their heads are read; bodies and handlers have their own deadlines).
    Busy { requests: usize },
}

impl Phase {
    /// When the watchdog should look again.
    fn deadline(&self, limits: &Limits) -> Instant {
        match *self {
            Phase::Waiting { since, first: true } => since + limits.header_read_timeout,
            Phase::Waiting { since, .. } => since + limits.keep_alive_timeout,
            Phase::Head { since } => since + limits.header_read_timeout,
            Phase::Busy { .. } => Instant::now() + limits.keep_alive_timeout,
        }
    }

    /// The timeout that closes the connection now, if one has run out.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let late = Instant::now() >= self.deadline(limits);
        match self {
            Phase::Waiting { first: false, .. } if late => Some("keep_alive"),
            Phase::Waiting { first: true, .. } | Phase::Head { .. } if late => Some("header_read"),
            _ => None,
        }
    }
}

/// A request being served on a connection; its end (drop) may leave the connection waiting.
struct RequestStarted(Arc<Activity>);

impl RequestStarted {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.set(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
        RequestStarted(activity.clone())
    }
}

impl Drop for RequestStarted {
    fn drop(&mut self) {
        self.0.set(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Waiting {
                since: Instant::now(),
                first: false,
            },
        });
    }
}

/// The socket, noting when bytes of a new request start arriving.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && matches!(self.activity.phase(), Phase::Waiting { .. }) {
            self.activity.set(|phase| match phase {
                Phase::Waiting { .. } => Phase::Head {
                    since: Instant::now(),
                },
                other => other,
            });
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy that says whom it
/// forwards for.
fn client_addr(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> ClientAddr {
    if !trusted.contains(&peer) {
        return ClientAddr(peer);
    }
    // Proxies append; the entries a client wrote itself come first, so read from the end and
    // take the first address no trusted proxy added.
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let client = forwarded
        .iter()
        .rev()
        .map(|s| s.parse::<IpAddr>())
        .take_while(Result::is_ok)
        .flatten()
        .find(|ip| !trusted.contains(ip));
    ClientAddr(client.unwrap_or(peer))
}

/// Reads the whole body (at most [`BODY_BYTES_MAX`]) within `Limits::body_read_timeout`,
/// before the request takes one of the `max_concurrent_requests` slots: a slow sender holds
/// its own connection for a while, never a slot that other requests need.
pub(crate) async fn read_body_first(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, BODY_BYTES_MAX);
    match tokio::time::timeout(state.limits.body_read_timeout, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge.into_response()
            } else {
                ApiError::BadJson("the body could not be read".into()).into_response()
            }
        }
        Err(_) => ApiError::BodyTimedOut.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().expect("hv"));
        let proxy = ip("10.0.0.1");
        assert_eq!(client_addr(proxy, &headers, &[]), ClientAddr(proxy));
        assert_eq!(
            client_addr(proxy, &headers, &[proxy]),
            ClientAddr(ip("2.2.2.2")),
            "the address the proxy appended, not one the client wrote"
        );
        headers.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.0.0.2".parse().expect("hv"),
        );
        assert_eq!(
            client_addr(proxy, &headers, &[proxy, ip("10.0.0.2")]),
            ClientAddr(ip("2.2.2.2")),
            "a chain of trusted proxies is skipped"
        );
        headers.insert("x-forwarded-for", "garbage, 3.3.3.3".parse().expect("hv"));
        assert_eq!(
            client_addr(proxy, &headers, &[proxy]),
            ClientAddr(ip("3.3.3.3"))
        );
        headers.insert("x-forwarded-for", "3.3.3.3, garbage".parse().expect("hv"));
        assert_eq!(
            client_addr(proxy, &headers, &[proxy]),
            ClientAddr(proxy),
            "an unreadable last entry is not skipped to trust one before it"
        );
        assert_eq!(
            client_addr(proxy, &HeaderMap::new(), &[proxy]),
            ClientAddr(proxy)
        );
    }
}
