//! Backups: a consistent copy of a live database (`VACUUM INTO` on a read connection, so the
//! server keeps serving and writing), checking one, and putting one in place of a stopped
//! server's database. The master key is never in a backup: the copy's secrets stay sealed.

use crate::config::{Config, MasterKeySource, SyncMode};
use crate::store::{self, secrets::SEALED_COLUMNS, Secrets};
use anyhow::{bail, Context};
use rusqlite::{Connection, OpenFlags};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
}

fn create_private(path: &Path) -> anyhow::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .with_context(|| format!("while creating {}", path.display()))
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("while syncing the directory {}", dir.display()))
}

/// Copies the live database at `db` to `dest` (which must not exist), mode 0600, fsynced.
pub fn backup(db: &Path, dest: &Path) -> anyhow::Result<Written> {
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    // An empty file of our own mode first: VACUUM INTO fills an empty file and keeps its mode.
    create_private(dest)?;
    let copy = || -> anyhow::Result<()> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()])?;
        File::open(dest)?.sync_all()?;
        sync_dir(dest)
    };
    if let Err(e) = copy() {
        let _ = std::fs::remove_file(dest);
        return Err(e.context(format!("while backing up {} to {}", db.display(), dest.display())));
    }
    Ok(Written {
        path: dest.to_path_buf(),
        bytes: std::fs::metadata(dest)?.len(),
    })
}

/// Writes a copy of the master key file to `out` (mode 0600; refuses to overwrite).
pub fn copy_key(config: &Config, out: &Path) -> anyhow::Result<()> {
    let MasterKeySource::File(key) = &config.master_key else {
        bail!("the master key is not in a file here (INGOT_MASTER_KEY); store it yourself");
    };
    let text = std::fs::read(key).with_context(|| format!("while reading the key file {}", key.display()))?;
    let mut f = create_private(out)?;
    std::io::Write::write_all(&mut f, &text)?;
    f.sync_all()?;
    sync_dir(out)
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    pub schema_version: i64,
    pub users: i64,
    pub secrets_opened: usize,
    /// `table.column (row): why` for every secret that did not open.
    pub failures: Vec<String>,
}

/// Checks a database file: `integrity_check`, its schema version, and every sealed secret
/// opened with `secrets`.
pub fn verify(path: &Path, secrets: &Secrets) -> anyhow::Result<Verified> {
    if !path.exists() {
        bail!("no file at {}", path.display());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("while opening {}", path.display()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .context("the file is not a readable SQLite database")?;
    if check != "ok" {
        bail!("integrity_check failed: {check}");
    }
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = store::schema_version();
    if schema_version != known {
        bail!("the file is at schema version {schema_version}; this binary's is {known}");
    }
    let mut v = Verified {
        schema_version,
        users: conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?,
        ..Verified::default()
    };
    for col in SEALED_COLUMNS {
        let sql = format!(
            "SELECT {key}, {column}, {aad} FROM {table} WHERE {column} IS NOT NULL",
            key = col.key,
            column = col.column,
            aad = col.aad_sql,
            table = col.table
        );
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, rusqlite::types::Value>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (key, sealed, aad) = row?;
            match secrets.open(&sealed, aad.as_bytes()) {
                Ok(_) => v.secrets_opened += 1,
                Err(e) => v.failures.push(format!("{}.{} ({key:?}): {e}", col.table, col.column)),
            }
        }
    }
    Ok(v)
}

/// The lock a serving process holds beside its database, so that nothing replaces the file
/// under it.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the database's lock, or says who holds it.
pub fn lock(db: &Path) -> anyhow::Result<File> {
    let path = lock_path(db);
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let f = opts
        .open(&path)
        .with_context(|| format!("while opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "a server is running on {} (it holds {}); stop it first",
            db.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("while locking {}", path.display())),
    }
}

/// Puts the backup at `src` in place of the (stopped) server's database: checked first
/// (integrity, schema, every secret with the configured master key), copied beside it,
/// fsynced, then renamed over it; the old WAL files go.
pub fn restore(config: &Config, src: &Path) -> anyhow::Result<Verified> {
    let _held = lock(&config.db)?;
    let secrets =
        Secrets::load(&config.master_key).context("while loading the master key the restored database needs")?;
    let verified = verify(src, &secrets)?;
    if !verified.failures.is_empty() {
        bail!(
            "the backup's secrets do not open with the master key {:?}: {}",
            config.master_key,
            verified.failures.join("; ")
        );
    }
    let mut tmp = config.db.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut out = create_private(&tmp)?;
    std::io::copy(&mut File::open(src)?, &mut out)?;
    out.sync_all()?;
    for suffix in ["-wal", "-shm"] {
        let mut p = config.db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(&tmp, &config.db).with_context(|| format!("while moving the backup to {}", config.db.display()))?;
    sync_dir(&config.db)?;
    // Opened once, so a restored file is in WAL mode and ready as the server expects it.
    store::open_connection(&config.db, SyncMode::Full)?;
    Ok(verified)
}

/// `POST /admin/backup` and `INGOT_BACKUP_EVERY`: a backup into `dir` named by the time, then
/// only the newest `keep` backups stay.
pub fn scheduled(db: &Path, dir: &Path, keep: usize, now_ms: i64) -> anyhow::Result<(Written, Vec<PathBuf>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    let stamp = crate::ids::rfc3339(now_ms).replace(':', "-");
    let written = backup(db, &dir.join(format!("ingot-{stamp}.db")))?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ingot-") && n.ends_with(".db"))
        })
        .collect();
    all.sort();
    let mut removed = Vec::new();
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        std::fs::remove_file(&old).with_context(|| format!("while removing {}", old.display()))?;
        removed.push(old);
    }
    Ok((written, removed))
}
