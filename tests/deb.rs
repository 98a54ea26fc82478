//! The Debian package, through dpkg on this machine (as root, as CI runs): `cargo deb` builds it,
//! `dpkg -i` installs the binary, the unit, the environment file, the system user `ingot` and
//! /var/lib/ingot (0700) and enables nothing; ingot serves as that user from that directory; and
//! `dpkg --purge` removes it all but a database it finds, which it keeps and says so.
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test's
//! `ingot` reads the /etc/ingot/ingot.env this one installs for a moment.
//!
//! The package is built from the dev-profile binary that `cargo test` has just built
//! (`--no-build --profile dev`), so the suite does not wait for a release build; the package's
//! contents and scripts are the same as `cargo deb`'s.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` and answers its output (stdout then stderr), failing the test if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "ingot"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The user's `getent passwd` fields, if it exists.
fn passwd(name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent").args(["passwd", name]).output().unwrap();
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

fn group_id(name: &str) -> u32 {
    let out = run(Command::new("getent").args(["group", name]));
    out.trim().split(':').nth(2).unwrap().parse().unwrap()
}

/// (mode, uid, gid) of `path`.
fn stat(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn build_deb(out: &Path) {
    let tools = root().join("target/tools/bin");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .current_dir(root())
        .env("PATH", path)
        .args(["deb", "--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(out));
}

/// Starts `/usr/bin/ingot serve` as the user `ingot` with the installed environment file, waits
/// for it to print its first start's development key, and stops it with SIGTERM. Answers what it printed.
fn serve_once_as_ingot() -> String {
    let mut child = Command::new("setpriv")
        .args(["--reuid=ingot", "--regid=ingot", "--init-groups", "/usr/bin/ingot"])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !printed.contains("INGOT_DEV_KEY=") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push_str(&(line + "\n")),
            Err(_) => {
                let _ = child.kill();
                panic!("the installed ingot did not start as the user ingot:\n{printed}");
            }
        }
    }
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    assert!(child.wait().unwrap().success(), "{printed}");
    printed
}

/// Armed once the test knows the machine had no ingot of its own: whatever happens, it leaves
/// no package, state directory or user behind.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "ingot"]).output();
        let _ = std::fs::remove_dir_all("/var/lib/ingot");
        if passwd("ingot").is_some() {
            let _ = Command::new("deluser").args(["--system", "--quiet", "ingot"]).output();
        }
    }
}

#[test]
fn the_deb_installs_the_binary_unit_env_user_and_state_directory_serves_as_ingot_and_purges_cleanly() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the package test installs with dpkg: run it as root"
    );
    if installed() {
        let kept = std::fs::read_dir("/var/lib/ingot").map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            kept, 0,
            "an ingot package with data in /var/lib/ingot is installed here; this test will not touch it"
        );
        run(Command::new("dpkg").args(["--purge", "ingot"]));
    }
    assert!(
        !Path::new("/usr/bin/ingot").exists(),
        "/usr/bin/ingot exists outside a package; this test will not overwrite it"
    );

    assert!(
        passwd("ingot").is_none(),
        "a user ingot exists here already; this test will not touch it"
    );
    let _cleanup = Cleanup;

    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("ingot.deb");
    build_deb(&deb);
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(installed());

    // The files, their owners and modes.
    let user = passwd("ingot").expect("the package made the user ingot");
    let (uid, gid) = (user[2].parse::<u32>().unwrap(), group_id("ingot"));
    assert!(uid < 1000, "ingot is a system user: uid {uid}");
    assert_eq!(
        (user[5].as_str(), user[6].as_str()),
        ("/var/lib/ingot", "/usr/sbin/nologin")
    );
    assert_eq!(stat("/usr/bin/ingot"), (0o755, 0, 0));
    assert_eq!(stat("/lib/systemd/system/ingot.service"), (0o644, 0, 0));
    assert_eq!(
        stat("/etc/ingot/ingot.env"),
        (0o640, 0, gid),
        "root writes it, ingot reads it"
    );
    assert_eq!(stat("/var/lib/ingot"), (0o700, uid, gid));
    let unit = std::fs::read_to_string("/lib/systemd/system/ingot.service").unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ingot serve") && unit.contains("User=ingot"));
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "ingot"]));
    assert!(conffiles.contains("/etc/ingot/ingot.env"), "{conffiles}");
    // systemd's own check of the installed unit, where systemd's tools are on the machine (no
    // systemd runs here, so the service itself cannot be started through systemctl).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let said = run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/ingot.service"]));
        assert!(said.trim().is_empty(), "systemd finds fault with the unit:\n{said}");
    } else {
        eprintln!("systemd-analyze is not on this machine: the unit is not verified by systemd");
    }
    // Nothing enabled: no unit is linked into a target.
    let linked = run(Command::new("find").args(["/etc/systemd/system", "-name", "ingot.service"]));
    assert!(linked.trim().is_empty(), "the package enabled ingot: {linked}");
    assert!(run(Command::new("/usr/bin/ingot").arg("--help")).contains("serve"));

    // The service's own run, as the user, from the environment file: the database and key are
    // made in /var/lib/ingot, private to ingot.
    let printed = serve_once_as_ingot();
    assert!(printed.contains("INGOT_DEV_KEY="), "{printed}");
    assert_eq!(stat("/var/lib/ingot/ingot.db"), (0o600, uid, gid));
    assert_eq!(stat("/var/lib/ingot/ingot.db.key"), (0o600, uid, gid));
    // The CLI on the service's database: refused as root, working as ingot.
    let refused = Command::new("/usr/bin/ingot")
        .args(["keys", "list"])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("sudo -u ingot ingot keys list"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let listed = run(Command::new("setpriv")
        .args([
            "--reuid=ingot",
            "--regid=ingot",
            "--init-groups",
            "/usr/bin/ingot",
            "keys",
            "list",
        ])
        .env_clear()
        .current_dir("/"));
    assert!(listed.contains("development (first start)"), "{listed}");

    // Purge with a database there: everything goes but the data and the user that owns it.
    let said = run(Command::new("dpkg").args(["--purge", "ingot"]));
    assert!(!installed());
    for gone in [
        "/usr/bin/ingot",
        "/lib/systemd/system/ingot.service",
        "/etc/ingot/ingot.env",
        "/etc/ingot",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(said.contains("kept /var/lib/ingot"), "{said}");
    assert!(Path::new("/var/lib/ingot/ingot.db").exists() && passwd("ingot").is_some());

    // Install and purge again with no data: then the directory and the user go too.
    std::fs::remove_dir_all("/var/lib/ingot").unwrap();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        passwd("ingot").unwrap()[2],
        uid.to_string(),
        "the user is reused, not made twice"
    );
    run(Command::new("dpkg").args(["--purge", "ingot"]));
    assert!(
        !Path::new("/var/lib/ingot").exists(),
        "an empty /var/lib/ingot is removed on purge"
    );
    assert!(
        passwd("ingot").is_none(),
        "the user ingot is removed with its empty directory"
    );
    assert!(!installed());
}
