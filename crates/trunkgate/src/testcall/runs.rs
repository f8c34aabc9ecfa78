//! Runs of test calls: what is asked ([`RunRequest`], built from the policy's
//! `[[test_call]]`s or an ad-hoc `ctl testcall`), what came of it ([`Run`]), and the
//! [`Hub`] that keeps the last runs for the admin API, the drill reports and the metrics.

use super::audio::G711;
use super::media::MediaReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trunkgate_config::{Policy, TestCall, TestCodec, TestDirection, TestExpect};
use trunkgate_sip::TrunkId;

/// One test call to place, resolved against the policy in force.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub direction: TestDirection,
    /// Stable id and name of the trunk.
    pub trunk: Option<(TrunkId, String)>,
    pub to: String,
    pub from: Option<String>,
    pub duration: Duration,
    pub codec: G711,
    pub expect: TestExpect,
    pub echo: bool,
    pub max_pdd: Option<Duration>,
    pub min_mos: Option<f64>,
    pub counted: bool,
}

impl Spec {
    /// `t` of `policy`, its trunk resolved by `trunk_id`.
    pub fn of(
        t: &TestCall,
        policy: &Policy,
        trunk_id: impl Fn(&str) -> Option<TrunkId>,
    ) -> Result<Spec, String> {
        let trunk = match t.trunk.and_then(|i| policy.trunks.get(i)) {
            Some(trunk) => {
                let id = trunk_id(&trunk.name).ok_or_else(|| {
                    format!("trunk \"{}\" is not in the routing table", trunk.name)
                })?;
                Some((id, trunk.name.clone()))
            }
            None => None,
        };
        Ok(Spec {
            name: t.name.clone(),
            direction: t.direction,
            trunk,
            to: t.to.clone(),
            from: t.from.clone(),
            duration: t.duration,
            codec: match t.codec {
                TestCodec::Pcmu => G711::Ulaw,
                TestCodec::Pcma => G711::Alaw,
            },
            expect: t.expect,
            echo: t.echo,
            max_pdd: t.max_pdd,
            min_mos: t.min_mos,
            counted: t.count_limits,
        })
    }
}

/// A run for the agent in the core loop.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub id: u64,
    pub specs: Arc<Vec<Spec>>,
    /// Trunk names by id (to name the trunk that carried each call).
    pub names: Arc<HashMap<TrunkId, String>>,
    pub concurrency: usize,
    pub start_interval: Duration,
    pub setup_timeout: Duration,
}

/// What one test call did.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub direction: &'static str,
    /// The trunk asked for.
    pub trunk: Option<String>,
    pub to: String,
    pub call_id: String,
    /// The trunk the call went out on last (outbound), `pbx` (inbound).
    pub carried_by: Option<String>,
    /// Carried by another trunk than the one asked for (its route's failover, a drill).
    pub rerouted: bool,
    /// Candidates tried.
    pub attempts: u8,
    /// `answered`, `refused`, `no-answer`, `not-placed`.
    pub outcome: &'static str,
    /// The final response code.
    pub code: Option<u16>,
    pub reason: Option<String>,
    /// Post-dial delay: INVITE to the first 180/183 (else to the answer).
    pub pdd_ms: Option<f64>,
    pub answer_ms: Option<f64>,
    pub held_ms: Option<f64>,
    /// `trunkgate` (our BYE after `duration`) or `far-end`.
    pub ended_by: Option<&'static str>,
    pub media: Option<MediaReport>,
    /// Counted against the trunk's limits (`count_limits`).
    pub counted: bool,
    pub passed: bool,
    /// Why it did not pass (empty when it did).
    pub failures: Vec<String>,
}

impl TestResult {
    pub fn not_placed(spec: &Spec, why: &str) -> TestResult {
        TestResult {
            name: spec.name.clone(),
            direction: match spec.direction {
                TestDirection::Outbound => "outbound",
                TestDirection::Inbound => "inbound",
            },
            trunk: spec.trunk.as_ref().map(|(_, n)| n.clone()),
            to: spec.to.clone(),
            call_id: String::new(),
            carried_by: None,
            rerouted: false,
            attempts: 0,
            outcome: "not-placed",
            code: None,
            reason: Some(why.to_owned()),
            pdd_ms: None,
            answer_ms: None,
            held_ms: None,
            ended_by: None,
            media: None,
            counted: spec.counted,
            passed: false,
            failures: vec![why.to_owned()],
        }
    }
}

/// A run as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: u64,
    /// `testcall` (ad hoc), `validate`, `after-reload`, `scheduled`.
    pub kind: String,
    pub suite: Option<String>,
    /// Drills active when the run started (their reports list the run).
    pub drills: Vec<u64>,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// `running` or `done`.
    pub state: &'static str,
    pub passed: Option<bool>,
    /// In the order asked; `None` while a call is in progress.
    pub tests: Vec<Option<TestResult>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TestLabel {
    test: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuiteLabel {
    suite: String,
}

/// The runs, shared by the core loop (which finishes them) and the admin API.
pub struct Hub {
    runs: Mutex<VecDeque<Run>>,
    next: AtomicU64,
    keep: AtomicU64,
    result: Family<TestLabel, Gauge>,
    pdd: Family<TestLabel, Gauge<f64, AtomicU64>>,
    mos: Family<TestLabel, Gauge<f64, AtomicU64>>,
    rtt: Family<TestLabel, Gauge<f64, AtomicU64>>,
    total: Family<ResultLabel, Counter>,
    suites: Family<SuiteLabel, Gauge>,
    active: Gauge<i64, AtomicI64>,
}

impl Hub {
    pub fn new(registry: &mut Registry, keep: u32) -> Arc<Hub> {
        let hub = Hub {
            runs: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            keep: AtomicU64::new(u64::from(keep.max(1))),
            result: Family::default(),
            pdd: Family::default(),
            mos: Family::default(),
            rtt: Family::default(),
            total: Family::default(),
            suites: Family::default(),
            active: Gauge::default(),
        };
        registry.register(
            "trunkgate_testcall_result",
            "Last result of each test call: 1 passed, 0 failed",
            hub.result.clone(),
        );
        registry.register(
            "trunkgate_testcall_pdd_seconds",
            "Post-dial delay of each test call's last run",
            hub.pdd.clone(),
        );
        registry.register(
            "trunkgate_testcall_mos",
            "Estimated MOS (E-model) of the audio each test call last received",
            hub.mos.clone(),
        );
        registry.register(
            "trunkgate_testcall_round_trip_seconds",
            "Round trip of each echo test call's audio, last run",
            hub.rtt.clone(),
        );
        registry.register(
            "trunkgate_testcalls",
            "Test calls finished, by result (passed, failed)",
            hub.total.clone(),
        );
        registry.register(
            "trunkgate_validate_passed",
            "Last validation run of each suite: 1 passed, 0 failed",
            hub.suites.clone(),
        );
        registry.register(
            "trunkgate_testcall_runs_active",
            "Runs of test calls in progress",
            hub.active.clone(),
        );
        for result in ["passed", "failed"] {
            drop(hub.total.get_or_create(&ResultLabel {
                result: result.to_owned(),
            }));
        }
        Arc::new(hub)
    }

    pub fn set_keep(&self, keep: u32) {
        self.keep.store(u64::from(keep.max(1)), Ordering::Relaxed);
    }

    /// Register a new run of `tests` calls; its id.
    pub fn open(&self, kind: &str, suite: Option<String>, drills: Vec<u64>, tests: usize) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let run = Run {
            id,
            kind: kind.to_owned(),
            suite,
            drills,
            started_unix_ms: crate::drills::wall_ms(),
            finished_unix_ms: None,
            state: "running",
            passed: None,
            tests: vec![None; tests],
        };
        let keep = usize::try_from(self.keep.load(Ordering::Relaxed)).unwrap_or(20);
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.push_back(run);
        // Finished runs beyond `keep` go, oldest first; running ones stay.
        while runs.len() > keep {
            match runs.iter().position(|r| r.state == "done") {
                Some(i) => {
                    runs.remove(i);
                }
                None => break,
            }
        }
        self.active.inc();
        id
    }

    /// Test `index` of run `run` is done.
    pub fn finished(&self, run: u64, index: usize, result: TestResult) {
        let label = TestLabel {
            test: result.name.clone(),
        };
        self.result
            .get_or_create(&label)
            .set(i64::from(result.passed));
        if let Some(pdd) = result.pdd_ms {
            self.pdd.get_or_create(&label).set(pdd / 1000.0);
        }
        if let Some(m) = &result.media {
            if let Some(mos) = m.mos {
                self.mos.get_or_create(&label).set(mos);
            }
            if let Some(rtt) = m.echo.as_ref().and_then(|e| e.round_trip_ms) {
                self.rtt.get_or_create(&label).set(rtt / 1000.0);
            }
        }
        let outcome = if result.passed { "passed" } else { "failed" };
        self.total
            .get_or_create(&ResultLabel {
                result: outcome.to_owned(),
            })
            .inc();
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = runs.iter_mut().find(|r| r.id == run) else {
            return;
        };
        if let Some(slot) = r.tests.get_mut(index) {
            *slot = Some(result);
        }
        if r.tests.iter().all(Option::is_some) {
            let passed = r.tests.iter().flatten().all(|t| t.passed);
            r.state = "done";
            r.passed = Some(passed);
            r.finished_unix_ms = Some(crate::drills::wall_ms());
            self.active.dec();
            if let Some(suite) = &r.suite {
                self.suites
                    .get_or_create(&SuiteLabel {
                        suite: suite.clone(),
                    })
                    .set(i64::from(passed));
            }
            let failed: Vec<&str> = r
                .tests
                .iter()
                .flatten()
                .filter(|t| !t.passed)
                .map(|t| t.name.as_str())
                .collect();
            if passed {
                tracing::info!(run = r.id, kind = %r.kind, suite = r.suite.as_deref(), tests = r.tests.len(), "validation run passed");
            } else {
                tracing::warn!(run = r.id, kind = %r.kind, suite = r.suite.as_deref(), failed = %failed.join(", "), "validation run FAILED");
            }
        }
    }

    pub fn run(&self, id: u64) -> Option<Run> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter().find(|r| r.id == id).cloned()
    }

    /// The latest run, or the latest finished one.
    pub fn latest(&self, finished: bool) -> Option<Run> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter()
            .rev()
            .find(|r| !finished || r.state == "done")
            .cloned()
    }

    pub fn runs(&self) -> Vec<Run> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter().cloned().collect()
    }

    /// Runs made while drill `drill` was active.
    pub fn during_drill(&self, drill: u64) -> Vec<Run> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter()
            .filter(|r| r.drills.contains(&drill))
            .cloned()
            .collect()
    }
}
