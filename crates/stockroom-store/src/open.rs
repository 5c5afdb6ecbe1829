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

/// A PostgreSQL connection's settings from its URL: tokio-postgres reads libpq's syntax,
/// several `host:port` pairs and `target_session_attrs=read-write` (connect to the one that
/// takes writes) included.
pub(crate) fn pg_config(url: &str, timeout: Duration) -> Result<tokio_postgres::Config, OpenError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| OpenError::BadUrl {
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    // A dead peer (a crashed host, a dropped path) is noticed in seconds, not hours.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    if config.get_application_name().is_none() {
        config.application_name("stockroom");
    }
    Ok(config)
}

/// A pool of at most `size` PostgreSQL connections; a request that waits longer than
/// `timeout` for one (or for a new one to connect) fails as unavailable.
pub(crate) fn pg_pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, OpenError> {
    let manager = Manager::from_config(
        pg_config(url, timeout)?,
        tokio_postgres::NoTls,
        ManagerConfig {
            // `is_closed` only: a connection the server dropped is noticed and replaced.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
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
            Duration::from_secs(1),
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
            Duration::from_secs(1),
        )
        .expect("a valid URL");
        assert_eq!(config.get_options(), Some("-c search_path=abc"));
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
