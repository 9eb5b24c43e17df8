//! isobench: what does isolation cost?
//!
//! The crate runs the same workload bytes natively, inside its own
//! namespace-based containers and inside QEMU guests, and turns what it
//! measures into records, statistics and reports. The modules follow the
//! pipeline:
//!
//! ```text
//! scenario ──► image ──► env::{native,container,vm} × workload ──► record ──► stats ──► report
//! ```
//!
//! - [`scenario`]: the TOML scenario, validated into a [`scenario::Plan`];
//! - [`workload`]: the workload specifications shared by host and agent;
//! - [`agent`]: the program that runs inside every environment, and the
//!   frame protocol it speaks ([`agent::frame`]);
//! - [`image`]: the one root filesystem per run, and its cpio packing;
//! - [`env`]: the [`env::Environment`] trait and its implementations;
//! - [`kernel`]: provisioning of the guest kernel;
//! - [`run`]: the harness that drives instances and records what they did;
//! - [`exec`]: one program, once, in a fresh environment (`isobench exec`);
//! - [`cgroup`]: per-instance cgroups for limits and accounting;
//! - [`seccomp`]: Docker's default system-call filter, and profiles in its format;
//! - [`record`], [`meta`], [`stats`], [`report`]: results and their rendering;
//! - [`compare`]: the regression gate between two runs;
//! - [`check`]: the bounds gate on one run (ratios to native, medians);
//! - [`rundir`]: a run's runtime directory on the host, and `isobench clean`;
//! - [`doctor`]: what works on this host;
//! - [`cli`]: the command line of the `isobench` binary.

pub mod agent;
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod compare;
pub mod describe;
pub mod doctor;
pub mod env;
pub mod exec;
pub mod extract;
pub mod history;
pub mod image;
pub mod kernel;
pub mod merge;
pub mod meta;
pub mod net;
pub mod out;
pub mod record;
pub mod report;
pub mod run;
pub mod rundir;
pub mod sample;
pub mod scenario;
pub mod seccomp;
pub mod stats;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tomlfile;
pub mod util;
pub mod workload;
