//! The envelope every Tencent-style answer has: HTTP 200, `ActionStatus`
//! ("OK" or "FAIL"), `ErrorCode` (0 for success) and `ErrorInfo`, then the
//! call's own fields. Our own errors map to the cloud IM's codes here, once.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::api_error::ApiError;

/// The cloud IM's error codes that bullhorn answers with.
pub mod code {
    pub const HTTP_PARSE: u32 = 60002;
    pub const JSON_PARSE: u32 = 60003;
    pub const ACCOUNT_OR_SIG: u32 = 60004;
    pub const SDKAPPID_INVALID: u32 = 60006;
    pub const RATE_LIMITED: u32 = 60007;
    pub const BAD_URL: u32 = 60009;
    pub const NOT_ADMIN: u32 = 60010;
    pub const SDKAPPID_MISSING: u32 = 60012;
    pub const INTERNAL: u32 = 10002;
    pub const INVALID_PARAMETER: u32 = 10004;
    pub const QUOTA: u32 = 10006;
    pub const PERMISSION: u32 = 10007;
    pub const GROUP_NOT_FOUND: u32 = 10010;
    pub const INVALID_GROUP_ID: u32 = 10015;
    pub const REJECTED_BY_CALLBACK: u32 = 10016;
    pub const SEND_RATE: u32 = 10023;
    pub const GROUP_ID_TAKEN: u32 = 10025;
    pub const TOO_LONG: u32 = 80002;
}

/// A failed call: the code and the sentence in `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimError {
    pub code: u32,
    pub info: String,
}

impl TimError {
    pub fn new(code: u32, info: impl Into<String>) -> TimError {
        TimError { code, info: info.into() }
    }

    pub fn invalid(info: impl Into<String>) -> TimError {
        TimError::new(code::INVALID_PARAMETER, info)
    }
}

impl From<ApiError> for TimError {
    fn from(error: ApiError) -> TimError {
        let code = match error.code {
            "room_exists" => code::GROUP_ID_TAKEN,
            "room_limit" => code::QUOTA,
            "room_not_found" => code::GROUP_NOT_FOUND,
            "payload_too_large" => code::TOO_LONG,
            "rate_limited" => code::SEND_RATE,
            "invites_not_allowed" => code::PERMISSION,
            "invalid_request" => code::INVALID_PARAMETER,
            "unauthorized" => code::ACCOUNT_OR_SIG,
            "rejected_by_callback" | "callback_unavailable" => code::REJECTED_BY_CALLBACK,
            _ => code::INTERNAL, // internal, cluster_unavailable
        };
        TimError { code, info: error.message }
    }
}

impl IntoResponse for TimError {
    fn into_response(self) -> Response {
        Json(json!({"ActionStatus": "FAIL", "ErrorCode": self.code, "ErrorInfo": self.info})).into_response()
    }
}

/// A successful answer with the call's `fields` (an object).
pub fn ok(fields: Value) -> Response {
    let mut body = Map::new();
    body.insert("ActionStatus".into(), "OK".into());
    body.insert("ErrorCode".into(), 0.into());
    body.insert("ErrorInfo".into(), "".into());
    if let Value::Object(fields) = fields {
        body.extend(fields);
    }
    Json(Value::Object(body)).into_response()
}
