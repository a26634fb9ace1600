//! Observability as code, tested against the real tools: promtool checks and unit-tests the
//! rules; a real Prometheus parses every dashboard and Grafana alert query; those queries name
//! only metrics a running router and gateway export; and, end to end, a real Prometheus
//! scraping a real router on the real broker sees drift and override alerts fire, which a real
//! Alertmanager delivers to a webhook. `docker-compose config` accepts the compose file.
//!
//! Needs promtool, prometheus, prometheus-alertmanager, amtool and docker-compose (Debian
//! packages; `scripts/test.sh` installs them).

mod common;

use common::{create_topics, free_port, http_get, produce, Broker, GatewayProcess, RouterProcess, TestRecord, Topics};
use common::{Collector, WebhookReceiver};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

/// Runs a tool; panics with its output when it fails (or is missing).
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).current_dir(ROOT).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): install the observability tools with scripts/install-observability.sh")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

/// Alert names defined in the rules file (lines `- alert: Name`).
fn alert_names() -> Vec<String> {
    std::fs::read_to_string(path("dashboards/prometheus/tollgate-rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_owned))
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_is_tested_firing_and_quiet() {
    assert!(run("promtool", &["check", "rules", "dashboards/prometheus/tollgate-rules.yml"]).contains("SUCCESS"));
    assert!(
        run("promtool", &["test", "rules", "dashboards/prometheus/tests/tollgate-rules.test.yml"]).contains("SUCCESS")
    );
    // Each alert test case is a block from `- eval_time:` to the next.
    let tests = std::fs::read_to_string(path("dashboards/prometheus/tests/tollgate-rules.test.yml")).unwrap();
    let cases: Vec<&str> = tests.split("- eval_time:").skip(1).collect();
    for alert in alert_names() {
        let mine: Vec<&&str> = cases.iter().filter(|c| c.contains(&format!("alertname: {alert}\n"))).collect();
        let quiet = mine.iter().any(|c| c.contains("exp_alerts: []"));
        let firing = mine.iter().any(|c| c.contains("exp_labels:"));
        assert!(quiet && firing, "{alert} needs a firing and a non-firing test case");
    }
    assert!(run("amtool", &["check-config", "deploy/alertmanager.yml"]).contains("SUCCESS"));
}

#[test]
fn every_alert_has_severity_and_annotations_and_its_runbook_section_exists() {
    let rules = std::fs::read_to_string(path("dashboards/prometheus/tollgate-rules.yml")).unwrap();
    let runbook = std::fs::read_to_string(path("dashboards/RUNBOOK.md")).unwrap();
    let anchors: BTreeSet<String> =
        runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(|h| h.to_lowercase().replace(' ', "-")).collect();
    let grafana: Value = serde_json::from_str(
        &std::fs::read_to_string(path("dashboards/grafana/alerting/tollgate-alerts.json")).unwrap(),
    )
    .unwrap();
    let grafana_rules = grafana["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(grafana["apiVersion"], 1);
    for (name, block) in alert_names().iter().zip(rules.split("- alert: ").skip(1)) {
        for key in ["severity: ", "summary: ", "description: ", "runbook_url: "] {
            assert!(block.contains(key), "{name} lacks {key}");
        }
        let url = block.lines().find_map(|l| l.trim().strip_prefix("runbook_url: ")).unwrap().trim_matches('\'');
        let anchor = url.rsplit_once('#').unwrap().1;
        assert!(anchors.contains(anchor), "{name}: no RUNBOOK.md section for #{anchor}");
        // The Grafana twin: same name, for-duration, severity and annotations.
        let twin = grafana_rules
            .iter()
            .find(|r| r["title"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in Grafana"));
        let prom_for = block.lines().find_map(|l| l.trim().strip_prefix("for: ")).unwrap_or("0s");
        assert_eq!(twin["for"], prom_for, "{name}");
        assert!(block.contains(&format!("severity: {}", twin["labels"]["severity"].as_str().unwrap())), "{name}");
        assert_eq!(twin["annotations"]["runbook_url"], url, "{name}");
        assert_eq!(twin["data"][0]["datasourceUid"], "tollgate-prometheus", "{name}");
    }
    assert_eq!(grafana_rules.len(), alert_names().len());
}

#[test]
fn docker_compose_accepts_the_stack() {
    run("docker-compose", &["-f", "docker-compose.yml", "config", "-q"]);
    let services: BTreeSet<String> = run("docker-compose", &["-f", "docker-compose.yml", "config", "--services"])
        .lines()
        .map(str::to_owned)
        .collect();
    for s in ["kafka", "router", "gateway", "loadgen", "prometheus", "alertmanager", "grafana"] {
        assert!(services.contains(s), "{s} missing from docker-compose.yml: {services:?}");
    }
}

/// A child process killed on drop, and its log.
struct Daemon(Child, PathBuf);

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(tool: &str, args: &[String], log_name: &str) -> Daemon {
    let log = std::env::temp_dir().join(common::unique(log_name));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {tool} ({e}): run scripts/install-observability.sh"));
    Daemon(child, log)
}

fn wait_http_ok(daemon: &Daemon, addr: &str, path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(std::net::TcpStream::connect(addr).is_ok() && http_get(addr, path).0 == 200) {
        assert!(Instant::now() < deadline, "{what} never answered {path}; log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; returns the JSON answer (status and data).
fn query(prometheus: &str, expr: &str) -> Value {
    let (_, body) = http_get(prometheus, &format!("/api/v1/query?query={}", encode(expr)));
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Every PromQL expression of the dashboard and the Grafana alert file, with dashboard
/// variables replaced by what Grafana would send.
fn grafana_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(path("dashboards/grafana/dashboards/tollgate-overview.json")).unwrap(),
    )
    .unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$gateway_job", ".*")
                .replace("$job", ".*");
            out.push((format!("panel `{}`", p["title"].as_str().unwrap()), expr));
        }
    }
    let alerts: Value = serde_json::from_str(
        &std::fs::read_to_string(path("dashboards/grafana/alerting/tollgate-alerts.json")).unwrap(),
    )
    .unwrap();
    for r in alerts["groups"][0]["rules"].as_array().unwrap() {
        out.push((format!("Grafana alert {}", r["title"]), r["data"][0]["model"]["expr"].as_str().unwrap().to_owned()));
    }
    out
}

/// Metric names (and recording-rule names) a PromQL expression refers to.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    let mut quoted = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            token.push(c);
            continue;
        }
        let recorded = token.contains(':') && token.starts_with(|c: char| c.is_ascii_alphabetic());
        if token.starts_with("tollgate_") || recorded {
            names.push(std::mem::take(&mut token));
        }
        token.clear();
    }
    names
}

/// Metric names in a Prometheus text exposition.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// The reference example's payments, shifted: every one risky (0.91-0.94, sync review) and
/// scored with low confidence, unlike the baseline. One in ten writes its amount as text.
fn drifted_events(n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let amount = 50.0 + i as f64;
            let amount = if i % 10 == 0 { serde_json::json!(format!("{amount:.2}")) } else { serde_json::json!(amount) };
            let e = serde_json::json!({
                "event_id": format!("drift-{i}"), "account_id": format!("acct-{}", i % 40), "amount": amount,
                "currency": "EUR", "merchant_category": "electronics", "country": "DE",
                "risk_score": 0.91 + (i % 4) as f64 * 0.01, "model_confidence": 0.55, "model_version": "fraud-gbm-2026.10"
            });
            (Some(format!("acct-{}", i % 40).into_bytes()), Some(e.to_string().into_bytes()))
        })
        .collect()
}

/// The rules with every `for:` shortened and groups evaluated each second.
fn test_copy_of_rules(dir: &Path) -> PathBuf {
    let rules = std::fs::read_to_string(path("dashboards/prometheus/tollgate-rules.yml")).unwrap();
    let fast: String = rules
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("for: ") {
                format!("{indent}for: 2s\n")
            } else if t.starts_with("interval: ") {
                format!("{indent}interval: 1s\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let out = dir.join("rules.yml");
    std::fs::write(&out, fast).unwrap();
    out
}

#[test]
fn a_real_prometheus_sees_drift_and_overrides_and_alertmanager_delivers_them() {
    let broker = Broker::get();
    let topics = Topics::new("observe");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config_file(&[]);
    // A guardrail with a bound on the amount, which no numeric amount here reaches: the events
    // with their amount as text are counted, and alert.
    let policy = config.with_file_name("policy.toml");
    let guardrail = "\n[[guardrails]]\nname = \"huge-amount\"\nroute = \"sync_review\"\nall = [{ field = \"amount\", gte = 1e12 }]\n";
    std::fs::write(&policy, std::fs::read_to_string(&policy).unwrap() + guardrail).unwrap();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let router_env = [
        ("TOLLGATE__METRICS__LISTEN", metrics.as_str()),
        ("TOLLGATE__DRIFT__WINDOW_EVENTS", "50"),
        // Short tiers, so undecided cases escalate and are held during the test.
        ("TOLLGATE__REVIEW__SYNC_REVIEW__TIERS", "[\"2s\", \"2s\"]"),
    ];
    let _router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &router_env);
    let state_topic = format!("{}.gateway-state", topics.group);
    let mut gateway = GatewayProcess::spawn(&topics, &broker.addr, &state_topic, &[]);
    gateway.wait_ready(Duration::from_secs(120));

    // Prometheus (rules with short `for`) and Alertmanager (to a local webhook).
    let dir = std::env::temp_dir().join(common::unique("observe"));
    std::fs::create_dir_all(&dir).unwrap();
    let receiver = WebhookReceiver::start();
    let am_port = free_port();
    let am = format!("127.0.0.1:{am_port}");
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: {}\n        send_resolved: false\n",
            receiver.url
        ),
    )
    .unwrap();
    let alertmanager = daemon(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", dir.join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address={am}"),
            "--cluster.listen-address=".into(),
        ],
        "alertmanager",
    );
    let prom = format!("127.0.0.1:{}", free_port());
    let rules = test_copy_of_rules(&dir);
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\nscrape_configs:\n  - job_name: tollgate-router\n    static_configs:\n      - targets: [\"{metrics}\"]\n  - job_name: tollgate-gateway\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            gateway.addr
        ),
    )
    .unwrap();
    let prometheus = daemon(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address={prom}"),
        ],
        "prometheus",
    );
    wait_http_ok(&alertmanager, &am, "/-/ready", "Alertmanager");
    wait_http_ok(&prometheus, &prom, "/-/ready", "Prometheus");
    // Prometheus applies its targets a few seconds after start. The router's counters must be
    // seen before the test's events: a rate needs a sample from before the increase.
    let scraped = |job: &str| {
        let (_, body) = http_get(&prom, &format!("/api/v1/query?query=up%7Bjob%3D%22{job}%22%7D"));
        body.contains(r#""value":["#) && body.contains(r#","1"]"#)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(scraped("tollgate-router") && scraped("tollgate-gateway")) {
        assert!(Instant::now() < deadline, "Prometheus never scraped the router and the gateway");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Drift: 120 risky, unconfidently scored payments. Overrides: reviewers approve 30 of them.
    let mut out = Collector::new(&broker.addr, &[&topics.sync_review]);
    produce(&broker.addr, &topics.input, &drifted_events(120));
    out.until("the drifted events in sync review", Duration::from_secs(90), |c| c.len() >= 120);
    let (_, exposition) = http_get(&metrics, "/metrics");
    let counted = r#"tollgate_policy_bound_not_numeric_total{field="amount"} 12"#;
    assert!(exposition.contains(counted), "{counted} missing from:\n{exposition}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let decisions: Vec<TestRecord> = (0..30)
        .map(|i| {
            let d = serde_json::json!({
                "decision_id": format!("o-{i}"), "event_id": format!("drift-{i}"), "reviewer_id": "ana",
                "reviewer_role": "fraud_analyst", "action": "approve", "rationale": "known customer",
                "decided_at": now, "second_signoff": null
            });
            (Some(format!("drift-{i}").into_bytes()), Some(d.to_string().into_bytes()))
        })
        .collect();
    produce(&broker.addr, &topics.decisions, &decisions);
    // Some gateway traffic, refusals included, so its request series exist.
    let (status, _) = http_get(&gateway.addr, "/v1/queues");
    assert_eq!(status, 401);
    let _ = http_get(&gateway.addr, "/v1/nowhere");

    // The alerts become active in Prometheus, then reach the webhook through Alertmanager.
    let firing = |name: &str| -> bool {
        let (_, body) = http_get(&prom, "/api/v1/alerts");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    for name in [
        "TollgateRiskScoreDriftCritical",
        "TollgateOverrideRateHigh",
        "TollgateModelConfidenceDrop",
        "TollgatePolicyBoundNotNumeric",
    ] {
        while !firing(name) {
            assert!(
                Instant::now() < deadline,
                "{name} never fired; alerts: {}\nPrometheus log:\n{}",
                http_get(&prom, "/api/v1/alerts").1,
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let delivered = |name: &str| receiver.bodies().iter().any(|b| b.contains(&format!("\"alertname\":\"{name}\"")));
    while !(delivered("TollgateRiskScoreDriftCritical") && delivered("TollgateOverrideRateHigh")) {
        assert!(
            Instant::now() < deadline,
            "alerts not delivered to the webhook: {:?}\nAlertmanager log:\n{}",
            receiver.bodies(),
            alertmanager.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let body: Value =
        serde_json::from_str(receiver.bodies().iter().find(|b| b.contains("TollgateOverrideRateHigh")).unwrap())
            .unwrap();
    let alert = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "TollgateOverrideRateHigh")
        .unwrap();
    assert_eq!(
        (alert["labels"]["queue"].as_str(), alert["labels"]["severity"].as_str()),
        (Some("sync_review"), Some("warning"))
    );
    assert!(alert["annotations"]["runbook_url"].as_str().unwrap().ends_with("RUNBOOK.md#override-rate-high"));

    // Every dashboard and Grafana alert query parses in this Prometheus, and names only metrics
    // the router and gateway export (or recording rules the rules file defines).
    let mut names = exported(&http_get(&metrics, "/metrics").1);
    names.extend(exported(&http_get(&gateway.addr, "/metrics").1));
    let rules_text = std::fs::read_to_string(path("dashboards/prometheus/tollgate-rules.yml")).unwrap();
    for (what, expr) in grafana_queries() {
        let answer = query(&prom, &expr);
        assert_eq!(answer["status"], "success", "{what} does not parse: {expr}\n{answer}");
        for name in metric_names(&expr) {
            let known = names.contains(&name) || rules_text.contains(&format!("record: {name}\n"));
            assert!(known, "{what} names {name}, which neither service exports: {expr}");
        }
    }
    // A Grafana alert finds exactly the series its Prometheus twin is firing for.
    let grafana: Value = serde_json::from_str(
        &std::fs::read_to_string(path("dashboards/grafana/alerting/tollgate-alerts.json")).unwrap(),
    )
    .unwrap();
    for name in ["TollgateRiskScoreDriftCritical", "TollgateOverrideRateHigh", "TollgateModelConfidenceDrop"] {
        let twin = grafana["groups"][0]["rules"].as_array().unwrap().iter().find(|r| r["title"] == name).unwrap();
        let result = query(&prom, twin["data"][0]["model"]["expr"].as_str().unwrap());
        assert_eq!(result["data"]["result"].as_array().map(Vec::len), Some(1), "{name}: {result}");
    }
}
