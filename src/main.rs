//! The `tollgate` command line: serve, check-config, hash-key.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use tollgate::app::App;
use tollgate::config::{Config, ConfigError, ProviderConfig, StoreBackend};
use tollgate::store::Stores;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "An OpenAI-compatible gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file. Default: $TOLLGATE_CONFIG, else ./config/tollgate.toml,
        /// else the compiled-in default config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address; overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a config and print a summary; exit 1 with the reason if invalid.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the SHA-256 of a key, for `[[keys]] sha256 = ...`. Reads the key
    /// from stdin when not given (keeps it out of shell history).
    HashKey { key: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => match load(config.as_deref()) {
            Ok(config) => serve(config, listen),
            Err(e) => fail(&e),
        },
        Command::CheckConfig { config } => match load(config.as_deref()) {
            Ok(config) => {
                summary(&config);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::HashKey { key } => {
            let key = key.unwrap_or_else(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_to_string(&mut s);
                s.trim().to_owned()
            });
            if key.is_empty() {
                eprintln!("error: no key given");
                return ExitCode::FAILURE;
            }
            println!("{}", hex::encode(tollgate::auth::hash_key(key.as_bytes())));
            ExitCode::SUCCESS
        }
    }
}

fn fail(e: &ConfigError) -> ExitCode {
    eprintln!("error: invalid config: {e}");
    ExitCode::FAILURE
}

fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    if let Some(path) = path {
        return Config::from_file(path);
    }
    if let Some(path) = std::env::var_os("TOLLGATE_CONFIG") {
        return Config::from_file(Path::new(&path));
    }
    let local = Path::new("config/tollgate.toml");
    if local.exists() {
        Config::from_file(local)
    } else {
        Config::embedded_default()
    }
}

fn summary(c: &Config) {
    println!("config {} is valid", c.origin);
    println!("  listen: {} ({} workers)", c.server.listen, c.server.workers);
    for (name, p) in &c.providers {
        match p {
            ProviderConfig::OpenAi(o) => println!("  provider {name}: openai at {}", o.base_url),
            ProviderConfig::Mock(_) => println!("  provider {name}: built-in mock"),
        }
    }
    for (id, m) in &c.models {
        println!("  model {id} -> {}/{}", m.provider, m.upstream_model);
    }
    for (id, a) in &c.agents {
        println!("  agent {id} -> {}/{}", a.provider, a.upstream_model);
    }
    println!("  static keys: {}", c.keys.len());
    match &c.store.backend {
        StoreBackend::Embedded { path } => println!("  store: embedded at {}", path.display()),
        StoreBackend::Redis { urls, cluster, .. } => {
            let shown: Vec<String> = urls.iter().map(|u| without_credentials(u)).collect();
            println!("  store: redis{} at {}", if *cluster { " cluster" } else { "" }, shown.join(", "))
        }
    }
}

/// `redis://user:secret@host` → `redis://*****@host`: summaries never show secrets.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}*****{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn serve(mut config: Config, listen: Option<SocketAddr>) -> ExitCode {
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let _log = tollgate::telemetry::init(&config.log);
    let result = (|| {
        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let stores = control.block_on(Stores::open(&config.store)).map_err(|e| format!("store: {e}"))?;
        let app = Arc::new(App::new(&config)?.with_key_store(stores.keys));
        let workers = config.server.workers;
        let listeners = tollgate::runtime::bind(config.server.listen, workers)
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, workers, config = %config.origin, "tollgate listening");
        tollgate::runtime::run(control, app, listeners, shutdown_signal()).map_err(|e| e.to_string())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
