//! Command-line behaviour a user sees: config errors name the key, input errors name the
//! file, replay reads stdin, exits 0 on any content, and writes only commands to stdout;
//! `config` prints the defaults as a config file.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let dir = temp_dir("cfg-unknown");
    let cfg = dir.join("policy.toml");
    std::fs::write(&cfg, "[latency]\nmax_ration = 2.0\n").expect("write");
    let input = simulate(&dir, "canary-error", 1, &["--duration", "1m"]);
    let out = run(&["replay", "--config", cfg.to_str().expect("path"), input.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_ration") && err.contains("policy.toml"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_config_value_names_the_rule() {
    let dir = temp_dir("cfg-invalid");
    let cfg = dir.join("policy.toml");
    std::fs::write(&cfg, "[error_rate]\nalpha = 1.5\n").expect("write");
    let out = run(&["replay", "--config", cfg.to_str().expect("path"), "-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error_rate.alpha"), "{err}");
}

#[test]
fn missing_input_file_is_named() {
    let out = run(&["replay", "/nonexistent/events.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/events.jsonl"));
}

#[test]
fn replay_reads_stdin_and_a_config_changes_decisions() {
    let dir = temp_dir("stdin");
    let input = std::fs::read(simulate(&dir, "canary-error", 1, &[])).expect("read");
    let replay_stdin = |args: &[&str]| {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("writer").expect("write stdin");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parse_commands(&out.stdout)
    };
    let default = replay_stdin(&["replay", "-"]);
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["evidence"]["input_offsets"]["-"].as_u64().map(|o| o > 0), Some(true));
    // Disabling the rule and marking dry-run both show up.
    let cfg = dir.join("off.toml");
    std::fs::write(&cfg, "policy = \"strict\"\ndry_run = true\n[error_rate]\nenabled = false\n").expect("write");
    assert!(replay_stdin(&["replay", "--config", cfg.to_str().expect("path"), "-"]).is_empty());
    let cfg = dir.join("dry.toml");
    std::fs::write(&cfg, "policy = \"canary-strict\"\ndry_run = true\n").expect("write");
    let dry = replay_stdin(&["replay", "--config", cfg.to_str().expect("path"), "-"]);
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(dry[0]["policy"], "canary-strict");
    assert_ne!(dry[0]["command_id"], default[0]["command_id"], "the policy is part of the id");
}

#[test]
fn garbage_input_exits_zero_with_a_summary() {
    let dir = temp_dir("garbage");
    let f = dir.join("garbage.jsonl");
    std::fs::write(&f, b"\x00\x01\x02\nnot json\n{\"type\":\"request\"}\n\n").expect("write");
    let (cmds, stderr) = replay(&[&f], &[]);
    assert!(cmds.is_empty());
    assert!(stderr.contains("bad input: 3 lines"), "{stderr}");
    assert!(stderr.contains(&format!("{}:1:", f.display())), "{stderr}");
}

#[test]
fn simulate_lists_scenarios_and_rejects_unknown_ones() {
    let out = run(&["simulate", "--list"]);
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    for name in driftwatch::sim::SCENARIOS {
        assert!(list.contains(name), "{name} missing from --list");
    }
    let out = run(&["simulate", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario `nope`"));
}

#[test]
fn readme_config_example_is_valid() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("end of block");
    let cfg = driftwatch::config::Config::from_toml(&readme[start..end]).expect("the README's config example is valid");
    assert_eq!(cfg.policy, "checkout-canary");
    assert_eq!(cfg.windows_for(driftwatch::config::Kind::Model, "churn").drift.min_count, Some(1000));
}

#[test]
fn config_prints_the_defaults_as_commented_toml_that_replay_accepts() {
    let out = run(&["config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let cfg = driftwatch::config::Config::from_toml(&text).expect("the printed defaults load");
    assert_eq!(cfg, driftwatch::config::Config::default());
    for section in
        ["[windows]", "[accuracy]", "[drift.window]", "[fleet.kserve]", "[kafka.topics]", "[http]", "# [[targets]]"]
    {
        let at = text.find(&format!("\n{section}\n")).unwrap_or_else(|| panic!("no {section}:\n{text}"));
        let above = text[..at].lines().last().unwrap_or_default();
        assert!(above.starts_with("# "), "no comment above {section}: `{above}`");
    }
    assert!(text.contains("\n# Labels needed on each side.\nmin_labels = 300\n"), "{text}");
    assert!(text.contains("\n# count = "), "count windows are shown: {text}");
    // Saved and edited, it is a config file.
    let dir = temp_dir("config-reference");
    let file = dir.join("driftwatch.toml");
    std::fs::write(&file, text.replace("policy = \"default\"", "policy = \"edited\"")).expect("write");
    let input = simulate(&dir, "canary-error", 1, &[]);
    let out = run(&["replay", "--quiet", "--config", file.to_str().expect("path"), input.to_str().expect("path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let commands = parse_commands(&out.stdout);
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["policy"], "edited");
}
