//! The private admin listener: the REST API of contract §2, health, metrics.
//!
//! * [`auth`]: bearer-key check for every `/v1/` route, before any lookup.
//! * [`rooms`]: create, list, show, change, delete; unpin.
//! * [`broadcast`]: accept a broadcast and hand it to the room.
//! * [`reach`]: what became of one broadcast's copies.
//! * [`health`]: `/healthz`, `/readyz`, `/metrics`.
//! * [`body`]: reading request bodies into contract errors.
//! * [`depth`]: the nesting limit on a broadcast's `data`.
//! * [`console`]: the operator console page at `/console`.

mod auth;
mod body;
pub mod broadcast;
mod console;
pub mod depth;
mod health;
mod reach;
pub mod rooms;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};

use crate::api_error::ApiError;
use crate::state::Shared;

/// Room-creation and broadcast bodies carry `data` plus a small envelope.
const BODY_ENVELOPE_BYTES: usize = 16 * 1024;

/// The admin listener's router: the native API, `others` (APIs that answer on
/// this listener and authenticate their own way, such as the Tencent-style
/// calls), health, metrics and the console.
pub fn router(shared: Arc<Shared>, others: Router<Arc<Shared>>) -> Router {
    let body_limit = shared.settings.max_payload_bytes + BODY_ENVELOPE_BYTES;
    Router::new()
        .route("/v1/apps/{app}/rooms", post(rooms::create).get(rooms::list))
        .route("/v1/apps/{app}/rooms/{room}", get(rooms::show).patch(rooms::change).delete(rooms::delete))
        .route("/v1/apps/{app}/rooms/{room}/broadcast", post(broadcast::broadcast))
        .route("/v1/apps/{app}/rooms/{room}/broadcasts/{seq}", get(reach::show))
        .route("/v1/apps/{app}/rooms/{room}/sticky", delete(rooms::unpin))
        .route_layer(from_fn_with_state(shared.clone(), auth::require_admin_key))
        // Not behind the bearer key: they authenticate their own way.
        .merge(others)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/console", get(console::console))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(body::OverLimit::new(body_limit), body::drain_oversized))
        .with_state(shared)
}
