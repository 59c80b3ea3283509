//! The rules, one file each: state and config in, a finding or a command (through
//! [`super::policy`]) out. Their statistics live in [`crate::detect`].

mod accuracy;
mod drift;
mod error_rate;
mod latency;
mod promote;
#[cfg(test)]
pub(in crate::engine) mod testkit;

pub(in crate::engine) use accuracy::*;
pub(in crate::engine) use error_rate::*;
