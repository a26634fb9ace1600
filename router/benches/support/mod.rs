//! What the review benches share: a review state filled with pending reviews.

use tollgate_router::review::{PendingInput, ReviewState};
use tollgate_schemas::Route;

/// Admits one pending review per id, routed at `at`: a third to the sync queue, spread over six
/// partitions, all from one policy, model and rule (as one policy version routes them).
pub fn admit_reviews(state: &ReviewState, ids: &[String], at: i64) {
    for (i, id) in ids.iter().enumerate() {
        state.admit(
            PendingInput {
                event_id: id,
                queue: if i % 3 == 0 { Route::SyncReview } else { Route::AsyncReview },
                risk: 0.9,
                confidence: 0.7,
                routed_at: at,
                partition: (i % 6) as i32,
                event_offset: i as i64,
                post_verify: false,
                policy_version: "payments-2026.11.1",
                model_version: "fraud-gbm-2026.10",
                rule: "sync-review",
            },
            at,
        );
    }
}
