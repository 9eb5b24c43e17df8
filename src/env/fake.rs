//! A scripted environment for the harness's tests (hyperfine's
//! `MockExecutor` is the model): each instance plays the frames of a
//! [`Script`] on a real frames pipe, behind a real (tiny) host process, so
//! the harness — startup timing, adaptive repetitions, digests, failures,
//! density, Ctrl-C — runs exactly as with a container or a VM, without root
//! or QEMU.

use super::{EnvError, EnvKind, Environment, Instance, Launch, ProcessHandle, Streams};
use crate::agent::frame::Frame;
use crate::workload::{Metric, WorkloadSpec};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one instance does.
#[derive(Debug, Clone)]
pub struct Script {
    /// The frames it sends, each after a pause.
    pub frames: Vec<(Duration, Frame)>,
    /// Lines on its output stream (data, never frames).
    pub output: Vec<String>,
    /// Its host process stays up until killed (density, timeouts).
    pub hang: bool,
    /// Its host process's exit status.
    pub exit: i32,
}

impl Script {
    /// `ready`, one `result` with these figures (and digest), `done`.
    pub fn ok(metrics: Vec<Metric>, digest: Option<&str>) -> Script {
        Script {
            frames: vec![
                (Duration::ZERO, ready()),
                (
                    Duration::ZERO,
                    Frame::Result {
                        metrics,
                        digest: digest.map(String::from),
                        status: None,
                    },
                ),
                (Duration::ZERO, Frame::Done),
            ],
            output: Vec::new(),
            hang: false,
            exit: 0,
        }
    }

    /// `ready`, then an `error` frame with `message`, `done`, exit 1.
    pub fn error(message: &str) -> Script {
        Script {
            frames: vec![
                (Duration::ZERO, ready()),
                (
                    Duration::ZERO,
                    Frame::Error {
                        message: message.into(),
                    },
                ),
                (Duration::ZERO, Frame::Done),
            ],
            output: Vec::new(),
            hang: false,
            exit: 1,
        }
    }

    /// `ready`, then nothing: it stays up until killed.
    pub fn stays_up() -> Script {
        Script {
            frames: vec![(Duration::ZERO, ready())],
            output: Vec::new(),
            hang: true,
            exit: 0,
        }
    }
}

fn ready() -> Frame {
    Frame::Ready {
        pid: 1,
        uptime_ms: None,
        cpu_clock_ms: None,
        setup_ms: None,
        port: None,
    }
}

/// An environment whose instances play scripts, in order; when the
/// scripts run out, `then` decides.
pub struct Fake {
    kind: EnvKind,
    scripts: Mutex<VecDeque<Script>>,
    then: Box<dyn Fn(&WorkloadSpec) -> Script + Send + Sync>,
    /// How many instances were spawned.
    pub spawned: Mutex<usize>,
    /// Run when an instance is spawned (a test sets a stop flag here).
    pub on_spawn: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

impl Fake {
    /// A fake `kind` environment playing `scripts`, then `then`.
    pub fn new(
        kind: EnvKind,
        scripts: Vec<Script>,
        then: impl Fn(&WorkloadSpec) -> Script + Send + Sync + 'static,
    ) -> Fake {
        Fake {
            kind,
            scripts: Mutex::new(scripts.into()),
            then: Box::new(then),
            spawned: Mutex::new(0),
            on_spawn: None,
        }
    }
}

impl Environment for Fake {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn kind(&self) -> EnvKind {
        self.kind
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({ "fake": true })
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let n = {
            let mut s = self.spawned.lock().unwrap_or_else(|e| e.into_inner());
            *s += 1;
            *s
        };
        if let Some(f) = &self.on_spawn {
            f(n);
        }
        let script = self
            .scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(|| (self.then)(launch.spec));
        let spawned_at = Instant::now();
        let mut cmd = std::process::Command::new("sh");
        if script.hang {
            cmd.args(["-c", "exec sleep 3600"]);
        } else {
            cmd.args(["-c", &format!("exit {}", script.exit)]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| EnvError::io("starting the fake instance's process", e))?;
        let process = ProcessHandle::new(child.id())
            .map_err(|e| EnvError::io("opening a pidfd for the fake instance", e))?;
        let (frames_r, mut frames_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the frames pipe", e))?;
        let (output_r, mut output_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the output pipe", e))?;
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_ended = std::sync::Arc::clone(&ended);
        let writer = std::thread::spawn(move || {
            for line in &script.output {
                let _ = writeln!(output_w, "{line}");
            }
            drop(output_w);
            for (pause, frame) in &script.frames {
                std::thread::sleep(*pause);
                let _ = frames_w.write_all(frame.encode().as_bytes());
            }
            if script.hang {
                // The frames channel stays open, as a live agent's would,
                // until the instance is torn down.
                while !writer_ended.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Ok(Box::new(FakeInstance {
            spawned_at,
            streams: Some(Streams {
                frames: std::fs::File::from(std::os::fd::OwnedFd::from(frames_r)),
                output: Some(std::fs::File::from(std::os::fd::OwnedFd::from(output_r))),
            }),
            process,
            ended,
            _writer: writer,
        }))
    }
}

struct FakeInstance {
    spawned_at: Instant,
    streams: Option<Streams>,
    process: ProcessHandle,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _writer: std::thread::JoinHandle<()>,
}

impl Instance for FakeInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        &mut self.process
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        self.process
            .kill_and_reap()
            .map_err(|e| EnvError::io("reaping the fake instance", e))?;
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
