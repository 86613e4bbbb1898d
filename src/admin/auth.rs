//! Every `/v1/apps/{app}/…` request must carry `Authorization: Bearer <key>`
//! for that app. The answer is the same 401 whether the app exists or not,
//! and it comes before any lookup the handler would do. An authorized request
//! then takes one token from its app's rate limit (429 `rate_limited` beyond):
//! only the key holder can spend an app's budget.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::limits;
use crate::state::Shared;

pub async fn require_admin_key(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let app = request.uri().path().strip_prefix("/v1/apps/").and_then(|rest| rest.split('/').next()).unwrap_or("");
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|value| bearer_token(value.as_bytes()));
    match presented {
        Some(key) if shared.registry.authorize(app, key) => {
            let admitted = shared.registry.app(app).map_or(Ok(()), |app| app.admit_request());
            match admitted {
                Ok(()) => next.run(request).await,
                Err(wait) => {
                    shared.metrics.rate_limited_admin.increment(1);
                    let what = format!(
                        "over this app's {} admin requests per second",
                        shared.settings.limits.admin_requests_per_app
                    );
                    ApiError::rate_limited(&what, limits::retry_after_secs(wait)).into_response()
                }
            }
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

/// The token of a `Bearer` authorization header (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ")).then(|| rest.trim_ascii()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
