//! docker-compose.yml cannot be run here (no Docker engine), so this checks what can go stale
//! without one: the file parses; the Kafka service is the official Apache Kafka 4 image in
//! KRaft mode; every subcommand, flag and `DRIFTWATCH_*` variable the driftwatch services use
//! exists in the real binary's CLI; the simulated scenario exists; the mounted config file is
//! valid; and the brokers and topic the services use are the ones the broker and config offer.
//!
//! When `python3` with PyYAML is present, the file is also read with PyYAML and compared, so a
//! value that YAML 1.1 readers take differently (an unquoted `no`, say) shows up here.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_yaml::Value as Yaml;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Yaml {
    let path = root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A scalar as the text compose passes on (an empty value is empty text); `None` for a list
/// or a map.
fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::Null => Some(String::new()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A map's entries (none for anything else); every key of a compose file is a string.
fn entries(v: &Yaml) -> Vec<(&str, &Yaml)> {
    let Some(map) = v.as_mapping() else { return Vec::new() };
    map.iter().map(|(k, v)| (k.as_str().unwrap_or_else(|| panic!("a key that is not a string: {k:?}")), v)).collect()
}

/// The document with every scalar as text, as JSON.
fn to_json(v: &Yaml) -> serde_json::Value {
    match v {
        Yaml::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(_) => {
            serde_json::Value::Object(entries(v).into_iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
        }
        Yaml::Tagged(t) => panic!("a tagged value ({}) has no place in a compose file", t.tag),
        scalar => serde_json::Value::String(text(scalar).unwrap_or_default()),
    }
}

/// The binary, with no `DRIFTWATCH_*` variables from the test's environment.
fn driftwatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DRIFTWATCH_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run driftwatch")
}

fn help(subcommand: &str) -> String {
    let out = output(driftwatch().args([subcommand, "--help"]));
    assert!(out.status.success(), "`driftwatch {subcommand} --help` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Whether `help` names the long flag `flag` (not merely a longer flag starting with it).
fn help_has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let before = help[..i].chars().next_back().is_none_or(|c| c.is_whitespace() || c == ',');
        let after =
            help[i + flag.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'));
        before && after
    })
}

/// Whether the flag takes a value, from its help line (`--config <CONFIG>`).
fn flag_takes_value(help: &str, flag: &str) -> bool {
    help.lines()
        .filter(|l| help_has_flag(l, flag))
        .any(|l| l.split(flag).nth(1).is_some_and(|rest| rest.starts_with(" <") || rest.starts_with("=<")))
}

fn services(doc: &Yaml) -> Vec<(&str, &Yaml)> {
    entries(doc.get("services").expect("a `services:` map"))
}

fn service<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    doc.get("services").and_then(|s| s.get(name)).unwrap_or_else(|| panic!("no service `{name}`"))
}

/// The services that run the driftwatch image (built from this repository).
fn driftwatch_services(doc: &Yaml) -> Vec<(&str, &Yaml)> {
    let image = service(doc, "driftwatch").get("image").and_then(Yaml::as_str);
    let found: Vec<(&str, &Yaml)> = services(doc)
        .into_iter()
        .filter(|(_, s)| {
            s.get("build").is_some() || (image.is_some() && s.get("image").and_then(Yaml::as_str) == image)
        })
        .collect();
    assert!(found.len() >= 2, "expected the driftwatch and simulator services to run the driftwatch image");
    found
}

/// A service's command as arguments to the `driftwatch` entrypoint.
fn command(name: &str, svc: &Yaml) -> Vec<String> {
    match svc.get("command") {
        Some(Yaml::Sequence(items)) => {
            items.iter().map(|i| text(i).unwrap_or_else(|| panic!("{name}: command items must be strings"))).collect()
        }
        Some(Yaml::String(s)) => {
            assert!(!s.contains(['"', '\'', '$', '\\']), "{name}: write a quoted or variable command as a list");
            s.split_whitespace().map(str::to_owned).collect()
        }
        _ => panic!("service `{name}` has no `command:`"),
    }
}

/// A service's environment as (key, value); both the map and the `KEY=value` list form.
fn environment(name: &str, svc: &Yaml) -> Vec<(String, String)> {
    match svc.get("environment") {
        None => Vec::new(),
        Some(map @ Yaml::Mapping(_)) => entries(map)
            .into_iter()
            .map(|(k, v)| {
                let v = text(v).unwrap_or_else(|| panic!("{name}: {k} must be a scalar"));
                (k.to_owned(), v)
            })
            .collect(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = i.as_str().unwrap_or_else(|| panic!("{name}: environment items must be strings"));
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("{name}: unexpected environment {other:?}"),
    }
}

/// The value following `flag` (`--flag value` or `--flag=value`).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
        }
    })
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `host:port` addresses the broker advertises to clients.
fn advertised(kafka: &Yaml) -> Vec<String> {
    let env = environment("kafka", kafka);
    let listeners = env_value(&env, "KAFKA_ADVERTISED_LISTENERS").expect("KAFKA_ADVERTISED_LISTENERS");
    listeners.split(',').filter_map(|l| l.split_once("://").map(|(_, addr)| addr.trim().to_owned())).collect()
}

/// The repository file mounted at `container_path` in a service (`./host:container[:ro]`).
fn mounted_file(name: &str, svc: &Yaml, container_path: &str) -> PathBuf {
    let Some(Yaml::Sequence(volumes)) = svc.get("volumes") else {
        panic!("{name}: no volumes, so {container_path} is absent")
    };
    for v in volumes {
        let spec = v.as_str().unwrap_or_else(|| panic!("{name}: use the short volume syntax"));
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.len() >= 2 && parts[1] == container_path {
            assert!(parts[0].starts_with("./"), "{name}: {container_path} must come from the repository (./…)");
            return root().join(parts[0]);
        }
    }
    panic!("{name}: nothing is mounted at {container_path}")
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn compose_file_parses_and_agrees_with_pyyaml() {
    let doc = compose();
    for name in ["kafka", "driftwatch", "simulator"] {
        service(&doc, name);
    }
    // Cross-check with PyYAML when it is there; scalars compared as text.
    let script = "import json, sys, yaml\n\
        def s(v):\n\
        \x20   if isinstance(v, dict): return {str(k): s(x) for k, x in v.items()}\n\
        \x20   if isinstance(v, list): return [s(x) for x in v]\n\
        \x20   if v is None: return ''\n\
        \x20   if isinstance(v, bool): return 'true' if v else 'false'\n\
        \x20   return str(v)\n\
        print(json.dumps(s(yaml.safe_load(open(sys.argv[1])))))\n";
    let out = Command::new("python3").arg("-c").arg(script).arg(root().join("docker-compose.yml")).output();
    match out {
        Ok(out) if out.status.success() => {
            let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("PyYAML's JSON");
            assert_eq!(to_json(&doc), theirs, "serde_yaml and PyYAML read docker-compose.yml differently");
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("PyYAML not installed: skipping the cross-check")
        }
        Ok(out) => panic!("PyYAML cannot read docker-compose.yml: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("python3 not available ({e}): skipping the cross-check"),
    }
}

#[test]
fn helpers_read_the_forms_compose_files_use() {
    let doc: Yaml = serde_yaml::from_str(
        "# c\nservices:\n  a:\n    command: [\"run\", '--x', plain]  # trailing\n    environment:\n      - K=v\n    \
         list:\n    - one\n    - \"two # not a comment\"\n    s: run --config f\n    empty:\nvolumes:\n  v:\n",
    )
    .expect("the forms parse");
    let a = doc.get("services").and_then(|s| s.get("a")).expect("a");
    assert_eq!(command("a", a), ["run", "--x", "plain"]);
    assert_eq!(environment("a", a), [("K".to_owned(), "v".to_owned())]);
    assert_eq!(a.get("list"), Some(&Yaml::Sequence(vec!["one".into(), "two # not a comment".into()])));
    assert_eq!(a.get("s").and_then(Yaml::as_str), Some("run --config f"));
    assert_eq!(a.get("empty").and_then(text).as_deref(), Some(""));
    assert!(doc.get("volumes").and_then(|v| v.get("v")).is_some());
}

#[test]
fn kafka_service_is_apache_kafka_4_in_kraft_mode() {
    let doc = compose();
    let kafka = service(&doc, "kafka");
    let image = kafka.get("image").and_then(Yaml::as_str).expect("kafka image");
    assert!(image.starts_with("apache/kafka:4."), "kafka image is {image}, expected apache/kafka:4.x");
    let env = environment("kafka", kafka);
    let get = |k: &str| env_value(&env, k).unwrap_or_else(|| panic!("kafka service lacks {k}"));
    let roles: Vec<&str> = get("KAFKA_PROCESS_ROLES").split(',').map(str::trim).collect();
    assert!(roles.contains(&"broker") && roles.contains(&"controller"), "KAFKA_PROCESS_ROLES = {roles:?}");
    let node = get("KAFKA_NODE_ID");
    let controller = get("KAFKA_CONTROLLER_LISTENER_NAMES");
    let listeners = get("KAFKA_LISTENERS");
    assert!(listeners.split(',').any(|l| l.starts_with(&format!("{controller}://"))), "no {controller} listener");
    assert!(get("KAFKA_CONTROLLER_QUORUM_VOTERS").split(',').any(|v| v.starts_with(&format!("{node}@"))));
    // One broker: internal topics must not ask for more replicas than exist.
    for k in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ] {
        assert_eq!(get(k), "1", "{k}");
    }
    // Every advertised address is served by a listener on the same port.
    for addr in advertised(kafka) {
        let port = addr.rsplit(':').next().expect("port");
        assert!(listeners.contains(&format!(":{port}")), "advertised {addr} has no listener");
    }
    let health = kafka.get("healthcheck").and_then(|h| h.get("test")).expect("kafka healthcheck test");
    assert!(format!("{health:?}").contains("/opt/kafka/bin/kafka-broker-api-versions.sh"), "{health:?}");
}

#[test]
fn driftwatch_services_use_only_subcommands_flags_and_variables_the_cli_has() {
    let doc = compose();
    let out = output(driftwatch().arg("--help"));
    assert!(out.status.success());
    let top = String::from_utf8(out.stdout).expect("utf-8 help");
    for (name, svc) in driftwatch_services(&doc) {
        let args = command(name, svc);
        let sub = args.first().unwrap_or_else(|| panic!("{name}: empty command"));
        assert!(!sub.starts_with('-'), "{name}: the command must start with a subcommand");
        assert!(top.lines().any(|l| l.split_whitespace().next() == Some(sub)), "{name}: no subcommand `{sub}`:\n{top}");
        let sub_help = help(sub);
        for (i, arg) in args.iter().enumerate().skip(1) {
            let Some(flag) = arg.strip_prefix("--").map(|f| format!("--{}", f.split('=').next().unwrap_or(f))) else {
                continue;
            };
            assert!(help_has_flag(&sub_help, &flag), "{name}: `driftwatch {sub}` has no {flag}:\n{sub_help}");
            if flag_takes_value(&sub_help, &flag) && !arg.contains('=') {
                let value = args.get(i + 1);
                assert!(value.is_some_and(|v| !v.starts_with("--")), "{name}: {flag} needs a value");
            }
        }
        let env = environment(name, svc);
        for (key, _) in env.iter().filter(|(k, _)| k.starts_with("DRIFTWATCH_")) {
            assert!(
                sub_help.contains(&format!("[env: {key}=")),
                "{name}: `driftwatch {sub}` does not read {key}:\n{sub_help}"
            );
        }
        // Let clap parse the whole command line with the service's environment: it checks
        // every flag and value before acting on the trailing --help.
        let mut cmd = driftwatch();
        cmd.args(&args).arg("--help");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = output(&mut cmd);
        assert!(out.status.success(), "{name}: clap rejects {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn simulated_scenario_exists() {
    let doc = compose();
    let out = output(driftwatch().args(["simulate", "--list"]));
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).expect("utf-8");
    let known: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let mut checked = 0;
    for (name, svc) in driftwatch_services(&doc) {
        let args = command(name, svc);
        if args[0] != "simulate" {
            continue;
        }
        let scenario = flag_value(&args, "--scenario").unwrap_or_else(|| panic!("{name}: simulate without --scenario"));
        assert!(known.contains(&scenario), "{name}: unknown scenario {scenario}; known: {known:?}");
        checked += 1;
    }
    assert!(checked > 0, "no service runs `driftwatch simulate`");
}

#[test]
fn config_file_is_in_the_repository_and_valid() {
    let doc = compose();
    let mut checked = 0;
    for (name, svc) in driftwatch_services(&doc) {
        let args = command(name, svc);
        let env = environment(name, svc);
        let Some(path) = flag_value(&args, "--config").or_else(|| env_value(&env, "DRIFTWATCH_CONFIG")) else {
            assert_ne!(args[0], "run", "{name}: `run` without a config file");
            continue;
        };
        let file = mounted_file(name, svc, path);
        assert!(file.is_file(), "{name}: {} does not exist", file.display());
        // Config errors exit 2; an empty input with a valid config exits 0.
        let mut child = driftwatch()
            .args(["replay", "--quiet", "--config"])
            .arg(&file)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay");
        child.stdin.take().expect("stdin").write_all(b"").expect("write stdin");
        let out = child.wait_with_output().expect("replay");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {} is invalid: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        checked += 1;
    }
    assert!(checked > 0, "no service passes a config file");
}

#[test]
fn services_reach_the_broker_and_topic_the_compose_file_sets_up() {
    let doc = compose();
    let kafka = service(&doc, "kafka");
    let advertised = advertised(kafka);
    let dw = service(&doc, "driftwatch");
    let args = command("driftwatch", dw);
    let config_file = mounted_file("driftwatch", dw, flag_value(&args, "--config").expect("run --config"));
    let cfg = driftwatch::config::Config::load(&config_file).expect("the driftwatch service's config");
    for (name, svc) in driftwatch_services(&doc) {
        let args = command(name, svc);
        let env = environment(name, svc);
        let brokers = flag_value(&args, "--brokers").or_else(|| env_value(&env, "DRIFTWATCH_BROKERS"));
        let brokers = brokers.unwrap_or_else(|| {
            assert_eq!(args[0], "run", "{name}: simulate needs --brokers to produce onto Kafka");
            &cfg.kafka.brokers
        });
        for b in brokers.split(',') {
            assert!(advertised.iter().any(|a| a == b.trim()), "{name}: broker {b} is not advertised ({advertised:?})");
        }
        if args[0] == "simulate" {
            let topic = flag_value(&args, "--topic").unwrap_or("driftwatch.events");
            assert!(
                cfg.kafka.topics.events.iter().any(|t| t == topic),
                "{name}: {topic} is not an input topic of the config"
            );
        }
    }
    assert_eq!(cfg.kafka.replication_factor, 1, "a single broker holds one replica");
    assert_eq!(cfg.kafka.delivery, driftwatch::kafka::Delivery::ExactlyOnce);
}

#[test]
fn services_start_in_order_from_the_dockerfile() {
    let doc = compose();
    let names: Vec<&str> = services(&doc).into_iter().map(|(n, _)| n).collect();
    for (name, svc) in services(&doc) {
        let Some(deps) = svc.get("depends_on") else { continue };
        let deps: Vec<(String, Option<&str>)> = match deps {
            Yaml::Sequence(items) => items.iter().map(|d| (d.as_str().expect("name").to_owned(), None)).collect(),
            map @ Yaml::Mapping(_) => entries(map)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.get("condition").and_then(Yaml::as_str)))
                .collect(),
            other => panic!("{name}: depends_on {other:?}"),
        };
        for (dep, condition) in deps {
            assert!(names.contains(&dep.as_str()), "{name} depends on unknown service {dep}");
            if condition == Some("service_healthy") {
                assert!(
                    service(&doc, &dep).get("healthcheck").is_some(),
                    "{name} waits for {dep} to be healthy: no healthcheck"
                );
            }
        }
    }
    let dw = service(&doc, "driftwatch");
    assert_eq!(
        dw.get("depends_on").and_then(|d| d.get("kafka")).and_then(|k| k.get("condition")).and_then(Yaml::as_str),
        Some("service_healthy")
    );
    for (name, svc) in driftwatch_services(&doc) {
        if let Some(build) = svc.get("build").and_then(Yaml::as_str) {
            assert!(root().join(build).join("Dockerfile").is_file(), "{name}: no Dockerfile in {build}");
        }
    }
    // The services' commands are arguments to the binary.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.lines().any(|l| l.trim() == r#"ENTRYPOINT ["driftwatch"]"#), "Dockerfile ENTRYPOINT");
    assert!(dockerfile.contains("cargo build --release --locked"), "Dockerfile builds from the lock file");
}
