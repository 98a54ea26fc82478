//! Seeds a stopped ingot's database for tests/bench/scale.sh: error logs written with the code
//! that writes them in a run (`store::error_logs::new_log` and `insert`), for users already in
//! the database (made through `POST /users/batch` before), in transactions of 10,000.
//!
//! Run: cargo run --release --example seed -- DB LOGS WORKFLOWS
//! Each log belongs to a user picked at random and one of WORKFLOWS workflow ids, and is dated
//! at random within the last 30 days. The logs are written oldest first, as a running server
//! writes them (a log is dated when its run fails), so the table holds them in time order as it
//! would after 30 days of service. Prints one line: SEEDED logs=… seconds=… per_s=…

use ingot::store::{error_logs, Env};
use rand::Rng;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, logs, workflows] = &args[..] else {
        eprintln!("usage: seed DB LOGS WORKFLOWS");
        std::process::exit(2);
    };
    let (logs, workflows): (usize, usize) = (logs.parse().unwrap(), workflows.parse().unwrap());
    let mut conn = ingot::store::open_connection(std::path::Path::new(db), ingot::config::SyncMode::Normal).unwrap();
    // A large page cache for this process only: the indexes take random inserts.
    conn.pragma_update(None, "cache_size", -1_048_576).unwrap();
    let users: Vec<String> = conn
        .prepare("SELECT id FROM users WHERE env = 'development'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!users.is_empty(), "seed users first");
    let workflow_ids: Vec<String> = (0..workflows).map(|_| ingot::ids::object_id()).collect();
    // The secondary indexes are dropped while seeding and made again after from their own
    // definitions: the same end state, without ten million random index inserts.
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'error_logs' AND sql IS NOT NULL",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}")).unwrap();
    }
    // So are the triggers that keep each user's and workflow's tally (each log would update two
    // rows at random places in a million): the tallies are counted again after, as migration 5
    // first counts them.
    let tally_triggers: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND sql LIKE '%error_log_tallies%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tally_triggers.len(),
        2,
        "the schema's tally triggers changed: {tally_triggers:?}"
    );
    for (name, _) in &tally_triggers {
        conn.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    }
    let mut rng = rand::thread_rng();
    let now = ingot::ids::now_ms();
    let mut dates: Vec<i64> = (0..logs).map(|_| now - rng.gen_range(0..30 * 86_400_000)).collect();
    dates.sort_unstable();
    let start = Instant::now();
    let mut done = 0;
    while done < logs {
        let tx = conn.transaction().unwrap();
        for _ in 0..10_000.min(logs - done) {
            let user = &users[rng.gen_range(0..users.len())];
            let workflow = &workflow_ids[rng.gen_range(0..workflow_ids.len())];
            let execution = ingot::ids::object_id();
            let mut log = error_logs::new_log(
                Env::Development,
                user,
                workflow,
                &execution,
                "block-1",
                "http",
                "Push contact",
                "Error: Request failed with status code 500",
            );
            log.created_at = dates[done];
            log.updated_at = log.created_at;
            error_logs::insert(&tx, &log).unwrap();
            done += 1;
        }
        tx.commit().unwrap();
        if done % 1_000_000 == 0 {
            eprintln!("seeded {done} error logs in {:.0} s", start.elapsed().as_secs_f64());
        }
    }
    for (name, sql) in &indexes {
        eprintln!("making the index {name} again");
        conn.execute_batch(sql).unwrap();
    }
    eprintln!("counting the tallies again");
    conn.execute_batch(
        "DELETE FROM error_log_tallies;
         INSERT INTO error_log_tallies (env, kind, key, n)
             SELECT env, 'user', user_id, count(*) FROM error_logs GROUP BY env, user_id;
         INSERT INTO error_log_tallies (env, kind, key, n)
             SELECT env, 'workflow', workflow_id, count(*) FROM error_logs GROUP BY env, workflow_id;",
    )
    .unwrap();
    for (_, sql) in &tally_triggers {
        conn.execute_batch(sql).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("SEEDED logs={done} seconds={secs:.1} per_s={:.0}", done as f64 / secs);
    // One workflow id and one user per line, for the filtered /logs runs.
    let out = std::path::Path::new(db).with_extension("workflows");
    std::fs::write(&out, workflow_ids.join("\n") + "\n").unwrap();
}
