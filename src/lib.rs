//! driftwatch: the feedback half of the deploy loop.
//!
//! It consumes production request, prediction, error and label events, keeps event-time
//! windowed statistics per app version and per model version, and decides — with anytime-valid
//! statistics — when a candidate must be rolled back, a model retrained or reviewed, or a
//! healthy candidate promoted. The [`engine::Engine`] is pure and deterministic; the drivers
//! around it read files ([`replay`]) or Kafka.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]
// A panic on input or on a broker's answer takes the service down: outside tests, errors are
// returned, and an invariant that cannot fail says why where it is relied on.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod command;
pub mod config;
pub mod demo;
pub mod detect;
pub mod engine;
pub mod event;
pub mod evidence;
pub mod fleet;
pub mod http;
pub mod kafka;
pub mod labels;
pub mod merge;
pub mod observe;
pub mod profile;
pub mod reference;
pub mod replay;
mod scan;
pub mod sim;
pub mod stats;
pub mod time;
pub mod window;
