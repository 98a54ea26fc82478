//! The floors the benchmark prints beside its table (tests/bench/run.sh): what one core of this
//! machine can do with nothing else in the way.
//!
//!   sign    Ed25519 signatures per second over a token's signing input, with the signer ingot
//!           mints with (ed25519-dalek) and with ring's for comparison, and whole tokens per
//!           second through `ingot::tokens::mint`
//!   commit  fsync'd SQLite commits per second, one row each, in WAL mode with
//!           synchronous=FULL, on a database in DIR (the directory the servers' data is in)
//!
//! Run: cargo run --release --example floors -- sign SECONDS
//!      cargo run --release --example floors -- commit SECONDS DIR
//! Each prints one line: FLOOR name=… per_s=…

use std::time::{Duration, Instant};

fn per_second(seconds: f64, mut one: impl FnMut()) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let (start, mut n) = (Instant::now(), 0u64);
    while Instant::now() < end {
        for _ in 0..16 {
            one();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    match args.first().map(String::as_str) {
        Some("sign") => {
            let (kid, _public, private) = ingot::tokens::generate_key();
            let signer = ingot::tokens::Signer::from_bytes(&kid, &private).unwrap();
            let ring =
                ring::signature::Ed25519KeyPair::from_seed_and_public_key(&private[..32], &private[32..]).unwrap();
            // A token's signing input is about this long (header, claims, base64url).
            let input = vec![b'a'; 330];
            let rate = per_second(seconds, || {
                std::hint::black_box(signer.sign(std::hint::black_box(&input)));
            });
            println!("FLOOR name=ed25519_sign per_s={rate:.0}");
            let rate = per_second(seconds, || {
                std::hint::black_box(ring.sign(std::hint::black_box(&input)));
            });
            println!("FLOOR name=ed25519_sign_ring per_s={rate:.0}");
            let holder = ingot::tokens::Holder {
                user_id: "65a1f0c2e4b0a1b2c3d4e5f6",
                username: "seed-1@example.com",
                env: ingot::store::Env::Development,
                link: None,
            };
            let rate = per_second(seconds, || {
                std::hint::black_box(ingot::tokens::mint(&signer, "http://127.0.0.1:8080", &holder, 1800, 0).unwrap());
            });
            println!("FLOOR name=token_mint per_s={rate:.0}");
        }
        Some("commit") => {
            let dir = args.get(2).expect("commit SECONDS DIR");
            let path = std::path::Path::new(dir).join("floor-commit.db");
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", "FULL").unwrap();
            conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
                .unwrap();
            let mut insert = conn.prepare("INSERT INTO t (v) VALUES ('x')").unwrap();
            let rate = per_second(seconds, || {
                insert.execute([]).unwrap();
            });
            println!("FLOOR name=fsync_commit per_s={rate:.0}");
            drop(insert);
            drop(conn);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        _ => {
            eprintln!("usage: floors sign SECONDS | floors commit SECONDS DIR");
            std::process::exit(2);
        }
    }
}
