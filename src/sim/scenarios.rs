//! The scenario table: every named scenario ([`scenario`]), the sized `services` scenario
//! ([`services`]), and the commands each is built to produce.

use crate::command::{CommandKind, Reason};
use crate::config::Kind;
use crate::time::Millis;

use super::{Expected, Scenario, Shift, StreamSpec, MIN};

fn expect(command: CommandKind, kind: Kind, name: &str, version: &str, reason: Reason) -> Expected {
    Expected { command, kind, name: name.into(), version: version.into(), reason, drifted: Vec::new() }
}

/// Names of all scenarios.
pub const SCENARIOS: [&str; 19] = [
    "canary-error",
    "aa-control",
    "low-traffic",
    "latency-regression",
    "full-rollout",
    "model-error",
    "numeric-drift",
    "categorical-drift",
    "stationary",
    "accuracy-regression",
    "accuracy-review",
    "bad-input",
    "mixed",
    "disorder",
    "many-targets",
    "ten-thousand-targets",
    "services",
    "demo",
    "fleet",
];

/// Services in the `services` scenario unless `--services` says otherwise.
pub const DEFAULT_SERVICES: usize = 2_000;

/// The `services` scenario: `n` services, each with a stable version and a canary from the
/// first minute, both at one request a second; every 100th canary fails 30% of its requests
/// and only those are rolled back. The fleet-scale cost test: versions many, traffic thin.
pub fn services(n: usize) -> Scenario {
    let mut streams = Vec::with_capacity(2 * n);
    let mut expected = Vec::new();
    for i in 0..n {
        let app = format!("svc-{i:06}");
        streams.push(StreamSpec::app(&app, "1.0", 0, 1.0, 0.01));
        let failing = i % 100 == 37;
        streams.push(StreamSpec::app(&app, "1.1", MIN, 1.0, if failing { 0.30 } else { 0.01 }));
        if failing {
            expected.push(expect(CommandKind::Rollback, Kind::App, &app, "1.1", Reason::ErrorRate));
        }
    }
    Scenario {
        name: "services",
        description: "N services (--services, default 2,000), each a stable version and a canary at 1 request/s; every 100th canary fails 30%: exactly those are rolled back",
        duration: 6 * MIN,
        streams,
        bad_input_rate: 0.0,
        disorder: 0,
        fault_at: Some(MIN),
        expected,
    }
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    use CommandKind::*;
    use Kind::*;
    let base = |name, description, duration, streams, expected| Scenario {
        name,
        description,
        duration,
        streams,
        bad_input_rate: 0.0,
        disorder: 0,
        fault_at: None,
        expected,
    };
    let canary = || {
        vec![
            StreamSpec::app("checkout", "2.3.0", 0, 45.0, 0.01),
            StreamSpec::app("checkout", "2.4.0", 10 * MIN, 5.0, 0.04),
        ]
    };
    let drift_model = |shift: Option<(Millis, Shift)>| {
        let mut m = StreamSpec::model("fraud", "7", 0, 20.0, 0.0);
        m.shift = shift;
        m
    };
    let s = match name {
        "canary-error" => Scenario {
            fault_at: Some(10 * MIN),
            ..base(
                "canary-error",
                "checkout 2.4.0 canary (10% of 50 req/s) fails 4% against 1% on 2.3.0: rollback for error rate",
                30 * MIN,
                canary(),
                vec![expect(Rollback, App, "checkout", "2.4.0", Reason::ErrorRate)],
            )
        },
        "aa-control" => {
            let mut st = canary();
            st[1].error_rate = 0.01;
            base(
                "aa-control",
                "checkout 2.4.0 canary as healthy as 2.3.0 (1% errors): no rollback, promoted once shown not worse",
                45 * MIN,
                st,
                vec![expect(Promote, App, "checkout", "2.4.0", Reason::Healthy)],
            )
        }
        "low-traffic" => {
            let mut rare = StreamSpec::model("churn", "3", 0, 0.02, 0.02);
            rare.app = None;
            base(
                "low-traffic",
                "an admin app and a churn model at a few events per minute: nothing is decided on too little data",
                6 * 60 * MIN,
                vec![
                    StreamSpec::app("admin", "1.0", 0, 0.05, 0.02),
                    StreamSpec::app("admin", "1.1", 30 * MIN, 0.05, 0.02),
                    rare,
                ],
                vec![],
            )
        }
        "latency-regression" => {
            let mut st = canary();
            st[1].error_rate = 0.01;
            st[1].latency_median = 80.0;
            Scenario {
                fault_at: Some(10 * MIN),
                ..base(
                    "latency-regression",
                    "checkout 2.4.0 canary answers twice as slowly: rollback for latency",
                    30 * MIN,
                    st,
                    vec![expect(Rollback, App, "checkout", "2.4.0", Reason::Latency)],
                )
            }
        }
        "full-rollout" => {
            let mut old = StreamSpec::app("checkout", "2.3.0", 0, 50.0, 0.01);
            old.end = Some(15 * MIN);
            let new = StreamSpec::app("checkout", "2.4.0", 15 * MIN, 50.0, 0.04);
            Scenario {
                fault_at: Some(15 * MIN),
                ..base(
                    "full-rollout",
                    "checkout 2.4.0 replaces 2.3.0 at once and fails 4% against 1% before: rollback against pre-switch statistics",
                    30 * MIN,
                    vec![old, new],
                    vec![expect(Rollback, App, "checkout", "2.4.0", Reason::ErrorRate)],
                )
            }
        }
        "model-error" => {
            let mut v6 = StreamSpec::model("fraud", "6", 0, 45.0, 0.01);
            v6.app = Some(("checkout".into(), "2.3.0".into()));
            let mut v7 = StreamSpec::model("fraud", "7", 10 * MIN, 5.0, 0.04);
            v7.app = Some(("checkout".into(), "2.3.0".into()));
            Scenario {
                fault_at: Some(10 * MIN),
                ..base(
                    "model-error",
                    "fraud model 7 canary fails 4% against 1% on model 6, app version unchanged: rollback of the model only",
                    30 * MIN,
                    vec![v6, v7],
                    vec![expect(Rollback, Model, "fraud", "7", Reason::ErrorRate)],
                )
            }
        }
        "numeric-drift" => Scenario {
            fault_at: Some(40 * MIN),
            ..base(
                "numeric-drift",
                "fraud model 7 at 20 req/s; `amount` shifts by 0.67σ of its log-value at 40 min: retrain naming `amount`",
                60 * MIN,
                vec![drift_model(Some((40 * MIN, Shift::AmountLog(0.67))))],
                vec![Expected {
                    drifted: vec!["amount".into()],
                    ..expect(Retrain, Model, "fraud", "7", Reason::FeatureDrift)
                }],
            )
        },
        "categorical-drift" => Scenario {
            fault_at: Some(40 * MIN),
            ..base(
                "categorical-drift",
                "fraud model 7 at 20 req/s; `country` shares of US and DE swap (45%/20%) at 40 min: retrain naming `country`",
                60 * MIN,
                vec![drift_model(Some((40 * MIN, Shift::CountrySwap)))],
                vec![Expected {
                    drifted: vec!["country".into()],
                    ..expect(Retrain, Model, "fraud", "7", Reason::FeatureDrift)
                }],
            )
        },
        "stationary" => {
            let mut m = drift_model(Some((90 * MIN, Shift::AmountLog(0.025))));
            m.numeric_prediction = true;
            base(
                "stationary",
                "a regression model at 20 req/s for 3 hours, with a 0.025σ shift of `amount` half-way: no retrain",
                180 * MIN,
                vec![m],
                vec![],
            )
        }
        "accuracy-regression" => {
            let mut v6 = StreamSpec::model("fraud", "6", 0, 45.0, 0.005);
            v6.accuracy = Some(0.90);
            let mut v7 = StreamSpec::model("fraud", "7", 10 * MIN, 5.0, 0.005);
            v7.accuracy = Some(0.80);
            Scenario {
                fault_at: Some(10 * MIN),
                ..base(
                    "accuracy-regression",
                    "fraud model 7 canary is right 80% of the time against 90% for model 6: rollback for accuracy",
                    40 * MIN,
                    vec![v6, v7],
                    vec![expect(Rollback, Model, "fraud", "7", Reason::Accuracy)],
                )
            }
        }
        "accuracy-review" => {
            let mut v6 = StreamSpec::model("fraud", "6", 0, 50.0, 0.005);
            v6.accuracy = Some(0.90);
            let mut v7 = StreamSpec::model("fraud", "7", 10 * MIN, 50.0, 0.005);
            v7.accuracy = Some(0.87);
            Scenario {
                fault_at: Some(10 * MIN),
                ..base(
                    "accuracy-review",
                    "fraud model 7 (half the traffic) is 3 points less accurate than model 6: review, not rollback",
                    40 * MIN,
                    vec![v6, v7],
                    vec![expect(Review, Model, "fraud", "7", Reason::Accuracy)],
                )
            }
        }
        "bad-input" => Scenario {
            bad_input_rate: 0.03,
            fault_at: Some(10 * MIN),
            ..base(
                "bad-input",
                "the canary-error stream with 3% bad lines of every kind mixed in: the same decisions as its clean twin",
                30 * MIN,
                canary(),
                vec![expect(Rollback, App, "checkout", "2.4.0", Reason::ErrorRate)],
            )
        },
        "mixed" | "disorder" => {
            let mut st = canary();
            st.push(drift_model(Some((40 * MIN, Shift::AmountLog(0.67)))));
            let mut labelled = StreamSpec::model("churn", "3", 0, 10.0, 0.002);
            labelled.accuracy = Some(0.85);
            labelled.features = false;
            st.push(labelled);
            let disorder = if name == "disorder" { 25_000 } else { 0 };
            Scenario {
                disorder,
                fault_at: Some(10 * MIN),
                ..base(
                    if disorder > 0 { "disorder" } else { "mixed" },
                    if disorder > 0 {
                        "the mixed fleet with every event displaced by up to 25 s: exactly the decisions of sorted input"
                    } else {
                        "an app canary that regresses, a model that drifts at 40 min, a labelled model: the benchmark mix"
                    },
                    60 * MIN,
                    st,
                    vec![
                        expect(Rollback, App, "checkout", "2.4.0", Reason::ErrorRate),
                        Expected {
                            drifted: vec!["amount".into()],
                            ..expect(Retrain, Model, "fraud", "7", Reason::FeatureDrift)
                        },
                    ],
                )
            }
        }
        "many-targets" => {
            let mut st = Vec::new();
            let mut expected = Vec::new();
            for i in 0..1000 {
                let app = format!("svc-{i:04}");
                st.push(StreamSpec::app(&app, "1.0", 0, 0.5, 0.01));
                if i % 50 == 7 {
                    st.push(StreamSpec::app(&app, "1.1", 10 * MIN, 0.5, 0.30));
                    expected.push(expect(Rollback, App, &app, "1.1", Reason::ErrorRate));
                }
            }
            for i in 0..100 {
                let mut m = StreamSpec::model(&format!("model-{i:03}"), "1", 0, 0.2, 0.0);
                m.latency_median = 5.0;
                st.push(m);
            }
            Scenario {
                fault_at: Some(10 * MIN),
                ..base(
                    "many-targets",
                    "1,000 apps and 100 models; 20 apps get a canary failing 30%: exactly those 20 are rolled back",
                    30 * MIN,
                    st,
                    expected,
                )
            }
        }
        "ten-thousand-targets" => {
            let mut st = Vec::new();
            let mut expected = Vec::new();
            for i in 0..9000 {
                let app = format!("svc-{i:04}");
                st.push(StreamSpec::app(&app, "1.0", 0, 0.3, 0.01));
                if i % 90 == 7 {
                    st.push(StreamSpec::app(&app, "1.1", MIN, 0.5, 0.30));
                    expected.push(expect(Rollback, App, &app, "1.1", Reason::ErrorRate));
                }
            }
            for i in 0..1000 {
                let mut m = StreamSpec::model(&format!("model-{i:03}"), "1", 0, 0.1, 0.0);
                m.latency_median = 5.0;
                st.push(m);
            }
            Scenario {
                fault_at: Some(MIN),
                ..base(
                    "ten-thousand-targets",
                    "9,000 apps, 100 canaries failing 30% and 1,000 models (10,100 versions): the load test of the HTTP API; exactly the 100 canaries are rolled back",
                    15 * MIN,
                    st,
                    expected,
                )
            }
        }
        "services" => services(DEFAULT_SERVICES),
        "fleet" => {
            let named = |mut s: StreamSpec, app: Option<(&str, &str)>| {
                s.app = app.map(|(a, v)| (a.into(), v.into()));
                s
            };
            let mut cart_canary = StreamSpec::app("cart", "1.1", 10 * MIN, 4.0, 0.01);
            cart_canary.latency_median = 80.0;
            let mut payments_old = StreamSpec::app("payments", "3.0", 0, 12.0, 0.01);
            payments_old.end = Some(15 * MIN);
            let mut risk = StreamSpec::model("risk", "2", 0, 20.0, 0.0);
            risk.shift = Some((20 * MIN, Shift::AmountLog(0.67)));
            let mut geo = StreamSpec::model("geo", "1", 0, 20.0, 0.0);
            geo.shift = Some((20 * MIN, Shift::CountrySwap));
            let labelled = |name: &str, version: &str, start: Millis, rate: f64, accuracy: f64| {
                let mut m = StreamSpec::model(name, version, start, rate, 0.005);
                m.accuracy = Some(accuracy);
                m.features = false;
                m
            };
            let mut pricing = StreamSpec::model("pricing", "5", 0, 10.0, 0.0);
            pricing.numeric_prediction = true;
            Scenario {
                bad_input_rate: 0.02,
                fault_at: Some(10 * MIN),
                ..base(
                    "fleet",
                    "twelve services at once, 2% bad lines: canary error, latency and full-rollout regressions, a model's error attribution, numeric and categorical drift, an accuracy regression, a review band, healthy canaries and a stationary model",
                    40 * MIN,
                    vec![
                        StreamSpec::app("checkout", "2.3.0", 0, 30.0, 0.01),
                        StreamSpec::app("checkout", "2.4.0", 10 * MIN, 4.0, 0.05),
                        StreamSpec::app("cart", "1.0", 0, 20.0, 0.01),
                        cart_canary,
                        payments_old,
                        StreamSpec::app("payments", "3.1", 15 * MIN, 12.0, 0.05),
                        StreamSpec::app("search", "5.1.0", 0, 20.0, 0.005),
                        StreamSpec::app("search", "5.2.0", 5 * MIN, 20.0, 0.005),
                        named(StreamSpec::model("fraud", "6", 0, 20.0, 0.01), Some(("gateway", "2.0"))),
                        named(StreamSpec::model("fraud", "7", 10 * MIN, 4.0, 0.05), Some(("gateway", "2.0"))),
                        risk,
                        geo,
                        labelled("churn", "3", 0, 20.0, 0.90),
                        labelled("churn", "4", 10 * MIN, 4.0, 0.78),
                        labelled("ranker", "1", 0, 20.0, 0.90),
                        labelled("ranker", "2", 10 * MIN, 20.0, 0.87),
                        pricing,
                    ],
                    Vec::new(),
                )
            }
        }
        "demo" => {
            let mut st = vec![
                StreamSpec::app("checkout", "2.3.0", 0, 45.0, 0.01),
                StreamSpec::app("checkout", "2.4.0", 2 * MIN, 5.0, 0.05),
                StreamSpec::app("search", "5.1.0", 0, 30.0, 0.005),
                StreamSpec::app("search", "5.2.0", MIN, 30.0, 0.005),
            ];
            let mut m = drift_model(Some((14 * MIN, Shift::CountrySwap)));
            m.rate = 30.0;
            st.push(m);
            Scenario {
                fault_at: Some(2 * MIN),
                ..base(
                    "demo",
                    "a canary that regresses, a model whose inputs drift, a healthy canary that gets promoted",
                    30 * MIN,
                    st,
                    vec![
                        expect(Rollback, App, "checkout", "2.4.0", Reason::ErrorRate),
                        expect(Promote, App, "search", "5.2.0", Reason::Healthy),
                        Expected {
                            drifted: vec!["country".into()],
                            ..expect(Retrain, Model, "fraud", "7", Reason::FeatureDrift)
                        },
                    ],
                )
            }
        }
        _ => return None,
    };
    Some(s)
}
