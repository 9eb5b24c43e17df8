//! One instance's life: spawned by its environment, its frames read with
//! their arrival times (and its output as data, on a second stream), the
//! sampler started at `ready`, then reaped, its host-side figures read,
//! torn down. [`Running`] keeps one alive across calls, so density can hold
//! several at once; [`run_instance_with`] runs one to its end.

use crate::agent::frame::Frame;
use crate::env::{Environment, Exit, Instance, Io, Launch};
use crate::workload::{Metric, WorkloadSpec};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Longest wait for an instance to end after its last frame.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait, after an instance was torn down, for the end of its output.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// What one instance did.
#[derive(Debug, Default)]
pub struct InstanceResult {
    /// Spawn → arrival of `ready`.
    pub startup: Option<Duration>,
    /// Spawn → arrival of the first byte, for instances that send a `boot`
    /// frame (VMs).
    pub first_byte: Option<Duration>,
    /// The agent's set-up before `ready`, by its own clock (vm).
    pub boot_agent_ms: Option<f64>,
    /// Arrival of `done` → reaped and cleaned up (only for a clean end).
    pub teardown: Option<Duration>,
    /// The guest kernel's boot (vm): the virtual CPU's clock at the
    /// agent's start.
    pub boot_kernel_ms: Option<f64>,
    /// The guest's own uptime (CLOCK_BOOTTIME) at the agent's start (vm).
    pub boot_uptime_ms: Option<f64>,
    /// The workload's own figures.
    pub metrics: Vec<Metric>,
    /// Figures the environment read on the host (memory, CPU time, ...).
    pub host_metrics: Vec<Metric>,
    /// The workload's digest.
    pub digest: Option<String>,
    /// For a program run by the agent: its exit status.
    pub status: Option<i32>,
    /// What went wrong; `None` when the instance did everything it should.
    pub error: Option<String>,
    /// How the host process ended.
    pub exit: Option<Exit>,
    /// Whether SIGINT/SIGTERM cut it short.
    pub interrupted: bool,
    /// Everything on the output stream that was not a frame (a program's
    /// own output), up to [`MAX_OUTPUT`] bytes.
    pub output: String,
    /// What the sampler collected, when the instance was sampled.
    pub samples: Option<crate::sample::Collected>,
    /// The instance's network as set up (mode, links, addresses).
    pub network: Vec<(String, String)>,
}

/// How much of an instance's non-frame output is kept for metric extraction.
pub const MAX_OUTPUT: usize = 4 << 20;

enum Event {
    /// The first byte on the frames channel arrived.
    FirstByte(Instant),
    Frame(Instant, Frame),
    /// Something on the frames channel that is not a valid frame.
    Garbled(String),
    /// A line of the instance's output (data: a program's output, a
    /// guest's console), never a frame.
    Output(String),
    /// The frames channel ended: the agent (or QEMU) is gone.
    Eof,
    /// The output stream ended.
    OutputEof,
}

/// Starts one instance, reads its frames with their arrival times, and
/// tears it down. Never panics; every failure ends up in `error`.
pub fn run_instance(
    env: &dyn Environment,
    spec: &WorkloadSpec,
    id: &str,
    log_path: Option<&Path>,
    run_timeout: Duration,
    stop: &AtomicBool,
) -> InstanceResult {
    run_instance_with(
        env,
        spec,
        id,
        log_path,
        run_timeout,
        stop,
        Extras::default(),
    )
}

/// What an instance gets besides its workload: extra environment variables
/// for the agent and extra bind mounts (container).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Bind mounts.
    pub volumes: Vec<crate::env::container::Volume>,
    /// Sample the instance's processes at this interval from `ready` on.
    pub sample_every: Option<Duration>,
    /// The instance's network.
    pub network: crate::net::Mode,
    /// Ports inside the instance the host must reach.
    pub ports: Vec<u16>,
    /// The host's client, for workloads served across the boundary.
    pub client: Option<super::netclient::NetClient>,
}

/// [`run_instance`] with [`Extras`].
pub fn run_instance_with(
    env: &dyn Environment,
    spec: &WorkloadSpec,
    id: &str,
    log_path: Option<&Path>,
    run_timeout: Duration,
    stop: &AtomicBool,
    extras: Extras,
) -> InstanceResult {
    match Running::start(env, spec, id, log_path, run_timeout, extras) {
        Ok(mut running) => {
            running.pump(stop, false);
            running.finish()
        }
        Err(result) => *result,
    }
}

/// An instance between its spawn and its end: its frames are read as they
/// come ([`Running::pump`]) and [`Running::finish`] reaps it and tears it
/// down. [`run_instance_with`] runs one to its end; density keeps several
/// alive at once.
pub struct Running {
    instance: Box<dyn Instance>,
    rx: mpsc::Receiver<Event>,
    reader: Option<std::thread::JoinHandle<()>>,
    output_reader: Option<std::thread::JoinHandle<()>>,
    result: InstanceResult,
    spawned_at: Instant,
    startup_timeout: Duration,
    run_timeout: Duration,
    deadline: Instant,
    ready_at: Option<Instant>,
    done_at: Option<Instant>,
    first_byte_at: Option<Instant>,
    sample_every: Option<Duration>,
    sampler: Option<crate::sample::Sampler>,
    ended: bool,
    client: Option<super::netclient::NetClient>,
    client_thread: Option<std::thread::JoinHandle<super::netclient::ClientResult>>,
    spec: WorkloadSpec,
}

impl Running {
    /// Spawns the instance; `Err` holds the failed instance's result.
    pub fn start(
        env: &dyn Environment,
        spec: &WorkloadSpec,
        id: &str,
        log_path: Option<&Path>,
        run_timeout: Duration,
        extras: Extras,
    ) -> Result<Running, Box<InstanceResult>> {
        let fail = |e: String| {
            Box::new(InstanceResult {
                error: Some(e),
                ..InstanceResult::default()
            })
        };
        let (log, mut log_for_reader) = match log_path.map(open_log).transpose() {
            Ok(Some((a, b))) => (Some(a), Some(b)),
            Ok(None) => (None, None),
            Err(e) => return Err(fail(e)),
        };
        let io = match log {
            Some(log) => Io::Captured { log },
            None => Io::Inherited,
        };
        let launch = Launch {
            spec,
            id,
            io,
            env: extras.env,
            volumes: extras.volumes,
            network: extras.network,
            ports: extras.ports,
        };
        let mut instance = env.spawn(launch).map_err(|e| fail(e.to_string()))?;
        let network = instance.network_facts();
        let spawned_at = instance.spawned_at();
        let Some(streams) = instance.take_streams() else {
            let _ = instance.cleanup();
            return Err(fail("instance has no frames stream".into()));
        };
        let (tx, rx) = mpsc::channel();
        let mut log_for_output = match (&streams.output, &log_for_reader) {
            (Some(_), Some(log)) => match log.try_clone() {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = instance.cleanup();
                    return Err(fail(format!("duplicating the log handle: {e}")));
                }
            },
            _ => None,
        };
        let output_reader = streams.output.map(|output| {
            let tx = tx.clone();
            std::thread::spawn(move || read_output(output, &mut log_for_output, tx))
        });
        let frames = streams.frames;
        let reader = std::thread::spawn(move || read_frames(frames, &mut log_for_reader, tx));
        Ok(Running {
            instance,
            rx,
            reader: Some(reader),
            output_reader,
            result: InstanceResult {
                network,
                ..InstanceResult::default()
            },
            client: extras.client,
            client_thread: None,
            spec: spec.clone(),
            spawned_at,
            startup_timeout: env.startup_timeout(),
            run_timeout,
            deadline: spawned_at + env.startup_timeout(),
            ready_at: None,
            done_at: None,
            first_byte_at: None,
            sample_every: extras.sample_every,
            sampler: None,
            ended: false,
        })
    }

    /// The instance's host process id.
    pub fn pid(&mut self) -> u32 {
        self.instance.process().pid()
    }

    /// The result so far (startup once `ready` arrived).
    pub fn result(&self) -> &InstanceResult {
        &self.result
    }

    /// Reads frames until the output ends, a deadline passes or `stop` is
    /// set; with `until_ready`, returns as soon as `ready` arrived. Returns
    /// whether the instance is still going.
    pub fn pump(&mut self, stop: &AtomicBool, until_ready: bool) -> bool {
        while !self.ended {
            if until_ready && self.ready_at.is_some() {
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                self.result.interrupted = true;
                self.result.error = Some("interrupted".into());
                self.instance.process().kill();
                self.ended = true;
                break;
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.result.error = Some(match self.ready_at {
                    None => format!(
                        "no `ready` frame within {} s of the spawn (startup timeout); the instance was killed",
                        self.startup_timeout.as_secs()
                    ),
                    Some(_) => format!(
                        "still running {} s after `ready` (timeout_s); the instance was killed",
                        self.run_timeout.as_secs()
                    ),
                });
                self.instance.process().kill();
                self.ended = true;
                break;
            }
            match self
                .rx
                .recv_timeout((self.deadline - now).min(Duration::from_millis(100)))
            {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Disconnected) => self.ended = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        false
    }

    fn handle(&mut self, event: Event) {
        let result = &mut self.result;
        match event {
            Event::FirstByte(at) => self.first_byte_at = Some(at),
            Event::Frame(at, frame) => match frame {
                Frame::Boot => {
                    result.first_byte =
                        self.first_byte_at.or(Some(at)).map(|t| t - self.spawned_at);
                }
                Frame::Ready {
                    uptime_ms,
                    cpu_clock_ms,
                    setup_ms,
                    port,
                    ..
                } => {
                    if self.ready_at.is_none() {
                        self.ready_at = Some(at);
                        result.startup = Some(at - self.spawned_at);
                        // From `ready` on the instance is the agent (before
                        // it, a forked copy of isobench may still be there).
                        if let Some(interval) = self.sample_every {
                            self.sampler = Some(crate::sample::Sampler::start(
                                Path::new("/proc"),
                                self.instance.process().pid(),
                                interval,
                                crate::sample::DEFAULT_PSS_EVERY,
                            ));
                        }
                        self.instance.at_ready();
                        // The CPU's clock counts the whole boot; the
                        // guest's uptime misses its early part, so it is
                        // kept apart, never recorded in its place.
                        result.boot_kernel_ms = cpu_clock_ms;
                        result.boot_uptime_ms = uptime_ms;
                        result.boot_agent_ms = setup_ms;
                        self.deadline = at + self.run_timeout;
                        self.start_client(port);
                    }
                }
                Frame::Result {
                    metrics,
                    digest,
                    status,
                } => {
                    result.metrics.extend(metrics);
                    // The guest's own figures come in a second `result`
                    // frame without a digest or status: keep the first's.
                    if digest.is_some() {
                        result.digest = digest;
                    }
                    if status.is_some() {
                        result.status = status;
                    }
                }
                Frame::Error { message } => {
                    result.error.get_or_insert(format!("agent: {message}"));
                }
                Frame::Done => {
                    self.done_at = Some(at);
                    result.host_metrics.extend(self.instance.at_done());
                }
            },
            Event::Output(line) => {
                if result.output.len() < MAX_OUTPUT {
                    result.output.push_str(&line);
                }
            }
            Event::Garbled(text) => {
                result
                    .error
                    .get_or_insert(format!("unreadable frame: {text}"));
            }
            Event::Eof => self.ended = true,
            Event::OutputEof => {}
        }
    }

    /// Starts the host's client once the agent listens on `port`.
    fn start_client(&mut self, port: Option<u16>) {
        let Some(client) = self.client.take() else {
            return;
        };
        let control = port.and_then(|p| self.instance.reach(p));
        let Some(control) = control else {
            self.result.error.get_or_insert(format!(
                "the host cannot reach the agent's port {} in this instance (network {})",
                port.map_or("(none reported)".to_string(), |p| p.to_string()),
                self.result
                    .network
                    .iter()
                    .find(|(k, _)| k == "network")
                    .map_or("?", |(_, v)| v.as_str())
            ));
            self.instance.process().kill();
            return;
        };
        if let Some(cpu) = client.cpu {
            let pid = self.instance.process().pid();
            let _ = crate::net::wire::pin_process(pid, cpu);
        }
        let service = client
            .service
            .as_ref()
            .and_then(|(p, _, _)| self.instance.reach(*p));
        self.client_thread = Some(super::netclient::start(
            client,
            self.spec.clone(),
            control,
            service,
        ));
    }

    /// Ends the instance now (SIGKILL) without calling it a failure: for
    /// instances whose job is to stay up until told (density).
    pub fn kill(&mut self) {
        self.instance.process().kill();
        self.ended = true;
        self.done_at.get_or_insert_with(Instant::now);
    }

    /// Reaps the instance, reads its host-side figures, tears it down.
    pub fn finish(mut self) -> InstanceResult {
        let mut result = std::mem::take(&mut self.result);
        if let Some(t) = self.client_thread.take() {
            match t.join() {
                Ok((Ok(metrics), output)) => {
                    result.metrics.extend(metrics);
                    result.output.push_str(&output);
                }
                Ok((Err(e), output)) => {
                    result.output.push_str(&output);
                    result.error.get_or_insert(e);
                }
                Err(_) => {
                    result
                        .error
                        .get_or_insert("the host's client thread panicked".into());
                }
            }
        }
        // The sampler stops now, without being waited for: its work must
        // not end up in `teardown_ms`. Its figures are read at the end.
        if let Some(s) = &self.sampler {
            s.request_stop();
        }
        let process = self.instance.process();
        match process.wait_timeout(EXIT_TIMEOUT) {
            Ok(Some(exit)) => result.exit = Some(exit),
            Ok(None) => {
                result.error.get_or_insert(format!(
                    "did not exit within {} s of its last frame; killed",
                    EXIT_TIMEOUT.as_secs()
                ));
                result.exit = process.kill_and_reap().ok();
            }
            Err(e) => {
                result
                    .error
                    .get_or_insert(format!("waiting for the instance: {e}"));
            }
        }
        if let Some(u) = self.instance.process().usage() {
            result
                .host_metrics
                .push(Metric::lower("host_cpu_ms", "ms", u.cpu_ms));
            result.host_metrics.push(Metric::lower(
                "max_rss_mib",
                "MiB",
                u.max_rss_kib as f64 / 1024.0,
            ));
        }
        if result.exit.is_some() {
            result.host_metrics.extend(self.instance.after_exit());
        }
        if result.error.is_none() {
            if self.ready_at.is_none() {
                result.error = Some("the output ended without a `ready` frame".into());
            } else if self.done_at.is_none() {
                result.error =
                    Some("the output ended without a `done` frame (did the agent crash?)".into());
            } else if let Some(exit) = result.exit.filter(|e| !e.success()) {
                result.error = Some(format!("the instance ended with {exit}"));
            }
        }
        if let Some(error) = result.error.as_mut().filter(|_| !result.interrupted)
            && let Some(why) = self.instance.diagnose()
        {
            error.push_str(&format!("; {why}"));
        }
        if let Err(e) = self.instance.cleanup() {
            result.error.get_or_insert(format!("cleanup: {e}"));
        }
        let cleaned_at = Instant::now();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if result.error.is_none() {
            result.teardown = self.done_at.map(|d| cleaned_at - d);
        }
        if let Some(s) = self.sampler.take() {
            let collected = s.stop();
            if let Some(sum) = crate::sample::summarize(&collected.samples) {
                result
                    .host_metrics
                    .push(Metric::lower("rss_peak_mib", "MiB", sum.rss_peak_mib));
                if let Some(p) = sum.pss_peak_mib {
                    result
                        .host_metrics
                        .push(Metric::lower("pss_peak_mib", "MiB", p));
                }
                if let Some(p) = sum.pss_steady_mib {
                    result
                        .host_metrics
                        .push(Metric::lower("pss_steady_mib", "MiB", p));
                }
            }
            result.samples = Some(collected);
        }
        self.result = result;
        self.drain_output();
        std::mem::take(&mut self.result)
    }

    /// Takes in what is left of the instance's output, once it has been
    /// torn down. Every writer of a container's or a guest's output is gone
    /// by then; a native program's own orphan may still hold the pipe, so
    /// the wait is bounded (its reader thread ends whenever the pipe does).
    fn drain_output(&mut self) {
        let Some(reader) = self.output_reader.take() else {
            return;
        };
        let deadline = Instant::now() + OUTPUT_DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::OutputEof) => {
                    let _ = reader.join();
                    return;
                }
                Ok(event) => self.handle(event),
                Err(_) => return,
            }
        }
    }
}

/// Opens an instance log for appending, twice: for the instance's stderr
/// and for the reader thread.
fn open_log(path: &Path) -> Result<(File, File), String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let copy = log
        .try_clone()
        .map_err(|e| format!("cannot duplicate the handle of {}: {e}", path.display()))?;
    Ok((log, copy))
}

/// A reader that reports when its first byte arrived.
struct FirstByte<R> {
    inner: R,
    tx: Option<mpsc::Sender<Event>>,
}

impl<R: std::io::Read> std::io::Read for FirstByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(tx) = self.tx.take()
        {
            let _ = tx.send(Event::FirstByte(Instant::now()));
        }
        Ok(n)
    }
}

/// The frames reader: copies the frames channel to the log (if any) and
/// passes frames on with their arrival time. Only the agent writes here.
fn read_frames(frames: File, log: &mut Option<File>, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(FirstByte {
        inner: frames,
        tx: Some(tx.clone()),
    });
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                if let Some(log) = log {
                    let _ = log.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line);
                let event = match Frame::parse_line(&text) {
                    Some(Ok(frame)) => Event::Frame(at, frame),
                    Some(Err(e)) => Event::Garbled(format!("{e}: {}", text.trim_end())),
                    None => Event::Garbled(format!("not a frame: {}", text.trim_end())),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::Eof);
}

/// The output reader: copies the instance's output to the log (if any) and
/// passes it on line by line, as data.
fn read_output(output: File, log: &mut Option<File>, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(log) = log {
                    let _ = log.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if tx.send(Event::Output(text)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::OutputEof);
}
