//! The `tollgate` command: CLI wiring of the router, the gateway, the audit tools and the policy replay, plus the
//! zero-setup demo.
//!
//! # Layout
//! - [`audit_cli`]: `tollgate audit verify | export`.
//! - [`bench`](mod@bench): `tollgate bench`, the end-to-end benchmark harness.
//! - [`replay_cli`]: `tollgate replay` (policy backtest).
//! - [`synth`]: a synthetic stream of payment events with realistic score distributions.
//! - [`demo`]: the demo: in-process Kafka, synthetic stream, router and live summary.
//! - [`shutdown`]: SIGTERM / Ctrl-C to a cancellation token.

pub mod audit_cli;
pub mod bench;
pub mod demo;
pub mod replay_cli;
pub mod shutdown;
pub mod synth;
