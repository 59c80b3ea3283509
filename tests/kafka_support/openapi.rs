//! `schemas/openapi.yaml` as the HTTP tests read it: each JSON answer validated against the
//! schema of its (method, path, status), and the pairs seen recorded.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonschema::Validator;
use serde_json::{json, Value};

use super::{free_port, Service};

/// One HTTP answer.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    /// The answer to a request, whatever its status; a gzip body is decoded. Panics, naming
    /// `what`, only when there is no answer at all.
    pub fn of(r: Result<ureq::Response, ureq::Error>, what: &str) -> Reply {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{what}: {e}"),
        };
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_owned();
        let gzip = resp.header("content-encoding") == Some("gzip");
        let mut raw = Vec::new();
        resp.into_reader().take(64 << 20).read_to_end(&mut raw).expect("read body");
        let body = if gzip {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut s).expect("gzip body");
            s
        } else {
            String::from_utf8(raw).expect("UTF-8 body")
        };
        Reply { status, content_type, body }
    }
}

/// A client of one running service's HTTP API. Each test adds the requests it makes.
pub struct Api {
    pub base: String,
    pub agent: ureq::Agent,
}

impl Api {
    /// Starts the service with `config` and its HTTP API on a free port, and a client of it.
    pub fn start(config: &Path, brokers: &str, log: PathBuf) -> (Service, Api) {
        let addr = format!("127.0.0.1:{}", free_port());
        let svc = Service::start(config, brokers, &["--http", &addr], log);
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
        (svc, Api { base: format!("http://{addr}"), agent })
    }
}

/// The OpenAPI document as JSON, and validators built from its schemas.
pub struct Spec {
    pub doc: Value,
    /// (path template, status) pairs the test has checked.
    pub seen: BTreeSet<(String, u16)>,
}

impl Spec {
    pub fn load() -> Spec {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let text = std::fs::read_to_string(root.join("openapi.yaml")).expect("read schemas/openapi.yaml");
        let doc: Value = serde_yaml::from_str(&text).expect("schemas/openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0", "OpenAPI 3.1");
        Spec { doc, seen: BTreeSet::new() }
    }

    pub fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => self.doc.pointer(&r[1..]).unwrap_or_else(|| panic!("dangling $ref {r}")),
            _ => v,
        }
    }

    /// The validator of the JSON body of `method template` answering `status`.
    fn validator(&self, method: &str, template: &str, status: u16) -> Validator {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "openapi.yaml has no {method} {template}");
        let resp = self.resolve(&op["responses"][status.to_string()]);
        assert!(resp.is_object(), "openapi.yaml: {method} {template} does not document status {status}");
        let schema = resp["content"]["application/json"]["schema"].clone();
        assert!(schema.is_object(), "openapi.yaml: {method} {template} {status} has no application/json schema");
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"].clone(),
            "$defs": {"response": schema},
            "$ref": "#/$defs/response",
        });
        root["$id"] = json!("https://driftwatch.dev/schemas/openapi-response.json");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("openapi.yaml: schema of {method} {template} {status} does not compile: {e}"))
    }

    /// Checks a JSON answer to GET against the spec and records it as seen.
    pub fn check(&mut self, template: &str, url: &str, r: &Reply) -> Value {
        self.check_method("get", template, url, r)
    }

    /// Checks a JSON answer to `method` (lower case) against the spec and records it as seen.
    pub fn check_method(&mut self, method: &str, template: &str, url: &str, r: &Reply) -> Value {
        let body: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {url} ({}) is not JSON ({e}): {}", r.status, r.body));
        assert_eq!(r.content_type.split(';').next(), Some("application/json"), "{method} {url}: content type");
        let v = self.validator(method, template, r.status);
        let errors: Vec<String> = v.iter_errors(&body).take(5).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{method} {url} ({}) does not match openapi.yaml: {errors:#?}\n{body:#}", r.status);
        self.seen.insert((template.to_owned(), r.status));
        body
    }

    pub fn check_text(&mut self, template: &str, r: &Reply, media: &str) {
        let op = &self.doc["paths"][template]["get"];
        let resp = self.resolve(&op["responses"][r.status.to_string()]);
        assert!(
            resp["content"][media].is_object(),
            "openapi.yaml: GET {template} {} is not documented as {media}",
            r.status
        );
        assert_eq!(r.content_type.split(';').next(), Some(media), "GET {template}: content type");
        self.seen.insert((template.to_owned(), r.status));
    }
}
