//! `tollgate`: the Kafka-native human-in-the-loop decision router.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tollgate::demo::{self, DemoOptions};
use tollgate::shutdown::cancel_on_signal;
use tollgate_router::config::RouterConfig;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: the routing loop, the review join and the Kafka
/// client's threads allocate and free across threads, where glibc's arenas spent a fifth of the
/// routing loop's time (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Kafka-native human-in-the-loop decision router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Route events from Kafka: decode, score, apply the policy, publish, audit.
    Router {
        /// Router configuration file (TOML); TOLLGATE__SECTION__KEY environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve the reviewer gateway: the HTTP API reviewers use to list, claim and decide cases.
    Gateway {
        /// Gateway configuration file (TOML); TOLLGATE__SECTION__KEY environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        tool: Option<GatewayTool>,
    },
    /// Read the audit trail: verify its hash chains, or export records.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Backtest a candidate policy: re-route recorded events with the running and the candidate
    /// policy, side by side, without producing anything.
    Replay {
        /// Router configuration file (brokers, topics, scorer, current policy).
        #[arg(long, short)]
        config: PathBuf,
        /// The candidate policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Topic of the recorded events (default: the configured input topic).
        #[arg(long)]
        from_topic: Option<String>,
        /// Topic of recorded human outcomes used as labels, e.g. tollgate.resolved.
        #[arg(long)]
        decisions: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: tollgate::replay_cli::ReportFormat,
        /// Write the report here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// A topic's end is where no record came for this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        idle: std::time::Duration,
    },
    /// Produce the reference example's synthetic payment events to a topic, at a fixed rate or
    /// flat out (a load generator).
    Load {
        /// Kafka bootstrap servers.
        #[arg(long, env = "TOLLGATE__KAFKA__BROKERS")]
        brokers: String,
        #[arg(long, default_value = "payments")]
        topic: String,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Stop after this many events (default: until Ctrl-C).
        #[arg(long)]
        events: Option<u64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Shares of each kind of event, e.g. `routine=0.8,uncertain=0.12,risky=0.055,blocked=0.02,malformed=0.005`.
        #[arg(long, default_value = "")]
        mix: String,
        /// Event ids are `<prefix>-<n>`.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// librdkafka producer setting over the generator's own, key=value (repeatable): a
        /// secured cluster's, for one.
        #[arg(long = "producer", value_name = "KEY=VALUE")]
        producer: Vec<String>,
    },
    /// Benchmark on a real broker: a bare consume→produce pass-through and the router on the same
    /// preloaded input, the router's latency at a share of its rate, and the review join's lag
    /// behind reviewer decisions at a fixed rate. Prints a table.
    Bench {
        /// Kafka bootstrap servers.
        #[arg(long, env = "TOLLGATE__KAFKA__BROKERS")]
        brokers: String,
        /// Events preloaded for the throughput phases.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// A quick run that proves the harness works (20,000 events, at most 5 s of latency).
        #[arg(long)]
        short: bool,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of the router's measured rate offered in the latency phase.
        #[arg(long, default_value_t = 0.5)]
        latency_load: f64,
        #[arg(long, default_value_t = 30)]
        latency_seconds: u64,
        /// librdkafka producer setting for the router and the pass-through, key=value (repeatable).
        #[arg(long = "producer", value_name = "KEY=VALUE")]
        producer: Vec<String>,
        /// librdkafka consumer setting for the router and the pass-through, key=value (repeatable).
        #[arg(long = "consumer", value_name = "KEY=VALUE")]
        consumer: Vec<String>,
        /// librdkafka setting for one of the router's consumers only (`routing`, `review_join`
        /// or `audit_chain`, as in `kafka.consumers`) and the baselines standing for it, over
        /// `--consumer`'s (repeatable).
        #[arg(long = "consumer-of", value_name = "CONSUMER:KEY=VALUE")]
        consumer_of: Vec<String>,
        /// The router's routing loops (`processing.routing_threads`).
        #[arg(long, default_value_t = 1)]
        routing_threads: usize,
        /// Reviewer decisions produced in the join phase (at most one per event in review).
        #[arg(long, default_value_t = 100_000)]
        decisions: u64,
        /// Their rate, decisions per second (0: as fast as the producer takes them).
        #[arg(long, default_value_t = 100_000)]
        decision_rate: u64,
        /// The router's output encoding (`output.format`) for routed and audit records: `json`
        /// (the reference example's) or `avro`.
        #[arg(long, default_value = "json", value_parser = ["json", "avro"])]
        output_format: String,
        /// Routed records without their headers (`output.headers = false`); the baselines'
        /// copies go without them too.
        #[arg(long)]
        no_routed_headers: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the router on an in-process Kafka with a synthetic payment stream (nothing to install).
    Demo {
        /// Stop after this many events; run until Ctrl-C when not given.
        #[arg(long)]
        events: Option<u64>,
        /// Events per second of the synthetic stream (0 = as fast as possible).
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Address of the demo's /metrics endpoint.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_listen: SocketAddr,
        /// Score with the built-in logistic model instead of the events' upstream scores.
        #[arg(long)]
        logistic: bool,
        /// Seed of the synthetic stream.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Use these Kafka brokers instead of the in-process cluster.
        #[arg(long)]
        brokers: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every partition's hash chain; exit 1 at the first broken link.
    Verify {
        /// Router configuration file (brokers and topic names); TOLLGATE__* variables override it.
        #[arg(long, short)]
        config: PathBuf,
        /// Verify this topic instead of the configured `topics.audit` (a copy, say).
        #[arg(long)]
        topic: Option<String>,
        /// The trail's end is where no record came for this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        idle: std::time::Duration,
    },
    /// Write audit records of a time range, or one event's whole history, as JSON lines or CSV.
    Export {
        /// Router configuration file (brokers and topic names); TOLLGATE__* variables override it.
        #[arg(long, short)]
        config: PathBuf,
        /// Records at or after this time (RFC 3339, or a date).
        #[arg(long)]
        from: Option<String>,
        /// Records before this time (RFC 3339, or a date).
        #[arg(long)]
        to: Option<String>,
        /// Only this event's records: its full history, in order.
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormatArg,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The trail's end is where no record came for this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        idle: std::time::Duration,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormatArg {
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
enum GatewayTool {
    /// Print an HS256 bearer token signed with the configuration's secret (for local use).
    Token {
        /// Reviewer id (the token's subject).
        #[arg(long)]
        reviewer: String,
        /// A role of the configuration.
        #[arg(long)]
        role: String,
        /// How long the token is valid.
        #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Print the API's OpenAPI document.
    Openapi,
}

/// A loaded configuration, or the exit code of `tollgate <command>` after saying why not.
fn configured<T>(loaded: Result<T, tollgate_common::ConfigError>, command: &str) -> Result<T, ExitCode> {
    loaded.map_err(|e| {
        eprintln!("tollgate {command}: {e}");
        ExitCode::from(2)
    })
}

/// `key=value` arguments as pairs; the first that is not one, as the error.
fn key_values(list: Vec<String>) -> Result<Vec<(String, String)>, String> {
    list.into_iter().map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or(kv)).collect()
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a terminal: logs written to a file or a collector stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    match cli.command {
        Command::Router { config } => {
            init_tracing("info");
            let config = match configured(RouterConfig::load(&config), "router") {
                Ok(c) => c,
                Err(code) => return code,
            };
            cancel_on_signal(shutdown.clone());
            match tollgate_router::run(config, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ (tollgate_router::RouterError::Config(_) | tollgate_router::RouterError::Pipeline(_))) => {
                    eprintln!("tollgate router: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    tracing::error!(error = %e, "The router stopped with an error.");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Gateway { config, tool } => {
            let config = match configured(tollgate_gateway::config::GatewayConfig::load(&config), "gateway") {
                Ok(c) => c,
                Err(code) => return code,
            };
            match tool {
                Some(GatewayTool::Token { reviewer, role, ttl }) => {
                    if !config.roles.contains_key(&role) {
                        eprintln!("tollgate gateway token: no role {role} in the configuration");
                        return ExitCode::from(2);
                    }
                    match tollgate_gateway::auth::mint_hs256(&config.auth, &reviewer, &role, ttl) {
                        Ok(token) => {
                            println!("{token}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("tollgate gateway token: {e}");
                            ExitCode::from(2)
                        }
                    }
                }
                Some(GatewayTool::Openapi) => match tollgate_gateway::api::openapi().to_pretty_json() {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("tollgate gateway openapi: {e}");
                        ExitCode::FAILURE
                    }
                },
                None => {
                    init_tracing("info");
                    cancel_on_signal(shutdown.clone());
                    match tollgate_gateway::run(config, shutdown).await {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e @ tollgate_gateway::GatewayError::Config(_)) => {
                            eprintln!("tollgate gateway: {e}");
                            ExitCode::from(2)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "The gateway stopped with an error.");
                            ExitCode::FAILURE
                        }
                    }
                }
            }
        }
        Command::Audit { command } => {
            init_tracing("warn");
            let config_path = match &command {
                AuditCommand::Verify { config, .. } | AuditCommand::Export { config, .. } => config,
            };
            let config = match configured(RouterConfig::load(config_path), "audit") {
                Ok(c) => c,
                Err(code) => return code,
            };
            match command {
                AuditCommand::Verify { topic, idle, .. } => {
                    tollgate::audit_cli::verify(&config, topic.as_deref(), idle)
                }
                AuditCommand::Export { from, to, event_id, format, output, idle, .. } => {
                    let time = |t: Option<String>| t.map(|t| tollgate::audit_cli::parse_time(&t)).transpose();
                    let (from, to) = match (time(from), time(to)) {
                        (Ok(f), Ok(t)) => (f, t),
                        (Err(e), _) | (_, Err(e)) => {
                            eprintln!("tollgate audit export: {e}");
                            return ExitCode::from(2);
                        }
                    };
                    let filter = tollgate_router::audit::export::Filter { from, to, event_id };
                    let format = match format {
                        ExportFormatArg::Jsonl => tollgate_router::audit::export::ExportFormat::Jsonl,
                        ExportFormatArg::Csv => tollgate_router::audit::export::ExportFormat::Csv,
                    };
                    tollgate::audit_cli::export(&config, &filter, format, output.as_deref(), idle)
                }
            }
        }
        Command::Replay { config, policy, from_topic, decisions, format, output, idle } => {
            init_tracing("warn");
            let config = match configured(RouterConfig::load(&config), "replay") {
                Ok(c) => c,
                Err(code) => return code,
            };
            let args = tollgate::replay_cli::ReplayArgs {
                candidate: &policy,
                from_topic: from_topic.as_deref(),
                decisions: decisions.as_deref(),
                format,
                output: output.as_deref(),
                idle,
            };
            tollgate::replay_cli::run(&config, &args)
        }
        Command::Load { brokers, topic, rate, events, seed, mix, prefix, producer } => {
            init_tracing("warn");
            let mix = match mix.parse::<tollgate::synth::Mix>() {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("tollgate load: --mix: {e}");
                    return ExitCode::from(2);
                }
            };
            let producer = match key_values(producer) {
                Ok(settings) => settings,
                Err(kv) => {
                    eprintln!("tollgate load: --producer `{kv}`: expected key=value");
                    return ExitCode::from(2);
                }
            };
            cancel_on_signal(shutdown.clone());
            let load = tollgate::synth::Load { topic, rate, events, seed, mix, prefix, producer };
            let produced = tokio::task::spawn_blocking(move || {
                tollgate::synth::produce(&brokers, &load, &shutdown, |n| eprintln!("{n} events produced"))
            })
            .await;
            match produced {
                Ok(Ok(n)) => {
                    eprintln!("done: {n} events produced");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("tollgate load: {e:#}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tollgate load: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            brokers,
            events,
            short,
            partitions,
            seed,
            latency_load,
            latency_seconds,
            producer,
            consumer,
            consumer_of,
            routing_threads,
            decisions,
            decision_rate,
            output_format,
            no_routed_headers,
            json,
        } => {
            init_tracing("warn");
            cancel_on_signal(shutdown.clone());
            let (settings, consumer) = match (key_values(producer), key_values(consumer)) {
                (Ok(p), Ok(c)) => (p, c),
                (Err(kv), _) | (_, Err(kv)) => {
                    eprintln!("tollgate bench: `{kv}`: expected key=value");
                    return ExitCode::from(2);
                }
            };
            let consumer_of = match consumer_of.iter().map(|a| tollgate::bench::consumer_setting(a)).collect() {
                Ok(list) => list,
                Err(e) => {
                    eprintln!("tollgate bench: --consumer-of: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = tollgate::bench::BenchOptions {
                brokers,
                events: if short { 20_000 } else { events },
                partitions,
                seed,
                latency_load,
                latency_seconds: if short { latency_seconds.min(5) } else { latency_seconds },
                producer: settings,
                consumer,
                consumer_of,
                routing_threads,
                decisions,
                decision_rate,
                output_format: if output_format == "avro" {
                    tollgate_schemas::RecordFormat::Avro
                } else {
                    tollgate_schemas::RecordFormat::Json
                },
                routed_headers: !no_routed_headers,
            };
            let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
            match tollgate::bench::run(options, &dir, shutdown).await {
                Ok(report) => {
                    print!("{}", report.table());
                    if let Some(path) = json {
                        if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default())
                        {
                            eprintln!("tollgate bench: writing {}: {e}", path.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tollgate bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { events, rate, metrics_listen, logistic, seed, brokers } => {
            init_tracing("warn");
            cancel_on_signal(shutdown.clone());
            let options = DemoOptions { events, rate, metrics_listen, logistic, seed, brokers };
            match demo::run(options, shutdown).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
