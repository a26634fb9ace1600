//! In-process tests of the gateway's HTTP API: the authorization matrix, redaction, claims,
//! decisions, second sign-off, idempotency, bad input and the OpenAPI document.

mod actions;
mod bad_input;
mod harness;
mod matrix;
mod openapi;
mod reads;
