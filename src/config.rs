//! Typed configuration: every `INGOT_*` variable read and validated once, at start-up.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Where the master key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `INGOT_MASTER_KEY`: the key(s) in hex, given directly.
    Inline(String),
    /// `INGOT_MASTER_KEY_FILE`, or the default file beside the database.
    File(PathBuf),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Inline(_) => write!(f, "Inline(<redacted>)"),
            MasterKeySource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `synchronous=FULL`: a 200 means the write is on disk.
    Full,
    /// `synchronous=NORMAL`: faster; the last commits may be lost on power failure.
    Normal,
}

/// Everything the server needs to start. Built from the environment, then CLI flags on top.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub db: PathBuf,
    pub master_key: MasterKeySource,
    pub sync: SyncMode,
    /// WAL pages after which a commit checkpoints (SQLite's PASSIVE autocheckpoint); 0: never,
    /// for Litestream, which then does all the checkpoints.
    pub wal_autocheckpoint: u32,
    pub max_body: usize,
    /// The `iss` of user tokens.
    pub public_url: String,
    /// Clock tolerance when verifying user tokens, in seconds.
    pub token_leeway: u64,
    /// Threads that execute workflow runs.
    pub workers: usize,
    /// Integrations to create or update at start-up.
    pub integrations_file: Option<PathBuf>,
    /// Delays before each retry of a failed delivery.
    pub retry_schedule: Vec<std::time::Duration>,
    /// How long an idle delivery thread sleeps unwoken; not a variable (the threads are woken
    /// on every write), only tests lengthen it to show that nothing waits for it.
    pub delivery_idle_wait: std::time::Duration,
    /// Requests per second (and burst) for each API key and each user's tokens.
    pub rate_per_key: crate::limits::Rate,
    pub rate_per_user: crate::limits::Rate,
    /// Per user: how many credentials, and how large each one's data may be (bytes).
    pub max_credentials: usize,
    pub max_credential_bytes: usize,
    /// Read connections requests may hold at once.
    pub max_readers: usize,
    /// What one client may make the HTTP edge hold.
    pub max_connections: usize,
    /// Request handlers that run at once (see `admission`); the rest wait their turn.
    pub handler_turns: usize,
    /// How long a request waits for a turn before it runs without one; not a variable, only
    /// tests lengthen it.
    pub handler_patience: std::time::Duration,
    pub read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub write_timeout: std::time::Duration,
    /// Where `POST /admin/backup` and scheduled backups go, how many stay, and how often.
    pub backup_dir: PathBuf,
    pub backup_keep: usize,
    pub backup_every: Option<std::time::Duration>,
    /// Where `/metrics` is served (its own listener); `None`: no metrics listener.
    pub metrics_listen: Option<String>,
    /// Below this much free space beside the database (MiB), `/readyz` answers 503.
    pub ready_min_free_mb: u64,
    /// How long a console session lasts without use.
    pub console_idle: std::time::Duration,
    /// How long an install link works (until it is used).
    pub install_link_ttl: std::time::Duration,
    /// Networks production may call although they are internal (see `outbound`).
    pub outbound_allow: Vec<crate::outbound::Cidr>,
    /// Origins that may frame the install pages; `None`: any in development, none in production.
    pub frame_ancestors: Option<Vec<String>>,
}

/// Every variable this program reads, with its default, as documented in `packaging/ingot.env`.
pub const VARIABLES: &[(&str, &str)] = &[
    ("INGOT_LISTEN", "127.0.0.1:8080"),
    ("INGOT_DB", "./ingot.db"),
    ("INGOT_MASTER_KEY", "(unset)"),
    ("INGOT_MASTER_KEY_FILE", "<database>.key"),
    ("INGOT_SYNC", "full"),
    ("INGOT_WAL_AUTOCHECKPOINT", "1000"),
    ("INGOT_MAX_BODY", "1048576"),
    ("INGOT_PUBLIC_URL", "http://<listen>"),
    ("INGOT_TOKEN_LEEWAY", "5"),
    ("INGOT_WORKERS", "4"),
    ("INGOT_INTEGRATIONS_FILE", "(unset)"),
    ("INGOT_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"),
    ("INGOT_MAX_CONNECTIONS", "512"),
    ("INGOT_HANDLER_TURNS", "0 (two per core)"),
    ("INGOT_READERS", "16"),
    ("INGOT_RATE_PER_KEY", "0"),
    ("INGOT_RATE_PER_USER", "20,60"),
    ("INGOT_MAX_CREDENTIALS_PER_USER", "100"),
    ("INGOT_MAX_CREDENTIAL_BYTES", "16384"),
    ("INGOT_INSTALL_LINK_TTL", "604800"),
    ("INGOT_CONSOLE_IDLE", "1800"),
    ("INGOT_READY_MIN_FREE_MB", "100"),
    ("INGOT_METRICS_LISTEN", "(unset)"),
    ("INGOT_BACKUP_DIR", "<db dir>/backups"),
    ("INGOT_BACKUP_KEEP", "7"),
    ("INGOT_BACKUP_EVERY", "0"),
    ("INGOT_READ_TIMEOUT", "30"),
    ("INGOT_IDLE_TIMEOUT", "30"),
    ("INGOT_HEADER_TIMEOUT", "10"),
    ("INGOT_BODY_TIMEOUT", "30"),
    ("INGOT_WRITE_TIMEOUT", "30"),
    ("INGOT_OUTBOUND_ALLOW", "(unset)"),
    ("INGOT_FRAME_ANCESTORS", "(unset)"),
    ("INGOT_LOG", "info"),
    ("INGOT_LOG_FORMAT", "text"),
];

/// How long a request waits for its turn before it runs without one (see `admission`): long
/// enough for a line of requests to pass on a busy core, short enough that a turn holder stuck
/// on something slow costs the others little.
pub const HANDLER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, so tests can supply their own variables.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let listen = get("INGOT_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let db = PathBuf::from(get("INGOT_DB").unwrap_or_else(|| "./ingot.db".into()));
        let master_key = match (get("INGOT_MASTER_KEY"), get("INGOT_MASTER_KEY_FILE")) {
            (Some(_), Some(_)) => bail!("set INGOT_MASTER_KEY or INGOT_MASTER_KEY_FILE, not both"),
            (Some(k), None) => MasterKeySource::Inline(k),
            (None, Some(f)) => MasterKeySource::File(f.into()),
            (None, None) => MasterKeySource::File(default_key_file(&db)),
        };
        let sync = match get("INGOT_SYNC").as_deref().unwrap_or("full") {
            "full" => SyncMode::Full,
            "normal" => SyncMode::Normal,
            other => bail!("INGOT_SYNC must be full or normal, not {other:?}"),
        };
        let max_body = parse_num(&get, "INGOT_MAX_BODY", 1 << 20)?;
        let token_leeway = parse_num(&get, "INGOT_TOKEN_LEEWAY", 5)? as u64;
        if token_leeway > 300 {
            bail!("INGOT_TOKEN_LEEWAY is at most 300 seconds");
        }
        let public_url = get("INGOT_PUBLIC_URL")
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        let workers = parse_num(&get, "INGOT_WORKERS", 4)?;
        if !(1..=256).contains(&workers) {
            bail!("INGOT_WORKERS must be between 1 and 256");
        }
        let integrations_file = get("INGOT_INTEGRATIONS_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        let retry_schedule = match get("INGOT_RETRY_SCHEDULE") {
            None => crate::delivery::DEFAULT_SCHEDULE_SECS
                .iter()
                .map(|s| std::time::Duration::from_secs_f64(*s))
                .collect(),
            Some(text) => {
                crate::delivery::parse_schedule(&text).map_err(|e| anyhow::anyhow!("INGOT_RETRY_SCHEDULE: {e}"))?
            }
        };
        let max_connections = parse_num(&get, "INGOT_MAX_CONNECTIONS", 512)?;
        if !(1..=65536).contains(&max_connections) {
            bail!("INGOT_MAX_CONNECTIONS must be between 1 and 65536");
        }
        let handler_turns = match parse_num(&get, "INGOT_HANDLER_TURNS", 0)? {
            0 => 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            n @ 1..=4096 => n,
            _ => bail!("INGOT_HANDLER_TURNS must be between 0 (two per core) and 4096"),
        };
        let seconds = |name: &str, default: usize| -> anyhow::Result<std::time::Duration> {
            match parse_num(&get, name, default)? {
                n @ 1..=3600 => Ok(std::time::Duration::from_secs(n as u64)),
                _ => bail!("{name} must be between 1 and 3600 seconds"),
            }
        };
        let outbound_allow = crate::outbound::parse_allow(&get("INGOT_OUTBOUND_ALLOW").unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("INGOT_OUTBOUND_ALLOW: {e}"))?;
        let max_readers = parse_num(&get, "INGOT_READERS", 16)?;
        if !(1..=1024).contains(&max_readers) {
            bail!("INGOT_READERS must be between 1 and 1024");
        }
        let rate = |name: &str, default: &str| -> anyhow::Result<crate::limits::Rate> {
            crate::limits::Rate::parse(&get(name).unwrap_or_else(|| default.into()))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        Ok(Config {
            rate_per_key: rate("INGOT_RATE_PER_KEY", "0")?,
            rate_per_user: rate("INGOT_RATE_PER_USER", "20,60")?,
            max_credentials: parse_num(&get, "INGOT_MAX_CREDENTIALS_PER_USER", 100)?,
            max_credential_bytes: parse_num(&get, "INGOT_MAX_CREDENTIAL_BYTES", 16384)?,
            max_readers,
            outbound_allow,
            frame_ancestors: parse_origins(get("INGOT_FRAME_ANCESTORS").as_deref())?,
            max_connections,
            handler_turns,
            handler_patience: HANDLER_PATIENCE,
            read_timeout: seconds("INGOT_READ_TIMEOUT", 30)?,
            idle_timeout: seconds("INGOT_IDLE_TIMEOUT", 30)?,
            header_timeout: seconds("INGOT_HEADER_TIMEOUT", 10)?,
            body_timeout: seconds("INGOT_BODY_TIMEOUT", 30)?,
            write_timeout: seconds("INGOT_WRITE_TIMEOUT", 30)?,
            console_idle: seconds("INGOT_CONSOLE_IDLE", 1800)?,
            metrics_listen: get("INGOT_METRICS_LISTEN").filter(|a| !a.trim().is_empty()),
            wal_autocheckpoint: parse_num(&get, "INGOT_WAL_AUTOCHECKPOINT", 1000)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("INGOT_WAL_AUTOCHECKPOINT is too large"))?,
            ready_min_free_mb: parse_num(&get, "INGOT_READY_MIN_FREE_MB", 100)? as u64,
            backup_dir: match get("INGOT_BACKUP_DIR").filter(|d| !d.is_empty()) {
                Some(d) => PathBuf::from(d),
                None => db.parent().unwrap_or(std::path::Path::new(".")).join("backups"),
            },
            backup_keep: match parse_num(&get, "INGOT_BACKUP_KEEP", 7)? {
                n @ 1..=1000 => n,
                _ => bail!("INGOT_BACKUP_KEEP must be between 1 and 1000"),
            },
            backup_every: match parse_num(&get, "INGOT_BACKUP_EVERY", 0)? {
                0 => None,
                n @ 60.. => Some(std::time::Duration::from_secs(n as u64)),
                _ => bail!("INGOT_BACKUP_EVERY must be 0 (off) or at least 60 seconds"),
            },
            install_link_ttl: match parse_num(&get, "INGOT_INSTALL_LINK_TTL", 604_800)? {
                n @ 60..=7_776_000 => std::time::Duration::from_secs(n as u64),
                _ => bail!("INGOT_INSTALL_LINK_TTL must be between 60 seconds and 90 days (7776000)"),
            },
            listen,
            db,
            master_key,
            sync,
            max_body,
            public_url,
            token_leeway,
            workers,
            integrations_file,
            retry_schedule,
            delivery_idle_wait: crate::delivery::IDLE_WAIT,
        })
    }

    /// Points the configuration at another database; the key file follows it when it was the
    /// default one.
    pub fn set_db(&mut self, db: PathBuf) {
        if self.master_key == MasterKeySource::File(default_key_file(&self.db)) {
            self.master_key = MasterKeySource::File(default_key_file(&db));
        }
        let backups_beside = |db: &std::path::Path| db.parent().unwrap_or(std::path::Path::new(".")).join("backups");
        if self.backup_dir == backups_beside(&self.db) {
            self.backup_dir = backups_beside(&db);
        }
        self.db = db;
    }

    /// Changes the listen address; the public URL follows it when it was the default one.
    pub fn set_listen(&mut self, listen: String) {
        if self.public_url == format!("http://{}", self.listen) {
            self.public_url = format!("http://{listen}");
        }
        self.listen = listen;
    }

    /// Names set in the environment with our prefix that we do not read.
    pub fn unknown_variables() -> Vec<String> {
        std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("INGOT_") && !VARIABLES.iter().any(|(v, _)| v == k))
            .collect()
    }
}

/// The master key file that sits beside `db`: `ingot.db` → `ingot.db.key`.
pub fn default_key_file(db: &Path) -> PathBuf {
    let mut name = db
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ingot.db".into());
    name.push(".key");
    db.with_file_name(name)
}

/// `INGOT_FRAME_ANCESTORS`: origins (`https://app.example.com`, `http://localhost:3000`) or `*`,
/// separated by spaces or commas.
fn parse_origins(text: Option<&str>) -> anyhow::Result<Option<Vec<String>>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut origins = Vec::new();
    for o in text.split([' ', ',']).filter(|o| !o.is_empty()) {
        let ok = o == "*"
            || url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
        if !ok {
            bail!("INGOT_FRAME_ANCESTORS: {o:?} is not an origin such as https://app.example.com, or *");
        }
        origins.push(o.to_string());
    }
    Ok(Some(origins))
}

fn parse_num(get: &impl Fn(&str) -> Option<String>, name: &str, default: usize) -> anyhow::Result<usize> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number, not {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.db, PathBuf::from("./ingot.db"));
        assert_eq!(c.master_key, MasterKeySource::File("./ingot.db.key".into()));
        assert_eq!(c.sync, SyncMode::Full);
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let e = cfg(&[("INGOT_SYNC", "sometimes")]).unwrap_err().to_string();
        assert!(e.contains("INGOT_SYNC"), "{e}");
        let e = cfg(&[("INGOT_WORKERS", "many")]).unwrap_err().to_string();
        assert!(e.contains("INGOT_WORKERS"), "{e}");
        assert!(cfg(&[("INGOT_MASTER_KEY", "a"), ("INGOT_MASTER_KEY_FILE", "b")]).is_err());
    }

    #[test]
    fn every_variable_is_documented_in_the_packaging_env_template() {
        let template = include_str!("../packaging/ingot.env");
        for (name, _) in VARIABLES {
            assert!(
                template.contains(&format!("{name}=")),
                "{name} is not in packaging/ingot.env"
            );
        }
    }

    #[test]
    fn the_default_key_file_follows_the_database() {
        let mut c = cfg(&[]).unwrap();
        c.set_db("/var/lib/ingot/x.db".into());
        assert_eq!(c.master_key, MasterKeySource::File("/var/lib/ingot/x.db.key".into()));
    }
}
