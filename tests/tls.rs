//! TLS on the listener (`server.tls_cert` / `server.tls_key`) with a
//! certificate from a test CA generated here (rcgen): a client trusting that
//! CA gets HTTP/1.1 or h2 by ALPN, the `openai` Python SDK works over it
//! (`SSL_CERT_FILE`), a client that does not trust it is refused, plain HTTP
//! to the TLS port gets nothing, and a bad key or path is a config error.

mod common;
#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Pki {
    dir: PathBuf,
    ca: String,
}

/// A CA, and a certificate for `localhost` it signed, written as PEM files.
fn pki(name: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("tollgate-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "tollgate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let leaf = CertificateParams::new(names).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    Pki { dir, ca: ca.pem() }
}

fn tls_toml(dir: &Path, upstream: &str) -> String {
    let base = config_toml(&Settings::default(), upstream);
    let tls =
        format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", dir.join("cert.pem").display(), dir.join("key.pem").display());
    // Into the [server] section the base config opens.
    base.replacen("[server]\n", &format!("[server]\n{tls}"), 1)
}

/// A client that trusts the test CA and finds `localhost` at `addr`.
fn trusting(pki: &Pki, addr: std::net::SocketAddr) -> reqwest::Client {
    trusting_builder(pki, addr).build().unwrap()
}

fn trusting_builder(pki: &Pki, addr: std::net::SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .resolve("localhost", addr)
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_over_tls_with_alpn() {
    let pki = pki("serve");
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&tls_toml(&pki.dir, &mock.base_url())).await;
    let url = format!("https://localhost:{}/v1/chat/completions", gw.addr.port());

    let client = trusting(&pki, gw.addr);
    let response = within("chat over TLS", client.post(&url).bearer_auth(KEY).json(&chat_body(AGENT, "hi")).send())
        .await
        .expect("the TLS handshake and the request succeed");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN picks h2");
    assert_eq!(json_of(response).await["model"], AGENT);

    let http1 = trusting_builder(&pki, gw.addr).http1_only().build().unwrap();
    let response = within(
        "a stream over TLS, HTTP/1.1",
        http1.post(&url).bearer_auth(KEY).json(&chat_stream_body(AGENT, "a b")).send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_11));
    assert!(within("the stream", response.text()).await.unwrap().contains("data: [DONE]"));

    // A client without the CA: the handshake fails, nothing is served.
    let stranger = reqwest::Client::builder().no_proxy().resolve("localhost", gw.addr).build().unwrap();
    assert!(within("untrusted", stranger.get(&url).send()).await.is_err(), "an unknown CA is refused");
    // Plain HTTP to the TLS port: no HTTP answer.
    let plain = within("plain", common::client().get(format!("http://{}/healthz", gw.addr)).send()).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP is not served on a TLS port");
    // And the gateway still serves.
    let health = within("health", client.get(format!("https://localhost:{}/healthz", gw.addr.port())).send()).await;
    assert_eq!(health.unwrap().status(), 200);
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_over_tls_with_a_custom_ca() {
    if let Some(reason) = tools::python_lacks("openai") {
        return tools::skip("the openai SDK over TLS", &reason);
    }
    let pki = pki("sdk");
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&tls_toml(&pki.dir, &mock.base_url())).await;
    let base = format!("https://localhost:{}/v1", gw.addr.port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_tls.py");
    let ca = pki.dir.join("ca.pem");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tools::python())
            .arg(script)
            .arg(&base)
            .arg(KEY)
            .env("SSL_CERT_FILE", ca)
            .env("NO_PROXY", "*")
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// A gateway whose agent `relay` calls `upstream` (an OpenAI-compatible
/// base URL) as its `AGENT`, with `KEY`, trusting `ca_file` when given.
fn relay_toml(upstream: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file.map_or(String::new(), |p| format!("ca_file = \"{}\"\n", p.display()));
    let key_hash = hex::encode(tollgate::auth::hash_key(KEY.as_bytes()));
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[providers.secure]\nkind = \"openai\"\nbase_url = \"{upstream}\"\n\
         api_key = \"{KEY}\"\nmax_retries = 0\n{ca}\n[agents.relay]\nprovider = \"secure\"\nupstream_model = \"{AGENT}\"\n\n\
         [[keys]]\nname = \"t\"\nsha256 = \"{key_hash}\"\n"
    )
}

#[tokio::test]
async fn an_upstream_behind_a_private_ca_is_reached_with_ca_file_and_refused_without() {
    // The upstream: a TLS gateway whose certificate the test CA signed.
    let pki = pki("upstream");
    let mock = MockUpstream::start().await;
    let upstream = Gateway::start(&tls_toml(&pki.dir, &mock.base_url())).await;
    let base = format!("https://127.0.0.1:{}/v1", upstream.addr.port());

    let trusting = Gateway::start(&relay_toml(&base, Some(&pki.dir.join("ca.pem")))).await;
    let send = |addr: std::net::SocketAddr| {
        common::client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("relay", "through two gateways"))
            .send()
    };
    let response = within("relay over TLS", send(trusting.addr)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["model"], "relay", "{body}");

    // Without the CA the handshake to the upstream fails: a 502, not a hang.
    let untrusting = Gateway::start(&relay_toml(&base, None)).await;
    let response = within("relay without the CA", send(untrusting.addr)).await.unwrap();
    assert_eq!(response.status(), 502, "{}", response.text().await.unwrap_or_default());

    // A file with no certificate is a config error naming the field.
    std::fs::write(pki.dir.join("empty.pem"), "").unwrap();
    let e = tollgate::config::Config::from_toml(&relay_toml(&base, Some(&pki.dir.join("empty.pem"))), "t.toml")
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers.secure.ca_file"), "{e}");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[test]
fn a_missing_file_or_a_key_that_does_not_fit_is_a_config_error() {
    let pki = pki("bad");
    let other = self::pki("other");
    let load = |toml: String| tollgate::config::Config::from_toml(&toml, "t.toml").map(drop).map_err(|e| e.to_string());
    let e = load(tls_toml(&pki.dir.join("nowhere"), "http://127.0.0.1:9")).unwrap_err();
    assert!(e.contains("server.tls_cert"), "{e}");
    // The certificate of one pair with the key of another.
    std::fs::copy(other.dir.join("key.pem"), pki.dir.join("key.pem")).unwrap();
    let e = load(tls_toml(&pki.dir, "http://127.0.0.1:9")).unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
    let base = config_toml(&Settings::default(), "http://127.0.0.1:9");
    let only_cert = base.replacen("[server]\n", "[server]\ntls_cert = \"/x.pem\"\n", 1);
    assert!(load(only_cert).unwrap_err().contains("server.tls_key"));
    for dir in [pki.dir, other.dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn a_reload_serves_a_renewed_certificate_to_new_connections() {
    let old = pki("reload-old");
    let renewed = pki("reload-new");
    let mock = MockUpstream::start().await;
    let admin = "tg_test_tls_reload_admin";
    let toml = format!(
        "{}{}\n[[keys]]\nname = \"admin\"\nsha256 = \"{}\"\nscope = \"admin\"\n",
        tls_toml(&old.dir, &mock.base_url()),
        scratch_store_toml(),
        sha256_hex(admin)
    );
    let path = old.dir.join("tollgate.toml");
    std::fs::write(&path, toml).unwrap();
    let config = tollgate::config::Config::from_file(&path).unwrap();
    let gw = Running::start(tollgate::gateway::Gateway::builder(config)).await;
    let url = |p: &str| format!("https://localhost:{}{p}", gw.addr.port());
    let before = trusting(&old, gw.addr);
    assert_eq!(before.get(url("/healthz")).send().await.unwrap().status(), 200);

    // The renewed pair replaces the files the config names, then a reload.
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(renewed.dir.join(file), old.dir.join(file)).unwrap();
    }
    let reload = before.post(url("/v1/admin/reload")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(reload.status(), 200, "{:?}", reload.text().await);

    let after = trusting(&renewed, gw.addr);
    let response = within("a handshake with the renewed certificate", after.get(url("/healthz")).send()).await;
    assert_eq!(response.unwrap().status(), 200);
    let stale = trusting(&old, gw.addr);
    assert!(within("the old CA", stale.get(url("/healthz")).send()).await.is_err(), "new handshakes get the new one");
    for dir in [&old.dir, &renewed.dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
