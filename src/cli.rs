//! The command line of `isobench`: argument handling only. Every command
//! validates its input here and hands plain settings to the library.
//!
//! Exit codes: 0 success; 1 a measured failure (or, for `compare`, a
//! regression); 2 bad input or a missing prerequisite (with the fix
//! printed); 130 interrupted.

use crate::cgroup::Limits;
use crate::compare;
use crate::doctor;
use crate::env::EnvKind;
use crate::env::VmBoot;
use crate::env::container::Volume;
use crate::env::vm::AccelRequest;
use crate::exec::{self, ExecSettings};
use crate::kernel;
use crate::report;
use crate::run::{self, RunSettings};
use crate::rundir;
use crate::scenario::{self, HostCapacity, Overrides, Plan};
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
    /// Run one program once in a fresh environment, like `docker run --rm`.
    Exec(ExecArgs),
    /// Re-render the reports of a run directory from its records.
    Report {
        /// The run directory (for example reports/latest).
        dir: PathBuf,
    },
    /// Compare two run directories: exit 1 on a regression, 0 otherwise.
    Compare(CompareArgs),
    /// Check a run against bounds (ratios to native, medians): exit 1 when one is not met.
    Check(crate::check::Args),
    /// The history store: import runs, show trends, write a trend report.
    History(crate::history::command::Args),
    /// One report over runs from several hosts, each against its own native.
    Merge(crate::merge::Args),
    /// Check what works on this host, and how to fix what does not.
    Doctor,
    /// Provision the guest kernel.
    Kernel {
        #[command(subcommand)]
        action: KernelAction,
    },
    /// Remove what crashed or killed runs left behind.
    Clean,
    /// Check a scenario and print its plan (instances, estimated time); starts nothing.
    Validate(ValidateArgs),
    /// The workloads with their parameters, and the environments usable here.
    List,
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// The scenario file (default: the built-in scenarios/quick.toml).
    file: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
}

/// What `run` and `validate` may change of a scenario.
#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Environments to run, comma-separated (default: the scenario's).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    env: Option<Vec<EnvKind>>,
    /// Workloads to run by name, comma-separated (default: all of the scenario's).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    workload: Option<Vec<String>>,
    /// Repetitions per workload and environment (overrides the scenario).
    #[arg(long, value_name = "N")]
    reps: Option<u64>,
    /// Unrecorded warm-up instances per workload and environment before
    /// the repetitions (overrides the scenario).
    #[arg(long, value_name = "N")]
    warmup: Option<u64>,
}

impl From<PlanArgs> for Overrides {
    fn from(a: PlanArgs) -> Overrides {
        Overrides {
            environments: a.env,
            workloads: a.workload,
            reps: a.reps,
            warmups: a.warmup,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// Where to run it (`vm`: a fresh QEMU guest; output from its console).
    #[arg(long, value_enum, default_value_t = EnvKind::Container)]
    env: EnvKind,
    /// Memory limit (256M, 1.5G, ...); exceeding it ends in the OOM killer.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// CPU bandwidth in CPUs (1.5 = 150 ms per 100 ms).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    cpus: Option<f64>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=scenario::MAX_PIDS))]
    pids: Option<u64>,
    /// Bind mount HOST:GUEST[:ro] (repeatable; container only).
    #[arg(long, value_name = "HOST:GUEST[:ro]", value_parser = Volume::parse)]
    volume: Vec<Volume>,
    /// System-call filter (container only): `default` (Docker's default
    /// profile), `none`, or a JSON profile in Docker's format.
    #[arg(long, value_name = "default|none|PATH")]
    seccomp: Option<crate::seccomp::SeccompChoice>,
    /// Kill the program after this many seconds (at most 604800, 7 days).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=scenario::MAX_TIMEOUT_S))]
    timeout: u64,
    /// Print startup time, CPU time and peak memory on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Run on a real image: an OCI image layout directory or a `docker
    /// save` / `podman save` tarball (container and vm; needs root). CMD
    /// is looked up in the image first, then on the host.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// The program and its arguments (after --).
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
    /// How a guest boots (`--env vm`).
    #[command(flatten)]
    vm: VmBootArgs,
}

fn parse_memory(s: &str) -> Result<u64, String> {
    crate::cgroup::parse_memory_limit(s)
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.01 => Ok(v),
        _ => Err(format!(
            "`{s}`: expected a number of CPUs of at least 0.01, such as 0.5 or 2"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum KernelAction {
    /// Download the distribution's cloud kernel into the cache.
    Fetch,
    /// Print the path of a guest kernel: the fetched one (`distro`, the
    /// default) or the built one (`minimal`).
    Path {
        /// `distro` or `minimal`.
        #[arg(value_name = "distro|minimal", default_value = "distro")]
        which: String,
    },
    /// Build the minimal guest kernel from the linux-source package
    /// (tinyconfig plus kernels/minimal.config; minutes), unless built.
    Build {
        /// A config fragment to use instead of the built-in
        /// kernels/minimal.config.
        #[arg(long, value_name = "FRAGMENT")]
        config: Option<PathBuf>,
        /// Parallel compile jobs (default: the host's CPUs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        jobs: Option<u16>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file (default: the built-in scenarios/quick.toml).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
    /// No progress output (errors and the final table only).
    #[arg(long, short)]
    quiet: bool,
    /// Check the scenario and print the plan (instances, estimated time);
    /// start nothing.
    #[arg(long)]
    dry_run: bool,
    /// Directory for run directories.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    out: PathBuf,
    /// Run every environment on a real image: an OCI image layout
    /// directory or a `docker save` / `podman save` tarball (container and
    /// vm, not native; needs root). A `command` workload's program is
    /// looked up in the image first, then on the host.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Resources of every instance: a VM's RAM, a container's memory
    /// limit (256M, 1.5G, ...; overrides the scenario's vm.memory_mib and
    /// container.memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Resources of every instance: a VM's vCPUs (a whole number), a
    /// container's CPU bandwidth (overrides vm.cpus and container.cpus).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    cpus: Option<f64>,
    #[command(flatten)]
    vm: VmBootArgs,
    /// The history store the run is appended to (default: history.sqlite
    /// in the --out directory).
    #[arg(long, value_name = "PATH", conflicts_with = "no_history")]
    history: Option<PathBuf>,
    /// Do not append the run to a history store.
    #[arg(long)]
    no_history: bool,
    /// Git revision of the code under test, for the history (default:
    /// `git rev-parse HEAD` when the working directory is a git work tree).
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
}

/// How guests boot: the options `run` and `exec` share for VMs (besides
/// `--memory` and `--cpus`, which both commands have for every environment).
#[derive(Debug, Clone, clap::Args)]
pub struct VmBootArgs {
    /// VM accelerator: KVM only where it really works (auto), or forced.
    #[arg(long, value_enum, default_value_t = AccelRequest::Auto)]
    pub accel: AccelRequest,
    /// Guest kernel: `minimal` (the one `isobench kernel build` made),
    /// `distro` (the one `isobench kernel fetch` stored), or the path of a
    /// bzImage or an uncompressed PVH vmlinux (default: the scenario's
    /// `[vm] kernel`, else distro).
    #[arg(long, value_name = "minimal|distro|PATH")]
    pub kernel: Option<kernel::KernelChoice>,
    /// Directory of the guest kernel's modules (.ko files; default: those
    /// `isobench kernel fetch` kept with its kernel).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
}

impl VmBootArgs {
    /// The options as the environments take them.
    pub fn boot(&self) -> VmBoot {
        VmBoot {
            accel: self.accel,
            kernel: self.kernel.clone(),
            modules: self.modules.clone(),
        }
    }
}

/// Applies `--memory` and `--cpus` to a plan: a VM's RAM and vCPUs, a
/// container's limits. A VM needs whole MiB and whole vCPUs, and neither a
/// VM nor a container more than the host has.
pub fn apply_resources(
    plan: &mut Plan,
    memory: Option<u64>,
    cpus: Option<f64>,
    host: &HostCapacity,
) -> Result<(), String> {
    let vm = plan.environments.iter().any(|e| e.is_vm());
    let container = plan.environments.contains(&EnvKind::Container);
    if let Some(bytes) = memory {
        let mib = bytes / (1024 * 1024);
        if vm && (mib == 0 || bytes % (1024 * 1024) != 0) {
            return Err(format!(
                "--memory: a VM's memory is a whole number of MiB (at least 1M), got {bytes} bytes"
            ));
        }
        if vm {
            scenario::check_vm_memory(mib)
                .and_then(|()| host.check_memory(mib))
                .map_err(|e| format!("--memory (a VM's memory): {e}"))?;
        }
        plan.vm.memory_mib = mib.max(1);
        plan.container.limits.memory_bytes = Some(bytes);
    }
    if let Some(n) = cpus {
        if vm && (n.fract() != 0.0 || !(1.0..=255.0).contains(&n)) {
            return Err(format!(
                "--cpus {n}: a VM has a whole number of vCPUs (1 to 255); containers alone take fractions"
            ));
        }
        if vm || container {
            host.check_cpus(n).map_err(|e| format!("--cpus: {e}"))?;
        }
        plan.vm.cpus = (n as u64).max(1);
        plan.container.limits.cpus = Some(n);
    }
    Ok(())
}

/// `exec`'s limits against the host: a VM's memory and vCPUs, any
/// environment's CPU bandwidth.
pub fn check_exec_limits(env: EnvKind, limits: &Limits, host: &HostCapacity) -> Result<(), String> {
    if env.is_vm()
        && let Some(bytes) = limits.memory_bytes
    {
        scenario::check_vm_memory(bytes >> 20)
            .and_then(|()| host.check_memory(bytes >> 20))
            .map_err(|e| format!("--memory (a VM's memory): {e}"))?;
    }
    if let Some(n) = limits.cpus {
        host.check_cpus(n).map_err(|e| format!("--cpus: {e}"))?;
    }
    Ok(())
}

/// `--out DIR` must be a directory, or creatable as one: a file there (or
/// above it) would fail the run only once its preflight passed.
pub fn check_out_dir(out: &Path) -> Result<(), String> {
    let existing = out
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.symlink_metadata().is_ok());
    match existing {
        Some(a) if !a.is_dir() => Err(format!(
            "--out {}: {} is not a directory; give a directory for run directories",
            out.display(),
            a.display()
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The baseline run directory.
    baseline: PathBuf,
    /// The current run directory.
    current: PathBuf,
    /// Significance level of the permutation test.
    #[arg(long, value_name = "P", default_value_t = 0.01, value_parser = parse_alpha)]
    alpha: f64,
    /// Noise threshold: the smallest change of a median, in percent, that counts.
    #[arg(long, value_name = "PCT", default_value_t = 5.0, value_parser = parse_noise)]
    noise: f64,
    /// Also write the table (in `--format`) to this file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Output format: a Markdown table, or JSON (one object per series).
    #[arg(long, value_enum, default_value_t = CompareFormat::Md)]
    format: CompareFormat,
    /// Fail (exit 1) on an inconclusive series too: one with too few
    /// repetitions for the test to reach a verdict.
    #[arg(long)]
    strict: bool,
}

/// `isobench compare --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompareFormat {
    /// A Markdown table (for a pull-request comment).
    Md,
    /// JSON, one object per series.
    Json,
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    // The test draws at most PERMUTATIONS random splits, so its p-value is
    // never below 1 / (PERMUTATIONS + 1).
    let floor = 1.0 / (compare::PERMUTATIONS as f64 + 1.0);
    match s.parse::<f64>() {
        Ok(a) if a > floor && a < 1.0 => Ok(a),
        _ => Err(format!(
            "expected a probability above {floor:.5} (the permutation test's resolution) and \
             below 1, got `{s}`"
        )),
    }
}

fn parse_noise(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("expected a percentage >= 0, got `{s}`")),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    // Output piped into `head` and closed early must not kill isobench in
    // the middle of a run: writes get EPIPE instead (see `out`).
    crate::out::ignore_sigpipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Exec(args) => cmd_exec(args),
        Command::Report { dir } => cmd_report(&dir),
        Command::Compare(args) => cmd_compare(args),
        Command::Check(args) => crate::check::main(args),
        Command::History(args) => crate::history::command::main(args),
        Command::Merge(args) => crate::merge::main(args),
        Command::Doctor => cmd_doctor(),
        Command::Kernel { action } => cmd_kernel(action),
        Command::Clean => cmd_clean(),
        Command::Validate(args) => cmd_validate(args),
        Command::List => {
            crate::show_part!("{}", crate::describe::catalog());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "isobench", &mut out);
            crate::show_part!("{}", String::from_utf8_lossy(&out));
            ExitCode::SUCCESS
        }
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    crate::say!("isobench: error: {message}");
    ExitCode::from(code)
}

fn cmd_run(args: RunArgs) -> ExitCode {
    let overrides = Overrides::from(args.plan);
    let mut plan = match Plan::load(args.scenario.as_deref(), &overrides) {
        Ok(p) => p,
        Err(e) => return fail(2, e),
    };
    let host = HostCapacity::detect(&rundir::runtime_dir().0.join(rundir::OWN_DIR));
    if let Err(e) = apply_resources(&mut plan, args.memory, args.cpus, &host) {
        return fail(2, e);
    }
    if let Err(e) = plan.check_host(&host) {
        return fail(2, e);
    }
    if args.dry_run {
        crate::show_part!("{}", crate::describe::plan_table(&plan));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = check_out_dir(&args.out) {
        return fail(2, e);
    }
    let stop = match stop_flag() {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let revision = args.revision.or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| crate::history::git_revision(&d))
    });
    let store = (!args.no_history).then(|| {
        args.history
            .unwrap_or_else(|| args.out.join(crate::history::STORE_FILE))
    });
    let settings = RunSettings {
        plan,
        out_root: args.out,
        boot: args.vm.boot(),
        progress: run::progress::Mode::detect(args.quiet),
        revision,
        image: args.image,
    };
    match run::run(&settings, &stop) {
        Ok(outcome) => {
            crate::say!();
            crate::show_part!("{}", outcome.table);
            crate::show!("\nreport: {}", outcome.dir.join("report.md").display());
            if let Some(store) = &store {
                match crate::history::command::append_run(store, &outcome.dir) {
                    Ok(()) => crate::show!("history: {}", store.display()),
                    Err(warning) => crate::say!("isobench: {warning}"),
                }
            }
            if outcome.interrupted && crate::out::closed() {
                crate::say!(
                    "isobench: output closed; stopped, partial results are in {}",
                    outcome.dir.display()
                );
                ExitCode::from(crate::out::EXIT_CLOSED)
            } else if outcome.interrupted {
                crate::say!(
                    "isobench: interrupted; partial results are in {}",
                    outcome.dir.display()
                );
                ExitCode::from(130)
            } else if outcome.failed > 0 {
                crate::say!(
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

/// A flag set by SIGINT, SIGTERM or SIGHUP, or by a closed stdout or
/// stderr: the run stops, kills its instance and cleans up. Every further
/// signal is the same request; none skips the cleanup.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    crate::out::stop_on_close(Arc::clone(&stop));
    Ok(stop)
}

fn cmd_validate(args: ValidateArgs) -> ExitCode {
    let overrides = Overrides::from(args.plan);
    let plan = match Plan::load(args.file.as_deref(), &overrides) {
        Ok(p) => p,
        Err(e) => return fail(2, e),
    };
    let host = HostCapacity::detect(&rundir::runtime_dir().0.join(rundir::OWN_DIR));
    if let Err(e) = plan.check_host(&host) {
        return fail(2, e);
    }
    crate::show_part!("{}", crate::describe::plan_table(&plan));
    ExitCode::SUCCESS
}

fn cmd_exec(args: ExecArgs) -> ExitCode {
    let limits = Limits {
        memory_bytes: args.memory,
        cpus: args.cpus,
        pids: args.pids,
    };
    let host = HostCapacity::detect(&rundir::runtime_dir().0.join(rundir::OWN_DIR));
    if let Err(e) = check_exec_limits(args.env, &limits, &host) {
        return fail(2, e);
    }
    let stop = match stop_flag() {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let settings = ExecSettings {
        env: args.env,
        argv: args.command,
        limits,
        volumes: args.volume,
        seccomp: args.seccomp,
        timeout: std::time::Duration::from_secs(args.timeout),
        stats: args.stats,
        boot: args.vm.boot(),
        image: args.image,
    };
    match exec::exec(&settings, &stop) {
        Ok(outcome) => {
            for m in &outcome.messages {
                crate::say!("{m}");
            }
            ExitCode::from(outcome.code)
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

fn cmd_report(dir: &Path) -> ExitCode {
    match report::render(dir) {
        Ok(r) => {
            crate::show_part!("{}", r.table);
            for f in &r.files {
                crate::show!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, e),
    }
}

fn cmd_compare(args: CompareArgs) -> ExitCode {
    let settings = compare::Thresholds {
        alpha: args.alpha,
        noise_pct: args.noise,
    };
    let result = compare::load("baseline", &args.baseline).and_then(|base| {
        let current = compare::load("current", &args.current)?;
        compare::compare(&base, &current, settings)
    });
    let comparison = match result {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let text = match args.format {
        CompareFormat::Md => comparison.markdown(),
        CompareFormat::Json => comparison.json(),
    };
    crate::show_part!("{text}");
    if let Some(path) = &args.output
        && let Err(e) = std::fs::write(path, &text)
    {
        return fail(2, format!("writing {}: {e}", path.display()));
    }
    ExitCode::from(comparison.exit_code(args.strict))
}

fn cmd_doctor() -> ExitCode {
    let checks = doctor::checks();
    for c in &checks {
        crate::show!("{c}");
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
        KernelAction::Path { which } => {
            let choice = match which.as_str() {
                "distro" => kernel::KernelChoice::Distro,
                "minimal" => kernel::KernelChoice::Minimal,
                other => {
                    return fail(
                        2,
                        format!("kernel path {other}: give `distro` or `minimal`"),
                    );
                }
            };
            match kernel::resolve_choice(&choice, &cache) {
                Ok(k) => {
                    crate::show!("{}", k.boot_image().display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(2, e),
            }
        }
        KernelAction::Build { config, jobs } => {
            let fragment = match &config {
                None => kernel::minimal::FRAGMENT.to_string(),
                Some(p) => match std::fs::read_to_string(p) {
                    Ok(t) => t,
                    Err(e) => {
                        return fail(2, format!("--config {}: cannot read it: {e}", p.display()));
                    }
                },
            };
            let jobs = jobs.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            );
            let req = kernel::minimal::BuildRequest { fragment, jobs };
            match kernel::minimal::build(&cache, &req, &mut |m| crate::say!("{m}")) {
                Ok(b) => {
                    crate::show!("{}", b.dir.join("vmlinux").display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(2, e),
            }
        }
        KernelAction::Fetch => match kernel::fetch(&cache, &mut |m| crate::say!("{m}")) {
            Ok(k) => {
                crate::show!("{}", k.vmlinuz.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, e),
        },
    }
}

fn cmd_clean() -> ExitCode {
    let base = match rundir::base_dir() {
        Ok(b) => b,
        Err(e) => return fail(2, e),
    };
    match rundir::clean(&base, Path::new("/proc"), Path::new("/sys/fs/cgroup")) {
        Ok(r) => {
            for (pid, what) in &r.killed {
                crate::show!("killed {what} pid {pid}");
            }
            for what in &r.runtime {
                crate::show!("removed {what}");
            }
            for m in &r.unmounted {
                crate::show!("unmounted {}", m.display());
            }
            for l in &r.links {
                crate::show!("removed network link {l}");
            }
            for c in &r.cgroups {
                crate::show!("removed cgroup {}", c.display());
            }
            for d in &r.removed {
                crate::show!("removed {}", d.display());
            }
            for (d, why) in &r.skipped {
                crate::show!("left {} alone: {why}", d.display());
            }
            if r.removed.is_empty()
                && r.skipped.is_empty()
                && r.cgroups.is_empty()
                && r.links.is_empty()
            {
                crate::show!("nothing to clean in {}", base.display());
            }
            // exec's layer cache: layers whose inputs changed, crashed builds.
            let layers = crate::image::cache::LayerCache::default_dir();
            if let Some(cache) = crate::image::cache::LayerCache::existing(&layers) {
                for d in cache.prune(crate::image::cache::KEEP) {
                    crate::show!("removed cached layer {}", d.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("cleaning {}: {e}", base.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostCapacity {
        HostCapacity {
            memory_mib: Some(2048),
            cpus: Some(2),
            disk_free: None,
        }
    }

    #[test]
    fn resources_apply_to_vms_and_containers() {
        let host = host();
        let mut plan = Plan::load(None, &crate::scenario::Overrides::default()).unwrap();
        apply_resources(&mut plan, Some(512 * 1024 * 1024), Some(2.0), &host).unwrap();
        assert_eq!((plan.vm.memory_mib, plan.vm.cpus), (512, 2));
        assert_eq!(plan.container.limits.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(plan.container.limits.cpus, Some(2.0));
        let err = apply_resources(&mut plan, None, Some(1.5), &host).unwrap_err();
        assert!(err.contains("whole number of vCPUs"), "{err}");
        let err = apply_resources(&mut plan, Some(1000), None, &host).unwrap_err();
        assert!(err.contains("whole number of MiB"), "{err}");
        // Without VMs, fractions are fine.
        plan.environments = vec![EnvKind::Container];
        apply_resources(&mut plan, Some(1000), Some(0.5), &host).unwrap();
        assert_eq!(plan.container.limits.cpus, Some(0.5));
    }

    #[test]
    fn resources_beyond_the_host_are_refused() {
        let host = host();
        let mut plan = Plan::load(None, &crate::scenario::Overrides::default()).unwrap();
        let err = apply_resources(&mut plan, Some(4096 << 20), None, &host).unwrap_err();
        assert_eq!(
            err,
            "--memory (a VM's memory): 4096 MiB is more than this host's memory (2048 MiB, \
             MemTotal in /proc/meminfo); a guest cannot have more than its host, lower it"
        );
        let err = apply_resources(&mut plan, None, Some(3.0), &host).unwrap_err();
        assert!(
            err.starts_with("--cpus: 3 CPUs are more than this host's 2"),
            "{err}"
        );
        // A container's CPUs too; `1e308` is no longer a quota that saturates.
        plan.environments = vec![EnvKind::Container];
        let err = apply_resources(&mut plan, None, Some(1e308), &host).unwrap_err();
        assert!(err.contains("more than this host's 2"), "{err}");
        // A container may have a memory limit above the host's memory (as in Docker).
        apply_resources(&mut plan, Some(4096 << 20), None, &host).unwrap();
        // Native alone uses neither.
        plan.environments = vec![EnvKind::Native];
        apply_resources(&mut plan, Some(4096 << 20), Some(64.0), &host).unwrap();

        let limits = |memory_bytes, cpus| Limits {
            memory_bytes,
            cpus,
            pids: None,
        };
        let err =
            check_exec_limits(EnvKind::Vm, &limits(Some(4096 << 20), None), &host).unwrap_err();
        assert!(
            err.starts_with("--memory (a VM's memory): 4096 MiB"),
            "{err}"
        );
        check_exec_limits(EnvKind::Container, &limits(Some(4096 << 20), None), &host).unwrap();
        // Too little for a guest to boot, but fine for a container.
        let err = check_exec_limits(EnvKind::Vm, &limits(Some(64 << 20), None), &host).unwrap_err();
        assert!(err.contains("64 MiB is too little for a guest"), "{err}");
        check_exec_limits(EnvKind::Container, &limits(Some(64 << 20), None), &host).unwrap();
        let mut plan = Plan::load(None, &crate::scenario::Overrides::default()).unwrap();
        let err = apply_resources(&mut plan, Some(64 << 20), None, &host).unwrap_err();
        assert!(err.contains("64 MiB is too little for a guest"), "{err}");
        for env in [EnvKind::Vm, EnvKind::Container, EnvKind::Native] {
            let err = check_exec_limits(env, &limits(None, Some(1e308)), &host).unwrap_err();
            assert!(err.starts_with("--cpus: "), "{err}");
        }
    }

    #[test]
    fn the_output_directory_must_be_a_directory() {
        check_out_dir(Path::new("reports")).unwrap();
        check_out_dir(Path::new("/tmp")).unwrap();
        check_out_dir(Path::new("/tmp/isobench-nonexistent/a/b")).unwrap();
        let err = check_out_dir(Path::new("/etc/hostname")).unwrap_err();
        assert_eq!(
            err,
            "--out /etc/hostname: /etc/hostname is not a directory; give a directory for run directories"
        );
        let err = check_out_dir(Path::new("/etc/hostname/runs")).unwrap_err();
        assert!(err.contains(": /etc/hostname is not a directory"), "{err}");
    }
}
