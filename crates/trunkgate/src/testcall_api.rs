//! The admin API of test calls and validation runs, and what starts runs on its own:
//! `validate.after_reload` and scheduled checks (`every`).
//!
//! - `POST /testcalls`: one ad-hoc test call (`ctl testcall`); `202 {"run": ID}`.
//! - `POST /validate`: the policy's `[[test_call]]`s of a suite (`ctl validate`).
//! - `GET /validate/runs`, `GET /validate/runs/{ID|latest}`: runs and their results.
//!
//! A run is placed by the agent in the core loop; these handlers only build it from the
//! policy in force and read the [`Hub`].

use crate::admin::AdminState;
use crate::live::LivePolicy;
use crate::shell::CoreMessage;
use crate::testcall::{Hub, RunRequest, Spec};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trunkgate_config::{TestCall, TestCodec, TestDirection, TestExpect};
use trunkgate_sip::TrunkId;

fn refuse(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(json!({ "error": error.into() }))).into_response()
}

/// The policy in force and the runs (unit tests of the read side have neither).
fn agent(state: &AdminState) -> Option<(&Arc<LivePolicy>, &Arc<Hub>)> {
    let live = state.live.as_ref()?;
    Some((live, live.testcalls()?))
}

fn unavailable() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "test calls are not available",
    )
}

/// Ids of the drills running now.
fn drills_now(live: &LivePolicy) -> Vec<u64> {
    live.shared()
        .drills
        .with(|d| d.active().iter().map(|a| a.current_report().id).collect())
}

/// Open a run of `specs` and hand it to the core loop; its id.
pub fn submit(
    live: &LivePolicy,
    hub: &Hub,
    kind: &str,
    suite: Option<String>,
    specs: Vec<Spec>,
) -> Result<u64, String> {
    if specs.is_empty() {
        return Err("no test calls to place".into());
    }
    let snapshot = live.current();
    let names: HashMap<TrunkId, String> = snapshot
        .routing
        .table()
        .trunks()
        .iter()
        .map(|t| (t.id.0, t.name.clone()))
        .collect();
    let v = &snapshot.policy.validate;
    hub.set_keep(v.keep_runs);
    let id = hub.open(kind, suite, drills_now(live), specs.len());
    let run = RunRequest {
        id,
        specs: Arc::new(specs),
        names: Arc::new(names),
        concurrency: usize::try_from(v.concurrency).unwrap_or(4),
        start_interval: v.start_interval,
        setup_timeout: v.setup_timeout,
    };
    if !live.send_core(CoreMessage::TestRun(run)) {
        return Err("the SIP core is not running".into());
    }
    Ok(id)
}

/// The `[[test_call]]`s of `suite` (every one for `None`), resolved.
fn suite_specs(live: &LivePolicy, suite: Option<&str>) -> Result<Vec<Spec>, String> {
    let snapshot = live.current();
    let table = snapshot.routing.table();
    let policy = &snapshot.policy;
    let chosen: Vec<&TestCall> = policy
        .test_calls
        .iter()
        .filter(|t| suite.is_none_or(|s| t.suites.iter().any(|n| n == s)))
        .collect();
    if chosen.is_empty() {
        let mut suites: Vec<&str> = policy
            .test_calls
            .iter()
            .flat_map(|t| t.suites.iter().map(String::as_str))
            .collect();
        suites.sort_unstable();
        suites.dedup();
        return Err(match suite {
            Some(s) if !suites.is_empty() => {
                format!(
                    "no [[test_call]] is in suite \"{s}\"; suites: {}",
                    suites.join(", ")
                )
            }
            _ => "the policy has no [[test_call]]s: add some (docs/policy.md, [[test_call]])"
                .to_owned(),
        });
    }
    chosen
        .into_iter()
        .map(|t| Spec::of(t, policy, |name| table.trunk_id(name).map(|id| id.0)))
        .collect()
}

/// `validate.after_reload`: run that suite after an applied reload; the run's id.
pub fn after_reload(live: &LivePolicy) -> Option<u64> {
    let suite = live.current().policy.validate.after_reload.clone()?;
    let hub = live.testcalls()?;
    let outcome = suite_specs(live, Some(&suite))
        .and_then(|specs| submit(live, hub, "after-reload", Some(suite.clone()), specs));
    match outcome {
        Ok(run) => {
            tracing::info!(suite = %suite, run, "validation run after reload started");
            Some(run)
        }
        Err(error) => {
            tracing::warn!(suite = %suite, %error, "validation run after reload not started");
            None
        }
    }
}

/// Is `minute` (after midnight UTC) inside `window` (start ≤ m < end, wrapping midnight)?
pub fn in_window(window: (u16, u16), minute: u16) -> bool {
    let (start, end) = window;
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

/// Scheduled checks: every test call with `every` is placed on its own that often, except
/// inside `validate.busy_hours`. Looks every 10 s; the first check of a test is one period
/// after start (or after it appeared in a reload).
pub fn spawn_scheduler(live: Arc<LivePolicy>) {
    tokio::spawn(async move {
        let mut due: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let Some(hub) = live.testcalls().cloned() else {
                continue;
            };
            let snapshot = live.current();
            let now = Instant::now();
            let scheduled: Vec<&TestCall> = snapshot
                .policy
                .test_calls
                .iter()
                .filter(|t| t.every.is_some())
                .collect();
            due.retain(|name, _| scheduled.iter().any(|t| &t.name == name));
            let minute = ((crate::drills::wall_ms() / 60_000) % 1440) as u16;
            let busy = snapshot
                .policy
                .validate
                .busy_hours
                .is_some_and(|w| in_window(w, minute));
            for t in scheduled {
                let Some(every) = t.every else { continue };
                let at = *due.entry(t.name.clone()).or_insert(now + every);
                if now < at {
                    continue;
                }
                due.insert(t.name.clone(), now + every);
                if busy {
                    tracing::debug!(test = %t.name, "scheduled test call skipped: busy hours");
                    continue;
                }
                let table = snapshot.routing.table();
                let spec = Spec::of(t, &snapshot.policy, |n| table.trunk_id(n).map(|id| id.0));
                match spec.and_then(|s| submit(&live, &hub, "scheduled", None, vec![s])) {
                    Ok(run) => tracing::debug!(test = %t.name, run, "scheduled test call started"),
                    Err(error) => {
                        tracing::warn!(test = %t.name, %error, "scheduled test call not started")
                    }
                }
            }
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCallBody {
    pub trunk: Option<String>,
    pub to: String,
    #[serde(rename = "for", default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub codec: Option<String>,
    #[serde(default)]
    pub expect: Option<u16>,
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub count_limits: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /testcalls`: one ad-hoc test call.
pub async fn testcall(State(state): State<AdminState>, Json(body): Json<TestCallBody>) -> Response {
    let Some((live, hub)) = agent(&state) else {
        return unavailable();
    };
    let snapshot = live.current();
    let table = snapshot.routing.table();
    let trunk = match &body.trunk {
        None => None,
        Some(name) => match table.trunk_id(name) {
            Some(id) => Some((id.0, name.clone())),
            None => return crate::admin_control::unknown_trunk(&snapshot.policy, name),
        },
    };
    let direction = match body.direction.as_deref().unwrap_or("outbound") {
        "outbound" => TestDirection::Outbound,
        "inbound" => TestDirection::Inbound,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("--direction `{other}`: write outbound or inbound"),
            );
        }
    };
    if direction == TestDirection::Inbound && trunk.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "an inbound test call needs --trunk (the trunk it comes from)",
        );
    }
    let ok_user = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-_.*#".contains(&b))
    };
    if !ok_user(&body.to) || body.from.as_deref().is_some_and(|f| !ok_user(f)) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "--to/--from: digits with an optional leading + (at most 64 of 0-9 a-z + - _ . * #)",
        );
    }
    let duration = match trunkgate_config::parse_duration(body.duration.as_deref().unwrap_or("10s"))
    {
        Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&d) => d,
        Ok(d) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("--for {d:?}: between 1s and 10m"),
            );
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("--for: {e}")),
    };
    let codec = match body
        .codec
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("PCMU") => TestCodec::Pcmu,
        Some("PCMA") => TestCodec::Pcma,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("--codec {other}: PCMU or PCMA"),
            );
        }
    };
    let expect = match body.expect {
        None => TestExpect::Answer,
        Some(code) if (300..700).contains(&code) => TestExpect::Code(code),
        Some(code) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("--expect {code}: a final code 300-699"),
            );
        }
    };
    let name = body.name.clone().unwrap_or_else(|| match &trunk {
        Some((_, t)) => format!("adhoc-{t}"),
        None => "adhoc".to_owned(),
    });
    let call = TestCall {
        name,
        trunk: None,
        direction,
        to: body.to.clone(),
        from: body.from.clone(),
        duration,
        codec,
        expect,
        echo: body.echo,
        max_pdd: None,
        min_mos: None,
        suites: Vec::new(),
        every: None,
        count_limits: body.count_limits,
    };
    let spec = match Spec::of(&call, &snapshot.policy, |_| None) {
        Ok(spec) => Spec { trunk, ..spec },
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match submit(live, hub, "testcall", None, vec![spec]) {
        Ok(run) => (StatusCode::ACCEPTED, Json(json!({ "run": run }))).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    pub suite: Option<String>,
    /// The run must happen during this drill (refused when it is not running).
    pub during_drill: Option<u64>,
}

/// `POST /validate`: a suite of the policy's test calls.
pub async fn validate(
    State(state): State<AdminState>,
    body: Option<Json<ValidateBody>>,
) -> Response {
    let Some((live, hub)) = agent(&state) else {
        return unavailable();
    };
    let body = body.map(|Json(b)| b).unwrap_or_default();
    if let Some(drill) = body.during_drill {
        if !drills_now(live).contains(&drill) {
            return refuse(
                StatusCode::CONFLICT,
                format!("drill {drill} is not running (ctl drill status lists the running ones)"),
            );
        }
    }
    let specs = match suite_specs(live, body.suite.as_deref()) {
        Ok(specs) => specs,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e),
    };
    let tests = specs.len();
    let suite = body.suite.clone().or_else(|| Some("all".to_owned()));
    match submit(live, hub, "validate", suite, specs) {
        Ok(run) => (
            StatusCode::ACCEPTED,
            Json(json!({ "run": run, "tests": tests })),
        )
            .into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /validate/runs`: the runs kept, oldest first.
pub async fn runs(State(state): State<AdminState>) -> Response {
    let Some((_, hub)) = agent(&state) else {
        return unavailable();
    };
    Json(json!({ "runs": hub.runs() })).into_response()
}

/// `GET /validate/runs/{id}` (or `latest`: the latest finished run).
pub async fn run(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let Some((_, hub)) = agent(&state) else {
        return unavailable();
    };
    let run = match id.as_str() {
        "latest" => hub.latest(true),
        n => match n.parse::<u64>() {
            Ok(n) => hub.run(n),
            Err(_) => return refuse(StatusCode::BAD_REQUEST, "a run id is a number, or latest"),
        },
    };
    match run {
        Some(run) => Json(run).into_response(),
        None => refuse(StatusCode::NOT_FOUND, format!("no run {id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::in_window;

    #[test]
    fn busy_windows_wrap_midnight() {
        assert!(in_window((480, 1080), 600));
        assert!(!in_window((480, 1080), 1080));
        assert!(in_window((1320, 360), 1400) && in_window((1320, 360), 10));
        assert!(!in_window((1320, 360), 720));
    }
}
