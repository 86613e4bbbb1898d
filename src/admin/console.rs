//! `GET /console`: the operator console, a static page on the admin listener.
//!
//! It holds no secret: the operator types the app's admin key into it, the
//! page keeps the key in the tab's session storage and sends it to this same
//! listener's API. Nothing about it is stored server-side.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

static CONSOLE: &str = include_str!("../../web/console.html");

pub async fn console() -> Response {
    // The page runs its own inline module script; frames and other origins have no business with it.
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(CONSOLE),
    )
        .into_response()
}
