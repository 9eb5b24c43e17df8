//! The accelerator: KVM only where it really works, TCG otherwise.
//!
//! `--accel auto` rules KVM out without booting anything when the host says
//! enough: `/dev/kvm` missing or not openable, or the PVM nested hypervisor
//! (`/sys/module/kvm_pvm`), under which stock guest kernels hang early in
//! their boot. Otherwise one probe guest boots under KVM with a short
//! timeout; its verdict is cached per host boot, QEMU and guest kernel (see
//! [`ProbeCache`]), so later runs do not pay for it again. The choice and
//! its reason go to `meta.json`, `doctor` and the report.

use crate::env::EnvError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's Tiny Code Generator: the guest CPU is emulated in software.
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the user asked for with `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AccelRequest {
    /// KVM where it really works, TCG otherwise.
    #[default]
    Auto,
    /// KVM, or fail with the reason it cannot work.
    Kvm,
    /// TCG always.
    Tcg,
}

/// The accelerator a run uses, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why it was chosen, in words, for `meta.json`, `doctor` and the report.
    pub reason: String,
}

/// How long the KVM probe guest may take to say `ready`: a KVM boot takes
/// well under a second; a guest that hangs under a broken KVM never does.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why KVM cannot be used on this host, if something already says so
/// without booting: a PVM nested hypervisor, or no usable /dev/kvm.
/// `sys_module` and `dev_kvm` are parameters so tests can use fixtures.
pub fn kvm_unusable(sys_module: &Path, dev_kvm: &Path) -> Option<String> {
    if sys_module.join("kvm_pvm").exists() {
        return Some(format!(
            "{} is the PVM nested hypervisor ({}): stock guest kernels hang early in their boot under it (bzImage and PVH entry alike)",
            dev_kvm.display(),
            sys_module.join("kvm_pvm").display()
        ));
    }
    if !dev_kvm.exists() {
        return Some(format!(
            "{} does not exist: no hardware virtualization here, or the kvm module is not loaded (modprobe kvm_intel or kvm_amd)",
            dev_kvm.display()
        ));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_kvm)
    {
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot open {} for reading and writing: {e} (run as root or join the `kvm` group)",
            dev_kvm.display()
        )),
    }
}

/// A probe's verdict as stored in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeVerdict {
    /// Whether the probe guest reached its agent under KVM.
    pub kvm_works: bool,
    /// What happened: the boot time, or why it failed.
    pub detail: String,
    /// When the probe ran (UTC, RFC 3339).
    pub probed_at: String,
    /// What the verdict holds for (see [`ProbeCache::key`]).
    pub key: String,
}

/// The cached verdict of the KVM probe boot, one file per host boot, QEMU
/// version and guest kernel: a new boot of the host (other modules, other
/// hypervisor), another QEMU or another kernel probes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCache {
    /// The cache file.
    pub path: PathBuf,
    /// What the verdict depends on, in words.
    pub key: String,
}

impl ProbeCache {
    /// The cache entry for these facts, in `<cache>/accel/`.
    /// `boot_id` is `/proc/sys/kernel/random/boot_id`; `kernel` is the guest
    /// kernel image (its size and modification time are part of the key).
    pub fn new(cache: &Path, boot_id: &str, qemu_version: &str, kernel: &Path) -> ProbeCache {
        let (size, mtime) = std::fs::metadata(kernel)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.size(), m.mtime())
            })
            .unwrap_or((0, 0));
        let key = format!(
            "host boot {}; {}; guest kernel {} ({size} bytes, mtime {mtime})",
            boot_id.trim(),
            qemu_version.trim(),
            kernel.display()
        );
        let digest = crate::util::hex(&Sha256::digest(key.as_bytes()));
        ProbeCache {
            path: cache
                .join("accel")
                .join(format!("kvm-probe-{}.json", &digest[..16])),
            key,
        }
    }

    /// The stored verdict, if there is one for exactly this key.
    pub fn load(&self) -> Option<ProbeVerdict> {
        let bytes = std::fs::read(&self.path).ok()?;
        let verdict: ProbeVerdict = serde_json::from_slice(&bytes).ok()?;
        (verdict.key == self.key).then_some(verdict)
    }

    /// Stores a verdict. A cache that cannot be written only costs a probe
    /// next time, so the error is returned for a warning, not a failure.
    pub fn store(&self, verdict: &ProbeVerdict) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(verdict)?)?;
        std::fs::rename(tmp, &self.path)
    }
}

/// How a KVM probe boot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The probe guest's agent said `ready` after this long.
    Booted(Duration),
    /// It did not, for this reason.
    Failed(String),
    /// SIGINT or SIGTERM stopped it: no verdict, nothing cached.
    Interrupted,
}

/// Picks the accelerator. `probe` boots a guest under KVM with a short
/// timeout and says whether the agent answered; it is called only when
/// nothing else rules KVM out and `cache` holds no verdict, and its verdict
/// (unless interrupted) is stored in `cache`.
pub fn choose_accel(
    request: AccelRequest,
    sys_module: &Path,
    dev_kvm: &Path,
    cache: Option<&ProbeCache>,
    probe: impl FnOnce() -> Probe,
) -> Result<AccelChoice, EnvError> {
    match request {
        AccelRequest::Tcg => Ok(AccelChoice {
            accel: Accel::Tcg,
            reason: "requested with --accel tcg".into(),
        }),
        AccelRequest::Kvm => match kvm_unusable(sys_module, dev_kvm) {
            Some(why) => Err(EnvError::Unavailable(format!(
                "--accel kvm: KVM is not usable here: {why}; use --accel tcg (or auto)"
            ))),
            None => Ok(AccelChoice {
                accel: Accel::Kvm,
                reason: "requested with --accel kvm".into(),
            }),
        },
        AccelRequest::Auto => {
            if let Some(why) = kvm_unusable(sys_module, dev_kvm) {
                return Ok(AccelChoice {
                    accel: Accel::Tcg,
                    reason: format!("KVM unusable: {why}"),
                });
            }
            let (verdict, cached) = match cache.and_then(ProbeCache::load) {
                Some(v) => (v, true),
                None => {
                    let (kvm_works, detail) = match probe() {
                        Probe::Booted(took) => (
                            true,
                            format!(
                                "a probe guest reached its agent under KVM in {} ms",
                                took.as_millis()
                            ),
                        ),
                        Probe::Failed(why) => {
                            (false, format!("a probe boot under KVM failed: {why}"))
                        }
                        Probe::Interrupted => {
                            return Ok(AccelChoice {
                                accel: Accel::Tcg,
                                reason: "the KVM probe boot was interrupted".into(),
                            });
                        }
                    };
                    let verdict = ProbeVerdict {
                        kvm_works,
                        detail,
                        probed_at: crate::util::now_utc(),
                        key: cache.map(|c| c.key.clone()).unwrap_or_default(),
                    };
                    if let Some(c) = cache
                        && let Err(e) = c.store(&verdict)
                    {
                        crate::say!(
                            "warning: cannot cache the KVM probe verdict in {}: {e}",
                            c.path.display()
                        );
                    }
                    (verdict, false)
                }
            };
            let source = match (cached, cache) {
                (true, Some(c)) => format!(
                    " (verdict of {} cached in {}; delete it to probe again)",
                    verdict.probed_at,
                    c.path.display()
                ),
                _ => String::new(),
            };
            Ok(if verdict.kvm_works {
                AccelChoice {
                    accel: Accel::Kvm,
                    reason: format!("KVM usable: /dev/kvm opens and {}{source}", verdict.detail),
                }
            } else {
                AccelChoice {
                    accel: Accel::Tcg,
                    reason: format!("KVM unusable: {}{source}", verdict.detail),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> crate::testutil::TempDir {
        let dir = crate::testutil::TempDir::new(&format!("accel-{name}"));
        std::fs::create_dir_all(dir.join("module")).unwrap();
        dir
    }

    #[test]
    fn pvm_rules_out_kvm_without_probing() {
        let dir = temp("pvm");
        std::fs::create_dir_all(dir.join("module/kvm_pvm")).unwrap();
        std::fs::write(dir.join("kvm"), "").unwrap();
        let (m, k) = (dir.join("module"), dir.join("kvm"));
        let choice = choose_accel(AccelRequest::Auto, &m, &k, None, || {
            panic!("must not probe")
        })
        .unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("PVM"), "{}", choice.reason);
        let err = choose_accel(AccelRequest::Kvm, &m, &k, None, || {
            Probe::Booted(Duration::ZERO)
        })
        .unwrap_err();
        assert!(err.to_string().contains("--accel tcg"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn probe_decides_when_kvm_opens() {
        let dir = temp("probe");
        std::fs::write(dir.join("kvm"), "").unwrap();
        let (m, k) = (dir.join("module"), dir.join("kvm"));
        let ok = choose_accel(AccelRequest::Auto, &m, &k, None, || {
            Probe::Booted(Duration::from_millis(180))
        })
        .unwrap();
        assert_eq!(ok.accel, Accel::Kvm);
        assert!(ok.reason.contains("180 ms"));
        let bad = choose_accel(AccelRequest::Auto, &m, &k, None, || {
            Probe::Failed("timed out after 5 s".into())
        })
        .unwrap();
        assert_eq!(bad.accel, Accel::Tcg);
        assert!(bad.reason.contains("timed out"));
        let missing = choose_accel(AccelRequest::Auto, &m, &dir.join("nope"), None, || {
            panic!("no probe")
        })
        .unwrap();
        assert!(missing.reason.contains("does not exist"));
        let tcg = choose_accel(AccelRequest::Tcg, &m, &k, None, || panic!("no probe")).unwrap();
        assert_eq!(tcg.accel, Accel::Tcg);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn probe_verdict_is_cached_per_boot_qemu_and_kernel() {
        let dir = temp("cache");
        std::fs::write(dir.join("kvm"), "").unwrap();
        std::fs::write(dir.join("vmlinuz"), "kernel").unwrap();
        let (m, k) = (dir.join("module"), dir.join("kvm"));
        let cache = ProbeCache::new(&dir, "boot-1\n", "QEMU 7.2", &dir.join("vmlinuz"));
        assert!(cache.path.starts_with(dir.join("accel")));
        // An interrupted probe decides nothing and leaves no verdict.
        let stopped = choose_accel(AccelRequest::Auto, &m, &k, Some(&cache), || {
            Probe::Interrupted
        })
        .unwrap();
        assert_eq!(stopped.accel, Accel::Tcg);
        assert_eq!(cache.load(), None);
        let mut probes = 0;
        let first = choose_accel(AccelRequest::Auto, &m, &k, Some(&cache), || {
            probes += 1;
            Probe::Failed("no `ready` frame within 5 s".into())
        })
        .unwrap();
        assert_eq!((first.accel, probes), (Accel::Tcg, 1));
        // The same facts: the verdict comes from the cache, no probe.
        let again = choose_accel(AccelRequest::Auto, &m, &k, Some(&cache), || {
            panic!("cached: must not probe")
        })
        .unwrap();
        assert_eq!(again.accel, Accel::Tcg);
        assert!(
            again.reason.contains("no `ready` frame"),
            "{}",
            again.reason
        );
        assert!(
            again.reason.contains(&cache.path.display().to_string()),
            "{}",
            again.reason
        );
        // Another host boot or another kernel probes again.
        let rebooted = ProbeCache::new(&dir, "boot-2", "QEMU 7.2", &dir.join("vmlinuz"));
        assert_ne!(rebooted.path, cache.path);
        assert_eq!(rebooted.load(), None);
        std::fs::write(dir.join("vmlinuz"), "another kernel").unwrap();
        let new_kernel = ProbeCache::new(&dir, "boot-1", "QEMU 7.2", &dir.join("vmlinuz"));
        assert_eq!(new_kernel.load(), None);
        // A file whose key does not match (a hash collision, an edit) is ignored.
        std::fs::write(
            &rebooted.path,
            serde_json::to_vec(&cache.load().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(rebooted.load(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
