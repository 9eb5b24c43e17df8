//! Workload specifications, shared by the host and the agent.
//!
//! The host turns a scenario's `[[workload]]` table into a [`WorkloadSpec`],
//! passes it to the agent as plain arguments ([`WorkloadSpec::to_args`]), and
//! the agent parses them back ([`WorkloadSpec::from_args`]). One type on both
//! sides keeps the two from drifting apart; the argument form works the same
//! on a command line and on a kernel command line (after `--`).
//!
//! Every kind's parameters are listed once, in [`WorkloadKind::params`],
//! with their defaults; scenarios, the agent and the documentation all read
//! that table.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of workload the agent can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Sends `ready` and exits: startup and teardown only.
    Noop,
    /// Stays up for a while doing nothing: memory footprint and density.
    Idle,
    /// A deterministic SHA-256 chain over a fixed buffer, on N threads.
    Cpu,
    /// STREAM's copy, scale, add and triad over arrays far above the cache.
    Memory,
    /// Allocates and touches N MiB: the cost of a page fault.
    Pagefault,
    /// A trivial system call in a tight loop.
    Syscall,
    /// fork, exit and wait, over and over.
    Fork,
    /// TCP over loopback: request/response latency and bulk throughput.
    Net,
    /// File I/O: sequential write + fsync and read, 4 KiB random O_DIRECT
    /// reads and writes, in the environment's scratch directory.
    Fileio,
    /// N idle instances started one after another and kept alive: memory
    /// per instance, and startup against instances already running.
    Density,
    /// Any program, run by the agent as its child (`isobench exec`).
    Command,
    /// TCP request/response across the boundary: the agent serves, isobench
    /// on the host is the client (p50/p99 µs, connect+request+close rate).
    NetRr,
    /// Bulk TCP across the boundary, host → environment and back (MB/s).
    NetStream,
    /// A real server program inside, a real client program on the host.
    Service,
}

/// One numeric parameter of a workload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its name in scenarios and on the agent's command line.
    pub name: &'static str,
    /// Its value when not given.
    pub default: u64,
    /// The largest value taken: far above any sensible benchmark, and low
    /// enough that the agent's sizes (MiB × 2²⁰, KiB × 2¹⁰) and counts
    /// cannot overflow.
    pub max: u64,
    /// What it means.
    pub doc: &'static str,
}

const fn p(name: &'static str, default: u64, max: u64, doc: &'static str) -> Param {
    Param {
        name,
        default,
        max,
        doc,
    }
}

/// Cap of a size in MiB: 1 TiB.
const MAX_MIB: u64 = 1 << 20;
/// Cap of a size in KiB: 1 GiB.
const MAX_KIB: u64 = 1 << 20;
/// Cap of a time in ms: 7 days, as a scenario's `timeout_s`.
const MAX_MS: u64 = 7 * 24 * 3600 * 1000;
/// Cap of a loop count (system calls, hash rounds): 10¹².
const MAX_LOOPS: u64 = 1_000_000_000_000;
/// Cap of a count whose every item is kept in memory (latencies): 10⁸.
const MAX_KEPT: u64 = 100_000_000;

/// Default number of SHA-256 rounds of the `cpu` workload.
pub const CPU_DEFAULT_ROUNDS: u64 = 1000;
/// Default size of the buffer hashed in every round of the `cpu` workload.
pub const CPU_DEFAULT_BUFFER_KIB: u64 = 64;

const IDLE_PARAMS: &[Param] = &[p("duration_ms", 1000, MAX_MS, "how long to stay up, in ms")];
const CPU_PARAMS: &[Param] = &[
    p(
        "rounds",
        CPU_DEFAULT_ROUNDS,
        MAX_LOOPS,
        "hash rounds per thread",
    ),
    p(
        "buffer_kib",
        CPU_DEFAULT_BUFFER_KIB,
        MAX_KIB,
        "buffer hashed in every round, in KiB",
    ),
    p("threads", 1, 1024, "threads, each hashing its own chain"),
];
const MEMORY_PARAMS: &[Param] = &[
    p(
        "array_mib",
        32,
        MAX_MIB,
        "size of each of the three arrays, in MiB",
    ),
    p(
        "passes",
        5,
        1_000_000,
        "passes over all four kernels; the best counts, as in STREAM",
    ),
];
const PAGEFAULT_PARAMS: &[Param] = &[p(
    "mib",
    64,
    MAX_MIB,
    "anonymous memory to allocate and touch, in MiB",
)];
const SYSCALL_PARAMS: &[Param] = &[p("iterations", 1_000_000, MAX_LOOPS, "system calls made")];
const FORK_PARAMS: &[Param] = &[p(
    "count",
    200,
    1_000_000_000,
    "children forked and waited for",
)];
const NET_PARAMS: &[Param] = &[
    p(
        "requests",
        2000,
        MAX_KEPT,
        "1-byte request/response round trips",
    ),
    p(
        "bulk_mib",
        64,
        MAX_MIB,
        "data streamed one way for throughput, in MiB",
    ),
];

const FILEIO_PARAMS: &[Param] = &[
    p(
        "file_mib",
        64,
        MAX_MIB,
        "file written and read sequentially, in MiB",
    ),
    p(
        "block_kib",
        1024,
        MAX_KIB,
        "block size of the sequential passes, in KiB",
    ),
    p(
        "ops",
        2000,
        MAX_KEPT,
        "4 KiB random reads, and as many random writes, with O_DIRECT",
    ),
];

const DENSITY_PARAMS: &[Param] = &[
    p(
        "instances",
        10,
        10_000,
        "idle instances started one after another, all kept alive",
    ),
    p(
        "settle_ms",
        300,
        3_600_000,
        "wait after each start before reading memory, in ms",
    ),
];
const NET_RR_PARAMS: &[Param] = &[
    p(
        "requests",
        2000,
        MAX_KEPT,
        "1-byte request/response round trips on one connection",
    ),
    p(
        "connects",
        200,
        MAX_KEPT,
        "connect + 1-byte request + answer + close, timed as a whole",
    ),
];
const NET_STREAM_PARAMS: &[Param] = &[p("bulk_mib", 64, MAX_MIB, "data streamed each way, in MiB")];

impl WorkloadKind {
    /// Every kind, in catalog order.
    pub const ALL: [WorkloadKind; 14] = [
        WorkloadKind::Noop,
        WorkloadKind::Idle,
        WorkloadKind::Cpu,
        WorkloadKind::Memory,
        WorkloadKind::Pagefault,
        WorkloadKind::Syscall,
        WorkloadKind::Fork,
        WorkloadKind::Net,
        WorkloadKind::Fileio,
        WorkloadKind::Density,
        WorkloadKind::Command,
        WorkloadKind::NetRr,
        WorkloadKind::NetStream,
        WorkloadKind::Service,
    ];

    /// The name used in scenarios, on the agent's command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Noop => "noop",
            WorkloadKind::Idle => "idle",
            WorkloadKind::Cpu => "cpu",
            WorkloadKind::Memory => "memory",
            WorkloadKind::Pagefault => "pagefault",
            WorkloadKind::Syscall => "syscall",
            WorkloadKind::Fork => "fork",
            WorkloadKind::Net => "net",
            WorkloadKind::Fileio => "fileio",
            WorkloadKind::Density => "density",
            WorkloadKind::Command => "command",
            WorkloadKind::NetRr => "net_rr",
            WorkloadKind::NetStream => "net_stream",
            WorkloadKind::Service => "service",
        }
    }

    /// The numeric parameters this kind takes, with their defaults.
    pub fn params(self) -> &'static [Param] {
        match self {
            WorkloadKind::Noop | WorkloadKind::Command | WorkloadKind::Service => &[],
            WorkloadKind::NetRr => NET_RR_PARAMS,
            WorkloadKind::NetStream => NET_STREAM_PARAMS,
            WorkloadKind::Idle => IDLE_PARAMS,
            WorkloadKind::Cpu => CPU_PARAMS,
            WorkloadKind::Memory => MEMORY_PARAMS,
            WorkloadKind::Pagefault => PAGEFAULT_PARAMS,
            WorkloadKind::Syscall => SYSCALL_PARAMS,
            WorkloadKind::Fork => FORK_PARAMS,
            WorkloadKind::Net => NET_PARAMS,
            WorkloadKind::Fileio => FILEIO_PARAMS,
            WorkloadKind::Density => DENSITY_PARAMS,
        }
    }

    /// The default of one parameter of this kind.
    pub fn default_of(self, name: &str) -> Option<u64> {
        self.params()
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.default)
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A fully specified workload: its kind and every parameter, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadSpec {
    /// See [`WorkloadKind::Noop`].
    Noop,
    /// See [`WorkloadKind::Idle`].
    Idle {
        /// How long to stay up, in ms.
        duration_ms: u64,
    },
    /// See [`WorkloadKind::Cpu`].
    Cpu {
        /// Number of hash rounds per thread; each round hashes the previous
        /// digest and the buffer.
        rounds: u64,
        /// Size of the fixed buffer hashed in each round, in KiB.
        buffer_kib: u64,
        /// Threads, each with its own chain.
        threads: u64,
    },
    /// See [`WorkloadKind::Memory`].
    Memory {
        /// Size of each array, in MiB.
        array_mib: u64,
        /// Passes over the four kernels.
        passes: u64,
    },
    /// See [`WorkloadKind::Pagefault`].
    Pagefault {
        /// Memory to touch, in MiB.
        mib: u64,
    },
    /// See [`WorkloadKind::Syscall`].
    Syscall {
        /// System calls made.
        iterations: u64,
    },
    /// See [`WorkloadKind::Fork`].
    Fork {
        /// Children forked.
        count: u64,
    },
    /// See [`WorkloadKind::Net`].
    Net {
        /// Round trips.
        requests: u64,
        /// Bulk data, in MiB.
        bulk_mib: u64,
    },
    /// See [`WorkloadKind::Fileio`].
    Fileio {
        /// File size, in MiB.
        file_mib: u64,
        /// Sequential block size, in KiB.
        block_kib: u64,
        /// Random operations of each kind.
        ops: u64,
    },
    /// See [`WorkloadKind::Density`]. The agent stays up until killed.
    Density {
        /// Instances kept alive at once.
        instances: u64,
        /// Settling time after each start, in ms.
        settle_ms: u64,
    },
    /// See [`WorkloadKind::Command`].
    Command {
        /// The program (an absolute path inside the environment) and its arguments.
        argv: Vec<String>,
    },
    /// See [`WorkloadKind::NetRr`].
    NetRr {
        /// Round trips on one connection.
        requests: u64,
        /// Connect + request + close cycles.
        connects: u64,
    },
    /// See [`WorkloadKind::NetStream`].
    NetStream {
        /// MiB each way.
        bulk_mib: u64,
    },
    /// See [`WorkloadKind::Service`]: the server program and its arguments.
    Service {
        /// The program (an absolute path inside the environment) and its arguments.
        argv: Vec<String>,
    },
}

/// A bad argument list given to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No workload name at all.
    #[error("no workload given; expected one of: {}", kind_list())]
    Missing,
    /// The first argument names no known workload.
    #[error("unknown workload `{0}`; expected one of: {list}", list = kind_list())]
    UnknownKind(String),
    /// A `key=value` argument that the workload does not take.
    #[error("workload `{kind}` has no parameter `{key}` (it takes: {})", param_list(*.kind))]
    UnknownParam {
        /// The workload.
        kind: WorkloadKind,
        /// The parameter given.
        key: String,
    },
    /// A parameter whose value is not a positive integer.
    #[error("parameter `{key}` of workload `{kind}`: expected a positive integer, got `{value}`")]
    BadValue {
        /// The workload.
        kind: WorkloadKind,
        /// The parameter.
        key: String,
        /// The value given.
        value: String,
    },
    /// A parameter above its cap ([`Param::max`]).
    #[error("parameter `{key}` of workload `{kind}`: at most {max}, got {value}")]
    TooLarge {
        /// The workload.
        kind: WorkloadKind,
        /// The parameter.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Its cap.
        max: u64,
    },
    /// An argument not of the form `key=value`.
    #[error("argument `{0}` is not of the form key=value")]
    Malformed(String),
    /// `command` without `--` and a program after it.
    #[error("workload `command` takes `-- PROGRAM [ARGS...]`")]
    NoProgram,
}

fn kind_list() -> String {
    WorkloadKind::ALL.map(|k| k.as_str()).join(", ")
}

/// The parameters of a kind, for messages: `rounds, buffer_kib` or `no parameters`.
pub fn param_list(kind: WorkloadKind) -> String {
    let names: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
    if names.is_empty() {
        "no parameters".to_string()
    } else {
        names.join(", ")
    }
}

impl WorkloadSpec {
    /// The kind of this workload.
    pub fn kind(&self) -> WorkloadKind {
        match self {
            WorkloadSpec::Noop => WorkloadKind::Noop,
            WorkloadSpec::Idle { .. } => WorkloadKind::Idle,
            WorkloadSpec::Cpu { .. } => WorkloadKind::Cpu,
            WorkloadSpec::Memory { .. } => WorkloadKind::Memory,
            WorkloadSpec::Pagefault { .. } => WorkloadKind::Pagefault,
            WorkloadSpec::Syscall { .. } => WorkloadKind::Syscall,
            WorkloadSpec::Fork { .. } => WorkloadKind::Fork,
            WorkloadSpec::Net { .. } => WorkloadKind::Net,
            WorkloadSpec::Fileio { .. } => WorkloadKind::Fileio,
            WorkloadSpec::Density { .. } => WorkloadKind::Density,
            WorkloadSpec::Command { .. } => WorkloadKind::Command,
            WorkloadSpec::NetRr { .. } => WorkloadKind::NetRr,
            WorkloadSpec::NetStream { .. } => WorkloadKind::NetStream,
            WorkloadSpec::Service { .. } => WorkloadKind::Service,
        }
    }

    /// Builds the spec of a numeric kind from a parameter lookup (which
    /// supplies the defaults). `None` for `command`, which has no numbers.
    pub fn from_params(kind: WorkloadKind, get: impl Fn(&'static str) -> u64) -> Option<Self> {
        Some(match kind {
            WorkloadKind::Noop => WorkloadSpec::Noop,
            WorkloadKind::Idle => WorkloadSpec::Idle {
                duration_ms: get("duration_ms"),
            },
            WorkloadKind::Cpu => WorkloadSpec::Cpu {
                rounds: get("rounds"),
                buffer_kib: get("buffer_kib"),
                threads: get("threads"),
            },
            WorkloadKind::Memory => WorkloadSpec::Memory {
                array_mib: get("array_mib"),
                passes: get("passes"),
            },
            WorkloadKind::Pagefault => WorkloadSpec::Pagefault { mib: get("mib") },
            WorkloadKind::Syscall => WorkloadSpec::Syscall {
                iterations: get("iterations"),
            },
            WorkloadKind::Fork => WorkloadSpec::Fork {
                count: get("count"),
            },
            WorkloadKind::Net => WorkloadSpec::Net {
                requests: get("requests"),
                bulk_mib: get("bulk_mib"),
            },
            WorkloadKind::Fileio => WorkloadSpec::Fileio {
                file_mib: get("file_mib"),
                block_kib: get("block_kib"),
                ops: get("ops"),
            },
            WorkloadKind::Density => WorkloadSpec::Density {
                instances: get("instances"),
                settle_ms: get("settle_ms"),
            },
            WorkloadKind::NetRr => WorkloadSpec::NetRr {
                requests: get("requests"),
                connects: get("connects"),
            },
            WorkloadKind::NetStream => WorkloadSpec::NetStream {
                bulk_mib: get("bulk_mib"),
            },
            WorkloadKind::Command | WorkloadKind::Service => return None,
        })
    }

    /// The numeric parameters and their values, in the kind's order.
    pub fn params(&self) -> Vec<(&'static str, u64)> {
        let values: Vec<u64> = match *self {
            WorkloadSpec::Noop | WorkloadSpec::Command { .. } | WorkloadSpec::Service { .. } => {
                vec![]
            }
            WorkloadSpec::NetRr { requests, connects } => vec![requests, connects],
            WorkloadSpec::NetStream { bulk_mib } => vec![bulk_mib],
            WorkloadSpec::Idle { duration_ms } => vec![duration_ms],
            WorkloadSpec::Cpu {
                rounds,
                buffer_kib,
                threads,
            } => vec![rounds, buffer_kib, threads],
            WorkloadSpec::Memory { array_mib, passes } => vec![array_mib, passes],
            WorkloadSpec::Pagefault { mib } => vec![mib],
            WorkloadSpec::Syscall { iterations } => vec![iterations],
            WorkloadSpec::Fork { count } => vec![count],
            WorkloadSpec::Net { requests, bulk_mib } => vec![requests, bulk_mib],
            WorkloadSpec::Fileio {
                file_mib,
                block_kib,
                ops,
            } => vec![file_mib, block_kib, ops],
            WorkloadSpec::Density {
                instances,
                settle_ms,
            } => vec![instances, settle_ms],
        };
        self.kind()
            .params()
            .iter()
            .map(|p| p.name)
            .zip(values)
            .collect()
    }

    /// The agent's arguments for this workload: the kind, then `key=value` pairs.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![self.kind().as_str().to_string()];
        match self {
            WorkloadSpec::Command { argv } | WorkloadSpec::Service { argv } => {
                args.push("--".into());
                args.extend(argv.iter().cloned());
            }
            _ => args.extend(self.params().into_iter().map(|(k, v)| format!("{k}={v}"))),
        }
        args
    }

    /// Parses the agent's arguments back (the inverse of [`Self::to_args`]);
    /// parameters left out take their defaults.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Self, SpecError> {
        let (first, rest) = args.split_first().ok_or(SpecError::Missing)?;
        let kind = WorkloadKind::from_name(first.as_ref())
            .ok_or_else(|| SpecError::UnknownKind(first.as_ref().to_string()))?;
        if matches!(kind, WorkloadKind::Command | WorkloadKind::Service) {
            return match rest.split_first() {
                Some((dashes, argv)) if dashes.as_ref() == "--" && !argv.is_empty() => {
                    let argv = argv.iter().map(|a| a.as_ref().to_string()).collect();
                    Ok(if kind == WorkloadKind::Command {
                        WorkloadSpec::Command { argv }
                    } else {
                        WorkloadSpec::Service { argv }
                    })
                }
                _ => Err(SpecError::NoProgram),
            };
        }
        let mut given: Vec<(&'static str, u64)> = Vec::new();
        for arg in rest {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| SpecError::Malformed(arg.to_string()))?;
            let param = kind
                .params()
                .iter()
                .find(|p| p.name == key)
                .ok_or_else(|| SpecError::UnknownParam {
                    kind,
                    key: key.to_string(),
                })?;
            let parsed = value
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| SpecError::BadValue {
                    kind,
                    key: key.to_string(),
                    value: value.to_string(),
                })?;
            if parsed > param.max {
                return Err(SpecError::TooLarge {
                    kind,
                    key: param.name,
                    value: parsed,
                    max: param.max,
                });
            }
            given.push((param.name, parsed));
        }
        let get = |name: &'static str| {
            given
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .or_else(|| kind.default_of(name))
                .unwrap_or(1)
        };
        WorkloadSpec::from_params(kind, get).ok_or(SpecError::NoProgram)
    }
}

/// Which direction of a metric is better; used by reports and the compare gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Larger values are better (throughput, scores).
    Higher,
    /// Smaller values are better (latencies, times, memory).
    Lower,
}

impl Better {
    /// `higher` or `lower`, as records and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    /// Reads [`Better::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<Better> {
        match text {
            "higher" => Some(Better::Higher),
            "lower" => Some(Better::Lower),
            _ => None,
        }
    }

    /// The direction of a figure in `unit`, for records written before
    /// results carried their direction: a rate (`.../s`, `IOPS`) is better
    /// higher, a time, size or count lower. Every built-in figure follows
    /// this; a `command` workload's own rule may not, which is why records
    /// now carry the direction the workload declared.
    pub fn legacy_for_unit(unit: &str) -> Better {
        if unit.ends_with("/s") || unit == "IOPS" {
            Better::Higher
        } else {
            Better::Lower
        }
    }
}

/// Whether isobench itself measures a metric of this name for every
/// instance (startup and teardown, the VM's boot breakdown, the sampler's,
/// the cgroup's and QEMU's figures, the agent's timing of a command)
/// rather than a workload reporting it as its own result. A `command`
/// workload may not name a metric like this, and the terminal summary does
/// not take one for a workload's headline.
pub fn is_host_metric(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "startup_ms",
        "teardown_ms",
        "host_cpu_ms",
        "max_rss_mib",
        "elapsed_ms",
        "oom_kills",
        "forks_refused",
        "artifact_mib",
    ];
    const PREFIXES: &[&str] = &[
        "boot_", "cgroup_", "vmm_", "qemu_", "guest_", "rss_", "pss_", "density_",
    ];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One figure measured by the agent or the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name as it appears in `results.csv` (`score`, `elapsed_ms`, ...).
    pub name: String,
    /// Unit of `value` (`ms`, `rounds/s`, ...).
    pub unit: String,
    /// The value.
    pub value: f64,
    /// Which direction is better.
    pub better: Better,
}

impl Metric {
    /// A metric where smaller is better.
    pub fn lower(name: &str, unit: &str, value: f64) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            value,
            better: Better::Lower,
        }
    }

    /// A metric where larger is better.
    pub fn higher(name: &str, unit: &str, value: f64) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            value,
            better: Better::Higher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind_with_params() -> Vec<WorkloadSpec> {
        let mut specs: Vec<WorkloadSpec> = WorkloadKind::ALL
            .into_iter()
            .filter_map(|k| {
                // Distinct values per parameter, so a swapped field shows.
                WorkloadSpec::from_params(k, |name| {
                    k.params().iter().position(|p| p.name == name).unwrap() as u64 + 7
                })
            })
            .collect();
        specs.push(WorkloadSpec::Command {
            argv: vec!["/bin/echo".into(), "--".into(), "a=b".into()],
        });
        specs
    }

    #[test]
    fn args_round_trip_for_every_kind() {
        for spec in every_kind_with_params() {
            assert_eq!(
                WorkloadSpec::from_args(&spec.to_args()),
                Ok(spec.clone()),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn params_follow_the_table() {
        for spec in every_kind_with_params() {
            let names: Vec<&str> = spec.params().iter().map(|(n, _)| *n).collect();
            let table: Vec<&str> = spec.kind().params().iter().map(|p| p.name).collect();
            assert_eq!(names, table, "{spec:?}");
            for (i, (_, v)) in spec.params().iter().enumerate() {
                assert_eq!(
                    *v,
                    i as u64 + 7,
                    "{spec:?} parameter {i} is wired to the wrong field"
                );
            }
        }
    }

    #[test]
    fn host_metrics_are_told_from_a_workloads_own() {
        for m in [
            "startup_ms",
            "boot_kernel_ms",
            "pss_steady_mib",
            "rss_peak_mib",
            "cgroup_cpu_ms",
            "vmm_overhead_mib",
            "density_pss_total_mib",
            "elapsed_ms",
        ] {
            assert!(is_host_metric(m), "{m}");
        }
        for m in ["score", "events_per_s", "rr_p99_us", "triad_mbs", "startup"] {
            assert!(!is_host_metric(m), "{m}");
        }
    }

    #[test]
    fn defaults_apply() {
        assert_eq!(
            WorkloadSpec::from_args(&["cpu"]),
            Ok(WorkloadSpec::Cpu {
                rounds: CPU_DEFAULT_ROUNDS,
                buffer_kib: CPU_DEFAULT_BUFFER_KIB,
                threads: 1,
            })
        );
        assert_eq!(
            WorkloadSpec::from_args(&["net", "requests=5"]),
            Ok(WorkloadSpec::Net {
                requests: 5,
                bulk_mib: 64
            })
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let empty: [&str; 0] = [];
        assert_eq!(WorkloadSpec::from_args(&empty), Err(SpecError::Missing));
        assert_eq!(
            WorkloadSpec::from_args(&["gpu"]),
            Err(SpecError::UnknownKind("gpu".into()))
        );
        let err = WorkloadSpec::from_args(&["noop", "rounds=3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload `noop` has no parameter `rounds` (it takes: no parameters)"
        );
        let err = WorkloadSpec::from_args(&["cpu", "round=3"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("(it takes: rounds, buffer_kib, threads)"),
            "{err}"
        );
        assert!(matches!(
            WorkloadSpec::from_args(&["cpu", "rounds=0"]),
            Err(SpecError::BadValue { .. })
        ));
        assert!(matches!(
            WorkloadSpec::from_args(&["cpu", "rounds=-4"]),
            Err(SpecError::BadValue { .. })
        ));
        assert_eq!(
            WorkloadSpec::from_args(&["cpu", "rounds"]),
            Err(SpecError::Malformed("rounds".into()))
        );
        // A size whose bytes would overflow is refused, with its cap.
        let err = WorkloadSpec::from_args(&["memory", "array_mib=17592186044416"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `array_mib` of workload `memory`: at most 1048576, got 17592186044416"
        );
        for kind in WorkloadKind::ALL {
            for p in kind.params() {
                assert!(p.default <= p.max, "{kind}.{}", p.name);
                let max = format!("{}={}", p.name, p.max);
                assert!(WorkloadSpec::from_args(&[kind.as_str(), &max]).is_ok());
            }
        }
        assert_eq!(
            WorkloadSpec::from_args(&["command"]),
            Err(SpecError::NoProgram)
        );
        assert_eq!(
            WorkloadSpec::from_args(&["command", "--"]),
            Err(SpecError::NoProgram)
        );
        assert_eq!(
            WorkloadSpec::from_args(&["command", "/bin/ls"]),
            Err(SpecError::NoProgram)
        );
    }
}
