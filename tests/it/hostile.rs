//! A hostile client at the edge, over raw sockets: oversized and unframed bodies, endless
//! headers, smuggling, slow headers and connection floods. Each is answered (or cut off) and
//! service goes on for everyone else.

use crate::harness::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// Everything the server sends until it closes the connection (or 20 s pass).
fn read_until_closed(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server neither answered nor closed: {e}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of every response in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| text[i + 9..i + 12].parse().unwrap())
        .collect()
}

/// The `message` of the last response in `text`, which must be JSON.
fn message_of(text: &str) -> String {
    let body = text.rsplit("\r\n\r\n").next().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {text:?}"))
        .to_string()
}

/// Sends `raw` on a new connection; returns all the server said before closing.
fn exchange(s: &Server, raw: &[u8]) -> String {
    let mut c = connect(s);
    let _ = c.write_all(raw);
    read_until_closed(&mut c)
}

fn still_serves(s: &Server) {
    assert_eq!(s.get("/healthz").status, 200, "the server stopped serving");
}

#[test]
fn a_huge_declared_body_is_413_without_allocating_it_and_the_connection_closes() {
    let s = Server::start();
    let got = exchange(
        &s,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\nab",
    );
    assert_eq!(statuses(&got), vec![413], "{got}");
    assert!(got.to_ascii_lowercase().contains("connection: close"), "{got}");
    still_serves(&s);
}

#[test]
fn an_oversized_chunked_body_is_413_and_the_request_hidden_behind_it_never_runs() {
    let s = Server::start();
    let body = r#"{"username":"smuggled"}"#;
    let hidden = format!(
        "POST /users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.key,
        body.len()
    );
    let chunk = vec![b'a'; 0x110000];
    let mut raw = b"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n110000\r\n".to_vec();
    raw.extend_from_slice(&chunk);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    raw.extend_from_slice(hidden.as_bytes());
    let got = exchange(&s, &raw);
    assert_eq!(statuses(&got), vec![413], "{got}");
    assert_eq!(s.get("/users/smuggled").status, 404, "the hidden request ran");
    // Control: the same hidden request on its own does run.
    let alone = exchange(
        &s,
        hidden
            .replacen("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n", 1)
            .as_bytes(),
    );
    assert_eq!(statuses(&alone), vec![200], "{alone}");
}

#[test]
fn ambiguous_framing_is_400_and_closes() {
    let s = Server::start();
    for raw in [
        &b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"[..],
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nab",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\nHost: x\n\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/0.9\r\n\r\n",
        "GET /h\u{e9}althz HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    ] {
        let got = exchange(&s, raw);
        assert_eq!(
            statuses(&got),
            vec![400],
            "{:?} got {got:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(!message_of(&got).is_empty());
        assert!(got.to_ascii_lowercase().contains("connection: close"), "{got}");
    }
    still_serves(&s);
}

#[test]
fn endless_and_too_many_headers_are_431_and_close() {
    let s = Server::start();
    // A header line that never ends: cut off at the line cap, not buffered.
    let mut c = connect(&s);
    c.write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ").unwrap();
    let filler = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 16 * 1024 * 1024 {
        if c.write_all(&filler).is_err() {
            break; // the server closed its end
        }
        sent += filler.len();
    }
    let got = read_until_closed(&mut c);
    assert!(sent < 16 * 1024 * 1024 || statuses(&got) == vec![431], "{got}");
    assert_eq!(statuses(&got), vec![431], "{got}");

    let mut many = b"GET /healthz HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let got = exchange(&s, &many);
    assert_eq!(statuses(&got), vec![431]);
    assert!(message_of(&got).contains("100 headers"), "{got}");
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000));
    assert_eq!(statuses(&exchange(&s, long_target.as_bytes())), vec![431]);
    // Control: 50 headers are fine.
    let mut fifty = b"GET /healthz HTTP/1.1\r\nConnection: close\r\n".to_vec();
    for i in 0..50 {
        fifty.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    fifty.extend_from_slice(b"\r\n");
    assert_eq!(statuses(&exchange(&s, &fifty)), vec![200]);
}

#[test]
fn a_slow_header_and_an_idle_connection_are_closed_by_their_timeouts() {
    let s = Server::start_configured(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(1);
        c.read_timeout = Duration::from_secs(60);
    });
    // A header trickled a byte at a time, each byte well within the read timeout.
    let mut c = connect(&s);
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().chain([b'a'; 4000].iter()) {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let got = if closed {
        String::new()
    } else {
        read_until_closed(&mut c)
    };
    assert!(closed || statuses(&got) == vec![408], "{got:?}");
    // An idle kept-alive connection is closed after the idle timeout (well before the read
    // timeout, and before this client's own 20 s).
    let mut idle = connect(&s);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until_closed(&mut idle);
    assert_eq!(statuses(&got)[0], 200, "{got}");
    // A request that has begun is held to the read timeout, not the idle one: a body that
    // pauses for longer than the idle timeout still arrives.
    let mut paused = connect(&s);
    let body = br#"{"username":"paused"}"#;
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.key,
        body.len() + 2000
    );
    paused.write_all(head.as_bytes()).unwrap();
    paused.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    paused.write_all(&body[5..]).unwrap();
    paused.write_all(&[b' '; 2000]).unwrap();
    let got = read_until_closed(&mut paused);
    assert_eq!(statuses(&got), vec![200], "{got}");
    still_serves(&s);
}

#[test]
fn a_body_that_stops_arriving_is_408_within_the_body_time_limit() {
    let s = Server::start_configured(|c| {
        c.body_timeout = Duration::from_secs(1);
        c.read_timeout = Duration::from_secs(1);
    });
    let mut c = connect(&s);
    c.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"username\":")
        .unwrap();
    let got = read_until_closed(&mut c);
    assert_eq!(statuses(&got), vec![408], "{got}");
    assert!(message_of(&got).contains("in time"), "{got}");
    still_serves(&s);
}

#[test]
fn past_the_connection_cap_new_connections_get_a_fast_503_and_service_resumes() {
    let s = Server::start_configured(|c| c.max_connections = 8);
    let held: Vec<TcpStream> = (0..8).map(|_| connect(&s)).collect();
    // Each held connection is accepted (it sends nothing); the next ones are refused.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(&s);
    let got = read_until_closed(&mut extra);
    assert_eq!(statuses(&got), vec![503], "{got}");
    assert!(got.contains("connection limit"), "{got}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect(&s);
        let got = exchange_on(&mut c, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        if statuses(&got) == vec![200] {
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exchange_on(c: &mut TcpStream, raw: &[u8]) -> String {
    let _ = c.write_all(raw);
    read_until_closed(c)
}
