//! How to talk to the Graph API and the vector tiles host: where, with which
//! token, how patiently and how fast. Plain values; `crate::config` builds
//! them from flags and the environment, a library caller by hand.

use std::time::Duration;

use crate::model::AccessToken;

/// How to talk to the Graph API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The Graph API root, e.g. `https://graph.mapillary.com`.
    pub base_url: reqwest::Url,
    /// The access token (sent only in the `Authorization` header).
    pub token: AccessToken,
    /// Time to wait for a connection.
    pub connect_timeout: Duration,
    /// Time to wait for each read of an answer.
    pub read_timeout: Duration,
    /// How often and how patiently a failed request is tried again.
    pub retry: RetryPolicy,
    /// Search requests per minute at most.
    pub search_per_min: u32,
    /// Entity (and `image_ids`) requests per minute at most.
    pub entity_per_min: u32,
    /// The API's cap on one search's results.
    pub search_cap: u32,
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub attempts: u32,
    /// The first retry's delay before jitter; it doubles with each retry.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `n` (1-based), before jitter.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        exp.min(self.max)
    }
}

/// Where and how much to read vector tiles.
#[derive(Debug, Clone)]
pub struct TilesConfig {
    /// The tiles root, e.g. `https://tiles.mapillary.com`.
    pub base_url: reqwest::Url,
    /// Tiles this run may request at most.
    pub budget: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(500),
            max: Duration::from_secs(3),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(3), Duration::from_secs(2));
        assert_eq!(p.backoff(9), Duration::from_secs(3));
    }
}
