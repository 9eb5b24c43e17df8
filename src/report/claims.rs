//! "The claims a student arrives with, checked against this run": the usual
//! article on containers and VMs says containers are smaller, start faster,
//! cost less CPU and memory, and isolate less. Each claim here is stated,
//! then met with this run's own figures (median and interval), a verdict
//! on whether the run supports it, and what the run cannot tell.
//!
//! Everything is computed from the series, so the sentences change with the
//! records; a claim the run has no figures for says so.

use super::{ReportData, SeriesSummary, fmt_value};
use crate::env::EnvKind;

/// One claim, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The claim as articles put it.
    pub claim: &'static str,
    /// What this run measured for it, with figures.
    pub measured: String,
    /// Where it holds and where it does not, by this run.
    pub verdict: String,
    /// What this run cannot tell.
    pub cannot_tell: String,
}

impl Claim {
    /// A claim this run has no figures for.
    fn without_figures(claim: &'static str, cannot_tell: String) -> Claim {
        Claim {
            claim,
            measured: NO_FIGURES.into(),
            verdict: "cannot be checked".into(),
            cannot_tell,
        }
    }
}

/// A series' median with its unit and interval, as a sentence fragment:
/// `3.1 ms (95% CI 2.9–3.4)` or `3.1 ms (range 2.9–3.4, n = 3)`.
pub fn figure(s: &SeriesSummary) -> String {
    let sp = s.stats.spread();
    let interval = if sp.is_ci {
        format!("95% CI {}–{}", fmt_value(sp.lo), fmt_value(sp.hi))
    } else {
        format!(
            "range {}–{}, n = {}",
            fmt_value(sp.lo),
            fmt_value(sp.hi),
            sp.n
        )
    };
    format!("{} {} ({interval})", fmt_value(s.stats.median), s.unit)
}

/// The first series of a workload of `kind` in `env` with `metric`.
fn find<'a>(
    data: &'a ReportData,
    kind: &str,
    env: EnvKind,
    metric: &str,
) -> Option<&'a SeriesSummary> {
    data.series
        .iter()
        .find(|s| data.kind_of(&s.workload) == kind && s.environment == env && s.metric == metric)
}

/// The first series with `metric` in `env`, any workload.
fn any<'a>(data: &'a ReportData, env: EnvKind, metric: &str) -> Option<&'a SeriesSummary> {
    data.series
        .iter()
        .find(|s| s.environment == env && s.metric == metric)
}

/// A ratio with its interval: `1.02× (95% CI 0.98–1.05)`, or without one
/// and why.
fn ratio(s: &SeriesSummary) -> Option<String> {
    let r = s.ratio_to_native?;
    Some(match &s.ratio_ci95 {
        Some(ci) => format!("{r:.2}× native (95% CI {:.2}–{:.2})", ci.lo, ci.hi),
        None => format!(
            "{r:.2}× native (no interval: fewer than {} repetitions a side)",
            crate::stats::CI_MIN_N
        ),
    })
}

/// Every claim, in the usual order.
pub fn claims(data: &ReportData) -> Vec<Claim> {
    vec![
        smaller(data),
        start_faster(data),
        less_cpu(data),
        less_memory(data),
        isolate_less(data),
    ]
}

const NO_FIGURES: &str = "this run has no figures for it";

fn smaller(data: &ReportData) -> Claim {
    let claim = "Containers are smaller than VMs.";
    let cannot_tell =
        "The image here holds only isobench's agent and the workloads' programs with \
                       their libraries; a real distribution image (Debian, Alpine) or a \
                       distribution's VM disk image changes both figures by far more."
            .to_string();
    let sizes: Vec<(EnvKind, &SeriesSummary)> = EnvKind::ALL
        .iter()
        .filter_map(|e| any(data, *e, "artifact_mib").map(|s| (*e, s)))
        .collect();
    let get = |e: EnvKind| sizes.iter().find(|(k, _)| *k == e).map(|(_, s)| *s);
    if sizes.is_empty() {
        return Claim::without_figures(claim, cannot_tell);
    }
    let what = |e: EnvKind| match e {
        EnvKind::Native => "the agent",
        EnvKind::Container | EnvKind::Runc | EnvKind::Crun | EnvKind::Gvisor => "its image tree",
        EnvKind::Docker | EnvKind::Podman => "the image imported as a tar",
        EnvKind::Vm | EnvKind::VmMinimal => "guest kernel, initramfs and any disk image",
    };
    let measured = sizes
        .iter()
        .map(|(e, s)| format!("{e} ships {} of {}", figure(s), what(*e)))
        .collect::<Vec<_>>()
        .join("; ")
        + ".";
    let verdict = match (get(EnvKind::Container), get(EnvKind::Vm)) {
        (Some(c), Some(v)) if c.stats.median < v.stats.median => format!(
            "Holds: the VM has to ship {:.1}× the container's bytes, most of it its own kernel.",
            v.stats.median / c.stats.median
        ),
        (Some(_), Some(_)) => {
            "Does not hold in this run: the container's artifacts are not the smaller.".into()
        }
        _ => "Only one of container and VM ran: no comparison.".into(),
    };
    Claim {
        claim,
        measured,
        verdict,
        cannot_tell,
    }
}

fn start_faster(data: &ReportData) -> Claim {
    let claim = "Containers start faster than VMs.";
    let cannot_tell = "Start-up here is spawn to the agent's first word, with isobench's own \
                       runtime and a tiny image; Docker's daemon and shim, a large image pulled \
                       over a network, or a minimal guest kernel under KVM move these figures a \
                       lot."
        .to_string();
    let startup = |e| find(data, "noop", e, "startup_ms").or_else(|| any(data, e, "startup_ms"));
    let teardown = |e| find(data, "noop", e, "teardown_ms").or_else(|| any(data, e, "teardown_ms"));
    let (n, c, v) = (
        startup(EnvKind::Native),
        startup(EnvKind::Container),
        startup(EnvKind::Vm),
    );
    if n.is_none() && c.is_none() && v.is_none() {
        return Claim::without_figures(claim, cannot_tell);
    }
    let mut parts = Vec::new();
    for e in EnvKind::ALL {
        if let Some(s) = startup(e) {
            parts.push(format!("{e} {}", figure(s)));
        }
    }
    let mut measured = format!("startup_ms: {}.", parts.join("; "));
    let (tn, tc) = (teardown(EnvKind::Native), teardown(EnvKind::Container));
    if let (Some(tn), Some(tc)) = (tn, tc) {
        measured.push_str(&format!(
            " Teardown: native {}, container {}.",
            figure(tn),
            figure(tc)
        ));
    }
    let mut verdict = match (c, v) {
        (Some(c), Some(v)) if c.stats.median < v.stats.median => format!(
            "Holds: the VM took {:.0}× as long as the container to start.",
            v.stats.median / c.stats.median
        ),
        (Some(_), Some(_)) => "Does not hold in this run.".into(),
        _ => "Only one of container and VM ran: no comparison.".into(),
    };
    if let (Some(n), Some(c)) = (n, c) {
        verdict.push_str(&format!(
            " But a container's start is not free: it adds {} ms to a native start ({}).",
            fmt_value(c.stats.median - n.stats.median),
            ratio(c).unwrap_or_else(|| "no ratio".into())
        ));
    }
    Claim {
        claim,
        measured,
        verdict,
        cannot_tell,
    }
}

fn less_cpu(data: &ReportData) -> Claim {
    let claim = "Containers cost less CPU than VMs.";
    let tcg = data.tcg();
    let cannot_tell = if tcg {
        "The VM ran under TCG, software emulation, which slows every instruction; under KVM a \
         guest runs CPU-bound code at nearly native speed, and this run cannot show that."
    } else {
        "Only CPU-bound work and a trivial system call are measured; I/O-heavy work crosses \
         more boundaries."
    }
    .to_string();
    let (c, v) = (
        find(data, "cpu", EnvKind::Container, "score"),
        find(data, "cpu", EnvKind::Vm, "score"),
    );
    if c.is_none() && v.is_none() {
        return Claim::without_figures(claim, cannot_tell);
    }
    let mut parts = Vec::new();
    for (e, s) in [("container", c), ("vm", v)] {
        if let Some(s) = s {
            parts.push(format!(
                "{e} {}, {}",
                figure(s),
                ratio(s).unwrap_or_else(|| "no native figure".into())
            ));
        }
    }
    let mut measured = format!("cpu score: {}.", parts.join("; "));
    let sys = |e| find(data, "syscall", e, "score");
    if let (Some(sc), Some(sv)) = (sys(EnvKind::Container), sys(EnvKind::Vm)) {
        measured.push_str(&format!(
            " A system call: container {}, vm {}.",
            ratio(sc).unwrap_or_default(),
            ratio(sv).unwrap_or_default()
        ));
    }
    let mut verdict = String::new();
    if let Some(c) = c {
        match (&c.ratio_ci95, c.ratio_to_native) {
            (Some(ci), _) if ci.contains(1.0) => verdict.push_str(
                "Holds for the container: its CPU-bound work costs nothing measurable (the \
                 interval of its ratio includes 1×).",
            ),
            (Some(_), Some(r)) => verdict.push_str(&format!(
                "The container's CPU-bound work differs from native by {:+.1}%, beyond the \
                 noise at this n.",
                (r - 1.0) * 100.0
            )),
            _ => verdict.push_str(
                "Too few repetitions to say whether the container's CPU work differs from \
                 native.",
            ),
        }
    }
    if let Some(v) = v {
        let r = v.ratio_to_native.unwrap_or(f64::NAN);
        verdict.push_str(&format!(
            " The VM scores {r:.2}× native{}.",
            if tcg {
                ": that is the cost of TCG's emulation, not of a KVM guest"
            } else {
                ""
            }
        ));
    }
    Claim {
        claim,
        measured,
        verdict: verdict.trim().to_string(),
        cannot_tell,
    }
}

/// The memory figure most comparable across environments: a steady PSS,
/// else the peak PSS, else the peak RSS.
fn footprint(data: &ReportData, e: EnvKind) -> Option<&SeriesSummary> {
    ["pss_steady_mib", "pss_mib", "pss_peak_mib", "max_rss_mib"]
        .iter()
        .find_map(|m| find(data, "idle", e, m).or_else(|| find(data, "noop", e, m)))
}

fn less_memory(data: &ReportData) -> Claim {
    let claim = "Containers use less memory than VMs.";
    let cannot_tell = "Memory here is what the host backs for one small instance; a guest's \
                       RAM is reserved up to its size but only backed when touched, so a busy \
                       guest or one with a large page cache costs far more, and many containers \
                       share one kernel's caches."
        .to_string();
    let (c, v) = (
        footprint(data, EnvKind::Container),
        footprint(data, EnvKind::Vm),
    );
    let overhead = any(data, EnvKind::Vm, "vmm_overhead_mib");
    if c.is_none() && v.is_none() {
        return Claim::without_figures(claim, cannot_tell);
    }
    let mut parts = Vec::new();
    for (e, s) in [("container", c), ("vm", v)] {
        if let Some(s) = s {
            parts.push(format!("{e} {} {}", s.metric, figure(s)));
        }
    }
    let mut measured = parts.join("; ") + ".";
    if let Some(o) = overhead {
        measured.push_str(&format!(" Of the VM's, QEMU itself: {}.", figure(o)));
    }
    let verdict = match (c, v) {
        (Some(c), Some(v)) if c.stats.median < v.stats.median => format!(
            "Holds: the VM's footprint is {:.0}× the container's{}.",
            v.stats.median / c.stats.median.max(f64::MIN_POSITIVE),
            if c.metric != v.metric {
                " (not the same metric in both: short instances have only a peak RSS)"
            } else {
                ""
            }
        ),
        (Some(_), Some(_)) => "Does not hold in this run.".into(),
        _ => "Only one of container and VM has a memory figure: no comparison.".into(),
    };
    Claim {
        claim,
        measured,
        verdict,
        cannot_tell,
    }
}

fn isolate_less(data: &ReportData) -> Claim {
    let claim = "Containers isolate less than VMs.";
    let sys = |e| find(data, "syscall", e, "score");
    let mut measured = "This run measures what isolation costs, not how strong it is.".to_string();
    if let Some(c) = sys(EnvKind::Container) {
        measured.push_str(&format!(
            " A container's system calls go to the host's own kernel (a call costs {}, through \
             Docker's seccomp filter unless the scenario turned it off)",
            ratio(c).unwrap_or_else(|| figure(c))
        ));
        match sys(EnvKind::Vm) {
            Some(v) => measured.push_str(&format!(
                "; a VM's go to its own guest kernel ({}).",
                ratio(v).unwrap_or_else(|| figure(v))
            )),
            None => measured.push('.'),
        }
    }
    Claim {
        claim,
        measured,
        verdict: "Not measured: the shared kernel is the container's boundary (one kernel bug \
                  reaches every container), the hypervisor is the VM's; isobench shows the \
                  price of each, not their strength."
            .into(),
        cannot_tell: "How hard either boundary is to break; that takes security analysis, not \
                      benchmarks."
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn every_claim_is_met_with_this_runs_figures() {
        let data = fixture::data(true);
        let all = claims(&data);
        assert_eq!(all.len(), 5);
        let start = &all[1];
        assert!(start.measured.contains("vm 2050 ms"), "{start:?}");
        assert!(start.verdict.starts_with("Holds"), "{start:?}");
        let cpu = &all[2];
        assert!(cpu.measured.contains("0.33× native"), "{cpu:?}");
        assert!(cpu.cannot_tell.contains("TCG"), "{cpu:?}");
    }

    /// The sentences follow the records: make the container slower to
    /// start than the VM and the verdict turns.
    #[test]
    fn the_sentences_change_with_the_records() {
        let mut data = fixture::data(true);
        let before = claims(&data)[1].clone();
        for s in data
            .series
            .iter_mut()
            .filter(|s| s.environment == EnvKind::Container && s.metric == "startup_ms")
        {
            s.stats.median = 5000.0;
        }
        let after = claims(&data)[1].clone();
        assert_ne!(before.measured, after.measured);
        assert!(after.measured.contains("container 5000 ms"), "{after:?}");
        assert!(after.verdict.starts_with("Does not hold"), "{after:?}");
    }

    #[test]
    fn a_claim_without_figures_says_so() {
        let mut data = fixture::data(false);
        data.series.retain(|s| s.metric != "score");
        let cpu = &claims(&data)[2];
        assert_eq!(cpu.measured, NO_FIGURES);
    }
}
