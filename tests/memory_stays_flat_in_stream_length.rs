//! Memory does not grow with stream length: a stream ten times longer peaks at no more than
//! 1.5 times the memory (the replay summary reports peak resident memory).

mod common;

use common::*;

fn peak_mb(stderr: &str) -> f64 {
    let line =
        stderr.lines().find(|l| l.starts_with("peak memory:")).unwrap_or_else(|| panic!("no peak memory in {stderr}"));
    line.trim_start_matches("peak memory:").trim().split(' ').next().and_then(|v| v.parse().ok()).expect("a number")
}

fn measure(scenario: &str, short: &str, long: &str, rate_scale: &str) -> (f64, f64) {
    let dir = temp_dir(&format!("memory-{scenario}"));
    let a = simulate(&dir, scenario, 1, &["--duration", short, "--rate-scale", rate_scale]);
    let b = simulate(&dir, scenario, 2, &["--duration", long, "--rate-scale", rate_scale]);
    let (_, sa) = replay(&[&a], &[]);
    let (_, sb) = replay(&[&b], &[]);
    let (ma, mb) = (peak_mb(&sa), peak_mb(&sb));
    println!("{scenario}: peak {ma:.1} MB for {short}, {mb:.1} MB for {long} ({:.2}x)", mb / ma);
    std::fs::remove_dir_all(&dir).ok();
    (ma, mb)
}

#[test]
fn labelled_model_stream_ten_times_longer_uses_at_most_one_and_a_half_times_the_memory() {
    let (short, long) = measure("stationary", "30m", "300m", "1");
    assert!(long <= short * 1.5, "{short} MB -> {long} MB");
}

#[test]
fn mixed_fleet_ten_times_longer_uses_at_most_one_and_a_half_times_the_memory() {
    let (short, long) = measure("mixed", "20m", "200m", "0.5");
    assert!(long <= short * 1.5, "{short} MB -> {long} MB");
}

#[test]
fn thousands_of_thin_versions_cost_at_most_sixteen_kilobytes_each() {
    // 2,000 services, a stable version and a canary each at one request a second: 4,000
    // versions. The whole process, read buffers included, stays within 16 KB per version.
    let dir = temp_dir("memory-services");
    let file = simulate(&dir, "services", 1, &[]);
    let (commands, stderr) = replay(&[&file], &[]);
    let mb = peak_mb(&stderr);
    let per_version_kb = mb * 1024.0 / 4000.0;
    println!("services: 4,000 versions peak {mb:.1} MB ({per_version_kb:.1} KB per version)");
    assert!(stderr.contains("4000 targets tracked"), "{stderr}");
    assert_eq!(commands.len(), 20, "the 20 failing canaries");
    assert!(per_version_kb <= 16.0, "{per_version_kb:.1} KB per version");
    std::fs::remove_dir_all(&dir).ok();
}
