//! The one mapping from failures to the contract's error body:
//! `{"error": {"code": "<code>", "message": "<human sentence>"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_secs: None }
    }

    pub fn unauthorized() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin key for this app is required: Authorization: Bearer <key>",
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invites_not_allowed() -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invites_not_allowed",
            "broadcast rooms have no member list: members join anonymously by connecting, nobody can be added or invited",
        )
    }

    pub fn room_exists(room: &str) -> ApiError {
        Self::new(StatusCode::CONFLICT, "room_exists", format!("room {room:?} already exists"))
    }

    pub fn room_limit(max: usize) -> ApiError {
        Self::new(StatusCode::CONFLICT, "room_limit", format!("this app already has its maximum of {max} rooms"))
    }

    pub fn room_not_found(room: &str) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "room_not_found", format!("room {room:?} does not exist"))
    }

    pub fn broadcast_not_found(room: &str, seq: &str) -> ApiError {
        let message = format!("broadcast {seq} of room {room:?} is not held (the last 1,000 or 10 minutes are)");
        Self::new(StatusCode::NOT_FOUND, "broadcast_not_found", message)
    }

    pub fn sticky_not_found(room: &str) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "sticky_not_found", format!("room {room:?} has no pinned message"))
    }

    pub fn app_not_found(app: &str) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "app_not_found", format!("app {app:?} does not exist"))
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("data is larger than the limit of {limit} bytes"),
        )
    }

    pub fn over_capacity(retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "over_capacity",
                "this node takes no more subscribers right now; retry later",
            )
        }
    }

    /// A cluster node that cannot reach NATS, or NATS did not confirm a write in
    /// time. Safe to retry: a broadcast with the same `Idempotency-Key`.
    pub fn cluster_unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", message)
        }
    }

    /// Over a rate limit: retry after the bucket has a token again.
    pub fn rate_limited(what: &str, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("{what}; retry later"))
        }
    }

    /// The node's per-address connection limit: the same code as a full node, so clients retry alike.
    pub fn over_capacity_for_address(retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "over_capacity",
                "too many connections from your address; retry later",
            )
        }
    }

    pub fn rejected_by_callback(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "rejected_by_callback", message)
    }

    pub fn callback_unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "callback_unavailable", message)
        }
    }

    pub fn not_found() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn method_not_allowed() -> ApiError {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
    }

    pub fn headers_too_large() -> ApiError {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            "the request head is larger than 8 KiB",
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl ApiError {
    /// The JSON body: `{"error":{"code":…,"message":…}}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"error": {"code": self.code, "message": self.message}})).expect("serializable")
    }

    /// A complete HTTP/1.1 response that closes the connection, for paths
    /// that answer on a raw socket (the WebSocket handshake).
    pub fn to_http1(&self) -> Vec<u8> {
        let body = self.body();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        if let Some(secs) = self.retry_after_secs {
            out.push_str(&format!("retry-after: {secs}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.body())
                .into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
