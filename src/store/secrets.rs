//! Sealing and opening stored secrets with the master keyring, and re-sealing them all when the
//! master key rotates.
//!
//! The key that new secrets are sealed under is named in the database (`meta.master_key_id`),
//! read inside the same write transaction that stores the secret. A rotation switches that name
//! in one transaction and then re-seals every older row, so no write can slip in under the old
//! key once the switch is committed, whichever process made it.

use super::{meta, Result, StoreError};
use crate::config::MasterKeySource;
use crate::crypto::{self, CryptoError, KeyId, Keyring, MasterKey};
use crate::ids;
use rusqlite::{params, Connection};
use std::sync::{Arc, RwLock};

/// A column that holds sealed secrets, with the SQL that rebuilds each row's associated data.
/// The expressions must build the same bytes as the Rust code that seals the column.
pub struct SealedColumn {
    pub table: &'static str,
    pub key: &'static str,
    pub column: &'static str,
    pub aad_sql: &'static str,
}

/// Every sealed column in the schema.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "credentials",
        key: "id",
        column: "data_sealed",
        aad_sql: "'credential:' || id || ':' || user_id",
    },
    SealedColumn {
        table: "signing_keys",
        key: "kid",
        column: "private_sealed",
        aad_sql: "'signing-key:' || kid",
    },
    SealedColumn {
        table: "delivery_targets",
        key: "rowid",
        column: "secret_sealed",
        aad_sql: "'delivery-target:' || env || ':' || target || ':secret'",
    },
    SealedColumn {
        table: "delivery_targets",
        key: "rowid",
        column: "previous_secret_sealed",
        aad_sql: "'delivery-target:' || env || ':' || target || ':previous'",
    },
    SealedColumn {
        table: "integrations",
        key: "id",
        column: "oauth_secret_sealed",
        aad_sql: "'integration-oauth:' || id",
    },
    SealedColumn {
        table: "oauth_states",
        key: "id",
        column: "verifier_sealed",
        aad_sql: "'oauth-state:' || id",
    },
    SealedColumn {
        table: "request_signing_keys",
        key: "id",
        column: "private_sealed",
        aad_sql: "'request-signing-key:' || id",
    },
];

/// The master keyring of this process, reloadable from its source.
pub struct Secrets {
    source: MasterKeySource,
    ring: RwLock<Arc<Keyring>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({:?})", self.source)
    }
}

impl Secrets {
    /// Loads the keyring; with the default file source and no file yet, creates the file
    /// (mode 0600) with a new key. Returns whether it created one.
    pub fn load_or_create(source: &MasterKeySource) -> Result<(Secrets, bool), CryptoError> {
        let created = match source {
            MasterKeySource::File(path) if !path.exists() => {
                Keyring::new(vec![MasterKey::generate()]).write_file(path)?;
                true
            }
            _ => false,
        };
        let ring = read_source(source)?;
        Ok((
            Secrets {
                source: source.clone(),
                ring: RwLock::new(Arc::new(ring)),
            },
            created,
        ))
    }

    /// Loads the keyring; the source must exist.
    pub fn load(source: &MasterKeySource) -> Result<Secrets, CryptoError> {
        Ok(Secrets {
            source: source.clone(),
            ring: RwLock::new(Arc::new(read_source(source)?)),
        })
    }

    pub fn source(&self) -> &MasterKeySource {
        &self.source
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the keyring against the database: a new database records the keyring's first key
    /// as current; an existing one must name a key we hold.
    pub fn bind_database(&self, conn: &Connection) -> Result<()> {
        match meta::get(conn, meta::MASTER_KEY_ID)? {
            None => meta::set(conn, meta::MASTER_KEY_ID, &ids::hex(&self.keyring().first_id())),
            Some(id) => {
                let id = parse_key_id(&id)?;
                self.keyring_with(&id).map(|_| ())
            }
        }
    }

    /// Seals `plaintext` under the database's current master key. Call inside the write
    /// transaction that stores the result.
    pub fn seal(&self, conn: &Connection, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let id = meta::get(conn, meta::MASTER_KEY_ID)?
            .ok_or_else(|| StoreError::Crypto(CryptoError::UnknownKey("(none recorded)".into())))?;
        let id = parse_key_id(&id)?;
        Ok(self.keyring_with(&id)?.seal(&id, plaintext, aad)?)
    }

    /// Opens a sealed secret with whichever master key sealed it.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let id = crypto::envelope_key_id(sealed).ok_or(CryptoError::Opaque)?;
        Ok(self.keyring_with(&id)?.open(sealed, aad)?)
    }

    /// The keyring, reloaded from its source once if it lacks key `id` (another process rotated).
    fn keyring_with(&self, id: &KeyId) -> Result<Arc<Keyring>> {
        let ring = self.keyring();
        if ring.contains(id) {
            return Ok(ring);
        }
        let fresh = Arc::new(read_source(&self.source)?);
        if !fresh.contains(id) {
            return Err(CryptoError::UnknownKey(ids::hex(id)).into());
        }
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

fn read_source(source: &MasterKeySource) -> Result<Keyring, CryptoError> {
    match source {
        MasterKeySource::Inline(text) => Keyring::parse(text, "INGOT_MASTER_KEY"),
        MasterKeySource::File(path) => Keyring::read_file(path),
    }
}

fn parse_key_id(hex: &str) -> Result<KeyId> {
    let bytes = ids::unhex(hex)
        .filter(|b| b.len() == crypto::KEY_ID_LEN)
        .ok_or_else(|| CryptoError::UnknownKey(hex.to_string()))?;
    let mut id = [0u8; crypto::KEY_ID_LEN];
    id.copy_from_slice(&bytes);
    Ok(id)
}

/// What a master-key rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub new_key_id: String,
    pub old_key_ids: Vec<String>,
    pub resealed: usize,
}

/// Rotates the master key of the database at `conn` whose keyring lives in a file: adds a new
/// key to the file, makes it current, re-seals every secret under it in small transactions
/// (the server keeps serving between them), then removes the old keys from the file.
pub fn rotate_master(conn: &Connection, secrets: &Secrets) -> Result<Rotation> {
    let MasterKeySource::File(path) = secrets.source() else {
        return Err(StoreError::Crypto(CryptoError::KeyFile {
            path: "INGOT_MASTER_KEY".into(),
            reason: "rotation rewrites the key file; move the key into a file and set \
                     INGOT_MASTER_KEY_FILE"
                .into(),
        }));
    };
    let old = Keyring::read_file(path)?;
    let new_key = MasterKey::generate();
    let new_id = new_key.id();
    old.with_new_first(new_key).write_file(path)?;
    let immediate = |f: &dyn Fn() -> Result<usize>| -> Result<usize> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match f() {
            Ok(n) => {
                conn.execute_batch("COMMIT")?;
                Ok(n)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    };
    immediate(&|| meta::set(conn, meta::MASTER_KEY_ID, &ids::hex(&new_id)).map(|_| 0))?;
    let mut resealed = 0;
    for col in SEALED_COLUMNS {
        loop {
            let n = immediate(&|| reseal_batch(conn, secrets, col, &new_id))?;
            resealed += n;
            if n == 0 {
                break;
            }
        }
    }
    let only_new = secrets
        .keyring_with(&new_id)?
        .only(&new_id)
        .ok_or(CryptoError::Opaque)?;
    only_new.write_file(path)?;
    Ok(Rotation {
        new_key_id: ids::hex(&new_id),
        old_key_ids: old.ids().iter().map(|i| ids::hex(i)).collect(),
        resealed,
    })
}

/// Re-seals up to 200 rows of `col` not yet under key `new_id`; returns how many.
fn reseal_batch(conn: &Connection, secrets: &Secrets, col: &SealedColumn, new_id: &KeyId) -> Result<usize> {
    // Table and column names come from SEALED_COLUMNS, never from input.
    let select = format!(
        "SELECT {key}, {column}, {aad} FROM {table} WHERE {column} IS NOT NULL AND substr({column}, 2, {len}) != ?1 LIMIT 200",
        key = col.key,
        column = col.column,
        aad = col.aad_sql,
        table = col.table,
        len = crypto::KEY_ID_LEN,
    );
    let update = format!("UPDATE {} SET {} = ?1 WHERE {} = ?2", col.table, col.column, col.key);
    let rows: Vec<(rusqlite::types::Value, Vec<u8>, String)> = conn
        .prepare(&select)?
        .query_map(params![&new_id[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let ring = secrets.keyring_with(new_id)?;
    for (key, sealed, aad) in &rows {
        let plain = secrets.open(sealed, aad.as_bytes())?;
        let resealed = ring.seal(new_id, &plain, aad.as_bytes())?;
        conn.execute(&update, params![resealed, key])?;
    }
    Ok(rows.len())
}
