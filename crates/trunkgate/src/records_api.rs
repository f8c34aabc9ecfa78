//! Call records in the daemon: starting the writer from `[records]`, the admin calls
//! `GET /records` and `GET /capacity` (each opens its own read-only SQLite connection on a
//! blocking thread: a query never holds up the writer or the SIP core), and the
//! `trunkgate_records_*` metrics.

use crate::admin::AdminState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use trunkgate_records::{Counters, Store, Writer, WriterConfig};

/// What the admin API needs to read records.
#[derive(Debug, Clone)]
pub struct RecordsView {
    pub path: PathBuf,
    pub counters: Arc<Counters>,
}

/// Open the store of `[records]` and start its writer. `None` when records are off, or
/// when the store cannot be opened: then the error is logged and the daemon serves calls
/// without records (calls matter more than their records).
pub fn start(settings: &trunkgate_config::RecordsSettings) -> Option<(Writer, RecordsView)> {
    if !settings.enabled {
        tracing::info!("call records are off ([records] enabled = false)");
        return None;
    }
    let path = settings.resolved_path();
    match Writer::start(WriterConfig::new(
        path.clone(),
        settings.keep,
        settings.max_size,
    )) {
        Ok(writer) => {
            tracing::info!(
                path = %path.display(),
                keep = ?settings.keep,
                max_size = settings.max_size,
                "call records"
            );
            let view = RecordsView {
                path,
                counters: writer.counters().clone(),
            };
            Some((writer, view))
        }
        Err(error) => {
            tracing::error!(
                %error,
                "call records are OFF: the store cannot be opened; set [records] path to a \
                 writable file (calls are served without records)"
            );
            None
        }
    }
}

/// `1h`, `30m`, `7d`, `90s`.
fn since(text: &str) -> Option<Duration> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t.get(..digits)?.parse().ok()?;
    let unit = match t.get(digits..)? {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit).map(Duration::from_secs)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Records one `GET /records` returns by default, and at most (`?limit=`).
const RECORDS_DEFAULT: usize = 100_000;
const RECORDS_MAX: usize = 1_000_000;
/// Most records one `GET /capacity` reads (about 1.2 GB of memory at the most; a site
/// beyond it asks for fewer `days`): the answer says `truncated`.
const CAPACITY_MAX: usize = 2_000_000;

#[derive(Debug, Default, serde::Deserialize)]
pub struct RecordsQuery {
    pub since: Option<String>,
    pub trunk: Option<String>,
    pub limit: Option<usize>,
}

/// The store, read-only, on a blocking thread.
async fn read<T: Send + 'static>(
    state: &AdminState,
    f: impl FnOnce(&Store) -> Result<T, trunkgate_records::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let Some(view) = state.records.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "call records are off ([records] enabled = false, or the store could not be \
             opened at start: see the log)"
                .into(),
        ));
    };
    let joined = tokio::task::spawn_blocking(move || {
        let store = Store::open_read(&view.path)?;
        f(&store)
    })
    .await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /records?since=1h&trunk=T&limit=N`: records of calls that were up at any time in
/// the window (ended within it), oldest first; at most `limit` (default 100,000).
pub async fn records(State(state): State<AdminState>, Query(q): Query<RecordsQuery>) -> Response {
    let window = match q.since.as_deref().map(since) {
        None => Duration::from_secs(3600),
        Some(Some(d)) => d,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "since must be a number and a unit s, m, h or d, e.g. 1h".into(),
            );
        }
    };
    let since_ms = now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let limit = q.limit.unwrap_or(RECORDS_DEFAULT).min(RECORDS_MAX);
    let trunk = q.trunk.clone();
    match read(&state, move |s| {
        s.query(since_ms, trunk.as_deref(), limit.saturating_add(1))
    })
    .await
    {
        Ok(mut rs) => {
            let truncated = rs.len() > limit;
            rs.truncate(limit);
            axum::Json(serde_json::json!({
                "since_ms": since_ms,
                "count": rs.len(),
                "truncated": truncated,
                "records": rs,
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CapacityQuery {
    /// Fraction: 0.3 = +30 %.
    pub growth: Option<f64>,
    /// Fraction: 0.01 = 1 %.
    pub gos: Option<f64>,
    pub days: Option<u32>,
}

/// `GET /capacity?growth=0.3&gos=0.01&days=7`: per trunk busy hour, Erlangs, peak,
/// limit, channels for the grade of service now and after growth, bandwidth, trend.
pub async fn capacity(State(state): State<AdminState>, Query(q): Query<CapacityQuery>) -> Response {
    let growth = q.growth.unwrap_or(0.0);
    let gos = q.gos.unwrap_or(0.01);
    let days = q.days.unwrap_or(7).clamp(1, 400);
    if !(gos > 0.0 && gos < 1.0) {
        return error(
            StatusCode::BAD_REQUEST,
            "gos must be a fraction between 0 and 1, e.g. 0.01".into(),
        );
    }
    if !(growth > -1.0 && growth.is_finite()) {
        return error(
            StatusCode::BAD_REQUEST,
            "growth must be a fraction above -1, e.g. 0.3".into(),
        );
    }
    let limits: Vec<(String, Option<u32>)> = match &state.live {
        Some(live) => live
            .current()
            .routing
            .table()
            .trunks()
            .iter()
            .map(|t| (t.name.clone(), t.max_sessions))
            .collect(),
        None => Vec::new(),
    };
    let until = now_ms();
    let since_ms = until - i64::from(days) * 86_400_000;
    let handled = state.records.as_ref().map_or(0, |v| {
        v.counters.written.load(Relaxed) + v.counters.dropped.load(Relaxed)
    });
    let result = read(&state, move |s| {
        let records = s.query(since_ms, None, CAPACITY_MAX + 1)?;
        let truncated = records.len() > CAPACITY_MAX;
        let records = &records[..records.len().min(CAPACITY_MAX)];
        let report =
            trunkgate_records::plan::capacity(records, &limits, gos, growth, since_ms, until);
        let all = trunkgate_records::stats::per_key(records, |_| Some("all".to_owned()));
        let busy_hour_calls = all
            .first()
            .and_then(|a| a.busy_hour.as_ref())
            .map_or(0, |b| b.seizures);
        Ok((report, truncated, busy_hour_calls))
    })
    .await;
    match result {
        Ok((report, truncated, busy_hour_calls)) => {
            let mut v = serde_json::to_value(report).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("truncated".into(), truncated.into());
                o.insert(
                    "headroom".into(),
                    headroom(handled, busy_hour_calls, growth),
                );
            }
            axum::Json(v).into_response()
        }
        Err(r) => r,
    }
}

/// Each trunk's one-line capacity advice over the last 7 days of records (1 % grade of
/// service, no growth), for the status page: `(trunk, advice)`; empty without records.
pub async fn advice_lines(state: &AdminState) -> Vec<(String, String)> {
    if state.records.is_none() {
        return Vec::new();
    }
    let limits: Vec<(String, Option<u32>)> = match &state.live {
        Some(live) => live
            .current()
            .routing
            .table()
            .trunks()
            .iter()
            .map(|t| (t.name.clone(), t.max_sessions))
            .collect(),
        None => Vec::new(),
    };
    let until = now_ms();
    let since_ms = until - 7 * 86_400_000;
    read(state, move |s| {
        let records = s.query(since_ms, None, CAPACITY_MAX)?;
        let report =
            trunkgate_records::plan::capacity(&records, &limits, 0.01, 0.0, since_ms, until);
        Ok(report
            .trunks
            .into_iter()
            .map(|t| (t.stats.key, t.advice))
            .collect())
    })
    .await
    .unwrap_or_default()
}

/// CPU seconds (user + system) this process used since it started.
fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(u.user_time()) + secs(u.system_time()))
}

/// Trunkgate's own headroom: CPU per call attempt since start (everything the process did —
/// signalling, media relay, probes — divided by the attempts it recorded: an upper bound),
/// × the busy hour's calls per second, against the cores it may use; now and after growth.
fn headroom(handled: u64, busy_hour_calls: u64, growth: f64) -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpu_seconds();
    let per_call = cpu.filter(|_| handled > 0).map(|c| c / handled as f64);
    let cps = busy_hour_calls as f64 / 3600.0;
    let share = per_call.map(|p| p * cps / cores as f64);
    serde_json::json!({
        "cpu_seconds": cpu,
        "calls_since_start": handled,
        "cpu_per_call_us": per_call.map(|p| p * 1e6),
        "busy_hour_calls_per_s": cps,
        "cores": cores,
        "cpu_share_at_busy_hour": share,
        "cpu_share_after_growth": share.map(|s| s * (1.0 + growth)),
    })
}

/// `trunkgate_records_{written,dropped,expired}_total`.
#[derive(Debug)]
pub struct RecordsCollector(pub Arc<Counters>);

impl Collector for RecordsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, v) in [
            (
                "trunkgate_records_written",
                "Call records committed to the store",
                self.0.written.load(Relaxed),
            ),
            (
                "trunkgate_records_dropped",
                "Call records never stored: the writer's queue was full (it fell behind the \
                 calls), or a write failed",
                self.0.dropped.load(Relaxed),
            ),
            (
                "trunkgate_records_expired",
                "Call records deleted by retention ([records] keep, max_size)",
                self.0.expired.load(Relaxed),
            ),
        ] {
            let c = ConstCounter::new(v);
            let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_scales_cpu_per_call_by_the_busy_hour_rate() {
        let h = headroom(1000, 36_000, 0.5);
        assert_eq!(h["busy_hour_calls_per_s"], 10.0);
        let per_call = h["cpu_per_call_us"].as_f64().unwrap();
        let share = h["cpu_share_at_busy_hour"].as_f64().unwrap();
        let cores = h["cores"].as_f64().unwrap();
        assert!((share - per_call / 1e6 * 10.0 / cores).abs() < 1e-12);
        let grown = h["cpu_share_after_growth"].as_f64().unwrap();
        assert!((grown - share * 1.5).abs() < 1e-12);
        assert_eq!(
            headroom(0, 10, 0.0)["cpu_per_call_us"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn windows() {
        assert_eq!(since("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(since("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(since("h"), None);
        assert_eq!(since("1y"), None);
        assert_eq!(since("99999999999999999999d"), None);
    }
}
