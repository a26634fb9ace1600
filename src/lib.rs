//! The `tollgate` command: CLI wiring of the router (and, as they land, the gateway and the
//! audit tools), plus the zero-setup demo.
//!
//! # Layout
//! - [`synth`]: a synthetic stream of payment events with realistic score distributions.
//! - [`demo`]: the demo: in-process Kafka, synthetic stream, router and live summary.
//! - [`shutdown`]: SIGTERM / Ctrl-C to a cancellation token.

pub mod demo;
pub mod shutdown;
pub mod synth;
