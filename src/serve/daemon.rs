//! The daemon of `cxpipe serve`: one [`Runtime`] serving every pipeline × tenant of a
//! configuration. It keeps one slot per pipeline × tenant (the generation serving new
//! items, the last reload error, the run in progress, the last run), starts runs on
//! schedule fires, webhook events, manual requests and deferred items falling due (never
//! two live runs of one slot), and stops cleanly: no new runs, items in flight given their
//! grace, the rest left in the ledger for the next start.
//!
//! Reloading lives in [`super::reload`], the HTTP face in [`super::host`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::http::TriggerError;
use super::metrics::Metrics;
use super::schedule::{Entry, FireKey, FireOutcome, FireSink, Misfire, Schedule, Scheduler};
use super::status::{LastRun, RunCounts};
use super::webhook::{EventIdSource, Verifier, WebhookSettings};
use crate::config::serve::ClusterMode;
use crate::ledger::Ledger;
use crate::runner::summary::Counters;
use crate::runner::{self, RunReport, StopSignal};
use crate::runtime::{Generation, Runtime, RuntimeError};
use crate::secret::Secret;

/// Why a run was started (logged, and on `/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Event,
    Manual,
    /// Unfinished items found at start, or deferred items falling due.
    Resume,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Event => "event",
            Trigger::Manual => "manual",
            Trigger::Resume => "resume",
        }
    }
}

/// A run in progress.
#[derive(Clone, Debug)]
pub(super) struct Running {
    pub started_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub stop: StopSignal,
    /// The run's live counters (for `/status`).
    pub counters: Arc<Counters>,
    /// Bytes the run's stores have committed, and how many of them `/metrics` has counted.
    pub bytes: Arc<AtomicU64>,
    pub bytes_reported: u64,
}

impl Running {
    /// Bytes committed since the last call.
    pub fn new_bytes(&mut self) -> u64 {
        let now = self.bytes.load(Ordering::Relaxed);
        let delta = now.saturating_sub(self.bytes_reported);
        self.bytes_reported = now;
        delta
    }
}

/// One pipeline × tenant.
pub(super) struct Slot {
    /// The generation serving new items (`None` until a compile succeeds).
    pub generation: Option<Arc<Generation>>,
    /// Tells a run in progress about a newer generation (its next items use it).
    pub live: watch::Sender<Option<Arc<Generation>>>,
    /// The script, resolved (the file a reload watches first).
    pub script: PathBuf,
    pub reload_error: Option<String>,
    pub running: Option<Running>,
    pub last: Option<LastRun>,
    /// Something arrived during the run in progress (an event, a manual request): run
    /// again when it ends.
    pub again: bool,
    pub enabled: bool,
    /// A wake is already set for this time (deferred items falling due).
    pub wake_at: Option<DateTime<Utc>>,
}

/// What the daemon serves from, replaced as a whole by a config reload.
pub(super) struct Served {
    pub runtime: Arc<Runtime>,
    pub verifiers: BTreeMap<String, Arc<Verifier>>,
    pub token: Option<Secret>,
    pub grace: Duration,
    /// How runs share items with other nodes; `None`: this node runs alone.
    pub cluster: Option<crate::runner::cluster::ClusterOptions>,
}

pub(super) struct Inner {
    pub config_path: PathBuf,
    pub ledger: Ledger,
    pub served: RwLock<Served>,
    pub slots: Mutex<BTreeMap<FireKey, Slot>>,
    pub metrics: Metrics,
    pub started_at: DateTime<Utc>,
    /// The last failed config reload, until one succeeds.
    pub config_error: Mutex<Option<String>>,
    /// Fired at shutdown: nothing new starts.
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub scheduler: Arc<Scheduler>,
    /// API counters already added to the metrics, per tenant (clients count in total).
    /// What each tenant × API family had done at the last scrape.
    pub api_seen: Mutex<BTreeMap<(String, String), crate::api::ApiStats>>,
    /// This node's name in the ledger's node registry (`host:pid`).
    pub node: String,
    /// Set by `cxpipe node drain`: no new run starts here; runs in progress stop taking
    /// items and hand the rest back.
    pub draining: std::sync::atomic::AtomicBool,
}

/// A running `cxpipe serve`.
pub struct Daemon {
    pub(super) inner: Arc<Inner>,
    addr: SocketAddr,
}

/// Errors that keep the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("listening on {addr}: {source} (is another cxpipe serve running? set [serve] listen)")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("watching the config and scripts: {0}")]
    Watch(#[from] super::watch::WatchError),
    #[error("{0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("{0}")]
    Cluster(String),
    #[error("{what}: {source}")]
    Secret {
        what: String,
        source: crate::secret::SecretError,
    },
}

impl Inner {
    pub(super) fn slots(&self) -> MutexGuard<'_, BTreeMap<FireKey, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn runtime(&self) -> Arc<Runtime> {
        self.served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .runtime
            .clone()
    }

    /// Starts a run of `key` now, unless one is live (then, for anything but a schedule
    /// fire, one more run follows it).
    pub(super) fn launch(
        self: &Arc<Self>,
        key: &FireKey,
        trigger: Trigger,
    ) -> Result<(), TriggerError> {
        let unknown = || TriggerError::Unknown {
            pipeline: key.pipeline.clone(),
            tenant: key.tenant.clone(),
        };
        let busy = || TriggerError::Busy {
            pipeline: key.pipeline.clone(),
            tenant: key.tenant.clone(),
        };
        let not_runnable = |reason: &str| TriggerError::NotRunnable {
            pipeline: key.pipeline.clone(),
            tenant: key.tenant.clone(),
            reason: reason.to_string(),
        };
        if self.shutdown.is_cancelled() {
            return Err(not_runnable("cxpipe serve is shutting down"));
        }
        if self.draining.load(Ordering::Relaxed) {
            return Err(not_runnable(
                "this node is draining (cxpipe node drain); another node takes the work",
            ));
        }
        let mut slots = self.slots();
        let slot = slots.get_mut(key).ok_or_else(unknown)?;
        if !slot.enabled && trigger != Trigger::Manual {
            return Err(not_runnable("the pipeline is disabled (enabled = false)"));
        }
        if slot.running.is_some() {
            if trigger != Trigger::Schedule {
                slot.again = true;
            }
            return Err(busy());
        }
        let Some(generation) = slot.generation.clone() else {
            let error = slot.reload_error.as_deref().unwrap_or("not compiled");
            tracing::error!(pipeline = %key.pipeline, tenant = %key.tenant, error,
                "no generation of the script compiles; run not started");
            return Err(not_runnable(&format!(
                "no version of its script compiles: {error}"
            )));
        };
        let (runtime, cluster) = {
            let served = self.served.read().unwrap_or_else(|e| e.into_inner());
            (served.runtime.clone(), served.cluster.clone())
        };
        let mut request = match runtime.run_request(
            &key.pipeline,
            &key.tenant,
            &generation,
            self.ledger.clone(),
            false,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(pipeline = %key.pipeline, tenant = %key.tenant, error = %e,
                    "run not started");
                slot.reload_error = Some(e.to_string());
                return Err(not_runnable(&e.to_string()));
            }
        };
        request.generations = Some(slot.live.subscribe());
        request.cluster = cluster;
        request.item_observer = Some({
            let (me, key) = (self.clone(), key.clone());
            Arc::new(move |took: Duration| {
                me.metrics
                    .observe_item(&key.pipeline, &key.tenant, took.as_secs_f64())
            })
        });
        let stop = StopSignal::new();
        slot.running = Some(Running {
            started_at: Utc::now(),
            trigger,
            stop: stop.clone(),
            counters: request.counters.clone(),
            bytes: request.bytes_written.clone(),
            bytes_reported: 0,
        });
        slot.again = false;
        drop(slots);
        tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant, trigger = trigger.as_str(),
            "run starting");
        let me = self.clone();
        let key = key.clone();
        self.tasks.spawn(async move {
            let started = std::time::Instant::now();
            let result = runner::run_until(request, stop).await;
            me.finished(&key, result, started.elapsed()).await;
        });
        Ok(())
    }

    /// Records how a run ended; starts the next one when something is waiting for it.
    async fn finished(
        self: &Arc<Self>,
        key: &FireKey,
        result: Result<RunReport, runner::RunError>,
        took: Duration,
    ) {
        self.metrics
            .observe_run(&key.pipeline, &key.tenant, took.as_secs_f64());
        let (again, next_due) = {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(key) else {
                return;
            };
            let mut running = slot.running.take();
            if let Some(r) = running.as_mut() {
                let bytes = r.new_bytes();
                self.metrics
                    .bytes_written(&key.pipeline, &key.tenant, bytes);
            }
            let started_at = running
                .as_ref()
                .map(|r| r.started_at)
                .unwrap_or_else(Utc::now);
            let trigger = running.map(|r| r.trigger.as_str()).unwrap_or("unknown");
            match &result {
                Ok(report) => {
                    let s = &report.summary;
                    self.metrics
                        .item_retried(&key.pipeline, &key.tenant, s.retries);
                    slot.last = Some(LastRun {
                        run_id: s.run_id.clone(),
                        status: s.status.clone(),
                        started_at,
                        finished_at: Some(Utc::now()),
                        duration_ms: Some(s.duration_ms),
                        counts: RunCounts {
                            done: s.done,
                            skipped: s.skipped,
                            deferred: s.deferred,
                            failed: s.failed,
                            quarantined: s.quarantined,
                        },
                        error: s.error.clone(),
                    });
                    match &s.error {
                        Some(error) => tracing::warn!(pipeline = %key.pipeline,
                            tenant = %key.tenant, trigger, status = %s.status, done = s.done,
                            error, "run finished"),
                        None => tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant,
                            trigger, status = %s.status, done = s.done, "run finished"),
                    }
                }
                Err(e) => {
                    tracing::error!(pipeline = %key.pipeline, tenant = %key.tenant, trigger,
                        error = %e, "run failed");
                    slot.last = Some(LastRun {
                        run_id: String::new(),
                        status: "failed".into(),
                        started_at,
                        finished_at: Some(Utc::now()),
                        duration_ms: Some(took.as_millis() as u64),
                        counts: RunCounts::default(),
                        error: Some(e.to_string()),
                    });
                }
            }
            let next_due = result
                .as_ref()
                .ok()
                .and_then(|r| r.summary.next_due.as_deref())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            (std::mem::take(&mut slot.again), next_due)
        };
        if self.shutdown.is_cancelled() {
            return;
        }
        if again {
            let _ = self.launch(key, Trigger::Resume);
        }
        if let Some(due) = next_due {
            self.wake_at(key, due);
        }
    }

    /// [`Inner::wake_at`] for a ledger time (ms since the epoch).
    pub(super) fn wake_at_ms(self: &Arc<Self>, key: &FireKey, due_ms: i64) {
        if let Some(due) = DateTime::<Utc>::from_timestamp_millis(due_ms) {
            self.wake_at(key, due);
        }
    }

    /// Starts a run of `key` at `due` (deferred items falling due), unless a wake at or
    /// before then is already set.
    pub(super) fn wake_at(self: &Arc<Self>, key: &FireKey, due: DateTime<Utc>) {
        {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(key) else {
                return;
            };
            if slot.wake_at.is_some_and(|at| at <= due) {
                return;
            }
            slot.wake_at = Some(due);
        }
        let me = self.clone();
        let key = key.clone();
        self.tasks.spawn(async move {
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = me.shutdown.cancelled() => return,
            }
            {
                let mut slots = me.slots();
                match slots.get_mut(&key) {
                    Some(slot) if slot.wake_at == Some(due) => slot.wake_at = None,
                    _ => return, // replaced by an earlier wake
                }
            }
            tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant, "deferred items due");
            let _ = me.launch(&key, Trigger::Resume);
        });
    }
}

/// The sink the scheduler calls: the daemon, once it exists (the scheduler is built first).
#[derive(Default)]
struct Sink(std::sync::OnceLock<std::sync::Weak<Inner>>);

impl FireSink for Sink {
    fn fire(&self, key: &FireKey, scheduled: DateTime<Utc>) -> FireOutcome {
        let Some(inner) = self.0.get().and_then(|w| w.upgrade()) else {
            return FireOutcome::SkippedBusy;
        };
        match inner.launch(key, Trigger::Schedule) {
            Ok(()) => FireOutcome::Started,
            Err(TriggerError::Busy { .. }) => {
                tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant, %scheduled,
                    "schedule fired while a run is in progress; this fire is skipped");
                FireOutcome::SkippedBusy
            }
            // Disabled, or no generation compiles (logged by `launch`).
            Err(TriggerError::Unknown { .. } | TriggerError::NotRunnable { .. }) => {
                FireOutcome::SkippedBusy
            }
        }
    }
}

/// The scheduler's entries for `runtime`.
pub(crate) fn schedule_entries(runtime: &Runtime) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (pipeline, tenant, spec) in runtime.pipelines() {
        let Some(schedule) = &spec.schedule else {
            continue;
        };
        // Config loading validated the expression and zone already.
        let Ok(parsed) = Schedule::parse(&schedule.cron, Some(&schedule.time_zone)) else {
            continue;
        };
        entries.push(Entry {
            key: FireKey::new(pipeline, tenant),
            schedule: parsed,
            misfire: match spec.misfire {
                crate::config::pipeline::Misfire::Skip => Misfire::Skip,
                crate::config::pipeline::Misfire::RunOnce => Misfire::RunOnce,
            },
            enabled: spec.enabled,
        });
    }
    entries
}

/// The verifiers, bearer token, grace and cluster settings of `runtime`'s `[serve]` and
/// webhook tables, for a node on a ledger of `backend`.
pub(super) fn served(
    runtime: Arc<Runtime>,
    backend: crate::ledger::Backend,
) -> Result<Served, ServeError> {
    let settings = runtime.serve_config();
    let cluster = match settings.serve.cluster {
        ClusterMode::Off => None,
        ClusterMode::Auto if backend == crate::ledger::Backend::Sqlite => None,
        ClusterMode::Auto | ClusterMode::On => Some(
            settings
                .serve
                .cluster_options()
                .map_err(ServeError::Cluster)?,
        ),
    };
    let dir = runtime.config().dir.clone();
    let mut verifiers = BTreeMap::new();
    for (tenant, hook) in &settings.webhooks {
        let secret = hook
            .secret
            .resolve(&dir)
            .map_err(|source| ServeError::Secret {
                what: format!("[tenants.{tenant}.webhook] secret"),
                source,
            })?;
        let verifier = Verifier::new(&WebhookSettings {
            secret,
            signature_header: hook.signature_header.clone(),
            timestamp_header: hook.timestamp_header.clone(),
            tolerance: hook.tolerance,
            max_body: usize::try_from(hook.max_body).unwrap_or(usize::MAX),
            event_id: EventIdSource::Fields(vec!["eventId".into(), "id".into()]),
        });
        verifiers.insert(tenant.clone(), Arc::new(verifier));
    }
    let token = match &settings.serve.token {
        Some(r) => Some(r.resolve(&dir).map_err(|source| ServeError::Secret {
            what: "[serve] token".into(),
            source,
        })?),
        None => None,
    };
    Ok(Served {
        runtime,
        verifiers,
        token,
        grace: settings.serve.grace,
        cluster,
    })
}

/// A slot for every pipeline × tenant of `runtime`, each compiled (a failure is the slot's
/// reload error). Slots of `old` that are running are kept with their run.
pub(super) fn build_slots(
    runtime: &Runtime,
    old: Option<&mut BTreeMap<FireKey, Slot>>,
) -> BTreeMap<FireKey, Slot> {
    let mut old = old.map(std::mem::take).unwrap_or_default();
    let mut slots = BTreeMap::new();
    for (pipeline, tenant, spec) in runtime.pipelines() {
        let key = FireKey::new(pipeline.clone(), tenant.clone());
        let compiled = runtime.compile(&pipeline, &tenant);
        let script = spec.script_for(&tenant, runtime.config());
        let mut slot = old.remove(&key).unwrap_or_else(|| Slot {
            generation: None,
            live: watch::channel(None).0,
            script: script.clone(),
            reload_error: None,
            running: None,
            last: None,
            again: false,
            enabled: spec.enabled,
            wake_at: None,
        });
        slot.script = script;
        slot.enabled = spec.enabled;
        match compiled {
            Ok(generation) => {
                slot.generation = Some(generation.clone());
                slot.live.send_replace(Some(generation));
                slot.reload_error = None;
            }
            Err(e) => {
                tracing::error!(%pipeline, %tenant, error = %e, "script does not compile");
                slot.reload_error = Some(e.to_string());
            }
        }
        slots.insert(key, slot);
    }
    // A removed pipeline's run in progress finishes; its slot goes with it.
    for (key, slot) in old {
        if let Some(running) = slot.running {
            tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant,
                "pipeline removed from the config; its run in progress is stopped");
            running
                .stop
                .stop("the pipeline was removed from the configuration");
        }
    }
    slots
}

/// Every file a reload watches: the config and, per slot, its script and every import.
pub(super) fn watched_paths(config: &Path, slots: &BTreeMap<FireKey, Slot>) -> Vec<PathBuf> {
    let mut paths = vec![absolute(config)];
    for slot in slots.values() {
        paths.push(absolute(&slot.script));
        if let Some(g) = &slot.generation {
            paths.extend(
                g.imports
                    .keys()
                    .filter(|name| !name.starts_with("embedded:") && !name.starts_with('<'))
                    .map(PathBuf::from),
            );
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Daemon {
    /// Loads the config, compiles every pipeline, binds `[serve] listen` (or `listen`),
    /// and starts serving: HTTP, the scheduler, the reload watcher, and runs for whatever
    /// the ledger holds unfinished.
    pub async fn start(
        config: &Path,
        ledger: Ledger,
        listen: Option<SocketAddr>,
    ) -> Result<Daemon, ServeError> {
        let runtime = Arc::new(Runtime::load(Some(config), Default::default())?);
        let served = served(runtime.clone(), ledger.backend())?;
        let clustered = served.cluster.clone();
        let addr: SocketAddr = match listen {
            Some(a) => a,
            None => runtime
                .serve_config()
                .serve
                .listen
                .get_ref()
                .parse()
                .map_err(|e: std::net::AddrParseError| ServeError::Listen {
                    addr: runtime.serve_config().serve.listen.get_ref().clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })?,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: addr.to_string(),
            source,
        })?;
        let slots = build_slots(&runtime, None);
        let sink = Arc::new(Sink::default());
        let scheduler = Arc::new(Scheduler::new(
            Arc::new(ledger.clone()),
            sink.clone(),
            Arc::new(super::schedule::SystemClock),
        ));
        let inner = Arc::new(Inner {
            config_path: config.to_path_buf(),
            ledger,
            served: RwLock::new(served),
            slots: Mutex::new(slots),
            metrics: Metrics::new(),
            started_at: Utc::now(),
            config_error: Mutex::new(None),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            scheduler: scheduler.clone(),
            api_seen: Mutex::default(),
            node: crate::ledger::cluster::this_node(),
            draining: Default::default(),
        });
        let _ = sink.0.set(Arc::downgrade(&inner));
        scheduler.set_entries(schedule_entries(&runtime)).await?;
        {
            let stop = inner.shutdown.clone();
            inner.tasks.spawn(async move { scheduler.run(stop).await });
        }
        super::reload::spawn(&inner)?;
        let app = super::http::router(Arc::new(super::host::Host(inner.clone())));
        {
            let stop = inner.shutdown.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            });
        }
        super::host::resume(&inner).await;
        if let Some(opts) = clustered {
            super::cluster::spawn(&inner, addr, opts);
        }
        Ok(Daemon { inner, addr })
    }

    /// The address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking new work, asks every run to stop (items in flight get their grace;
    /// the rest stay in the ledger for the next start), and waits for them.
    pub async fn shutdown(self, reason: &str) {
        let inner = self.inner;
        inner.shutdown.cancel();
        let grace = inner.served.read().unwrap_or_else(|e| e.into_inner()).grace;
        for slot in inner.slots().values() {
            if let Some(r) = &slot.running {
                r.stop.stop(reason.to_string());
            }
        }
        inner.tasks.close();
        // Runs end within their own `interrupt_grace`; the serve grace bounds the wait.
        if tokio::time::timeout(grace + Duration::from_secs(5), inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "runs still going after the shutdown grace; their items stay leased and are taken over by the next start"
            );
        }
    }
}
