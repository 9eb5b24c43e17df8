//! Workload specifications, shared by the host and the agent.
//!
//! The host turns a scenario's `[[workload]]` table into a [`WorkloadSpec`],
//! passes it to the agent as plain arguments ([`WorkloadSpec::to_args`]), and
//! the agent parses them back ([`WorkloadSpec::from_args`]). One type on both
//! sides keeps the two from drifting apart; the argument form works the same
//! on a command line and on a kernel command line (after `--`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of workload the agent can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Sends `ready` and exits: startup and teardown only.
    Noop,
    /// A deterministic single-thread SHA-256 chain over a fixed buffer.
    Cpu,
    /// Any program, run by the agent as its child (`isobench exec`).
    Command,
}

impl WorkloadKind {
    /// Every kind, in catalog order.
    pub const ALL: [WorkloadKind; 3] =
        [WorkloadKind::Noop, WorkloadKind::Cpu, WorkloadKind::Command];

    /// The name used in scenarios, on the agent's command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Noop => "noop",
            WorkloadKind::Cpu => "cpu",
            WorkloadKind::Command => "command",
        }
    }

    /// The parameters this kind accepts in a scenario.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Noop => &[],
            WorkloadKind::Cpu => &["rounds", "buffer_kib"],
            WorkloadKind::Command => &[],
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Default number of SHA-256 rounds of the `cpu` workload.
pub const CPU_DEFAULT_ROUNDS: u64 = 1000;
/// Default size of the buffer hashed in every round of the `cpu` workload.
pub const CPU_DEFAULT_BUFFER_KIB: u64 = 64;

/// A fully specified workload: its kind and every parameter, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadSpec {
    /// See [`WorkloadKind::Noop`].
    Noop,
    /// See [`WorkloadKind::Cpu`].
    Cpu {
        /// Number of hash rounds; each round hashes the previous digest and the buffer.
        rounds: u64,
        /// Size of the fixed buffer hashed in each round, in KiB.
        buffer_kib: u64,
    },
    /// See [`WorkloadKind::Command`].
    Command {
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
    #[error("workload `{kind}` has no parameter `{key}` (it takes: {})", list_or_none(.kind.params()))]
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

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "no parameters".to_string()
    } else {
        items.join(", ")
    }
}

impl WorkloadSpec {
    /// The kind of this workload.
    pub fn kind(&self) -> WorkloadKind {
        match self {
            WorkloadSpec::Noop => WorkloadKind::Noop,
            WorkloadSpec::Cpu { .. } => WorkloadKind::Cpu,
            WorkloadSpec::Command { .. } => WorkloadKind::Command,
        }
    }

    /// The agent's arguments for this workload: the kind, then `key=value` pairs.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![self.kind().as_str().to_string()];
        match self {
            WorkloadSpec::Noop => {}
            WorkloadSpec::Cpu { rounds, buffer_kib } => {
                args.push(format!("rounds={rounds}"));
                args.push(format!("buffer_kib={buffer_kib}"));
            }
            WorkloadSpec::Command { argv } => {
                args.push("--".into());
                args.extend(argv.iter().cloned());
            }
        }
        args
    }

    /// Parses the agent's arguments back (the inverse of [`Self::to_args`]);
    /// parameters left out take their defaults.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Self, SpecError> {
        let (first, rest) = args.split_first().ok_or(SpecError::Missing)?;
        let kind = WorkloadKind::from_name(first.as_ref())
            .ok_or_else(|| SpecError::UnknownKind(first.as_ref().to_string()))?;
        if kind == WorkloadKind::Command {
            return match rest.split_first() {
                Some((dashes, argv)) if dashes.as_ref() == "--" && !argv.is_empty() => {
                    Ok(WorkloadSpec::Command {
                        argv: argv.iter().map(|a| a.as_ref().to_string()).collect(),
                    })
                }
                _ => Err(SpecError::NoProgram),
            };
        }
        let mut params = Vec::new();
        for arg in rest {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| SpecError::Malformed(arg.to_string()))?;
            if !kind.params().contains(&key) {
                return Err(SpecError::UnknownParam {
                    kind,
                    key: key.to_string(),
                });
            }
            let parsed = value
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| SpecError::BadValue {
                    kind,
                    key: key.to_string(),
                    value: value.to_string(),
                })?;
            params.push((key, parsed));
        }
        let get = |name: &str, default: u64| {
            params
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map_or(default, |(_, v)| *v)
        };
        Ok(match kind {
            WorkloadKind::Noop => WorkloadSpec::Noop,
            WorkloadKind::Cpu => WorkloadSpec::Cpu {
                rounds: get("rounds", CPU_DEFAULT_ROUNDS),
                buffer_kib: get("buffer_kib", CPU_DEFAULT_BUFFER_KIB),
            },
            WorkloadKind::Command => return Err(SpecError::NoProgram),
        })
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

    #[test]
    fn args_round_trip() {
        for spec in [
            WorkloadSpec::Noop,
            WorkloadSpec::Cpu {
                rounds: 7,
                buffer_kib: 3,
            },
            WorkloadSpec::Command {
                argv: vec!["/bin/echo".into(), "--".into(), "a=b".into()],
            },
        ] {
            assert_eq!(WorkloadSpec::from_args(&spec.to_args()), Ok(spec));
        }
    }

    #[test]
    fn defaults_apply() {
        assert_eq!(
            WorkloadSpec::from_args(&["cpu"]),
            Ok(WorkloadSpec::Cpu {
                rounds: CPU_DEFAULT_ROUNDS,
                buffer_kib: CPU_DEFAULT_BUFFER_KIB
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
