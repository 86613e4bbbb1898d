//! The public HTTP listener: the H5 demo page at `/`, the browser client at
//! `/sdk/bullhorn.js` (an ES module) and `/sdk/bullhorn.global.js` (the same
//! code as a classic script that sets `window.Bullhorn`), its TypeScript
//! declarations. (The subscribe endpoints never come here: the accept loop
//! answers them on the raw socket.)

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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
static SDK_TYPES: &str = include_str!("../../web/bullhorn.d.ts");

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(demo_page))
        .route("/sdk/bullhorn.js", get(sdk))
        .route("/sdk/bullhorn.global.js", get(sdk_global))
        .route("/sdk/bullhorn.d.ts", get(sdk_types))
        .fallback(|| async { ApiError::not_found() })
        .with_state(shared)
}

/// The demo page, told the app's first room so `/` works with no query, and
/// how to reach the QUIC listener over WebTransport.
async fn demo_page(State(shared): State<Arc<Shared>>, Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let app = query.get("app").map_or(DEMO_APP, String::as_str);
    let first_room = shared
        .registry
        .app(app)
        .and_then(|app| app.rooms().first().map(|room| room.id().to_string()))
        .unwrap_or_default();
    // Room ids are [A-Za-z0-9_-] and the hash is hex: safe inside attributes as they are.
    let settings = &shared.settings;
    let attributes = format!(
        r#"data-default-room="{first_room}" data-webtransport-port="{}" data-certificate-hash="{}""#,
        settings.webtransport_port,
        settings.dev_cert_sha256.as_deref().unwrap_or_default()
    );
    Html(DEMO_PAGE.replacen(r#"data-default-room="""#, &attributes, 1))
}

async fn sdk() -> Response {
    script(SDK)
}

async fn sdk_global() -> Response {
    static GLOBAL: OnceLock<String> = OnceLock::new();
    script(GLOBAL.get_or_init(|| classic_script(SDK)))
}

async fn sdk_types() -> Response {
    (
        [(header::CONTENT_TYPE, "application/typescript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        SDK_TYPES,
    )
        .into_response()
}

fn script(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], body)
        .into_response()
}

/// The ES module as a classic script: its top-level `export`s become locals
/// of a function scope, published as `window.Bullhorn`. One source, two forms.
fn classic_script(module: &str) -> String {
    let body = module.replace("\nexport function ", "\nfunction ").replace("\nexport const ", "\nconst ");
    format!("(function () {{\n\"use strict\";\n{body}\nglobalThis.Bullhorn = {{ connect, VERSION }};\n}})();\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_script_has_no_exports_and_publishes_the_api() {
        let classic = classic_script(SDK);
        assert!(!classic.lines().any(|line| line.starts_with("export ")), "no export left");
        assert!(classic.contains("globalThis.Bullhorn = { connect, VERSION };"));
        assert!(SDK.contains("\nexport function connect(") && SDK.contains("\nexport const VERSION"));
    }
}
