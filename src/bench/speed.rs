//! How fast the box runs Tollgate's own code at a given moment: the router's hot path, timed on
//! the harness's thread between phases.
//!
//! The shared development box runs at two speeds about 1.7× apart, and can change from one to the
//! other within seconds (`BENCHMARKS.md`, "Machine and method"). A phase's CPU per event, and a
//! ratio of two phases, mean little without knowing the speed each ran at. So before each phase,
//! with nothing else of the harness running, the probe routes the same events in process and
//! reads the thread's CPU time per event. Thread CPU time leaves out the waits of a descheduled
//! thread; it keeps what slows every instruction (the host's clock, a busy sibling core).

use crate::synth::{Mix, PaymentGenerator};
use cpu_time::ThreadTime;
use serde::Serialize;
use std::time::SystemTime;
use tollgate_router::config::RouterConfig;
use tollgate_router::pipeline::{Output, Pipeline, Source};

/// Events routed per round: about 2 ms of CPU at either speed.
const EVENTS: usize = 2_000;
/// Rounds per reading; the fastest is kept, as the one least disturbed (an interrupt, a cache
/// emptied by another process).
const ROUNDS: usize = 5;

/// The hot path's CPU time per event before one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    /// The phase about to start (or `end`).
    pub before: String,
    pub ns_per_event: f64,
}

/// The reference example's pipeline and a fixed sample of the generator's events.
pub struct SpeedProbe {
    pipeline: Pipeline,
    events: Vec<Vec<u8>>,
    out: Output,
    readings: Vec<Reading>,
}

impl SpeedProbe {
    /// The probe of `config`'s pipeline over the first events of the stream seeded `seed`.
    pub fn new(config: &RouterConfig, seed: u64) -> anyhow::Result<SpeedProbe> {
        let mut generator = PaymentGenerator::new(seed, Mix::default(), "probe");
        let events = (0..EVENTS)
            .map(|_| {
                let mut event = Vec::new();
                generator.next_into(&mut event);
                event
            })
            .collect();
        Ok(SpeedProbe {
            pipeline: Pipeline::from_config(config)?,
            events,
            out: Output::default(),
            readings: Vec::new(),
        })
    }

    /// Times the hot path now, before phase `before`, and keeps the reading.
    pub fn read(&mut self, before: &str) -> f64 {
        let now = SystemTime::now();
        let best = (0..ROUNDS)
            .map(|_| {
                let start = ThreadTime::now();
                for (offset, event) in self.events.iter().enumerate() {
                    let source = Source { topic: "probe", partition: 0, offset: offset as i64 };
                    std::hint::black_box(self.pipeline.process(Some(event), source, now, &mut self.out));
                }
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        let ns_per_event = best.as_secs_f64() * 1e9 / EVENTS as f64;
        self.readings.push(Reading { before: before.to_owned(), ns_per_event });
        ns_per_event
    }

    /// Every reading, in the order taken.
    pub fn readings(&self) -> &[Reading] {
        &self.readings
    }
}

/// `pass-through 1012 · same records 1020 · …`, for the report.
pub fn describe(readings: &[Reading]) -> String {
    readings.iter().map(|r| format!("{} {:.0}", r.before, r.ns_per_event)).collect::<Vec<_>>().join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_times_the_hot_path_and_is_kept_with_its_phase() {
        let dir = std::env::temp_dir().join(format!("tollgate-speed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = crate::demo::reference_example(&dir).unwrap();
        let mut probe = SpeedProbe::new(&config, 42).unwrap();
        let first = probe.read("router");
        probe.read("end");
        assert!(first > 0.0 && first.is_finite(), "{first}");
        let phases: Vec<&str> = probe.readings().iter().map(|r| r.before.as_str()).collect();
        assert_eq!(phases, ["router", "end"]);
        assert_eq!(describe(&probe.readings()[..1]), format!("router {first:.0}"));
        // Every event of the sample went through the pipeline: the last one left its audit record.
        assert!(!probe.out.audit.is_empty());
    }
}
