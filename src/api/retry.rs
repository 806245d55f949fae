//! Classifies Graph API and CDN answers into retry decisions. Pure: status
//! codes and parsed error bodies in, `ApiError` kinds out.

use std::time::Duration;

use super::wire::ErrorBody;

/// What went wrong with one request, after classification.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ApiError {
    /// The token was refused (code 190, or HTTP 401). Never retried.
    #[error(
        "the API refused the access token ({message}); check MAPILLARY_TOKEN, --token-file or .env"
    )]
    Auth { message: String },
    /// The object does not exist (code 100, subcode 33). Never retried.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// "Please reduce the amount of data": the box must be split, not retried.
    #[error("the API asked for less data in one request ({message})")]
    TooMuchData { message: String },
    /// Rate limited (code 4, or 429). Retried after `retry_after` or backoff.
    #[error("rate limited by the API ({message})")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, the HTTP 400 "Query Timeout" (code -2), `is_transient`. Retried.
    #[error("transient API error (HTTP {status}: {message})")]
    Transient { status: u16, message: String },
    /// The thumbnail URL expired or its signature was refused (CDN 403).
    #[error("the thumbnail URL was refused (HTTP 403, expired or bad signature)")]
    ExpiredUrl,
    /// Any other 4xx: a bug or bad input. Not retried.
    #[error("the API rejected the request (HTTP {status}: {message})")]
    Rejected { status: u16, message: String },
    /// Connection refused or reset, timeouts. Retried.
    #[error("network error: {0}")]
    Network(String),
    /// A body that is incomplete or not what was promised. Retried.
    #[error("bad response body: {0}")]
    Body(String),
    /// A thumbnail answer that is not a JPEG. Retried.
    #[error("not a JPEG: {0}")]
    NotJpeg(String),
    /// Refused for safety: a redirect to plain http or, with the token, to
    /// another origin; a thumbnail URL that is not https. Never retried.
    #[error("refused for safety: {0}")]
    Insecure(String),
}

impl ApiError {
    /// Whether another attempt may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Transient { .. }
                | ApiError::Network(_)
                | ApiError::Body(_)
                | ApiError::NotJpeg(_)
        )
    }

    /// A short stable name for counting failures by reason.
    pub(crate) fn reason(&self) -> String {
        match self {
            ApiError::Auth { .. } => "auth".into(),
            ApiError::NotFound { .. } => "not_found".into(),
            ApiError::TooMuchData { .. } => "too_much_data".into(),
            ApiError::RateLimited { .. } => "rate_limited".into(),
            ApiError::Transient { status, .. } => format!("http_{status}"),
            ApiError::ExpiredUrl => "url_expired".into(),
            ApiError::Rejected { status, .. } => format!("http_{status}"),
            ApiError::Network(_) => "network".into(),
            ApiError::Body(m) if m.starts_with("truncated") => "truncated".into(),
            ApiError::Body(_) => "bad_body".into(),
            ApiError::NotJpeg(_) => "not_jpeg".into(),
            ApiError::Insecure(_) => "insecure".into(),
        }
    }
}

/// Classifies a non-2xx Graph API answer.
pub(crate) fn classify(
    status: u16,
    body: Option<&ErrorBody>,
    retry_after: Option<Duration>,
) -> ApiError {
    let message = body
        .map(|b| b.message.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let code = body.and_then(|b| b.code);
    let lower = message.to_ascii_lowercase();
    if code == Some(190) || status == 401 {
        return ApiError::Auth { message };
    }
    // 4 is Mapillary's; 17, 32 and 613 are Meta's other rate-limit codes
    // (not seen from Mapillary, but the Graph platform is shared).
    let limit_code = matches!(code, Some(4 | 17 | 32 | 613));
    if limit_code
        || status == 429
        || lower.contains("request limit")
        || lower.contains("rate limit")
    {
        return ApiError::RateLimited {
            message,
            retry_after,
        };
    }
    if lower.contains("reduce the amount of data") {
        return ApiError::TooMuchData { message };
    }
    if code == Some(100)
        && (body.and_then(|b| b.subcode) == Some(33) || lower.contains("does not exist"))
    {
        return ApiError::NotFound { message };
    }
    let transient_flag = body.is_some_and(|b| b.is_transient == Some(true));
    if status >= 500
        || code == Some(-2)
        || code == Some(2)
        || transient_flag
        || lower.contains("timeout")
    {
        return ApiError::Transient { status, message };
    }
    if status == 403 {
        // A 403 without the rate-limit code: the JOSM mock serves rate limits as
        // 403 with code 4 (handled above); anything else is not retried.
        return ApiError::Rejected { status, message };
    }
    ApiError::Rejected { status, message }
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is
/// not used by Graph APIs and is ignored).
pub(crate) fn parse_retry_after(v: Option<&str>) -> Option<Duration> {
    let secs: u64 = v?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64, message: &str) -> ErrorBody {
        ErrorBody {
            message: message.into(),
            code: Some(code),
            subcode: None,
            is_transient: None,
        }
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(u16, Option<ErrorBody>, &str, bool)> = vec![
            (
                500,
                Some(body(190, "Invalid OAuth 2.0 Access Token")),
                "auth",
                false,
            ),
            (401, Some(body(190, "Failed to decode")), "auth", false),
            (
                400,
                Some(body(190, "Error validating application")),
                "auth",
                false,
            ),
            (
                403,
                Some(body(4, "Application request limit reached")),
                "rate_limited",
                true,
            ),
            (429, None, "rate_limited", true),
            (
                403,
                Some(body(613, "Calls to this api have exceeded the rate limit.")),
                "rate_limited",
                true,
            ),
            (
                400,
                Some(body(17, "User request limit reached")),
                "rate_limited",
                true,
            ),
            (
                403,
                Some(body(32, "Page request limit reached")),
                "rate_limited",
                true,
            ),
            (400, Some(body(-2, "Query Timeout")), "http_400", true),
            (
                500,
                Some(body(2, "Service temporarily unavailable")),
                "http_500",
                true,
            ),
            (
                500,
                Some(body(
                    1,
                    "Please reduce the amount of data you're asking for, then retry your request",
                )),
                "too_much_data",
                false,
            ),
            (
                400,
                Some(ErrorBody {
                    subcode: Some(33),
                    ..body(100, "Unsupported get request.")
                }),
                "not_found",
                false,
            ),
            (
                400,
                Some(body(100, "Tried accessing nonexisting field (x)")),
                "http_400",
                false,
            ),
            (502, None, "http_502", true),
            (404, None, "http_404", false),
        ];
        for (status, b, reason, retry) in cases {
            let e = classify(status, b.as_ref(), None);
            assert_eq!(e.reason(), reason, "{status} {b:?}");
            assert_eq!(e.is_retryable(), retry, "{status} {b:?}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(Some("Wed, 21 Oct 2015")), None);
        assert_eq!(parse_retry_after(None), None);
    }
}
