//! The admin HTTP API (axum): `GET /health`, `GET /metrics` and `GET /calls` (anchored calls
//! with per-stream media figures). `/health` and `/metrics` read atomics published by the
//! core task; `/calls` and the media part of `/metrics` take the relay's control lock
//! briefly (never held on the packet path). Nothing here waits on the SIP core.

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
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/calls", get(calls))
        .with_state(state)
}

/// Serve the admin API on an already-bound listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) {
    if let Err(error) = axum::serve(listener, router(state)).await {
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
    });
    axum::Json(body).into_response()
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

/// Anchored calls: per stream and leg, addresses (local, SDP, latched) and packet, loss and
/// jitter figures (see docs/operations.md).
async fn calls(State(state): State<AdminState>) -> Response {
    let calls = state.relay.as_ref().map(|r| r.calls()).unwrap_or_default();
    axum::Json(serde_json::json!({ "calls": calls })).into_response()
}
