//! Tollgate's reviewer gateway: the HTTP API human reviewers use to list review queues, open a
//! case, claim it and decide.
//!
//! Not built yet. The contract it will build on is already fixed: it reads the routed records
//! of `tollgate.sync-review` and `tollgate.async-review` and the audit records defined in
//! `tollgate-schemas`, and never depends on the router's internals.
