//! Reading process and machine facts from `/proc`, so the report can say what a request cost
//! the server process (CPU, memory) and not only how fast it came back.

use std::fs;
use std::process::Command;

/// Which processes make up one server under test.
#[derive(Clone, Copy, Debug)]
pub enum ProcSet {
    /// A single process (the gateway); its threads are included in its `/proc` counters.
    Single(u32),
    /// A master and its direct children (nginx master + workers).
    Tree(u32),
}

impl ProcSet {
    /// Current member pids. For a tree the children are looked up each time, so a worker
    /// respawned by the master is still counted.
    pub fn pids(self) -> Vec<u32> {
        match self {
            ProcSet::Single(pid) => vec![pid],
            ProcSet::Tree(master) => {
                let mut pids = vec![master];
                pids.extend(children_of(master));
                pids
            }
        }
    }
}

/// Resource counters of a [`ProcSet`] at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime summed over the set, in clock ticks.
    pub cpu_ticks: u64,
    /// `VmHWM` (peak resident set) summed over the set, in KiB.
    pub peak_rss_kb: u64,
}

impl ProcSample {
    /// Samples all members. A process that vanished in between is simply skipped.
    pub fn take(set: ProcSet) -> Self {
        set.pids().into_iter().fold(ProcSample::default(), |acc, pid| ProcSample {
            cpu_ticks: acc.cpu_ticks + cpu_ticks(pid).unwrap_or(0),
            peak_rss_kb: acc.peak_rss_kb + peak_rss_kb(pid).unwrap_or(0),
        })
    }
}

/// Fields of `/proc/<pid>/stat` after the `(comm)` field, which may itself contain spaces
/// and parentheses — hence splitting at the *last* `)`. Index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime (field 14) + stime (field 15), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` from `/proc/<pid>/status`, in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pids whose parent (field 4 of `stat`) is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()).is_some_and(|ppid| ppid == parent))
        .collect()
}

/// Clock ticks per second for `/proc` CPU counters (`getconf CLK_TCK`; 100 on Linux if
/// `getconf` is unavailable).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// What the numbers were measured on.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self { cpus, cpu_model }
    }
}

/// `/proc/loadavg`'s 1/5/15-minute averages: other work on a 2-core box skews every number,
/// so the report records how busy the machine was.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Raises this process's open-files limit (soft, and hard when allowed: root) to `wanted`,
/// never lowering it; children started afterwards inherit it. Returns the soft limit now.
pub fn raise_open_files(wanted: u64) -> u64 {
    let nofile = rlimit::Resource::NOFILE;
    let Ok((soft, hard)) = nofile.get() else {
        return 0;
    };
    if wanted > hard {
        // Only a privileged process may raise its hard limit; otherwise the soft one goes to hard.
        let _ = nofile.set(wanted, wanted);
    }
    let _ = rlimit::increase_nofile_limit(wanted);
    nofile.get().map_or(soft, |(soft, _)| soft)
}
