//! `tollgate replay`: backtest a candidate policy on recorded events and decisions; the work is
//! in `tollgate_router::replay`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_router::config::RouterConfig;

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

/// Options of a replay.
pub struct ReplayArgs<'a> {
    pub candidate: &'a Path,
    pub from_topic: Option<&'a str>,
    pub decisions: Option<&'a str>,
    pub format: ReportFormat,
    pub output: Option<&'a Path>,
    pub idle: Duration,
}

pub fn run(config: &RouterConfig, args: &ReplayArgs<'_>) -> ExitCode {
    let bar = crate::audit_cli::spinner("events read");
    // A relative candidate path is the user's, relative to where they are (not to the config).
    let candidate =
        std::env::current_dir().map(|d| d.join(args.candidate)).unwrap_or_else(|_| args.candidate.to_owned());
    let input = args.from_topic.unwrap_or(&config.kafka.input_topic);
    let result = tollgate_router::replay::run(config, &candidate, input, args.decisions, args.idle, |what, n| {
        bar.set_message(format!("{n} {what} read"))
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate replay: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match args.format {
        ReportFormat::Table => report.table(),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("tollgate replay: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let written = match args.output {
        Some(path) => std::fs::write(path, text),
        None => {
            print!("{text}");
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate replay: writing the report failed: {e}");
            ExitCode::FAILURE
        }
    }
}
