//! The throughput anchor of the replay benchmark: read a JSON Lines file and parse each line
//! into a `serde_json::Value`, nothing else. `cargo run --release --example parse_only -- FILE`

use std::io::{BufRead, BufReader};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| std::io::Error::other("usage: parse_only FILE"))?;
    let start = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let (mut lines, mut bytes, mut objects) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        lines += 1;
        bytes += line.len() as u64;
        if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(&line) {
            objects += 1;
        }
        line.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse-only: {lines} lines ({objects} objects), {:.1} MB in {secs:.2} s: {:.0} lines/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}
