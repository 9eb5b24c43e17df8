//! Bind mounts of host paths into a container (`--volume HOST:GUEST[:ro]`,
//! `[container] volumes`).

use serde::Serialize;
use std::path::PathBuf;

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// The host path (must exist).
    pub host: PathBuf,
    /// The absolute path inside the container.
    pub guest: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses `HOST:GUEST[:ro|:rw]`; both paths must be absolute, and the
    /// host path must exist.
    pub fn parse(spec: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            [_, _, mode] => {
                return Err(format!(
                    "volume `{spec}`: unknown mode `{mode}` (use ro or rw)"
                ));
            }
            _ => return Err(format!("volume `{spec}`: expected HOST:GUEST[:ro]")),
        };
        let (host, guest) = (PathBuf::from(host), PathBuf::from(guest));
        if !host.is_absolute() || !guest.is_absolute() {
            return Err(format!("volume `{spec}`: both paths must be absolute"));
        }
        if guest
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "volume `{spec}`: the container path may not contain `..`"
            ));
        }
        // `components` drops `.` and repeated slashes: `//` and `/./` are `/`.
        let top = guest.components().find_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        });
        match top.map(|n| n.to_string_lossy()).as_deref() {
            None => {
                return Err(format!(
                    "volume `{spec}`: cannot mount over the container's root `/` (its root is \
                     the image); mount into a directory such as /data"
                ));
            }
            Some(top @ ("proc" | "sys" | "dev")) => {
                return Err(format!(
                    "volume `{spec}`: the container mounts its own /{top} (a fresh one, \
                     with masks), which a volume would hide or be hidden by; mount elsewhere, \
                     such as /data"
                ));
            }
            Some(_) => {}
        }
        if !host.exists() {
            return Err(format!(
                "volume `{spec}`: {} does not exist on the host",
                host.display()
            ));
        }
        Ok(Volume {
            host,
            guest,
            read_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_and_are_checked() {
        let tmp = std::env::temp_dir();
        let spec = format!("{}:/data:ro", tmp.display());
        assert_eq!(
            Volume::parse(&spec).unwrap(),
            Volume {
                host: tmp.clone(),
                guest: "/data".into(),
                read_only: true
            }
        );
        assert!(
            !Volume::parse(&format!("{}:/data", tmp.display()))
                .unwrap()
                .read_only
        );
        assert!(
            Volume::parse("relative:/data")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            Volume::parse("/nonexistent-isobench:/data")
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            Volume::parse(&format!("{}:/data:rx", tmp.display()))
                .unwrap_err()
                .contains("mode")
        );
        assert!(
            Volume::parse(&format!("{}:/a/../b", tmp.display()))
                .unwrap_err()
                .contains("..")
        );
        assert!(Volume::parse("/only").is_err());
        // Not over the container's root, nor where it mounts /proc, /sys
        // and /dev itself, however the path is spelled.
        let tmp = tmp.display();
        for guest in ["/", "//", "/./", "/.."] {
            let err = Volume::parse(&format!("{tmp}:{guest}")).unwrap_err();
            assert!(
                err.contains("the container's root") || err.contains(".."),
                "{guest}: {err}"
            );
        }
        for guest in [
            "/proc",
            "/proc/sys",
            "//sys/",
            "/dev",
            "/dev/shm",
            "/./sys/fs",
        ] {
            let err = Volume::parse(&format!("{tmp}:{guest}:ro")).unwrap_err();
            assert!(err.contains("mounts its own"), "{guest}: {err}");
        }
        assert!(Volume::parse(&format!("{tmp}:/procfs")).is_ok());
        assert!(Volume::parse(&format!("{tmp}:/data/proc")).is_ok());
    }
}
