//! The review state's share of the join's work per decision, without Kafka: decode a reviewer's
//! decision as the join does and apply it to a state holding many pending reviews. Prints CPU
//! time and allocations per decision (figures, not pass/fail). Then the join's once-a-second
//! tick over that state (the resolved marks and as many pending reviews again): its first
//! tick, which also sweeps the resolved marks, a later one, and a pass of
//! `ReviewState::queue_stats` for one queue (before the tick gathered the queues' gauges, the
//! join made two such passes per tick).
//!
//!     cargo bench -p tollgate-router --bench review_decide
//!
//! Instructions per decision, which this machine's load does not move: build with `--no-run`,
//! then `valgrind --tool=callgrind --toggle-collect=review_decide::decide_all <binary>` and
//! divide the total by the decisions printed.

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;
use tollgate_router::config::ReviewConfig;
use tollgate_router::review::{Effect, ReviewSettings, ReviewState};
use tollgate_schemas::{RecordFormat, ReviewDecision, Route};

mod support;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Pending reviews when the decisions arrive: as many as the bench's join phase holds.
const PENDING: usize = 100_000;
const AT: i64 = 1_790_000_000_000;

fn main() {
    let state = ReviewState::new(ReviewSettings::from_config(&ReviewConfig::default()));
    let ids: Vec<String> = (0..PENDING).map(|i| format!("bench-{}", i * 6 + 1)).collect();
    support::admit_reviews(&state, &ids, AT);
    // The decisions as the bench's reviewers send them, in a shuffled order (a fixed stride),
    // so consecutive lookups do not walk the map in insertion order.
    let decisions: Vec<Vec<u8>> = (0..PENDING)
        .map(|i| {
            let id = &ids[(i * 7_919) % PENDING];
            let action = if i % 4 == 0 { "reject" } else { "approve" };
            format!(
                r#"{{"decision_id":null,"event_id":"{id}","reviewer_id":"reviewer-{}","reviewer_role":"analyst","action":"{action}","rationale":"checked against the customer's history","decided_at":{},"second_signoff":null}}"#,
                i % 40,
                AT + 60_000
            )
            .into_bytes()
        })
        .collect();
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    let resolved = decide_all(&state, &decisions);
    let elapsed = started.elapsed();
    let stats = region.change();
    assert_eq!(resolved, PENDING, "every decision resolves its review");
    println!(
        "review state: {PENDING} decisions on {PENDING} pending reviews: {:.0} ns and {:.2} allocations per decision",
        elapsed.as_nanos() as f64 / PENDING as f64,
        stats.allocations as f64 / PENDING as f64
    );
    let more: Vec<String> = (0..PENDING).map(|i| format!("bench-{}", i * 6 + 2)).collect();
    support::admit_reviews(&state, &more, AT);
    // Nothing is due at this time: what is timed is the walk itself.
    let now = AT + 120_000;
    let timed = |what: &str, run: &dyn Fn()| {
        let started = Instant::now();
        run();
        println!("{what}: {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    };
    timed(&format!("first tick over {PENDING} pending reviews and {PENDING} resolved marks"), &|| {
        black_box(state.tick(now));
    });
    timed("a later tick (no sweep of the resolved marks due)", &|| {
        black_box(state.tick(now + 1_000));
    });
    timed("a pass of queue_stats for one queue", &|| {
        black_box(state.queue_stats(Route::SyncReview, now));
    });
}

/// Decodes and applies every decision; returns how many resolved a review.
#[inline(never)]
fn decide_all(state: &ReviewState, decisions: &[Vec<u8>]) -> usize {
    let mut resolved = 0;
    for bytes in decisions {
        let decision = ReviewDecision::read_borrowed(RecordFormat::Json, bytes).expect("a valid decision");
        for effect in state.decide(decision, 0, AT + 60_000) {
            resolved += usize::from(matches!(effect, Effect::Resolved(_)));
            black_box(effect);
        }
    }
    resolved
}
