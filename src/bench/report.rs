//! What a bench run reports: each phase's figures, the run's, and the table printed from them.

use super::machine::MachineShare;
use super::{join, join_records, latency, shape, speed};
use serde::Serialize;

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub cpu_seconds_per_million: f64,
    pub rss_mib: f64,
    /// How busy the box was, and how much of it went to other processes.
    pub machine: Option<MachineShare>,
    /// CPU seconds per million events by thread group, where the phase measures it (the
    /// router's: librdkafka's threads, the routing loop, the review join, the audit chainer,
    /// tokio, the rest; the same-records baselines' by stage).
    pub cpu_by_thread: Vec<(String, f64)>,
}

/// The run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub events: u64,
    pub partitions: i32,
    pub pass_through: Phase,
    /// The router's records without the router's work ([`super::records`]).
    pub same_records: Phase,
    /// The same records with no audit intake: the chained records written by the stage
    /// that reads the input ([`super::records::AuditPath::Direct`]).
    pub same_records_no_intake: Phase,
    /// The same records with the audit records handed in process to a transactional stage
    /// ([`super::records::AuditPath::HandOff`]).
    pub same_records_handed_off: Phase,
    /// The router's mean output per event, which `same_records` reproduces.
    pub shape: shape::Shape,
    pub router: Phase,
    /// The router's routing loops (`processing.routing_threads`).
    pub routing_threads: usize,
    /// The router's output encoding.
    pub output_format: tollgate_schemas::RecordFormat,
    /// Whether its routed records carried their headers (`output.headers`).
    pub routed_headers: bool,
    /// Router events/s over pass-through events/s.
    pub ratio: f64,
    /// Router events/s over same-records events/s.
    pub ratio_to_same_records: f64,
    /// The router's latency at a share of its rate.
    pub latency: latency::Latency,
    /// The pass-through's latency at the same rate.
    pub pass_through_latency: latency::Latency,
    /// Same records' latency at the same rate: the router's Kafka work without Tollgate's.
    pub same_records_latency: latency::Latency,
    /// The router phase's audit records: chained (and in how many transactions), of them handed
    /// in process, and sent through the intake because the chainer was behind
    /// (`tollgate_audit_hand_off_behind_total`).
    pub router_audit: RouterAudit,
    /// The events the router had handled when its phase's window started: those of its first
    /// poll batches (the window starts at the first event handled), or those routed before
    /// its chainer joined, when the harness left that start-up out (see the phase's note).
    pub router_window_start: u64,
    pub join: join::JoinPhase,
    /// The join's records without the join's work ([`join_records`]).
    pub join_same_records: join::JoinPhase,
    /// The join's mean output per decision, which `join_same_records` reproduces.
    pub join_shape: join_records::JoinShape,
    /// The hot path's CPU time per event while each phase ran: the speed the box ran at.
    pub host_speed: Vec<speed::Reading>,
}

impl Report {
    pub fn table(&self) -> String {
        let row = |p: &Phase, ratio: f64| {
            // The other processes' CPU per event too: on a box shared with the broker, what a
            // phase's requests cost the broker counts against its rate as its own CPU does.
            let (busy, others, others_per_million) = p.machine.map_or_else(
                || ("—".to_owned(), "—".to_owned(), "—".to_owned()),
                |m| {
                    let per_million = m.other_processes_cores / p.events_per_second.max(1e-9) * 1e6;
                    (
                        format!("{:.0}%", 100.0 * m.busy),
                        format!("{:.2}", m.other_processes_cores),
                        format!("{per_million:.1}"),
                    )
                },
            );
            format!(
                "{:<24} {:>10} {:>12.0} {:>8.2} {:>14.1} {:>9.0} {:>9} {:>16} {:>18}\n",
                p.name,
                p.events,
                p.events_per_second,
                ratio,
                p.cpu_seconds_per_million,
                p.rss_mib,
                busy,
                others,
                others_per_million
            )
        };
        let baselines: String = [&self.same_records, &self.same_records_no_intake, &self.same_records_handed_off]
            .into_iter()
            .filter(|p| !p.cpu_by_thread.is_empty())
            .map(|p| format!("{} CPU s per M events by thread: {}\n", p.name, by_thread(&p.cpu_by_thread)))
            .collect();
        let j = &self.join;
        format!(
            "{:<24} {:>10} {:>12} {:>8} {:>14} {:>9} {:>9} {:>16} {:>18}\n{}{}{}{}{}router over same records: {:.2} (same records per event: {})\nsame records, no intake, over same records: {:.2}; router over it: {:.2}\nsame records, handed off, over same records: {:.2}; router over it: {:.2}\nrouter CPU s per M events by thread ({} routing thread(s), {} output{}): {}\n{}router measured from its event {} on (the ones before: its first poll batches, or those routed while its chainer joined)\nrouter's audit records: {} chained in {} transactions, {:.1}% handed in process, {} through the intake while the chainer was behind\n\nlatency at {:.0} events/s ({:.0}% of the router's rate), {}\npass-through latency at the same rate, {}\nsame records' latency at the same rate (handed off), {}\n\njoin: {}\njoin CPU s per M decisions by thread: {}\njoin, same records: {} (resolved {} B, state {} B, audit {} B handed to the chainer and {} B chained per decision)\njoin over same records: {:.2}\n\nthe box's speed by phase (the hot path's CPU ns per event, sampled every 200 ms): {}\n",
            "phase",
            "events",
            "events/s",
            "ratio",
            "CPU s / M ev",
            "RSS MiB",
            "box busy",
            "others (cores)",
            "others CPU s / M",
            row(&self.pass_through, 1.0),
            row(&self.same_records, over(&self.same_records, &self.pass_through)),
            row(&self.same_records_no_intake, over(&self.same_records_no_intake, &self.pass_through)),
            row(&self.same_records_handed_off, over(&self.same_records_handed_off, &self.pass_through)),
            row(&self.router, self.ratio),
            self.ratio_to_same_records,
            self.shape.describe(),
            over(&self.same_records_no_intake, &self.same_records),
            over(&self.router, &self.same_records_no_intake),
            over(&self.same_records_handed_off, &self.same_records),
            over(&self.router, &self.same_records_handed_off),
            self.routing_threads,
            format!("{:?}", self.output_format).to_lowercase(),
            if self.routed_headers { "" } else { ", routed records without headers" },
            by_thread(&self.router.cpu_by_thread),
            baselines,
            self.router_window_start + 1,
            self.router_audit.chained,
            self.router_audit.transactions,
            100.0 * self.router_audit.handed as f64 / self.router_audit.chained.max(1) as f64,
            self.router_audit.behind,
            self.latency.rate,
            100.0 * self.latency.rate / self.router.events_per_second.max(1.0),
            self.latency.figures(),
            self.pass_through_latency.figures(),
            self.same_records_latency.figures(),
            j.figures(),
            by_thread(&j.cpu_by_thread),
            self.join_same_records.figures(),
            self.join_shape.resolved_bytes,
            self.join_shape.state_bytes,
            self.join_shape.audit_bytes,
            self.join_shape.chained_bytes,
            j.joined_per_second / self.join_same_records.joined_per_second.max(1e-9),
            speed::describe(&self.host_speed),
        )
    }
}

/// The router phase's audit records (see [`Report::router_audit`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RouterAudit {
    pub chained: u64,
    pub handed: u64,
    pub behind: u64,
    /// The chainer's committed transactions.
    pub transactions: u64,
}

/// CPU seconds per million units by thread group, as the table prints them.
fn by_thread(groups: &[(String, f64)]) -> String {
    groups.iter().map(|(name, cpu)| format!("{name} {cpu:.1}")).collect::<Vec<_>>().join(", ")
}

/// One phase's rate over another's.
pub(super) fn over(a: &Phase, b: &Phase) -> f64 {
    a.events_per_second / b.events_per_second.max(1e-9)
}
