//! How fast the box runs Tollgate's own code while a phase runs: the router's hot path, timed
//! in process every fifth of a second on a thread of its own.
//!
//! The shared development box runs at two speeds about 1.7× apart and changes from one to the
//! other within seconds (`BENCHMARKS.md`, "Machine and method"). A phase's CPU per event, and a
//! ratio of two phases, mean little without knowing the speed each ran at, and a single reading
//! between phases does not tell it (session 18: readings taken just before a phase did not match
//! the phase). So a sampler routes a few hundred of the same events every 200 ms for the whole
//! run and reads its thread's CPU time per event; each phase gets the mean of the samples taken
//! while it ran. Thread CPU time leaves out the waits of a descheduled thread and keeps what slows
//! every instruction. The sampler costs about 0.3% of one core.

use crate::synth::{Mix, PaymentGenerator};
use cpu_time::ThreadTime;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tollgate_router::config::RouterConfig;
use tollgate_router::pipeline::{Output, Pipeline, Source};

/// Events routed per sample: about half a millisecond of CPU.
const EVENTS: usize = 500;
/// Time between samples.
const EVERY: Duration = Duration::from_millis(200);

/// The box's speed while one phase ran.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    pub phase: String,
    /// Mean of the samples (`None`: none was taken while it ran).
    pub ns_per_event: Option<f64>,
    pub samples: usize,
    pub min_ns: Option<f64>,
    pub max_ns: Option<f64>,
}

type Samples = Arc<Mutex<Vec<(Instant, f64)>>>;

/// The sampler, and where each phase began.
pub struct SpeedProbe {
    samples: Samples,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    marks: Vec<(String, Instant)>,
}

impl SpeedProbe {
    /// Starts sampling `config`'s pipeline over the first events of the stream seeded `seed`.
    pub fn start(config: &RouterConfig, seed: u64) -> anyhow::Result<SpeedProbe> {
        let pipeline = Pipeline::from_config(config)?;
        let mut generator = PaymentGenerator::new(seed, Mix::default(), "probe");
        let events: Vec<Vec<u8>> = (0..EVENTS)
            .map(|_| {
                let mut event = Vec::new();
                generator.next_into(&mut event);
                event
            })
            .collect();
        let (samples, stop) = (Samples::default(), Arc::new(AtomicBool::new(false)));
        let (into, stopped) = (Arc::clone(&samples), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name("tollgate-speed".into()).spawn(move || {
            let mut out = Output::default();
            while !stopped.load(Ordering::Relaxed) {
                let (now, start) = (SystemTime::now(), ThreadTime::now());
                for (offset, event) in events.iter().enumerate() {
                    let source = Source { topic: "probe", partition: 0, offset: offset as i64 };
                    std::hint::black_box(pipeline.process(Some(event), source, now, &mut out));
                }
                let ns = start.elapsed().as_secs_f64() * 1e9 / EVENTS as f64;
                into.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), ns));
                std::thread::sleep(EVERY);
            }
        })?;
        Ok(SpeedProbe { samples, stop, thread: Some(thread), marks: Vec::new() })
    }

    /// Phase `phase` starts now (and the one before it ends).
    pub fn mark(&mut self, phase: &str) {
        self.marks.push((phase.to_owned(), Instant::now()));
    }

    /// Stops sampling; the speed of each phase marked, from its mark to the next (the last to
    /// now).
    pub fn finish(mut self) -> Vec<Reading> {
        let end = Instant::now();
        self.stop_sampling();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let bounds = self.marks.iter().map(|(_, at)| *at).skip(1).chain([end]);
        self.marks
            .iter()
            .zip(bounds)
            .map(|((phase, from), to)| {
                let within: Vec<f64> =
                    samples.iter().filter(|(at, _)| *at >= *from && *at < to).map(|(_, ns)| *ns).collect();
                let mean = (!within.is_empty()).then(|| within.iter().sum::<f64>() / within.len() as f64);
                Reading {
                    phase: phase.clone(),
                    ns_per_event: mean,
                    samples: within.len(),
                    min_ns: within.iter().copied().reduce(f64::min),
                    max_ns: within.iter().copied().reduce(f64::max),
                }
            })
            .collect()
    }

    fn stop_sampling(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SpeedProbe {
    fn drop(&mut self) {
        self.stop_sampling();
    }
}

/// `router 1012 (690–1400, 31 samples) · …`, for the report.
pub fn describe(readings: &[Reading]) -> String {
    let one = |r: &Reading| match (r.ns_per_event, r.min_ns, r.max_ns) {
        (Some(mean), Some(min), Some(max)) => {
            format!("{} {mean:.0} ({min:.0}–{max:.0}, {} samples)", r.phase, r.samples)
        }
        _ => format!("{} —", r.phase),
    };
    readings.iter().map(one).collect::<Vec<_>>().join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_gets_the_samples_taken_while_it_ran() {
        let dir = std::env::temp_dir().join(format!("tollgate-speed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = crate::demo::reference_example(&dir).unwrap();
        let mut probe = SpeedProbe::start(&config, 42).unwrap();
        probe.mark("first");
        std::thread::sleep(EVERY * 3);
        probe.mark("second");
        let readings = probe.finish();
        let phases: Vec<&str> = readings.iter().map(|r| r.phase.as_str()).collect();
        assert_eq!(phases, ["first", "second"]);
        let first = &readings[0];
        // A sample at once, then one every 200 ms: two or more in 600 ms.
        assert!(first.samples >= 2, "{first:?}");
        let (mean, min, max) = (first.ns_per_event.unwrap(), first.min_ns.unwrap(), first.max_ns.unwrap());
        assert!(min > 0.0 && min <= mean && mean <= max, "{first:?}");
        // Marked as the sampler stopped: at most a sample that ended in between.
        assert!(readings[1].samples <= 1, "{:?}", readings[1]);
        assert!(describe(&readings).starts_with(&format!("first {mean:.0} ({min:.0}–{max:.0}, ")));
    }

    #[test]
    fn a_phase_without_samples_reads_as_a_dash() {
        let none = Reading { phase: "short".into(), ns_per_event: None, samples: 0, min_ns: None, max_ns: None };
        assert_eq!(describe(&[none]), "short —");
    }
}
