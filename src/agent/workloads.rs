//! The built-in workloads, as the agent runs them.
//!
//! Every timing here comes from the agent's own monotonic clock, so it
//! measures the workload inside its environment, not the cost of reaching
//! it. Every workload reports a `score` with its unit and direction, plus
//! the figures behind it.

use crate::workload::{Metric, WorkloadSpec};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// What one run of a workload produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Figures measured by the workload.
    pub metrics: Vec<Metric>,
    /// A digest of the computation, equal in every environment.
    pub digest: Option<String>,
    /// For a program: its exit status (128 + signal when killed). The
    /// agent exits with it.
    pub status: Option<i32>,
}

impl Outcome {
    fn of(metrics: Vec<Metric>) -> Self {
        Outcome {
            metrics,
            digest: None,
            status: None,
        }
    }
}

/// Runs one workload. `Ok(None)`: the workload measures nothing itself
/// (`noop`). `in_guest`: the agent is a guest's PID 1 (a `command`
/// workload's program then keeps Docker's default capabilities only).
pub fn run(
    spec: &WorkloadSpec,
    in_guest: bool,
    listener: Option<&std::net::TcpListener>,
) -> Result<Option<Outcome>, String> {
    let listening = || listener.ok_or_else(|| format!("{}: no listening socket", spec.kind()));
    match *spec {
        WorkloadSpec::Noop => Ok(None),
        WorkloadSpec::Idle { duration_ms } => Ok(Some(idle(duration_ms))),
        WorkloadSpec::Cpu {
            rounds,
            buffer_kib,
            threads,
        } => cpu(rounds, buffer_kib, threads).map(Some),
        WorkloadSpec::Memory { array_mib, passes } => Ok(Some(memory(array_mib, passes))),
        WorkloadSpec::Pagefault { mib } => pagefault(mib).map(Some),
        WorkloadSpec::Syscall { iterations } => Ok(Some(syscall(iterations))),
        WorkloadSpec::Fork { count } => fork(count).map(Some),
        WorkloadSpec::Net { requests, bulk_mib } => net(requests, bulk_mib).map(Some),
        WorkloadSpec::Fileio {
            file_mib,
            block_kib,
            ops,
        } => fileio(&scratch_dir(), file_mib, block_kib, ops).map(Some),
        WorkloadSpec::Command { ref argv } => {
            let keep = in_guest.then_some(crate::env::container::DEFAULT_CAPS);
            super::command::run(argv, keep).map(Some)
        }
        WorkloadSpec::NetRr { .. } | WorkloadSpec::NetStream { .. } => {
            let served = crate::net::wire::serve(listening()?)
                .map_err(|e| format!("{}: serving the host's client: {e}", spec.kind()))?;
            Ok(Some(Outcome::of(vec![Metric::higher(
                "server_connections",
                "1",
                served as f64,
            )])))
        }
        WorkloadSpec::Service { ref argv } => {
            let keep = in_guest.then_some(crate::env::container::DEFAULT_CAPS);
            super::command::serve(argv, keep, listening()?).map(Some)
        }
        // A density instance just stays up; the host reads its memory and
        // ends it.
        WorkloadSpec::Density { .. } => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

fn idle(duration_ms: u64) -> Outcome {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(duration_ms));
    Outcome::of(vec![Metric::lower(
        "idle_ms",
        "ms",
        start.elapsed().as_secs_f64() * 1e3,
    )])
}

/// The fixed input of the `cpu` workload: the same bytes everywhere.
fn cpu_buffer(kib: u64) -> Vec<u8> {
    let len = usize::try_from(kib * 1024).unwrap_or(usize::MAX);
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// One chain: `h0 = sha256(buf)` (thread 0) or `sha256(t as u64 LE || buf)`
/// (thread t), then `h(i) = sha256(h(i-1) || buf)`. Returns the last digest.
fn chain(rounds: u64, buffer: &[u8], thread: u64) -> [u8; 32] {
    let mut first = Sha256::new();
    if thread > 0 {
        first.update(thread.to_le_bytes());
    }
    first.update(buffer);
    let mut digest = first.finalize();
    for _ in 1..rounds {
        let mut hasher = Sha256::new();
        hasher.update(digest);
        hasher.update(buffer);
        digest = hasher.finalize();
    }
    digest.into()
}

/// The `cpu` digest from the threads' last digests: the one chain's, or
/// the SHA-256 of all of them in thread order.
fn combine(digests: &[[u8; 32]]) -> String {
    match digests {
        [one] => crate::util::hex(one),
        many => {
            let mut all = Sha256::new();
            for d in many {
                all.update(d);
            }
            crate::util::hex(&all.finalize())
        }
    }
}

/// The `cpu` digest, computed on one thread (the reference for tests).
pub fn cpu_digest(rounds: u64, buffer: &[u8], threads: u64) -> String {
    let digests: Vec<[u8; 32]> = (0..threads.max(1))
        .map(|t| chain(rounds, buffer, t))
        .collect();
    combine(&digests)
}

/// SHA-256 in software (the `force-soft` feature of `sha2`): the same
/// instructions run natively and under any emulated CPU, whatever the host's
/// SHA extensions, so the comparison is of environments, not of code paths.
fn cpu(rounds: u64, buffer_kib: u64, threads: u64) -> Result<Outcome, String> {
    let buffer = cpu_buffer(buffer_kib);
    let start = Instant::now();
    let digests: Vec<[u8; 32]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let buffer = &buffer;
                s.spawn(move || chain(rounds, buffer, t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<_, _>>()
    })
    .map_err(|_| "a hashing thread panicked".to_string())?;
    let elapsed = start.elapsed().as_secs_f64();
    let digest = combine(&digests);
    let total = (rounds * threads) as f64;
    let mib = (rounds * threads * buffer_kib) as f64 / 1024.0;
    Ok(Outcome {
        metrics: vec![
            Metric::higher("score", "rounds/s", total / elapsed),
            Metric::higher("throughput", "MiB/s", mib / elapsed),
            Metric::lower("elapsed_ms", "ms", elapsed * 1e3),
        ],
        digest: Some(digest),
        status: None,
    })
}

/// STREAM (McCalpin): copy `c = a`, scale `b = q·c`, add `c = a + b`,
/// triad `a = b + q·c` over three arrays of `array_mib` MiB each; the best
/// time of `passes` passes counts; MB/s are 10^6 bytes per second, as in
/// STREAM, counting the bytes each kernel reads and writes.
fn memory(array_mib: u64, passes: u64) -> Outcome {
    let n = (array_mib as usize * (1 << 20)) / 8;
    let (mut a, mut b, mut c) = (vec![1.0f64; n], vec![2.0f64; n], vec![0.0f64; n]);
    let q = 3.0f64;
    let mut best = [f64::INFINITY; 4];
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        c.copy_from_slice(&a);
        best[0] = best[0].min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (bi, ci) in b.iter_mut().zip(&c) {
            *bi = q * ci;
        }
        best[1] = best[1].min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for ((ci, ai), bi) in c.iter_mut().zip(&a).zip(&b) {
            *ci = ai + bi;
        }
        best[2] = best[2].min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for ((ai, bi), ci) in a.iter_mut().zip(&b).zip(&c) {
            *ai = bi + q * ci;
        }
        best[3] = best[3].min(t.elapsed().as_secs_f64());
        black_box((&a, &b, &c));
    }
    let bytes = [2.0, 2.0, 3.0, 3.0].map(|words| words * 8.0 * n as f64);
    let mbs: Vec<f64> = bytes.iter().zip(best).map(|(b, t)| b / 1e6 / t).collect();
    Outcome::of(vec![
        Metric::higher("score", "MB/s", mbs[3]),
        Metric::higher("copy_mbs", "MB/s", mbs[0]),
        Metric::higher("scale_mbs", "MB/s", mbs[1]),
        Metric::higher("add_mbs", "MB/s", mbs[2]),
        Metric::higher("triad_mbs", "MB/s", mbs[3]),
    ])
}

/// Maps `mib` MiB of fresh anonymous memory and writes one byte per page:
/// every write is a page fault that the kernel (and, in a VM, the nested
/// page tables) must serve.
fn pagefault(mib: u64) -> Result<Outcome, String> {
    // SAFETY: sysconf with a valid name.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = mib as usize * (1 << 20);
    // SAFETY: a private anonymous mapping of `len` bytes, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {mib} MiB failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let pages = len / page;
    let start = Instant::now();
    for i in 0..pages {
        // SAFETY: `i * page` is inside the mapping; volatile so the write,
        // and with it the fault, is not optimized away.
        unsafe { std::ptr::write_volatile((base as *mut u8).add(i * page), 1) };
    }
    let elapsed = start.elapsed().as_secs_f64();
    // SAFETY: unmapping exactly the mapping made above.
    unsafe { libc::munmap(base, len) };
    let ns = elapsed * 1e9 / pages as f64;
    Ok(Outcome::of(vec![
        Metric::lower("score", "ns/page", ns),
        Metric::higher("faults_per_s", "1/s", pages as f64 / elapsed),
    ]))
}

/// `getppid(2)` through the raw system call (no library caching), in a
/// tight loop: the cost of entering and leaving the kernel.
fn syscall(iterations: u64) -> Outcome {
    let calls = || {
        let start = Instant::now();
        for _ in 0..iterations {
            // SAFETY: getppid takes no arguments and cannot fail.
            black_box(unsafe { libc::syscall(libc::SYS_getppid) });
        }
        start.elapsed().as_secs_f64() * 1e9 / iterations as f64
    };
    let mut metrics = vec![Metric::lower("score", "ns/call", calls())];
    // Natively, the same loop once more under Docker's default seccomp
    // filter (compiled by the host, passed in ISOBENCH_SECCOMP_BPF),
    // installed on the agent itself, which exits right after: what the
    // filter alone adds to a call, measured side by side in one process.
    if let Ok(bpf) = std::env::var(crate::env::SECCOMP_BPF_VAR)
        && let Some(filtered) = under_seccomp(&bpf, calls)
    {
        metrics.push(Metric::lower("score_seccomp", "ns/call", filtered));
    }
    Outcome::of(metrics)
}

/// Runs `f` after installing the encoded seccomp programs on this
/// process; `None` when it is already filtered or they cannot be installed.
fn under_seccomp(bpf: &str, f: impl Fn() -> f64) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    if crate::meta::field(&status, "Seccomp").as_deref() != Some("0") {
        return None;
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return None;
    }
    crate::seccomp::install_encoded(bpf).ok()?;
    Some(f())
}

/// fork, `_exit(0)` in the child, waitpid in the parent, `count` times.
fn fork(count: u64) -> Result<Outcome, String> {
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: the child only calls _exit, which is async-signal-safe;
        // the `cpu` workload's threads are not running (workloads run one
        // at a time), so the agent is single-threaded here.
        match unsafe { libc::fork() } {
            -1 => return Err(format!("fork failed: {}", std::io::Error::last_os_error())),
            // SAFETY: see above.
            0 => unsafe { libc::_exit(0) },
            pid => {
                let mut status = 0;
                // SAFETY: waiting for the child just forked.
                if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
                    return Err(format!(
                        "waitpid failed: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Outcome::of(vec![
        Metric::higher("score", "forks/s", count as f64 / elapsed),
        Metric::lower("fork_us", "µs", elapsed * 1e6 / count as f64),
    ]))
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// TCP over 127.0.0.1 inside the environment: `requests` 1-byte round
/// trips (each timed), then `bulk_mib` MiB streamed one way.
///
/// Both ends run on one CPU (the one the agent is on), as in a 1-vCPU
/// guest. Left to the scheduler, the two threads sometimes share a CPU and
/// sometimes not, and a wake-up across CPUs costs ~90 µs on a virtualized
/// host against ~6 µs for the whole round trip on one: the figure would
/// measure placement, not the network stack.
fn net(requests: u64, bulk_mib: u64) -> Result<Outcome, String> {
    use std::net::{TcpListener, TcpStream};
    let err = |what: &'static str| move |e: std::io::Error| format!("net: {what}: {e}");
    let mut one = nix::sched::CpuSet::new();
    nix::sched::sched_getcpu()
        .and_then(|cpu| one.set(cpu))
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one))
        .map_err(|e| format!("net: pinning to one CPU: {e}"))?;
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(err("binding 127.0.0.1 (is lo up?)"))?;
    let addr = listener.local_addr().map_err(err("local address"))?;
    let bulk = bulk_mib * (1 << 20);
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        for _ in 0..requests {
            s.read_exact(&mut byte)?;
            s.write_all(&byte)?;
        }
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        while got < bulk {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        s.write_all(b"k")
    });
    let mut c = TcpStream::connect(addr).map_err(err("connecting"))?;
    c.set_nodelay(true).map_err(err("TCP_NODELAY"))?;
    let mut lat = Vec::with_capacity(requests as usize);
    let mut byte = [7u8; 1];
    for _ in 0..requests {
        let t = Instant::now();
        c.write_all(&byte).map_err(err("request"))?;
        c.read_exact(&mut byte).map_err(err("response"))?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let chunk = vec![0x5au8; 1 << 16];
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < bulk {
        let n = chunk.len().min((bulk - sent) as usize);
        c.write_all(&chunk[..n]).map_err(err("bulk send"))?;
        sent += n as u64;
    }
    c.read_exact(&mut byte)
        .map_err(err("bulk acknowledgement"))?;
    let bulk_s = t.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| "net: the server thread panicked".to_string())?
        .map_err(err("server"))?;
    lat.sort_by(f64::total_cmp);
    Ok(Outcome::of(vec![
        Metric::lower("score", "µs", nearest_rank(&lat, 50.0)),
        Metric::lower("rr_p50_us", "µs", nearest_rank(&lat, 50.0)),
        Metric::lower("rr_p99_us", "µs", nearest_rank(&lat, 99.0)),
        Metric::higher("bulk_mbs", "MB/s", bulk as f64 / 1e6 / bulk_s),
    ]))
}

/// For the workloads served across the boundary (`net_rr`, `net_stream`,
/// `service`): pins the agent to `$ISOBENCH_NET_CPU` (the CPU the host's
/// client is pinned to) and listens on `$ISOBENCH_NET_PORT` (0: any) on
/// every address, before `ready`, so `ready` means the port accepts.
pub fn listen(spec: &WorkloadSpec) -> Result<Option<std::net::TcpListener>, String> {
    use crate::workload::WorkloadKind as K;
    if !matches!(spec.kind(), K::NetRr | K::NetStream | K::Service) {
        return Ok(None);
    }
    if let Some(cpu) = std::env::var(crate::net::CPU_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // In a guest the CPU numbers are the guest's: pin only where it exists.
        let _ = crate::net::wire::pin_thread(cpu);
    }
    let port = std::env::var(crate::net::PORT_ENV)
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(0);
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map(Some)
        .map_err(|e| format!("{}: listening on port {port}: {e}", spec.kind()))
}

/// Environment variable naming the directory I/O workloads use.
pub const SCRATCH_ENV: &str = "ISOBENCH_SCRATCH";

/// `$ISOBENCH_SCRATCH`, or `/scratch` (created in the container's writable
/// layer, or on the VM's disk, which the agent mounts there).
pub fn scratch_dir() -> std::path::PathBuf {
    std::env::var_os(SCRATCH_ENV).map_or_else(|| "/scratch".into(), Into::into)
}

/// A 4096-byte buffer aligned to 4096 bytes, as O_DIRECT needs.
struct Aligned {
    storage: Vec<u8>,
    offset: usize,
}

impl Aligned {
    fn new(fill: u8) -> Aligned {
        let storage = vec![fill; 8192];
        let offset = storage.as_ptr().align_offset(4096);
        Aligned { storage, offset }
    }
    fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.storage[self.offset..self.offset + 4096]
            .as_mut_ptr()
            .cast()
    }
}

/// xorshift64*: deterministic offsets, the same in every environment.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// File I/O in `dir`: a `file_mib` MiB file written sequentially in
/// `block_kib` KiB blocks and fsync'ed (its page cache then dropped with
/// POSIX_FADV_DONTNEED), read back sequentially, then `ops` 4 KiB reads and
/// `ops` 4 KiB writes at random aligned offsets with O_DIRECT, each timed.
fn fileio(
    dir: &std::path::Path,
    file_mib: u64,
    block_kib: u64,
    ops: u64,
) -> Result<Outcome, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |what: String| move |e: std::io::Error| format!("fileio: {what}: {e}");
    std::fs::create_dir_all(dir).map_err(err(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("isobench-fileio.{}", std::process::id()));
    let _cleanup = RemoveOnDrop(path.clone());
    let size = file_mib * (1 << 20);
    let block = vec![0xa5u8; (block_kib * 1024) as usize];

    let t = Instant::now();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(err(format!("creating {}", path.display())))?;
    let mut written = 0u64;
    while written < size {
        let n = block.len().min((size - written) as usize);
        f.write_all(&block[..n])
            .map_err(err("sequential write".into()))?;
        written += n as u64;
    }
    f.sync_all().map_err(err("fsync".into()))?;
    let write_s = t.elapsed().as_secs_f64();
    // SAFETY: advice on an open descriptor; it only drops clean cached pages.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(f);

    let t = Instant::now();
    let mut f = std::fs::File::open(&path).map_err(err(format!("opening {}", path.display())))?;
    let mut buf = vec![0u8; block.len()];
    let mut read = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err("sequential read".into()))?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let read_s = t.elapsed().as_secs_f64();
    if read != size {
        return Err(format!("fileio: read {read} bytes back, wrote {size}"));
    }

    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| {
            format!(
                "fileio: opening {} with O_DIRECT: {e} (the scratch directory's file system must support direct I/O)",
                path.display()
            )
        })?;
    let pages = (size / 4096).max(1);
    let mut state = 0x1500_BE4C_u64;
    let mut page = Aligned::new(0x5a);
    let mut time_ops = |write: bool| -> Result<(Vec<f64>, f64), String> {
        let mut lat = Vec::with_capacity(ops as usize);
        let start = Instant::now();
        for _ in 0..ops {
            let offset = (next_random(&mut state) % pages) * 4096;
            let t = Instant::now();
            // SAFETY: the buffer is 4096 bytes, aligned to 4096, and valid
            // for the call; the offset is 4096-aligned and inside the file.
            let n = unsafe {
                if write {
                    libc::pwrite(
                        f.as_raw_fd(),
                        page.as_mut_ptr(),
                        4096,
                        offset as libc::off_t,
                    )
                } else {
                    libc::pread(
                        f.as_raw_fd(),
                        page.as_mut_ptr(),
                        4096,
                        offset as libc::off_t,
                    )
                }
            };
            if n != 4096 {
                return Err(format!(
                    "fileio: random {} at {offset}: {}",
                    if write { "write" } else { "read" },
                    std::io::Error::last_os_error()
                ));
            }
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let total = start.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        Ok((lat, total))
    };
    let (reads, read_total) = time_ops(false)?;
    let (writes, write_total) = time_ops(true)?;
    let mbs = |bytes: u64, s: f64| bytes as f64 / 1e6 / s;
    let iops = ops as f64 / read_total;
    Ok(Outcome::of(vec![
        Metric::higher("score", "IOPS", iops),
        Metric::higher("seq_write_mbs", "MB/s", mbs(size, write_s)),
        Metric::higher("seq_read_mbs", "MB/s", mbs(size, read_s)),
        Metric::higher("rand_read_iops", "IOPS", iops),
        Metric::higher("rand_write_iops", "IOPS", ops as f64 / write_total),
        Metric::lower("rand_read_p50_us", "µs", nearest_rank(&reads, 50.0)),
        Metric::lower("rand_read_p99_us", "µs", nearest_rank(&reads, 99.0)),
        Metric::lower("rand_write_p50_us", "µs", nearest_rank(&writes, 50.0)),
        Metric::lower("rand_write_p99_us", "µs", nearest_rank(&writes, 99.0)),
    ]))
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(o: &Outcome, name: &str) -> f64 {
        o.metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {o:?}"))
            .value
    }

    #[test]
    fn cpu_digest_is_a_sha256_chain() {
        // Values computed independently with Python's hashlib:
        // b = bytes((i*31) % 251 for i in range(1024)); h1 = sha256(b)
        let buffer = cpu_buffer(1);
        assert_eq!(
            cpu_digest(1, &buffer, 1),
            "566831246a14668f33e86d5501f4fcc66b10d28b0ab3e0727970520da68d9de4"
        );
        // Two rounds: sha256(h1 || b).
        assert_eq!(
            cpu_digest(2, &buffer, 1),
            "74903d8dc7c4e5483e1cef29faa7ceb46b874d7cc86cf14421d8f2acdc333dfc"
        );
        // Two threads, one round: sha256(sha256(b) || sha256((1).to_bytes(8, "little") + b)).
        assert_eq!(
            cpu_digest(1, &buffer, 2),
            "797c25f676594f004ccb6e4b7d528fe1e7efe7e7b8091467a26d64ea288c5f9a"
        );
    }

    #[test]
    fn cpu_reports_score_and_the_same_digest_as_the_reference() {
        let o = run(
            &WorkloadSpec::Cpu {
                rounds: 3,
                buffer_kib: 1,
                threads: 2,
            },
            false,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            o.digest.as_deref(),
            Some(cpu_digest(3, &cpu_buffer(1), 2).as_str())
        );
        assert!(metric(&o, "score") > 0.0 && metric(&o, "score").is_finite());
        assert_eq!(run(&WorkloadSpec::Noop, false, None), Ok(None));
    }

    #[test]
    fn memory_reports_four_kernels() {
        let o = memory(2, 2);
        for k in ["copy_mbs", "scale_mbs", "add_mbs", "triad_mbs"] {
            assert!(metric(&o, k) > 10.0, "{k}: {o:?}");
        }
        assert_eq!(metric(&o, "score"), metric(&o, "triad_mbs"));
    }

    #[test]
    fn small_workloads_measure_something() {
        let o = pagefault(4).unwrap();
        assert!(
            metric(&o, "score") > 1.0 && metric(&o, "faults_per_s") > 0.0,
            "{o:?}"
        );
        let o = syscall(10_000);
        assert!(
            metric(&o, "score") > 1.0,
            "a system call takes more than 1 ns: {o:?}"
        );
        let o = fork(5).unwrap();
        assert!(metric(&o, "score") > 0.0, "{o:?}");
        let o = idle(5);
        assert!(metric(&o, "idle_ms") >= 5.0);
    }

    #[test]
    fn net_round_trips_and_streams_over_loopback() {
        let o = net(50, 2).unwrap();
        assert!(metric(&o, "rr_p50_us") > 0.0);
        assert!(metric(&o, "rr_p99_us") >= metric(&o, "rr_p50_us"));
        assert!(metric(&o, "bulk_mbs") > 1.0, "{o:?}");
    }

    #[test]
    fn fileio_writes_reads_and_cleans_up() {
        // /var/tmp is on disk on Debian (O_DIRECT works there, not always on tmpfs).
        let dir = std::path::Path::new("/var/tmp")
            .join(format!("isobench-fileio-test-{}", std::process::id()));
        let o = fileio(&dir, 2, 64, 50).unwrap();
        for m in [
            "seq_write_mbs",
            "seq_read_mbs",
            "rand_read_iops",
            "rand_write_iops",
        ] {
            assert!(metric(&o, m) > 0.0, "{m}: {o:?}");
        }
        assert!(metric(&o, "rand_read_p99_us") >= metric(&o, "rand_read_p50_us"));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the test file is removed"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn random_offsets_are_deterministic() {
        let (mut a, mut b) = (42u64, 42u64);
        let xs: Vec<u64> = (0..5).map(|_| next_random(&mut a)).collect();
        let ys: Vec<u64> = (0..5).map(|_| next_random(&mut b)).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50.0), 50.0);
        assert_eq!(nearest_rank(&v, 99.0), 99.0);
        assert_eq!(nearest_rank(&[3.0], 99.0), 3.0);
        assert!(nearest_rank(&[], 50.0).is_nan());
    }
}
