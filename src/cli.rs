//! The command line of `isobench`: argument handling only. Every command
//! validates its input here and hands plain settings to the library.
//!
//! Exit codes: 0 success; 1 a measured failure; 2 bad input or a missing
//! prerequisite (with the fix printed); 130 interrupted.

use crate::doctor;
use crate::env::EnvKind;
use crate::env::vm::AccelRequest;
use crate::kernel;
use crate::report;
use crate::run::{self, Settings};
use crate::runtime;
use crate::scenario::{Overrides, Plan};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// isobench: what does isolation cost? Runs the same workload natively, in
/// a container and in a VM, and reports startup, memory and CPU overhead.
#[derive(Debug, Parser)]
#[command(name = "isobench", version = env!("CARGO_PKG_VERSION"), about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write a report directory.
    Run(RunArgs),
    /// Re-render the reports of a run directory from its records.
    Report {
        /// The run directory (for example reports/latest).
        dir: PathBuf,
    },
    /// Check what works on this host, and how to fix what does not.
    Doctor,
    /// Provision the guest kernel.
    Kernel {
        #[command(subcommand)]
        action: KernelAction,
    },
    /// Remove what crashed or killed runs left behind.
    Clean,
}

#[derive(Debug, Subcommand)]
enum KernelAction {
    /// Download the distribution's cloud kernel into the cache.
    Fetch,
    /// Print the path of the guest kernel in use.
    Path,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file (default: the built-in scenarios/quick.toml).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Environments to run, comma-separated (default: the scenario's).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    env: Option<Vec<EnvKind>>,
    /// Workloads to run by name, comma-separated (default: all of the scenario's).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    workload: Option<Vec<String>>,
    /// Repetitions per workload and environment (overrides the scenario).
    #[arg(long, value_name = "N")]
    reps: Option<u32>,
    /// Directory for run directories.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    out: PathBuf,
    #[command(flatten)]
    vm: VmArgs,
}

/// The options that shape a VM guest, shared by `run` and `exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct VmArgs {
    /// VM accelerator: KVM only where it really works (auto), or forced.
    #[arg(long, value_enum, default_value_t = AccelRequest::Auto)]
    pub accel: AccelRequest,
    /// Guest kernel image (default: the one `isobench kernel fetch` stored).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Directory of the guest kernel's modules (.ko files; default: those
    /// `isobench kernel fetch` kept with its kernel).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// Virtual CPUs of a guest (overrides the scenario's vm.cpus).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=255))]
    pub cpus: Option<u64>,
    /// Memory of a guest: MiB, or with a unit (512M, 1G) (overrides the
    /// scenario's vm.memory_mib).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_mib)]
    pub memory: Option<u64>,
}

impl VmArgs {
    /// Applies `--cpus` and `--memory` to a plan's VM settings.
    pub fn apply(&self, vm: &mut crate::scenario::VmSettings) {
        if let Some(cpus) = self.cpus {
            vm.cpus = cpus;
        }
        if let Some(mib) = self.memory {
            vm.memory_mib = mib;
        }
    }
}

/// Parses a memory size into MiB: `512`, `512M`, `512MiB`, `2G`, `2GiB`.
pub fn parse_memory_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 512M or 2G"))?;
    let mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => Some(n),
        "g" | "gb" | "gib" => n.checked_mul(1024),
        _ => {
            return Err(format!(
                "`{text}`: unknown unit; use M or G (for example 512M, 2G)"
            ));
        }
    };
    match mib {
        Some(0) => Err(format!("`{text}`: a guest needs more than 0 MiB")),
        Some(m) => Ok(m),
        None => Err(format!("`{text}`: too large")),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Report { dir } => cmd_report(&dir),
        Command::Doctor => cmd_doctor(),
        Command::Kernel { action } => cmd_kernel(action),
        Command::Clean => cmd_clean(),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("isobench: error: {message}");
    ExitCode::from(code)
}

fn cmd_run(args: RunArgs) -> ExitCode {
    let overrides = Overrides {
        environments: args.env,
        workloads: args.workload,
        reps: args.reps,
    };
    let mut plan = match Plan::load(args.scenario.as_deref(), &overrides) {
        Ok(p) => p,
        Err(e) => return fail(2, e),
    };
    args.vm.apply(&mut plan.vm);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends isobench at
        // once; the first lets the run kill its instance and clean up.
        let registered =
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)));
        if let Err(e) = registered {
            return fail(1, format!("cannot install the signal handler: {e}"));
        }
    }
    let settings = Settings {
        plan,
        out_root: args.out,
        accel: args.vm.accel,
        kernel: args.vm.kernel,
        modules: args.vm.modules,
    };
    match run::run(&settings, &stop) {
        Ok(outcome) => {
            eprintln!();
            print!("{}", outcome.table);
            println!("\nreport: {}", outcome.dir.join("report.md").display());
            if outcome.interrupted {
                eprintln!(
                    "isobench: interrupted; partial results are in {}",
                    outcome.dir.display()
                );
                ExitCode::from(130)
            } else if outcome.failed > 0 {
                eprintln!(
                    "isobench: {} instance(s) failed; see the Failures section of the report",
                    outcome.failed
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

fn cmd_report(dir: &Path) -> ExitCode {
    match report::render(dir) {
        Ok(r) => {
            print!("{}", r.table);
            for f in &r.files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, e),
    }
}

fn cmd_doctor() -> ExitCode {
    let checks = doctor::checks();
    for c in &checks {
        println!("{c}");
    }
    if checks.iter().any(|c| c.status == doctor::Status::Fail) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn cmd_kernel(action: KernelAction) -> ExitCode {
    let cache = kernel::cache_dir();
    match action {
        KernelAction::Path => match kernel::resolve(None, &cache) {
            Ok(k) => {
                println!("{}", k.vmlinuz.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, e),
        },
        KernelAction::Fetch => match kernel::fetch(&cache, &mut |m| eprintln!("{m}")) {
            Ok(k) => {
                println!("{}", k.vmlinuz.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, e),
        },
    }
}

fn cmd_clean() -> ExitCode {
    let base = runtime::base_dir();
    match runtime::clean(&base, Path::new("/proc")) {
        Ok(r) => {
            for (pid, what) in &r.killed {
                println!("killed {what} pid {pid}");
            }
            for m in &r.unmounted {
                println!("unmounted {}", m.display());
            }
            for d in &r.removed {
                println!("removed {}", d.display());
            }
            for (d, why) in &r.skipped {
                println!("left {} alone: {why}", d.display());
            }
            if r.removed.is_empty() && r.skipped.is_empty() {
                println!("nothing to clean in {}", base.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("cleaning {}: {e}", base.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_to_mib() {
        assert_eq!(parse_memory_mib("512"), Ok(512));
        assert_eq!(parse_memory_mib("256M"), Ok(256));
        assert_eq!(parse_memory_mib("2G"), Ok(2048));
        assert_eq!(parse_memory_mib("1GiB"), Ok(1024));
        assert!(parse_memory_mib("0").unwrap_err().contains("more than 0"));
        assert!(
            parse_memory_mib("12T")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_memory_mib("lots").unwrap_err().contains("512M"));
    }
}
