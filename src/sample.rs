//! The sampler: while an instance runs, a host thread reads procfs for
//! every process of the instance at a fixed interval — the instance's host
//! process and all its descendants (a container's whole tree; for a VM,
//! QEMU, whose threads are part of it) — and records their CPU time and
//! resident memory. Most of its cost on a virtualized host is the timer
//! wake-up itself (tens of µs), so a tick reads as little as it can.
//!
//! Per tick it reads `/proc/PID/task/PID/children` (the tree) and
//! `/proc/PID/stat` (state, user + system CPU time, resident pages) of each
//! process: small, fixed-format files (about 14 µs of CPU a tick for one
//! process here, 0.15% of a core at 10 ms). PSS comes from
//! `/proc/PID/smaps_rollup`, which makes the kernel walk the process's page
//! tables — for a VM, its whole guest memory: a few ms for 256 MiB here.
//! So PSS is read on a budget: after a reading that took `d`, the next one
//! waits at least `d / PSS_BUDGET` (200 d), which keeps PSS under 0.5% of a
//! core whatever the size, and never comes sooner than `pss_every` ticks.
//!
//! The per-tick files are read into one reused buffer and parsed by hand,
//! not by `procfs` (which the rest of isobench uses for `/proc`), because
//! `procfs` costs measurably more per tick. Measured here (2 nested cores,
//! loaded; median thread CPU time per tick of one process, hand /
//! `procfs`, the variants interleaved): a tick 13.4 / 14.5 µs with
//! `procfs`'s `Stat` parser on the same buffer (+8%: it parses all 52
//! fields and copies the line), 13.4 / 17.9 µs through
//! `procfs::process::Process` (+33%: two more directory opens per process,
//! for the process and its task); a PSS tick 46.0 / 50.8 µs (+10%: its
//! `SmapsRollup` builds a map of every field). Parsing alone (the bench's
//! `parse/...`): `stat` 0.27 / 0.91 µs, `smaps_rollup` 0.10 / 3.9 µs. For
//! a 256 MiB process the PSS tick is the kernel's page-table walk either
//! way (3.8 ms, within 1%). The `children` lists are split by hand too:
//! `procfs` reads them only through `Process`. A unit test checks that the
//! hand parsers agree with `procfs` on this machine's own files. The
//! sampler's own cost (a quality bar: under 1% of a core at the default
//! 10 ms) is measured by `cargo bench --bench sampler`.
//!
//! Every path is taken relative to a procfs root, so tests run on fixture
//! trees.

use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
/// PSS is read at most every this many ticks by default (every 100 ms).
pub const DEFAULT_PSS_EVERY: u32 = 10;
/// The share of a core PSS readings may take.
pub const PSS_BUDGET: f64 = 0.005;

/// One reading of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Time since the sampler started, in ms.
    pub t_ms: f64,
    /// Processes of the instance seen.
    pub processes: u32,
    /// Their CPU time (user + system) so far, in ms; threads included.
    pub cpu_ms: f64,
    /// Their resident memory, in KiB (shared pages counted in each).
    pub rss_kib: u64,
    /// Their proportional set size, in KiB (shared pages divided among the
    /// processes sharing them), when read at this tick.
    pub pss_kib: Option<u64>,
}

/// What the sampler takes from a `/proc/PID/stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFigures {
    /// The state letter (field 3): `R`, `S`, `Z`...
    pub state: char,
    /// User CPU time in clock ticks (field 14).
    pub utime: u64,
    /// System CPU time in clock ticks (field 15).
    pub stime: u64,
    /// Resident pages (field 24).
    pub rss_pages: u64,
}

/// Parses the fields the sampler needs from a `/proc/PID/stat` line, by
/// hand (see the module's doc for why, and `procfs`'s figures).
pub fn parse_stat(stat: &str) -> Option<StatFigures> {
    // Fields after the command name (which may contain spaces and
    // parentheses): state is field 3, utime 14, stime 15, rss 24.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let utime = fields.nth(10)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    let rss_pages = fields.nth(8)?.parse().ok()?;
    Some(StatFigures {
        state,
        utime,
        stime,
        rss_pages,
    })
}

/// The `Pss` of a `/proc/PID/smaps_rollup` text, in KiB, by hand (see the
/// module's doc).
pub fn parse_rollup_pss_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads procfs files with one reused buffer.
struct Reader {
    root: PathBuf,
    buf: Vec<u8>,
    ticks_per_s: f64,
    page_kib: u64,
}

impl Reader {
    fn new(root: PathBuf) -> Reader {
        Reader {
            root,
            buf: Vec::with_capacity(4096),
            ticks_per_s: procfs::ticks_per_second().max(1) as f64,
            page_kib: (procfs::page_size() / 1024).max(1),
        }
    }

    fn read(&mut self, pid: u32, file: &str) -> Option<&str> {
        self.buf.clear();
        let path = self.root.join(pid.to_string()).join(file);
        std::fs::File::open(path)
            .ok()?
            .read_to_end(&mut self.buf)
            .ok()?;
        std::str::from_utf8(&self.buf).ok()
    }

    /// User + system CPU time (ms) and resident memory (KiB) of a live
    /// process, from one read of its `stat` file; `None` for a zombie (it
    /// has exited, only its exit status is left) or a process that is gone.
    fn cpu_and_rss(&mut self, pid: u32) -> Option<(f64, u64)> {
        let (ticks_per_s, page_kib) = (self.ticks_per_s, self.page_kib);
        let stat = parse_stat(self.read(pid, "stat")?)?;
        if matches!(stat.state, 'Z' | 'X' | 'x') {
            return None;
        }
        Some((
            (stat.utime + stat.stime) as f64 * 1e3 / ticks_per_s,
            stat.rss_pages * page_kib,
        ))
    }

    /// PSS of a process, in KiB, from `smaps_rollup`.
    fn pss_kib(&mut self, pid: u32) -> Option<u64> {
        parse_rollup_pss_kib(self.read(pid, "smaps_rollup")?)
    }

    /// The process and all its descendants, from `task/PID/children`.
    fn tree(&mut self, pid: u32) -> Vec<u32> {
        let mut out = vec![pid];
        let mut i = 0;
        while i < out.len() {
            let p = out[i];
            // The children of the main thread: what the agent, a
            // container's init, a shell or QEMU fork. (Children forked by
            // other threads of a process are missed; reading every
            // thread's file each tick would cost a directory listing per
            // process per tick.)
            let children = self.root.join(format!("{p}/task/{p}/children"));
            self.buf.clear();
            if std::fs::File::open(children)
                .and_then(|mut f| f.read_to_end(&mut self.buf))
                .is_ok()
            {
                let found = self.buf.split(|b| b.is_ascii_whitespace()).filter_map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|c| c.parse::<u32>().ok())
                });
                out.extend(found);
            }
            i += 1;
        }
        out
    }
}

/// One sample of the process `pid` and its descendants, read now (what
/// the sampler does every tick; public for its benchmark).
pub fn sample_once(proc_root: &Path, pid: u32, with_pss: bool) -> Option<Sample> {
    take(
        &mut Reader::new(proc_root.to_path_buf()),
        pid,
        with_pss,
        0.0,
    )
}

/// Reads one sample of the tree rooted at `pid`. `None` once it is gone.
fn take(reader: &mut Reader, pid: u32, with_pss: bool, t_ms: f64) -> Option<Sample> {
    let pids = reader.tree(pid);
    let mut sample = Sample {
        t_ms,
        processes: 0,
        cpu_ms: 0.0,
        rss_kib: 0,
        pss_kib: with_pss.then_some(0),
    };
    for p in pids {
        // A process that exited between the listing and the read is left
        // out. (An RSS of 0 is no sign of death: a process in the middle
        // of an execve has a fresh, still empty address space.)
        let Some((cpu, rss)) = reader.cpu_and_rss(p) else {
            continue;
        };
        sample.processes += 1;
        sample.cpu_ms += cpu;
        sample.rss_kib += rss;
        if with_pss {
            let pss = reader.pss_kib(p).unwrap_or(0);
            sample.pss_kib = sample.pss_kib.map(|t| t + pss);
        }
    }
    (sample.processes > 0).then_some(sample)
}

/// What a sampler collected, and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// CPU time the sampler thread used.
    pub cpu: Duration,
    /// How long it ran.
    pub wall: Duration,
}

impl Collected {
    /// The sampler's own cost as a share of one core.
    pub fn cost_share(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.cpu.as_secs_f64() / self.wall.as_secs_f64()
        }
    }
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

/// Samples one instance on a thread of its own until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Collected>,
}

impl Sampler {
    /// Starts sampling the process `pid` and its descendants every
    /// `interval`, with PSS every `pss_every` ticks (0: never).
    pub fn start(proc_root: &Path, pid: u32, interval: Duration, pss_every: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let root = proc_root.to_path_buf();
        let handle = std::thread::spawn(move || {
            let cpu_start = thread_cpu();
            let mut reader = Reader::new(root);
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut tick: u32 = 0;
            // The first PSS reading waits a full PSS period: a short-lived
            // instance is not worth a page-table walk.
            let mut next_pss = interval * pss_every;
            while !flag.load(Ordering::SeqCst) {
                let now = start.elapsed();
                let with_pss = pss_every > 0 && now >= next_pss;
                match take(&mut reader, pid, with_pss, now.as_secs_f64() * 1e3) {
                    Some(s) => samples.push(s),
                    None => break,
                }
                if with_pss {
                    let cost = start.elapsed() - now;
                    next_pss = now + (interval * pss_every).max(cost.div_f64(PSS_BUDGET));
                }
                // Sleep to the next tick boundary, not a fixed interval after
                // the work, so the rate stays `interval`. Ticks missed while
                // this thread waited for a CPU are skipped, not made up in a
                // burst that would load the busy machine further.
                let elapsed = start.elapsed();
                let due = elapsed.as_nanos() / interval.as_nanos().max(1) + 1;
                tick = tick
                    .wrapping_add(1)
                    .max(u32::try_from(due).unwrap_or(u32::MAX));
                let next = interval * tick;
                if let Some(wait) = next.checked_sub(elapsed) {
                    // Parked, not asleep: `stop` unparks the thread, so the
                    // end of an instance never waits for the next tick (that
                    // wait used to land in its `teardown_ms`).
                    std::thread::park_timeout(wait);
                }
            }
            Collected {
                samples,
                cpu: thread_cpu().saturating_sub(cpu_start),
                wall: start.elapsed(),
            }
        });
        Sampler { stop, handle }
    }

    /// Tells the sampler to stop now, without waiting for it: it wakes at
    /// once and takes no further sample.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.thread().unpark();
    }

    /// Stops sampling and returns what was collected.
    pub fn stop(self) -> Collected {
        self.request_stop();
        self.handle.join().unwrap_or_default()
    }
}

/// Peak and steady-state figures of a series of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSummary {
    /// Highest RSS, in MiB.
    pub rss_peak_mib: f64,
    /// Highest PSS, in MiB (`None` without a PSS reading).
    pub pss_peak_mib: Option<f64>,
    /// Median PSS over the second half of the PSS readings: the steady
    /// state after start-up, in MiB.
    pub pss_steady_mib: Option<f64>,
    /// Samples taken.
    pub samples: usize,
}

/// Summarizes samples; `None` when there are none.
pub fn summarize(samples: &[Sample]) -> Option<SampleSummary> {
    if samples.is_empty() {
        return None;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let pss: Vec<u64> = samples.iter().filter_map(|s| s.pss_kib).collect();
    let steady = (!pss.is_empty()).then(|| {
        let mut tail: Vec<f64> = pss[pss.len() / 2..].iter().map(|k| mib(*k)).collect();
        tail.sort_by(f64::total_cmp);
        crate::stats::median(&tail)
    });
    Some(SampleSummary {
        rss_peak_mib: mib(samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
        pss_peak_mib: pss.iter().max().map(|k| mib(*k)),
        pss_steady_mib: steady,
        samples: samples.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("sample-{name}"))
    }

    fn process(
        root: &Path,
        pid: u32,
        children: &[u32],
        utime: u64,
        stime: u64,
        rss_pages: u64,
        pss_kib: u64,
    ) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join(format!("task/{pid}"))).unwrap();
        let kids: Vec<String> = children.iter().map(u32::to_string).collect();
        std::fs::write(dir.join(format!("task/{pid}/children")), kids.join(" ")).unwrap();
        // A command name with spaces and a parenthesis, as real ones can have.
        // Fields 4.. after the state: utime is field 14, stime field 15.
        let mut fields = vec!["0".to_string(); 49];
        fields[14 - 4] = utime.to_string();
        fields[15 - 4] = stime.to_string();
        fields[24 - 4] = rss_pages.to_string();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (a (b) c) S {}", fields.join(" ")),
        )
        .unwrap();
        if pid >= 20 {
            // Fixture pids from 20 on are zombies.
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            std::fs::write(dir.join("stat"), stat.replacen(") S ", ") Z ", 1)).unwrap();
        }
        std::fs::write(dir.join("statm"), format!("1000 {rss_pages} 10 1 0 50 0\n")).unwrap();
        std::fs::write(
            dir.join("smaps_rollup"),
            format!(
                "55d1c0000000-7ffd5a5f8000 ---p 00000000 00:00 0    [rollup]\nRss:    {} kB\nPss:    {pss_kib} kB\nPss_Anon: 1 kB\n",
                rss_pages * 4
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_tree_is_summed_from_its_files() {
        let root = fixture("tree");
        process(&root, 10, &[11, 12, 20], 100, 50, 256, 900);
        process(&root, 11, &[13, 14], 10, 0, 64, 200);
        process(&root, 12, &[], 0, 0, 64, 100);
        process(&root, 13, &[], 1, 1, 10, 40);
        // In the middle of an execve: alive, with no resident pages yet.
        process(&root, 14, &[], 0, 0, 0, 0);
        // A zombie: its CPU time is still in its stat file, but it is gone.
        process(&root, 20, &[], 500, 500, 0, 0);
        let mut r = Reader::new(root.to_path_buf());
        assert_eq!(r.tree(10), [10, 11, 12, 20, 13, 14]);
        let s = take(&mut r, 10, true, 5.0).unwrap();
        let tick_ms = 1e3 / r.ticks_per_s;
        assert_eq!(
            s.processes, 5,
            "the zombie is left out, the exec'ing one counts"
        );
        assert!((s.cpu_ms - 162.0 * tick_ms).abs() < 1e-9, "{s:?}");
        assert_eq!(s.rss_kib, (256 + 64 + 64 + 10) * r.page_kib);
        assert_eq!(s.pss_kib, Some(1240));
        let no_pss = take(&mut r, 10, false, 6.0).unwrap();
        assert_eq!(no_pss.pss_kib, None);
        assert!(
            take(&mut r, 99, true, 0.0).is_none(),
            "a vanished process ends sampling"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    /// The hand parsers of the per-tick files read what `procfs` reads,
    /// on a fixture and on this process's own files (each read once, so
    /// both parse the same bytes).
    #[test]
    fn hand_parsers_agree_with_procfs() {
        use procfs::process::{SmapsRollup, Stat};
        use procfs::{FromBufRead, FromRead};
        let root = fixture("agree");
        process(&root, 7, &[], 123, 45, 678, 910);
        let stats = [
            std::fs::read_to_string(root.join("7/stat")).unwrap(),
            std::fs::read_to_string("/proc/self/stat").unwrap(),
        ];
        for text in &stats {
            let ours = parse_stat(text).unwrap();
            let theirs = Stat::from_read(text.as_bytes()).unwrap();
            assert_eq!(
                ours,
                StatFigures {
                    state: theirs.state,
                    utime: theirs.utime,
                    stime: theirs.stime,
                    rss_pages: theirs.rss,
                },
                "{text}"
            );
        }
        assert_eq!(parse_stat(&stats[0]).unwrap().utime, 123);
        let rollups = [
            std::fs::read_to_string(root.join("7/smaps_rollup")).unwrap(),
            std::fs::read_to_string("/proc/self/smaps_rollup").unwrap(),
        ];
        for text in &rollups {
            let theirs = SmapsRollup::from_buf_read(text.as_bytes()).unwrap();
            let pss = theirs
                .memory_map_rollup
                .iter()
                .next()
                .unwrap()
                .extension
                .map["Pss"];
            assert_eq!(parse_rollup_pss_kib(text), Some(pss / 1024), "{text}");
        }
        assert_eq!(parse_rollup_pss_kib(&rollups[0]), Some(910));
        assert_eq!(parse_stat("12 (x) S 1 2"), None, "a cut-off line");
    }

    #[test]
    fn summaries_take_peaks_and_the_steady_tail() {
        let s = |t: f64, rss: u64, pss: Option<u64>| Sample {
            t_ms: t,
            processes: 1,
            cpu_ms: 0.0,
            rss_kib: rss,
            pss_kib: pss,
        };
        let samples = [
            s(0.0, 1024, Some(4096)),
            s(10.0, 8192, None),
            s(20.0, 2048, Some(2048)),
            s(30.0, 2048, Some(1024)),
            s(40.0, 2048, Some(1024)),
        ];
        let sum = summarize(&samples).unwrap();
        assert_eq!(sum.rss_peak_mib, 8.0);
        assert_eq!(sum.pss_peak_mib, Some(4.0));
        // PSS readings 4, 2, 1, 1 MiB: the second half is 1, 1.
        assert_eq!(sum.pss_steady_mib, Some(1.0));
        assert_eq!(sum.samples, 5);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn sampling_a_real_process_tree() {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3 & sleep 0.3; wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let sampler = Sampler::start(Path::new("/proc"), pid, Duration::from_millis(10), 5);
        // Sampling ends by itself when the process is gone, however late
        // a busy machine ran the sampler's thread.
        let mut child = child;
        child.wait().unwrap();
        let collected = sampler.stop();
        let samples = collected.samples.clone();
        assert!(samples.len() >= 5, "{}", samples.len());
        // Its CPU time per sample (about 10 µs; a PSS reading more), with
        // a wide margin: CPU time, unlike a share of wall time, does not
        // grow when the machine is busy. Its real cost is the sampler bench's.
        assert!(
            collected.cpu < Duration::from_millis(2) * samples.len() as u32,
            "{:?} for {} samples",
            collected.cpu,
            samples.len()
        );
        assert!(
            samples.iter().any(|s| s.processes >= 3),
            "sh and two sleeps: {samples:?}"
        );
        // A sample taken while sh itself is in its execve sees an empty
        // address space; that can happen once, at the start.
        let empty = samples.iter().filter(|s| s.rss_kib == 0).count();
        assert!(empty <= 1, "{samples:?}");
        assert!(samples.iter().any(|s| s.pss_kib.is_some_and(|p| p > 0)));
    }

    /// Stopping never waits for the next tick: with a 20 s interval, a
    /// sampler asked to stop right after its first sample is back at once
    /// (the wait used to end up in every instance's `teardown_ms`).
    #[test]
    fn stopping_does_not_wait_for_the_next_tick() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let sampler = Sampler::start(Path::new("/proc"), child.id(), Duration::from_secs(20), 0);
        std::thread::sleep(Duration::from_millis(50));
        let asked = Instant::now();
        let collected = sampler.stop();
        let took = asked.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(collected.samples.len(), 1);
        assert!(took < Duration::from_secs(10), "stop took {took:?}");
    }
}
