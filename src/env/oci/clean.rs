//! What a crashed run left in the runtimes, found by its id and removed by
//! `isobench clean`: containers in the run-private state roots of runc,
//! crun and runsc (`<run-dir>/oci/<program>`), and the containers labelled
//! `isobench.run=<run-id>` and the image the run imported into Docker or
//! Podman (from the record the run wrote before making them).

use super::daemon::{Record, record_path};
use crate::env::EnvKind;
use std::path::Path;
use std::process::Stdio;

/// Removes what run `run_id`, whose runtime directory is `dir`, left in
/// the runtimes; returns one line per thing removed.
pub fn clean_run(dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for kind in [EnvKind::Runc, EnvKind::Crun, EnvKind::Gvisor] {
        let program = super::direct::program(kind);
        let root = dir.join("oci").join(program);
        if !root.is_dir() {
            continue;
        }
        let hide = kind == EnvKind::Crun && super::hybrid_cgroups();
        let runtime = |args: &[&str]| {
            let mut cmd = super::tool(program);
            if hide {
                super::direct::hide_unified(&mut cmd);
            }
            cmd.arg("--root")
                .arg(&root)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
        };
        let listed = runtime(&["list"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in listed
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
        {
            if runtime(&["delete", "--force", id]).is_some_and(|o| o.status.success()) {
                removed.push(format!("{program} container {id}"));
            }
        }
    }
    for kind in [EnvKind::Docker, EnvKind::Podman] {
        let Some(record) = std::fs::read(record_path(dir, kind))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        else {
            continue;
        };
        let cli = |args: &[&str]| {
            let mut cmd = super::tool(&record.cli);
            // The daemon the run used, not the cleaning shell's.
            for var in super::daemon::CLI_ENV {
                cmd.env_remove(var);
            }
            cmd.envs(record.env.iter().map(|(k, v)| (k, v)))
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
        };
        let label = format!("label=isobench.run={}", record.run_id);
        let ids = cli(&["ps", "--all", "--quiet", "--filter", &label])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            if cli(&["rm", "--force", id]).is_some_and(|o| o.status.success()) {
                removed.push(format!("{kind} container {id}"));
            }
        }
        if cli(&["rmi", "--force", &record.image]).is_some_and(|o| o.status.success()) {
            removed.push(format!("{kind} image {}", record.image));
        }
    }
    removed
}
