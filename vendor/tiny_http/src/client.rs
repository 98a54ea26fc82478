use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // ingot: the limits on what a client may send, and the flag a request sets to have the
    // connection closed after it (see `Request::close_connection`).
    limits: crate::Limits,
    close_after: Arc<AtomicBool>,
    // ingot: the socket itself, shared with the reader and writer, and its read timeout now.
    control: Option<Arc<crate::connection::Connection>>,
    timeout_now: Option<std::time::Duration>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// ingot: a line, the header count or the header block over its limit.
    HeaderTooLarge,
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: crate::Limits,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let control = read_socket.control();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            timeout_now: limits.idle_timeout,
            limits,
            close_after: Arc::new(AtomicBool::new(false)),
            control,
        }
    }

    /// ingot: sets the socket's read timeout, with no system call when it is already that.
    fn set_read_timeout(&mut self, t: Option<std::time::Duration>) {
        if self.timeout_now != t {
            if let Some(c) = &self.control {
                let _ = c.set_read_timeout(t);
            }
            self.timeout_now = t;
        }
    }

    /// ingot: bytes of the next request already read from the socket (epoll will not report
    /// them).
    pub(crate) fn buffered(&mut self) -> usize {
        self.next_header_source.buffered()
    }

    /// ingot: no request may follow on this connection.
    pub(crate) fn finished(&self) -> bool {
        self.no_more_requests || self.close_after.load(Ordering::SeqCst)
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// ingot: at most `max` bytes (then `HeaderTooLarge`); a bare LF is a malformed line
    /// (RFC 9112 §2.2: upstream waited for a CR that never came); non-ASCII is malformed;
    /// past `deadline` the read ends as timed out.
    fn read_next_line(&mut self, max: usize, deadline: Instant) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(ReadError::ReadIoError)?,
                None => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
            };

            if byte == b'\n' {
                if !prev_byte_was_cr {
                    return Err(ReadError::WrongRequestLine);
                }
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| ReadError::WrongRequestLine);
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
            if buf.len() > max {
                return Err(ReadError::HeaderTooLarge);
            }
            // Checked now and then, not per byte: the clock is not free.
            if buf.len() % 256 == 0 && Instant::now() > deadline {
                return Err(ReadError::ReadIoError(IoError::new(
                    ErrorKind::TimedOut,
                    "the request header took too long",
                )));
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let (method, path, version, headers) = {
            // reading the request line
            // ingot: the first byte may take up to the read timeout (a kept-alive connection
            // waiting for its next request); from then on the whole header has a deadline, and
            // the line, the header count and the header block have caps.
            let mut first = [0u8; 1];
            self.set_read_timeout(self.limits.idle_timeout);
            let got = self.next_header_source.read(&mut first);
            self.set_read_timeout(self.limits.read_timeout);
            match got {
                Ok(0) => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::ReadIoError(e)),
            }
            let deadline = Instant::now() + self.limits.header_timeout;
            let (max_line, max_block) = (self.limits.max_line, self.limits.max_header_bytes);
            let (method, path, version) = {
                let rest = if first[0] == b'\r' || first[0] == b'\n' {
                    return Err(ReadError::WrongRequestLine);
                } else {
                    self.read_next_line(max_line, deadline)?
                };
                let mut line = String::with_capacity(rest.len() + 1);
                line.push(first[0] as char);
                line.push_str(rest.as_str());
                if !first[0].is_ascii() {
                    return Err(ReadError::WrongRequestLine);
                }

                parse_request_line(&line)?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut block = 0usize;
                loop {
                    let line = match self.read_next_line(max_line, deadline) {
                        Ok(l) => l,
                        Err(ReadError::WrongRequestLine) => return Err(ReadError::WrongHeader(version)),
                        Err(e) => return Err(e),
                    };

                    if line.is_empty() {
                        break;
                    };
                    block += line.len() + 2;
                    if headers.len() >= self.limits.max_headers || block > max_block {
                        return Err(ReadError::HeaderTooLarge);
                    }
                    // RFC 9112 §5.2: no obsolete line folding.
                    if line.as_str().starts_with(' ') || line.as_str().starts_with('\t') {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version.clone())
                }
                request::RequestCreationError::BadFraming => ReadError::WrongHeader(version.clone()),
            }
        })?;

        // return the request
        Ok(request.with_close_flag(self.close_after.clone()))
    }
}

impl ClientConnection {
    /// Notes whether more requests may follow `rq` on this connection.
    fn serve_next(&mut self, rq: &Request) {
        let lowercase = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str().to_ascii_lowercase());
        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val) if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) => {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };
    }

}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests || self.close_after.load(Ordering::SeqCst) {
            return None;
        }

        // ingot: every refusal is `{"message"}` naming the problem, with
        // `Connection: close`, and closes the connection: where the next request would
        // start is unknown.
        let (code, message) = match self.read() {
            Ok(rq) if *rq.http_version() > (1, 1) => (505, "only HTTP/1.0 and HTTP/1.1 are served"),
            Ok(rq) => {
                self.serve_next(&rq);
                return Some(rq);
            }
            Err(ReadError::WrongRequestLine) => (400, "the request line is malformed (it must be METHOD TARGET HTTP/1.x, ASCII, ending in CRLF)"),
            Err(ReadError::WrongHeader(_)) => (400, "a header line is malformed, or Content-Length and Transfer-Encoding do not say where the body ends"),
            Err(ReadError::HeaderTooLarge) => (431, "the request header is too large (at most 8 KiB a line, 100 headers, 64 KiB in all)"),
            // A read that hit SO_RCVTIMEO fails with WouldBlock on Unix.
            Err(ReadError::ReadIoError(ref err))
                if err.kind() == ErrorKind::TimedOut || err.kind() == ErrorKind::WouldBlock =>
            {
                (408, "the request did not arrive in time")
            }
            Err(ReadError::ExpectationFailed(_)) => (417, "the Expect header is not one this server meets (only 100-continue)"),
            Err(ReadError::ReadIoError(_)) => return None,
        };
        let writer = self.sink.next().unwrap();
        let body = format!("{{\"message\":\"{message}\"}}");
        let response = Response::from_string(body)
            .with_status_code(StatusCode(code))
            .with_header(crate::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap())
            .with_header(crate::Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap());
        response.raw_print(writer, HTTPVersion(1, 1), &[], false, None).ok();
        return None;
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
