//! Fresh databases for tests: a SQLite file in a folder the test owns, or a new schema on the
//! PostgreSQL server named by `STOCKROOM_TEST_POSTGRES_URL`, so that runs never see each
//! other's data.

use std::io::Write;
use std::sync::Once;

/// The variable that names the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "STOCKROOM_TEST_POSTGRES_URL";
/// When set (as `.ci/run` sets it), a missing PostgreSQL server fails the tests instead of
/// skipping them.
pub const REQUIRE_POSTGRES_VAR: &str = "STOCKROOM_TEST_REQUIRE_POSTGRES";
/// Prefix of every schema tests create (`.ci/run` drops leftovers by it).
pub const SCHEMA_PREFIX: &str = "stockroom_test_";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A URL for a fresh, empty database on `backend`; `None` (after saying so once, past the test
/// harness's output capture) when PostgreSQL is asked for but not configured.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}/stockroom.db", dir.display())),
        Backend::Postgres => {
            let Ok(server) = std::env::var(POSTGRES_URL_VAR) else {
                if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
                    panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not");
                }
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests skipped: {POSTGRES_URL_VAR} is not set \
                         (e.g. postgres://postgres@127.0.0.1:5432/test; .ci/run sets it)"
                    );
                });
                return None;
            };
            match fresh_schema(&server).await {
                Ok(url) => Some(url),
                Err(e) => panic!("{POSTGRES_URL_VAR} is set but unusable: {e}"),
            }
        }
    }
}

/// Creates a new schema on `server` and returns a URL whose connections use it.
pub async fn fresh_schema(server: &str) -> Result<String, tokio_postgres::Error> {
    let schema = format!("{SCHEMA_PREFIX}{}", uuid::Uuid::new_v4().simple());
    // The schema name is made here from a UUID, never from input.
    run_on(server, &format!("CREATE SCHEMA {schema}")).await?;
    let sep = if server.contains('?') { '&' } else { '?' };
    Ok(format!("{server}{sep}options=-c%20search_path%3D{schema}"))
}

/// Runs `sql` (one or more statements, no parameters) on its own connection to `url`.
pub async fn run_on(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = connection.await;
    result
}

/// A one-connection pool on `url` with the store's settings, for the crate's own tests.
#[cfg(test)]
pub(crate) fn pg_test_pool(url: &str) -> Result<deadpool_postgres::Pool, crate::OpenError> {
    let timeouts = crate::open::PgTimeouts {
        connect: std::time::Duration::from_secs(2),
        statement: Some(std::time::Duration::from_secs(5)),
    };
    let config = crate::open::pg_config(url, timeouts)?;
    crate::open::pg_pool(url, config, 1, std::time::Duration::from_secs(5))
}

/// A TCP proxy between a test and its PostgreSQL server that the test can *stall*: stop
/// forwarding bytes (and connecting new connections onward) without closing anything, as
/// when the network drops packets; `flow` delivers what waited. `url` is the server's URL
/// with its address replaced by the proxy's.
pub struct StallProxy {
    pub url: String,
    flowing: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// A proxy in front of the (first) host of `url`.
    pub async fn start(url: &str) -> std::io::Result<StallProxy> {
        use std::str::FromStr;
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned());
        let config = tokio_postgres::Config::from_str(url).map_err(|e| bad(&e.to_string()))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return Err(bad("the URL names no TCP host")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ours = listener.local_addr()?;
        let upstream = format!("{host}:{port}");
        let url = url.replacen(&upstream, &ours.to_string(), 1);
        if !url.contains(&ours.to_string()) {
            return Err(bad("the URL must name its host and port as host:port"));
        }
        let (flowing, watch) = tokio::sync::watch::channel(true);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(Self::link(client, upstream.clone(), watch.clone()));
            }
        });
        Ok(StallProxy {
            url,
            flowing,
            accept,
        })
    }

    /// Stops forwarding; nothing is closed.
    pub fn stall(&self) {
        self.flowing.send_replace(false);
    }

    /// Forwards again, what waited first.
    pub fn flow(&self) {
        self.flowing.send_replace(true);
    }

    async fn link(
        client: tokio::net::TcpStream,
        upstream: String,
        mut flowing: tokio::sync::watch::Receiver<bool>,
    ) {
        if flowing.wait_for(|on| *on).await.is_err() {
            return;
        }
        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
            return;
        };
        let (c_read, c_write) = client.into_split();
        let (s_read, s_write) = server.into_split();
        let up = Self::pump(c_read, s_write, flowing.clone());
        let down = Self::pump(s_read, c_write, flowing);
        // Either side ending ends both, as on a real path.
        tokio::select! {
            _ = up => {}
            _ = down => {}
        }
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut flowing: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if flowing.wait_for(|on| *on).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Read during a stall: held until the path is back.
            if flowing.wait_for(|on| *on).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Links still open end when their sides close (the watch stays readable until then).
        self.flowing.send_replace(true);
    }
}
