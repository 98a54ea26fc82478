//! Opening a database for the server, and the operator commands behind `ingot keys`.

use crate::config::{Config, MasterKeySource};
use crate::store::{self, keys, meta, request_keys, secrets, signing, Env, Secrets, Store};
use crate::tokens;
use anyhow::{bail, Context};
use rusqlite::Connection;
use std::sync::Arc;

/// Opens the database for serving: migrates it, loads (or on a new database creates) the master
/// key, and makes the first signing key and development API key when there are none. Returns the
/// store and the new API key, if one was made.
pub fn open_store(config: &Config) -> anyhow::Result<(Store, Option<String>)> {
    if let Some(dir) = config.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    }
    create_private(&config.db)?;
    let secrets = Arc::new(load_secrets(config, true)?);
    let store = Store::open(config, secrets.clone())
        .with_context(|| format!("while opening the database {}", config.db.display()))?;
    let first_key = store
        .write(move |c| {
            secrets.bind_database(c)?;
            if signing::current_kid(c)?.is_none() {
                let (kid, public, private) = tokens::generate_key();
                signing::insert(c, &secrets, &kid, &public, &private)?;
            }
            if keys::count(c)? > 0 {
                return Ok(None);
            }
            let (_, full) = keys::create(c, Env::Development, "development (first start)")?;
            Ok(Some(full))
        })
        .context("while preparing the database (is the master key the one it was made with?)")?;
    Ok((store, first_key))
}

/// Creates an empty database file with mode 0600 if there is none, before SQLite makes it
/// (with the umask's mode): SQLite gives the `-wal` and `-shm` files the database's mode.
fn create_private(db: &std::path::Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("while creating the database {}: {e}", db.display())),
    }
}

/// Loads the master keyring for `config`. A key file is created only for a database that has
/// no secrets sealed yet; otherwise a missing key is an error, never a fresh key.
fn load_secrets(config: &Config, may_create: bool) -> anyhow::Result<Secrets> {
    let recorded = if config.db.exists() {
        let mut conn = store::open_writer(config)?;
        store::migrate(&mut conn)?;
        meta::get(&conn, meta::MASTER_KEY_ID)?
    } else {
        None
    };
    let missing_file = matches!(&config.master_key, MasterKeySource::File(p) if !p.exists());
    if let (Some(id), true) = (&recorded, missing_file) {
        let MasterKeySource::File(p) = &config.master_key else {
            unreachable!()
        };
        bail!(
            "the database's secrets are sealed with master key {id}, but the key file {} does not exist; \
             restore it or set INGOT_MASTER_KEY_FILE",
            p.display()
        );
    }
    // Only the default file beside the database is ever made here: a key named by
    // INGOT_MASTER_KEY_FILE that is missing is a mistake to report, not a key to invent.
    let default_file = config.master_key == MasterKeySource::File(crate::config::default_key_file(&config.db));
    if recorded.is_none() && may_create && (default_file || !missing_file) {
        let (secrets, created) = Secrets::load_or_create(&config.master_key)?;
        if created {
            log::info!(
                "created a new master key file {:?} (mode 0600); back it up",
                config.master_key
            );
        }
        return Ok(secrets);
    }
    Ok(Secrets::load(&config.master_key)?)
}

/// A direct connection and keyring for a one-off operator command.
fn open_direct(config: &Config) -> anyhow::Result<(Connection, Secrets)> {
    if !config.db.exists() {
        bail!("no database at {}; start `ingot serve` once first", config.db.display());
    }
    let secrets = load_secrets(config, false)?;
    let mut conn = store::open_writer(config)?;
    store::migrate(&mut conn)?;
    secrets.bind_database(&conn)?;
    Ok((conn, secrets))
}

/// `ingot keys create`: returns the listing entry and the full key (shown once).
pub fn create_key(config: &Config, env: Env, name: &str) -> anyhow::Result<(keys::ApiKey, String)> {
    let (conn, _) = open_direct(config)?;
    Ok(keys::create(&conn, env, name)?)
}

/// `ingot keys list`
pub fn list_keys(config: &Config) -> anyhow::Result<Vec<keys::ApiKey>> {
    let (conn, _) = open_direct(config)?;
    Ok(keys::list(&conn)?)
}

/// `ingot keys revoke ID`
pub fn revoke_key(config: &Config, id: &str) -> anyhow::Result<()> {
    let (conn, _) = open_direct(config)?;
    match keys::revoke(&conn, id) {
        Err(store::StoreError::NotFound) => bail!("no live API key with id {id}"),
        other => Ok(other?),
    }
}

/// `ingot keys rotate-signing`: new tokens are signed with a new key; the old public keys stay
/// published until their tokens have expired. Returns (new kid, retired kids).
pub fn rotate_signing(config: &Config) -> anyhow::Result<(String, Vec<String>)> {
    let (conn, secrets) = open_direct(config)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> store::Result<(String, Vec<String>)> {
        let retired = signing::retire_current(&conn)?;
        let (kid, public, private) = tokens::generate_key();
        signing::insert(&conn, &secrets, &kid, &public, &private)?;
        Ok((kid, retired))
    })();
    match result {
        Ok(r) => {
            conn.execute_batch("COMMIT")?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// `ingot keys rotate-request-signing`: replaces the key behind `X-Alloy-Signature`. A running
/// server signs with the new key from its next request on (it asks the database which key is
/// current each time); receivers need the new public key at once. Returns (new id, replaced ids).
pub fn rotate_request_signing(config: &Config) -> anyhow::Result<(String, Vec<String>)> {
    let (conn, secrets) = open_direct(config)?;
    // Made before the transaction: it takes a while, and the server must not wait for it.
    let (id, public, private) = crate::request_signing::generate();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match request_keys::replace(&conn, &secrets, &id, &public, private.as_bytes()) {
        Ok(replaced) => {
            conn.execute_batch("COMMIT")?;
            Ok((id, replaced))
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// `ingot keys rotate-master`: re-seals every stored secret under a new master key while the
/// server keeps serving, then drops the old key from the key file.
pub fn rotate_master(config: &Config) -> anyhow::Result<secrets::Rotation> {
    let (conn, secrets) = open_direct(config)?;
    Ok(secrets::rotate_master(&conn, &secrets)?)
}
