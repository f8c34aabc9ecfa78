//! The admin HTTP API (axum), JSON over HTTP on `admin.listen` (docs/api.md): the status
//! page `GET /` and its data `GET /concurrency` ([`crate::status_page`]), `GET /health`, `GET /metrics`, `GET /status`, `GET /calls` (anchored calls with
//! per-stream media figures), `GET /trunks` (trunk health, sessions, limits, drills, the provider accounts and the PBX nodes), and the
//! operator calls in [`crate::admin_control`]: `POST /reload`, `GET|POST /drills`,
//! `POST /drills/stop`, `GET /drills/reports[/{id}]`, and call records in
//! [`crate::records_api`]: `GET /records`, `GET /capacity`. Every call but GET/HEAD needs the
//! bearer token when one is configured ([`crate::admin_auth`]).
//!
//! `/health` and `/metrics` read atomics published by the core task; `/calls` and the media
//! part of `/metrics` take the relay's control lock briefly (never held on the packet
//! path). Nothing here waits on the SIP core: reloads reach it as a message.

use crate::metrics::{self, CoreStatus};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(Clone)]
pub struct AdminState {
    pub status: Arc<CoreStatus>,
    pub registry: Arc<Registry>,
    pub relay: Option<Arc<trunkgate_media::Relay>>,
    /// The descriptor budget and its use (`/health` shows it).
    pub budget: Option<Arc<crate::fd_budget::BudgetView>>,
    pub trunks: Option<TrunksView>,
    /// The policy in force, reloads and drills (`None` in unit tests of the read side).
    pub live: Option<Arc<crate::live::LivePolicy>>,
    pub auth: Arc<crate::admin_auth::AdminAuth>,
    /// Call records (`GET /records`, `GET /capacity`); `None`: records are off.
    pub records: Option<crate::records_api::RecordsView>,
}

/// What `GET /trunks` reads: trunk health (behind its mutex, held only to copy a view) and
/// the core's exact session gauges.
#[derive(Clone)]
pub struct TrunksView {
    pub live: Arc<crate::live::LivePolicy>,
    pub proxy: Arc<trunkgate_sip::ProxyMetrics>,
}

impl TrunksView {
    /// Sessions in progress on account `id` (all its trunks), from the core's gauge.
    fn account_sessions(&self, id: trunkgate_control::AccountId) -> i64 {
        self.proxy
            .accounts
            .get(usize::from(id.0))
            .map_or(0, |g| g.load(Ordering::Relaxed).max(0))
    }

    /// Every trunk: identity, limits, sessions now, its account, and its health; then
    /// every account: its trunks, limits and sessions now.
    pub fn snapshot(&self, now: std::time::Instant) -> serde_json::Value {
        let live = self.live.current();
        let routing = &live.routing;
        let health = {
            let health = routing.health().lock().unwrap_or_else(|e| e.into_inner());
            health.view(now)
        };
        let table = routing.table();
        let counts = self.live.counts();
        let trunks: Vec<serde_json::Value> = table
            .trunks()
            .iter()
            .map(|trunk| {
                let slot = 2 + usize::from(trunk.id.0);
                let sessions: i64 = self.proxy.peers.get(slot).map_or(0, |p| {
                    p.dialogs.iter().map(|d| d.load(Ordering::Relaxed)).sum()
                });
                let account = trunk.account.and_then(|id| table.account(id));
                // Every address (a DNS name's, in RFC 3263 order) and whether calls go to it.
                let addresses: Vec<serde_json::Value> = {
                    let h = routing.health().lock().unwrap_or_else(|e| e.into_inner());
                    trunk
                        .addresses
                        .iter()
                        .map(|&a| {
                            serde_json::json!({
                                "address": a.to_string(),
                                "usable": h.address_usable(now, trunk.id, a),
                            })
                        })
                        .collect()
                };
                let mut entry = serde_json::json!({
                    "name": trunk.name,
                    "id": trunk.id.0,
                    "host": trunk.uri_host,
                    "address": trunk.address.to_string(),
                    "addresses": addresses,
                    "sessions": sessions.max(0),
                    "max_sessions": trunk.max_sessions,
                    "max_cps": trunk.max_cps,
                    "weight": trunk.weight,
                    "account": account.map(|a| a.name.as_str()),
                    "account_sessions": account.map(|a| self.account_sessions(a.id)),
                    "account_max_sessions": account.and_then(|a| a.max_sessions),
                    "cps": (self.live.trunk_cps(trunk.id) * 10.0).round() / 10.0,
                    "attempts": crate::trunk_health::TrunkCounts::get(&counts.attempts, trunk.id),
                    "failovers": crate::trunk_health::TrunkCounts::get(&counts.failovers, trunk.id),
                    "draining": live.draining.contains(&trunk.name),
                    "drill": routing.drills().mode(trunk.id).map(|m| m.to_string()),
                    "probe": trunk.probe.as_ref().map(|p| serde_json::json!({
                        "interval_ms": p.interval.as_millis() as u64,
                        "timeout_ms": p.timeout.as_millis() as u64,
                        "down_after": p.down_after,
                        "up_after": p.up_after,
                    })),
                });
                let view = health.iter().find(|h| h.trunk == trunk.id);
                merge_health(&mut entry, view);
                entry
            })
            .collect();
        let pbx_health = {
            let health = routing
                .pbx_health()
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            health.view(now)
        };
        let pbx: Vec<serde_json::Value> = table
            .pbx_nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut entry = serde_json::json!({
                    "name": node.name,
                    "address": node.address.to_string(),
                    "dids": node.dids,
                    "probe": node.probe.as_ref().map(|p| serde_json::json!({
                        "interval_ms": p.interval.as_millis() as u64,
                        "timeout_ms": p.timeout.as_millis() as u64,
                        "down_after": p.down_after,
                        "up_after": p.up_after,
                    })),
                });
                let view = pbx_health.iter().find(|h| usize::from(h.trunk.0) == i);
                merge_health(&mut entry, view);
                entry
            })
            .collect();
        let accounts: Vec<serde_json::Value> = table
            .accounts()
            .iter()
            .map(|a| {
                let trunks: Vec<&str> = a
                    .trunks
                    .iter()
                    .filter_map(|id| table.trunk(*id).map(|t| t.name.as_str()))
                    .collect();
                serde_json::json!({
                    "name": a.name,
                    "id": a.id.0,
                    "trunks": trunks,
                    "sessions": self.account_sessions(a.id),
                    "max_sessions": a.max_sessions,
                    "max_inbound": a.max_inbound,
                    "max_outbound": a.max_outbound,
                    "max_cps": a.max_cps,
                    "cps_burst": a.cps_burst,
                })
            })
            .collect();
        serde_json::json!({ "trunks": trunks, "accounts": accounts, "pbx": pbx })
    }
}

pub fn router(state: AdminState) -> Router {
    use crate::admin_control as control;
    use axum::routing::post;
    let auth = state.auth.clone();
    Router::new()
        .route("/", get(crate::status_page::page))
        .route("/concurrency", get(crate::status_page::concurrency))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/status", get(control::status))
        .route("/calls", get(calls))
        .route("/trunks", get(trunks))
        .route("/reload", post(control::reload))
        .route("/drills", get(control::drills).post(control::drill_start))
        .route("/drills/stop", post(control::drill_stop))
        .route("/drills/reports", get(control::drill_reports))
        .route("/drills/reports/{id}", get(control::drill_report))
        .route("/testcalls", post(crate::testcall_api::testcall))
        .route("/validate", post(crate::testcall_api::validate))
        .route("/validate/runs", get(crate::testcall_api::runs))
        .route("/validate/runs/{id}", get(crate::testcall_api::run))
        .route("/records", get(crate::records_api::records))
        .route("/capacity", get(crate::records_api::capacity))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::admin_auth::require_token,
        ))
        .with_state(state)
}

/// Serve the admin API on an already-bound listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "admin API stopped");
    }
}

async fn health(State(state): State<AdminState>) -> Response {
    let s = &state.status;
    let body = serde_json::json!({
        "status": "ok",
        "dialogs": s.dialogs.load(Ordering::Relaxed),
        "transactions": s.transactions.load(Ordering::Relaxed),
        "shutting_down": s.shutting_down.load(Ordering::Relaxed),
        "fd_budget": state.budget.as_ref().map(|b| b.json()),
    });
    axum::Json(body).into_response()
}

/// Copy a health view's fields (state, why, probes, …) into a `/trunks` entry.
fn merge_health(entry: &mut serde_json::Value, view: Option<&trunkgate_control::TrunkHealth>) {
    let (Some(view), Some(object)) = (view, entry.as_object_mut()) else {
        return;
    };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(view) {
        for (key, value) in fields {
            if key != "trunk" && key != "name" {
                object.insert(key, value);
            }
        }
    }
}

/// `GET /trunks`: each trunk's state (up, down, half-open), why and since when, its last
/// probe, sessions against its limit.
async fn trunks(State(state): State<AdminState>) -> Response {
    match &state.trunks {
        Some(view) => axum::Json(view.snapshot(std::time::Instant::now())).into_response(),
        None => axum::Json(serde_json::json!({ "trunks": [], "accounts": [] })).into_response(),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    match metrics::render(&state.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}

/// `GET /calls` filters: `?trunk=carrier-a&call_id=…&limit=100`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallsQuery {
    pub trunk: Option<String>,
    pub call_id: Option<String>,
    pub limit: Option<usize>,
}

/// Most calls one `GET /calls` returns unless `limit` says otherwise.
const CALLS_LIMIT: usize = 1000;

/// The calls matching `q`, oldest id first: how many match, and the first `limit` of them.
pub fn select_calls(
    calls: Vec<trunkgate_media::CallSnapshot>,
    q: &CallsQuery,
) -> (usize, Vec<trunkgate_media::CallSnapshot>) {
    let matching: Vec<_> = calls
        .into_iter()
        .filter(|c| q.trunk.as_ref().is_none_or(|t| c.trunk.as_ref() == Some(t)))
        .filter(|c| q.call_id.as_ref().is_none_or(|id| &c.call_id == id))
        .collect();
    let total = matching.len();
    let limit = q.limit.unwrap_or(CALLS_LIMIT);
    (total, matching.into_iter().take(limit).collect())
}

/// Anchored calls: per stream and leg, addresses (local, SDP, latched) and packet, loss and
/// jitter figures (see docs/operations.md). `total` counts every match, `calls` holds at most
/// `limit` (default 1,000) of them. Built on a blocking thread (milliseconds of CPU with
/// thousands of calls; the relay's control lock is held only a chunk at a time, see
/// docs/design/media.md), so the runtime's workers keep serving SIP over TCP meanwhile.
async fn calls(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<CallsQuery>,
) -> Response {
    let relay = state.relay.clone();
    let built = tokio::task::spawn_blocking(move || {
        let all = relay.as_ref().map(|r| r.calls()).unwrap_or_default();
        let (total, calls) = select_calls(all, &q);
        serde_json::to_vec(&serde_json::json!({ "total": total, "calls": calls }))
    })
    .await;
    match built {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(_)) | Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "building the call list failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkgate_media::CallSnapshot;

    fn call(id: u64, trunk: Option<&str>) -> CallSnapshot {
        CallSnapshot {
            id,
            call_id: format!("c{id}@pbx"),
            trunk: trunk.map(str::to_owned),
            direction: "outbound",
            age_secs: 1.0,
            idle_secs: 0.0,
            on_hold: false,
            quality: trunkgate_media::CallQuality {
                mos: None,
                one_way: None,
            },
            streams: Vec::new(),
        }
    }

    #[test]
    fn calls_filter_by_trunk_and_call_id_and_limit() {
        let all = || {
            vec![
                call(1, Some("carrier-a")),
                call(2, Some("carrier-b")),
                call(3, Some("carrier-a")),
                call(4, None),
            ]
        };
        let ids = |v: Vec<CallSnapshot>| v.iter().map(|c| c.id).collect::<Vec<_>>();
        let (total, got) = select_calls(all(), &CallsQuery::default());
        assert_eq!((total, ids(got)), (4, vec![1, 2, 3, 4]));
        let q = CallsQuery {
            trunk: Some("carrier-a".into()),
            ..CallsQuery::default()
        };
        let (total, got) = select_calls(all(), &q);
        assert_eq!((total, ids(got)), (2, vec![1, 3]));
        let q = CallsQuery {
            call_id: Some("c2@pbx".into()),
            ..CallsQuery::default()
        };
        assert_eq!(ids(select_calls(all(), &q).1), vec![2]);
        let q = CallsQuery {
            limit: Some(1),
            ..CallsQuery::default()
        };
        let (total, got) = select_calls(all(), &q);
        assert_eq!((total, ids(got)), (4, vec![1]));
    }
}
