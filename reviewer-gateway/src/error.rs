//! API errors: every refusal is a status code and a JSON body `{"error": code, "message": why}`
//! with a stable, machine-readable code. Never a stack trace.

use crate::auth::AuthError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `unauthenticated`, `forbidden`, `not_claimed`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// Why a request was refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The case is not in a state that allows the request.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed JSON that breaks a rule (a missing rationale, a reused idempotency key).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Not JSON, or not the expected shape, or a bad query or path.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the request body is too large ({0})")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no such endpoint")]
    NoRoute,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// Kafka could not take the records (the action did not happen).
    #[error("{0}")]
    Unavailable(String),
    /// Kafka did not confirm the action's transaction in time: it may have been recorded.
    #[error("{0}")]
    Unconfirmed(String),
    /// The request was answered before its work ended: an action it asked for may still be
    /// recorded.
    #[error("the request took longer than {0:?}; an action it asked for may still be recorded: reload the case before trying again")]
    Timeout(std::time::Duration),
}

impl ApiError {
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Forbidden { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, message: message.into() }
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(AuthError::NoRole(_)) => StatusCode::FORBIDDEN,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::Unconfirmed(_) | ApiError::Timeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The machine-readable code (also the `code` label of the error metric).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(AuthError::NoRole(_)) => "no_role",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Invalid { code, .. }
            | ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::NoRoute => "no_such_endpoint",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unconfirmed(_) => "unconfirmed",
            ApiError::Timeout(_) => "timeout",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody { error: self.code().to_owned(), message: self.to_string() };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", self.code());
            if let Ok(value) = challenge.parse() {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        // Handlers only see the status; the metrics layer reads the code from here.
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// The error code of a response, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(r.body_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("send the body as JSON with Content-Type: application/json".into())
            }
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid { code: "invalid_body", message: r.body_text() },
            _ => ApiError::BadRequest { code: "malformed_json", message: r.body_text() },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest { code: "invalid_query", message: r.body_text() }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest { code: "invalid_path", message: r.body_text() }
    }
}
