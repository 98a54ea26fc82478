//! The HTTP edge under load: bursts of keep-alive connections.

use crate::harness::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads one HTTP response (headers and a Content-Length body) from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, body))
}

#[test]
fn a_burst_of_keep_alive_connections_is_served_while_all_stay_open() {
    for _round in 0..3 {
        let s = Server::start();
        let addr = s.base.trim_start_matches("http://").to_string();
        // Open every connection at once and keep them all open: a connection queued behind
        // another keep-alive connection would wait until one of them closed, which none does.
        let mut conns: Vec<TcpStream> = (0..48).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let (head, _) = read_response(c).unwrap_or_else(|e| panic!("connection {i} got no answer: {e}"));
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
    }
}

#[test]
fn browsers_may_call_from_any_origin_with_a_user_token() {
    let s = Server::start();
    let user = s.create_user("browser");
    let token = s.token(&user);
    let pre = ureq::request("OPTIONS", &format!("{}/2024-03/session", s.base))
        .set("Origin", "https://app.customer.example")
        .set("Access-Control-Request-Method", "GET")
        .set("Access-Control-Request-Headers", "x-alloy-user-token")
        .call()
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(pre
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("x-alloy-user-token"));
    assert!(pre.header("Access-Control-Allow-Methods").unwrap().contains("PUT"));
    let r = s.call(
        "GET",
        "/session",
        &[
            ("x-alloy-user-token", &token),
            ("Origin", "https://app.customer.example"),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn the_read_pool_is_bounded_taken_only_by_readers_and_shrinks_when_idle() {
    let s = Server::start_configured(|c| c.max_readers = 3);
    let store = &s.app().store;
    // Requests that never read hold no read connection: health, missing and malformed keys,
    // unknown routes.
    for _ in 0..10 {
        assert_eq!(s.call("GET", "/healthz", &[], None).status, 200);
        assert_eq!(s.call("GET", "/users", &[], None).status, 401);
        assert_eq!(
            s.call("GET", "/users", &[("Authorization", "Bearer nope")], None)
                .status,
            401
        );
        assert_eq!(s.get("/no/such/route").status, 404);
    }
    assert_eq!(store.readers_open(), 0);
    // Forty concurrent readers share three connections; every one is answered.
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let (base, key) = (s.base.clone(), s.key.clone());
            std::thread::spawn(move || {
                ureq::get(&format!("{base}/users"))
                    .set("Authorization", &format!("Bearer {key}"))
                    .call()
                    .map(|r| r.status())
                    .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&c| c == 200), "{statuses:?}");
    let open = store.readers_open();
    assert!((1..=3).contains(&open), "{open} read connections open");
    // Connections idle for less than the limit stay, and `keep` stay warm whatever their age.
    let lent: Vec<_> = (0..3).map(|_| store.read().unwrap()).collect();
    assert_eq!(store.readers_open(), 3);
    drop(lent);
    store.trim_readers(0, Duration::from_secs(3600));
    assert_eq!(store.readers_open(), 3, "recently used connections were closed");
    store.trim_readers(1, Duration::ZERO);
    assert_eq!(store.readers_open(), 1, "keep 1 leaves exactly one");
    // Idle connections close again (the housekeeping thread does this after a minute).
    // (A request's connection goes back just after its answer is sent: allow for that.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        store.trim_readers(0, Duration::ZERO);
        if store.readers_open() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} stay open",
            store.readers_open()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.get("/users").status, 200, "and the pool opens again on demand");
}

#[test]
fn a_request_that_finds_every_reader_lent_waits_then_gets_503_and_service_goes_on() {
    let s = Server::start_configured(|c| c.max_readers = 1);
    let store = &s.app().store;
    let held = store.read().unwrap();
    let r = s.get("/users");
    assert_eq!(r.status, 503, "{}", r.json);
    assert!(r.message().contains("try again"), "{}", r.message());
    drop(held);
    assert_eq!(s.get("/users").status, 200);
    assert_eq!(
        store.readers_open(),
        1,
        "the one connection was reused, not a second opened"
    );

    // A request waiting for the connection gets it as soon as it comes back, not when its
    // five-second wait runs out.
    let held = store.read().unwrap();
    let (base, key) = (s.base.clone(), s.key.clone());
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let status = ureq::get(&format!("{base}/users"))
            .set("Authorization", &format!("Bearer {key}"))
            .call()
            .map(|r| r.status())
            .unwrap_or(0);
        (status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let (status, waited) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(4),
        "served only when its wait ran out: {waited:?}"
    );
}

#[test]
fn requests_pipelined_in_one_write_are_all_answered_in_order() {
    let s = Server::start();
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // Three requests in one segment: after the first, the other two are already read from the
    // socket, so nothing tells the server they are there but its own buffer.
    let one = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let three = format!("{}{}{}", one("/healthz"), one("/nowhere"), one("/healthz"));
    c.write_all(three.as_bytes()).unwrap();
    let statuses: Vec<String> = (0..3)
        .map(|i| {
            let (head, _) = read_response(&mut c).unwrap_or_else(|e| panic!("response {i}: {e}"));
            head.lines().next().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"]
    );
    // And the connection still takes the next request.
    c.write_all(one("/healthz").as_bytes()).unwrap();
    assert!(read_response(&mut c).unwrap().0.starts_with("HTTP/1.1 200"));
}

#[test]
fn clients_that_stall_mid_request_or_stop_reading_do_not_hold_up_the_others() {
    // Long timeouts, so that a stalled client would hold whatever thread it stalls for many
    // seconds: the others must be served meanwhile.
    let s = Server::start_configured(|c| {
        c.header_timeout = Duration::from_secs(60);
        c.read_timeout = Duration::from_secs(60);
        c.body_timeout = Duration::from_secs(60);
        c.write_timeout = Duration::from_secs(60);
    });
    let addr = s.base.trim_start_matches("http://").to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut stalled = Vec::new();
    for _ in 0..cores + 2 {
        // A header that stops half way, and a body that stops half way.
        let mut head = TcpStream::connect(&addr).unwrap();
        head.write_all(b"GET /healthz HTTP/1.1\r\nX-Half: ").unwrap();
        let mut body = TcpStream::connect(&addr).unwrap();
        let req = format!(
            "POST /users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user",
            s.key
        );
        body.write_all(req.as_bytes()).unwrap();
        // Responses asked for and never read: the server's writes fill the socket and stop.
        let mut deaf = TcpStream::connect(&addr).unwrap();
        let many = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
        deaf.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = deaf.write_all(many.as_bytes());
        stalled.extend([head, body, deaf]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    for i in 0..20 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, _) =
            read_response(&mut c).unwrap_or_else(|e| panic!("request {i} waited behind a stalled client: {e}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // Well inside the stalled clients' 60 s: nothing waited for them.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    drop(stalled);
}
