//! `tollgate audit verify` and `tollgate audit export`: the audit tools' command-line faces
//! (argument handling, progress display, output); the work is in `tollgate_router::audit`.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_router::audit::export::{self, ExportFormat, Filter};
use tollgate_router::config::RouterConfig;

/// A spinner on standard error with a message and the elapsed time (hidden when standard error
/// is not a terminal).
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message(format!("0 {what}"));
    bar
}

/// Parses an RFC 3339 time (or a date) into ms since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| e.to_string())
}

/// Verifies the trail; exit code 0 when intact, 1 at the first broken link.
pub fn verify(config: &RouterConfig, topic: Option<&str>, idle: Duration) -> ExitCode {
    let bar = spinner("records checked");
    let report =
        tollgate_router::audit::verify_trail(config, topic, idle, |n| bar.set_message(format!("{n} records checked")));
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate audit verify: cannot read the audit trail: {e}");
            return ExitCode::from(2);
        }
    };
    let total: u64 = report.records.values().sum();
    let topic = topic.unwrap_or(&config.topics.audit);
    for (partition, n) in &report.records {
        let state = match report.breaks.iter().find(|b| b.partition == *partition) {
            Some(b) => format!("BROKEN at offset {} ({})", b.offset, b.kind.as_str()),
            None => "intact".to_owned(),
        };
        println!("{topic} partition {partition}: {n} records, {state}");
    }
    if report.heads_checked == 0 {
        println!("note: no chain head is committed for this trail, so records missing at its very end cannot be seen");
    } else {
        println!(
            "the end of the trail was checked against the chainer's committed heads ({} partitions)",
            report.heads_checked
        );
    }
    match report.first() {
        None => {
            println!("OK: {total} audit records in {} partitions, every hash chain intact.", report.records.len());
            ExitCode::SUCCESS
        }
        Some(first) => {
            println!("FAILED: first broken link: {first}");
            for other in report.breaks.iter().skip(1) {
                println!("        also: {other}");
            }
            ExitCode::from(1)
        }
    }
}

/// Exports records to `output` (standard output when `None`).
pub fn export(
    config: &RouterConfig,
    filter: &Filter,
    format: ExportFormat,
    output: Option<&Path>,
    idle: Duration,
) -> ExitCode {
    let bar = spinner("records scanned");
    let result =
        tollgate_router::audit::export_trail(config, filter, idle, |n| bar.set_message(format!("{n} records scanned")));
    bar.finish_and_clear();
    let (records, unreadable) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate audit export: cannot read the audit trail: {e}");
            return ExitCode::from(2);
        }
    };
    let written = match output {
        Some(path) => std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            export::write(&records, format, &mut w)?;
            w.flush()
        }),
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            export::write(&records, format, &mut lock).and_then(|_| lock.flush())
        }
    };
    if let Err(e) = written {
        eprintln!("tollgate audit export: writing failed: {e}");
        return ExitCode::FAILURE;
    }
    // One event's history only: a time range spans partitions by nature.
    let spread = if filter.event_id.is_some() { export::partitions(&records) } else { 1 };
    if spread > 1 {
        eprintln!(
            "The event's records are in {spread} partitions (has the audit topic's partition count changed?): \
             each partition's are in the order recorded, the partitions merged by the records' timestamps."
        );
    }
    eprintln!(
        "{} records exported{}.",
        records.len(),
        if unreadable > 0 { format!(", {unreadable} unreadable records skipped (see the log)") } else { String::new() }
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        assert_eq!(super::parse_time("2026-11-21").unwrap(), super::parse_time("2026-11-21T00:00:00Z").unwrap());
        assert_eq!(super::parse_time("1970-01-01T00:00:01.5Z").unwrap(), 1_500);
        assert!(super::parse_time("yesterday").is_err());
    }
}
