//! What isobench would do, and what it has, without starting anything:
//! the plan of a scenario with an estimate of its wall time
//! (`isobench validate`, `isobench run --dry-run`), and the catalog of
//! workloads and environments (`isobench list`).

use crate::env::registry::ENTRIES;
use crate::env::{BedSpec, EnvKind, VmBoot};
use crate::scenario::{ContainerSettings, Plan, VmSettings};
use crate::workload::{WorkloadKind, WorkloadSpec};
use std::fmt::Write as _;

/// Rough seconds one instance takes, from the medians of the default
/// scenario on a 2-core machine with its VMs under TCG (149 s for 168
/// instances): a native or container instance a fraction of a second, a
/// VM its boot (≈1.5 s) plus its workload under emulation, several times
/// slower than natively. An estimate to plan with, not a measurement.
pub fn instance_seconds(spec: &WorkloadSpec, env: EnvKind) -> f64 {
    let work = match spec {
        WorkloadSpec::Noop | WorkloadSpec::Density { .. } => 0.0,
        WorkloadSpec::Idle { duration_ms } => *duration_ms as f64 / 1e3,
        WorkloadSpec::Cpu { rounds, .. } => *rounds as f64 * 0.2e-3,
        WorkloadSpec::Memory { array_mib, passes } => (*array_mib * *passes) as f64 * 3e-3,
        WorkloadSpec::Pagefault { mib } => *mib as f64 * 1e-3,
        WorkloadSpec::Syscall { iterations } => *iterations as f64 * 0.3e-6,
        WorkloadSpec::Fork { count } => *count as f64 * 0.3e-3,
        WorkloadSpec::Net { requests, bulk_mib } => {
            *requests as f64 * 30e-6 + *bulk_mib as f64 * 2e-3
        }
        WorkloadSpec::Fileio { file_mib, ops, .. } => {
            *file_mib as f64 * 4e-3 + *ops as f64 * 0.2e-3
        }
        WorkloadSpec::Command { .. } => 0.5,
        WorkloadSpec::NetRr { requests, connects } => {
            *requests as f64 * 60e-6 + *connects as f64 * 0.3e-3
        }
        WorkloadSpec::NetStream { bulk_mib } => *bulk_mib as f64 * 4e-3,
        WorkloadSpec::Service { .. } => 2.0,
    };
    match env {
        EnvKind::Native => 0.05 + work,
        EnvKind::Container => 0.08 + work,
        EnvKind::Runc | EnvKind::Crun => 0.15 + work,
        EnvKind::Docker | EnvKind::Podman => 0.6 + work,
        EnvKind::Gvisor => 1.0 + 2.0 * work,
        EnvKind::Vm => 1.6 + 5.0 * work,
        EnvKind::VmMinimal => 0.6 + 5.0 * work,
    }
}

/// The plan as a table: per workload its kind, parameters, instances
/// (warm-ups + repetitions, per environment) and estimated time; then the
/// totals.
pub fn plan_table(plan: &Plan) -> String {
    let mut s = String::new();
    let envs: Vec<&str> = plan.environments.iter().map(|e| e.as_str()).collect();
    let _ = writeln!(
        s,
        "scenario `{}` ({}): {} workload(s) in {}",
        plan.name,
        plan.source,
        plan.workloads.len(),
        envs.join(", ")
    );
    let _ = writeln!(
        s,
        "{:<14} {:<9} {:<34} {:>12} {:>10}",
        "workload", "kind", "parameters", "instances", "est. time"
    );
    let mut total_s = 0.0;
    for w in &plan.workloads {
        let params: Vec<String> = match &w.command {
            Some(c) => vec![c.argv.join(" ")],
            None => w
                .spec
                .params()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        };
        let per_env = match w.spec {
            WorkloadSpec::Density { instances, .. } => instances,
            _ => u64::from(w.warmups) + u64::from(w.adaptive.map_or(w.reps, |a| a.max_reps)),
        };
        let secs: f64 = plan
            .environments
            .iter()
            .map(|e| per_env as f64 * instance_seconds(&w.spec, *e))
            .sum();
        total_s += secs;
        let reps = match (w.spec.kind(), w.adaptive) {
            (WorkloadKind::Density, _) => format!("{per_env}"),
            (_, Some(a)) => format!("{}+{}..{}", w.warmups, w.reps, a.max_reps),
            _ => format!("{}+{}", w.warmups, w.reps),
        };
        let mut p = params.join(" ");
        if p.chars().count() > 34 {
            p = p.chars().take(33).collect::<String>() + "…";
        }
        let _ = writeln!(
            s,
            "{:<14} {:<9} {:<34} {:>12} {:>10}",
            w.name,
            w.spec.kind().as_str(),
            p,
            format!("{reps} ×{}", plan.environments.len()),
            format_secs(secs)
        );
    }
    let _ = writeln!(
        s,
        "total: {} instances, about {} (a rough estimate from a 2-core machine with VMs under TCG; KVM boots VMs several times faster)",
        plan.instance_count(),
        format_secs(total_s)
    );
    s
}

fn format_secs(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The catalog: every workload kind with its parameters (default, largest
/// value, meaning), and every environment with whether it can run here and,
/// if not, why.
pub fn catalog() -> String {
    let mut s = String::from("workloads (parameters: default, largest value, meaning):\n");
    for kind in WorkloadKind::ALL {
        let _ = writeln!(s, "  {kind}");
        if kind == WorkloadKind::Command {
            let _ = writeln!(
                s,
                "      argv, files, metrics: any host program, extra files, figures read from its output by regex"
            );
        }
        if kind == WorkloadKind::Service {
            let _ = writeln!(
                s,
                "      argv, files, port, client, metrics: a server inside, a client on the host ({{addr}}, {{port}}), figures read from the client's output"
            );
        }
        for p in kind.params() {
            let _ = writeln!(
                s,
                "      {:<12} {:>10} {:>12}  {}",
                p.name, p.default, p.max, p.doc
            );
        }
    }
    s.push_str("environments:\n");
    let (vm, container, boot) = (
        VmSettings::default(),
        ContainerSettings::default(),
        VmBoot::default(),
    );
    let spec = BedSpec {
        vm: &vm,
        container: &container,
        boot: &boot,
        workloads: &[],
        quiet: true,
    };
    for e in ENTRIES {
        let here = match (e.check)(&spec) {
            Ok(()) => "usable here".to_string(),
            Err(why) => format!("not usable here: {why}"),
        };
        let _ = writeln!(s, "  {:<10} {:<22} {here}", e.kind.as_str(), e.label);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_is_tabled_with_every_workload_and_a_total() {
        let plan = Plan::load(None, &crate::scenario::Overrides::default()).unwrap();
        let table = plan_table(&plan);
        for w in &plan.workloads {
            assert!(table.contains(&w.name), "{table}");
        }
        assert!(table.contains("1+6 ×3"), "{table}");
        assert!(table.contains(&format!("total: {} instances", plan.instance_count())));
        // VMs dominate: the estimate is minutes, not seconds.
        assert!(table.contains(" min"), "{table}");
    }

    #[test]
    fn the_catalog_names_every_workload_and_environment() {
        let text = catalog();
        for kind in WorkloadKind::ALL {
            assert!(text.contains(&format!("  {kind}\n")), "{kind}");
        }
        for e in EnvKind::ALL {
            assert!(text.contains(&format!("  {:<10}", e.as_str())), "{e}");
        }
        assert!(text.contains("rounds"));
    }
}
