//! The `tollgate` command line: serve, check-config, hash-key.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tollgate::admin;
use tollgate::auth::keys::NewKey;
use tollgate::config::{Config, ConfigError, ProviderConfig, StoreBackend};
use tollgate::gateway::Gateway;
use tollgate::scope::Scope;
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
    /// Manage API keys in the configured store.
    Keys {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Reload a running gateway's config (through its admin route; SIGHUP to
    /// the process does the same). Prints what needs a restart, or why the
    /// new config was refused.
    Reload {
        /// The gateway's URL. Default: http(s)://<server.listen of the config>.
        #[arg(long)]
        url: Option<String>,
        /// An admin key.
        #[arg(long, env = "TOLLGATE_ADMIN_KEY", hide_env_values = true)]
        key: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage workspaces in the configured store.
    Workspaces {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key; its plaintext is printed once, on stdout.
    Create {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        name: String,
        /// chat, webhook, full or admin.
        #[arg(long, default_value = "chat", value_parser = parse_scope)]
        scope: Scope,
        /// Expiry as Unix seconds.
        #[arg(long)]
        expires_at: Option<i64>,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u32>,
        /// Comma-separated agents and model aliases the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
    },
    /// List a workspace's keys (never their plaintext or hash).
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Revoke a key by id (`key_...`).
    Revoke { id: String },
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "default")]
        plan: String,
        /// IANA time zone for the monthly credit refresh (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
    },
    List,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| format!("{s:?} is not one of chat, webhook, full, admin"))
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
        Command::Reload { url, key, config } => {
            let url = match url {
                Some(url) => url,
                None => match load(config.as_deref()) {
                    Ok(config) => tollgate::reload::remote::url_of(&config),
                    Err(e) => return fail(&e),
                },
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(tollgate::reload::remote::ask(&url, &key)))
            {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys { config, command } => operate(config.as_deref(), |stores, _| keys(stores, command)),
        Command::Workspaces { config, command } => {
            operate(config.as_deref(), |stores, config| workspaces(stores, config, command))
        }
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

/// Loads the config, opens its store and runs one operator command on it.
fn operate<F, Fut>(config: Option<&Path>, command: F) -> ExitCode
where
    F: FnOnce(Stores, Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let config = match load(config) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let stores = Stores::open(&config.store).await.map_err(|e| format!("store: {e}"))?;
        command(stores, config).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(stores: Stores, command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create { workspace, name, scope, expires_at, rpm, tpm, models } => {
            let new = NewKey { name, workspace, scope, expires_at, rpm, tpm, models };
            let issued = admin::create_key(&stores, new).await.map_err(|e| e.to_string())?;
            eprintln!(
                "created {} ({} scope) in workspace {}; the key is shown once, below — store it now:",
                issued.record.id,
                issued.record.scope.as_str(),
                issued.record.workspace
            );
            println!("{}", issued.plaintext.expose());
        }
        KeysCommand::List { workspace } => {
            let keys = admin::list_keys(&stores, &workspace).await.map_err(|e| e.to_string())?;
            println!(
                "{:<28}  {:<11}  {:<7}  {:<10}  {:<10}  name",
                "id", "prefix", "scope", "expires_at", "revoked_at"
            );
            for k in keys {
                let time = |t: Option<i64>| t.map_or("-".to_string(), |t| t.to_string());
                println!(
                    "{:<28}  {:<11}  {:<7}  {:<10}  {:<10}  {}",
                    k.id,
                    k.prefix,
                    k.scope.as_str(),
                    time(k.expires_at),
                    time(k.revoked_at),
                    k.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let record = admin::revoke_key(&stores, &id).await.map_err(|e| e.to_string())?;
            eprintln!("revoked {} ({}) in workspace {}", record.id, record.name, record.workspace);
        }
    }
    Ok(())
}

async fn workspaces(stores: Stores, config: Config, command: WorkspacesCommand) -> Result<(), String> {
    match command {
        WorkspacesCommand::Create { id, name, plan, time_zone } => {
            let (name, time_zone) = (name.as_deref(), time_zone.as_deref());
            let ws = admin::create_workspace(&stores, &config.plans, &id, name, &plan, time_zone)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("created workspace {} ({}, plan {})", ws.id, ws.name, ws.plan);
        }
        WorkspacesCommand::List => {
            let all = stores.workspaces.list_workspaces().await.map_err(|e| e.to_string())?;
            println!("{:<24}  {:<12}  name", "id", "plan");
            for ws in all {
                println!("{:<24}  {:<12}  {}", ws.id, ws.plan, ws.name);
            }
        }
    }
    Ok(())
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
        println!("  model {id} -> {}{}", targets_summary(&m.targets), price_summary(&m.price));
    }
    for (id, a) in &c.agents {
        println!("  agent {id} -> {}{}", targets_summary(&a.targets), price_summary(&a.price));
    }
    for (name, p) in &c.plans {
        let part = |label: &str, v: Option<u64>| v.map(|v| format!(" {label} {v}")).unwrap_or_default();
        let limit = |label: &str, v: Option<u32>| v.map(|v| format!(" {label} {v}")).unwrap_or_default();
        let credits = format!("{}{}", part("message", p.message_credits), part("integration", p.integration_credits));
        let limits = [("rpm", p.rpm), ("tpm", p.tpm), ("key_rpm", p.key_rpm), ("key_tpm", p.key_tpm)]
            .iter()
            .map(|(l, v)| limit(l, *v))
            .collect::<String>();
        let credits = if credits.is_empty() { " unmetered".to_owned() } else { format!(" credits/month{credits}") };
        let limits = if limits.is_empty() { " none".to_owned() } else { limits };
        println!("  plan {name}:{credits}; limits{limits}");
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

/// `openai/gpt-4o` for one target; `openai/gpt-4o (weight 3), vllm/llama (fallback)` for several.
fn targets_summary(targets: &[tollgate::config::TargetConfig]) -> String {
    let one = |t: &tollgate::config::TargetConfig| format!("{}/{}", t.provider, t.upstream_model);
    if let [only] = targets {
        return one(only);
    }
    let parts: Vec<String> = targets
        .iter()
        .map(|t| match t.weight {
            0 => format!("{} (fallback)", one(t)),
            w => format!("{} (weight {w})", one(t)),
        })
        .collect();
    parts.join(", ")
}

fn price_summary(p: &tollgate::config::Price) -> String {
    if p.is_free() {
        return String::new();
    }
    format!(" (µcredits: {}/request, {}/1K in, {}/1K out)", p.request, p.input_per_1k, p.output_per_1k)
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
    let _telemetry = tollgate::telemetry::init(&config.log, &config.tracing);
    let result = (|| {
        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let source = tollgate::reload::Source { listen, ..tollgate::reload::Source::of(&config) };
        let gateway =
            control.block_on(Gateway::builder(config).reload_source(source).open()).map_err(|e| e.to_string())?;
        if let Some(admin) = control.block_on(gateway.bootstrap_admin()).map_err(|e| e.to_string())? {
            // Straight to stderr, never through the log: the key must not be stored anywhere.
            // One write, so no log line from another thread lands between the notice and the key.
            let notice = format!(
                "tollgate: first start: created the admin key {} (workspace \"{}\"). It is shown once, here; \
                 store it now:\n{}\n",
                admin.record.id,
                tollgate::scope::ADMIN_WORKSPACE,
                admin.plaintext.expose()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), notice.as_bytes());
        }
        let config = gateway.config();
        match tollgate::runtime::raise_open_files_limit(config.server.max_connections) {
            Ok(files) if files.enough() => tracing::debug!(limit = files.limit, "open files limit"),
            Ok(files) => tracing::warn!(
                limit = files.limit,
                wanted = files.wanted,
                max_connections = config.server.max_connections,
                "the open files limit is below what server.max_connections can need (2 per connection + 256); \
                 raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
        }
        let workers = config.server.workers;
        let listeners = tollgate::runtime::bind(config.server.listen, workers)
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, workers, config = %config.origin, "tollgate listening");
        gateway.run(control, listeners, shutdown_signal()).map_err(|e| e.to_string())
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
