//! What token keys and credential revocation need from the database, and the file modes of
//! SQLite databases and backups (they hold the token signing key: only their owner may read
//! them).
//!
//! Plain SQL that both databases accept, run on the read side like the other credential
//! statements (none of it is on the hot path: sign-in, `keys` commands, and each instance's
//! refresh of its token keys every few seconds).

use std::path::Path;

use stockroom_domain::limits::CREDENTIALS_MAX;

use crate::error::StoreError;
use crate::exec::{args, Reader};
use crate::model::Credential;
use crate::rows;

/// Every credential, by client id (at most [`CREDENTIALS_MAX`]).
pub(crate) async fn credentials(read: &Reader) -> Result<Vec<Credential>, StoreError> {
    let max = i64::try_from(CREDENTIALS_MAX).unwrap_or(i64::MAX);
    read.rows(
        "SELECT client_id, name, role, secret_hash, created_at FROM credentials \
         ORDER BY client_id LIMIT $1",
        args![max],
    )
    .await?
    .iter()
    .map(rows::credential)
    .collect()
}

pub(crate) async fn delete_credential(read: &Reader, client_id: &str) -> Result<bool, StoreError> {
    let done = read
        .run(
            "DELETE FROM credentials WHERE client_id = $1",
            args![client_id],
        )
        .await?;
    Ok(done > 0)
}

pub(crate) async fn setting(read: &Reader, name: &str) -> Result<Option<String>, StoreError> {
    read.row("SELECT value FROM settings WHERE name = $1", args![name])
        .await?
        .map(|row| row.col("value"))
        .transpose()
}

pub(crate) async fn set_setting(read: &Reader, name: &str, value: &str) -> Result<(), StoreError> {
    read.run(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        args![name, value],
    )
    .await?;
    Ok(())
}

/// Creates an empty file that only its owner may read and write, unless `path` exists. SQLite
/// gives the `-wal` and `-shm` files it makes beside a database the database file's mode.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The files of a SQLite database (itself, `-wal`, `-shm`) that users other than the owner may
/// read or write, with their modes.
pub fn files_open_to_others(database: &Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut found = Vec::new();
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                found.push((path, mode));
            }
        }
    }
    found
}
