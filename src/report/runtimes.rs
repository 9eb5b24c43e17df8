//! "Where each runtime's start-up time and memory go": a few plain
//! sentences per real runtime of the run (runc, crun, gvisor, docker,
//! podman), with this run's figures (median and interval of `startup_ms`,
//! `teardown_ms` and `runtime_overhead_mib`, preferring the `noop`
//! workload) and the runtime's version and workarounds from `meta.json`.

use super::ReportData;
use super::claims::figure;
use crate::env::EnvKind;

fn series<'a>(
    data: &'a ReportData,
    env: EnvKind,
    metric: &str,
) -> Option<&'a super::SeriesSummary> {
    let of = |kind: Option<&str>| {
        data.series.iter().find(|s| {
            s.environment == env
                && s.metric == metric
                && kind.is_none_or(|k| data.kind_of(&s.workload) == k)
        })
    };
    of(Some("noop")).or_else(|| of(None))
}

/// Why a runtime's start costs what it does, in words.
fn mechanism(env: EnvKind, runtime: &str) -> &'static str {
    match env {
        EnvKind::Runc => {
            "The runc binary is a Go program that re-executes itself (`runc init`) to build the container \
             from config.json: namespaces, a cgroup directory in every v1 controller, the \
             mounts, /proc masks and capabilities, then execs the agent; isobench's overlay \
             mount of the bundle root is in the figure too"
        }
        EnvKind::Crun => {
            "The crun binary does the same work as runc from the same config.json, but as a C program that \
             needs no Go runtime and no re-exec of itself"
        }
        EnvKind::Gvisor => {
            "The runsc binary starts a sandbox: the sentry, a user-space kernel in Go that implements \
             Linux's system calls for the workload, and a gofer that serves it the root file \
             system; under the ptrace platform every system call of the workload stops in \
             ptrace and is handled by the sentry"
        }
        EnvKind::Docker => {
            "`docker run` is a round trip from the CLI to dockerd over its socket; dockerd asks \
             containerd, which starts a shim (containerd-shim-runc-v2), which runs the OCI \
             runtime: three hops between processes before the runtime's own work, and the \
             removal (`--rm`) on the way back"
        }
        EnvKind::Podman => {
            if runtime.contains("runsc") {
                "Podman has no daemon: the CLI sets up the image's storage itself, starts conmon \
                 to watch the container and runs gVisor's runsc"
            } else {
                "Podman has no daemon: the CLI sets up the image's storage (an overlay) itself, \
                 starts conmon to watch the container and runs the OCI runtime"
            }
        }
        _ => "",
    }
}

/// What stays alive beside the workload, in words.
fn helpers(env: EnvKind) -> &'static str {
    match env {
        EnvKind::Runc | EnvKind::Crun => "the runtime process waiting in the foreground",
        EnvKind::Gvisor => "the sentry and the gofer (the user-space kernel a student should see)",
        EnvKind::Docker => {
            "the CLI and containerd's shim, plus what dockerd and containerd grew by"
        }
        EnvKind::Podman => "the CLI and conmon",
        _ => "",
    }
}

/// One paragraph per real runtime of the run.
pub fn notes(data: &ReportData) -> Vec<String> {
    let native = series(data, EnvKind::Native, "startup_ms");
    let own = series(data, EnvKind::Container, "startup_ms");
    let mut out = Vec::new();
    for env in EnvKind::ALL.into_iter().filter(|e| e.is_runtime()) {
        let Some(start) = series(data, env, "startup_ms") else {
            continue;
        };
        let facts = data.meta.runtimes.get(env.as_str());
        let text = |k: &str| {
            facts
                .and_then(|f| f.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let runtime = text("runtime");
        let mut p = format!(
            "**{env}** ({}{}): started the agent in {} (spawn of the runtime's CLI to the \
             agent's ready frame)",
            text("version"),
            if runtime.is_empty() {
                String::new()
            } else {
                format!(", runtime {runtime}")
            },
            figure(start)
        );
        let mut compared = Vec::new();
        if let Some(c) = own {
            compared.push(format!("isobench's own container {}", figure(c)));
        }
        if let Some(n) = native {
            compared.push(format!("a native process {}", figure(n)));
        }
        if !compared.is_empty() {
            p.push_str(&format!(", against {}", compared.join(" and ")));
        }
        p.push_str(&format!(". {}.", mechanism(env, &runtime)));
        if let Some(t) = series(data, env, "teardown_ms") {
            p.push_str(&format!(" Teardown took {}.", figure(t)));
        }
        match series(data, env, crate::env::oci::footprint::METRIC) {
            Some(o) => p.push_str(&format!(
                " Beside the workload it keeps alive {}: {} of PSS.",
                helpers(env),
                figure(o)
            )),
            None => p.push_str(" Its footprint (runtime_overhead_mib) was not recorded."),
        }
        let workarounds: Vec<String> = facts
            .and_then(|f| f.get("workarounds"))
            .and_then(|w| w.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !workarounds.is_empty() {
            p.push_str(&format!(" On this host: {}.", workarounds.join("; ")));
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn rec(env: &str, metric: &str, value: f64) -> Record {
        Record {
            workload: "noop".into(),
            environment: env.into(),
            repetition: 1,
            metric: metric.into(),
            unit: if metric.ends_with("_mib") {
                "MiB"
            } else {
                "ms"
            }
            .into(),
            better: crate::workload::Better::Lower,
            value,
        }
    }

    #[test]
    fn each_runtime_gets_its_figures_and_only_runtimes_get_a_paragraph() {
        let mut meta = super::super::fixture::meta(false);
        meta.runtimes.insert(
            "gvisor".into(),
            serde_json::json!({"version": "runsc 2022", "workarounds": ["platform ptrace"]}),
        );
        let records = vec![
            rec("native", "startup_ms", 1.0),
            rec("container", "startup_ms", 5.0),
            rec("gvisor", "startup_ms", 250.0),
            rec("gvisor", "runtime_overhead_mib", 24.5),
            rec("runc", "startup_ms", 70.0),
        ];
        let data = ReportData::new(meta, &records, Vec::new());
        let notes = notes(&data);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("**runc**"), "{}", notes[0]);
        assert!(notes[0].contains("not recorded"), "{}", notes[0]);
        let g = &notes[1];
        assert!(g.contains("250 ms") && g.contains("24.5 MiB"), "{g}");
        assert!(g.contains("sentry") && g.contains("platform ptrace"), "{g}");
        assert!(g.contains("runsc 2022"), "{g}");
        assert!(
            g.contains("against isobench's own container 5") && g.contains("a native process 1"),
            "{g}"
        );
    }
}
