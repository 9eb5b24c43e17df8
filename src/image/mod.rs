//! The image: one root filesystem per run, and its cpio packing; and
//! [`cache`], the layers `exec` builds once per content and reuses.
//!
//! The image is a directory holding the static agent as `/init` plus the
//! empty mount points it needs. The container uses that directory as its
//! read-only overlay layer; the VM boots the same tree packed as a newc
//! cpio initramfs. Identical bytes in every environment are the point.
//!
//! The cpio writer is deterministic: entries sorted by path, inode numbers
//! assigned in that order, owner root, mtime 0. The same tree gives the same
//! archive byte for byte.

pub mod cache;
pub mod oci;
pub mod rootfs;
pub mod unpack;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the agent binary to use.
pub const AGENT_ENV: &str = "ISOBENCH_AGENT";
/// The agent's file name next to the `isobench` binary.
pub const AGENT_NAME: &str = "isobench-agent";

/// What went wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The agent binary was not found.
    #[error(
        "cannot find the agent binary `{AGENT_NAME}` (looked in: {looked}); build it with `cargo build --release` or set {AGENT_ENV}"
    )]
    AgentMissing {
        /// The places searched.
        looked: String,
    },
    /// The agent is dynamically linked and would not run in an image.
    #[error(
        "{path} is dynamically linked (it asks for the interpreter {interp}); the agent must be static — build with the repository's .cargo/config.toml (do not set RUSTFLAGS, which replaces its flags)"
    )]
    AgentNotStatic {
        /// The agent.
        path: PathBuf,
        /// Its ELF interpreter.
        interp: String,
    },
    /// The agent is not an ELF executable at all.
    #[error("{path} is not an ELF executable: {reason}")]
    AgentNotElf {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A program's shared-library closure could not be worked out.
    #[error("{program}: {reason}")]
    Closure {
        /// The program.
        program: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An `--image` cannot be read as an OCI layout or `docker save` tarball.
    #[error("--image {image}: {reason}")]
    Oci {
        /// The image given.
        image: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob of an image does not hash to the digest its manifest names.
    #[error(
        "--image {image}: blob `{blob}` has digest {actual}, but the manifest says {expected}; the image is damaged or was altered — save it again"
    )]
    DigestMismatch {
        /// The image given.
        image: PathBuf,
        /// The blob's name in the image.
        blob: String,
        /// The digest the manifest names.
        expected: String,
        /// The digest of the bytes found.
        actual: String,
    },
    /// A layer entry would land outside the layer.
    #[error("image layer {layer}: entry `{entry}` refused: {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        layer: String,
        /// The entry's name in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A layer cannot be unpacked.
    #[error("image layer {layer}: {reason}")]
    Layer {
        /// The layer's digest.
        layer: String,
        /// Why.
        reason: String,
    },
    /// The layer cache cannot be used.
    #[error(transparent)]
    Cache(#[from] cache::CacheUnusable),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// Finds the agent: `$ISOBENCH_AGENT`, else next to the running binary, else
/// one directory up (where cargo puts binaries relative to test executables).
pub fn find_agent() -> Result<PathBuf, ImageError> {
    if let Some(p) = std::env::var_os(AGENT_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ImageError::AgentMissing {
                looked: format!("{AGENT_ENV}={}", p.display()),
            })
        };
    }
    let exe = std::env::current_exe().map_err(io_err("finding the running executable"))?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(AGENT_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    Err(ImageError::AgentMissing {
        looked: looked.join(", "),
    })
}

/// Checks that an ELF file needs no dynamic loader. Reads only the ELF
/// header, the program headers and the interpreter's name (a few hundred
/// bytes, not the whole multi-megabyte agent): `exec` runs this per call.
pub fn check_static(path: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::FileExt;
    let not_elf = |reason: String| ImageError::AgentNotElf {
        path: path.to_path_buf(),
        reason,
    };
    let read_err = io_err(format!("reading {}", path.display()));
    let file = File::open(path).map_err(read_err)?;
    let mut head = [0u8; goblin::elf::header::header64::SIZEOF_EHDR];
    let got =
        read_at_most(&file, &mut head, 0).map_err(io_err(format!("reading {}", path.display())))?;
    if got < goblin::elf::header::header32::SIZEOF_EHDR {
        return Err(not_elf(format!(
            "only {got} bytes, shorter than an ELF header"
        )));
    }
    let header =
        goblin::elf::Elf::parse_header(&head[..got]).map_err(|e| not_elf(e.to_string()))?;
    let ctx = goblin::container::Ctx::new(
        header.container().map_err(|e| not_elf(e.to_string()))?,
        header.endianness().map_err(|e| not_elf(e.to_string()))?,
    );
    let table = usize::from(header.e_phnum) * usize::from(header.e_phentsize);
    let mut phdrs = vec![0u8; table];
    file.read_exact_at(&mut phdrs, header.e_phoff)
        .map_err(|e| not_elf(format!("its program headers cannot be read: {e}")))?;
    let phdrs = goblin::elf::ProgramHeader::parse(&phdrs, 0, usize::from(header.e_phnum), ctx)
        .map_err(|e| not_elf(e.to_string()))?;
    let Some(interp) = phdrs
        .iter()
        .find(|p| p.p_type == goblin::elf::program_header::PT_INTERP)
    else {
        return Ok(());
    };
    // A path: PATH_MAX at most.
    let mut name = vec![0u8; interp.p_filesz.min(4096) as usize];
    file.read_exact_at(&mut name, interp.p_offset)
        .map_err(|e| not_elf(format!("its interpreter's name cannot be read: {e}")))?;
    let name = name.split(|b| *b == 0).next().unwrap_or_default();
    Err(ImageError::AgentNotStatic {
        path: path.to_path_buf(),
        interp: String::from_utf8_lossy(name).into_owned(),
    })
}

/// Reads into `buf` from `offset` until it is full or the file ends;
/// returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A run's image, built once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Image {
    /// The root directory (the container's lower layer).
    pub dir: PathBuf,
    /// The same tree as a newc cpio archive (the VM's initramfs).
    pub initramfs: PathBuf,
    /// Where the agent was copied from.
    pub agent_source: PathBuf,
    /// SHA-256 of the agent, the same file in every environment.
    pub agent_sha256: String,
    /// Size of the agent in bytes.
    pub agent_bytes: u64,
    /// Size of the initramfs in bytes.
    pub initramfs_bytes: u64,
    /// The real image under it (`--image`): path, format, digests, layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci: Option<oci::ImageFacts>,
}

/// The empty directories every image has (mount points).
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "tmp"];

/// Builds the image in `dir` with applications (see [`build`]).
/// `programs` (absolute host paths) are packed with their shared-library
/// closures, and `files` (host files or directories) are copied, at their
/// host paths: the applications of `command` workloads.
pub fn build_with(
    agent: &Path,
    dir: &Path,
    initramfs: &Path,
    programs: &[PathBuf],
    files: &[PathBuf],
) -> Result<Image, ImageError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    for program in programs {
        app_layer(program, dir)?;
    }
    for file in files {
        add_tree(dir, file)?;
    }
    build(agent, dir, initramfs)
}

/// Copies a host file or directory tree into `root` at its host path.
fn add_tree(root: &Path, path: &Path) -> Result<(), ImageError> {
    let mut created = Vec::new();
    let mut bytes = 0;
    let meta =
        std::fs::symlink_metadata(path).map_err(io_err(format!("reading {}", path.display())))?;
    if meta.is_dir() {
        let inside = root.join(path.strip_prefix("/").unwrap_or(path));
        std::fs::create_dir_all(&inside)
            .map_err(io_err(format!("creating {}", inside.display())))?;
        let entries =
            std::fs::read_dir(path).map_err(io_err(format!("reading {}", path.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
            add_tree(root, &entry.path())?;
        }
        return Ok(());
    }
    replicate(root, path, &mut created, &mut bytes)
}

/// Builds the image in `dir` (created; it may already hold applications)
/// and its initramfs at `initramfs`.
pub fn build(agent: &Path, dir: &Path, initramfs: &Path) -> Result<Image, ImageError> {
    let tree = build_tree(agent, dir)?;
    let out =
        File::create(initramfs).map_err(io_err(format!("creating {}", initramfs.display())))?;
    let mut out = write_newc(dir, &[Node::console()], BufWriter::new(out))
        .map_err(io_err(format!("writing {}", initramfs.display())))?;
    out.flush()
        .map_err(io_err(format!("writing {}", initramfs.display())))?;
    let initramfs_bytes = std::fs::metadata(initramfs)
        .map_err(io_err(format!("reading {}", initramfs.display())))?
        .len();
    Ok(Image {
        dir: dir.to_path_buf(),
        initramfs: initramfs.to_path_buf(),
        agent_source: agent.to_path_buf(),
        agent_sha256: tree.agent_sha256,
        agent_bytes: tree.agent_bytes,
        initramfs_bytes,
        oci: None,
    })
}

/// What [`build_tree`] put into an image directory.
#[derive(Debug, Clone)]
pub struct Tree {
    /// SHA-256 of the agent as copied.
    pub agent_sha256: String,
    /// Size of the agent in bytes.
    pub agent_bytes: u64,
}

/// The image's tree without its cpio packing (a container needs only the
/// directory): the agent as `/init` (mode 0755) and the mount points, in
/// `dir` (created; it may already hold applications). The agent is read
/// once; what is hashed is what is written.
pub fn build_tree(agent: &Path, dir: &Path) -> Result<Tree, ImageError> {
    check_static(agent)?;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    for m in MOUNT_POINTS {
        let p = dir.join(m);
        std::fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
    }
    let bytes = std::fs::read(agent).map_err(io_err(format!("reading {}", agent.display())))?;
    let init = dir.join("init");
    let write = || -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&init)?;
        f.write_all(&bytes)?;
        // The mode asked for at creation is filtered by the umask.
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
    };
    write().map_err(io_err(format!(
        "copying {} to {}",
        agent.display(),
        init.display()
    )))?;
    Ok(Tree {
        agent_sha256: crate::util::hex(&Sha256::digest(&bytes)),
        agent_bytes: bytes.len() as u64,
    })
}

/// A program and its shared-library closure, laid out at their host paths
/// in a directory that becomes an overlay layer (or part of an initramfs).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppLayer {
    /// The layer's root.
    pub dir: PathBuf,
    /// The program's path (the same inside the layer as on the host).
    pub program: PathBuf,
    /// Every host path copied or recreated, sorted.
    pub files: Vec<PathBuf>,
    /// Bytes of file content copied.
    pub bytes: u64,
}

/// Recreates host path `path` under `root`: every symbolic link on the way
/// (such as `/lib -> usr/lib` on a merged-/usr system) becomes the same
/// link in the layer, and the file it finally names is copied. Returns the
/// paths created.
fn replicate(
    root: &Path,
    path: &Path,
    created: &mut Vec<PathBuf>,
    bytes: &mut u64,
) -> Result<(), ImageError> {
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path.components().skip(1).collect();
    for (i, comp) in comps.iter().enumerate() {
        let next = cur.join(comp);
        let meta = std::fs::symlink_metadata(&next)
            .map_err(io_err(format!("reading {}", next.display())))?;
        let inside = root.join(next.strip_prefix("/").unwrap_or(&next));
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&next)
                .map_err(io_err(format!("reading link {}", next.display())))?;
            if std::fs::symlink_metadata(&inside).is_err() {
                if let Some(parent) = inside.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("creating {}", parent.display())))?;
                }
                std::os::unix::fs::symlink(&target, &inside)
                    .map_err(io_err(format!("creating link {}", inside.display())))?;
                created.push(next.clone());
            }
            // Continue from what the link names, with the rest of the path.
            let resolved = if target.is_absolute() {
                target
            } else {
                cur.join(target)
            };
            let mut rest = resolved;
            for c in &comps[i + 1..] {
                rest.push(c);
            }
            return replicate(root, &normalize(&rest), created, bytes);
        }
        if i + 1 == comps.len() {
            if meta.is_file() && std::fs::symlink_metadata(&inside).is_err() {
                if let Some(parent) = inside.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("creating {}", parent.display())))?;
                }
                std::fs::copy(&next, &inside).map_err(io_err(format!(
                    "copying {} to {}",
                    next.display(),
                    inside.display()
                )))?;
                *bytes += meta.len();
                created.push(next.clone());
            }
            return Ok(());
        }
        cur = next;
    }
    Ok(())
}

/// Removes `.` and `..` lexically (link targets such as `../lib/x` are
/// relative to the link's directory).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Packs `program` (an absolute path) with everything the dynamic loader
/// needs to start it — its interpreter, the libraries of its `DT_NEEDED`
/// closure as found through `RUNPATH`/`RPATH`, `ld.so.conf` and the default
/// directories, with their symlink names kept — and the host's
/// `/etc/ld.so.cache`, into a layer at `dir`. Libraries opened with
/// `dlopen` are not in the closure; list them as extra files.
pub fn app_layer(program: &Path, dir: &Path) -> Result<AppLayer, ImageError> {
    let closure_err = |reason: String| ImageError::Closure {
        program: program.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let mut paths = vec![program.to_path_buf()];
    let mut magic = [0u8; 4];
    let is_elf = File::open(program)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut magic))
        .map(|()| &magic == b"\x7fELF")
        .map_err(io_err(format!("reading {}", program.display())))?;
    if is_elf {
        let tree = lddtree::DependencyAnalyzer::new(PathBuf::from("/"))
            .analyze(program)
            .map_err(|e| closure_err(format!("cannot read its dynamic dependencies: {e}")))?;
        if let Some(interp) = &tree.interpreter {
            paths.push(PathBuf::from(interp));
        }
        let mut libs: Vec<_> = tree.libraries.values().collect();
        libs.sort_by(|a, b| a.name.cmp(&b.name));
        for lib in libs {
            if !lib.found() {
                return Err(closure_err(format!(
                    "its library {} was not found on this host",
                    lib.name
                )));
            }
            paths.push(lib.path.clone());
        }
        if Path::new("/etc/ld.so.cache").is_file() {
            paths.push(PathBuf::from("/etc/ld.so.cache"));
        }
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    for p in &paths {
        replicate(dir, p, &mut files, &mut bytes)?;
    }
    files.sort();
    files.dedup();
    Ok(AppLayer {
        dir: dir.to_path_buf(),
        program: program.to_path_buf(),
        files,
        bytes,
    })
}

/// Finds a program like a shell does: a name with a `/` is taken as a
/// path; anything else is searched in `$PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = std::path::absolute(name).ok()?;
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// A special file added to an archive that the tree on disk does not hold
/// (creating device nodes on disk would need privileges; in the archive
/// they are just headers, created by the kernel when it unpacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// Full mode, file type bits included.
    pub mode: u32,
    /// Device major and minor number.
    pub rdev: (u32, u32),
}

impl Node {
    /// `/dev/console` (5, 1): the kernel opens it as init's stdin, stdout
    /// and stderr; without it, PID 1 starts with no output at all.
    pub fn console() -> Node {
        Node {
            path: "dev/console".into(),
            mode: 0o020600,
            rdev: (5, 1),
        }
    }

    /// An empty directory (mode 0755); left out when the tree has it already.
    pub fn directory(path: &str) -> Node {
        Node {
            path: path.into(),
            mode: 0o040755,
            rdev: (0, 0),
        }
    }
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        out.push(rel_path.clone());
        if is_dir {
            collect(root, &rel_path, out)?;
        }
    }
    Ok(())
}

/// Writes the tree under `root`, plus `extra` nodes, as a deterministic
/// newc archive. Regular files, directories and symbolic links are
/// supported; anything else is an error naming the file.
pub fn write_newc<W: Write>(root: &Path, extra: &[Node], out: W) -> io::Result<W> {
    write_newc_with(root, extra, &[], out)
}

/// [`write_newc`], plus host files placed at other paths of the archive
/// (`(path in the archive, file on the host)`), such as kernel modules in
/// a VM's initramfs. A path may appear once; only a directory node that
/// the tree already has is dropped.
pub fn write_newc_with<W: Write>(
    root: &Path,
    extra: &[Node],
    files: &[(String, PathBuf)],
    mut out: W,
) -> io::Result<W> {
    let mut paths = Vec::new();
    collect(root, Path::new(""), &mut paths)?;
    enum Item {
        Disk(PathBuf),
        Extra(Node),
        Host(PathBuf),
    }
    let mut items: Vec<(String, Item)> = paths
        .into_iter()
        .map(|p| (p.to_string_lossy().into_owned(), Item::Disk(p)))
        .collect();
    let in_tree: std::collections::BTreeSet<String> = items.iter().map(|i| i.0.clone()).collect();
    items.extend(
        extra
            .iter()
            .filter(|n| !(n.mode & 0o170000 == 0o040000 && in_tree.contains(&n.path)))
            .map(|n| (n.path.clone(), Item::Extra(n.clone()))),
    );
    items.extend(
        files
            .iter()
            .map(|(path, host)| (path.clone(), Item::Host(host.clone()))),
    );
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = items.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(io::Error::other(format!(
            "`{}` would appear twice in the archive",
            pair[0].0
        )));
    }

    for (ino, (name, item)) in items.into_iter().enumerate() {
        let ino = ino as u32 + 1;
        let builder = cpio::newc::Builder::new(&name)
            .ino(ino)
            .uid(0)
            .gid(0)
            .mtime(0);
        match item {
            Item::Extra(node) => {
                let w = builder
                    .mode(node.mode)
                    .nlink(1)
                    .rdev_major(node.rdev.0)
                    .rdev_minor(node.rdev.1)
                    .write(&mut out, 0);
                w.finish()?;
            }
            Item::Host(path) => {
                let meta = std::fs::metadata(&path)?;
                let size = u32::try_from(meta.len()).map_err(|_| {
                    io::Error::other(format!(
                        "{} is larger than 4 GiB, too large for newc",
                        path.display()
                    ))
                })?;
                let mut w = builder.mode(0o100644).nlink(1).write(&mut out, size);
                io::copy(&mut File::open(&path)?, &mut w)?;
                w.finish()?;
            }
            Item::Disk(rel) => {
                let path = root.join(&rel);
                let meta = std::fs::symlink_metadata(&path)?;
                let ft = meta.file_type();
                let perm = meta.mode() & 0o7777;
                if ft.is_dir() {
                    builder
                        .mode(0o040000 | perm)
                        .nlink(2)
                        .write(&mut out, 0)
                        .finish()?;
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    let target = target.as_os_str().as_encoded_bytes();
                    let mut w = builder
                        .mode(0o120777)
                        .nlink(1)
                        .write(&mut out, target.len() as u32);
                    w.write_all(target)?;
                    w.finish()?;
                } else if ft.is_file() {
                    let size = u32::try_from(meta.len()).map_err(|_| {
                        io::Error::other(format!(
                            "{} is larger than 4 GiB, too large for newc",
                            path.display()
                        ))
                    })?;
                    let mut w = builder.mode(0o100000 | perm).nlink(1).write(&mut out, size);
                    io::copy(&mut File::open(&path)?, &mut w)?;
                    w.finish()?;
                } else {
                    return Err(io::Error::other(format!(
                        "{}: only files, directories and symbolic links can go into an image",
                        path.display()
                    )));
                }
            }
        }
    }
    cpio::newc::trailer(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The entry names of a newc archive, in order.
    pub(crate) fn entry_names(archive: &[u8]) -> Vec<String> {
        entries(archive).into_iter().map(|e| e.0).collect()
    }

    fn temp(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("img-{name}"))
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("b/c/file"), b"hello").unwrap();
        std::fs::write(root.join("init"), b"#!agent").unwrap();
        std::os::unix::fs::symlink("c/file", root.join("b/link")).unwrap();
    }

    fn entries(archive: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = archive;
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry().clone();
            let mut data = Vec::new();
            io::Read::read_to_end(&mut reader, &mut data).unwrap();
            out.push((e.name().to_string(), e.ino(), e.mode(), data));
            rest = reader.finish().unwrap();
        }
        out
    }

    #[test]
    fn archives_are_deterministic_and_sorted() {
        let (one, two) = (temp("one"), temp("two"));
        tree(&one);
        tree(&two);
        // A different mtime on one side must not change the archive.
        let f = File::options().write(true).open(two.join("init")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let a = write_newc(&one, &[Node::console()], Vec::new()).unwrap();
        let b = write_newc(&two, &[Node::console()], Vec::new()).unwrap();
        assert_eq!(a, b, "same tree, same bytes");

        let list = entries(&a);
        let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "b/c", "b/c/file", "b/link", "dev/console", "init"]
        );
        let inos: Vec<u32> = list.iter().map(|e| e.1).collect();
        assert_eq!(inos, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(list[3].3, b"hello");
        assert_eq!(list[4].2 & 0o170000, 0o120000);
        assert_eq!(list[4].3, b"c/file");
        assert_eq!(list[5].2, 0o020600);
        std::fs::remove_dir_all(one).unwrap();
        std::fs::remove_dir_all(two).unwrap();
    }

    #[test]
    fn app_layer_holds_the_closure_with_link_names_kept() {
        let dir = temp("app");
        // `ls` needs libc and more (libselinux, libpcre2 on Debian).
        let ls = find_program("ls").expect("ls is on every host");
        let layer = app_layer(&ls, &dir.join("layer")).unwrap();
        let tree = lddtree::DependencyAnalyzer::new("/".into())
            .analyze(&ls)
            .unwrap();
        assert!(
            tree.libraries.len() >= 2,
            "ls has several libraries: {:?}",
            tree.libraries.keys()
        );
        for lib in tree.libraries.values() {
            let inside = dir.join("layer").join(lib.path.strip_prefix("/").unwrap());
            assert!(
                inside.exists(),
                "{} missing from the layer",
                lib.path.display()
            );
        }
        let interp = tree.interpreter.unwrap();
        let inside = dir.join("layer").join(interp.trim_start_matches('/'));
        assert!(inside.exists(), "the interpreter {interp} is in the layer");
        assert!(
            dir.join("layer")
                .join(ls.strip_prefix("/").unwrap())
                .is_file()
        );
        // Host directory links (merged /usr) are links in the layer too.
        if std::fs::symlink_metadata("/lib").is_ok_and(|m| m.file_type().is_symlink()) {
            assert!(
                std::fs::symlink_metadata(dir.join("layer/lib"))
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
        assert!(layer.bytes > 100_000, "{}", layer.bytes);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn programs_are_found_like_a_shell_finds_them() {
        assert!(find_program("sh").is_some());
        assert_eq!(
            find_program("/bin/sh").as_deref(),
            Some(Path::new("/bin/sh"))
        );
        assert_eq!(find_program("no-such-program-isobench"), None);
        let dir = temp("notexec");
        std::fs::write(dir.join("data"), b"x").unwrap();
        std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            find_program(dir.join("data").to_str().unwrap()),
            None,
            "not executable"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dynamic_executables_are_refused() {
        let err = check_static(Path::new("/bin/sh")).unwrap_err();
        assert!(matches!(err, ImageError::AgentNotStatic { .. }), "{err}");
        assert!(err.to_string().contains("ld-linux"), "{err}");
        let dir = temp("notelf");
        std::fs::write(dir.join("x"), b"not an elf").unwrap();
        assert!(matches!(
            check_static(&dir.join("x")),
            Err(ImageError::AgentNotElf { .. })
        ));
        // An ELF header whose program headers are cut off.
        let sh = std::fs::read("/bin/sh").unwrap();
        std::fs::write(dir.join("cut"), &sh[..64]).unwrap();
        let err = check_static(&dir.join("cut")).unwrap_err();
        assert!(matches!(err, ImageError::AgentNotElf { .. }), "{err}");
        // The static agent passes (when built beside the test binary).
        if let Ok(agent) = find_agent() {
            check_static(&agent).unwrap();
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
