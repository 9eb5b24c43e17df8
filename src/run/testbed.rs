//! The test bed of a run: its prerequisites, checked before anything
//! starts, and the environments, built through the registry on one image
//! in one runtime directory. Used by `run` and `exec`, and by benchmarks
//! that time single instances.

use super::RunError;
use crate::env::registry::{self, ENTRIES};
use crate::env::{Bed, BedSpec, EnvKind, Environment};
use crate::image::oci::ImageLayers;
use crate::image::rootfs::{self, Rootfs};
use crate::image::{self, Image};
use crate::rundir::{self, RunDir};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Finds the static agent and checks what every environment needs; the
/// error names what is missing and how to get it. Nothing is started.
pub fn preflight(environments: &[EnvKind], spec: &BedSpec<'_>) -> Result<PathBuf, RunError> {
    for kind in environments {
        (registry::entry(*kind).check)(spec)?;
    }
    find_agent()
}

/// The static agent binary, or why it cannot be used.
pub fn find_agent() -> Result<PathBuf, RunError> {
    let agent = image::find_agent()?;
    image::check_static(&agent)?;
    Ok(agent)
}

/// The environments of a run, built on one image in one runtime directory.
pub struct Testbed {
    /// With `--image`: the real image's layers under the run's own layer,
    /// and their merged tree (unmounted first when the testbed goes).
    pub rootfs: Option<Rootfs>,
    /// The run's runtime directory (removed when the testbed is dropped).
    pub run_dir: Arc<RunDir>,
    /// The image every environment runs.
    pub image: Image,
    /// The environments, in the order asked for.
    pub envs: Vec<Box<dyn Environment>>,
    /// What could not be set up as asked, in words (rootless limits, ...).
    pub notes: Vec<String>,
    /// The run's network: its bridge, removed when the last holder drops it.
    pub net: Arc<crate::net::Fabric>,
}

/// What goes into a test bed's image besides the agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contents<'a> {
    /// Programs packed with their library closures (`command` workloads),
    /// as absolute host paths.
    pub programs: &'a [PathBuf],
    /// Extra host files and directories copied into the image.
    pub files: &'a [PathBuf],
    /// A real image (`--image`) the run's own layer goes on top of.
    pub image: Option<&'a ImageLayers>,
}

impl Testbed {
    /// Cleans the leftovers of dead runs, makes the run's runtime
    /// directory, builds the image and every environment. `logs` receives
    /// the log of a set-up instance (a KVM probe).
    pub fn build(
        agent: &Path,
        run_id: &str,
        environments: &[EnvKind],
        spec: BedSpec<'_>,
        contents: Contents<'_>,
        logs: &Path,
        stop: &AtomicBool,
    ) -> Result<Testbed, RunError> {
        let base = rundir::base_dir().map_err(|e| RunError::Prerequisite(e.to_string()))?;
        match rundir::clean(&base, Path::new("/proc"), Path::new("/sys/fs/cgroup")) {
            Ok(report) if !spec.quiet => {
                for d in &report.removed {
                    crate::say!("removed leftovers of an earlier run: {}", d.display());
                }
            }
            Ok(_) => {}
            Err(e) => crate::say!("warning: cleaning {} failed: {e}", base.display()),
        }
        let run_dir = Arc::new(
            RunDir::create(&base, run_id).map_err(|source| RunError::Io {
                what: format!("creating {}", base.join(run_id).display()),
                source,
            })?,
        );
        let mut image = image::build_with(
            agent,
            &run_dir.path().join("image"),
            &run_dir.path().join("initramfs.cpio"),
            contents.programs,
            contents.files,
        )?;
        let rootfs = match contents.image {
            Some(oci) => {
                image.oci = Some(oci.facts.clone());
                Some(rootfs::assemble(
                    oci,
                    &image.dir,
                    &run_dir.path().join("rootfs"),
                )?)
            }
            None => None,
        };
        let own = [image.dir.clone()];
        let (layers, tree) = match &rootfs {
            Some(r) => (&r.lowers[..], r.merged.as_path()),
            None => (&own[..], image.dir.as_path()),
        };
        let net = Arc::new(crate::net::Fabric::new(run_id));
        // The bridge is the run's, not an instance's: made before any
        // instance's clock starts, so no instance's start-up and
        // `net_setup_ms` include it; a run that cannot make it stops here.
        // Without root (or with no bridged workload) nothing is made: the
        // instances that ask for `bridge` say why they cannot have it.
        let bridged = spec.workloads.iter().any(|w| {
            environments
                .iter()
                .any(|e| w.network.of(*e) == crate::net::Mode::Bridge)
        });
        if bridged && nix::unistd::geteuid().is_root() {
            net.prepare()
                .map_err(|e| RunError::Prerequisite(format!("the run's network bridge: {e}")))?;
        }
        let bed = Bed {
            spec,
            agent,
            image_dir: tree,
            layers,
            run_dir: &run_dir,
            logs,
            stop,
            net: &net,
        };
        let mut envs = Vec::new();
        let mut notes = Vec::new();
        // In the order asked for (the registry's is only the report's).
        for kind in environments {
            let entry = ENTRIES.iter().find(|e| e.kind == *kind);
            let Some(entry) = entry else { continue };
            let built = (entry.build)(&bed)?;
            envs.push(built.env);
            notes.extend(built.notes);
        }
        Ok(Testbed {
            rootfs,
            run_dir,
            image,
            envs,
            notes,
            net,
        })
    }

    /// The environment of this kind, if the testbed has it.
    pub fn env(&self, kind: EnvKind) -> Option<&dyn Environment> {
        self.envs
            .iter()
            .find(|e| e.kind() == kind)
            .map(|e| e.as_ref())
    }
}
