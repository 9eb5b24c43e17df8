//! The two guest kernels side by side: a run with both `vm` (the
//! distribution's kernel, unless `[vm] kernel` says otherwise) and
//! `vm-minimal` (the kernel `isobench kernel build` made) gets a section
//! comparing their start-up and its breakdown, the guest's memory, and a
//! workload's score, with plain sentences on where the time went.
//!
//! The kernel is a dimension of the comparison by being part of the
//! environment: `vm-minimal` is its own environment with the same `[vm]`
//! settings, so its instances interleave with `vm`'s in every repetition
//! and every series, chart and ratio to native treats it like any other
//! environment; this section only puts the two VMs' figures next to
//! each other.

use super::{ReportData, fmt_value};
use crate::env::EnvKind;

/// The figures compared, in order: metric and what it is.
pub const ROWS: &[(&str, &str)] = &[
    ("startup_ms", "start-up, spawn to ready (ms)"),
    ("boot_vmm_ms", "QEMU + loading the kernel (ms)"),
    (
        "boot_kernel_ms",
        "guest kernel boot, by the vCPU's clock (ms)",
    ),
    ("boot_uptime_ms", "the same, by the guest's own clock (ms)"),
    ("boot_agent_ms", "agent set-up (ms)"),
    ("guest_ram_pss_mib", "guest RAM touched, PSS (MiB)"),
    ("vmm_overhead_mib", "QEMU's own memory (MiB)"),
];

/// The section: a table (figure, `vm`, `vm-minimal`, minimal ÷ distro)
/// and sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The workload whose start-up is compared (`noop` when the run has it).
    pub startup_workload: String,
    /// Rows: what, the `vm` median, the `vm-minimal` median, the ratio.
    pub rows: Vec<[String; 4]>,
    /// Plain sentences with this run's figures.
    pub sentences: Vec<String>,
}

/// `environments.<e>.<part>.<key>` of meta.json: what the VM environment
/// recorded of its `kernel` or its `config`.
fn recorded<'a>(
    data: &'a ReportData,
    e: EnvKind,
    part: &str,
    key: &str,
) -> Option<&'a serde_json::Value> {
    data.meta.environments.get(e.as_str())?.get(part)?.get(key)
}

/// The boot arguments a kernel got beyond isobench's own.
fn boot_args(data: &ReportData, e: EnvKind) -> Vec<String> {
    recorded(data, e, "kernel", "boot_args")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a VM's machine had ACPI tables (runs from before `config.acpi`
/// was recorded all had them).
fn acpi(data: &ReportData, e: EnvKind) -> bool {
    recorded(data, e, "config", "acpi")
        .and_then(|a| a.as_bool())
        .unwrap_or(true)
}

/// A kernel's image size in MiB and version.
fn image(data: &ReportData, e: EnvKind) -> (Option<f64>, Option<String>) {
    let bytes = recorded(data, e, "kernel", "image_bytes")
        .and_then(|b| b.as_f64())
        .filter(|b| *b > 0.0);
    let version = recorded(data, e, "kernel", "version")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    (bytes.map(|b| b / 1048576.0), version)
}

/// The section, when the run has both VM environments with start-up
/// figures.
pub fn section(data: &ReportData) -> Option<Section> {
    let (vm, min) = (EnvKind::Vm, EnvKind::VmMinimal);
    let startup_workload = data
        .series
        .iter()
        .filter(|s| s.environment == vm && s.metric == "startup_ms")
        .map(|s| s.workload.as_str())
        .filter(|w| data.series_of(w, min, "startup_ms").is_some())
        .min_by_key(|w| data.kind_of(w) != "noop")?
        .to_string();
    let w = startup_workload.as_str();
    let med = |e: EnvKind, m: &str| data.series_of(w, e, m).map(|s| s.stats.median);
    let cell = |v: Option<f64>| v.map_or("—".to_string(), fmt_value);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
        _ => "—".into(),
    };
    let mut rows = Vec::new();
    for (m, what) in ROWS {
        let (a, b) = (med(vm, m), med(min, m));
        if a.is_none() && b.is_none() {
            continue;
        }
        rows.push([format!("{what}, {w}"), cell(a), cell(b), ratio(a, b)]);
    }
    let (size_a, ver_a) = image(data, vm);
    let (size_b, ver_b) = image(data, min);
    if size_a.is_some() || size_b.is_some() {
        rows.push([
            "kernel image QEMU loads (MiB)".into(),
            cell(size_a),
            cell(size_b),
            ratio(size_a, size_b),
        ]);
    }
    // A workload's score: the kernel should not change steady-state CPU work.
    let score = data
        .series
        .iter()
        .filter(|s| s.environment == vm && s.metric == "score")
        .find(|s| data.series_of(&s.workload, min, "score").is_some())
        .map(|s| s.workload.clone());
    let score_pair = score.as_ref().and_then(|sw| {
        let a = data.series_of(sw, vm, "score")?;
        let b = data.series_of(sw, min, "score")?;
        Some((sw.clone(), a, b))
    });
    if let Some((sw, a, b)) = &score_pair {
        rows.push([
            format!("{sw} score ({})", a.unit),
            fmt_value(a.stats.median),
            fmt_value(b.stats.median),
            ratio(Some(a.stats.median), Some(b.stats.median)),
        ]);
    }

    let mut sentences = Vec::new();
    let names = format!(
        "vm boots {}; vm-minimal boots {}",
        ver_a.as_deref().unwrap_or("the distribution's kernel"),
        ver_b.as_deref().unwrap_or("the minimal kernel")
    );
    // The minimal kernel's microvm went without ACPI, the other's did not.
    let acpi_differs = acpi(data, vm) && !acpi(data, min);
    let what = if acpi_differs {
        "in their guest kernel and in what goes with it, the machine's ACPI tables (below)"
    } else {
        "only in their guest kernel"
    };
    sentences.push(format!(
        "The two VM environments differ {what} ({names}); their instances took turns in every \
         repetition, so both saw the same host load."
    ));
    if let (Some(ta), Some(tb)) = (med(vm, "startup_ms"), med(min, "startup_ms")) {
        let mut s = format!(
            "For {w}, the median start-up is {} ms with the distribution's kernel and {} ms with \
             the minimal one ({:.2}×).",
            fmt_value(ta),
            fmt_value(tb),
            tb / ta
        );
        if let (Some(va), Some(vb)) = (med(vm, "boot_vmm_ms"), med(min, "boot_vmm_ms")) {
            let files = match (size_a, size_b) {
                (Some(a), Some(b)) => format!("the kernel file QEMU loads ({a:.1} and {b:.1} MiB)"),
                _ => "the kernel file QEMU loads".into(),
            };
            if va > 0.0 && (vb / va - 1.0).abs() < 0.1 {
                s.push_str(&format!(
                    " QEMU's part, up to the guest's first instruction, is about the same with \
                     both ({} and {} ms): at these sizes {files} costs QEMU little next to \
                     its own start.",
                    fmt_value(va),
                    fmt_value(vb)
                ));
            } else {
                s.push_str(&format!(
                    " QEMU's part, up to the guest's first instruction, goes from {} to {} ms \
                     with {files}.",
                    fmt_value(va),
                    fmt_value(vb)
                ));
            }
        }
        if let (Some(ka), Some(kb)) = (med(vm, "boot_kernel_ms"), med(min, "boot_kernel_ms")) {
            s.push_str(&format!(
                " The kernel's boot, by the virtual CPU's clock, goes from {} to {} ms: the \
                 minimal kernel has only the drivers and subsystems the guest uses built in, so \
                 it runs far fewer initcalls, and the agent loads no modules.",
                fmt_value(ka),
                fmt_value(kb)
            ));
            if let (Some(ua), Some(ub)) = (med(vm, "boot_uptime_ms"), med(min, "boot_uptime_ms")) {
                s.push_str(&format!(
                    " The guests' own clocks saw only {} and {} ms of it: the rest is the early \
                     boot, before the kernel's timer runs, when its clocks stand still.",
                    fmt_value(ua),
                    fmt_value(ub)
                ));
            }
        }
        let args = boot_args(data, min);
        if !args.is_empty() {
            let why: Vec<&str> = args
                .iter()
                .filter_map(|a| match a.split('=').next().unwrap_or("") {
                    "noreplace-smp" => Some(
                        "`noreplace-smp` keeps the SMP kernel's lock prefixes on one vCPU \
                         instead of rewriting thousands of them",
                    ),
                    "dhash_entries" => Some(
                        "the `*hash_entries` size the kernel's hash tables for one workload \
                         rather than for the guest's RAM",
                    ),
                    "clearcpuid" => Some(
                        "`clearcpuid=erms,rep_good` has the kernel copy and clear memory with \
                         plain moves, which emulation runs faster than string instructions",
                    ),
                    "noapictimer" => Some(
                        "`noapictimer no_timer_check` make the PIT the kernel's timer, so it \
                         skips calibrating the local APIC's timer, 100 ms under emulation, \
                         whose APIC has no TSC-deadline mode",
                    ),
                    _ => None,
                })
                .collect();
            s.push_str(&format!(
                " The minimal kernel also boots with `{}`{}.",
                args.join(" "),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join("; "))
                }
            ));
        }
        sentences.push(s);
    }
    if acpi_differs {
        sentences.push(
            "The minimal kernel's microvm has no ACPI tables, as Firecracker's machine has \
             none: the kernel needs them for nothing (the firmware's MP table names its CPUs \
             and interrupt controller, the kernel command line its virtio devices), it skips \
             ACPI's start, and only without them does it set up the PIT, which its \
             `noapictimer` needs (a kernel on microvm's \"hardware-reduced\" ACPI never does). The distribution's kernel finds microvm's virtio devices \
             only through ACPI, so its microvm keeps them; QEMU's part above includes the \
             firmware, which differs with them (qboot without, SeaBIOS with)."
                .to_string(),
        );
    }
    if let (Some(pa), Some(pb)) = (med(vm, "guest_ram_pss_mib"), med(min, "guest_ram_pss_mib")) {
        sentences.push(format!(
            "The guest's RAM actually touched (PSS) is {} MiB with the distribution's kernel and \
             {} MiB with the minimal one: a smaller kernel image and fewer boot-time \
             allocations.",
            fmt_value(pa),
            fmt_value(pb)
        ));
    }
    if let Some((sw, a, b)) = &score_pair {
        // Whether the two 95% intervals (or ranges, below 6 repetitions)
        // overlap: if they do, this run shows no difference.
        let (sa, sb) = (a.stats.spread(), b.stats.spread());
        let what = if sa.is_ci && sb.is_ci {
            "95% intervals"
        } else {
            "ranges"
        };
        let verdict = if sa.lo <= sb.hi && sb.lo <= sa.hi {
            format!(
                "their {what} overlap, so this run shows no difference beyond the noise, as \
                 expected: the work runs in user space, where the kernel's configuration \
                 does not reach"
            )
        } else {
            format!(
                "their {what} do not overlap: in this run the kernels differ beyond the noise, \
                 which user-space work should not show; look for host load that fell on one \
                 side (the instances took turns, which makes that unlikely but not impossible) \
                 or a CPU feature one kernel enables and the other does not"
            )
        };
        sentences.push(format!(
            "The {sw} workload's score is {} {} on the distribution's kernel and {} {} on the \
             minimal one ({:.2}×); {verdict}.",
            fmt_value(a.stats.median),
            a.unit,
            fmt_value(b.stats.median),
            b.unit,
            b.stats.median / a.stats.median
        ));
    }
    Some(Section {
        startup_workload,
        rows,
        sentences,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{meta, push};
    use super::*;

    fn data(minimal_args: serde_json::Value) -> ReportData {
        let mut m = meta(true);
        m.environments.insert(
            "vm".into(),
            serde_json::json!({"kernel": {"version": "6.1.0-cloud", "image_bytes": 52428800, "boot_args": []}}),
        );
        m.environments.insert(
            "vm-minimal".into(),
            serde_json::json!({"config": {"acpi": false}, "kernel": {"version": "6.1.192", "image_bytes": 20971520, "boot_args": minimal_args}}),
        );
        let mut r = Vec::new();
        for (e, f) in [("vm", 1.0), ("vm-minimal", 0.3)] {
            for (metric, v) in [
                ("startup_ms", 1500.0),
                ("boot_vmm_ms", 100.0),
                ("boot_kernel_ms", 1350.0),
                ("boot_uptime_ms", 900.0),
            ] {
                let v = v * f;
                push(&mut r, "noop", e, metric, "ms", &[v, v, v, v]);
            }
            push(
                &mut r,
                "cpu",
                e,
                "score",
                "rounds/s",
                &[400.0, 410.0, 390.0, 405.0],
            );
        }
        ReportData::new(m, &r, Vec::new())
    }

    #[test]
    fn the_section_sets_the_kernels_side_by_side_with_this_runs_figures() {
        let k = section(&data(serde_json::json!([
            "noreplace-smp",
            "dhash_entries=4096",
            "clearcpuid=erms,rep_good",
            "noapictimer",
            "no_timer_check"
        ])))
        .unwrap();
        assert_eq!(k.startup_workload, "noop");
        let row = |what: &str| {
            k.rows
                .iter()
                .find(|r| r[0].starts_with(what))
                .unwrap()
                .clone()
        };
        assert_eq!(row("start-up")[3], "0.30×");
        assert_eq!(row("the same, by the guest's own clock")[1], "900");
        assert_eq!(row("kernel image")[3], "0.40×");
        let text = k.sentences.join(" ");
        assert!(
            text.contains("1500 ms with the distribution's kernel and 450 ms"),
            "{text}"
        );
        assert!(
            text.contains("own clocks saw only 900 and 270 ms"),
            "{text}"
        );
        assert!(
            text.contains(
                "`noreplace-smp dhash_entries=4096 clearcpuid=erms,rep_good noapictimer no_timer_check`: `noreplace-smp` keeps"
            ),
            "{text}"
        );
        assert!(text.contains("the `*hash_entries` size"), "{text}");
        assert!(
            text.contains("The minimal kernel's microvm has no ACPI tables"),
            "{text}"
        );
        assert!(
            text.contains("differ in their guest kernel and in what goes with it"),
            "{text}"
        );
        assert!(
            text.contains("`noapictimer no_timer_check` make the PIT the kernel's timer"),
            "{text}"
        );
        assert!(
            text.contains("intervals overlap") || text.contains("ranges overlap"),
            "{text}"
        );
    }

    #[test]
    fn a_kernel_booted_without_arguments_of_its_own_gets_no_sentence_on_them() {
        let k = section(&data(serde_json::json!([]))).unwrap();
        assert!(!k.sentences.join(" ").contains("also boots with"));
        // Both machines with ACPI (a run from before, or the PCs): no word of it.
        let mut d = data(serde_json::json!([]));
        d.meta.environments.get_mut("vm-minimal").unwrap()["config"]["acpi"] = true.into();
        let text = section(&d).unwrap().sentences.join(" ");
        assert!(text.contains("differ only in their guest kernel"), "{text}");
        assert!(!text.contains("ACPI"), "{text}");
    }
}
