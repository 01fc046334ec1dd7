//! The composition root: one place that turns a config into a running
//! gateway, used by `tollgate serve` and by every test harness.
//!
//! [`Gateway::open`] (or [`Gateway::builder`] to inject a clock, a usage sink
//! or an already-open store) opens the store, seeds the config's workspaces
//! and wires every subsystem into the shared [`App`]. Serving then runs the
//! background loops on one [`Tasks`] set and stops them in order at shutdown:
//!
//! 1. the signal: `/readyz` turns 503 and the event drain finishes the batch
//!    it is writing;
//! 2. the listeners drain their connections (`server::drain`);
//! 3. what the drained requests left is written: keys' last use, the
//!    ledger's settles, the events still queued;
//! 4. the loops are cancelled and the work in hand (a webhook delivery, a
//!    spill) gets the rest of the grace period.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agents::{Agents, Catalog};
use crate::app::App;
use crate::auth::keys::IssuedKey;
use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::conversations::Conversations;
use crate::credits::Meter;
use crate::events::sink::EventSink;
use crate::events::Events;
use crate::metrics::MetricsSink;
use crate::responses::Responses;
use crate::store::Stores;
use crate::tasks::Tasks;
use crate::upstream::Provider;
use crate::usage::{LogUsageSink, UsageSink};

/// How long shutdown waits for the event drain's batch in progress, and for
/// background work at the very end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("store: {0}")]
    Seed(#[from] crate::admin::AdminError),
    #[error("{0}")]
    Provider(String),
}

/// What [`Gateway::open`] wires, with the parts a test may replace.
pub struct Builder {
    config: Config,
    clock: Arc<dyn Clock>,
    usage: Arc<dyn UsageSink>,
    stores: Option<Stores>,
    source: Option<crate::reload::Source>,
}

impl Builder {
    /// The calendar clock of credits, events and reservations.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Builder {
        self.clock = clock;
        self
    }

    /// Where usage records go after the event sink has seen them (a log
    /// line by default; a test's recorder).
    pub fn usage_sink(mut self, usage: Arc<dyn UsageSink>) -> Builder {
        self.usage = usage;
        self
    }

    /// An already-open store instead of the config's (a test that also
    /// reads or stops it).
    pub fn stores(mut self, stores: Stores) -> Builder {
        self.stores = Some(stores);
        self
    }

    /// Where a reload reads the config (by default the file the config
    /// came from, with no listen override).
    pub fn reload_source(mut self, source: crate::reload::Source) -> Builder {
        self.source = Some(source);
        self
    }

    /// Opens everything. Call on the runtime that lives as long as the
    /// gateway: the store's connections and the background tasks run there.
    pub async fn open(self) -> Result<Gateway, OpenError> {
        let Builder { config, clock, usage, stores, source } = self;
        let source = source.unwrap_or_else(|| crate::reload::Source::of(&config));
        let stores = match stores {
            Some(stores) => stores,
            None => Stores::open(&config.store).await?,
        };
        let seeded = crate::admin::seed_workspaces(&stores, &config).await?;
        if !seeded.is_empty() {
            tracing::info!(workspaces = ?seeded, "created the config's workspaces in the store");
        }
        let tasks = Tasks::on_current_runtime();
        let meter = Arc::new(Meter::open(&stores, &config, clock.clone(), &tasks));
        let schedules = crate::schedules::Schedules::open(&stores, clock.clone(), &config.schedules);
        let events = Arc::new(Events::open(&stores, &config, clock, &tasks).await?);
        let mut providers = HashMap::new();
        for (name, provider) in &config.providers {
            let provider = Provider::from_config(name, provider, config.server.workers).map_err(OpenError::Provider)?;
            providers.insert(name.clone(), Arc::new(provider));
        }
        let auth = Authenticator::new(&config.keys, config.store.key_cache_ttl)
            .with_stale_if_error(config.store.key_stale_if_error)
            .with_store(stores.keys.clone());
        let responses = Responses::open(&stores, &config.responses);
        let conversations = Conversations::open(&stores, responses.store.clone(), &config.responses, &tasks);
        let mut metrics = crate::metrics::Metrics::new(config.metrics.enabled);
        metrics.watch_store(stores.stats().clone());
        let metrics = Arc::new(metrics);
        let app = App {
            server: config.server.clone(),
            config: arc_swap::ArcSwap::from_pointee(config.clone()),
            reload_source: source,
            tls: arc_swap::ArcSwapOption::new(config.server.tls.as_ref().map(|t| t.server.clone())),
            cors: arc_swap::ArcSwapOption::new(config.cors.layer.clone().map(Arc::new)),
            agents: Agents::new(
                Catalog::new(&config, &providers, None),
                crate::agents::store::open(&stores),
                config.store.key_cache_ttl,
            ),
            auth,
            responses,
            conversations,
            schedules,
            stores,
            plans: arc_swap::ArcSwap::from_pointee(config.plans.clone()),
            usage: Arc::new(EventSink::new(Arc::new(MetricsSink::new(metrics.clone(), usage)), events.clone())),
            metrics,
            metrics_config: arc_swap::ArcSwap::from_pointee(config.metrics.clone()),
            meter,
            events,
            connections: crate::server::Connections::new(config.server.max_connections),
            drain: crate::server::Drain::default(),
            request_ids: Default::default(),
        };
        Ok(Gateway { app: Arc::new(app), config, tasks })
    }
}

/// A gateway, opened and ready to serve.
pub struct Gateway {
    app: Arc<App>,
    config: Config,
    tasks: Tasks,
}

impl Gateway {
    pub fn builder(config: Config) -> Builder {
        Builder { config, clock: Arc::new(SystemClock), usage: Arc::new(LogUsageSink), stores: None, source: None }
    }

    /// [`Gateway::builder`] with nothing replaced.
    pub async fn open(config: Config) -> Result<Gateway, OpenError> {
        Gateway::builder(config).open().await
    }

    /// The shared state every handler reads.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The background task set (for tests that wait on it).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// On a store's first start, creates the admin workspace and, unless the
    /// config has an admin key, issues one (returned once, to be shown once).
    pub async fn bootstrap_admin(&self) -> Result<Option<IssuedKey>, OpenError> {
        Ok(crate::admin::bootstrap_admin(&self.app.stores, &self.config).await?)
    }

    /// Serves on one listener on the current runtime until `shutdown`
    /// resolves, then stops in the order of the module doc (tests, embedding).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let background = self.start_background();
        let (begin, begun) = watch::channel(false);
        let signal = async {
            shutdown.await;
            let _ = begin.send(true);
        };
        let serving = crate::server::serve(listener, self.app.clone(), async {
            let mut begun = begun.clone();
            let _ = begun.wait_for(|b| *b).await;
        });
        let (served, ()) = tokio::join!(serving, async {
            signal.await;
            background.stop_event_drain().await;
        });
        self.finish().await;
        served
    }

    /// Thread-per-core serving (`tollgate serve`): one worker per listener,
    /// the background loops on `control` (the calling thread's runtime),
    /// until `shutdown` resolves or a worker fails.
    pub fn run(
        self,
        control: tokio::runtime::Runtime,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let app = self.app.clone();
        let mut workers = crate::runtime::Workers::start(listeners, move |listener, stopped| {
            crate::server::serve(listener, app.clone(), stopped)
        })?;
        control.block_on(async {
            let background = self.start_background();
            self.reload_on_sighup();
            tokio::select! {
                _ = shutdown => {}
                _ = workers.exited() => tracing::error!("a worker stopped; shutting down"),
            }
            background.stop_event_drain().await;
            // Joined off this thread, so the control runtime keeps driving
            // the store's connections while the workers drain their requests.
            let served = tokio::task::spawn_blocking(move || workers.stop_and_join())
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("joining the workers panicked")));
            self.finish().await;
            served
        })
    }

    /// SIGHUP reloads the config (`tollgate serve` only: a test process
    /// holds many gateways and reloads each through its admin route).
    fn reload_on_sighup(&self) {
        #[cfg(unix)]
        {
            let app = self.app.clone();
            self.tasks.spawn_loop("reload on SIGHUP", async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                    return tracing::warn!("cannot listen for SIGHUP; reload through the admin route");
                };
                while hangups.recv().await.is_some() {
                    // The verdict is logged by `reload`.
                    let _ = app.reload();
                }
            });
        }
    }

    /// Starts the loops; returns the handle that stops the event drain.
    fn start_background(&self) -> Background {
        let app = &self.app;
        let tasks = &self.tasks;
        let auth = app.clone();
        tasks.spawn_loop("key last-used flush", async move {
            let mut every = tokio::time::interval(crate::auth::LAST_USED_FLUSH);
            loop {
                every.tick().await;
                auth.auth.flush_last_used().await;
            }
        });
        let meter = app.meter.clone();
        tasks.spawn_loop("credit ledger upkeep", async move { crate::credits::upkeep(&meter).await });
        // Expired stored responses leave the embedded file (Redis expires its own).
        let store = app.responses.store.clone();
        tasks.spawn_loop("stored-response pruner", crate::responses::run_pruner(store, crate::responses::PRUNE_EVERY));
        // Expired tasks, notes and threads leave the embedded file too.
        let records = app.schedules.records.clone();
        tasks.spawn_loop(
            "record pruner",
            crate::tasks::every(crate::responses::PRUNE_EVERY, "pruned expired records", move || {
                let records = records.clone();
                async move { records.prune(crate::store::now()).await }
            }),
        );
        if app.schedules.config.run {
            tasks.spawn_loop("scheduler", crate::scheduler::run_loop(app.clone(), tasks.clone()));
        }
        let (stop, stopped) = watch::channel(false);
        let run = crate::events::run(app.events.clone(), app.meter.clone(), stopped);
        let cancelled = tasks.clone();
        let eventing = tasks.spawn(async move {
            tokio::select! {
                () = run => {}
                () = cancelled.stopping() => {}
            }
        });
        Background { stop, eventing }
    }

    /// Writes what the drained requests left, then stops the loops.
    async fn finish(&self) {
        let app = &self.app;
        app.auth.flush_last_used().await;
        crate::credits::final_flush(&app.meter).await;
        // Events of the drained requests, into the log and the delivery queue
        // (delivered by the next start, or another replica).
        app.events.bus.flush(STOP_GRACE).await;
        let stats = &app.events.bus.stats;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            emitted = load(&stats.emitted),
            spilled = load(&stats.spilled),
            stored = load(&stats.stored),
            "events at shutdown"
        );
        self.tasks.shut_down(STOP_GRACE).await;
    }
}

/// The running event drain, stopped first at shutdown.
struct Background {
    stop: watch::Sender<bool>,
    eventing: tokio::task::JoinHandle<()>,
}

impl Background {
    /// The drain finishes the batch it is writing (never cancelled
    /// mid-write); what is still queued is written by [`Gateway::finish`].
    async fn stop_event_drain(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, self.eventing).await.is_err() {
            tracing::error!("the event drain did not stop within {STOP_GRACE:?}");
        }
    }
}
