//! The public HTTP listener: the H5 demo page at `/`, the browser client at
//! `/sdk/bullhorn.js`, and the WebSocket subscribe endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::api_error::ApiError;
use crate::config::DEMO_APP;
use crate::state::Shared;

static DEMO_PAGE: &str = include_str!("../../web/demo.html");
static SDK: &str = include_str!("../../web/bullhorn.js");

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(demo_page))
        .route("/sdk/bullhorn.js", get(sdk))
        .route("/v1/apps/{app}/ws", get(super::ws::subscribe))
        .fallback(|| async { ApiError::not_found() })
        .with_state(shared)
}

/// The demo page, told the app's first room so `/` works with no query.
async fn demo_page(State(shared): State<Arc<Shared>>, Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let app = query.get("app").map_or(DEMO_APP, String::as_str);
    let first_room = shared
        .registry
        .app(app)
        .and_then(|app| app.rooms().first().map(|room| room.id().to_string()))
        .unwrap_or_default();
    // Room ids are [A-Za-z0-9_-]: safe inside an attribute as they are.
    Html(DEMO_PAGE.replacen(r#"data-default-room="""#, &format!(r#"data-default-room="{first_room}""#), 1))
}

async fn sdk() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], SDK)
        .into_response()
}
