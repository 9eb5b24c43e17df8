//! The report's network paths: for every workload measured from the host
//! (`net_rr`, `net_stream`, `service`), latency (p50/p99), connection rate
//! and throughput per environment and network mode, and plain sentences on
//! what each path costs, with this run's figures.

use super::{ReportData, SeriesSummary, fmt_value};
use crate::env::EnvKind;
use std::fmt::Write as _;

/// The kinds measured across the boundary.
const ACROSS: [&str; 3] = ["net_rr", "net_stream", "service"];

/// The columns of the table: metric and heading.
const COLUMNS: [(&str, &str); 7] = [
    ("rr_p50_us", "RR p50 µs"),
    ("rr_p99_us", "RR p99 µs"),
    ("crr_per_s", "CRR /s"),
    ("to_env_mbs", "host→env MB/s"),
    ("from_env_mbs", "env→host MB/s"),
    ("set_per_s", "SET /s"),
    ("get_per_s", "GET /s"),
];

/// A workload's network mode in `env`, from the scenario in `meta.json`.
pub fn mode(data: &ReportData, workload: &str, env: EnvKind) -> String {
    if env == EnvKind::Native {
        return "loopback".into();
    }
    data.meta
        .scenario
        .get("workloads")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
        .find(|w| w.get("name").and_then(|n| n.as_str()) == Some(workload))
        .and_then(|w| {
            w.get("network")?
                .get(env.as_str())?
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into())
}

/// What a path is, in words.
fn path(env: EnvKind, mode: &str) -> &'static str {
    match (env, mode) {
        (EnvKind::Native, _) => "the host's own loopback",
        (EnvKind::Container, "bridge") => "a veth pair and the run's bridge, one kernel",
        (EnvKind::Container, "host") => "no network namespace: the host's own stack",
        (EnvKind::Vm, "bridge") => "a tap on the bridge, QEMU's virtio-net and the guest's kernel",
        (EnvKind::Vm, "user") => "QEMU's user-mode network (slirp) and a port forward",
        _ => "?",
    }
}

fn find<'a>(
    data: &'a ReportData,
    w: &str,
    env: EnvKind,
    metric: &str,
) -> Option<&'a SeriesSummary> {
    data.series
        .iter()
        .find(|s| s.workload == w && s.environment == env && s.metric == metric)
}

/// The section, or `None` when the run measured nothing across the boundary.
pub fn section(data: &ReportData) -> Option<String> {
    let workloads: Vec<&String> = data
        .kinds
        .iter()
        .filter(|(_, k)| ACROSS.contains(&k.as_str()))
        .map(|(w, _)| w)
        .collect();
    if workloads.is_empty() {
        return None;
    }
    let mut s = String::new();
    let _ = writeln!(s, "### Across the boundary: paths and what they cost\n");
    let _ = write!(s, "| workload | env | network | path |");
    for (_, h) in COLUMNS {
        let _ = write!(s, " {h} |");
    }
    let _ = write!(s, "\n|---|---|---|---|");
    for _ in COLUMNS {
        s.push_str("---:|");
    }
    s.push('\n');
    let mut sentences = Vec::new();
    for w in &workloads {
        for env in EnvKind::ALL {
            if !data
                .series
                .iter()
                .any(|x| &x.workload == *w && x.environment == env)
            {
                continue;
            }
            let m = mode(data, w, env);
            let _ = write!(s, "| `{w}` | {env} | {m} | {} |", path(env, &m));
            for (metric, _) in COLUMNS {
                let cell = find(data, w, env, metric)
                    .map_or("—".to_string(), |x| fmt_value(x.stats.median));
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
            if env == EnvKind::Native {
                continue;
            }
            for (metric, what) in [
                ("rr_p50_us", "a 1-byte round trip"),
                ("to_env_mbs", "bulk TCP host → environment"),
                ("set_per_s", "Redis SET"),
            ] {
                let (Some(x), Some(base)) = (
                    find(data, w, env, metric),
                    find(data, w, EnvKind::Native, metric),
                ) else {
                    continue;
                };
                let ratio = x.stats.median / base.stats.median;
                sentences.push(format!(
                    "`{w}`, {env} ({m}): {what}: {} {} at the median against {} natively, {:.2}× — {}.",
                    fmt_value(x.stats.median),
                    x.unit,
                    fmt_value(base.stats.median),
                    ratio,
                    path(env, &m)
                ));
            }
        }
    }
    s.push('\n');
    for line in sentences {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(
        s,
        "- What each path adds: a container on the bridge crosses a veth pair and a bridge in \
         the same kernel (a few µs); with `host` it shares the host's stack and costs what \
         native does. A VM's packets cross the guest's virtio driver, QEMU's device model and \
         the host's tap — under TCG every guest instruction of that path is emulated, so the \
         cost is far above KVM's (where IBM measured +80% on TCP_RR). User-mode networking \
         adds QEMU's own user-space TCP stack, which copies every segment twice. Both ends \
         of every figure ran on one host CPU (see the Notes)."
    );
    s.push('\n');
    Some(s)
}
