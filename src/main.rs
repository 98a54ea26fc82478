//! The `ingot` command: parses the subcommand, starts logging, and calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ingot::config::{Config, VARIABLES};
use ingot::ids::rfc3339;
use ingot::store::Env;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ingot",
    version,
    about = "A self-hosted Embedded iPaaS appliance: one binary over one SQLite file."
)]
#[command(after_help = "Configuration comes from INGOT_* variables (see packaging/ingot.env); flags override them.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Read INGOT_* settings from this file (KEY=VALUE lines) before the environment's own;
    /// without it, /etc/ingot/ingot.env is read when it exists.
    #[arg(long, value_name = "FILE", global = true)]
    env_file: Option<PathBuf>,
    /// Run even as another user than the database file's owner (which can leave files the
    /// service cannot open).
    #[arg(long, global = true)]
    force: bool,
}

/// The service's environment file: read once, before anything else; a variable already in the
/// environment wins over the file.
fn load_env_file(given: Option<&std::path::Path>) -> anyhow::Result<()> {
    let default = std::path::Path::new("/etc/ingot/ingot.env");
    let path = match given {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(()),
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("while reading the environment file {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            anyhow::bail!("{}:{}: expected KEY=VALUE", path.display(), n + 1);
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    Ok(())
}

/// Commands that write the database refuse to run as another user than its owner: files they
/// create (the WAL, a new key file) would belong to the wrong user and stop the service.
fn check_owner(db: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(db) else { return Ok(()) };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me || force {
        return Ok(());
    }
    let owner = user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string());
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::bail!(
        "the database {} belongs to user {owner}; run this as that user: sudo -u {owner} ingot {} (or pass --force)",
        db.display(),
        args.join(" ")
    )
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to memory owned here, `buf` outlives the use of `pwd`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled `pw_name` with a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (creates the database, master key and a development API key on first start).
    Serve {
        /// Address to listen on [env: INGOT_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Manage API keys, the token signing key, the request-signing key and the master key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write a consistent copy of the database to PATH while the server keeps serving. The
    /// master key is not in it: keep the key file apart (or write a copy with --key-out).
    Backup {
        /// Where the copy goes (must not exist).
        path: PathBuf,
        /// Also write a copy of the master key file here (mode 0600).
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Check a database or backup file: integrity, schema version, and every sealed secret
    /// opened with the master key.
    Verify {
        path: PathBuf,
        /// The master key file to open its secrets with [default: the configured one]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Put a backup in place of a stopped server's database (checked first with its master key).
    Restore {
        path: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Args)]
struct DbArg {
    /// The SQLite database file [env: INGOT_DB] [default: ./ingot.db]
    #[arg(long, value_name = "PATH", global = true)]
    db: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key and print it once.
    Create {
        /// The environment the key's data lives in: development or production.
        #[arg(long, value_parser = parse_env)]
        env: Env,
        /// A name to recognise the key by in `keys list`.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// List API keys (never the keys themselves).
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Revoke an API key at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Start signing user tokens with a new key; the old public key stays published until its
    /// tokens have expired.
    RotateSigning {
        #[command(flatten)]
        db: DbArg,
    },
    /// Replace the RSA key that signs every outgoing request (X-Alloy-Signature); a running
    /// server signs with the new key from its next request on.
    RotateRequestSigning {
        #[command(flatten)]
        db: DbArg,
    },
    /// Re-seal every stored secret under a new master key (the server may keep running), then
    /// remove the old key from the key file.
    RotateMaster {
        #[command(flatten)]
        db: DbArg,
    },
}

impl KeysCommand {
    fn db(&self) -> &DbArg {
        match self {
            KeysCommand::Create { db, .. }
            | KeysCommand::List { db }
            | KeysCommand::Revoke { db, .. }
            | KeysCommand::RotateSigning { db }
            | KeysCommand::RotateRequestSigning { db }
            | KeysCommand::RotateMaster { db } => db,
        }
    }
}

fn parse_env(s: &str) -> Result<Env, String> {
    Env::parse(s).ok_or_else(|| format!("{s:?} is not an environment: use development or production"))
}

fn config_with(db: &DbArg) -> anyhow::Result<Config> {
    let mut config = Config::from_env()?;
    if let Some(path) = &db.db {
        config.set_db(path.clone());
    }
    Ok(config)
}

fn main() {
    let json = std::env::var("INGOT_LOG_FORMAT").is_ok_and(|f| f == "json");
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().filter_or("INGOT_LOG", "info"));
    // ureq's debug lines print request headers, and a user's credential may be one of them
    // (only Authorization and Cookie are redacted there): never let them through.
    logger.filter_module("ureq", log::LevelFilter::Info);
    if json {
        ingot::http::JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
        logger.format(|buf, record| {
            use std::io::Write;
            let message = record.args().to_string();
            let mut line = serde_json::json!({
                "time": rfc3339(ingot::ids::now_ms()),
                "level": record.level().as_str(),
                "target": record.target(),
            });
            // An access line's message is already an object: its fields join the line's.
            match serde_json::from_str::<serde_json::Value>(&message) {
                Ok(serde_json::Value::Object(fields)) if record.target() == "ingot::access" => {
                    line["message"] = "request".into();
                    for (k, v) in fields {
                        line[k] = v;
                    }
                }
                _ => line["message"] = message.into(),
            }
            writeln!(buf, "{line}")
        });
    }
    // A server's stderr (a file, a pipe, the journal) gets its lines in batches, one write for
    // many (see `ingot::logbuf`); a person watching a terminal, or running a command, sees each
    // line as it comes, in order with what the command prints.
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    // Before any thread starts, so that every thread of the server inherits it.
    let batch = serving.then(batch_scheduling);
    if serving && !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        logger.target(env_logger::Target::Pipe(Box::new(ingot::logbuf::Batched)));
    }
    logger.init();
    if let Some(Err(e)) = batch {
        log::info!("handlers run under the default scheduling policy (SCHED_BATCH was refused: {e})");
    }
    let outcome = run(cli);
    ingot::logbuf::flush();
    if let Err(e) = outcome {
        eprintln!("ingot: {e:#}");
        std::process::exit(1);
    }
}

/// Puts the calling thread, and so every thread it starts, under `SCHED_BATCH`: the same
/// priority and share of the CPU, but a thread that wakes does not preempt the one running.
/// A handler woken by its next request, or by its group commit, then waits for the running
/// handler to finish or block instead of taking the core mid-request: a third fewer context
/// switches a create, and 8-16 % more gets, creates and deletes a second on one core (see the
/// README's performance section).
#[cfg(target_os = "linux")]
fn batch_scheduling() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn batch_scheduling() -> std::io::Result<()> {
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    load_env_file(cli.env_file.as_deref())?;
    let touches_db = match &cli.command {
        Command::Verify { .. } => None,
        Command::Serve { db, .. } | Command::Backup { db, .. } | Command::Restore { db, .. } => Some(db),
        Command::Keys(k) => Some(k.db()),
    };
    if let Some(db) = touches_db {
        check_owner(&config_with(db)?.db, cli.force)?;
    }
    for name in Config::unknown_variables() {
        log::warn!("{name} is not a setting ingot knows; known ones: {}", known_names());
    }
    match cli.command {
        Command::Serve { listen, db } => serve(listen, &db),
        Command::Keys(k) => keys(k),
        Command::Backup { path, key_out, db } => {
            let config = config_with(&db)?;
            let w = ingot::backup::backup(&config.db, &path)?;
            eprintln!(
                "wrote {} ({} bytes), a consistent copy of {}",
                w.path.display(),
                w.bytes,
                config.db.display()
            );
            match key_out {
                Some(out) => {
                    ingot::backup::copy_key(&config, &out)?;
                    eprintln!("wrote the master key to {} (mode 0600): store it apart from the backup", out.display());
                }
                None => eprintln!(
                    "the master key is not in the backup; its secrets open only with {:?}: keep that file, apart from the backup",
                    config.master_key
                ),
            }
            Ok(())
        }
        Command::Verify { path, key } => {
            let mut config = Config::from_env()?;
            config.master_key = match key {
                Some(k) => ingot::config::MasterKeySource::File(k),
                None => config.master_key,
            };
            let secrets = ingot::store::Secrets::load(&config.master_key)
                .with_context(|| format!("while loading the master key {:?}", config.master_key))?;
            let v = ingot::backup::verify(&path, &secrets)?;
            println!(
                "{}: integrity ok, schema version {}, {} users, {} secrets opened",
                path.display(),
                v.schema_version,
                v.users,
                v.secrets_opened
            );
            if !v.failures.is_empty() {
                for f in &v.failures {
                    println!("cannot open {f}");
                }
                anyhow::bail!("{} secrets did not open with this master key", v.failures.len());
            }
            Ok(())
        }
        Command::Restore { path, db } => {
            let config = config_with(&db)?;
            let v = ingot::backup::restore(&config, &path)?;
            eprintln!(
                "restored {} to {} ({} users, {} secrets checked); start the server",
                path.display(),
                config.db.display(),
                v.users,
                v.secrets_opened
            );
            Ok(())
        }
    }
}

fn known_names() -> String {
    VARIABLES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn serve(listen: Option<String>, db: &DbArg) -> anyhow::Result<()> {
    // Before anything is printed: whoever reads the address or the key may signal at once, and
    // a SIGTERM that came before the handler would kill the server instead of stopping it.
    let (tx, stop) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("while installing the signal handler")?;
    let mut config = config_with(db)?;
    if let Some(l) = listen {
        config.set_listen(l);
    }
    let listener =
        std::net::TcpListener::bind(&config.listen).with_context(|| format!("while binding {}", config.listen))?;
    let handle = ingot::start(config, listener)?;
    let addr = handle.addr();
    // What was logged while starting comes before the banner.
    ingot::logbuf::flush();
    if ingot::http::JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        // Every line a JSON object, and no key in a line that may be shipped with the logs.
        log::info!(target: "ingot::serve", "listening on http://{addr}");
        if handle.first_key.is_some() {
            log::warn!(
                target: "ingot::serve",
                "a development API key was made on first start; JSON logs never print keys: make one with `ingot keys create --env development`"
            );
        }
    } else {
        eprintln!("ingot listening on http://{addr}");
        if let Some(key) = &handle.first_key {
            eprintln!("ingot created a development API key; it is shown only this once:");
            eprintln!("  INGOT_DEV_KEY={key}");
            eprintln!("  try: curl -H 'Authorization: Bearer {key}' http://{addr}/users");
        }
    }
    prepare_request_signing(handle.app().clone());
    let _ = stop.recv();
    ingot::logbuf::flush();
    eprintln!("ingot stopping: finishing requests in flight");
    handle.shutdown();
    ingot::logbuf::flush();
    eprintln!("ingot stopped");
    Ok(())
}

/// Makes the request-signing key in the background if this database has none yet, so that
/// the first outgoing request does not wait for it. The library makes it on first need instead
/// (see `ingot::request_signing`): tests start many servers that never send a request.
fn prepare_request_signing(app: std::sync::Arc<ingot::App>) {
    let spawned = std::thread::Builder::new()
        .name("ingot-request-key".into())
        .spawn(move || {
            let made = app
                .store
                .read()
                .and_then(|db| app.request_signing.key(&db, &app.store).map(|_| ()));
            if let Err(e) = made {
                log::warn!("the request-signing key is not ready (the first request will make it): {e}");
            }
        });
    if let Err(e) = spawned {
        log::warn!("could not start making the request-signing key: {e}");
    }
}

fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { env, name, db } => {
            let (key, full) = ingot::admin::create_key(&config_with(&db)?, env, &name)?;
            eprintln!(
                "created API key {} ({}); it is shown only this once:",
                key.id,
                env.as_str()
            );
            println!("{full}");
        }
        KeysCommand::List { db } => {
            println!(
                "{:<14} {:<12} {:<26} {:<26} {:<26} NAME",
                "ID", "ENV", "CREATED", "LAST USED", "REVOKED"
            );
            for k in ingot::admin::list_keys(&config_with(&db)?)? {
                let t = |v: Option<i64>| v.map(rfc3339).unwrap_or_else(|| "-".into());
                println!(
                    "{:<14} {:<12} {:<26} {:<26} {:<26} {}",
                    k.id,
                    k.env.as_str(),
                    rfc3339(k.created_at),
                    t(k.last_used_at),
                    t(k.revoked_at),
                    k.name
                );
            }
        }
        KeysCommand::Revoke { id, db } => {
            ingot::admin::revoke_key(&config_with(&db)?, &id)?;
            eprintln!("revoked API key {id}; it stops working at once");
        }
        KeysCommand::RotateSigning { db } => {
            let (kid, retired) = ingot::admin::rotate_signing(&config_with(&db)?)?;
            eprintln!(
                "new user tokens are signed with key {kid}; retired {} (published until their tokens expire)",
                if retired.is_empty() {
                    "none".to_string()
                } else {
                    retired.join(", ")
                }
            );
        }
        KeysCommand::RotateRequestSigning { db } => {
            let (id, replaced) = ingot::admin::rotate_request_signing(&config_with(&db)?)?;
            eprintln!(
                "outgoing requests are signed with key {id} from now on; replaced {}. Receivers \
                 need the new public key: GET /security/alloy_public_key.pem",
                if replaced.is_empty() {
                    "none".to_string()
                } else {
                    replaced.join(", ")
                }
            );
        }
        KeysCommand::RotateMaster { db } => {
            let r = ingot::admin::rotate_master(&config_with(&db)?)?;
            eprintln!(
                "re-sealed {} secrets under master key {}; removed old key(s) {} from the key file",
                r.resealed,
                r.new_key_id,
                r.old_key_ids.join(", ")
            );
        }
    }
    Ok(())
}
