//! Slow and greedy clients over real sockets: stalled heads, stalled bodies, idle keep-alive
//! connections, and the caps on connections. Every wait is bounded; none synchronises by
//! sleeping (the pauses between bytes are the attack being modelled).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Method;
use stockroom_http::{Limits, PaymentSettings};
use stockroom_store::testing::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::{spawn_app_limited, TestApp};

async fn app_with(limits: Limits) -> TestApp {
    spawn_app_limited(Backend::Sqlite, PaymentSettings::default(), limits)
        .await
        .expect("SQLite is always there")
}

fn server_addr(app: &TestApp) -> SocketAddr {
    app.base
        .strip_prefix("http://")
        .expect("http")
        .parse()
        .expect("address")
}

/// A connection from a loopback address of the test's choosing (127.0.0.0/8 is all local), so
/// that per-address caps and limits see distinct clients.
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let ip: IpAddr = from.parse().expect("ip");
    socket.bind(SocketAddr::new(ip, 0)).expect("bind");
    socket.connect(server_addr(app)).await.expect("connect")
}

/// Reads until the server closes the connection; what it sent, and how long that took.
/// Panics if it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {within:?}"
    );
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

/// Reads one whole response (head and `Content-Length` body) off a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        body.len() >= length
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !complete(&got) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response within 10 s");
    String::from_utf8_lossy(&got).into_owned()
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A counter's value, 0 if it was never recorded.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The connection counters live in the process's one metrics recorder, which every test of
/// this binary shares: the tests that make connections time out or be refused take turns, and
/// each asserts how much its own work moved a counter.
static CONNECTION_COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HEADER_READ: &str = "stockroom_connections_timed_out_total{timeout=\"header_read\"}";
const KEEP_ALIVE: &str = "stockroom_connections_timed_out_total{timeout=\"keep_alive\"}";
const PER_ADDRESS: &str =
    "stockroom_connections_refused_total{cap=\"max_connections_per_address\"}";

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: stockroom\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_within_the_header_read_timeout() {
    let _turn = CONNECTION_COUNTERS.lock().await;
    let app = app_with(Limits {
        header_read_timeout: Duration::from_millis(400),
        ..Limits::default()
    })
    .await;
    let before = counter(&metrics(&app).await, HEADER_READ);
    // Half a head, then nothing.
    let mut stalled = connect_from(&app, "127.0.0.2").await;
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: st")
        .await
        .expect("write");
    let (sent, took) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert_eq!(sent, "", "closed without an answer");
    assert!(
        took >= Duration::from_millis(300),
        "not before its time: {took:?}"
    );
    // Silence from the start is no better.
    let mut silent = connect_from(&app, "127.0.0.2").await;
    read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let metrics = metrics(&app).await;
    assert_eq!(counter(&metrics, HEADER_READ) - before, 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_header_read_timeout() {
    let _turn = CONNECTION_COUNTERS.lock().await;
    let app = app_with(Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let mut slow = connect_from(&app, "127.0.0.2").await;
    let start = Instant::now();
    // One byte every 50 ms would take 2 s for this head; the server must give up at 0.5 s.
    let mut closed_at = None;
    for byte in HEALTH.iter().cycle().take(40) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut buf)).await {
            Err(_) => continue, // still open, nothing said: send the next byte
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered a trickled head: {:?}", &buf[..n]),
        }
    }
    let closed_at = closed_at.expect("the connection was closed while the head trickled in");
    assert!(closed_at < Duration::from_millis(1500), "{closed_at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let _turn = CONNECTION_COUNTERS.lock().await;
    let app = app_with(Limits {
        keep_alive_timeout: Duration::from_millis(400),
        header_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    let before = counter(&metrics(&app).await, KEEP_ALIVE);
    let mut conn = connect_from(&app, "127.0.0.3").await;
    // Requests within the keep-alive timeout keep it open, one after another.
    for _ in 0..3 {
        conn.write_all(HEALTH).await.expect("write");
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (sent, took) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(sent, "");
    assert!(
        took >= Duration::from_millis(300),
        "not before its time: {took:?}"
    );
    // The test client's own pooled connection (its sign-ins) may have idled out too.
    let metrics = metrics(&app).await;
    assert!(counter(&metrics, KEEP_ALIVE) > before, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_do_not_starve_real_requests() {
    let app = app_with(Limits {
        max_concurrent_requests: 2,
        body_read_timeout: Duration::from_millis(1500),
        ..Limits::default()
    })
    .await;
    // Four times as many slow bodies as there are slots, each from its own address.
    let mut stalled = Vec::new();
    for i in 0..8 {
        let mut conn = connect_from(&app, &format!("127.0.1.{}", i + 1)).await;
        let head = format!(
            "POST /v2/inventories/p/transactions HTTP/1.1\r\nHost: stockroom\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{",
            app.admin
        );
        conn.write_all(head.as_bytes()).await.expect("write");
        stalled.push(conn);
    }
    // Real requests meanwhile are served, not shed.
    let started = Instant::now();
    for _ in 0..5 {
        let r = app
            .call(Method::GET, "/v2/inventories", Some(&app.admin), None)
            .await;
        assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered before any stalled body timed out"
    );
    // Each stalled body is answered 408 once its time is up.
    for mut conn in stalled {
        let (answer, _) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"status\":408"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_at_once() {
    let _turn = CONNECTION_COUNTERS.lock().await;
    let app = app_with(Limits {
        max_connections_per_address: 3,
        ..Limits::default()
    })
    .await;
    let before = counter(&metrics(&app).await, PER_ADDRESS);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = connect_from(&app, "127.0.0.4").await;
        conn.write_all(HEALTH).await.expect("write");
        assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    let mut fourth = connect_from(&app, "127.0.0.4").await;
    let _ = fourth.write_all(HEALTH).await;
    let (sent, took) = read_until_closed(&mut fourth, Duration::from_secs(2)).await;
    assert_eq!(sent, "", "closed without an answer");
    assert!(took < Duration::from_millis(1000), "at once: {took:?}");
    // Another address is not affected.
    let mut other = connect_from(&app, "127.0.0.5").await;
    other.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut other).await.starts_with("HTTP/1.1 200"));
    let metrics = metrics(&app).await;
    assert_eq!(counter(&metrics, PER_ADDRESS) - before, 1, "{metrics}");
    // Closing one makes room for another.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(&app, "127.0.0.4").await;
        let _ = again.write_all(HEALTH).await;
        let mut first = [0u8; 12];
        if again.read_exact(&mut first).await.is_ok() {
            assert_eq!(&first, b"HTTP/1.1 200");
            break;
        }
        // The server notices the closed connection asynchronously; ask again until it has.
        assert!(
            Instant::now() < deadline,
            "the closed connection's place was never freed"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_process_cap_are_closed_at_once() {
    // The test client's own pool holds connections too: leave it room for its sign-ins.
    let app = app_with(Limits {
        max_connections: 6,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        let mut conn = connect_from(&app, &format!("127.0.2.{}", i + 1)).await;
        let _ = conn.write_all(HEALTH).await;
        let mut first = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut first)).await {
            Ok(Ok(_)) => held.push(conn),
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("neither answered nor closed"),
        }
    }
    assert!(refused >= 2, "at most 6 open at once: {refused} refused");
    assert!(held.len() <= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_finishes_the_request_in_flight_and_refuses_new_connections() {
    let app = app_with(Limits::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stockroom_http::serve(listener, app.state.clone(), async {
        let _ = stopped.await;
    }));
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    // A request in flight: its head is in, its body is not yet. The server's `100 Continue`
    // says its handler has started reading the body: the request is in flight, not merely
    // sent (without it, a shutdown could close the connection before the head was read).
    let body = r#"{"data":{"quantity":5}}"#;
    let head = format!(
        "POST /v2/inventories/shutdown-test HTTP/1.1\r\nHost: stockroom\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        app.admin,
        body.len()
    );
    busy.write_all(head.as_bytes()).await.expect("head");
    let go_on = read_response(&mut busy).await;
    assert!(go_on.starts_with("HTTP/1.1 100"), "{go_on}");
    idle.write_all(HEALTH).await.expect("write");
    read_response(&mut idle).await;
    stop.send(()).expect("stop");
    // The idle connection is closed; the busy one is still served.
    read_until_closed(&mut idle, Duration::from_secs(5)).await;
    busy.write_all(body.as_bytes()).await.expect("body");
    let answer = read_response(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let stopped = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once the last connection is done")
        .expect("task");
    stopped.expect("serve ended cleanly");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no one listens any more"
    );
    assert_eq!(app.figures("shutdown-test").await, (5, 0, 5));
}
