//! Every connection makes progress within a bound or is closed, and
//! `max_connections` bounds the whole process: real `tollgate serve`
//! processes with two workers (`SO_REUSEPORT` listeners), as in production.

mod common;
#[path = "support/served.rs"]
mod served;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::within;
use served::{serve_in, serve_in_under_ulimit, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEMO_KEY: &str = "tg_demo_key_change_me";
const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.toml");
/// Slack on top of a bound, for a slow, loaded test machine.
const SLACK: Duration = Duration::from_secs(4);

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The shipped config with two workers and `server` settings replaced.
async fn gateway(name: &str, replace: &[(&str, &str)]) -> Served {
    let dir = configured(name, replace);
    serve_in(&dir, &["--config", "tollgate.toml"], "tollgate").await
}

/// A temp dir with the shipped config, two workers and `replace` applied.
fn configured(name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(name);
    let mut config = std::fs::read_to_string(SHIPPED_CONFIG).unwrap().replace("# workers = 2", "workers = 2");
    for (from, to) in replace {
        assert!(config.contains(from), "the shipped config has {from:?}");
        config = config.replace(from, to);
    }
    std::fs::write(dir.join("tollgate.toml"), config).unwrap();
    dir
}

fn addr(served: &Served) -> String {
    served.base.trim_start_matches("http://").to_owned()
}

/// Waits (bounded) for the server to close `stream`; returns how long it took.
async fn closed_by_server(stream: &mut TcpStream, within_: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let deadline = started + within_;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // an h2 GOAWAY or settings frame; keep reading
        }
    }
}

async fn healthz(served: &Served) -> reqwest::StatusCode {
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let request = fresh.get(format!("{}/healthz", served.base)).timeout(Duration::from_secs(5)).send();
    request.await.expect("/healthz answers").status()
}

#[tokio::test]
async fn silent_sockets_are_closed_within_the_bound_and_healthz_answers_meanwhile() {
    let served = gateway(
        "silent",
        &[
            ("max_connections = 10000", "max_connections = 20"),
            ("header_read_timeout_ms = 10000", "header_read_timeout_ms = 1000"),
        ],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push((Instant::now(), TcpStream::connect(addr(&served)).await.unwrap()));
    }
    // Three times the process's bound of silent sockets are open: a real
    // client still gets through (it pushes out the stalest idle one).
    for _ in 0..3 {
        assert_eq!(healthz(&served).await, 200, "log:\n{}", served.log());
    }
    for (opened, stream) in &mut silent {
        let bound = Duration::from_secs(1) + SLACK;
        let left = bound.saturating_sub(opened.elapsed());
        assert!(closed_by_server(stream, left).await.is_some(), "a silent socket outlived {bound:?}");
    }
    assert_eq!(healthz(&served).await, 200);
}

#[tokio::test]
async fn partial_prefaces_and_slow_headers_are_closed_within_the_header_bound() {
    let served = gateway("partial", &[("header_read_timeout_ms = 10000", "header_read_timeout_ms = 1000")]).await;
    let bound = Duration::from_secs(1) + SLACK;
    let sends: [&[u8]; 4] = [
        b"P",                                    // one byte: the version sniff waits for more
        b"PRI * HTTP/2.0\r\n",                   // half the h2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",     // the whole preface, then no SETTINGS
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n", // headers never finished
    ];
    for bytes in sends {
        let mut stream = TcpStream::connect(addr(&served)).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let took = closed_by_server(&mut stream, bound).await;
        assert!(took.is_some(), "{:?} held its connection past {bound:?}", String::from_utf8_lossy(bytes));
    }
    // Headers trickled a byte at a time: progress, but never a request.
    let mut stream = TcpStream::connect(addr(&served)).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() || started.elapsed() > bound {
            closed = stream.write_all(b"x").await.is_err() || closed_by_server(&mut stream, SLACK).await.is_some();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "a slowloris client kept its connection past {bound:?}");
    assert_eq!(healthz(&served).await, 200);
}

#[tokio::test]
async fn idle_keep_alive_and_idle_h2_connections_are_closed_after_the_idle_bound() {
    let served = gateway("idle", &[("idle_timeout_ms = 60000", "idle_timeout_ms = 1000")]).await;
    let bound = Duration::from_secs(1) + SLACK;

    // HTTP/1.1 keep-alive: one request, then silence.
    let mut stream = TcpStream::connect(addr(&served)).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let response = common::raw_read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    assert!(closed_by_server(&mut stream, bound).await.is_some(), "an idle keep-alive connection stayed open");

    // h2 with keep-alive pings every 100 ms: the pings are answered, but an
    // idle connection is closed all the same (GOAWAY, then EOF).
    let stream = TcpStream::connect(addr(&served)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_while_idle(true)
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("{}/healthz", served.base)).body(http_body_util::Empty::new()).unwrap();
    let response = within("an h2 response", sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let ended = tokio::time::timeout(bound, connection).await;
    assert!(ended.is_ok(), "an idle h2 connection answering pings stayed open past {bound:?}; log:\n{}", served.log());
}

#[tokio::test]
async fn max_connections_bounds_the_whole_process_not_each_worker() {
    let served = gateway(
        "bound",
        &[
            ("max_connections = 10000", "max_connections = 4"),
            ("header_read_timeout_ms = 10000", "header_read_timeout_ms = 8000"),
            ("chunk_delay_ms = 40", "chunk_delay_ms = 1000"),
        ],
    )
    .await;
    // Four connections busy with slow streams (8 chunks, a second apart):
    // none of them is idle, so none can be pushed out.
    let body = serde_json::json!({"model": "demo", "stream": true, "messages": [{"role": "user", "content": "slow"}]});
    let mut streams = Vec::new();
    for _ in 0..4 {
        let own = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let response = own.post(format!("{}/v1/chat/completions", served.base)).bearer_auth(DEMO_KEY).json(&body);
        let response = within("a stream's headers", response.send()).await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push((own, response));
    }
    // With a bound per worker (2 × 4 slots) this would be answered at once.
    let waiting = tokio::spawn({
        let base = served.base.clone();
        async move {
            let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            fresh.get(format!("{base}/healthz")).timeout(Duration::from_secs(30)).send().await.map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "a fifth connection was served while four held the process's four slots");
    drop(streams.pop());
    let status = within("the waiting connection, once a slot is free", waiting).await.unwrap();
    assert_eq!(status.expect("answered").as_u16(), 200);
}

/// `Max open files` (soft, hard) of a running process.
fn open_files_limits(served: &Served) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", served.child.0.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[tokio::test]
async fn serve_raises_its_soft_open_files_limit_to_the_hard_one() {
    let dir = configured("nofile", &[("max_connections = 10000", "max_connections = 100")]);
    let served = serve_in_under_ulimit(&dir, &["--config", "tollgate.toml"], "tollgate", &["-Sn 256"]).await;
    let (soft, hard) = open_files_limits(&served);
    assert!(hard > 456, "this test needs a hard open-files limit above 456, not {hard}");
    // A soft limit of 256 would make connection 257 an EMFILE at accept.
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    assert!(!served.log().contains("open files limit is below"), "log:\n{}", served.log());
}

#[tokio::test]
async fn serve_warns_when_the_hard_limit_cannot_hold_max_connections() {
    let dir = configured("nofile-low", &[("max_connections = 10000", "max_connections = 1000")]);
    // 1000 relayed connections can need 2256 descriptors; the hard limit is 600.
    let served = serve_in_under_ulimit(&dir, &["--config", "tollgate.toml"], "tollgate", &["-Sn 300", "-Hn 600"]).await;
    assert_eq!(open_files_limits(&served), (600, 600));
    let log = served.log();
    let warning =
        log.lines().find(|l| l.contains("open files limit is below")).unwrap_or_else(|| panic!("log:\n{log}"));
    for field in ["limit=600", "wanted=2256", "max_connections=1000"] {
        assert!(warning.contains(field), "{field} in {warning}");
    }
    // It still serves: the warning is advice, not a refusal.
    let status = reqwest::get(format!("{}/healthz", served.base)).await.unwrap().status();
    assert_eq!(status, 200);
}
