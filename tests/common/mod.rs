//! Helpers shared by the integration tests: run the real binary, read its commands.
#![allow(dead_code)]

mod commands;
mod temp;
#[allow(unused_imports)]
pub use commands::{comparable, round_floats};
pub use temp::TempDir;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_driftwatch");

/// A fresh directory under the system temp dir, unique to this test; removed when the test
/// passes.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new("driftwatch-test", name)
}

/// Runs the binary and returns its output; panics with stderr when it fails to start.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run driftwatch")
}

/// `simulate --scenario NAME --seed SEED [extra]` into `dir/NAME-SEED.jsonl`.
pub fn simulate(dir: &Path, scenario: &str, seed: u64, extra: &[&str]) -> PathBuf {
    let path = dir.join(format!("{scenario}-{seed}.jsonl"));
    let seed = seed.to_string();
    let p = path.to_string_lossy().to_string();
    let mut args = vec!["simulate", "--scenario", scenario, "--seed", &seed, "--out", &p];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "simulate failed: {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// Replays files; returns (commands, stderr).
pub fn replay(files: &[&Path], extra: &[&str]) -> (Vec<Value>, String) {
    let mut args: Vec<String> = vec!["replay".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(files.iter().map(|p| p.to_string_lossy().to_string()));
    let out = Command::new(BIN).args(&args).stdin(Stdio::null()).output().expect("run replay");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "replay exited {:?}: {stderr}", out.status);
    (parse_commands(&out.stdout), stderr)
}

pub fn parse_commands(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect()
}

/// `command kind/name/version reason` of a command, for comparisons.
pub fn summary(c: &Value) -> String {
    format!(
        "{} {}/{}/{} {}",
        c["command"].as_str().unwrap_or("?"),
        c["target"]["kind"].as_str().unwrap_or("?"),
        c["target"]["name"].as_str().unwrap_or("?"),
        c["target"]["version"].as_str().unwrap_or("?"),
        c["reason"].as_str().unwrap_or("?")
    )
}

/// Parses an RFC 3339 time from a command into epoch ms.
pub fn millis(s: &Value) -> i64 {
    driftwatch::time::parse_rfc3339(s.as_str().expect("a time string")).expect("RFC 3339")
}
