//! Kernel modules for the guest: found by name, checked against the
//! kernel's version, ordered so that dependencies load first.
//!
//! Distribution kernels build the virtio drivers as modules. isobench ships
//! the few a guest needs in its initramfs (`/.isobench-modules/<name>.ko`) and
//! the agent loads them with `finit_module` before it says `ready`. What a
//! module depends on and which kernel it was built for are read from its
//! own `.modinfo` section, so no `modules.dep` (which `depmod` writes at
//! install time) is needed, and any directory of `.ko` files works:
//! the one `isobench kernel fetch` keeps, or `--modules DIR` (for example
//! `/lib/modules/$(uname -r)` for a host kernel).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module problem; every message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The guest needs modules but none were given.
    #[error(
        "the guest needs the kernel modules {needed} but no module directory is known for {kernel}; pass --modules DIR (the kernel's own modules), or use the kernel `isobench kernel fetch` provides"
    )]
    NoDirectory {
        /// The modules needed.
        needed: String,
        /// The kernel.
        kernel: String,
    },
    /// A module is neither in the directory nor built into the kernel.
    #[error(
        "kernel module `{name}` is not in {dir} (nor listed in its modules.builtin); run `isobench kernel fetch` again to keep the modules isobench needs, or pass --modules DIR holding {name}.ko"
    )]
    NotFound {
        /// The module.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// The module is compressed; the host cannot read its dependencies.
    #[error(
        "{path} is compressed; isobench needs plain .ko files: decompress the directory (for example `find DIR -name '*.ko.*' -exec unxz {{}} +` or `zstd -d`) and pass it with --modules"
    )]
    Compressed {
        /// The file.
        path: PathBuf,
    },
    /// The module was built for another kernel.
    #[error(
        "{path} was built for kernel {module_version}, but the guest kernel is {kernel_version}; pass --modules with the modules of that very kernel"
    )]
    VersionMismatch {
        /// The module file.
        path: PathBuf,
        /// The release its vermagic names.
        module_version: String,
        /// The guest kernel's release.
        kernel_version: String,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One module file, ready to be shipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    /// Its name (`virtio_blk`).
    pub name: String,
    /// The `.ko` file on the host.
    pub path: PathBuf,
    /// The modules it needs loaded first.
    pub depends: Vec<String>,
}

/// Module names use `_` where file names sometimes use `-`.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `key=value` pairs of a module's `.modinfo` section.
pub fn modinfo(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, ModuleError> {
    let unreadable = |reason: String| ModuleError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let elf = goblin::elf::Elf::parse(bytes)
        .map_err(|e| unreadable(format!("not an ELF module: {e}")))?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or_else(|| unreadable("no .modinfo section: not a kernel module".into()))?;
    let start = section.sh_offset as usize;
    let data = bytes
        .get(start..start + section.sh_size as usize)
        .ok_or_else(|| unreadable(".modinfo lies outside the file".into()))?;
    Ok(data
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The kernel release a bzImage names in its boot header (the first word
/// of its version string), or `None` when the file is no bzImage.
pub fn bzimage_release(bytes: &[u8]) -> Option<String> {
    // The setup header: magic "HdrS" at 0x202; at 0x20E a pointer to the
    // version string, minus 0x200 (Documentation/arch/x86/boot.rst).
    if bytes.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*bytes.get(0x20E)?, *bytes.get(0x20F)?]) as usize;
    let text = bytes.get(0x200 + ptr..)?;
    let end = text.iter().position(|b| *b == 0)?;
    let version = std::str::from_utf8(&text[..end]).ok()?;
    version.split_whitespace().next().map(String::from)
}

/// The kernel release named in a kernel image: from a bzImage's boot
/// header, or else from the `Linux version ...` banner an uncompressed
/// (ELF) kernel carries.
pub fn kernel_release(bytes: &[u8]) -> Option<String> {
    if let Some(release) = bzimage_release(bytes) {
        return Some(release);
    }
    let banner = b"Linux version ";
    let at = bytes.windows(banner.len()).position(|w| w == banner)? + banner.len();
    let rest = &bytes[at..bytes.len().min(at + 128)];
    let end = rest.iter().position(|b| *b == b' ' || *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok().map(String::from)
}

/// A directory of modules, indexed by name (files are read only when needed).
#[derive(Debug, Clone)]
pub struct ModuleDir {
    root: PathBuf,
    files: BTreeMap<String, PathBuf>,
    compressed: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleDir {
    /// Indexes every `.ko` file under `root`, and `modules.builtin` if present.
    pub fn open(root: &Path) -> Result<ModuleDir, ModuleError> {
        let mut dir = ModuleDir {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            compressed: BTreeMap::new(),
            builtin: BTreeSet::new(),
        };
        let meta = std::fs::metadata(root).map_err(|e| ModuleError::Unreadable {
            path: root.to_path_buf(),
            reason: format!("{e} (--modules wants a directory of .ko files)"),
        })?;
        if !meta.is_dir() {
            return Err(ModuleError::Unreadable {
                path: root.to_path_buf(),
                reason: "not a directory (--modules wants a directory of .ko files)".into(),
            });
        }
        dir.walk(root)?;
        if let Ok(text) = std::fs::read_to_string(root.join("modules.builtin")) {
            dir.builtin = text
                .lines()
                .filter_map(|l| Path::new(l.trim()).file_name())
                .filter_map(|n| n.to_str()?.strip_suffix(".ko").map(normalize))
                .collect();
        }
        Ok(dir)
    }

    fn walk(&mut self, dir: &Path) -> Result<(), ModuleError> {
        let entries = std::fs::read_dir(dir).map_err(|e| ModuleError::Unreadable {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                self.walk(&path)?;
                continue;
            }
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".ko") {
                self.files.entry(normalize(stem)).or_insert(path);
            } else if let Some((stem, _)) = file.split_once(".ko.") {
                self.compressed.entry(normalize(stem)).or_insert(path);
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The modules that must be loaded, dependencies first, for `wanted`;
    /// modules built into the kernel are left out. When `kernel_release` is
    /// known, every module must have been built for it.
    pub fn resolve(
        &self,
        wanted: &[&str],
        kernel_release: Option<&str>,
    ) -> Result<Vec<Module>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            self.visit(&normalize(name), kernel_release, &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        kernel_release: Option<&str>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<Module>,
    ) -> Result<(), ModuleError> {
        if !seen.insert(name.to_string()) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some(path) = self.files.get(name) else {
            return Err(match self.compressed.get(name) {
                Some(path) => ModuleError::Compressed { path: path.clone() },
                None => ModuleError::NotFound {
                    name: name.to_string(),
                    dir: self.root.clone(),
                },
            });
        };
        let bytes = std::fs::read(path).map_err(|e| ModuleError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let info = modinfo(path, &bytes)?;
        if let Some(release) = kernel_release {
            let built_for = info
                .get("vermagic")
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("");
            if built_for != release {
                return Err(ModuleError::VersionMismatch {
                    path: path.clone(),
                    module_version: built_for.to_string(),
                    kernel_version: release.to_string(),
                });
            }
        }
        let depends: Vec<String> = info
            .get("depends")
            .map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(normalize)
                    .collect()
            })
            .unwrap_or_default();
        for dep in &depends {
            self.visit(dep, kernel_release, seen, order)?;
        }
        order.push(Module {
            name: name.to_string(),
            path: path.clone(),
            depends,
        });
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal relocatable ELF64 file with one `.modinfo` section, as a
    /// kernel module is: enough for [`modinfo`].
    pub(crate) fn fake_module(modinfo: &str) -> Vec<u8> {
        let info = modinfo.replace(';', "\0");
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let info_off = 64usize;
        let shstr_off = info_off + info.len();
        let sh_off = (shstr_off + shstrtab.len()).next_multiple_of(8);
        let mut out = vec![0u8; sh_off + 3 * 64];
        // ELF header.
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // 64-bit
        out[5] = 1; // little endian
        out[6] = 1; // version
        out[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[40..48].copy_from_slice(&(sh_off as u64).to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        out[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
        out[60..62].copy_from_slice(&3u16.to_le_bytes()); // shnum
        out[62..64].copy_from_slice(&2u16.to_le_bytes()); // shstrndx
        out[info_off..shstr_off].copy_from_slice(info.as_bytes());
        out[shstr_off..shstr_off + shstrtab.len()].copy_from_slice(shstrtab);
        let section =
            |out: &mut Vec<u8>, i: usize, name: u32, kind: u32, off: usize, size: usize| {
                let at = sh_off + i * 64;
                out[at..at + 4].copy_from_slice(&name.to_le_bytes());
                out[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
                out[at + 24..at + 32].copy_from_slice(&(off as u64).to_le_bytes());
                out[at + 32..at + 40].copy_from_slice(&(size as u64).to_le_bytes());
                out[at + 48..at + 56].copy_from_slice(&1u64.to_le_bytes());
            };
        section(&mut out, 1, 1, 1, info_off, info.len()); // .modinfo, PROGBITS
        section(&mut out, 2, 10, 3, shstr_off, shstrtab.len()); // .shstrtab, STRTAB
        out
    }

    fn temp(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("mod-{name}"))
    }

    fn module(dir: &Path, rel: &str, name: &str, depends: &str, release: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let info = format!(
            "license=GPL;depends={depends};name={name};vermagic={release} SMP preempt mod_unload modversions ;"
        );
        std::fs::write(path, fake_module(&info)).unwrap();
    }

    #[test]
    fn modinfo_is_read_from_the_section() {
        let bytes = fake_module("license=GPL;depends=virtio,virtio_ring;vermagic=6.1.0-56 SMP;");
        let info = modinfo(Path::new("x.ko"), &bytes).unwrap();
        assert_eq!(info["depends"], "virtio,virtio_ring");
        assert_eq!(info["vermagic"], "6.1.0-56 SMP");
        let err = modinfo(Path::new("/bin/x"), b"not elf").unwrap_err();
        assert!(
            err.to_string().starts_with("/bin/x: not an ELF module"),
            "{err}"
        );
    }

    #[test]
    fn dependencies_load_first_and_builtins_are_skipped() {
        let dir = temp("deps");
        let r = "6.1.0-test";
        module(&dir, "kernel/drivers/virtio/virtio.ko", "virtio", "", r);
        module(
            &dir,
            "kernel/drivers/virtio/virtio_ring.ko",
            "virtio_ring",
            "",
            r,
        );
        module(
            &dir,
            "kernel/drivers/virtio/virtio_mmio.ko",
            "virtio_mmio",
            "virtio,virtio_ring",
            r,
        );
        module(
            &dir,
            "kernel/drivers/block/virtio-blk.ko",
            "virtio_blk",
            "virtio,virtio_ring",
            r,
        );
        let mods = ModuleDir::open(&dir).unwrap();
        let order = mods
            .resolve(&["virtio_mmio", "virtio_blk"], Some(r))
            .unwrap();
        let names: Vec<&str> = order.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk"]
        );
        assert!(order[3].path.ends_with("virtio-blk.ko"));

        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap();
        let mods = ModuleDir::open(&dir).unwrap();
        let names: Vec<String> = mods
            .resolve(&["virtio_blk"], None)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["virtio_ring", "virtio_blk"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wrong_version_missing_and_compressed_modules_are_named() {
        let dir = temp("bad");
        module(
            &dir,
            "a/virtio_blk.ko",
            "virtio_blk",
            "",
            "6.1.0-55-cloud-amd64",
        );
        std::fs::write(dir.join("a/virtio_net.ko.zst"), b"zstd").unwrap();
        let mods = ModuleDir::open(&dir).unwrap();
        let err = mods
            .resolve(&["virtio_blk"], Some("6.1.0-56-cloud-amd64"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("virtio_blk.ko was built for kernel 6.1.0-55-cloud-amd64"),
            "{err}"
        );
        assert!(
            err.contains("guest kernel is 6.1.0-56-cloud-amd64"),
            "{err}"
        );
        let err = mods.resolve(&["virtio_net"], None).unwrap_err().to_string();
        assert!(err.contains("virtio_net.ko.zst is compressed"), "{err}");
        let err = mods.resolve(&["virtio_pci"], None).unwrap_err().to_string();
        assert!(err.contains("`virtio_pci` is not in"), "{err}");
        assert!(err.contains("isobench kernel fetch"), "{err}");
        let err = ModuleDir::open(&dir.join("nope")).unwrap_err().to_string();
        assert!(err.contains("--modules wants a directory"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bzimage_release_comes_from_the_boot_header() {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20E..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
        let version = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x500..0x500 + version.len()].copy_from_slice(version);
        assert_eq!(
            bzimage_release(&image).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(bzimage_release(b"MZ not a kernel"), None);
        assert_eq!(
            kernel_release(b"\x7fELF...\0Linux version 6.1.0-56-cloud-amd64 (gcc) #1\0").as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            kernel_release(&image).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
    }
}
