//! Liveness, readiness and the Prometheus scrape.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Shared;

/// 200 while the process runs.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 while serving; 503 once draining, or while a cluster node cannot reach NATS.
pub async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"}))).into_response()
    } else if !shared.broker.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "cluster_unavailable"}))).into_response()
    } else {
        Json(json!({"status": "ready"})).into_response()
    }
}

/// Prometheus text format, with room gauges refreshed from the shards.
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.registry.refresh_gauges();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.prometheus.render()).into_response()
}
