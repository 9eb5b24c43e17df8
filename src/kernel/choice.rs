//! Which guest kernel a VM boots: `[vm] kernel = "minimal" | "distro" |
//! PATH` in a scenario, `--kernel` on the command line.

use super::{GuestKernel, KernelError, minimal, resolve};
use std::path::{Path, PathBuf};

/// Which guest kernel a VM boots: `[vm] kernel` and `--kernel`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// The distribution's cloud kernel `isobench kernel fetch` stored.
    #[default]
    Distro,
    /// The minimal kernel `isobench kernel build` made.
    Minimal,
    /// A kernel image file.
    Path(PathBuf),
}

impl KernelChoice {
    /// `minimal`, `distro`, or else a path (`./minimal` for a file of
    /// that name).
    pub fn parse(text: &str) -> KernelChoice {
        match text {
            "minimal" => KernelChoice::Minimal,
            "distro" => KernelChoice::Distro,
            path => KernelChoice::Path(PathBuf::from(path)),
        }
    }

    /// How reports and `meta.json` name it.
    pub fn label(&self) -> String {
        match self {
            KernelChoice::Distro => "distro".into(),
            KernelChoice::Minimal => "minimal".into(),
            KernelChoice::Path(p) => p.display().to_string(),
        }
    }
}

impl std::str::FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("give `minimal`, `distro` or a kernel image's path".into());
        }
        Ok(KernelChoice::parse(s))
    }
}

/// The kernel a choice names, or the error saying how to get it.
pub fn resolve_choice(choice: &KernelChoice, cache: &Path) -> Result<GuestKernel, KernelError> {
    match choice {
        KernelChoice::Distro => resolve(None, cache),
        KernelChoice::Minimal => minimal::resolve(cache),
        KernelChoice::Path(p) => resolve(Some(p), cache),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_choice_names_the_two_kernels_or_a_file() {
        assert_eq!(KernelChoice::parse("minimal"), KernelChoice::Minimal);
        assert_eq!(KernelChoice::parse("distro"), KernelChoice::Distro);
        assert_eq!(
            "./minimal".parse::<KernelChoice>().unwrap(),
            KernelChoice::Path("./minimal".into())
        );
        assert!("".parse::<KernelChoice>().is_err());
        assert_eq!(KernelChoice::Minimal.label(), "minimal");
        assert_eq!(KernelChoice::default(), KernelChoice::Distro);
        let err = resolve_choice(
            &KernelChoice::Path("/nonexistent/k".into()),
            Path::new("/x"),
        )
        .unwrap_err();
        assert!(matches!(err, KernelError::NotFound(_)));
    }
}
