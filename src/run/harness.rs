//! The main loop of a run: for each workload its warm-ups, then its
//! repetitions (more of them while adaptive repetitions say the spread is
//! too wide), and within each the environments in turn, each instance a
//! fresh process, container or VM; density workloads go to [`super::density`].
//! Every instance is recorded as it ends (see [`super::book`]).

use super::RunError;
use super::book::{Book, Entry};
use super::instance::{Extras, InstanceResult, run_instance_with};
use super::progress::{Progress, outcome_line};
use crate::env::{EnvKind, Environment};
use crate::rundir;
use crate::scenario::{Plan, PlannedWorkload};
use crate::workload::{Metric, WorkloadSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The harness over a standing test bed.
pub struct Harness<'a> {
    /// What to run.
    pub plan: &'a Plan,
    /// The environments, in the order they take turns.
    pub envs: &'a [Box<dyn Environment>],
    /// Every `command` workload's host program and the spec the agent runs.
    pub commands: &'a BTreeMap<String, (Option<PathBuf>, WorkloadSpec)>,
    /// Where instances' scratch directories go (the run's runtime directory).
    pub scratch: &'a Path,
    /// Set on Ctrl-C (or a closed output).
    pub stop: &'a AtomicBool,
}

/// How the instances went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Instances that failed, and workloads whose digests differed.
    pub failed: usize,
    /// Whether the run was stopped.
    pub interrupted: bool,
}

impl Harness<'_> {
    /// Runs every workload of the plan; stops early when told.
    pub fn run(&self, book: &mut Book, progress: &mut Progress) -> Result<Tally, RunError> {
        let mut tally = Tally::default();
        for w in &self.plan.workloads {
            if let WorkloadSpec::Density { .. } = w.spec {
                for env in self.envs {
                    super::density::run(w, env.as_ref(), book, progress, self.stop, &mut tally)?;
                    if tally.interrupted {
                        return Ok(tally);
                    }
                }
            } else {
                self.workload(w, book, progress, &mut tally)?;
            }
            if tally.interrupted {
                break;
            }
        }
        Ok(tally)
    }

    /// One workload: its warm-ups and repetitions in every environment,
    /// then its digest check and adaptive-repetition notes.
    fn workload(
        &self,
        w: &PlannedWorkload,
        book: &mut Book,
        progress: &mut Progress,
        tally: &mut Tally,
    ) -> Result<(), RunError> {
        // What every environment ships for this workload (`artifact_mib`).
        let spec = self.commands.get(&w.name).map_or(&w.spec, |(_, spec)| spec);
        let artifacts: BTreeMap<EnvKind, Option<u64>> = self
            .envs
            .iter()
            .map(|e| (e.kind(), e.artifact_bytes(spec)))
            .collect();
        let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let max_reps = w.adaptive.map_or(w.reps, |a| a.max_reps);
        let slots = (1..=w.warmups)
            .map(|k| (true, k))
            .chain((1..=max_reps).map(|r| (false, r)));
        // The headline figure of every measured instance, per environment,
        // for adaptive repetitions.
        let mut headline: BTreeMap<EnvKind, Vec<f64>> = BTreeMap::new();
        // Each environment's network, said once per workload.
        let mut networked = std::collections::BTreeSet::new();
        'slots: for (warmup, number) in slots {
            if let Some(a) = w.adaptive
                && !warmup
                && number > w.reps
                && spread_reached(&headline, a.target_rsd)
            {
                book.note(format!(
                    "{}: adaptive repetitions stopped after {} (relative spread under {}% in every environment)",
                    w.name,
                    number - 1,
                    a.target_rsd
                ));
                break 'slots;
            }
            for env in self.envs {
                if self.stop.load(Ordering::SeqCst) {
                    tally.interrupted = true;
                    return Ok(());
                }
                let kind = env.kind();
                let tag = if warmup {
                    format!("warmup{number}")
                } else {
                    format!("r{number}")
                };
                let id = format!("{}-{kind}-{tag}", w.name);
                let what = if warmup {
                    format!("warm-up {number}/{}", w.warmups)
                } else {
                    match w.adaptive {
                        Some(a) => format!("rep {number}/≤{}", a.max_reps),
                        None => format!("rep {number}/{}", w.reps),
                    }
                };
                progress.start(&w.name, kind.as_str(), &what);
                let entry = Entry {
                    workload: &w.name,
                    env: kind,
                    repetition: number,
                    warmup,
                    log: format!("logs/{id}.log"),
                };
                let mut r = self.instance(w, env.as_ref(), &id, &book.dir().join(&entry.log));
                if let Some(note) = network_note(w, kind, &r.network)
                    && networked.insert(kind)
                {
                    book.note(note);
                }
                if r.error.is_none()
                    && let Some(bytes) = artifacts.get(&kind).copied().flatten()
                {
                    r.host_metrics.push(Metric::lower(
                        "artifact_mib",
                        "MiB",
                        bytes as f64 / (1 << 20) as f64,
                    ));
                }
                let metrics = metrics_of(&r);
                progress.end(&outcome_line(&r, &metrics, &entry.log));
                tally.interrupted |= r.interrupted;
                if r.error.is_some() && !r.interrupted {
                    tally.failed += 1;
                }
                if let Some(d) = &r.digest {
                    digests.entry(d.clone()).or_default().push(id.clone());
                }
                if !warmup && r.error.is_none() {
                    let figure = metrics
                        .iter()
                        .find(|m| m.name == "score")
                        .or_else(|| metrics.iter().find(|m| m.name == "startup_ms"));
                    if let Some(m) = figure {
                        headline.entry(kind).or_default().push(m.value);
                    }
                }
                book.record(&entry, &r, metrics)?;
                if tally.interrupted {
                    return Ok(());
                }
            }
        }
        if let Some(a) = w.adaptive
            && headline.values().all(|v| v.len() >= a.max_reps as usize)
        {
            let verdict = if spread_reached(&headline, a.target_rsd) {
                "reached"
            } else {
                "not reached"
            };
            book.note(format!(
                "{}: adaptive repetitions ran to the cap of {}; relative spread under {}%: {verdict}",
                w.name, a.max_reps, a.target_rsd
            ));
        }
        if let Some(note) = digest_note(&w.name, &digests) {
            if digests.len() > 1 {
                tally.failed += 1;
                progress.say(&note);
            }
            book.note(note);
        }
        book.save()
    }

    /// Runs one instance of `w` in `env` to its end.
    fn instance(
        &self,
        w: &PlannedWorkload,
        env: &dyn Environment,
        id: &str,
        log: &Path,
    ) -> InstanceResult {
        if let Some((_, spec)) = self.commands.get(&w.name) {
            let mut extras = Extras {
                sample_every: self.plan.sample_interval,
                ..Extras::default()
            };
            let spec = match net_extras(w, spec, env.kind(), &mut extras) {
                Ok(spec) => spec,
                Err(e) => {
                    return InstanceResult {
                        error: Some(e),
                        ..InstanceResult::default()
                    };
                }
            };
            let mut r = run_instance_with(env, &spec, id, Some(log), w.timeout, self.stop, extras);
            apply_rules(&mut r, w);
            return r;
        }
        match InstanceScratch::for_instance(w, env.kind(), self.scratch, id) {
            Ok(scratch) => {
                let mut extras = scratch.extras();
                extras.sample_every = self.plan.sample_interval;
                let spec = match net_extras(w, &w.spec, env.kind(), &mut extras) {
                    Ok(spec) => spec,
                    Err(e) => {
                        return InstanceResult {
                            error: Some(e),
                            ..InstanceResult::default()
                        };
                    }
                };
                run_instance_with(env, &spec, id, Some(log), w.timeout, self.stop, extras)
            }
            Err(e) => InstanceResult {
                error: Some(e),
                ..InstanceResult::default()
            },
        }
    }
}

/// What the digests of a workload's instances say: identical everywhere,
/// or a mismatch naming the instances of each (`None` without digests).
fn digest_note(workload: &str, digests: &BTreeMap<String, Vec<String>>) -> Option<String> {
    match digests.len() {
        0 => None,
        1 => Some(format!(
            "{workload}: the digest is identical in all {} instances that reported one",
            digests.values().map(Vec::len).sum::<usize>()
        )),
        _ => {
            let detail: Vec<String> = digests
                .iter()
                .map(|(d, ids)| format!("{} in {}", &d[..d.len().min(16)], ids.join(", ")))
                .collect();
            Some(format!(
                "{workload}: DIGEST MISMATCH between environments: {}",
                detail.join("; ")
            ))
        }
    }
}

/// Whether every environment's series has a relative standard deviation
/// under `target_pct` (and at least two values).
fn spread_reached(series: &BTreeMap<EnvKind, Vec<f64>>, target_pct: f64) -> bool {
    !series.is_empty()
        && series.values().all(|v| {
            crate::stats::summarize(v).is_some_and(|s| s.n >= 2 && s.rsd * 100.0 < target_pct)
        })
}

/// The scratch space of a `fileio` instance on the host: a directory of
/// the run's, removed when the instance is done. Native instances do their
/// I/O in it; container instances of a `target = "volume"` workload get it
/// bind-mounted at `/scratch`; everything else uses its own `/scratch`.
struct InstanceScratch {
    dir: Option<PathBuf>,
    extras: Extras,
}

impl InstanceScratch {
    fn for_instance(
        w: &PlannedWorkload,
        env: EnvKind,
        run_dir: &Path,
        id: &str,
    ) -> Result<InstanceScratch, String> {
        let mut scratch = InstanceScratch {
            dir: None,
            extras: Extras::default(),
        };
        if w.spec.kind() != crate::workload::WorkloadKind::Fileio {
            return Ok(scratch);
        }
        let sub = match (env, w.target) {
            (EnvKind::Native, _) => "scratch",
            (EnvKind::Container, crate::scenario::FileTarget::Volume) => "volumes",
            _ => return Ok(scratch),
        };
        let d = run_dir.join(sub).join(id);
        std::fs::create_dir_all(&d)
            .map_err(|e| format!("creating the scratch directory {}: {e}", d.display()))?;
        if env == EnvKind::Native {
            scratch.extras.env.push((
                crate::agent::workloads::SCRATCH_ENV.to_string(),
                d.display().to_string(),
            ));
        } else {
            scratch.extras.volumes.push(crate::env::container::Volume {
                host: d.clone(),
                guest: "/scratch".into(),
                read_only: false,
            });
        }
        scratch.dir = Some(d);
        Ok(scratch)
    }

    fn extras(&self) -> Extras {
        self.extras.clone()
    }
}

impl Drop for InstanceScratch {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = rundir::remove_tree(d);
        }
    }
}

/// What one instance's network was, for the run's notes: its mode, links,
/// addresses, vhost, and for workloads measured from the host the CPU both
/// ends were pinned to. `None` for a workload without a network.
fn network_note(w: &PlannedWorkload, env: EnvKind, facts: &[(String, String)]) -> Option<String> {
    let across = matches!(
        w.spec,
        WorkloadSpec::NetRr { .. } | WorkloadSpec::NetStream { .. } | WorkloadSpec::Service { .. }
    );
    let plain = facts.iter().all(|(k, v)| k == "network" && v == "none");
    if !across && plain {
        return None;
    }
    let mut parts: Vec<String> = if env == EnvKind::Native {
        vec!["network host (the host's own stack; the client reaches it on 127.0.0.1)".into()]
    } else {
        facts.iter().map(|(k, v)| format!("{k} {v}")).collect()
    };
    if across {
        parts.push(format!(
            "client thread and instance pinned to host CPU {} (a wake-up across CPUs costs tens of µs on a virtualized host)",
            crate::net::wire::shared_cpu()
        ));
    }
    Some(format!("{} in {env}: {}", w.name, parts.join("; ")))
}

/// The network of one instance of `w` in `env`, and for the workloads
/// served across the boundary the host's client, the agent's port and CPU,
/// and the server's port. Returns the spec the agent runs (a service's
/// `{port}` filled in).
fn net_extras(
    w: &PlannedWorkload,
    spec: &WorkloadSpec,
    env: EnvKind,
    extras: &mut Extras,
) -> Result<WorkloadSpec, String> {
    use crate::net::{AGENT_PORT, CPU_ENV, Mode, PORT_ENV};
    let mode = match env {
        EnvKind::Native => Mode::None,
        other => w.network.of(other),
    };
    extras.network = mode;
    let across = matches!(
        spec,
        WorkloadSpec::NetRr { .. } | WorkloadSpec::NetStream { .. } | WorkloadSpec::Service { .. }
    );
    if !across {
        return Ok(spec.clone());
    }
    // Natively and with the host's network the ports are the host's: let
    // the kernel pick free ones, so concurrent runs never collide.
    let shared_ports = env == EnvKind::Native || mode == Mode::Host;
    let agent_port = if shared_ports { 0 } else { AGENT_PORT };
    let cpu = crate::net::wire::shared_cpu();
    extras.env.push((PORT_ENV.into(), agent_port.to_string()));
    extras.env.push((CPU_ENV.into(), cpu.to_string()));
    extras.ports = vec![AGENT_PORT];
    let mut spec = spec.clone();
    let service = match (&w.service, &w.command) {
        (Some(svc), Some(cmd)) => {
            let port = if shared_ports {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .map_err(|e| format!("finding a free port for the service: {e}"))?
            } else {
                svc.port
            };
            if let WorkloadSpec::Service { argv } = &mut spec {
                for a in argv.iter_mut() {
                    *a = a.replace("{port}", &port.to_string());
                }
            }
            extras.ports.push(port);
            Some((port, svc.client.clone(), cmd.metrics.clone()))
        }
        _ => None,
    };
    extras.client = Some(crate::run::netclient::NetClient {
        cpu: Some(cpu),
        service,
    });
    Ok(spec)
}

/// For a `command` workload that ran: its exit status and the figures its
/// rules extract from its output. (A service's rules read its client's
/// output, on the host: see [`crate::run::netclient`].)
fn apply_rules(r: &mut InstanceResult, w: &PlannedWorkload) {
    if w.service.is_some() {
        return;
    }
    let Some(c) = &w.command else { return };
    if r.interrupted || r.startup.is_none() {
        return;
    }
    match r.status {
        Some(0) => {}
        Some(status) => {
            r.error = Some(format!(
                "`{}` exited with status {status}; its output is in the instance's log",
                c.argv.join(" ")
            ));
            return;
        }
        None => return,
    }
    match crate::extract::extract(&c.metrics, &r.output) {
        Ok(metrics) => r.metrics.extend(metrics),
        Err(e) => {
            r.error.get_or_insert(e);
        }
    }
}

/// Everything measured for one instance: the host's timings, then the workload's figures.
fn metrics_of(r: &InstanceResult) -> Vec<Metric> {
    let mut metrics = Vec::new();
    if let Some(s) = r.startup {
        metrics.push(Metric::lower("startup_ms", "ms", s.as_secs_f64() * 1e3));
    }
    if let Some(t) = r.teardown {
        metrics.push(Metric::lower("teardown_ms", "ms", t.as_secs_f64() * 1e3));
    }
    if let Some(f) = r.first_byte {
        let first_ms = f.as_secs_f64() * 1e3;
        metrics.push(Metric::lower("boot_first_byte_ms", "ms", first_ms));
        if let Some(k) = r.boot_kernel_ms {
            metrics.push(Metric::lower("boot_vmm_ms", "ms", first_ms - k));
        }
    }
    if let Some(k) = r.boot_kernel_ms {
        metrics.push(Metric::lower("boot_kernel_ms", "ms", k));
    }
    if let Some(u) = r.boot_uptime_ms {
        metrics.push(Metric::lower("boot_uptime_ms", "ms", u));
    }
    if let Some(a) = r.boot_agent_ms {
        metrics.push(Metric::lower("boot_agent_ms", "ms", a));
    }
    metrics.extend(r.host_metrics.iter().cloned());
    metrics.extend(r.metrics.iter().cloned());
    metrics
}

/// The harness on a scripted fake environment: no root, no QEMU.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::frame::Frame;
    use crate::env::fake::{Fake, Script};
    use crate::record::{INSTANCES, RESULTS, read_instances, read_results};
    use crate::run::progress::{Mode, Progress};
    use crate::scenario::Overrides;
    use std::sync::Arc;
    use std::time::Duration;

    struct Bench {
        dir: crate::testutil::TempDir,
        book: Book,
        plan: Plan,
    }

    fn bench(scenario: &str) -> Bench {
        let dir = crate::testutil::TempDir::new("harness");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let plan = Plan::parse(scenario, "t.toml", &Overrides::default()).unwrap();
        let book = Book::open(&dir, crate::report::fixture::meta(false)).unwrap();
        Bench { dir, book, plan }
    }

    fn score(v: f64) -> Vec<Metric> {
        vec![Metric::higher("score", "rounds/s", v)]
    }

    /// Runs the plan on these environments; the tally and the notes.
    fn run(b: &mut Bench, envs: Vec<Box<dyn Environment>>, stop: &AtomicBool) -> Tally {
        let commands = BTreeMap::new();
        let mut progress = Progress::new(Mode::Quiet, b.plan.instance_count());
        Harness {
            plan: &b.plan,
            envs: &envs,
            commands: &commands,
            scratch: &b.dir,
            stop,
        }
        .run(&mut b.book, &mut progress)
        .unwrap()
    }

    const TWO_ENVS: &str = "name = \"t\"\nenvironments = [\"native\", \"container\"]\n";

    #[test]
    fn every_repetition_is_timed_and_recorded_with_its_figures() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 3\nwarmups = 1\n[[workload]]\nkind = \"cpu\"\n"
        ));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| {
                Script::ok(score(100.0), Some("d"))
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::ok(score(99.0), Some("d"))
            })),
        ];
        let tally = run(&mut b, envs, &AtomicBool::new(false));
        assert_eq!(tally, Tally::default());
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        for env in ["native", "container"] {
            let of = |m: &str| {
                rows.iter()
                    .filter(|r| r.environment.as_str() == env && r.metric == m)
                    .count()
            };
            // Warm-ups are run but not recorded.
            assert_eq!(
                (of("score"), of("startup_ms"), of("teardown_ms")),
                (3, 3, 3),
                "{env}"
            );
        }
        assert_eq!(read_instances(&b.dir.join(INSTANCES)).unwrap().len(), 8);
        assert!(
            b.book
                .meta
                .notes
                .iter()
                .any(|n| n.contains("digest is identical in all 8"))
        );
    }

    #[test]
    fn adaptive_repetitions_stop_when_the_spread_is_small_and_go_to_the_cap_when_not() {
        let adaptive = format!(
            "{TWO_ENVS}reps = 2\nwarmups = 0\nmax_reps = 6\ntarget_rsd = 5.0\n[[workload]]\nkind = \"cpu\"\n"
        );
        // Steady everywhere: the minimum is enough.
        let mut b = bench(&adaptive);
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| {
                Script::ok(score(100.0), None)
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::ok(score(101.0), None)
            })),
        ];
        run(&mut b, envs, &AtomicBool::new(false));
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        assert_eq!(rows.iter().filter(|r| r.metric == "score").count(), 4);
        assert!(
            b.book
                .meta
                .notes
                .iter()
                .any(|n| n.contains("stopped after 2")),
            "{:?}",
            b.book.meta.notes
        );
        // One environment never settles: every environment runs to the cap.
        let mut b = bench(&adaptive);
        let flip = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| {
                Script::ok(score(100.0), None)
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], move |_| {
                let n = flip.fetch_add(1, Ordering::SeqCst);
                Script::ok(score(if n.is_multiple_of(2) { 100.0 } else { 160.0 }), None)
            })),
        ];
        run(&mut b, envs, &AtomicBool::new(false));
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        assert_eq!(rows.iter().filter(|r| r.metric == "score").count(), 12);
        assert!(
            b.book
                .meta
                .notes
                .iter()
                .any(|n| n.contains("ran to the cap of 6") && n.contains("not reached")),
            "{:?}",
            b.book.meta.notes
        );
    }

    #[test]
    fn a_digest_mismatch_fails_the_run_and_names_the_instances() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 2\nwarmups = 0\n[[workload]]\nkind = \"cpu\"\n"
        ));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| {
                Script::ok(score(1.0), Some("aaaa"))
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::ok(score(1.0), Some("bbbb"))
            })),
        ];
        let tally = run(&mut b, envs, &AtomicBool::new(false));
        assert_eq!(tally.failed, 1);
        let note = b
            .book
            .meta
            .notes
            .iter()
            .find(|n| n.contains("DIGEST MISMATCH"))
            .unwrap();
        assert!(
            note.contains("aaaa in cpu-native-r1, cpu-native-r2"),
            "{note}"
        );
        assert!(note.contains("bbbb in cpu-container-r1"), "{note}");
    }

    #[test]
    fn a_failing_instance_is_counted_and_kept_out_of_the_results() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 2\nwarmups = 0\n[[workload]]\nkind = \"cpu\"\n"
        ));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| {
                Script::ok(score(1.0), None)
            })),
            Box::new(Fake::new(
                EnvKind::Container,
                vec![Script::error("boom")],
                |_| Script::ok(score(1.0), None),
            )),
        ];
        let tally = run(&mut b, envs, &AtomicBool::new(false));
        assert_eq!(
            tally,
            Tally {
                failed: 1,
                interrupted: false
            }
        );
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        let reps = |env: &str| {
            let mut r: Vec<u32> = rows
                .iter()
                .filter(|r| r.environment.as_str() == env && r.metric == "score")
                .map(|r| r.repetition)
                .collect();
            r.sort();
            r
        };
        assert_eq!((reps("native"), reps("container")), (vec![1, 2], vec![2]));
        let failed: Vec<_> = read_instances(&b.dir.join(INSTANCES))
            .unwrap()
            .into_iter()
            .filter(|i| !i.ok)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].error.as_deref(), Some("agent: boom"));
    }

    #[test]
    fn an_instance_without_done_or_with_a_late_ready_fails_with_the_reason() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 1\nwarmups = 0\ntimeout_s = 1\n[[workload]]\nkind = \"noop\"\n"
        ));
        let mut no_done = Script::ok(vec![], None);
        no_done.frames.pop();
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![no_done], |_| {
                Script::ok(vec![], None)
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::stays_up()
            })),
        ];
        let tally = run(&mut b, envs, &AtomicBool::new(false));
        assert_eq!(tally.failed, 2);
        let errors: Vec<String> = read_instances(&b.dir.join(INSTANCES))
            .unwrap()
            .into_iter()
            .filter_map(|i| i.error)
            .collect();
        assert!(errors[0].contains("without a `done` frame"), "{errors:?}");
        assert!(
            errors[1].contains("still running 1 s after `ready`"),
            "{errors:?}"
        );
    }

    #[test]
    fn density_keeps_every_instance_alive_and_records_each() {
        let mut b = bench(&format!(
            "{TWO_ENVS}[[workload]]\nkind = \"density\"\ninstances = 3\nsettle_ms = 1\n"
        ));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![], |_| Script::stays_up())),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::stays_up()
            })),
        ];
        let tally = run(&mut b, envs, &AtomicBool::new(false));
        assert_eq!(tally, Tally::default());
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        for env in ["native", "container"] {
            let k: Vec<u32> = rows
                .iter()
                .filter(|r| r.environment.as_str() == env && r.metric == "density_pss_total_mib")
                .map(|r| r.repetition)
                .collect();
            assert_eq!(k, [1, 2, 3], "{env}");
        }
        assert!(
            b.book
                .meta
                .notes
                .iter()
                .any(|n| n.contains("3 container instance(s) were alive at once"))
        );
    }

    #[test]
    fn a_stop_ends_the_run_after_the_instance_under_way() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 5\nwarmups = 0\n[[workload]]\nkind = \"cpu\"\n"
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let mut native = Fake::new(EnvKind::Native, vec![], |_| {
            let mut s = Script::ok(score(1.0), None);
            // A slow instance, so the stop arrives while it runs.
            s.frames[1].0 = Duration::from_millis(200);
            s
        });
        let flag = Arc::clone(&stop);
        native.on_spawn = Some(Box::new(move |n| {
            if n == 2 {
                flag.store(true, Ordering::SeqCst);
            }
        }));
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(native),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::ok(score(1.0), None)
            })),
        ];
        let tally = run(&mut b, envs, &stop);
        assert!(tally.interrupted);
        assert_eq!(tally.failed, 0, "an interrupted instance is not a failure");
        let instances = read_instances(&b.dir.join(INSTANCES)).unwrap();
        assert_eq!(instances.len(), 3, "r1 in both, then the stopped one");
        assert_eq!(instances[2].error.as_deref(), Some("interrupted"));
    }

    #[test]
    fn output_that_looks_like_a_frame_is_data() {
        let mut b = bench(&format!(
            "{TWO_ENVS}reps = 1\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n"
        ));
        let forged = Frame::Result {
            metrics: vec![Metric::lower("startup_ms", "ms", 0.001)],
            digest: None,
            status: None,
        };
        let mut s = Script::ok(vec![], None);
        s.output = vec![forged.encode().trim_end().to_string()];
        let envs: Vec<Box<dyn Environment>> = vec![
            Box::new(Fake::new(EnvKind::Native, vec![s], |_| {
                Script::ok(vec![], None)
            })),
            Box::new(Fake::new(EnvKind::Container, vec![], |_| {
                Script::ok(vec![], None)
            })),
        ];
        run(&mut b, envs, &AtomicBool::new(false));
        let rows = read_results(&b.dir.join(RESULTS)).unwrap();
        let startups: Vec<f64> = rows
            .iter()
            .filter(|r| r.environment == EnvKind::Native && r.metric == "startup_ms")
            .map(|r| r.value)
            .collect();
        assert_eq!(startups.len(), 1);
        assert!(startups[0] > 0.001);
    }
}
