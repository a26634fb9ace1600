//! The processes and endpoints the integration tests drive: `tollgate router`, `tollgate
//! audit` and the reviewer gateway as child processes, plain HTTP to their endpoints, and a
//! webhook receiver.

use super::{free_port, unique, Topics, EXAMPLE_DIR};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `tollgate audit …` on the example configuration pointed at the test's topics; returns
/// the exit code, stdout and stderr.
pub fn audit_cli(topics: &Topics, brokers: &str, args: &[&str]) -> (i32, String, String) {
    let config = topics.config_file(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("audit")
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .args(["--idle", "1500ms"])
        .envs(topics.env(brokers, free_port()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `tollgate router` process on the reference example's configuration.
pub struct RouterProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl RouterProcess {
    pub fn spawn(topics: &Topics, brokers: &str, extra_env: &[(&str, &str)]) -> RouterProcess {
        Self::spawn_with(topics, brokers, extra_env, &[])
    }

    /// Like [`RouterProcess::spawn`], with extra librdkafka producer settings.
    pub fn spawn_with(
        topics: &Topics,
        brokers: &str,
        extra_env: &[(&str, &str)],
        producer: &[(&str, &str)],
    ) -> RouterProcess {
        Self::spawn_at(&topics.config_file(producer), topics, brokers, extra_env)
    }

    /// A router on the configuration file `config` (a copy made by [`Topics::config_file`]).
    pub fn spawn_at(config: &Path, topics: &Topics, brokers: &str, extra_env: &[(&str, &str)]) -> RouterProcess {
        let log = std::env::temp_dir().join(format!("{}.log", unique("router")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["router", "--config"])
            .arg(config)
            .envs(topics.env(brokers, free_port()))
            .envs(extra_env.iter().map(|(k, v)| (*k, *v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        RouterProcess { child: cmd.spawn().expect("start tollgate router"), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the router's `/readyz` answers 200 (every routing loop holds its group's
    /// assignment); panics after `timeout`. The address comes from the router's log.
    pub fn wait_ready(&mut self, timeout: Duration) {
        wait_ready(&mut self.child, &self.log, "router", timeout, metrics_address);
    }

    /// The status `/readyz` answers now (`None` before the router serves it).
    pub fn readyz(&self) -> Option<u16> {
        Some(http_get(&metrics_address(&self.log_text())?, "/readyz").0)
    }

    /// The value of an unlabelled metric the router exports now (`None` before it serves
    /// `/metrics`, or without that metric).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, exposition) = http_get(&metrics_address(&self.log_text())?, "/metrics");
        let line = exposition.lines().find(|l| l.split_whitespace().next() == Some(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        terminate(&mut self.child, &self.log, "router", timeout)
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a service's `/readyz` answers 200 at the address `addr` finds (given the
/// service's log so far); panics with its log when it exits or `timeout` passes first.
/// The address a router's log says it serves `/metrics` on.
fn metrics_address(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("Serving /metrics"))?;
    let at = line.find("address=")? + "address=".len();
    line[at..].split_whitespace().next().map(str::to_owned)
}

fn wait_ready(child: &mut Child, log: &Path, what: &str, timeout: Duration, addr: impl Fn(&str) -> Option<String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the {what} exited with {status}; log:\n{text}");
        }
        if let Some(addr) = addr(&text) {
            if std::net::TcpStream::connect(&addr).is_ok() && http_get(&addr, "/readyz").0 == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the {what} was not ready within {timeout:?}; log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to a service and waits up to `timeout` for its exit status (kills it and
/// panics with its log when it does not stop).
fn terminate(child: &mut Child, log: &Path, what: &str, timeout: Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the {what} did not exit within {timeout:?} of SIGTERM; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on a local HTTP endpoint; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HTTP/1.0: no chunked bodies to undo.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of one sample (`name{labels}`) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, sample: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
}

/// An HTTP/1.0 request (no chunked bodies to undo) on a local endpoint; returns (status, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A `tollgate gateway` process on the reference example's gateway configuration, pointed at a
/// test's topics.
pub struct GatewayProcess {
    pub child: Child,
    pub log: PathBuf,
    pub addr: String,
}

impl GatewayProcess {
    pub fn spawn(topics: &Topics, brokers: &str, state_topic: &str, extra_env: &[(&str, &str)]) -> GatewayProcess {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("gateway")));
        let file = std::fs::File::create(&log).unwrap();
        let env = [
            ("KAFKA__BROKERS", brokers),
            ("KAFKA__PARTITIONS", "3"),
            ("KAFKA__CLIENT_ID", state_topic),
            ("HTTP__LISTEN", &addr),
            ("TOPICS__SYNC_REVIEW", &topics.sync_review),
            ("TOPICS__ASYNC_REVIEW", &topics.async_review),
            ("TOPICS__RESOLVED", &topics.resolved),
            ("TOPICS__ESCALATIONS", &topics.escalations),
            ("TOPICS__REVIEW_DECISIONS", &topics.decisions),
            ("TOPICS__AUDIT_INTAKE", &topics.audit_intake),
            ("TOPICS__GATEWAY_STATE", state_topic),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["gateway", "--config"])
            .arg(Path::new(EXAMPLE_DIR).join("gateway.toml"))
            .envs(env.iter().map(|(k, v)| (format!("TOLLGATE__{k}"), v.to_string())))
            .envs(extra_env.iter().map(|(k, v)| (*k, *v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        GatewayProcess { child: cmd.spawn().expect("start tollgate gateway"), log, addr }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let addr = self.addr.clone();
        wait_ready(&mut self.child, &self.log, "gateway", timeout, |_| Some(addr.clone()));
    }

    /// A request with a bearer token and a JSON body; returns (status, JSON body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        let body = body.map(|b| b.to_string());
        let (status, text) = http_request(&self.addr, method, path, &headers, body.as_deref());
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        terminate(&mut self.child, &self.log, "gateway", timeout)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local HTTP endpoint that answers 200 to every POST and keeps the bodies (a webhook).
pub struct WebhookReceiver {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        WebhookReceiver { url, bodies }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}
