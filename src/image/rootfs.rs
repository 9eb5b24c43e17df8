//! A real image made ready for an environment: [`assemble`] gives
//!
//! - (a) the read-only overlay lower directories, top first: the run's own
//!   layer (the agent as `/init`, the mount points, programs packed from
//!   the host) above the image's layers from the layer cache — what
//!   isobench's container mounts as its overlay's lowers;
//! - (b) the same layers merged: a read-only overlay mounted in the run's
//!   directory, unmounted when the [`Rootfs`] is dropped (and detached by
//!   `isobench clean` after a crash, as every mount under a run directory)
//!   — what a VM packs into its initramfs, an OCI bundle can name as its
//!   `rootfs`, and `docker import` / `podman import` can take as a tar.
//!
//! [`find_in_layers`] looks a program up in the image's layers as
//! overlayfs would show them, without mounting anything, so a `command`
//! workload can be checked before a run starts.

use super::ImageError;
use super::oci::ImageLayers;
use super::unpack::OPAQUE_XATTR;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// The directories a shell searches for a name without `/`, in an image.
pub const IMAGE_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A run's root file system on a real image (see the module's text).
#[derive(Debug)]
pub struct Rootfs {
    /// (a) The overlay lower directories, top first.
    pub lowers: Vec<PathBuf>,
    /// (b) The merged tree, mounted read-only.
    pub merged: PathBuf,
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if nix::mount::umount2(&self.merged, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            let _ = std::fs::remove_dir(&self.merged);
        }
    }
}

/// The one way every environment gets a real image: `top` (the run's own
/// layer: agent, mount points, host programs) above `image`'s layers, as
/// (a) lower directories and (b) a merged read-only overlay mounted at `at`
/// (a new directory inside the run's directory).
pub fn assemble(image: &ImageLayers, top: &Path, at: &Path) -> Result<Rootfs, ImageError> {
    let mut lowers = vec![top.to_path_buf()];
    lowers.extend(image.dirs.iter().cloned());
    merge(lowers, at)
}

/// `lowers` (top first, at least two) merged by a read-only overlay mounted
/// at `at` (a new directory inside the run's directory).
pub fn merge(lowers: Vec<PathBuf>, at: &Path) -> Result<Rootfs, ImageError> {
    let mut opts = String::from("lowerdir=");
    for (i, l) in lowers.iter().enumerate() {
        let s = l.to_string_lossy();
        if s.contains([',', ':']) {
            return Err(ImageError::Io {
                what: format!("mounting the image's layers at {}", at.display()),
                source: std::io::Error::other(format!(
                    "{s} holds `,` or `:`, which overlay options cannot name"
                )),
            });
        }
        if i > 0 {
            opts.push(':');
        }
        opts.push_str(&s);
    }
    // The kernel reads mount options from one page.
    if opts.len() >= 4096 {
        return Err(ImageError::Io {
            what: format!("mounting the image's layers at {}", at.display()),
            source: std::io::Error::other(format!(
                "{} layers make overlay options of {} bytes, more than the kernel's 4095",
                lowers.len(),
                opts.len()
            )),
        });
    }
    std::fs::create_dir(at).map_err(super::io_err(format!("creating {}", at.display())))?;
    nix::mount::mount(
        Some("overlay"),
        at,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .map_err(|e| {
        let _ = std::fs::remove_dir(at);
        ImageError::Io {
            what: format!("mounting the image's layers (overlay) at {}", at.display()),
            source: e.into(),
        }
    })?;
    Ok(Rootfs {
        lowers,
        merged: at.to_path_buf(),
    })
}

/// What one path is in the merged view.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Missing,
    Dir,
    File(u32),
    Link(PathBuf),
}

fn opaque(path: &Path) -> bool {
    let mut v = [0u8; 2];
    rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut v[..]).is_ok_and(|n| &v[..n] == b"y")
}

/// `rel` in the layers (top first) as overlayfs merges them: a whiteout
/// hides what is below it, an opaque directory the directories below it,
/// and a non-directory everything below it.
fn lookup(layers: &[PathBuf], rel: &Path) -> Node {
    let comps: Vec<Component<'_>> = rel.components().collect();
    let mut visible: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
    let mut node = Node::Dir;
    for i in 0..comps.len() {
        let prefix: PathBuf = comps[..=i].iter().collect();
        let mut next = Vec::new();
        let mut found = None;
        for l in &visible {
            let p = l.join(&prefix);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_char_device() && m.rdev() == 0 {
                break;
            }
            if m.is_dir() {
                if found.is_none() {
                    found = Some(Node::Dir);
                }
                if found == Some(Node::Dir) {
                    next.push(*l);
                }
                if opaque(&p) {
                    break;
                }
                continue;
            }
            if found.is_none() {
                found = Some(if m.file_type().is_symlink() {
                    Node::Link(std::fs::read_link(&p).unwrap_or_default())
                } else {
                    Node::File(m.mode())
                });
            }
            break;
        }
        match found {
            None => return Node::Missing,
            Some(Node::Dir) => visible = next,
            Some(other) if i + 1 == comps.len() => return other,
            // A file or link in the middle: the caller resolves links.
            Some(_) => return Node::Missing,
        }
        node = Node::Dir;
    }
    node
}

/// Whether `program` names an executable file in the image (layers top
/// first), following the image's symbolic links inside the image; a name
/// without `/` is searched in [`IMAGE_PATH`]. Returns the path to run.
pub fn find_in_layers(layers: &[PathBuf], program: &str) -> Option<PathBuf> {
    if !program.contains('/') {
        return IMAGE_PATH
            .iter()
            .map(|d| format!("{d}/{program}"))
            .find_map(|p| find_in_layers(layers, &p));
    }
    if !program.starts_with('/') {
        return None;
    }
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    push_reversed(&mut todo, Path::new(program));
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&c);
        match lookup(layers, &candidate) {
            Node::Missing => return None,
            Node::Dir => cur = candidate,
            Node::File(mode) => {
                return (todo.is_empty() && mode & 0o111 != 0).then(|| PathBuf::from(program));
            }
            Node::Link(target) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                push_reversed(&mut todo, &target);
            }
        }
    }
    None
}

fn push_reversed(todo: &mut Vec<std::ffi::OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => todo.push("..".into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn programs_are_found_through_the_layers_links_and_whiteouts() {
        let dir = crate::testutil::TempDir::new("rootfs-find");
        let (low, up) = (dir.join("low"), dir.join("up"));
        exe(&low.join("usr/bin/tool"));
        exe(&low.join("usr/bin/gone"));
        exe(&low.join("opq/old"));
        std::fs::create_dir_all(&up).unwrap();
        // /bin -> usr/bin (merged /usr), an absolute link, in the upper layer.
        std::os::unix::fs::symlink("usr/bin", up.join("bin")).unwrap();
        std::fs::create_dir_all(up.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/tool", up.join("sbin/t")).unwrap();
        std::fs::write(low.join("usr/bin/data"), b"not executable").unwrap();
        let layers = vec![up.clone(), low.clone()];
        assert_eq!(
            find_in_layers(&layers, "/bin/tool"),
            Some("/bin/tool".into())
        );
        assert_eq!(find_in_layers(&layers, "/sbin/t"), Some("/sbin/t".into()));
        assert_eq!(
            find_in_layers(&layers, "tool"),
            Some("/usr/bin/tool".into())
        );
        assert_eq!(find_in_layers(&layers, "/usr/bin/data"), None);
        assert_eq!(find_in_layers(&layers, "/usr/bin/nothing"), None);
        assert_eq!(find_in_layers(&layers, "relative/x"), None);
        if nix::unistd::geteuid().is_root() {
            use nix::sys::stat::{Mode, SFlag, makedev, mknod};
            std::fs::create_dir_all(up.join("usr/bin")).unwrap();
            mknod(
                &up.join("usr/bin/gone"),
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
            .unwrap();
            assert_eq!(find_in_layers(&layers, "/usr/bin/gone"), None, "whiteout");
            std::fs::create_dir_all(up.join("opq")).unwrap();
            rustix::fs::lsetxattr(
                up.join("opq"),
                OPAQUE_XATTR,
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            assert_eq!(find_in_layers(&layers, "/opq/old"), None, "opaque");
            assert!(find_in_layers(&layers, "/usr/bin/tool").is_some());
        }
    }
}
