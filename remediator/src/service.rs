//! The remediator's shared state: settings, the audit store, the runtime and
//! kill engine, the restraint state, the per-container action locks, and the
//! abort switch of a shutdown. The pipeline that runs on it is one file per
//! stage: [`crate::decide`] (alert → decision), [`crate::kill_action`] and
//! [`crate::restart_action`] (the background actions, each given what it
//! needs rather than the service),
//! with [`crate::pipeline`]'s plain types between them, [`crate::audit`]
//! (rows and counts), and [`crate::recovery`] (what a crash left behind).
//! Its readiness is [`NotReady`] when not ready.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, Now, SystemClock};
use crate::config::Settings;
use crate::forward::Peers;
use crate::kill::KillEngine;
use crate::metrics::{ContainerLabels, Metrics};
use crate::notices::Notifier;
use crate::restraint::{rebuild_restraint, OpenCircuit, Restraint};
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::store::{AuditError, Store, StoreError};
use crate::task::{blocking, now_ms, TaskFailed};

/// How long the webhook waits for the runtime to inspect a container.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Webhook payloads handled at once at most. Each payload's alerts are
/// handled in order, in its own task (which outlives a client that goes
/// away), so retries cannot pile up tasks beyond this.
pub const MAX_PAYLOADS: usize = 64;

/// How long a payload waits for one of the [`MAX_PAYLOADS`] slots before it
/// is answered 503 (Alertmanager retries it). A request that goes away
/// while waiting leaves nothing behind; waiting requests are bounded by the
/// listener's connection limit.
pub const PAYLOAD_WAIT: Duration = Duration::from_secs(2);

/// No payload slot came free within [`PAYLOAD_WAIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_PAYLOADS} webhook payloads are being handled; none finished within {} s: retry later", PAYLOAD_WAIT.as_secs())]
pub struct Saturated;

/// How recent a runtime answer must be for readiness.
pub const RUNTIME_FRESH: Duration = Duration::from_secs(30);

/// Everything the handlers and actions share.
pub struct Service {
    settings: crate::live::Live<Settings>,
    store: Store,
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) engine: Arc<dyn KillEngine>,
    metrics: Arc<Metrics>,
    restraint: Mutex<Restraint>,
    busy: Mutex<HashSet<String>>,
    runtime_ok_ms: AtomicI64,
    in_flight: AtomicUsize,
    idle: Notify,
    abort: Arc<AtomicBool>,
    aborted: Notify,
    peers: OnceLock<Peers>,
    notifier: OnceLock<Notifier>,
    clock: Arc<dyn Clock>,
    payloads: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Why the remediator is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The store check could not run.
    #[error(transparent)]
    Task(#[from] TaskFailed),
    /// The audit store does not answer.
    #[error("state store not answering: {0}")]
    Store(#[source] StoreError),
    /// The container runtime has not answered in this many seconds.
    #[error("container runtime has not answered in the last {0} s")]
    RuntimeSilent(u64),
}

/// Rows deleted per write when pruning the audit trail.
const PRUNE_BATCH: usize = 500;

/// The lock on one container, held from the decision to the end of its
/// action; dropping it frees the container.
#[derive(Debug)]
pub(crate) struct ContainerLock {
    svc: Arc<Service>,
    id: String,
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        self.svc
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// One action running in the background, counted until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Service>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Service {
    /// Opens the state: closes the actions a previous process left pending
    /// (continuing any process it left stopped, see [`crate::recovery`]),
    /// then rebuilds restraint from the audit store.
    pub fn new(
        settings: Settings,
        store: Store,
        runtime: Arc<dyn ContainerRuntime>,
        engine: Arc<dyn KillEngine>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Service>, StoreError> {
        Self::with_clock(
            settings,
            store,
            runtime,
            engine,
            metrics,
            Arc::new(SystemClock::new()),
        )
    }

    /// [`Service::new`] on the given clocks (tests step them apart).
    pub fn with_clock(
        settings: Settings,
        store: Store,
        runtime: Arc<dyn ContainerRuntime>,
        engine: Arc<dyn KillEngine>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Service>, StoreError> {
        crate::recovery::close_interrupted(&store, engine.as_ref(), clock.now().wall_ms)?;
        let restraint = rebuild_restraint(&store, &settings, clock.now())?;
        for c in restraint.open_circuits() {
            set_circuit_open(&metrics, &c.id, &c.name);
        }
        Ok(Arc::new(Service {
            settings: crate::live::Live::new(settings),
            store,
            runtime,
            engine,
            metrics,
            restraint: Mutex::new(restraint),
            busy: Mutex::new(HashSet::new()),
            runtime_ok_ms: AtomicI64::new(i64::MIN / 2),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            abort: Arc::new(AtomicBool::new(false)),
            aborted: Notify::new(),
            peers: OnceLock::new(),
            notifier: OnceLock::new(),
            clock,
            payloads: Arc::new(tokio::sync::Semaphore::new(MAX_PAYLOADS)),
        }))
    }

    /// Both clocks now: the wall clock stamps audit rows, the monotonic one
    /// runs restraint.
    pub(crate) fn now(&self) -> Now {
        self.clock.now()
    }

    /// The settings in force (a reload replaces them; a decision takes
    /// one snapshot and keeps it).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.get()
    }

    /// Puts reloaded settings in force for the decisions that follow.
    pub fn set_settings(&self, settings: Settings) {
        self.settings.set(settings);
    }

    /// The audit store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Enables fleet routing: alerts for containers of other nodes are
    /// forwarded through `peers` ([`crate::forward`]). Set once, at start.
    pub fn set_peers(&self, peers: Peers) {
        let _ = self.peers.set(peers);
    }

    /// Finished decisions that acted (or would have) are posted as notices
    /// through `notifier` ([`crate::notices`]). Set once, at start.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// The notifier, when notices are configured.
    pub(crate) fn notifier(&self) -> Option<&Notifier> {
        self.notifier.get()
    }

    /// One of the [`MAX_PAYLOADS`] payload slots, held until dropped, waited
    /// for at most [`PAYLOAD_WAIT`].
    pub(crate) async fn payload_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Saturated> {
        let wait = Arc::clone(&self.payloads).acquire_owned();
        match tokio::time::timeout(PAYLOAD_WAIT, wait).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(Saturated),
        }
    }

    /// How peers are reached, when fleet routing is on.
    pub(crate) fn peers(&self) -> Option<&Peers> {
        self.peers.get()
    }

    pub(crate) fn restraint(&self) -> std::sync::MutexGuard<'_, Restraint> {
        self.restraint.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the container's action lock; `None` while another action on it
    /// runs.
    pub(crate) fn lock_container(self: &Arc<Self>, id: &str) -> Option<ContainerLock> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(id.to_string()).then(|| ContainerLock {
            svc: Arc::clone(self),
            id: id.to_string(),
        })
    }

    /// Counts an action as running until the returned guard drops.
    pub(crate) fn start_action(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn runtime_answered(&self) {
        self.runtime_ok_ms
            .store(self.now().mono_ms, Ordering::Relaxed);
    }

    /// Pings the runtime (the readiness probe's source).
    pub async fn probe_runtime(&self) -> Result<(), RuntimeError> {
        let r = tokio::time::timeout(INSPECT_TIMEOUT, self.runtime.ping())
            .await
            .unwrap_or_else(|_| Err(RuntimeError::Unreachable("ping timed out".into())));
        if r.is_ok() {
            self.runtime_answered();
        }
        r
    }

    /// `Ok` when the store answers and the runtime answered recently; the
    /// reason otherwise.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let store = self.store.clone();
        blocking(move || store.ping())
            .await?
            .map_err(NotReady::Store)?;
        let age = self
            .now()
            .mono_ms
            .saturating_sub(self.runtime_ok_ms.load(Ordering::Relaxed));
        if age > RUNTIME_FRESH.as_millis() as i64 {
            return Err(NotReady::RuntimeSilent(RUNTIME_FRESH.as_secs()));
        }
        Ok(())
    }

    /// Closes circuits whose window passed (and removes their gauge series).
    pub fn expire_circuits(&self) {
        let mut r = self.restraint();
        let closed = r.expire(&self.settings(), self.now().mono_ms);
        self.circuits_closed(closed);
    }

    /// Removes the gauge series of circuits that closed. Called with the
    /// restraint lock held, so a circuit that opens again on the same
    /// container sets its series after this removal, never before.
    pub(crate) fn circuits_closed(&self, closed: Vec<OpenCircuit>) {
        for c in closed {
            tracing::info!(id = %c.id, name = %c.name, "circuit breaker closed");
            self.metrics.circuit_open.remove(&ContainerLabels {
                id: c.id,
                name: c.name,
            });
        }
    }

    /// Deletes audit rows past the retention period that no state needs
    /// ([`Store::prune`]), in short batches off the async workers. Returns
    /// how many went (none when rows are kept forever).
    pub async fn prune_audit(&self) -> Result<usize, AuditError> {
        let Some(before) = self.settings().prune_before(now_ms()) else {
            return Ok(0);
        };
        let store = self.store.clone();
        Ok(blocking(move || store.prune(before, PRUNE_BATCH)).await??)
    }

    /// Actions still running in the background.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no action runs in the background, at most `timeout`.
    /// Returns whether it became idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Shutdown: running actions stop where they are, continue what they
    /// stopped, and record themselves as interrupted; no new action starts.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.aborted.notify_waiters();
    }

    /// Whether [`Service::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// The abort flag, for the kill engine's blocking thread.
    pub(crate) fn abort_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.abort)
    }

    /// Resolves once [`Service::abort`] was called.
    pub(crate) async fn aborted(&self) {
        loop {
            let n = self.aborted.notified();
            if self.is_aborted() {
                return;
            }
            n.await;
        }
    }
}

/// Sets the open-circuit gauge of a container.
pub(crate) fn set_circuit_open(metrics: &Metrics, id: &str, name: &str) {
    metrics
        .circuit_open
        .get_or_create(&ContainerLabels {
            id: id.to_string(),
            name: name.to_string(),
        })
        .set(1);
}
