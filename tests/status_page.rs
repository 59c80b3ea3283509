//! The status page in a real browser: starts `driftwatch demo --http`, then has Debian's
//! chromium (driven by `tests/browser/status_page.mjs` with playwright-core) wait for the demo's
//! canary rollback to show in the targets table and the decision log, open its evidence, select
//! `checkout` for its error-rate chart and take a full-page screenshot, kept as
//! `target/test-artifacts/status-page.png`.
//!
//! Needs node, /usr/bin/chromium and `npm ci --prefix tests/browser`: `scripts/test.sh`
//! installs all three. Without them the test fails; it never skips.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_driftwatch");
const CHROMIUM: &str = "/usr/bin/chromium";
const SETUP: &str = "run scripts/test.sh, which installs node's packages (npm ci --prefix tests/browser) and Debian's chromium and chromium-driver";

/// Kills and reaps a child process when dropped, so neither a pass nor a panic leaves it running.
struct KillOnDrop {
    child: Child,
    what: &'static str,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        match self.child.wait() {
            Ok(status) => eprintln!("{} stopped ({status})", self.what),
            Err(e) => eprintln!("{} could not be reaped: {e}", self.what),
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn tail(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(max);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_string()
}

/// Fails (never skips) with the set-up hint when the browser toolchain is missing.
fn require_browser_toolchain(root: &Path) {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let major: u32 = v.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            assert!(major >= 20, "node {v} is too old for the browser test (needs 20 or newer); {SETUP}");
        }
        Ok(o) => panic!("`node --version` failed ({}); {SETUP}", o.status),
        Err(e) => panic!("node is not installed ({e}); {SETUP}"),
    }
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing; {SETUP}");
    let pkg = root.join("tests/browser/node_modules/playwright-core/package.json");
    assert!(pkg.exists(), "{} is missing (npm packages not installed); {SETUP}", pkg.display());
}

/// Waits until `GET /healthz` answers 200, or panics with the demo's log.
fn wait_for_health(addr: SocketAddr, demo: &mut KillOnDrop, log: &Path, within: Duration) {
    let url = format!("http://{addr}/healthz");
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer yet");
    loop {
        if let Ok(Some(status)) = demo.child.try_wait() {
            panic!("the demo exited ({status}) before {url} answered; its log:\n{}", tail(log, 6000));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            match ureq::get(&url).timeout(Duration::from_secs(2)).call() {
                Ok(r) if r.status() == 200 => return,
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {within:?} (last: {last}); the demo's log:\n{}",
            tail(log, 6000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the browser script with a hard time limit; returns its status, stdout and stderr.
fn run_browser(root: &Path, base: &str, shot: &Path, logs: &Path, limit: Duration) -> (ExitStatus, String, String) {
    let out_path = logs.join("status-page-browser.stdout");
    let err_path = logs.join("status-page-browser.stderr");
    let child = Command::new("node")
        .arg(root.join("tests/browser/status_page.mjs"))
        .arg(base)
        .arg(shot)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create browser stdout file"))
        .stderr(File::create(&err_path).expect("create browser stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node ({e}); {SETUP}"));
    let mut node = KillOnDrop { child, what: "browser script" };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = node.child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = node.child.kill();
            panic!(
                "the browser script did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                tail(&out_path, 8000),
                tail(&err_path, 8000)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(node);
    (status, tail(&out_path, 64_000), tail(&err_path, 64_000))
}

#[test]
fn status_page_shows_the_demo_rollback_in_a_real_browser() {
    let root = root();
    require_browser_toolchain(&root);
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create target/test-artifacts");
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("socket address");
    let demo_log = artifacts.join("status-page-demo.log");
    let log = File::create(&demo_log).expect("create demo log");
    let child = Command::new(BIN)
        .args(["demo", "--http", &addr.to_string(), "--duration", "60"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .expect("start driftwatch demo");
    let mut demo = KillOnDrop { child, what: "driftwatch demo" };
    let started = Instant::now();
    wait_for_health(addr, &mut demo, &demo_log, Duration::from_secs(30));
    eprintln!("demo serving on http://{addr} after {:.1}s", started.elapsed().as_secs_f64());

    let base = format!("http://{addr}");
    let (status, stdout, stderr) = run_browser(&root, &base, &shot, &artifacts, Duration::from_secs(180));
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    assert!(
        status.success(),
        "the browser check failed ({status}) after {:.1}s\nstdout:\n{stdout}\nstderr:\n{stderr}\nthe demo's log ends:\n{}",
        started.elapsed().as_secs_f64(),
        tail(&demo_log, 4000)
    );
    assert!(shot.exists(), "the browser script passed but wrote no screenshot at {}", shot.display());
    eprintln!("status page checked in {:.1}s; screenshot at {}", started.elapsed().as_secs_f64(), shot.display());
    drop(demo);
}
