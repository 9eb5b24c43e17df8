//! The VM environment of a run: what it needs (checked before anything
//! starts), and how it is built — the guest kernel and its modules, the
//! accelerator (KVM only where a probe guest really boots, TCG otherwise),
//! the timer settings TCG needs, and the initramfs written before any boot.

use super::{
    Accel, AccelChoice, Devices, KernelFiles, Machine, PROBE_TIMEOUT, Probe, ProbeCache, QEMU, Vm,
    VmConfig,
};
use crate::env::{Bed, BedSpec, Built, EnvError, EnvFacts, EnvKind};
use crate::kernel::{self, GuestKernel, KernelChoice};
use crate::workload::WorkloadSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The guest kernel, its modules and QEMU's version, found as a run asks.
struct Found {
    choice: KernelChoice,
    kernel: GuestKernel,
    files: KernelFiles,
    qemu: String,
}

/// The kernel an environment boots: `vm-minimal` always the minimal one;
/// `vm` the one `--kernel` names, else the scenario's `[vm] kernel`.
fn choice_for(kind: EnvKind, spec: &BedSpec<'_>) -> KernelChoice {
    match kind {
        EnvKind::VmMinimal => KernelChoice::Minimal,
        _ => spec
            .boot
            .kernel
            .clone()
            .unwrap_or_else(|| spec.vm.kernel.clone()),
    }
}

/// The guest kernel as meta.json records it.
fn kernel_meta(found: &Found) -> serde_json::Value {
    let image = found.kernel.boot_image();
    let mut meta = serde_json::json!({
        "choice": found.choice.label(),
        "version": found.kernel.version,
        "image": image,
        "image_bytes": std::fs::metadata(image).map_or(0, |m| m.len()),
    });
    if found.choice == KernelChoice::Minimal
        && let Some(dir) = image.parent()
        && let Some(built) = kernel::minimal::open(dir)
    {
        meta["release"] = built.info.release.clone().into();
        meta["config_hash"] = built.info.config_hash.clone().into();
        meta["source_version"] = built.info.source_version.clone().into();
        meta["build"] = serde_json::to_value(&built.info).unwrap_or_default();
    }
    meta
}

fn unavailable(e: impl ToString) -> EnvError {
    EnvError::Unavailable(e.to_string())
}

fn find(kind: EnvKind, spec: &BedSpec<'_>) -> Result<Found, EnvError> {
    let qemu = super::qemu_version(Path::new(QEMU)).map_err(EnvError::Unavailable)?;
    let choice = choice_for(kind, spec);
    let mut kernel = kernel::resolve_choice(&choice, &kernel::cache_dir()).map_err(unavailable)?;
    // `--modules` goes with a kernel from the command line or the fetched
    // one; the minimal kernel has everything built in.
    if let Some(dir) = &spec.boot.modules
        && choice != KernelChoice::Minimal
    {
        kernel.modules = Some(dir.clone());
    }
    let files =
        KernelFiles::open(&kernel.vmlinuz, kernel.modules.as_deref()).map_err(unavailable)?;
    Ok(Found {
        choice,
        kernel,
        files,
        qemu,
    })
}

/// What a run's VMs need: QEMU, a guest kernel with the modules its
/// devices need, and `mkfs.ext4` for I/O workloads' scratch disks.
pub fn check_host(spec: &BedSpec<'_>) -> Result<(), EnvError> {
    check_kind(EnvKind::Vm, spec)
}

/// What `vm-minimal` needs: as `vm`, with the minimal kernel built.
pub fn check_host_minimal(spec: &BedSpec<'_>) -> Result<(), EnvError> {
    check_kind(EnvKind::VmMinimal, spec)
}

fn check_kind(kind: EnvKind, spec: &BedSpec<'_>) -> Result<(), EnvError> {
    let found = find(kind, spec)?;
    let base = Devices {
        disk_mib: spec.vm.disk_mib,
        scratch_mib: None,
        nic: false,
    };
    for w in spec.workloads {
        let devices = base.for_workload(&w.spec);
        if devices.scratch_mib.is_some() {
            let context = |e: String| unavailable(format!("workload `{}` in a VM: {e}", w.name));
            found
                .files
                .modules_for(spec.vm.machine, &devices)
                .map_err(|e| context(e.to_string()))?;
            super::mkfs_ext4().map_err(context)?;
        }
    }
    Ok(())
}

/// Builds the VM environment of a run: picks the accelerator (probing KVM
/// with a noop guest when nothing rules it out), and writes the initramfs.
pub fn build(bed: &Bed<'_>) -> Result<Built, EnvError> {
    build_kind(EnvKind::Vm, bed)
}

/// Builds `vm-minimal`: `vm` booting the minimal kernel.
pub fn build_minimal(bed: &Bed<'_>) -> Result<Built, EnvError> {
    build_kind(EnvKind::VmMinimal, bed)
}

fn build_kind(kind: EnvKind, bed: &Bed<'_>) -> Result<Built, EnvError> {
    let found = find(kind, &bed.spec)?;
    let settings = bed.spec.vm;
    let mut config = VmConfig {
        qemu: PathBuf::from(QEMU),
        kernel: found.kernel.boot_image().to_path_buf(),
        machine: settings.machine,
        memory_mib: settings.memory_mib,
        cpus: settings.cpus,
        accel: Accel::Tcg,
        // Only microvm can go without ACPI; the PCs' PIT works with it.
        acpi: !(found.choice == KernelChoice::Minimal && settings.machine == Machine::Microvm),
        tsc_khz: None,
        boot_args: Vec::new(),
        kernel_args: settings.kernel_args.clone(),
        boot_timeout: Duration::ZERO,
    };
    let choice = choose_accel(bed, &config, &found)?;
    if !bed.spec.quiet {
        crate::say!("accelerator: {} — {}", choice.accel.as_str(), choice.reason);
    }
    config.accel = choice.accel;
    if choice.accel == Accel::Tcg {
        config.tsc_khz = super::measured_tsc_khz();
    }
    if found.choice == KernelChoice::Minimal {
        config.boot_args = kernel::minimal::boot_args(choice.accel)
            .iter()
            .map(|a| a.to_string())
            .collect();
    }
    config.boot_timeout = settings
        .boot_timeout
        .unwrap_or_else(|| super::default_boot_timeout(choice.accel));
    let devices = Devices {
        disk_mib: settings.disk_mib,
        scratch_mib: None,
        nic: false,
    };
    let mut meta = kernel_meta(&found);
    meta["boot_args"] = config.boot_args.clone().into();
    let mut env = Vm::new(
        config,
        devices,
        bed.image_dir.to_path_buf(),
        found.files,
        Arc::clone(bed.run_dir),
    );
    env.net = Some(Arc::clone(bed.net));
    env.kind = kind;
    env.kernel_meta = meta;
    env.facts = EnvFacts {
        qemu: Some(found.qemu),
        accelerator: Some(choice),
        guest_kernel: Some(format!(
            "{} ({})",
            found.kernel.version,
            found.kernel.boot_image().display()
        )),
        runtime: None,
    };
    // Modules found and matching, initramfs written: before any boot.
    env.prepare()?;
    Ok(Built {
        env: Box::new(env),
        notes: Vec::new(),
    })
}

/// Picks the accelerator, probing KVM with a noop guest when nothing rules
/// it out and no earlier probe's verdict is cached.
fn choose_accel(bed: &Bed<'_>, base: &VmConfig, found: &Found) -> Result<AccelChoice, EnvError> {
    let probe = || {
        let mut config = base.clone();
        config.accel = Accel::Kvm;
        config.tsc_khz = None;
        config.boot_timeout = PROBE_TIMEOUT;
        let env = Vm::new(
            config,
            Devices::default(),
            bed.image_dir.to_path_buf(),
            found.files.clone(),
            Arc::clone(bed.run_dir),
        );
        let r = crate::run::run_instance(
            &env,
            &WorkloadSpec::Noop,
            "kvm-probe",
            Some(&bed.logs.join("kvm-probe.log")),
            PROBE_TIMEOUT,
            bed.stop,
        );
        match (r.error, r.startup) {
            _ if r.interrupted => Probe::Interrupted,
            (None, Some(s)) => Probe::Booted(s),
            (Some(e), _) => Probe::Failed(format!("{e} (see logs/kvm-probe.log)")),
            (None, None) => Probe::Failed("no `ready` frame".into()),
        }
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = ProbeCache::new(&kernel::cache_dir(), &boot_id, &found.qemu, &base.kernel);
    super::choose_accel(
        bed.spec.boot.accel,
        Path::new("/sys/module"),
        Path::new("/dev/kvm"),
        Some(&cache),
        probe,
    )
}
