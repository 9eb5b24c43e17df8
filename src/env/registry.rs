//! The environments isobench knows, in one table: for each, its name, how
//! reports label it, what it needs (checked before anything starts), how a
//! run builds it, and what `isobench doctor` checks for it. The harness
//! knows environments only through this table and the [`Environment`]
//! trait; adding one is a module and a row here.
//!
//! [`Environment`]: super::Environment

use super::{Bed, BedSpec, Built, EnvError, EnvKind};
use crate::doctor::Check;

/// One environment.
pub struct Entry {
    /// Its name in scenarios, records and reports.
    pub kind: EnvKind,
    /// What reports call it, in a few words.
    pub label: &'static str,
    /// What it needs from the host, checked before anything starts; no
    /// side effects. The error names what is missing and the fix.
    pub check: fn(&BedSpec<'_>) -> Result<(), EnvError>,
    /// Builds it for a run.
    pub build: fn(&Bed<'_>) -> Result<Built, EnvError>,
    /// What `isobench doctor` checks for it.
    pub doctor: fn() -> Vec<Check>,
}

/// Every environment, in report order.
pub const ENTRIES: &[Entry] = &[
    Entry {
        kind: EnvKind::Native,
        label: "native process",
        check: super::native::check_host,
        build: super::native::build,
        doctor: crate::doctor::native_checks,
    },
    Entry {
        kind: EnvKind::Container,
        label: "isobench's container",
        check: super::container::check_host,
        build: super::container::build,
        doctor: crate::doctor::container_checks,
    },
    Entry {
        kind: EnvKind::Runc,
        label: "runc",
        check: |_| super::oci::direct::check_host(EnvKind::Runc),
        build: |bed| super::oci::direct::build(EnvKind::Runc, bed),
        doctor: || crate::doctor::runtime_checks(EnvKind::Runc),
    },
    Entry {
        kind: EnvKind::Crun,
        label: "crun",
        check: |_| super::oci::direct::check_host(EnvKind::Crun),
        build: |bed| super::oci::direct::build(EnvKind::Crun, bed),
        doctor: || crate::doctor::runtime_checks(EnvKind::Crun),
    },
    Entry {
        kind: EnvKind::Gvisor,
        label: "gVisor (runsc)",
        check: |_| super::oci::direct::check_host(EnvKind::Gvisor),
        build: |bed| super::oci::direct::build(EnvKind::Gvisor, bed),
        doctor: || crate::doctor::runtime_checks(EnvKind::Gvisor),
    },
    Entry {
        kind: EnvKind::Docker,
        label: "Docker",
        check: |_| super::oci::daemon::check_host(EnvKind::Docker),
        build: |bed| super::oci::daemon::build(EnvKind::Docker, bed),
        doctor: || crate::doctor::runtime_checks(EnvKind::Docker),
    },
    Entry {
        kind: EnvKind::Podman,
        label: "Podman",
        check: |_| super::oci::daemon::check_host(EnvKind::Podman),
        build: |bed| super::oci::daemon::build(EnvKind::Podman, bed),
        doctor: || crate::doctor::runtime_checks(EnvKind::Podman),
    },
    Entry {
        kind: EnvKind::Vm,
        label: "QEMU guest",
        check: super::vm::bed::check_host,
        build: super::vm::bed::build,
        doctor: crate::doctor::vm_checks,
    },
    Entry {
        kind: EnvKind::VmMinimal,
        label: "QEMU guest, minimal kernel",
        check: super::vm::bed::check_host_minimal,
        build: super::vm::bed::build_minimal,
        doctor: crate::doctor::vm_minimal_checks,
    },
];

/// The entry of an environment.
pub fn entry(kind: EnvKind) -> &'static Entry {
    ENTRIES
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or(&ENTRIES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_has_one_entry_in_report_order() {
        let kinds: Vec<EnvKind> = ENTRIES.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, EnvKind::ALL);
        for k in EnvKind::ALL {
            assert_eq!(entry(k).kind, k);
            assert!(!entry(k).label.is_empty());
        }
    }
}
