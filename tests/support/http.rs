//! Test support: the loopback HTTP/1.1 plumbing the model-API mocks share (`codex`, `anthropic`).
//!
//! Just enough of HTTP/1.1 for the CLIs under test: one request per connection (`connection:
//! close`), headers read up to the blank line, a body by `content-length`. Each connection is
//! served on its own thread, so a reply that hangs holds only its own connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// One request as read off a connection, with the stream to answer on.
pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    pub body: Vec<u8>,
    pub out: TcpStream,
}

/// Binds 127.0.0.1 on a free port and serves each request with `serve` on its own thread;
/// returns the port.
pub fn serve_loopback(serve: impl Fn(Request) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || {
                if let Some(req) = read_request(stream) {
                    serve(req)
                }
            });
        }
    });
    port
}

/// Reads one request; `None` when the peer closed or sent less than it announced.
fn read_request(stream: TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("").to_string();
    Some(Request { method, path, body, out: stream })
}

/// Answers with a complete response of `body` (`extra`: more header lines, each ending in CRLF).
pub fn respond(out: &mut TcpStream, status: u16, kind: &str, extra: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Answers `200 text/event-stream` with `events` already in SSE form.
pub fn respond_sse(out: &mut TcpStream, events: &str) {
    respond(out, 200, "text/event-stream", "cache-control: no-cache\r\n", events)
}
