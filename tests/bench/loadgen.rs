//! A small closed-loop HTTP/1.1 load generator for the ingot vs PocketBase benchmark.
//!
//! C threads, each with one keep-alive TCP connection, send requests back to back until a
//! request count or a time limit is reached (at least one is required, so a run always ends by
//! itself). Only loopback addresses are accepted as targets.
//!
//! A request is a template: `--method`, `--path` and `--body` may hold
//!   `{n}`  a sequence number unique within the run (0, 1, 2, ...),
//!   `{id}` an id from `--ids FILE` (one per line), picked at random (`--id-order random`) or
//!          each used exactly once (`--id-order once`, the run ends when they run out).
//! `--save-ids FILE --id-field NAME` writes the string field NAME of every 2xx JSON response to
//! FILE, one per line (used to seed and to collect ids for later deletes).
//!
//! Every response that is not 2xx, and every connect/IO/parse failure, is an error: counted,
//! reported, and the first few are printed to stderr. Latency is measured per request from
//! the first byte written to the last byte of the response read.
//!
//! Output (stdout), one line a run:
//!   RESULT label=.. ok=.. errors=.. secs=.. rps=.. p50_ms=.. p99_ms=.. mean_ms=.. max_ms=..
//!          min_per_conn=..
//! `rps` counts successful (2xx) responses only; latencies cover every response received.
//! `min_per_conn` is the fewest responses any one connection got (a starvation indicator).
//!
//! Run: cargo run --release --example loadgen -- --url http://127.0.0.1:8080 \
//!        --header 'Authorization: Bearer KEY' --method GET --path /users/{id} --ids ids.txt \
//!        --concurrency 32 --seconds 5

use rand::Rng;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_ERROR_SAMPLES: usize = 5;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
enum IdOrder {
    Random,
    Once,
}

struct Opts {
    addr: SocketAddr,
    host_header: String,
    headers: Vec<String>,
    method: String,
    path: String,
    body: Option<String>,
    ids: Vec<String>,
    id_order: IdOrder,
    concurrency: usize,
    requests: Option<u64>,
    seconds: Option<f64>,
    save_ids: Option<String>,
    id_field: String,
    label: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --url http://127.0.0.1:PORT [--header 'K: V']... [--method M] --path P \
         [--body B] [--ids FILE] [--id-order random|once] [--concurrency C] \
         [--requests N] [--seconds S] [--save-ids FILE] [--id-field NAME] [--label L]"
    );
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = None;
    let mut o = Opts {
        addr: "127.0.0.1:1".parse().unwrap(),
        host_header: String::new(),
        headers: Vec::new(),
        method: "GET".into(),
        path: String::new(),
        body: None,
        ids: Vec::new(),
        id_order: IdOrder::Random,
        concurrency: 32,
        requests: None,
        seconds: None,
        save_ids: None,
        id_field: "id".into(),
        label: "run".into(),
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let val = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag {
            "--url" => url = Some(val()),
            "--header" => o.headers.push(val()),
            "--method" => o.method = val().to_ascii_uppercase(),
            "--path" => o.path = val(),
            "--body" => o.body = Some(val()),
            "--ids" => {
                let f = val();
                let text = std::fs::read_to_string(&f).unwrap_or_else(|e| usage(&format!("cannot read {f}: {e}")));
                o.ids = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
            }
            "--id-order" => {
                o.id_order = match val().as_str() {
                    "random" => IdOrder::Random,
                    "once" => IdOrder::Once,
                    v => usage(&format!("bad --id-order {v}")),
                }
            }
            "--concurrency" => o.concurrency = val().parse().unwrap_or_else(|_| usage("bad --concurrency")),
            "--requests" => o.requests = Some(val().parse().unwrap_or_else(|_| usage("bad --requests"))),
            "--seconds" => o.seconds = Some(val().parse().unwrap_or_else(|_| usage("bad --seconds"))),
            "--save-ids" => o.save_ids = Some(val()),
            "--id-field" => o.id_field = val(),
            "--label" => o.label = val(),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
        i += 2;
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let hostport = url
        .strip_prefix("http://")
        .unwrap_or_else(|| usage("--url must start with http://"))
        .trim_end_matches('/');
    if hostport.contains('/') {
        usage("--url takes no path; use --path");
    }
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .unwrap_or_else(|e| usage(&format!("cannot resolve {hostport}: {e}")))
        .collect();
    // Loopback only: this tool must never send load anywhere else.
    o.addr = *addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .unwrap_or_else(|| usage("the target must be a loopback address (127.0.0.0/8 or ::1)"));
    if addrs.iter().any(|a| !a.ip().is_loopback()) {
        usage("the target must resolve only to loopback addresses");
    }
    o.host_header = hostport.to_string();
    if o.path.is_empty() || !o.path.starts_with('/') {
        usage("--path is required and must start with /");
    }
    if o.requests.is_none() && o.seconds.is_none() {
        usage("give --requests or --seconds (or both) so the run is bounded");
    }
    if (o.path.contains("{id}") || o.body.as_deref().is_some_and(|b| b.contains("{id}"))) && o.ids.is_empty() {
        usage("the template uses {id} but --ids gave no ids");
    }
    if o.concurrency == 0 || o.concurrency > 4096 {
        usage("--concurrency must be 1..4096");
    }
    o
}

/// One parsed response.
struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, s),
        })
    }

    fn roundtrip(&mut self, req: &[u8], head_request: bool) -> Result<Response, String> {
        self.writer.write_all(req).map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read status: {e}"))?;
        if line.is_empty() {
            return Err("connection closed by server".into());
        }
        let mut parts = line.split_whitespace();
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = version == "HTTP/1.0";
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("read header: {e}"))?;
            if line.is_empty() {
                return Err("connection closed inside headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => {
                        content_length = Some(v.parse().map_err(|_| format!("bad content-length {v:?}"))?)
                    }
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    "connection" => {
                        let v = v.to_ascii_lowercase();
                        if v.contains("close") {
                            close = true;
                        } else if v.contains("keep-alive") {
                            close = false;
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            // no body
        } else if chunked {
            loop {
                line.clear();
                self.reader
                    .read_line(&mut line)
                    .map_err(|e| format!("read chunk size: {e}"))?;
                let size_txt = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_txt, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        line.clear();
                        self.reader
                            .read_line(&mut line)
                            .map_err(|e| format!("read trailer: {e}"))?;
                        if line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader
                    .read_exact(&mut body[start..])
                    .map_err(|e| format!("read chunk: {e}"))?;
                let mut crlf = [0u8; 2];
                self.reader
                    .read_exact(&mut crlf)
                    .map_err(|e| format!("read chunk end: {e}"))?;
            }
        } else if let Some(n) = content_length {
            body.resize(n, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else {
            // No length: the body runs to the end of the connection.
            self.reader
                .read_to_end(&mut body)
                .map_err(|e| format!("read body to close: {e}"))?;
            close = true;
        }
        Ok(Response { status, body, close })
    }
}

struct Shared {
    opts: Opts,
    issued: AtomicU64,
    next_id: AtomicUsize,
    errors: AtomicU64,
    ok: AtomicU64,
    error_samples: Mutex<Vec<String>>,
    saved_ids: Mutex<Vec<String>>,
    deadline: Option<Instant>,
}

impl Shared {
    fn note_error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock().unwrap();
        if s.len() < MAX_ERROR_SAMPLES {
            s.push(what);
        }
    }

    /// The next request to send, or `None` when the run is over.
    fn next_request(&self, rng: &mut impl Rng) -> Option<Vec<u8>> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.opts.requests.is_some_and(|max| n >= max) {
            return None;
        }
        let o = &self.opts;
        let needs_id = o.path.contains("{id}") || o.body.as_deref().is_some_and(|b| b.contains("{id}"));
        let id: &str = if needs_id {
            match o.id_order {
                IdOrder::Random => &o.ids[rng.gen_range(0..o.ids.len())],
                IdOrder::Once => {
                    let i = self.next_id.fetch_add(1, Ordering::Relaxed);
                    o.ids.get(i)?
                }
            }
        } else {
            ""
        };
        let fill = |t: &str| t.replace("{n}", &n.to_string()).replace("{id}", id);
        let path = fill(&o.path);
        let body = o.body.as_deref().map(fill);
        let mut req = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\nAccept: application/json\r\n",
            o.method, path, o.host_header
        );
        for h in &o.headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        match &body {
            Some(b) => {
                req.push_str("Content-Type: application/json\r\n");
                req.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
                req.push_str(b);
            }
            None if matches!(o.method.as_str(), "POST" | "PUT" | "PATCH") => {
                req.push_str("Content-Length: 0\r\n\r\n");
            }
            None => req.push_str("\r\n"),
        }
        Some(req.into_bytes())
    }
}

fn extract_id(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(String::from)
}

fn worker(shared: Arc<Shared>) -> Vec<u32> {
    let mut lat = Vec::with_capacity(4096);
    let mut rng = rand::thread_rng();
    let mut conn: Option<Conn> = None;
    let head = shared.opts.method == "HEAD";
    let saving = shared.opts.save_ids.is_some();
    while let Some(req) = shared.next_request(&mut rng) {
        let started = Instant::now();
        if conn.is_none() {
            match Conn::open(&shared.opts.addr) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    shared.note_error(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        match c.roundtrip(&req, head) {
            Ok(resp) => {
                lat.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if (200..300).contains(&resp.status) {
                    if !saving {
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        match extract_id(&resp.body, &shared.opts.id_field) {
                            Some(id) => {
                                shared.ok.fetch_add(1, Ordering::Relaxed);
                                shared.saved_ids.lock().unwrap().push(id)
                            }
                            None => shared.note_error(format!(
                                "2xx without a string {:?} field: {}",
                                shared.opts.id_field,
                                String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                            )),
                        }
                    }
                } else {
                    shared.note_error(format!(
                        "HTTP {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                    ));
                }
                if resp.close {
                    conn = None;
                }
            }
            Err(e) => {
                shared.note_error(e);
                conn = None;
            }
        }
    }
    lat
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() {
    let opts = parse_args();
    let c = opts.concurrency;
    let deadline = opts.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let shared = Arc::new(Shared {
        opts,
        issued: AtomicU64::new(0),
        next_id: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        error_samples: Mutex::new(Vec::new()),
        saved_ids: Mutex::new(Vec::new()),
        deadline,
    });
    let started = Instant::now();
    let handles: Vec<_> = (0..c)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || worker(s))
        })
        .collect();
    let mut lat: Vec<u32> = Vec::new();
    // The fewest responses any one connection got: near 0 while others got thousands means a
    // connection was starved (its request waited on the server most of the run).
    let mut min_per_conn = u64::MAX;
    for h in handles {
        match h.join() {
            Ok(v) => {
                min_per_conn = min_per_conn.min(v.len() as u64);
                lat.extend(v)
            }
            Err(_) => shared.note_error("a worker thread panicked".into()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let errors = shared.errors.load(Ordering::Relaxed);
    let ok = shared.ok.load(Ordering::Relaxed);
    let samples = shared.error_samples.lock().unwrap().clone();
    for s in &samples {
        eprintln!("loadgen[{}] error sample: {s}", shared.opts.label);
    }
    if let Some(f) = &shared.opts.save_ids {
        let ids = shared.saved_ids.lock().unwrap();
        let mut text = ids.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(f, text) {
            eprintln!("loadgen: cannot write {f}: {e}");
            std::process::exit(1);
        }
    }
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    println!(
        "RESULT label={} ok={} errors={} secs={:.3} rps={:.1} p50_ms={:.3} p99_ms={:.3} mean_ms={:.3} max_ms={:.3} min_per_conn={}",
        shared.opts.label,
        ok,
        errors,
        secs,
        ok as f64 / secs,
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        mean,
        lat.last().map(|&v| v as f64 / 1000.0).unwrap_or(f64::NAN),
        min_per_conn,
    );
}
