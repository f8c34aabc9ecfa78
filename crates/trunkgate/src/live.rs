//! The policy in force, and hot reload (SIGHUP, `POST /reload`, `trunkgate ctl reload`).
//!
//! A [`Snapshot`] is one validated policy with everything built from it: the routing table
//! (inside [`PolicyRouting`]) and admission. [`LivePolicy`] holds the current one in an
//! `ArcSwap` (the admin API reads it lock-free) and performs reloads, one at a time:
//! read → validate (file:line:col on refusal; the running policy stays) → diff → build with
//! the process's one [`TrunkIds`] registry (a trunk keeps its id for life) → rebuild
//! [`Health`] by id and admission keeping the CPS buckets of trunks that stay → swap → send
//! the core its new routing and admission as one message ([`PolicySwap`]), which it applies
//! between two inputs. Calls in progress keep their dialogs; drills stay (a drill on a
//! trunk the new policy removes is stopped).
//!
//! A trunk removed while it still has calls is kept as *draining*: it still classifies (its
//! BYEs are not "unknown source"), is in no route (no new outbound call) and has
//! `max_sessions = 0` (no new inbound call). [`LivePolicy::tick`] (every second) drops it
//! once its sessions reach 0; its metrics go with it.
//!
//! TLS certificates and keys are read again by every reload (a new [`TlsProfiles`] is
//! swapped in: new connections use it, connections up keep theirs), so rotating a
//! certificate is: replace the files, reload. A rebuild for changed DNS answers or a
//! drained trunk reads them too; if that fails it keeps the TLS profiles in force.
//!
//! Metrics: `trunkgate_policy_reloads_total{result="applied"|"refused"}`,
//! `trunkgate_policy_info{hash}` and `trunkgate_tls_certificate_info{sha256}` (the served
//! certificate's fingerprint).

use crate::admin_auth::{AdminAuth, fnv1a, load_token};
use crate::admission_adapter::PolicyAdmission;
use crate::dns::Dns;
use crate::drills::DrillBoard;
use crate::metrics::{PeerView, PeerViews};
use crate::policy_diff::{self, Change};
use crate::routing_adapter::PolicyRouting;
use crate::shell::admit::Admit;
use crate::shell::tls::{TlsProfiles, TlsShared};
use crate::shell::{CoreMessage, PolicySwap};
use crate::trunk_health::{TrunkCounts, TrunkMetrics};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::mpsc;
use trunkgate_config::{Policy, Trunk};
use trunkgate_control::admission::AdmissionControl;
use trunkgate_control::{Health, ResolveError, RoutingTable, TrunkId, TrunkIds};
use trunkgate_sip::ProxyMetrics;

/// One policy and what was built from it. Immutable.
#[derive(Debug)]
pub struct Snapshot {
    /// As validated from the file (draining trunks not included).
    pub policy: Policy,
    /// The file (`None`: the embedded default) and its text.
    pub path: Option<PathBuf>,
    pub text: String,
    /// FNV-1a of the text, 16 hex digits.
    pub hash: String,
    pub loaded_unix_ms: u64,
    pub routing: Arc<PolicyRouting>,
    pub admission: Arc<PolicyAdmission>,
    /// Trunks the file no longer has that still carry calls.
    pub draining: Vec<String>,
    /// Certificates and per-peer TLS profiles read for this snapshot.
    pub tls: Arc<TlsProfiles>,
}

impl Snapshot {
    pub fn origin(&self) -> String {
        self.path.as_ref().map_or_else(
            || trunkgate_config::EMBEDDED_ORIGIN.to_owned(),
            |p| p.display().to_string(),
        )
    }
}

pub fn hash_text(text: &str) -> String {
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// Read the policy: `path`, or the embedded default.
pub fn read_policy(
    path: Option<&Path>,
) -> Result<(Policy, String), trunkgate_config::PolicyErrors> {
    match path {
        Some(path) => Policy::load_with_text(path),
        None => {
            Policy::embedded_default().map(|p| (p, trunkgate_config::EMBEDDED_DEFAULT.to_owned()))
        }
    }
}

/// What builds a snapshot and must outlive it: the id registry, the trunks kept draining,
/// the DNS cache.
#[derive(Debug, Default)]
struct Builder {
    ids: TrunkIds,
    /// Configs of removed trunks that still have calls (as the last policy that had them).
    draining: Vec<Trunk>,
    /// Names are resolved here (RFC 3263); `None`: the system resolver, first address.
    dns: Option<Arc<Dns>>,
}

/// The state shared by every snapshot: health and drills (keyed by trunk id).
#[derive(Debug, Clone)]
pub struct Shared {
    pub health: Arc<Mutex<Health>>,
    pub drills: Arc<DrillBoard>,
}

impl Builder {
    /// Build the routing table for `policy` plus the draining trunks. A draining trunk whose
    /// addresses the new policy gives to another peer cannot be kept: it is dropped (logged).
    fn table(&mut self, policy: &Policy) -> Result<RoutingTable, ResolveError> {
        let dns = self.dns.clone();
        let resolve = |host: &trunkgate_config::HostPort, transport| match &dns {
            Some(dns) => dns.resolve(host, transport),
            None => crate::startup::resolve(host, transport),
        };
        self.draining
            .retain(|d| !policy.trunks.iter().any(|t| t.name == d.name));
        let with_draining = |draining: &[Trunk]| {
            let mut build = policy.clone();
            for t in draining {
                let mut t = t.clone();
                // Classify yes, candidates no: in no route, no new inbound call, no probe.
                t.max_sessions = Some(0);
                t.max_inbound = Some(0);
                t.max_outbound = Some(0);
                t.max_cps = None;
                t.cps_burst = None;
                t.probe = None;
                build.trunks.push(t);
            }
            build
        };
        let mut ids = self.ids.clone();
        let table = match RoutingTable::new(&with_draining(&self.draining), &mut ids, resolve) {
            Ok(table) => table,
            Err(ResolveError::Ambiguous { .. }) if !self.draining.is_empty() => {
                for t in &self.draining {
                    tracing::warn!(trunk = %t.name, "removed trunk's addresses now belong to another peer: its remaining calls lose their trunk (not drained)");
                }
                self.draining.clear();
                ids = self.ids.clone();
                RoutingTable::new(policy, &mut ids, resolve)?
            }
            Err(e) => return Err(e),
        };
        self.ids = ids;
        Ok(table)
    }
}

/// The first snapshot, at start.
pub fn first(
    policy: Policy,
    text: String,
    path: Option<&Path>,
) -> anyhow::Result<(Snapshot, Shared, BuilderSeed)> {
    let dns = Dns::new(&policy.dns).map_err(|e| anyhow::anyhow!("starting DNS: {e}"))?;
    let mut builder = Builder {
        dns: Some(Arc::new(dns)),
        ..Builder::default()
    };
    let table = builder
        .table(&policy)
        .map_err(|e| anyhow::anyhow!("resolving peer addresses: {e}"))?;
    let drills = Arc::new(DrillBoard::default());
    let health = Arc::new(Mutex::new(Health::new(
        &table,
        &policy.health,
        Instant::now(),
    )));
    let control = Arc::new(AdmissionControl::new(&policy, &table));
    let tls = Arc::new(
        TlsProfiles::build(&policy, &table, &[]).context("loading the TLS configuration")?,
    );
    let routing = Arc::new(PolicyRouting::with_health(
        table,
        health.clone(),
        drills.clone(),
    ));
    let admission = Arc::new(PolicyAdmission::with_drills(control, drills.clone()));
    let snapshot = Snapshot {
        hash: hash_text(&text),
        policy,
        path: path.map(Path::to_path_buf),
        text,
        loaded_unix_ms: crate::drills::wall_ms(),
        routing,
        admission,
        draining: Vec::new(),
        tls,
    };
    Ok((snapshot, Shared { health, drills }, BuilderSeed(builder)))
}

/// The id registry of the first build, handed to [`LivePolicy::new`].
#[derive(Debug)]
pub struct BuilderSeed(Builder);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabel {
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FingerprintLabel {
    sha256: String,
}

/// How a reload went, for the admin API and `ctl reload`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    /// `applied`, `refused`, `dry-run`.
    pub result: &'static str,
    pub file: String,
    /// The policy errors (file:line:col: what is wrong; what would be right).
    pub errors: Option<String>,
    pub changes: Vec<Change>,
    /// Changed keys that take effect only at the next start.
    pub restart_needed: Vec<String>,
    pub hash: String,
    /// Removed trunks still carrying calls.
    pub draining: Vec<String>,
    /// The validation run (`validate.after_reload`) the applied reload started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_run: Option<u64>,
}

/// Per-minute peaks of sessions by trunk id, for the last hour (drill dry runs).
#[derive(Debug, Default)]
struct Peaks {
    /// (minute since start, peak per slot), newest last, at most 60.
    minutes: VecDeque<(u64, Vec<u32>)>,
}

impl Peaks {
    fn record(&mut self, minute: u64, sessions: &[u32]) {
        match self.minutes.back_mut() {
            Some((m, peaks)) if *m == minute => {
                for (p, s) in peaks.iter_mut().zip(sessions) {
                    *p = (*p).max(*s);
                }
            }
            _ => {
                self.minutes.push_back((minute, sessions.to_vec()));
                while self.minutes.len() > 60 {
                    self.minutes.pop_front();
                }
            }
        }
    }

    fn peak(&self, slot: usize) -> u32 {
        self.minutes
            .iter()
            .filter_map(|(_, p)| p.get(slot).copied())
            .max()
            .unwrap_or(0)
    }
}

/// Calls per second over the last second: all new calls, and branches per trunk id.
#[derive(Debug, Default)]
struct Rates {
    last: Option<(Instant, u64, Vec<u64>)>,
    cps: f64,
    per_trunk: Vec<f64>,
}

/// The policy in force and everything a reload touches.
pub struct LivePolicy {
    current: ArcSwap<Snapshot>,
    builder: Mutex<Builder>,
    shared: Shared,
    core: mpsc::UnboundedSender<CoreMessage>,
    admit: Arc<Admit>,
    views: PeerViews,
    proxy: Arc<ProxyMetrics>,
    counts: Arc<TrunkCounts>,
    auth: Arc<AdminAuth>,
    trunk_metrics: TrunkMetrics,
    relay: Option<Arc<trunkgate_media::Relay>>,
    reloads: Family<ResultLabel, Counter>,
    info: Family<HashLabel, Gauge>,
    /// The TLS profiles the stream shell's handshakes use (swapped by `install`).
    tls: Arc<TlsShared>,
    certificate_info: Family<FingerprintLabel, Gauge>,
    peaks: Mutex<Peaks>,
    /// Per-minute sessions of the last 24 h by trunk name (the status page).
    history: Mutex<crate::concurrency::ConcurrencyHistory>,
    rates: Mutex<Rates>,
    started: Instant,
    /// Runs of test calls (set once at start).
    testcalls: std::sync::OnceLock<Arc<crate::testcall::Hub>>,
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicy")
            .field("hash", &self.current.load().hash)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parts a [`LivePolicy`] is wired to.
pub struct Wiring {
    pub core: mpsc::UnboundedSender<CoreMessage>,
    pub admit: Arc<Admit>,
    pub views: PeerViews,
    pub proxy: Arc<ProxyMetrics>,
    pub counts: Arc<TrunkCounts>,
    pub auth: Arc<AdminAuth>,
    pub trunk_metrics: TrunkMetrics,
    /// The media relay: its per-trunk labels follow the policy.
    pub relay: Option<Arc<trunkgate_media::Relay>>,
    /// TLS handshakes take their certificates and peer profiles from here.
    pub tls: Arc<TlsShared>,
}

/// The names of `routing`'s trunks by id (`""` for ids it does not have).
pub fn names_by_id(routing: &PolicyRouting) -> Vec<String> {
    let mut names = Vec::new();
    for t in routing.table().trunks() {
        let i = usize::from(t.id.0);
        if names.len() <= i {
            names.resize(i + 1, String::new());
        }
        if let Some(slot) = names.get_mut(i) {
            slot.clone_from(&t.name);
        }
    }
    names
}

/// The metric peer labels of `routing`'s trunks.
pub fn peer_view(routing: &PolicyRouting, admission: &PolicyAdmission) -> PeerView {
    PeerView::new(
        routing
            .table()
            .trunks()
            .iter()
            .map(|t| (t.id.0, t.name.as_str(), t.max_sessions)),
        Some(admission.control().clone()),
    )
}

impl LivePolicy {
    pub fn new(
        snapshot: Snapshot,
        shared: Shared,
        seed: BuilderSeed,
        wiring: Wiring,
        registry: &mut Registry,
    ) -> LivePolicy {
        let live = LivePolicy {
            current: ArcSwap::from_pointee(snapshot),
            builder: Mutex::new(seed.0),
            shared,
            core: wiring.core,
            admit: wiring.admit,
            views: wiring.views,
            proxy: wiring.proxy,
            counts: wiring.counts,
            auth: wiring.auth,
            trunk_metrics: wiring.trunk_metrics,
            relay: wiring.relay,
            reloads: Family::default(),
            info: Family::default(),
            tls: wiring.tls,
            certificate_info: Family::default(),
            peaks: Mutex::new(Peaks::default()),
            history: Mutex::new(crate::concurrency::ConcurrencyHistory::default()),
            rates: Mutex::new(Rates::default()),
            started: Instant::now(),
            testcalls: std::sync::OnceLock::new(),
        };
        registry.register(
            "trunkgate_policy_reloads",
            "Policy reloads by result (applied, refused)",
            live.reloads.clone(),
        );
        registry.register(
            "trunkgate_policy_info",
            "1 for the hash of the policy file in force",
            live.info.clone(),
        );
        for result in ["applied", "refused"] {
            drop(live.reloads.get_or_create(&ResultLabel {
                result: result.to_owned(),
            }));
        }
        live.info
            .get_or_create(&HashLabel {
                hash: live.current().hash.clone(),
            })
            .set(1);
        registry.register(
            "trunkgate_tls_certificate_info",
            "1 for the SHA-256 fingerprint of the certificate tls: listeners present",
            live.certificate_info.clone(),
        );
        let tls = live.current().tls.clone();
        live.tls.set(tls.clone());
        live.set_certificate_info(None, &tls);
        live
    }

    /// `trunkgate_tls_certificate_info` follows the certificate in force.
    fn set_certificate_info(&self, old: Option<&TlsProfiles>, new: &TlsProfiles) {
        let old = old.and_then(|o| o.fingerprint.clone());
        if old == new.fingerprint {
            return;
        }
        if let Some(sha256) = old {
            self.certificate_info.remove(&FingerprintLabel { sha256 });
        }
        if let Some(sha256) = new.fingerprint.clone() {
            self.certificate_info
                .get_or_create(&FingerprintLabel { sha256 })
                .set(1);
        }
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The per-trunk health metrics (a drill's end restores a trunk's up gauge).
    pub fn trunk_metrics(&self) -> &TrunkMetrics {
        &self.trunk_metrics
    }

    /// A drill started: the core loop re-arms its timer for the drill's expiry (it would
    /// otherwise only notice at its next input).
    pub fn wake_core(&self) {
        let _ = self.core.send(CoreMessage::Wake);
    }

    /// Hand the core loop a message (a run of test calls); false when it is gone.
    pub fn send_core(&self, message: CoreMessage) -> bool {
        self.core.send(message).is_ok()
    }

    /// The runs of test calls (`None` before start-up set them).
    pub fn testcalls(&self) -> Option<&Arc<crate::testcall::Hub>> {
        self.testcalls.get()
    }

    pub fn set_testcalls(&self, hub: Arc<crate::testcall::Hub>) {
        let _ = self.testcalls.set(hub);
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Sessions on trunk `id` now (the core's gauges).
    pub fn sessions(&self, id: TrunkId) -> u32 {
        let slot = 2 + usize::from(id.0);
        self.proxy.peers.get(slot).map_or(0, |p| {
            let n: i64 = p.dialogs.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            u32::try_from(n.max(0)).unwrap_or(u32::MAX)
        })
    }

    /// Peak sessions on trunk `id` in the last hour (per-minute peaks, sampled every second).
    pub fn peak_last_hour(&self, id: TrunkId) -> u32 {
        lock(&self.peaks)
            .peak(usize::from(id.0))
            .max(self.sessions(id))
    }

    /// Trunk `name`'s per-minute sessions in the 24 h ending with Unix minute `now`.
    pub fn history_series(&self, name: &str, now: u64) -> Vec<crate::concurrency::MinuteLoad> {
        lock(&self.history).series(name, now)
    }

    /// One sample of every trunk's sessions into the 24 h history, by name (so it follows
    /// trunks across reloads); trunks no longer in the policy are forgotten.
    fn record_history(&self) {
        let minute = crate::concurrency::unix_minute();
        let snapshot = self.current();
        let trunks = snapshot.routing.table().trunks();
        let mut history = lock(&self.history);
        for t in trunks {
            history.record(minute, &t.name, self.sessions(t.id));
        }
        let names: std::collections::HashSet<&str> =
            trunks.iter().map(|t| t.name.as_str()).collect();
        history.retain(|n| names.contains(n));
    }

    /// New calls per second (all), and branches per second to trunk `id`.
    pub fn cps(&self) -> f64 {
        lock(&self.rates).cps
    }

    pub fn trunk_cps(&self, id: TrunkId) -> f64 {
        lock(&self.rates)
            .per_trunk
            .get(usize::from(id.0))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn counts(&self) -> &TrunkCounts {
        &self.counts
    }

    /// Every second: sample load (rates, peaks), keep flood upkeep going, drop draining
    /// trunks whose calls are over.
    pub fn tick(&self) {
        let now = Instant::now();
        let slots = self.proxy.peers.len().saturating_sub(2);
        let sessions: Vec<u32> = (0..slots)
            .map(|i| self.sessions(TrunkId(u16::try_from(i).unwrap_or(u16::MAX))))
            .collect();
        let minute = self.started.elapsed().as_secs() / 60;
        lock(&self.peaks).record(minute, &sessions);
        self.record_history();
        let invites = self
            .proxy
            .requests
            .get(trunkgate_sip::message::Method::Invite.index())
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let attempts: Vec<u64> = self
            .counts
            .attempts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        {
            let mut rates = lock(&self.rates);
            if let Some((at, last_invites, last_attempts)) = rates.last.take() {
                let secs = now.duration_since(at).as_secs_f64().max(0.001);
                rates.cps = invites.saturating_sub(last_invites) as f64 / secs;
                rates.per_trunk = attempts
                    .iter()
                    .zip(&last_attempts)
                    .map(|(a, b)| a.saturating_sub(*b) as f64 / secs)
                    .collect();
            }
            rates.last = Some((now, invites, attempts));
        }
        self.current().admission.control().maintain();
        self.sweep_drained();
    }

    /// Draining trunks with no calls left leave the table (and the metrics).
    fn sweep_drained(&self) {
        let mut builder = lock(&self.builder);
        if builder.draining.is_empty() {
            return;
        }
        let done: Vec<String> = builder
            .draining
            .iter()
            .filter(|t| {
                builder
                    .ids
                    .get(&t.name)
                    .is_none_or(|id| self.sessions(id) == 0)
            })
            .map(|t| t.name.clone())
            .collect();
        if done.is_empty() {
            return;
        }
        builder.draining.retain(|t| !done.contains(&t.name));
        let current = self.current();
        match self.build(&mut builder, current.policy.clone(), &current, false) {
            Ok(snapshot) => {
                for name in &done {
                    tracing::info!(trunk = %name, "removed trunk drained: its last call ended; it is gone");
                }
                self.install(Snapshot {
                    path: current.path.clone(),
                    text: current.text.clone(),
                    hash: current.hash.clone(),
                    loaded_unix_ms: current.loaded_unix_ms,
                    ..snapshot
                });
            }
            Err(error) => tracing::warn!(%error, "dropping drained trunks failed"),
        }
    }

    /// Build a snapshot of `policy` (keeping health, buckets, drills by trunk id).
    /// `reload`: the operator asked for it, so TLS files that fail refuse the build;
    /// otherwise (DNS, drained trunks) the TLS profiles in force stay when they fail.
    fn build(
        &self,
        builder: &mut Builder,
        policy: Policy,
        old: &Snapshot,
        reload: bool,
    ) -> anyhow::Result<Snapshot> {
        if let Some(dns) = &builder.dns {
            dns.configure(&policy.dns)
                .map_err(|e| anyhow::anyhow!("[dns]: {e}"))?;
        }
        let table = builder.table(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(dns) = &builder.dns {
            dns.retain(&policy);
        }
        self.shared
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rebuild(&table, &policy.health, Instant::now());
        let control = Arc::new(AdmissionControl::rebuild(
            &policy,
            &table,
            old.admission.control(),
        ));
        let draining = builder.draining.iter().map(|t| t.name.clone()).collect();
        let tls = match TlsProfiles::build(&policy, &table, &builder.draining) {
            Ok(tls) => Arc::new(tls),
            Err(error) if !reload => {
                tracing::warn!(error = %format!("{error:#}"), "TLS configuration could not be read again: the one in force stays");
                old.tls.clone()
            }
            Err(error) => return Err(error.context("TLS")),
        };
        let mut routing = PolicyRouting::with_health(
            table,
            self.shared.health.clone(),
            self.shared.drills.clone(),
        );
        routing.carry_over(&old.routing);
        let routing = Arc::new(routing);
        let admission = Arc::new(PolicyAdmission::with_drills(
            control,
            self.shared.drills.clone(),
        ));
        Ok(Snapshot {
            policy,
            path: old.path.clone(),
            text: old.text.clone(),
            hash: old.hash.clone(),
            loaded_unix_ms: crate::drills::wall_ms(),
            routing,
            admission,
            draining,
            tls,
        })
    }

    /// Make `snapshot` the policy in force: the admin side at once, the core at its next
    /// loop turn, TCP accept for the next connection, metric labels at the next scrape.
    fn install(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.views
            .store(Arc::new(peer_view(&snapshot.routing, &snapshot.admission)));
        self.admit
            .set_policy(snapshot.routing.clone(), snapshot.admission.clone());
        if let Some(relay) = &self.relay {
            relay.set_trunk_names(names_by_id(&snapshot.routing));
        }
        // New TLS connections present and verify with the new certificates; connections
        // up keep the configuration they were made with.
        self.tls.set(snapshot.tls.clone());
        if self
            .core
            .send(CoreMessage::Policy(PolicySwap {
                routing: snapshot.routing.clone(),
                admission: snapshot.admission.clone(),
            }))
            .is_err()
        {
            tracing::warn!(
                "the SIP core has stopped: the reloaded policy reaches the admin API only"
            );
        }
        let old = self.current.swap(snapshot.clone());
        self.set_certificate_info(Some(&old.tls), &snapshot.tls);
        if old.hash != snapshot.hash {
            self.info.remove(&HashLabel {
                hash: old.hash.clone(),
            });
            self.info
                .get_or_create(&HashLabel {
                    hash: snapshot.hash.clone(),
                })
                .set(1);
        }
    }

    /// The DNS cache behind the routing table (for the refresh thread and `/dns`).
    pub fn dns(&self) -> Option<Arc<Dns>> {
        lock(&self.builder).dns.clone()
    }

    /// A DNS answer changed: build the policy in force again from the cache (routes,
    /// classification and probes follow the new addresses; health, buckets and drills
    /// carry over as on reload).
    pub fn rebuild_for_dns(&self) {
        let mut builder = lock(&self.builder);
        let current = self.current();
        match self.build(&mut builder, current.policy.clone(), &current, false) {
            Ok(snapshot) => {
                self.install(snapshot);
                tracing::info!("routing rebuilt for changed DNS answers");
            }
            Err(error) => {
                tracing::warn!(%error, "rebuilding for changed DNS answers failed: the routing in force stays");
            }
        }
    }

    /// Reload the policy file. `dry_run`: validate and diff only.
    pub fn reload(&self, dry_run: bool, trigger: &str) -> ReloadOutcome {
        let mut builder = lock(&self.builder);
        let current = self.current();
        let file = current.origin();
        let refused = |errors: String, changes: Vec<Change>| {
            if !dry_run {
                self.reloads
                    .get_or_create(&ResultLabel {
                        result: "refused".to_owned(),
                    })
                    .inc();
            }
            let first = errors.lines().next().unwrap_or_default().to_owned();
            tracing::warn!(file = %file, trigger, error = %first, "policy reload refused: the running policy stays in force");
            ReloadOutcome {
                result: "refused",
                file: file.clone(),
                errors: Some(errors),
                changes,
                restart_needed: Vec::new(),
                hash: current.hash.clone(),
                draining: current.draining.clone(),
                validation_run: None,
            }
        };
        let (policy, text) = match read_policy(current.path.as_deref()) {
            Ok(read) => read,
            Err(errors) => return refused(errors.to_string(), Vec::new()),
        };
        let changes = policy_diff::diff(&current.text, &text).unwrap_or_default();
        let restart_needed: Vec<String> = changes
            .iter()
            .filter(|c| c.restart)
            .map(|c| c.key.clone())
            .collect();
        let hash = hash_text(&text);
        if dry_run {
            return ReloadOutcome {
                result: "dry-run",
                file,
                errors: None,
                changes,
                restart_needed,
                hash,
                draining: current.draining.clone(),
                validation_run: None,
            };
        }
        let token = match load_token(policy.admin.token_file.as_deref()) {
            Ok(token) => token,
            Err(error) => return refused(format!("{error:#}"), changes),
        };
        let exposed = !current.policy.admin.listen.ip().is_loopback()
            || !policy.admin.listen.ip().is_loopback();
        if token.is_none() && exposed {
            return refused(
                format!(
                    "{file}: admin.listen is not a loopback address and the new policy configures \
                     no admin token; set [admin] token_file (or {}) or listen on 127.0.0.1",
                    crate::admin_auth::TOKEN_ENV
                ),
                changes,
            );
        }
        // Removed trunks with calls up are kept draining.
        let draining_before = builder.draining.clone();
        for t in &current.policy.trunks {
            let gone = !policy.trunks.iter().any(|n| n.name == t.name);
            let id = builder.ids.get(&t.name);
            if gone && id.is_some_and(|id| self.sessions(id) > 0) {
                builder.draining.push(t.clone());
            }
        }
        let snapshot = match self.build(&mut builder, policy, &current, true) {
            Ok(snapshot) => Snapshot {
                text,
                hash: hash.clone(),
                ..snapshot
            },
            Err(error) => {
                builder.draining = draining_before;
                return refused(format!("{file}: {error:#}"), changes);
            }
        };
        // A drill on a trunk the policy no longer routes to ends now.
        let gone: Vec<TrunkId> = current
            .routing
            .table()
            .trunks()
            .iter()
            .filter(|t| snapshot.policy.trunks.iter().all(|n| n.name != t.name))
            .map(|t| t.id)
            .collect();
        if !gone.is_empty() {
            let wall = crate::drills::wall_ms();
            let ended = self.shared.drills.with(|d| {
                gone.iter()
                    .flat_map(|id| d.stop(wall, Some(*id)))
                    .collect::<Vec<_>>()
            });
            crate::drills::ended(
                Instant::now(),
                "stopped (trunk removed by reload)",
                &ended,
                &self.shared.health,
                &self.trunk_metrics,
            );
        }
        self.auth.set_token(token);
        let draining = snapshot.draining.clone();
        self.install(snapshot);
        self.reloads
            .get_or_create(&ResultLabel {
                result: "applied".to_owned(),
            })
            .inc();
        tracing::info!(
            file = %file,
            trigger,
            hash = %hash,
            changes = changes.len(),
            restart_needed = %restart_needed.join(", "),
            draining = %draining.join(", "),
            "policy reloaded"
        );
        for key in &restart_needed {
            tracing::warn!(key = %key, "changed key needs a restart: the running value stays until then");
        }
        let validation_run = crate::testcall_api::after_reload(self);
        ReloadOutcome {
            result: "applied",
            file,
            errors: None,
            changes,
            restart_needed,
            hash,
            draining,
            validation_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_keep_an_hour_of_minutes() {
        let mut peaks = Peaks::default();
        peaks.record(0, &[3, 1]);
        peaks.record(0, &[5, 0]);
        peaks.record(1, &[2, 2]);
        assert_eq!(peaks.peak(0), 5);
        assert_eq!(peaks.peak(1), 2);
        for m in 2..70 {
            peaks.record(m, &[1, 1]);
        }
        assert_eq!(peaks.peak(0), 1, "minutes older than an hour are forgotten");
        assert_eq!(peaks.peak(9), 0);
    }
}
