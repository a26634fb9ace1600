//! The routes an event can take out of the router.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the routing policy sends an event. The names are the ones used in configuration, in the
/// Avro enum `io.tollgate.v1.Route`, in JSON records and in the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Routine: flows on without a person.
    AutoCommit,
    /// Needs a person, but the payment may wait (hours).
    AsyncReview,
    /// Needs a person before anything else happens (minutes).
    SyncReview,
    /// Refused without review.
    AutoReject,
}

impl Route {
    /// Every route, in a fixed order (used to pre-register metric label values).
    pub const ALL: [Route; 4] = [Route::AutoCommit, Route::AsyncReview, Route::SyncReview, Route::AutoReject];

    /// The route's name as it appears in configuration, records and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Route::AutoCommit => "auto_commit",
            Route::AsyncReview => "async_review",
            Route::SyncReview => "sync_review",
            Route::AutoReject => "auto_reject",
        }
    }

    /// True for the routes that wait for a human decision.
    pub const fn is_review(self) -> bool {
        matches!(self, Route::AsyncReview | Route::SyncReview)
    }

    /// Parses a route name as written in configuration.
    pub fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for route in Route::ALL {
            assert_eq!(Route::parse(route.as_str()), Some(route));
            let json = serde_json::to_string(&route).unwrap();
            assert_eq!(json, format!("\"{}\"", route.as_str()));
        }
        assert_eq!(Route::parse("review"), None);
    }
}
