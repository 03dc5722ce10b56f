//! A deliberately tiny HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`: it reads the
//! request head (at most [`MAX_REQUEST_BYTES`], within [`READ_TIMEOUT`]), looks only at the
//! request line, answers with `Content-Length` and `Connection: close`, and closes. No
//! keep-alive, no bodies, no TLS: bind it to loopback or a private interface
//! (`http.listen = "0.0.0.0:9090"` exposes it to every network the host is on).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::health::{Health, Verdict};
use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// The largest request head accepted; anything longer gets 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// The time a client has to send its whole request head; a slower one gets 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The time a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how much, a closing connection reads and drops what the client still sends.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;

/// Why a request could not be read or understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request not received within the read timeout")]
    Timeout,
    #[error("connection closed before a request")]
    Closed,
}

/// The parts of a request line this server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    /// The path without query string.
    pub path: String,
}

/// The running listener; dropping it stops serving.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `listen` (`host:port`; port 0 picks a free one) and serves `health` on it.
    pub async fn bind(listen: &str, health: Arc<Health>) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, health));
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
        Ok(Self { addr, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, health: Arc<Health>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many HTTP connections; closing one");
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            serve_connection(stream, &health).await;
            drop(slot);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, health: &Health) {
    let response = match read_head(&mut stream, MAX_REQUEST_BYTES, READ_TIMEOUT).await {
        Ok(head) => match parse_request_line(&head) {
            Ok(request) => route(health, &request),
            Err(e) => error_response(&e),
        },
        Err(RequestError::Closed) => return,
        Err(e) => error_response(&e),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    // Closing with unread input makes the kernel reset the connection, which can destroy the
    // answer before the client reads it: read (and drop) what is left first, briefly.
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Reads until the blank line that ends a request head. The timeout covers the whole head, so
/// a client trickling bytes cannot hold a connection longer than that.
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, RequestError> {
    let read = async {
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|_| RequestError::Closed)?;
            if n == 0 {
                // A client that sent a request line and closed its side still gets an answer.
                return if head.contains(&b'\n') {
                    Ok(head)
                } else if head.is_empty() {
                    Err(RequestError::Closed)
                } else {
                    Err(RequestError::Malformed("incomplete request line"))
                };
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&head) {
                if end > max {
                    return Err(RequestError::TooLarge);
                }
                head.truncate(end);
                return Ok(head);
            }
            if head.len() > max {
                return Err(RequestError::TooLarge);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(RequestError::Timeout))
}

/// The length of the head including its terminating blank line, once it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses `METHOD SP request-target SP HTTP/1.x` from the first line of `head`.
pub fn parse_request_line(head: &[u8]) -> Result<RequestLine, RequestError> {
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .ok_or(RequestError::Malformed("empty request"))?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| RequestError::Malformed("not text"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(RequestError::Malformed("bad request target"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Malformed("unsupported HTTP version"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(RequestLine {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// The answer to a well-formed request.
fn route(health: &Health, request: &RequestLine) -> Vec<u8> {
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return response(
            405,
            "text/plain; charset=utf-8",
            b"method not allowed\n",
            &[("Allow", "GET, HEAD")],
            false,
        );
    }
    let json = |v: Verdict| {
        let mut body = v.body.to_string().into_bytes();
        body.push(b'\n');
        response(
            if v.ok { 200 } else { 503 },
            "application/json",
            &body,
            &[],
            head_only,
        )
    };
    match request.path.as_str() {
        "/healthz" => json(health.liveness()),
        "/readyz" => json(health.readiness()),
        "/metrics" => response(
            200,
            METRICS_CONTENT_TYPE,
            health.metrics().as_bytes(),
            &[],
            head_only,
        ),
        _ => response(
            404,
            "text/plain; charset=utf-8",
            b"not found\n",
            &[],
            head_only,
        ),
    }
}

fn error_response(error: &RequestError) -> Vec<u8> {
    tracing::debug!(error = %error, "bad HTTP request");
    let status = match error {
        RequestError::TooLarge => 431,
        RequestError::Timeout => 408,
        RequestError::Malformed(_) | RequestError::Closed => 400,
    };
    let body = format!("{error}\n");
    response(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        &[],
        false,
    )
}

fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
    head_only: bool,
) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observer;
    use crate::worker::WorkerStats;

    fn line(method: &str, path: &str) -> RequestLine {
        RequestLine {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(line("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /healthz?verbose=1 HTTP/1.0\n\n"),
            Ok(line("HEAD", "/healthz"))
        );
        assert_eq!(
            parse_request_line(b"POST /readyz HTTP/1.1\r\n\r\n"),
            Ok(line("POST", "/readyz"))
        );
    }

    #[test]
    fn rejects_garbage() {
        for garbage in [
            &b""[..],
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET http://x/metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET /m\x01x HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request_line(garbage), Err(RequestError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    #[tokio::test]
    async fn reads_the_head_up_to_the_blank_line() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for part in [
                &b"GET /metr"[..],
                b"ics HTTP/1.1\r\nHost: a\r",
                b"\n\r\nBODY",
            ] {
                client.write_all(part).await.unwrap();
            }
            client
        });
        let head = read_head(&mut server, 1024, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(head, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(format!("GET /{} HTTP/1.1\r\n", "a".repeat(10_000)).as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_head(&mut server, MAX_REQUEST_BYTES, Duration::from_secs(1)).await,
            Err(RequestError::TooLarge)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_clients_time_out_even_when_they_trickle() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                if client.write_all(b"X").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let started = tokio::time::Instant::now();
        assert_eq!(
            read_head(&mut server, MAX_REQUEST_BYTES, READ_TIMEOUT).await,
            Err(RequestError::Timeout)
        );
        assert_eq!(started.elapsed(), READ_TIMEOUT);
        drop(server);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn closed_and_truncated_connections() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert_eq!(
            read_head(&mut server, 1024, Duration::from_secs(1)).await,
            Err(RequestError::Closed)
        );
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"GET /healthz HTTP/1.0\r\n")
            .await
            .unwrap();
        drop(client);
        let head = read_head(&mut server, 1024, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            parse_request_line(&head),
            Ok(line("GET", "/healthz")),
            "a request line without the blank line is still answered"
        );
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    fn status_of(response: &str) -> &str {
        response.split(' ').nth(1).unwrap_or("")
    }

    #[tokio::test]
    async fn serves_the_endpoints() {
        let stats = Arc::new(WorkerStats::default());
        let health = Arc::new(Health::new(
            stats.clone(),
            Arc::new(Observer::default()),
            Duration::from_secs(60),
            "9.9.9",
        ));
        let server = HttpServer::bind("127.0.0.1:0", health).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = exchange(addr, get("/healthz").as_bytes()).await;
        assert_eq!(status_of(&r), "200", "{r}");
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.contains("\"status\":\"ok\""));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));

        let r = exchange(addr, get("/readyz").as_bytes()).await;
        assert_eq!(status_of(&r), "503", "no receive yet: {r}");
        stats.record_receive(true);
        let r = exchange(addr, get("/readyz").as_bytes()).await;
        assert_eq!(status_of(&r), "200", "{r}");

        let r = exchange(addr, get("/metrics").as_bytes()).await;
        assert_eq!(status_of(&r), "200");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("invite_worker_build_info{version=\"9.9.9\"} 1\n"));

        let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_of(&r), "200");
        assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");

        assert_eq!(
            status_of(&exchange(addr, get("/nope").as_bytes()).await),
            "404"
        );
        let r = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_of(&r), "405");
        assert!(r.contains("Allow: GET, HEAD\r\n"));
        assert_eq!(
            status_of(&exchange(addr, b"\x00\x01garbage\r\n\r\n").await),
            "400"
        );
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        assert_eq!(status_of(&exchange(addr, huge.as_bytes()).await), "431");
        // A client that connects and leaves is no trouble.
        drop(TcpStream::connect(addr).await.unwrap());
        assert_eq!(
            status_of(&exchange(addr, get("/healthz").as_bytes()).await),
            "200"
        );
    }
}
