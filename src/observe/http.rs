//! The HTTP/1.1 listener for `/healthz`, `/readyz` and `/metrics`, served by hyper: one request
//! per connection (`Connection: close`), no bodies, no TLS: bind it to loopback or a private
//! interface (`http.listen = "0.0.0.0:9090"` exposes it to every network the host is on).
//!
//! It cannot be starved by clients that connect and say nothing, or trickle their request:
//! each has [`HEADER_READ_TIMEOUT`] to send its request head and [`CONNECTION_DEADLINE`] in all,
//! up to [`MAX_CONNECTIONS`] are served at once, and past that new connections wait in the
//! listen backlog until a slot frees (answered late, never closed unanswered).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::health::{Health, Verdict};
use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// The largest request head accepted (hyper's smallest buffer); a longer one gets 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// The time a client has to send its whole request head; a slower one is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a connection is kept, however slowly its client reads the answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog for a free slot.
pub const MAX_CONNECTIONS: usize = 512;

/// How many connections the listener serves at once and how long each may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub connection_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            connection_deadline: CONNECTION_DEADLINE,
        }
    }
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
        Self::bind_with(listen, health, Limits::default()).await
    }

    /// [`HttpServer::bind`] with other limits.
    pub async fn bind_with(listen: &str, health: Arc<Health>, limits: Limits) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, health, limits));
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

async fn accept_loop(listener: TcpListener, health: Arc<Health>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_REQUEST_BYTES);
    loop {
        // A slot first, then the connection: past the limit, clients wait in the backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (health, http) = (health.clone(), http.clone());
        tokio::spawn(async move {
            serve_connection(stream, health, &http, limits.connection_deadline).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    health: Arc<Health>,
    http: &http1::Builder,
    deadline: Duration,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = route(&health, request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    match tokio::time::timeout(
        deadline,
        http.serve_connection(TokioIo::new(stream), service),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
        Err(_) => tracing::debug!("HTTP connection closed at its deadline"),
    }
}

/// The answer to a request.
fn route(health: &Health, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let json = |v: Verdict| {
        let status = if v.ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        response(status, "application/json", format!("{}\n", v.body))
    };
    match path {
        "/healthz" => json(health.liveness()),
        "/readyz" => json(health.readiness()),
        "/metrics" => response(StatusCode::OK, METRICS_CONTENT_TYPE, health.metrics()),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observer;
    use crate::worker::WorkerStats;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    fn health(stats: &Arc<WorkerStats>) -> Arc<Health> {
        Arc::new(Health::new(
            stats.clone(),
            Arc::new(Observer::default()),
            Duration::from_secs(60),
            "9.9.9",
        ))
    }

    #[tokio::test]
    async fn serves_the_endpoints() {
        let stats = Arc::new(WorkerStats::default());
        let health = health(&stats);
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
        assert!(r.contains(&format!("Content-Type: {METRICS_CONTENT_TYPE}\r\n")));
        assert!(r.contains("invite_worker_build_info{version=\"9.9.9\"} 1\n"));
        let r = exchange(addr, get("/healthz?verbose=1").as_bytes()).await;
        assert_eq!(status_of(&r), "200", "the query string is ignored: {r}");

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

    /// Opens `n` connections that send nothing, and `n` that trickle a request head one byte
    /// every 100 ms, and keeps them open until the returned task is aborted.
    async fn hog(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, JoinHandle<()>) {
        let mut idle = Vec::with_capacity(n);
        let mut slow = Vec::with_capacity(n);
        for _ in 0..n {
            idle.push(TcpStream::connect(addr).await.unwrap());
            slow.push(TcpStream::connect(addr).await.unwrap());
        }
        let trickle = tokio::spawn(async move {
            let head = b"GET /metrics HTTP/1.1\r\nX-Slow: ".repeat(100);
            for byte in head {
                for stream in slow.iter_mut() {
                    let _ = stream.write_all(&[byte]).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (idle, trickle)
    }

    /// A liveness probe answers within a second while 200 other connections hold the listener
    /// (the kubelet's default probe timeout is one second).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_answers_while_200_connections_are_idle_or_slow() {
        let stats = Arc::new(WorkerStats::default());
        let server = HttpServer::bind("127.0.0.1:0", health(&stats))
            .await
            .unwrap();
        let addr = server.local_addr();
        let (idle, trickle) = hog(addr, 100).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
            )
            .await
            .expect("an answer within 5 s");
            let took = started.elapsed();
            assert_eq!(status_of(&r), "200", "{r}");
            slowest = slowest.max(took);
        }
        println!("/healthz with 200 idle or slow connections open: slowest of 5 took {slowest:?}");
        assert!(slowest < Duration::from_secs(1), "took {slowest:?}");
        trickle.abort();
        drop(idle);
    }

    /// Past the connection limit, a client waits for a slot (freed here by the header-read
    /// timeout of an idle connection) and is answered; it is never closed unanswered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_limit_wait_for_a_slot() {
        let stats = Arc::new(WorkerStats::default());
        let limits = Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(300),
            connection_deadline: Duration::from_secs(5),
        };
        let server = HttpServer::bind_with("127.0.0.1:0", health(&stats), limits)
            .await
            .unwrap();
        let addr = server.local_addr();
        let idle = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        )
        .await
        .expect("an answer within 5 s");
        assert_eq!(status_of(&r), "200", "{r}");
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "it waited for a slot: {:?}",
            started.elapsed()
        );
        // The idle connections were closed by the header-read timeout.
        for mut stream in idle {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf).await;
        }
    }
}
