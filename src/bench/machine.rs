//! What the machine did during a phase: this process's CPU, by thread, and the whole box's
//! (Linux: `/proc`). The box's share tells whether a phase ran on a saturated machine, and how
//! much of it went to other processes: the broker, when it runs beside the harness.

use cpu_time::ProcessTime;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The box's CPU time so far, in clock ticks over all cores (the first line of `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BoxCpu {
    busy: u64,
    total: u64,
    cores: u32,
}

impl BoxCpu {
    fn read() -> Option<BoxCpu> {
        BoxCpu::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal …`, then one `cpuN` line per core.
    fn parse(stat: &str) -> Option<BoxCpu> {
        let mut lines = stat.lines();
        let ticks: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else { return None };
        let cores = lines.take_while(|l| l.starts_with("cpu")).count() as u32;
        let busy = user + nice + system + irq + softirq + steal;
        Some(BoxCpu { busy, total: busy + idle + iowait, cores: cores.max(1) })
    }
}

/// How busy the box was over a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MachineShare {
    /// The box's cores.
    pub cores: u32,
    /// The busy share of all its cores (0–1).
    pub busy: f64,
    /// Cores' worth of CPU used by other processes: the box's busy cores less this process's.
    pub other_processes_cores: f64,
}

impl MachineShare {
    /// `box busy 85% of 2 cores, other processes 0.94 cores`, for the table.
    pub fn figures(machine: Option<&MachineShare>) -> String {
        machine.map_or_else(
            || "box CPU unknown".to_owned(),
            |m| {
                format!(
                    "box busy {:.0}% of {} cores, other processes {:.2} cores",
                    100.0 * m.busy,
                    m.cores,
                    m.other_processes_cores
                )
            },
        )
    }
}

/// A phase's start: the wall clock, this process's CPU and the box's.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    wall: Instant,
    cpu: ProcessTime,
    machine: Option<BoxCpu>,
}

/// What a phase took since its [`Mark`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub wall: Duration,
    /// This process's CPU time.
    pub cpu: Duration,
    pub machine: Option<MachineShare>,
}

impl Mark {
    pub fn now() -> Mark {
        Mark { wall: Instant::now(), cpu: ProcessTime::now(), machine: BoxCpu::read() }
    }

    pub fn spent(&self) -> Spent {
        let (wall, cpu) = (self.wall.elapsed(), self.cpu.elapsed());
        let machine = self.machine.zip(BoxCpu::read()).and_then(|(before, after)| {
            let total = after.total.checked_sub(before.total).filter(|t| *t > 0)? as f64;
            let busy = after.busy.saturating_sub(before.busy) as f64 / total;
            let cores = f64::from(after.cores);
            let ours = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
            Some(MachineShare { cores: after.cores, busy, other_processes_cores: (busy * cores - ours).max(0.0) })
        });
        Spent { wall, cpu, machine }
    }
}

/// Resident set size of this process (MiB), from /proc.
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().to_owned()))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds used so far by this process's live threads, by thread group (from /proc; Linux's
/// clock tick of 100 Hz).
pub fn cpu_by_thread() -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for (group, seconds) in cpu_by_task().into_values() {
        *out.entry(group).or_default() += seconds;
    }
    out
}

/// CPU seconds used so far by each of this process's live threads, by thread id: its group
/// and its seconds.
fn cpu_by_task() -> HashMap<u64, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_owned();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { continue };
        // Fields after the parenthesised name: state is the first, utime the 12th, stime the 13th.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        let group = if name.starts_with("rdk:") {
            "librdkafka"
        } else if name.contains("poll") {
            // rdkafka's ThreadedProducer thread: it runs the delivery callbacks.
            "delivery callbacks"
        } else if name.starts_with("tollgate-rt-") {
            // Several routing loops (`processing.routing_threads`): one group, as with one loop.
            "tollgate-route"
        } else if name.starts_with("tollgate-") || name.starts_with("base-") {
            // Tollgate's threads, and the same-records baselines' stages.
            name.as_str()
        } else if name.starts_with("tokio") {
            "tokio"
        } else {
            "other"
        };
        out.insert(tid, (group.to_owned(), (ticks(11) + ticks(12)) / 100.0));
    }
    out
}

/// A phase's CPU by thread group, for phases whose threads end before the phase does: a
/// thread's time leaves /proc with it (the process's total keeps it, so [`Mark`] can be read
/// later). Each thread's time is read when the phase starts and whenever a stage ends, before
/// its clients close ([`ThreadClock::observe`]); a thread counts with its last reading, so
/// what it spent closing down after it is left out.
#[derive(Debug, Default)]
pub struct ThreadClock {
    start: std::sync::OnceLock<HashMap<u64, (String, f64)>>,
    seen: std::sync::Mutex<HashMap<u64, (String, f64)>>,
}

impl ThreadClock {
    /// Reads every thread's time at the phase's start (the first call counts).
    pub fn start(&self) {
        self.start.get_or_init(cpu_by_task);
    }

    /// Reads every live thread's time again.
    pub fn observe(&self) {
        if self.start.get().is_some() {
            let now = cpu_by_task();
            self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(now);
        }
    }

    /// CPU seconds per million `units` by thread group between the start and each thread's
    /// last reading, largest first (empty when the phase never started).
    pub fn spent(&self, units: u64) -> Vec<(String, f64)> {
        let Some(start) = self.start.get() else { return Vec::new() };
        let mut groups: HashMap<String, f64> = HashMap::new();
        for (tid, (group, seconds)) in self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let before = start.get(tid).map_or(0.0, |(_, s)| *s);
            *groups.entry(group.clone()).or_default() += (seconds - before).max(0.0);
        }
        let mut spent: Vec<(String, f64)> =
            groups.into_iter().map(|(group, seconds)| (group, seconds * 1e6 / units.max(1) as f64)).collect();
        spent.sort_by(|a, b| b.1.total_cmp(&a.1));
        spent
    }
}

/// CPU seconds per million `units` spent since `before` (a [`cpu_by_thread`] reading), by thread
/// group, largest first.
pub fn cpu_spent_since(before: &HashMap<String, f64>, units: u64) -> Vec<(String, f64)> {
    let mut spent: Vec<(String, f64)> = cpu_by_thread()
        .into_iter()
        .map(|(group, after)| {
            let seconds = (after - before.get(&group).copied().unwrap_or(0.0)).max(0.0);
            (group, seconds * 1e6 / units.max(1) as f64)
        })
        .collect();
    spent.sort_by(|a, b| b.1.total_cmp(&a.1));
    spent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_cpu_is_read_from_proc_stat() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\ncpu1 50 3 25 400 10 2 1 5 0 0\nintr 1 2 3\n";
        assert_eq!(BoxCpu::parse(stat), Some(BoxCpu { busy: 170, total: 990, cores: 2 }));
        assert_eq!(BoxCpu::parse("intr 1 2 3\n"), None);
        assert_eq!(BoxCpu::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    /// Spins for `how_long` of wall time (a CPU-bound thread's time on an idle enough box).
    fn spin(how_long: Duration) {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < how_long {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
    }

    #[test]
    fn a_thread_that_ended_before_the_phase_counts_with_its_last_reading() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let clock = ThreadClock::default();
        clock.start();
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("base-gone".into())
                .spawn_scoped(s, || {
                    spin(Duration::from_millis(200));
                    clock.observe();
                })
                .unwrap();
        });
        clock.observe();
        // Per million units of one: the thread's seconds, in millions.
        let spent = clock.spent(1);
        let gone = spent.iter().find(|(group, _)| group == "base-gone").map(|(_, s)| s / 1e6);
        assert!(gone.is_some_and(|s| s > 0.05), "{spent:?}");
    }

    #[test]
    fn a_phase_on_this_machine_reads_its_share_of_the_box() {
        let mark = Mark::now();
        // Some work of this process's own, so the box is not idle over the phase.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = mark.spent();
        assert!(spent.cpu > Duration::ZERO && spent.wall >= Duration::from_millis(150));
        if cfg!(target_os = "linux") {
            let m = spent.machine.expect("/proc/stat is readable on Linux");
            assert!(m.cores >= 1 && m.busy > 0.0 && m.busy <= 1.0, "{m:?}");
            assert!(m.other_processes_cores >= 0.0, "{m:?}");
        }
    }
}
