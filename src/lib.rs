//! The `tollgate` command: CLI wiring of the router, the gateway and the audit tools, plus the
//! zero-setup demo.
//!
//! # Layout
//! - [`audit_cli`]: `tollgate audit verify | export`.
//! - [`synth`]: a synthetic stream of payment events with realistic score distributions.
//! - [`demo`]: the demo: in-process Kafka, synthetic stream, router and live summary.
//! - [`shutdown`]: SIGTERM / Ctrl-C to a cancellation token.

pub mod audit_cli;
pub mod demo;
pub mod shutdown;
pub mod synth;
