//! Memory per pending review: heap bytes the review state holds per pending entry, measured with
//! an instrumented global allocator (a figure, printed; not a pass/fail test).
//!
//!     cargo bench -p tollgate-router --bench pending_memory

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use tollgate_router::config::ReviewConfig;
use tollgate_router::review::{ReviewSettings, ReviewState};
use tollgate_schemas::Route;

mod support;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    const N: usize = 200_000;
    let state = ReviewState::new(ReviewSettings::from_config(&ReviewConfig::default()));
    let ids: Vec<String> = (0..N).map(|i| format!("pay-{i:012}")).collect();
    let region = Region::new(GLOBAL);
    support::admit_reviews(&state, &ids, 1_790_000_000_000);
    let stats = region.change();
    let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + stats.bytes_reallocated as i64;
    println!(
        "pending reviews: {N}; event id {} bytes; live heap {:.1} MiB; {:.0} bytes per pending review",
        ids[0].len(),
        live as f64 / (1024.0 * 1024.0),
        live as f64 / N as f64
    );
    assert_eq!(state.queue_stats(Route::SyncReview, 0).pending + state.queue_stats(Route::AsyncReview, 0).pending, N);
}
