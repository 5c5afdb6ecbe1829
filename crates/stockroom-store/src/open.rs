//! Database URLs and connections: which database a URL names, SQLite file paths, and
//! PostgreSQL pools (libpq's URL syntax, multi-host lists and `target_session_attrs`
//! included, as tokio-postgres parses it).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::dialect::Kind;
use crate::error::OpenError;

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

pub(crate) fn kind_of(url: &str) -> Result<Kind, OpenError> {
    if url.starts_with("sqlite:") {
        Ok(Kind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Kind::Postgres)
    } else {
        Err(OpenError::BadScheme(redact_url(url)))
    }
}

/// How a SQLite file is opened, from the URL's `mode` (SQLite's URI modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqliteMode {
    /// Read and write; create the file if it does not exist.
    Create,
    /// Read and write an existing file.
    Existing,
}

/// The file a SQLite URL names (`sqlite://PATH` or `sqlite:PATH`, with an optional `?mode=`
/// of `rwc` or `rw`), and how to open it; `create` is the default mode.
pub(crate) fn sqlite_file(url: &str, create: bool) -> Result<(String, SqliteMode), OpenError> {
    let bad = |reason: &str| OpenError::BadUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| bad("not a SQLite URL"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(bad(
            "an in-memory database would lose everything; give a file path",
        ));
    }
    let mut mode = match create {
        true => SqliteMode::Create,
        false => SqliteMode::Existing,
    };
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        mode = match (key, value) {
            ("mode", "rwc") => SqliteMode::Create,
            ("mode", "rw") => SqliteMode::Existing,
            ("mode", "memory") => {
                return Err(bad(
                    "an in-memory database would lose everything; give a file path",
                ))
            }
            ("mode", other) => return Err(bad(&format!("unsupported mode {other:?}"))),
            _ => mode,
        };
    }
    Ok((path.to_owned(), mode))
}

/// The bounds on a PostgreSQL connection's waits, so that a crashed, promoted-away or
/// black-holed database is noticed in seconds (issue 17; docs/operations.md, "Bounded waits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PgTimeouts {
    /// Per host of the URL, for the TCP connection (a host that does not answer is skipped
    /// for the next one). A `connect_timeout` in the URL wins.
    pub connect: Duration,
    /// The server's `statement_timeout` and `idle_in_transaction_session_timeout` for every
    /// session (`options` in the URL, given after these, win). `None` leaves the server's.
    pub statement: Option<Duration>,
}

/// TCP keep-alives: an idle connection to a vanished host is closed after about
/// idle + interval × retries = 19 s instead of the kernel's two hours.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
/// Bytes sent and left unacknowledged this long fail the connection (`TCP_USER_TIMEOUT`),
/// instead of ~15 minutes of retransmissions. A `tcp_user_timeout` in the URL wins.
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// A PostgreSQL connection's settings from its URL: tokio-postgres reads libpq's syntax,
/// several `host:port` pairs and `target_session_attrs=read-write` (connect to the one that
/// takes writes) included; then the bounds of `timeouts`, TCP keep-alives and
/// `TCP_USER_TIMEOUT`.
pub(crate) fn pg_config(
    url: &str,
    timeouts: PgTimeouts,
) -> Result<tokio_postgres::Config, OpenError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| OpenError::BadUrl {
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeouts.connect);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.keepalives_interval(KEEPALIVE_INTERVAL);
    config.keepalives_retries(KEEPALIVE_RETRIES);
    if let Some(statement) = timeouts.statement {
        let ms = statement.as_millis().max(1);
        // The server stops a statement (a lock wait included) whose client has gone, and
        // ends a session left in a transaction — releasing its row locks — when a writer
        // is cut off mid-batch. Later `-c` options (the URL's own) override these.
        let ours = format!("-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}");
        let options = match config.get_options() {
            Some(theirs) if !theirs.trim().is_empty() => format!("{ours} {theirs}"),
            _ => ours,
        };
        config.options(&options);
    }
    if config.get_application_name().is_none() {
        config.application_name("stockroom");
    }
    Ok(config)
}

/// A pool of at most `size` PostgreSQL connections; a request that waits longer than
/// `acquire` for one (or for a new one to connect, whichever host it ends up on) fails as
/// unavailable.
pub(crate) fn pg_pool(
    url: &str,
    config: tokio_postgres::Config,
    size: usize,
    acquire: Duration,
) -> Result<Pool, OpenError> {
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            // `is_closed` only: a connection the server dropped is noticed and replaced. One
            // that broke without being closed (a timeout, a partition) is taken out of the
            // pool by the call that noticed it (`exec.rs`, `writer.rs`).
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(acquire))
        .create_timeout(Some(acquire))
        .recycle_timeout(Some(acquire))
        .build()
        .map_err(|e| OpenError::Connect {
            url: redact_url(url),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpq's multi-host URLs (issue 17's failover needs them) parse into every host and
    /// port, with `target_session_attrs` kept.
    #[test]
    fn a_multi_host_postgres_url_keeps_every_host_and_the_session_attributes() {
        let config = pg_config(
            "postgres://u@h1:5433,h2:5434/db?target_session_attrs=read-write",
            TIMEOUTS,
        )
        .expect("a valid URL");
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), &[5433, 5434]);
        assert_eq!(config.get_dbname(), Some("db"));
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
    }

    /// The test harness's per-schema URLs set the search path through `options`.
    #[test]
    fn a_postgres_url_passes_its_options_to_the_server() {
        let config = pg_config(
            "postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dabc",
            PgTimeouts {
                statement: None,
                ..TIMEOUTS
            },
        )
        .expect("a valid URL");
        assert_eq!(config.get_options(), Some("-c search_path=abc"));
    }

    const TIMEOUTS: PgTimeouts = PgTimeouts {
        connect: Duration::from_secs(2),
        statement: Some(Duration::from_millis(5000)),
    };

    /// Every session gets the statement and idle-in-transaction timeouts, before the URL's own
    /// options (so that the URL's `-c statement_timeout=…` overrides ours).
    #[test]
    fn every_session_gets_the_statement_timeouts_and_the_urls_options_come_after() {
        let bare = pg_config("postgres://u@h/db", TIMEOUTS).expect("a valid URL");
        assert_eq!(
            bare.get_options(),
            Some("-c statement_timeout=5000 -c idle_in_transaction_session_timeout=5000")
        );
        let with = pg_config(
            "postgres://u@h/db?options=-c%20search_path%3Dabc%20-c%20statement_timeout%3D0",
            TIMEOUTS,
        )
        .expect("a valid URL");
        assert_eq!(
            with.get_options(),
            Some(
                "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=5000 \
                 -c search_path=abc -c statement_timeout=0"
            )
        );
    }

    /// A dead peer is noticed in seconds: keep-alives, TCP_USER_TIMEOUT and a per-host connect
    /// timeout are always set; the URL's own `connect_timeout` and `tcp_user_timeout` win.
    #[test]
    fn keepalives_and_connection_timeouts_are_set_and_the_url_may_override_them() {
        let config = pg_config("postgres://u@h1:1,h2:2/db", TIMEOUTS).expect("a valid URL");
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_application_name(), Some("stockroom"));
        let url = pg_config(
            "postgres://u@h/db?connect_timeout=7&tcp_user_timeout=9&application_name=x",
            TIMEOUTS,
        )
        .expect("a valid URL");
        assert_eq!(url.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert_eq!(url.get_tcp_user_timeout(), Some(&Duration::from_secs(9)));
        assert_eq!(url.get_application_name(), Some("x"));
    }

    /// A malformed URL (an unknown session attribute, a port that is no number) is refused at
    /// start with its reason.
    #[test]
    fn a_malformed_postgres_url_is_refused_at_start() {
        for bad in [
            "postgres://u@h1:1,h2:2/db?target_session_attrs=sometimes",
            "postgres://u@h1:x/db",
        ] {
            assert!(
                matches!(pg_config(bad, TIMEOUTS), Err(OpenError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn sqlite_urls_name_a_file_and_refuse_memory() {
        assert_eq!(
            sqlite_file("sqlite://stockroom.db", true).expect("a file"),
            ("stockroom.db".to_owned(), SqliteMode::Create)
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x/a.db?mode=rw", true).expect("a file"),
            ("/tmp/x/a.db".to_owned(), SqliteMode::Existing)
        );
        assert_eq!(
            sqlite_file("sqlite:a.db", false).expect("a file"),
            ("a.db".to_owned(), SqliteMode::Existing)
        );
        assert!(sqlite_file("sqlite::memory:", true).is_err());
        assert!(sqlite_file("sqlite://a.db?mode=memory", true).is_err());
    }

    #[test]
    fn a_password_never_appears_in_a_redacted_url() {
        assert_eq!(
            redact_url("postgres://u:secret@h1:1,h2:2/db?password=x&a=b"),
            "postgres://u:***@h1:1,h2:2/db?password=***&a=b"
        );
    }
}
