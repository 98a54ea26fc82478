//! The one API error type and its status codes; `http::error_response` turns it into a
//! response (this module knows no HTTP types).

use crate::store::StoreError;

/// Everything a handler can answer besides success. The public message is short and safe;
/// `Internal` carries a detail that is logged, never sent.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(&'static str),
    Conflict(String),
    /// Something that existed and no longer works (a used or expired link): `410`.
    Gone(String),
    RequestTimeout(String),
    PayloadTooLarge(usize),
    Unprocessable(String),
    /// Over a rate limit; seconds until the next request may pass.
    TooManyRequests(u64),
    Unavailable(String),
    /// The disk is full; the detail is logged.
    InsufficientStorage(String),
    /// Another server we called answered badly (`502`); the message says what it said.
    BadGateway(String),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Gone(_) => 410,
            ApiError::RequestTimeout(_) => 408,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::Unprocessable(_) => 422,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::InsufficientStorage(_) => 507,
            ApiError::BadGateway(_) => 502,
            ApiError::Internal(_) => 500,
        }
    }

    /// The message a client sees: short and safe; the detail of `Internal` and friends is
    /// logged by the HTTP layer, never sent.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Gone(m)
            | ApiError::BadGateway(m)
            | ApiError::RequestTimeout(m)
            | ApiError::Unprocessable(m) => m.clone(),
            ApiError::Unauthorized => "Unauthorized".into(),
            ApiError::MethodNotAllowed(allow) => format!("method not allowed here; use {allow}"),
            ApiError::PayloadTooLarge(limit) => {
                format!("request body is over the limit of {limit} bytes")
            }
            ApiError::TooManyRequests(secs) => format!("too many requests; try again in {secs} s"),
            ApiError::Unavailable(_) => "the server is shutting down or busy; try again".into(),
            ApiError::InsufficientStorage(_) => "the server's disk is full; the write was not made".into(),
            ApiError::Internal(_) => "internal error".into(),
        }
    }

    /// Maps a storage error, naming the missing thing on `NotFound`.
    pub fn from_store(e: StoreError, what: &str) -> ApiError {
        if e.is_disk_full() {
            return ApiError::InsufficientStorage(e.to_string());
        }
        match e {
            StoreError::NotFound => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Gone(m) => ApiError::Gone(m),
            StoreError::Invalid(m) => ApiError::Unprocessable(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::DiskFull => ApiError::InsufficientStorage(e.to_string()),
            e @ (StoreError::Sqlite(_) | StoreError::Crypto(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from_store(e, "resource")
    }
}

impl From<crate::workflow::DefError> for ApiError {
    fn from(e: crate::workflow::DefError) -> ApiError {
        match e {
            crate::workflow::DefError::Malformed(m) => ApiError::BadRequest(m),
            crate::workflow::DefError::Invalid(m) => ApiError::Unprocessable(m),
        }
    }
}
