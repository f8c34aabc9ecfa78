//! The running process's failover drills: the control crate's [`Drills`] overlay behind one
//! mutex, shared by routing (per new call), admission (cap=N), the health feed (probe
//! results, expiry on the core thread's timer) and the admin API (start, stop, reports).
//! While no drill runs, routing pays one atomic load per candidate and takes no lock.
//!
//! `trunkgate_drill_active{trunk,mode}` is 1 per running drill ([`DrillCollector`]).

use crate::trunk_health::TrunkMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use trunkgate_control::drill::{Drill, DrillReport};
use trunkgate_control::{DrillMode, Drills, Health, TrunkId};

#[derive(Debug, Default)]
pub struct DrillBoard {
    /// Some drill is running (read without the lock on every call).
    any: AtomicBool,
    drills: Mutex<Drills>,
}

/// Now, in Unix milliseconds (drill reports carry wall-clock times).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DrillBoard {
    fn lock(&self) -> MutexGuard<'_, Drills> {
        self.drills.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is any drill running?
    #[inline]
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The drill on `trunk`, if one runs.
    #[inline]
    pub fn mode(&self, trunk: TrunkId) -> Option<DrillMode> {
        if !self.any() {
            return None;
        }
        self.lock().mode(trunk)
    }

    /// Work on the drills under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Drills) -> R) -> R {
        let mut drills = self.lock();
        let result = f(&mut drills);
        self.any.store(!drills.is_empty(), Ordering::Relaxed);
        result
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.any() {
            return None;
        }
        self.lock().next_deadline()
    }
}

/// Drills that ended (`how`: "expired", "stopped", "ended by shutdown"): one log line each,
/// and their trunks' health (and its metrics) put back as it was when the drill started.
pub fn ended(
    now: Instant,
    how: &str,
    ended: &[(Drill, DrillReport)],
    health: &Mutex<Health>,
    metrics: &TrunkMetrics,
) {
    if ended.is_empty() {
        return;
    }
    let mut health = health.lock().unwrap_or_else(|e| e.into_inner());
    for (drill, report) in ended {
        if let Some(before) = drill.state_before {
            if health.state(now, drill.trunk) != Some(before) {
                if let Some(change) = health.restore(now, drill.trunk, before) {
                    metrics.state_changed(&report.trunk, &change);
                }
            }
        }
        if drill.mode == DrillMode::Down {
            let up = health.state(now, drill.trunk) != Some(trunkgate_control::TrunkState::Down);
            metrics.set_up(&report.trunk, up);
        }
        tracing::info!(
            drill = report.id,
            trunk = %report.trunk,
            mode = %report.mode,
            calls = report.calls_attempted,
            rerouted = report.rerouted,
            failed = report.failed,
            failovers = report.failovers,
            "drill {how}: trunk restored"
        );
    }
}

/// Exports `trunkgate_drill_active{trunk,mode}` at scrape time.
#[derive(Debug)]
pub struct DrillCollector(pub Arc<DrillBoard>);

impl Collector for DrillCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let active: Vec<(String, String)> = self.0.with(|d| {
            d.active()
                .iter()
                .map(|a| (a.report().trunk.clone(), a.mode.to_string()))
                .collect()
        });
        let mut family = encoder.encode_descriptor(
            "trunkgate_drill_active",
            "1 per failover drill running, by trunk and mode",
            None,
            MetricType::Gauge,
        )?;
        for (trunk, mode) in &active {
            let labels = [("trunk", trunk.as_str()), ("mode", mode.as_str())];
            family.encode_family(&labels)?.encode_gauge(&1i64)?;
        }
        Ok(())
    }
}
