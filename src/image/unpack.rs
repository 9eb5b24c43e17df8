//! Unpacking one OCI layer (a tar stream, plain, gzip or zstd) into a
//! directory that overlayfs can use as a read-only lower layer.
//!
//! Layers are **kept separate, not flattened**: each is unpacked once into
//! the layer cache and shared by every run and every image that holds it,
//! and overlayfs merges them at mount time. So the OCI whiteouts are
//! translated into overlayfs's own form rather than applied: `.wh.NAME`
//! becomes a character device 0/0 named `NAME` (overlayfs hides `NAME` of
//! every lower layer), and `.wh..wh..opq` becomes the
//! `trusted.overlay.opaque=y` extended attribute on its directory (the
//! lower layers' contents of that directory are hidden). Both need root
//! (`CAP_MKNOD`, `CAP_SYS_ADMIN` for `trusted.*`), which `--image` asks for.
//!
//! Nothing in a layer may reach outside its directory: entries naming an
//! absolute path or `..` are refused, as are entries (and hard-link
//! targets) whose parent in the layer is a symbolic link — the layer's own
//! links are created as they are but never followed while unpacking.
//! Device nodes and FIFOs are skipped (counted; a container gets its own
//! `/dev`). Ownership and permission bits are kept; extended attributes
//! from the archive are not (an image cannot plant overlayfs's own
//! `trusted.overlay.*` attributes this way).

use super::ImageError;
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The most a layer may unpack to, and the most entries it may hold: a
/// decompression bomb or a mislabelled disk image stops here, named.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of file content.
    pub bytes: u64,
    /// Tar entries.
    pub entries: u64,
}

impl Default for Limits {
    /// 16 GiB and two million entries: far above any image a benchmark runs.
    fn default() -> Self {
        Limits {
            bytes: 16 << 30,
            entries: 2_000_000,
        }
    }
}

/// What unpacking a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries in the archive.
    pub entries: u64,
    /// `.wh.` files turned into overlayfs whiteouts.
    pub whiteouts: u64,
    /// Directories made opaque.
    pub opaque: u64,
    /// Device nodes and FIFOs left out.
    pub skipped: u64,
}

/// A reader that hashes (SHA-256) and counts everything read through it.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads the rest, then gives `sha256:<hex>` and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", crate::util::hex(&self.hash.finalize())),
            self.bytes,
        ))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Unpacks the layer read from `blob` (compression recognised by its magic
/// bytes) into `root` (created). `layer` names it in errors.
pub fn unpack(
    blob: &mut dyn Read,
    root: &Path,
    layer: &str,
    limits: Limits,
) -> Result<Unpacked, ImageError> {
    let bad = |reason: String| ImageError::Layer {
        layer: layer.to_string(),
        reason,
    };
    std::fs::create_dir_all(root).map_err(|e| bad(format!("creating {}: {e}", root.display())))?;
    let mut buf = BufReader::new(blob);
    let magic = buf
        .fill_buf()
        .map_err(|e| bad(format!("reading: {e}")))?
        .to_vec();
    let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buf))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(buf).map_err(|e| bad(format!("zstd: {e}")))?)
    } else {
        Box::new(buf)
    };
    let mut archive = tar::Archive::new(decoded);
    let mut done = Unpacked::default();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("reading the tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the tar archive: {e}")))?;
        done.entries += 1;
        if done.entries > limits.entries {
            return Err(bad(format!(
                "more than {} entries, the limit for one layer",
                limits.entries
            )));
        }
        let raw = entry
            .path()
            .map_err(|e| bad(format!("an entry's name: {e}")))?
            .into_owned();
        let rel = relative(&raw).map_err(|why| ImageError::UnsafeEntry {
            layer: layer.to_string(),
            entry: raw.display().to_string(),
            reason: why.into(),
        })?;
        add_entry(&mut entry, root, &rel, limits, &mut done).map_err(|e| match e {
            EntryError::Unsafe(why) => ImageError::UnsafeEntry {
                layer: layer.to_string(),
                entry: raw.display().to_string(),
                reason: why,
            },
            EntryError::Io(e) => bad(format!("{}: {e}", raw.display())),
            EntryError::Limit(why) => bad(why),
        })?;
    }
    Ok(done)
}

enum EntryError {
    Unsafe(String),
    Io(io::Error),
    Limit(String),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

/// An entry's path as normal components only; `..` and absolute paths are
/// refused. The archive's root (`./`) is the empty path.
pub fn relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("its path holds `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute"),
        }
    }
    Ok(out)
}

/// Makes every directory above `rel` in `root` (mode 0755 when new);
/// refuses to pass through anything that is not a real directory.
fn parents(root: &Path, rel: &Path) -> Result<(), EntryError> {
    let mut at = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(EntryError::Unsafe(format!(
                    "it goes through the symbolic link {} of the same layer",
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            Ok(_) => {
                return Err(EntryError::Unsafe(format!(
                    "its parent {} is not a directory",
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at)?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Removes what an earlier entry of the same layer put at `path` (a later
/// entry replaces it, as tar does); a directory stays when `keep_dir`.
fn clear(path: &Path, keep_dir: bool) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// An overlayfs whiteout: a character device 0/0.
fn whiteout(path: &Path) -> io::Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io::Error::from)
}

/// The name of overlayfs's opaque-directory attribute.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn add_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    rel: &Path,
    limits: Limits,
    done: &mut Unpacked,
) -> Result<(), EntryError> {
    let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(()); // The root itself.
    };
    parents(root, rel)?;
    let path = root.join(rel);
    if let Some(hidden) = name.strip_prefix(".wh.") {
        if hidden == ".wh..opq" {
            let dir = path.parent().unwrap_or(root);
            rustix::fs::lsetxattr(dir, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                .map_err(io::Error::from)?;
            done.opaque += 1;
        } else if matches!(hidden, "" | "." | "..") {
            return Err(EntryError::Unsafe(
                "a whiteout of `.` or `..` would delete outside its directory".into(),
            ));
        } else if !hidden.starts_with(".wh.") {
            let target = path.with_file_name(hidden);
            clear(&target, false)?;
            whiteout(&target)?;
            done.whiteouts += 1;
        }
        // Other `.wh..wh.*` names are AUFS bookkeeping: nothing to do.
        return Ok(());
    }
    let header = entry.header();
    let mode = header.mode()? & 0o7777;
    let (uid, gid) = (header.uid()?, header.gid()?);
    let kind = header.entry_type();
    use tar::EntryType as T;
    match kind {
        T::Directory => {
            clear(&path, true)?;
            if !path.is_dir() {
                std::fs::create_dir(&path)?;
            }
        }
        T::Regular | T::Continuous | T::GNUSparse => {
            clear(&path, false)?;
            let mut file = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            let room = limits.bytes.saturating_sub(done.bytes);
            let n = io::copy(&mut entry.take(room.saturating_add(1)), &mut file)?;
            done.bytes += n;
            if n > room {
                return Err(EntryError::Limit(format!(
                    "it unpacks to more than {} MiB, the limit for one layer",
                    limits.bytes >> 20
                )));
            }
        }
        T::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| EntryError::Unsafe("a symbolic link without a target".into()))?;
            clear(&path, false)?;
            std::os::unix::fs::symlink(&target, &path)?;
        }
        T::Link => {
            let target = entry
                .link_name()?
                .ok_or_else(|| EntryError::Unsafe("a hard link without a target".into()))?;
            let target = relative(&target).map_err(|why| {
                EntryError::Unsafe(format!("its hard link target {}", why.replace("its ", "")))
            })?;
            parents(root, &target)?;
            let source = root.join(&target);
            let meta = std::fs::symlink_metadata(&source)?;
            if !meta.is_file() {
                return Err(EntryError::Unsafe(format!(
                    "its hard link target {} is not a regular file of the layer",
                    target.display()
                )));
            }
            clear(&path, false)?;
            std::fs::hard_link(&source, &path)?;
            return Ok(());
        }
        T::Char | T::Block | T::Fifo => {
            done.skipped += 1;
            return Ok(());
        }
        // PAX and GNU long-name headers are read by the tar crate itself.
        _ => {
            done.skipped += 1;
            return Ok(());
        }
    }
    // Owner first: chown clears the set-id bits the mode may hold.
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &path,
        Some(nix::unistd::Uid::from_raw(uid as u32)),
        Some(nix::unistd::Gid::from_raw(gid as u32)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)?;
    if kind != T::Symlink {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn layer(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    // set_link_name refuses `..`; write the raw field.
                    let name = &mut h.as_old_mut().linkname;
                    name[..data.len()].copy_from_slice(data);
                    h.set_cksum();
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append_data(&mut h, path, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A raw header whose name the tar crate's builder would refuse.
    fn raw_entry(name: &str) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&[b'x'; 512]);
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts_and_opaque_dirs() {
        if !root() {
            eprintln!("skipped: whiteouts need root (mknod, trusted xattrs)");
            return;
        }
        let dir = crate::testutil::TempDir::new("unpack-wh");
        use tar::EntryType as T;
        let bytes = layer(&[
            ("etc/", T::Directory, b""),
            ("etc/.wh.gone", T::Regular, b""),
            ("opq/", T::Directory, b""),
            ("opq/.wh..wh..opq", T::Regular, b""),
            ("opq/new", T::Regular, b"new"),
            ("bin/sh", T::Regular, b"#!"),
            ("bin/link", T::Symlink, b"/bin/sh"),
            ("bin/hard", T::Link, b"bin/sh"),
        ]);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, &bytes).unwrap();
            e.finish().unwrap()
        };
        let done = unpack(&mut &gz[..], &dir.join("l"), "test", Limits::default()).unwrap();
        assert_eq!((done.whiteouts, done.opaque), (1, 1));
        let wh = std::fs::symlink_metadata(dir.join("l/etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert!(!dir.join("l/etc/.wh.gone").exists());
        let mut v = [0u8; 4];
        let n = rustix::fs::lgetxattr(dir.join("l/opq"), OPAQUE_XATTR, &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"y");
        assert_eq!(std::fs::read(dir.join("l/bin/hard")).unwrap(), b"#!");
        assert_eq!(
            std::fs::read_link(dir.join("l/bin/link")).unwrap(),
            Path::new("/bin/sh")
        );
        // zstd too.
        let zst = zstd::encode_all(&bytes[..], 1).unwrap();
        unpack(&mut &zst[..], &dir.join("z"), "test", Limits::default()).unwrap();
        assert!(dir.join("z/opq/new").is_file());
    }

    #[test]
    fn entries_escaping_the_layer_are_refused() {
        let dir = crate::testutil::TempDir::new("unpack-esc");
        let err = unpack(
            &mut &raw_entry("../evil")[..],
            &dir.join("a"),
            "L",
            Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
        assert!(err.to_string().contains(".."), "{err}");
        assert!(!dir.join("evil").exists());
        let err = unpack(
            &mut &raw_entry("/abs")[..],
            &dir.join("b"),
            "L",
            Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        // Through a link of the layer to outside it.
        use tar::EntryType as T;
        let outside = dir.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = outside.to_string_lossy().into_owned();
        let bytes = layer(&[
            ("out", T::Symlink, t.as_bytes()),
            ("out/x", T::Regular, b"x"),
        ]);
        let err = unpack(&mut &bytes[..], &dir.join("c"), "L", Limits::default()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!outside.join("x").exists());
        let bytes = layer(&[("d/.wh...", T::Regular, b"")]);
        let err = unpack(&mut &bytes[..], &dir.join("w"), "L", Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
        assert!(dir.join("w").is_dir(), "nothing above the entry removed");
        let bytes = layer(&[("h", T::Link, b"../../etc/passwd")]);
        let err = unpack(&mut &bytes[..], &dir.join("d"), "L", Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    }

    #[test]
    fn a_layer_over_its_limit_is_refused() {
        let dir = crate::testutil::TempDir::new("unpack-big");
        use tar::EntryType as T;
        let big = vec![0u8; 4096];
        let bytes = layer(&[("a", T::Regular, &big), ("b", T::Regular, &big)]);
        let limits = Limits {
            bytes: 6000,
            entries: 10,
        };
        let err = unpack(&mut &bytes[..], &dir.join("l"), "L", limits).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
