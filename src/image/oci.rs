//! Reading a real image (`--image PATH`): an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) or a `docker save` /
//! `podman save` tarball (the legacy `manifest.json` with `<id>/layer.tar`
//! members, or, as newer Docker writes it, an OCI layout inside the tar).
//!
//! Every blob is checked before it is used: the manifest against the
//! index's digest, the configuration against the manifest's (or, in a
//! legacy tarball, against its file name, which is its digest), and every
//! layer against the manifest's digest (legacy: the configuration's
//! `rootfs.diff_ids`, the digests of the uncompressed layer tars) — also
//! when the layer is already unpacked in the cache, so a tampered image is
//! refused every time. A layer is unpacked (see [`super::unpack`]) into
//! the layer cache as `sha256-<hex>`, once, and shared by every run.

use super::cache::{Layer, LayerCache};
use super::unpack::{self, Hashing, Limits};
use super::{ImageError, io_err};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The largest JSON document (index, manifest, configuration) read.
const MAX_JSON: u64 = 8 << 20;

/// How the image was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// An OCI image layout directory.
    OciLayout,
    /// A tarball holding an OCI image layout (newer `docker save`, `podman save --format oci-archive`).
    OciArchive,
    /// A legacy `docker save` / `podman save` tarball (`manifest.json`).
    DockerArchive,
}

/// One layer of the image as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFacts {
    /// The digest the blob was checked against.
    pub digest: String,
    /// Its media type (legacy tarballs: `tar`).
    pub media_type: String,
    /// The blob's size in bytes.
    pub bytes: u64,
    /// Bytes of file content once unpacked.
    pub unpacked_bytes: u64,
    /// Whether it was unpacked already (by an earlier run).
    pub cached: bool,
}

/// What meta.json and the report say about the image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFacts {
    /// The path given.
    pub path: PathBuf,
    /// How it was stored.
    pub format: Format,
    /// The manifest's digest (legacy tarballs: of `manifest.json`).
    pub manifest_digest: String,
    /// The configuration's digest (the image id).
    pub config_digest: String,
    /// Its tags, when the archive names them.
    pub tags: Vec<String>,
    /// The layers, bottom first.
    pub layers: Vec<LayerFacts>,
    /// Bytes of file content of all layers unpacked.
    pub unpacked_bytes: u64,
}

/// An image's layers, unpacked and verified: overlay lower directories.
#[derive(Debug)]
pub struct ImageLayers {
    /// The layers' directories, **top first** (overlayfs's `lowerdir` order).
    pub dirs: Vec<PathBuf>,
    /// What the image is.
    pub facts: ImageFacts,
    /// The cache entries' locks: not pruned while this lives.
    _held: Vec<Layer>,
}

/// A member of a tarball.
#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// Where blobs are read from.
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: BTreeMap<String, Member>,
    },
}

/// A member name without `./` and with no way out of the archive.
fn clean_name(name: &str) -> Option<String> {
    let rel = unpack::relative(Path::new(name)).ok()?;
    Some(rel.to_string_lossy().into_owned())
}

impl Source {
    fn open_tar(path: &Path) -> Result<Source, ImageError> {
        let file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
        let bad = |reason: String| ImageError::Oci {
            image: path.to_path_buf(),
            reason,
        };
        let mut archive = tar::Archive::new(file);
        let mut members = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                bad(format!(
                    "not a tar archive ({e}); a compressed one (`docker save | gzip`) must be decompressed first"
                ))
            })?;
            let name = entry.path().map_err(|e| bad(e.to_string()))?;
            let Some(name) = clean_name(&name.to_string_lossy()) else {
                continue;
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(to) = entry.link_name().ok().flatten() else {
                        continue;
                    };
                    let to = to.to_string_lossy().into_owned();
                    // A symlink is relative to its directory, a hard link to the root.
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name).parent().unwrap_or(Path::new("")).join(&to)
                    } else {
                        PathBuf::from(&to)
                    };
                    let resolved = super::normalize(&Path::new("/").join(base));
                    Member::Link(
                        resolved
                            .to_string_lossy()
                            .trim_start_matches('/')
                            .to_string(),
                    )
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(name).is_file(),
            Source::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// The member or file `name` and its size.
    fn open(&self, name: &str) -> Result<(Box<dyn Read>, u64), ImageError> {
        let name = clean_name(name).ok_or_else(|| ImageError::Oci {
            image: self.path().to_path_buf(),
            reason: format!("the manifest names `{name}`, a path outside the image"),
        })?;
        let missing = || ImageError::Oci {
            image: self.path().to_path_buf(),
            reason: format!("`{name}`, which the manifest names, is not in the image"),
        };
        match self {
            Source::Dir(d) => {
                let p = d.join(&name);
                let f = File::open(&p).map_err(|_| missing())?;
                let len = f
                    .metadata()
                    .map_err(io_err(format!("reading {}", p.display())))?
                    .len();
                Ok((Box::new(f), len))
            }
            Source::Tar { path, members } => {
                let mut at = name.clone();
                for _ in 0..8 {
                    match members.get(&at) {
                        Some(Member::File { offset, size }) => {
                            let mut f = File::open(path)
                                .map_err(io_err(format!("opening {}", path.display())))?;
                            f.seek(SeekFrom::Start(*offset))
                                .map_err(io_err(format!("reading {}", path.display())))?;
                            return Ok((Box::new(f.take(*size)), *size));
                        }
                        Some(Member::Link(to)) => at = to.clone(),
                        None => break,
                    }
                }
                Err(missing())
            }
        }
    }

    fn path(&self) -> &Path {
        match self {
            Source::Dir(d) => d,
            Source::Tar { path, .. } => path,
        }
    }

    /// A small document, checked against `digest` when given; returns the
    /// bytes and their digest.
    fn json(&self, name: &str, digest: Option<&str>) -> Result<(Vec<u8>, String), ImageError> {
        let (r, len) = self.open(name)?;
        if len > MAX_JSON {
            return Err(ImageError::Oci {
                image: self.path().to_path_buf(),
                reason: format!(
                    "`{name}` is {len} bytes, more than a JSON document of an image may be ({MAX_JSON})"
                ),
            });
        }
        let mut bytes = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(io_err(format!(
                "reading {name} in {}",
                self.path().display()
            )))?;
        let got = sha256(&bytes);
        if let Some(want) = digest
            && got != want
        {
            return Err(self.mismatch(name, want, &got));
        }
        Ok((bytes, got))
    }

    fn mismatch(&self, blob: &str, expected: &str, actual: &str) -> ImageError {
        ImageError::DigestMismatch {
            image: self.path().to_path_buf(),
            blob: blob.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", crate::util::hex(&sha2::Sha256::digest(bytes)))
}

/// `blobs/sha256/<hex>` for a `sha256:<hex>` digest; other algorithms and
/// malformed digests are refused.
fn blob_path(image: &Path, digest: &str) -> Result<String, ImageError> {
    super::cache::sha256_hex(digest)
        .map(|h| format!("blobs/sha256/{h}"))
        .ok_or_else(|| ImageError::Oci {
            image: image.to_path_buf(),
            reason: format!("digest `{digest}` is not sha256 with 64 lower-case hex digits (the only kind supported)"),
        })
}

/// A layer to unpack: where its blob is and what it must hash to.
struct LayerRef {
    member: String,
    digest: String,
    media_type: String,
    size: Option<u64>,
}

/// An image opened and its manifest and configuration checked; layers not
/// read yet.
pub struct OciImage {
    source: Source,
    format: Format,
    manifest_digest: String,
    config_digest: String,
    tags: Vec<String>,
    layers: Vec<LayerRef>,
}

/// One image of a legacy archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl OciImage {
    /// Opens `path`: a directory is an OCI layout; a file is a tarball.
    pub fn open(path: &Path) -> Result<OciImage, ImageError> {
        let bad = |reason: String| ImageError::Oci {
            image: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let (source, in_tar) = if meta.is_dir() {
            (Source::Dir(path.to_path_buf()), false)
        } else {
            (Source::open_tar(path)?, true)
        };
        if source.has("index.json") {
            let format = if in_tar {
                Format::OciArchive
            } else {
                Format::OciLayout
            };
            return Self::from_index(source, format);
        }
        if in_tar && source.has("manifest.json") {
            return Self::from_docker_manifest(source);
        }
        Err(bad(
            "neither an OCI image layout (no index.json) nor a `docker save` tarball (no manifest.json)"
                .into(),
        ))
    }

    fn from_index(source: Source, format: Format) -> Result<OciImage, ImageError> {
        use oci_spec::image::{ImageIndex, ImageManifest, MediaType};
        let image = source.path().to_path_buf();
        let bad = |reason: String| ImageError::Oci {
            image: image.clone(),
            reason,
        };
        let (bytes, _) = source.json("index.json", None)?;
        let mut index =
            ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(format!("index.json: {e}")))?;
        // An index may point at a further index (a multi-platform image).
        for _ in 0..4 {
            let manifests = index.manifests();
            let pick = manifests
                .iter()
                .find(|d| {
                    d.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
                    })
                })
                .or_else(|| manifests.first())
                .ok_or_else(|| bad("index.json lists no manifest".into()))?
                .clone();
            let digest = pick.digest().to_string();
            let (bytes, _) = source.json(&blob_path(&image, &digest)?, Some(&digest))?;
            if *pick.media_type() == MediaType::ImageIndex {
                index = ImageIndex::from_reader(&bytes[..])
                    .map_err(|e| bad(format!("index {digest}: {e}")))?;
                continue;
            }
            let manifest = ImageManifest::from_reader(&bytes[..])
                .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
            let config_digest = manifest.config().digest().to_string();
            source.json(&blob_path(&image, &config_digest)?, Some(&config_digest))?;
            let layers = manifest
                .layers()
                .iter()
                .map(|l| {
                    let d = l.digest().to_string();
                    Ok(LayerRef {
                        member: blob_path(&image, &d)?,
                        digest: d,
                        media_type: l.media_type().to_string(),
                        size: Some(l.size()),
                    })
                })
                .collect::<Result<Vec<_>, ImageError>>()?;
            let tags = pick
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
                .into_iter()
                .collect();
            return Ok(OciImage {
                source,
                format,
                manifest_digest: digest,
                config_digest,
                tags,
                layers,
            });
        }
        Err(bad("index.json nests indexes more than 4 deep".into()))
    }

    fn from_docker_manifest(source: Source) -> Result<OciImage, ImageError> {
        let image = source.path().to_path_buf();
        let bad = |reason: String| ImageError::Oci {
            image: image.clone(),
            reason,
        };
        let (bytes, manifest_digest) = source.json("manifest.json", None)?;
        let entries: Vec<SaveEntry> =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
        let entry = match entries.len() {
            1 => &entries[0],
            0 => return Err(bad("manifest.json lists no image".into())),
            n => {
                return Err(bad(format!(
                    "manifest.json lists {n} images; save one image per tarball"
                )));
            }
        };
        // The configuration's file name is its digest.
        let stem = Path::new(&entry.config)
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
            .unwrap_or_default();
        let config_digest = format!("sha256:{stem}");
        blob_path(&image, &config_digest)?;
        let (config, _) = source.json(&entry.config, Some(&config_digest))?;
        let config = oci_spec::image::ImageConfiguration::from_reader(&config[..])
            .map_err(|e| bad(format!("{}: {e}", entry.config)))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers but the configuration's rootfs.diff_ids {}",
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let layers = entry
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(member, digest)| {
                blob_path(&image, digest)?;
                Ok(LayerRef {
                    member: member.clone(),
                    digest: digest.clone(),
                    media_type: "tar".into(),
                    size: None,
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(OciImage {
            source,
            format: Format::DockerArchive,
            manifest_digest,
            config_digest,
            tags: entry.repo_tags.clone().unwrap_or_default(),
            layers,
        })
    }

    /// Checks every layer's blob and unpacks the ones the cache lacks.
    pub fn unpack(self, cache: &LayerCache, limits: Limits) -> Result<ImageLayers, ImageError> {
        let mut held = Vec::new();
        let mut facts = Vec::new();
        for l in &self.layers {
            let mut checked = None;
            let layer = cache.oci_layer(&l.digest, |root| {
                let (blob, len) = self.source.open(&l.member)?;
                let mut hashed = Hashing::new(blob);
                let unpacked = unpack::unpack(&mut hashed, root, &l.digest, limits);
                let (got, n) = hashed.finish().map_err(io_err(format!(
                    "reading layer {} of {}",
                    l.member,
                    self.source.path().display()
                )))?;
                self.verify(l, &got, n)?;
                checked = Some(len);
                Ok(unpacked?.bytes)
            })?;
            let bytes = match checked {
                Some(len) => len,
                None => {
                    // Unpacked already: the blob must still be what the manifest says.
                    let (blob, len) = self.source.open(&l.member)?;
                    let (got, n) = Hashing::new(blob).finish().map_err(io_err(format!(
                        "reading layer {} of {}",
                        l.member,
                        self.source.path().display()
                    )))?;
                    self.verify(l, &got, n)?;
                    len
                }
            };
            facts.push(LayerFacts {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                bytes,
                unpacked_bytes: layer.bytes,
                cached: layer.hit,
            });
            held.push(layer);
        }
        let dirs = held.iter().rev().map(|l| l.root.clone()).collect();
        Ok(ImageLayers {
            dirs,
            facts: ImageFacts {
                path: self.source.path().to_path_buf(),
                format: self.format,
                manifest_digest: self.manifest_digest,
                config_digest: self.config_digest,
                tags: self.tags,
                unpacked_bytes: facts.iter().map(|f| f.unpacked_bytes).sum(),
                layers: facts,
            },
            _held: held,
        })
    }

    fn verify(&self, l: &LayerRef, got: &str, n: u64) -> Result<(), ImageError> {
        if got != l.digest {
            return Err(self.source.mismatch(&l.member, &l.digest, got));
        }
        if let Some(size) = l.size
            && size != n
        {
            return Err(ImageError::Oci {
                image: self.source.path().to_path_buf(),
                reason: format!("layer {} is {n} bytes, the manifest says {size}", l.member),
            });
        }
        Ok(())
    }
}

/// Opens, checks and unpacks the image at `path` into the layer cache.
pub fn load(path: &Path) -> Result<ImageLayers, ImageError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::Oci {
            image: path.to_path_buf(),
            reason: "--image needs root: its layers' whiteouts become overlayfs device nodes and trusted extended attributes (run isobench with sudo)".into(),
        });
    }
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let image = OciImage::open(&path)?;
    let cache = LayerCache::open(&LayerCache::default_dir())?;
    image.unpack(&cache, Limits::default())
}
