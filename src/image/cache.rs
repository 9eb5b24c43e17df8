//! The layer cache: the image layer (the agent as `/init`, the mount
//! points) and application layers (a program with its shared-library
//! closure), built once per content and reused by every `exec` after,
//! instead of copied into a fresh run directory on every call.
//!
//! An entry is `<cache>/<kind>-<key>/`: `manifest.json` (isobench's marker
//! and what the layer was built from) beside `root/`, the layer itself, an
//! overlay lower directory (overlayfs never writes to a lower layer). The
//! key hashes the identity of the inputs — path, device, inode, size, mode,
//! mtime and ctime: one `stat` each, nothing read — and the manifest lists
//! every host file the layer holds with the same identity, checked on each
//! use. Content is hashed only when building (the agent's SHA-256 is in the
//! manifest).
//!
//! Entries never change once in place: each is built in a temporary
//! directory, synced, and renamed into place, so concurrent builders of one
//! entry race harmlessly (the first rename wins, the others use it).
//! Whoever uses an entry holds a shared `flock` on its manifest until its
//! container is gone; pruning takes the exclusive lock without waiting (an
//! entry in use stays), renames the entry away, then removes it. Only
//! directories holding isobench's manifest or build marker are removed.

use super::{ImageError, io_err};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bumped whenever what goes into a layer changes: older entries never
/// match again, and are pruned.
const LAYOUT: u32 = 1;
/// An entry's manifest (and the lock its users hold).
const MANIFEST: &str = "manifest.json";
/// An entry's layer directory.
const ROOT: &str = "root";
/// Written first into a directory being built, with the builder's pid: a
/// crashed build's leftovers are recognisably isobench's.
const BUILDING: &str = ".isobench-building";
/// The manifest's marker.
const MADE_BY: &str = "isobench";
/// Entries kept after a build (besides those in use); the oldest go first.
pub const KEEP: usize = 32;
/// Files that decide where the dynamic loader finds libraries: part of an
/// application layer's key (a package that adds libraries runs `ldconfig`,
/// which rewrites the cache).
const LOADER_CONFIG: &[&str] = &["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"];

/// A file's identity without reading it: when any of these changes, the
/// file may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// The path.
    pub path: PathBuf,
    /// Whether symbolic links were followed (`stat`) or not (`lstat`).
    pub follow: bool,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch (a rename, chmod or a
    /// write through another name changes it).
    pub ctime_ns: i64,
}

impl FileId {
    /// `path` as it is now.
    pub fn of(path: &Path, follow: bool) -> io::Result<FileId> {
        let m = if follow {
            std::fs::metadata(path)?
        } else {
            std::fs::symlink_metadata(path)?
        };
        Ok(FileId {
            path: path.to_path_buf(),
            follow,
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        })
    }

    /// Whether the file is still the same.
    fn current(&self) -> bool {
        FileId::of(&self.path, self.follow).is_ok_and(|now| now == *self)
    }
}

/// What a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The agent as `/init` and the mount points.
    Image,
    /// A program and its shared-library closure at their host paths.
    App,
    /// One layer of an OCI image, unpacked (named by its digest).
    Oci,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::App => "app",
            Kind::Oci => "oci",
        }
    }
}

/// An entry's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    /// Always [`MADE_BY`].
    made_by: String,
    /// [`LAYOUT`] when built.
    layout: u32,
    kind: Kind,
    /// What the entry's name was derived from.
    key: Vec<FileId>,
    /// Settings that also decide the content (`LD_LIBRARY_PATH=...`).
    extra: Vec<String>,
    /// Every host path the layer holds, as it was when built.
    files: Vec<FileId>,
    /// SHA-256 of the agent (image layers).
    agent_sha256: Option<String>,
    /// Bytes of file content.
    bytes: u64,
    /// When it was built, seconds since the epoch (the oldest are pruned first).
    built_unix: u64,
}

/// What a build function made.
struct Built {
    files: Vec<FileId>,
    agent_sha256: Option<String>,
    bytes: u64,
}

/// A layer in use: its directory stays as it is until this is dropped.
#[derive(Debug)]
pub struct Layer {
    /// The layer's root, an overlay lower directory.
    pub root: PathBuf,
    /// SHA-256 of the agent (image layers).
    pub agent_sha256: Option<String>,
    /// Whether it came from the cache as it was (false: built by this call).
    pub hit: bool,
    /// Bytes of file content in the layer.
    pub bytes: u64,
    /// The shared lock on the manifest.
    _lock: File,
    /// A layer built for this use only (its cache entry was out of date
    /// and in use), removed on drop.
    private: Option<PathBuf>,
}

impl Drop for Layer {
    fn drop(&mut self) {
        if let Some(dir) = self.private.take() {
            let _ = crate::rundir::remove_tree(&dir);
        }
    }
}

/// What looking an entry up found.
enum Found {
    Valid(Layer),
    Missing,
    /// There, but built from inputs that changed since.
    Stale,
}

/// The cache directory of layers.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

/// Why the cache cannot be used (then `exec` builds its layers per call).
#[derive(Debug, thiserror::Error)]
#[error("the layer cache {dir} cannot be used: {reason}")]
pub struct CacheUnusable {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub reason: String,
}

impl LayerCache {
    /// `layers/` in isobench's cache directory ([`crate::kernel::cache_dir`]:
    /// `$XDG_CACHE_HOME/isobench` or `~/.cache/isobench`).
    pub fn default_dir() -> PathBuf {
        crate::kernel::cache_dir().join("layers")
    }

    /// Opens the cache at `dir`, making it (and its parent) when missing.
    /// Refused unless both are the caller's own and not writable by others
    /// (another user could otherwise put files into its containers), or
    /// when the path holds a `,` or `:`, which overlay options cannot name.
    pub fn open(dir: &Path) -> Result<LayerCache, CacheUnusable> {
        let unusable = |reason: String| CacheUnusable {
            dir: dir.to_path_buf(),
            reason,
        };
        if dir
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| *b == b',' || *b == b':')
        {
            return Err(unusable(
                "its path holds `,` or `:`, which overlayfs options cannot express".into(),
            ));
        }
        if !dir.is_absolute() {
            return Err(unusable("not an absolute path".into()));
        }
        if let Some(parent) = dir.parent() {
            if let Some(grand) = parent.parent() {
                std::fs::create_dir_all(grand).map_err(|e| unusable(e.to_string()))?;
            }
            crate::rundir::ensure_private(parent).map_err(|e| unusable(e.to_string()))?;
        }
        crate::rundir::ensure_private(dir).map_err(|e| unusable(e.to_string()))?;
        Ok(LayerCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The cache at `dir` if it exists and is private to the caller (for
    /// pruning: nothing is made).
    pub fn existing(dir: &Path) -> Option<LayerCache> {
        let md = std::fs::symlink_metadata(dir).ok()?;
        let me = nix::unistd::geteuid().as_raw();
        (md.is_dir() && md.uid() == me && md.mode() & 0o022 == 0).then(|| LayerCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image layer for `agent`: the agent as `/init` (mode 0755) and the
    /// mount points, as [`super::build_tree`] makes them.
    pub fn image(&self, agent: &Path) -> Result<Layer, ImageError> {
        let id = FileId::of(agent, true).map_err(io_err(format!("reading {}", agent.display())))?;
        let key = vec![id.clone()];
        self.get(Kind::Image, key, Vec::new(), |root| {
            let tree = super::build_tree(agent, root)?;
            Ok(Built {
                files: vec![id],
                agent_sha256: Some(tree.agent_sha256),
                bytes: tree.agent_bytes,
            })
        })
    }

    /// The application layer for `program` (an absolute path), as
    /// [`super::app_layer`] makes it.
    pub fn app(&self, program: &Path) -> Result<Layer, ImageError> {
        let id =
            FileId::of(program, true).map_err(io_err(format!("reading {}", program.display())))?;
        let mut key = vec![id.clone()];
        key.extend(
            LOADER_CONFIG
                .iter()
                .filter_map(|p| FileId::of(Path::new(p), true).ok()),
        );
        // lddtree searches it, as the loader does.
        let extra: Vec<String> = std::env::var_os("LD_LIBRARY_PATH")
            .map(|v| format!("LD_LIBRARY_PATH={}", v.to_string_lossy()))
            .into_iter()
            .collect();
        self.get(Kind::App, key, extra, |root| {
            let app = super::app_layer(program, root)?;
            if !id.current() {
                return Err(ImageError::Closure {
                    program: program.to_path_buf(),
                    reason: "it changed while it was being packed; run again".into(),
                });
            }
            let files = app
                .files
                .iter()
                .map(|p| FileId::of(p, false))
                .collect::<io::Result<Vec<_>>>()
                .map_err(io_err(format!(
                    "reading the closure of {}",
                    program.display()
                )))?;
            Ok(Built {
                files,
                agent_sha256: None,
                bytes: app.bytes,
            })
        })
    }

    /// The unpacked OCI layer whose (verified) digest is `digest`
    /// (`sha256:<64 hex digits>`), at `<cache>/sha256-<hex>/root`; `unpack`
    /// fills a fresh directory with it, and returns the bytes of file
    /// content, when the entry is missing. Two isobench processes wanting
    /// the same missing layer unpack it once: the second waits on the
    /// digest's lock file (`.lock-sha256-<hex>`) and then finds it in place.
    pub fn oci_layer(
        &self,
        digest: &str,
        unpack: impl FnOnce(&Path) -> Result<u64, ImageError>,
    ) -> Result<Layer, ImageError> {
        let name = oci_entry_name(digest).ok_or_else(|| ImageError::Io {
            what: format!("naming the cache entry of layer {digest}"),
            source: io::Error::other("not a sha256 digest of 64 lower-case hex digits"),
        })?;
        let lock_path = self.dir.join(format!(".lock-{name}"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        lock.lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;
        let got = self.get_named(
            name,
            Kind::Oci,
            Vec::new(),
            vec![digest.to_string()],
            |root| {
                let bytes = unpack(root)?;
                Ok(Built {
                    files: Vec::new(),
                    agent_sha256: None,
                    bytes,
                })
            },
        );
        drop(lock);
        got
    }

    /// The valid entry for `key`, built and put in place when missing or
    /// out of date.
    fn get(
        &self,
        kind: Kind,
        key: Vec<FileId>,
        extra: Vec<String>,
        build: impl FnOnce(&Path) -> Result<Built, ImageError>,
    ) -> Result<Layer, ImageError> {
        self.get_named(entry_name(kind, &key, &extra), kind, key, extra, build)
    }

    /// [`LayerCache::get`] for the entry called `name`.
    fn get_named(
        &self,
        name: String,
        kind: Kind,
        key: Vec<FileId>,
        extra: Vec<String>,
        build: impl FnOnce(&Path) -> Result<Built, ImageError>,
    ) -> Result<Layer, ImageError> {
        let entry = self.dir.join(name);
        let want = |m: &Manifest| m.kind == kind && m.key == key && m.extra == extra;
        match open_entry(&entry, &want)? {
            Found::Valid(layer) => return Ok(layer),
            Found::Missing => {}
            Found::Stale => {
                if !self.remove_entry(&entry) {
                    // In use by a running container: a private copy, this once.
                    let tmp = self.build_tmp(kind, &key, &extra, build)?;
                    return match open_entry(&tmp, &want)? {
                        Found::Valid(mut layer) => {
                            layer.hit = false;
                            layer.private = Some(tmp);
                            Ok(layer)
                        }
                        _ => {
                            let _ = crate::rundir::remove_tree(&tmp);
                            Err(changed_while_built(&entry))
                        }
                    };
                }
            }
        }
        let tmp = self.build_tmp(kind, &key, &extra, build)?;
        match std::fs::rename(&tmp, &entry) {
            Ok(()) => {
                // The new name is durable before anyone relies on it.
                let _ = File::open(&self.dir).and_then(|d| d.sync_all());
            }
            // Another exec put the same entry in place first: use that one.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                let _ = crate::rundir::remove_tree(&tmp);
            }
            Err(e) => {
                let _ = crate::rundir::remove_tree(&tmp);
                return Err(ImageError::Io {
                    what: format!("renaming {} to {}", tmp.display(), entry.display()),
                    source: e,
                });
            }
        }
        self.prune(KEEP);
        match open_entry(&entry, &want)? {
            Found::Valid(mut layer) => {
                layer.hit = false;
                Ok(layer)
            }
            _ => Err(changed_while_built(&entry)),
        }
    }

    /// Builds an entry in a fresh temporary directory of the cache, its
    /// manifest written and everything synced; returns the directory.
    fn build_tmp(
        &self,
        kind: Kind,
        key: &[FileId],
        extra: &[String],
        build: impl FnOnce(&Path) -> Result<Built, ImageError>,
    ) -> Result<PathBuf, ImageError> {
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{}", kind.as_str(), unique()));
        std::fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        let made = (|| {
            let marker = tmp.join(BUILDING);
            std::fs::write(&marker, std::process::id().to_string())
                .map_err(io_err(format!("writing {}", marker.display())))?;
            let built = build(&tmp.join(ROOT))?;
            let manifest = Manifest {
                made_by: MADE_BY.into(),
                layout: LAYOUT,
                kind,
                key: key.to_vec(),
                extra: extra.to_vec(),
                files: built.files,
                agent_sha256: built.agent_sha256,
                bytes: built.bytes,
                built_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let path = tmp.join(MANIFEST);
            let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
            std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
            std::fs::remove_file(&marker)
                .map_err(io_err(format!("removing {}", marker.display())))?;
            sync_tree(&tmp).map_err(io_err(format!("syncing {}", tmp.display())))
        })();
        match made {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = crate::rundir::remove_tree(&tmp);
                Err(e)
            }
        }
    }

    /// Moves an entry of isobench's that nobody uses out of the way and
    /// removes it; false when it is in use or not isobench's.
    fn remove_entry(&self, entry: &Path) -> bool {
        let Ok(file) = File::open(entry.join(MANIFEST)) else {
            return false;
        };
        if file.try_lock().is_err() {
            return false;
        }
        if read_manifest(&file).is_none_or(|m| m.made_by != MADE_BY) {
            return false;
        }
        let trash = self.dir.join(format!(".trash-{}", unique()));
        if std::fs::rename(entry, &trash).is_err() {
            return false;
        }
        // Anyone waiting for a shared lock now finds the name gone.
        drop(file);
        let _ = crate::rundir::remove_tree(&trash);
        true
    }

    /// Removes entries that can never be used again (an input changed or is
    /// gone, or an older layout), then the oldest beyond `keep`, and the
    /// leftovers of crashed builds; never an entry in use, never anything
    /// without isobench's manifest or build marker. Returns what it removed.
    pub fn prune(&self, keep: usize) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let mut live: Vec<(u64, PathBuf)> = Vec::new();
        let entries = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(of) = name.strip_prefix(".lock-") {
                // The lock of an OCI layer's unpacking, the layer gone; a
                // name isobench would not make is left alone.
                if of.strip_prefix("sha256-").is_some_and(is_sha256_hex)
                    && !self.dir.join(of).exists()
                    && File::open(&path).is_ok_and(|f| f.try_lock().is_ok())
                    && std::fs::remove_file(&path).is_ok()
                {
                    removed.push(path);
                }
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.starts_with(".tmp-") {
                // A build whose process is gone.
                let builder = std::fs::read_to_string(path.join(BUILDING))
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok());
                if builder.is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists())
                    && crate::rundir::remove_tree(&path).is_ok()
                {
                    removed.push(path);
                }
                continue;
            }
            let manifest = File::open(path.join(MANIFEST))
                .ok()
                .and_then(|f| read_manifest(&f))
                .filter(|m| m.made_by == MADE_BY);
            let Some(manifest) = manifest else { continue };
            if name.starts_with(".trash-") {
                // A removal cut short.
                if crate::rundir::remove_tree(&path).is_ok() {
                    removed.push(path);
                }
                continue;
            }
            if !(name.starts_with("image-")
                || name.starts_with("app-")
                || name.starts_with("sha256-"))
            {
                continue;
            }
            let obsolete = manifest.layout != LAYOUT || !manifest.key.iter().all(FileId::current);
            if obsolete {
                if self.remove_entry(&path) {
                    removed.push(path);
                }
            } else {
                live.push((manifest.built_unix, path));
            }
        }
        live.sort();
        let excess = live.len().saturating_sub(keep);
        for (_, path) in live.into_iter().take(excess) {
            if self.remove_entry(&path) {
                removed.push(path);
            }
        }
        removed
    }
}

/// `<kind>-<32 hex digits>`: a hash of everything that decides the content.
fn entry_name(kind: Kind, key: &[FileId], extra: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&(LAYOUT, kind, key, extra)).unwrap_or_default());
    let digest = crate::util::hex(&h.finalize());
    format!("{}-{}", kind.as_str(), &digest[..32])
}

/// `sha256-<hex>` for `sha256:<hex>`; `None` for anything else (the name
/// must never hold a `/` or `..` an image could choose).
fn oci_entry_name(digest: &str) -> Option<String> {
    sha256_hex(digest).map(|hex| format!("sha256-{hex}"))
}

/// The hex digits of a `sha256:<64 lower-case hex digits>` digest; `None`
/// for anything else.
pub(super) fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| is_sha256_hex(h))
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A name no other process or call uses.
fn unique() -> String {
    format!("{}-{:08x}", std::process::id(), rand::random::<u32>())
}

fn read_manifest(file: &File) -> Option<Manifest> {
    serde_json::from_reader(io::BufReader::new(file)).ok()
}

fn changed_while_built(entry: &Path) -> ImageError {
    ImageError::Io {
        what: format!("checking {}", entry.display()),
        source: io::Error::other("its inputs changed while it was being built; run again"),
    }
}

/// Looks `entry` up: its manifest opened and share-locked, checked against
/// what is wanted, and every file it lists checked against the host's.
fn open_entry(entry: &Path, want: &dyn Fn(&Manifest) -> bool) -> Result<Found, ImageError> {
    let path = entry.join(MANIFEST);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => {
            return Err(ImageError::Io {
                what: format!("opening {}", path.display()),
                source: e,
            });
        }
    };
    file.lock_shared()
        .map_err(io_err(format!("locking {}", path.display())))?;
    // Pruned between the open and the lock: the name is gone or another's.
    let same = match (std::fs::metadata(&path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if !same {
        return Ok(Found::Missing);
    }
    let Some(manifest) = read_manifest(&file) else {
        return Ok(Found::Stale);
    };
    if manifest.made_by != MADE_BY
        || manifest.layout != LAYOUT
        || !want(&manifest)
        || !manifest.files.iter().all(FileId::current)
    {
        return Ok(Found::Stale);
    }
    Ok(Found::Valid(Layer {
        root: entry.join(ROOT),
        agent_sha256: manifest.agent_sha256,
        hit: true,
        bytes: manifest.bytes,
        _lock: file,
        private: None,
    }))
}

/// fsyncs every regular file and directory under `dir`, and `dir`.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let t = entry.file_type()?;
        if t.is_dir() {
            sync_tree(&entry.path())?;
        } else if t.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("cache-{name}"))
    }

    /// A small static stand-in for the agent is not at hand in unit tests;
    /// the image layer is tested with the real agent in tests/container.rs.
    /// Here: application layers, whose builds need only the host.
    fn program_copy(dir: &Path) -> PathBuf {
        let src = crate::image::find_program("true").expect("true is on every host");
        let p = dir.join("prog");
        std::fs::copy(&src, &p).unwrap();
        p
    }

    fn entries(cache: &LayerCache) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_app_layer_is_built_once_then_reused() {
        let dir = temp("reuse");
        let cache = LayerCache::open(&dir.join("cache/layers")).unwrap();
        let prog = program_copy(&dir);
        let first = cache.app(&prog).unwrap();
        assert!(!first.hit);
        assert!(
            first.root.join(prog.strip_prefix("/").unwrap()).is_file(),
            "the program is in the layer"
        );
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(first.root.parent().unwrap().join(MANIFEST)).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.made_by, "isobench");
        assert!(manifest.files.iter().any(|f| f.path == prog));
        let second = cache.app(&prog).unwrap();
        assert!(second.hit, "the second use is a hit");
        assert_eq!(first.root, second.root);
        assert_eq!(entries(&cache).len(), 1, "{:?}", entries(&cache));
    }

    #[test]
    fn a_changed_program_gets_a_new_entry_and_the_old_one_is_pruned() {
        let dir = temp("change");
        let cache = LayerCache::open(&dir.join("cache/layers")).unwrap();
        let prog = program_copy(&dir);
        let old = cache.app(&prog).unwrap().root.clone();
        // Rewritten in place: same inode, new mtime and size.
        let mut bytes = std::fs::read(&prog).unwrap();
        bytes.extend_from_slice(b"\0");
        std::fs::write(&prog, &bytes).unwrap();
        let new = cache.app(&prog).unwrap();
        assert!(!new.hit);
        assert_ne!(new.root, old);
        assert_eq!(
            std::fs::metadata(new.root.join(prog.strip_prefix("/").unwrap()))
                .unwrap()
                .len(),
            bytes.len() as u64
        );
        // The old entry's key can never match again: pruned by the build.
        assert!(!old.exists(), "{:?}", entries(&cache));
        assert_eq!(entries(&cache).len(), 1, "{:?}", entries(&cache));
    }

    #[test]
    fn a_changed_library_makes_the_entry_stale_and_an_entry_in_use_stays() {
        let dir = temp("stale");
        let cache = LayerCache::open(&dir.join("cache/layers")).unwrap();
        let prog = program_copy(&dir);
        let held = cache.app(&prog).unwrap();
        // Pretend a file of the closure changed since the build: rewrite
        // the manifest's record of the program's size.
        let mpath = held.root.parent().unwrap().join(MANIFEST);
        let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        let f = m.files.iter_mut().find(|f| f.path == prog).unwrap();
        f.size += 1;
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
        // The entry is in use (`held`): a private layer, removed after use.
        let private = cache.app(&prog).unwrap();
        assert!(!private.hit);
        assert_ne!(private.root, held.root);
        assert!(held.root.is_dir(), "an entry in use is never removed");
        let private_dir = private.root.parent().unwrap().to_path_buf();
        drop(private);
        assert!(!private_dir.exists());
        // Once unused, the stale entry is replaced in place.
        let root = held.root.clone();
        drop(held);
        let fresh = cache.app(&prog).unwrap();
        assert!(!fresh.hit);
        assert_eq!(fresh.root, root);
        assert!(cache.app(&prog).unwrap().hit);
    }

    #[test]
    fn prune_keeps_entries_in_use_and_leaves_foreign_directories_alone() {
        let dir = temp("prune");
        let cache = LayerCache::open(&dir.join("cache/layers")).unwrap();
        let prog = program_copy(&dir);
        let held = cache.app(&prog).unwrap();
        let other = dir.join("other");
        std::fs::copy(&prog, &other).unwrap();
        let unused = cache.app(&other).unwrap().root.clone();
        // A user's directory that looks like an entry, and a crashed build.
        let foreign = cache.dir().join("app-0123");
        std::fs::create_dir_all(foreign.join("root")).unwrap();
        std::fs::write(foreign.join(MANIFEST), b"{\"made_by\":\"someone\"}").unwrap();
        let crashed = cache.dir().join(".tmp-app-1-dead");
        std::fs::create_dir_all(&crashed).unwrap();
        // A pid that is not running (beyond the default pid_max).
        std::fs::write(crashed.join(BUILDING), "4194305").unwrap();
        let removed = cache.prune(0);
        assert!(removed.contains(&unused.parent().unwrap().to_path_buf()));
        assert!(removed.contains(&crashed), "{removed:?}");
        assert!(held.root.is_dir(), "in use");
        assert!(foreign.join("root").is_dir(), "not isobench's");
        assert!(!unused.exists());
    }

    #[test]
    fn a_cache_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("unsafe");
        let layers = dir.join("cache/layers");
        std::fs::create_dir_all(&layers).unwrap();
        std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = LayerCache::open(&layers).unwrap_err();
        assert!(err.reason.contains("writable by other users"), "{err}");
        assert!(LayerCache::open(&dir.join("a:b/layers")).is_err());
    }

    #[test]
    fn entry_names_follow_the_inputs() {
        let id = |ino| FileId {
            path: "/bin/x".into(),
            follow: true,
            dev: 1,
            ino,
            size: 2,
            mode: 0o100755,
            mtime_ns: 3,
            ctime_ns: 4,
        };
        let a = entry_name(Kind::App, &[id(1)], &[]);
        assert_eq!(a, entry_name(Kind::App, &[id(1)], &[]));
        assert!(a.starts_with("app-") && a.len() == 4 + 32, "{a}");
        assert_ne!(a, entry_name(Kind::App, &[id(2)], &[]));
        assert_ne!(a, entry_name(Kind::Image, &[id(1)], &[]));
        assert_ne!(
            a,
            entry_name(Kind::App, &[id(1)], &["LD_LIBRARY_PATH=/x".into()])
        );
    }
}
