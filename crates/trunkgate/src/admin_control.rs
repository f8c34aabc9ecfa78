//! The operator's admin calls: `GET /status`, `POST /reload`, drills (`GET|POST /drills`,
//! `POST /drills/stop`, `GET /drills/reports[/{id}]`). Bodies and answers are JSON; a refusal
//! is a 4xx with `{"error": "..."}` (and the details that explain it). docs/api.md has
//! every call with an example.

use crate::admin::AdminState;
use crate::admin_auth::Caller;
use crate::live::LivePolicy;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Instant;
use trunkgate_control::drill::{self, DrillRequest};
use trunkgate_control::{DrillMode, TrunkId};

fn refuse(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(json!({ "error": error.into() }))).into_response()
}

/// `404`: `name` is no trunk of `policy` (the ones it has are listed).
pub(crate) fn unknown_trunk(policy: &trunkgate_config::Policy, name: &str) -> Response {
    let names: Vec<&str> = policy.trunks.iter().map(|t| t.name.as_str()).collect();
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "no trunk \"{name}\" in the policy; trunks: {}",
            names.join(", ")
        ),
    )
}

fn not_loaded() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the policy is not loaded yet",
    )
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The running drills, as `/status` and `/drills` show them.
pub(crate) fn active_drills(live: &LivePolicy, now: Instant) -> serde_json::Value {
    let drills = live.shared().drills.with(|d| {
        d.active()
            .iter()
            .map(|a| {
                let r = a.current_report();
                json!({
                    "id": r.id,
                    "trunk": r.trunk,
                    "mode": r.mode,
                    "started_by": r.started_by,
                    "started_unix_ms": r.started_unix_ms,
                    "ends_unix_ms": r.ends_unix_ms,
                    "left_ms": ms(a.left(now)),
                    "calls_attempted": r.calls_attempted,
                    "rerouted": r.rerouted,
                    "failed": r.failed,
                })
            })
            .collect::<Vec<_>>()
    });
    serde_json::Value::Array(drills)
}

/// `GET /status`: version, uptime, the policy in force, calls, call rate, drills.
pub async fn status(State(state): State<AdminState>) -> Response {
    let Some(live) = state.live.as_ref() else {
        return not_loaded();
    };
    let snapshot = live.current();
    let now = Instant::now();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": live.uptime().as_secs(),
        "policy": {
            "file": snapshot.origin(),
            "hash": snapshot.hash,
            "loaded_unix_ms": snapshot.loaded_unix_ms,
            "trunks": snapshot.policy.trunks.len(),
            "routes": snapshot.policy.routes.len(),
            "draining": snapshot.draining,
        },
        "calls": state.status.dialogs.load(Ordering::Relaxed),
        "cps": (live.cps() * 10.0).round() / 10.0,
        "shutting_down": state.status.shutting_down.load(Ordering::Relaxed),
        "drills": active_drills(live, now),
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadBody {
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /reload` (`{"dry_run": false}`): re-read the policy file, validate, diff, apply.
/// 200 with the changes when applied (or only checked); 422 with the errors when refused.
pub async fn reload(State(state): State<AdminState>, body: Option<Json<ReloadBody>>) -> Response {
    let Some(live) = state.live.clone() else {
        return not_loaded();
    };
    let dry_run = body.is_some_and(|b| b.dry_run);
    let outcome = tokio::task::spawn_blocking(move || live.reload(dry_run, "admin API")).await;
    match outcome {
        Ok(outcome) if outcome.result == "refused" => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(outcome)).into_response()
        }
        Ok(outcome) => Json(outcome).into_response(),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed"),
    }
}

/// `GET /drills`: running drills.
pub async fn drills(State(state): State<AdminState>) -> Response {
    match state.live.as_ref() {
        Some(live) => {
            Json(json!({ "drills": active_drills(live, Instant::now()) })).into_response()
        }
        None => not_loaded(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillBody {
    pub trunk: String,
    pub mode: String,
    /// `"20s"`, `"10m"`: required, at most `drill.max_duration`.
    #[serde(rename = "for")]
    pub duration: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
}

/// `POST /drills`: start a drill (201), or with `dry_run` say what it would do (200). A
/// drill that would leave a route without a trunk is refused (409) unless `force`.
pub async fn drill_start(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DrillBody>,
) -> Response {
    let Some(live) = state.live.as_ref() else {
        return not_loaded();
    };
    let snapshot = live.current();
    let table = snapshot.routing.table();
    let Some(trunk) = table.trunk_id(&body.trunk) else {
        return unknown_trunk(&snapshot.policy, &body.trunk);
    };
    if snapshot.draining.contains(&body.trunk) {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "trunk \"{}\" was removed by a reload and is draining",
                body.trunk
            ),
        );
    }
    let mode: DrillMode = match body.mode.parse() {
        Ok(mode) => mode,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let duration = match trunkgate_config::parse_duration(&body.duration) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("--for: {e}")),
    };
    let now = Instant::now();
    let drills = &live.shared().drills;
    let (usable, state_before): (Vec<(TrunkId, bool)>, _) = {
        let health = live
            .shared()
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let usable = table
            .trunks()
            .iter()
            .map(|t| {
                let drilled_out = drills.mode(t.id).is_some_and(|m| !m.takes_calls());
                (t.id, health.usable(now, t.id) && !drilled_out)
            })
            .collect();
        (usable, health.state(now, trunk))
    };
    let usable_fn = |id: TrunkId| usable.iter().any(|(t, ok)| *t == id && *ok);
    let sessions = |id: TrunkId| live.sessions(id);
    let run = drill::dry_run(
        table,
        trunk,
        mode,
        &usable_fn,
        &sessions,
        live.peak_last_hour(trunk),
    );
    let empty: Vec<String> = run.empty_routes().iter().map(|s| (*s).to_owned()).collect();
    if !empty.is_empty() && !body.force {
        return (
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!(
                    "drill {mode} on {} would leave route(s) {} with no healthy trunk; \
                     add --force to start it anyway",
                    body.trunk,
                    empty.join(", ")
                ),
                "dry_run": run,
            })),
        )
            .into_response();
    }
    if body.dry_run {
        return Json(json!({ "dry_run": run })).into_response();
    }
    let request = DrillRequest {
        trunk,
        trunk_name: body.trunk.clone(),
        mode,
        duration,
        started_by: caller.0.clone(),
        max_duration: snapshot.policy.drill.max_duration,
        state_before,
    };
    let started = drills.with(|d| {
        d.start(now, crate::drills::wall_ms(), request)
            .map(|drill| drill.current_report())
    });
    match started {
        Ok(report) => {
            live.wake_core();
            if mode == DrillMode::Down {
                // The trunk counts as failed: dashboards and alerts see it down.
                live.trunk_metrics().set_up(&report.trunk, false);
            }
            tracing::info!(
                drill = report.id,
                trunk = %report.trunk,
                mode = %report.mode,
                for_ = ?duration,
                by = %report.started_by,
                forced = body.force && !empty.is_empty(),
                "drill started"
            );
            (
                StatusCode::CREATED,
                Json(json!({ "drill": report, "dry_run": run })),
            )
                .into_response()
        }
        Err(e @ drill::DrillError::Busy(_)) => refuse(StatusCode::CONFLICT, e.to_string()),
        Err(e) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    pub trunk: Option<String>,
    #[serde(default)]
    pub all: bool,
}

/// `POST /drills/stop` (`{"trunk": "carrier-a"}` or `{"all": true}`): end drills now.
pub async fn drill_stop(State(state): State<AdminState>, Json(body): Json<StopBody>) -> Response {
    let Some(live) = state.live.as_ref() else {
        return not_loaded();
    };
    let trunk = match (&body.trunk, body.all) {
        (Some(name), false) => match live.current().routing.table().trunk_id(name) {
            Some(id) => Some(id),
            None => return refuse(StatusCode::NOT_FOUND, format!("no trunk \"{name}\"")),
        },
        (None, true) => None,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "name one trunk, or ask for all drills ({\"all\": true})",
            );
        }
    };
    let ended = live
        .shared()
        .drills
        .with(|d| d.stop(crate::drills::wall_ms(), trunk));
    if ended.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            match &body.trunk {
                Some(name) => format!("no drill is running on {name}"),
                None => "no drill is running".to_owned(),
            },
        );
    }
    crate::drills::ended(
        Instant::now(),
        "stopped",
        &ended,
        &live.shared().health,
        live.trunk_metrics(),
    );
    let reports: Vec<_> = ended.into_iter().map(|(_, r)| r).collect();
    Json(json!({ "stopped": reports })).into_response()
}

/// `GET /drills/reports`: the last 20 drills' reports (running ones too).
pub async fn drill_reports(State(state): State<AdminState>) -> Response {
    match state.live.as_ref() {
        Some(live) => {
            let reports = live.shared().drills.with(|d| d.reports());
            Json(json!({ "reports": reports })).into_response()
        }
        None => not_loaded(),
    }
}

/// `GET /drills/reports/{id}` (`latest`: the newest).
pub async fn drill_report(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let Some(live) = state.live.as_ref() else {
        return not_loaded();
    };
    let wanted = match id.as_str() {
        "latest" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("`{id}` is not a drill id (a number, or latest)"),
                );
            }
        },
    };
    match live.shared().drills.with(|d| d.report(wanted)) {
        Some(report) => {
            // Validation runs made while the drill ran: the proof it did what it should.
            let validation = live
                .testcalls()
                .map(|hub| hub.during_drill(report.id))
                .unwrap_or_default();
            Json(json!({ "report": report, "validation": validation })).into_response()
        }
        None => refuse(
            StatusCode::NOT_FOUND,
            match wanted {
                Some(n) => format!("no report for drill {n} (the last 20 are kept)"),
                None => "no drill has run since the start".to_owned(),
            },
        ),
    }
}
