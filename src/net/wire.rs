//! The protocol of `net_rr`, `net_stream` and `service` across the
//! boundary: the agent serves inside the environment ([`serve`]), isobench
//! on the host is the client ([`round_trips`], [`stream`], [`quit`]).
//!
//! Every connection starts with one command byte:
//! - `r`: echo 1-byte messages until the client closes (TCP_RR);
//! - `c`: answer this one byte and close (TCP_CRR: connect, request, close);
//! - `s`: sink: read until the client shuts its side, answer the byte count
//!   (8 bytes, little-endian) — host → environment;
//! - `g`: read an 8-byte count, send that many bytes, close — environment → host;
//! - `q`: answer and stop serving.
//!
//! Every loop is bounded: counts come from the workload's parameters, and
//! every socket has a time limit.

use crate::workload::Metric;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for any one read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next connection: the host's client of a service
/// may run for minutes under TCG before it says `q` (the harness's own
/// timeout ends the instance sooner if it must).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(900);
const CHUNK: usize = 1 << 16;
/// Longest wait for a service's port inside the environment.
pub const READY_LIMIT: Duration = Duration::from_secs(60);

/// Serves connections until a `q` command or until no connection came for
/// [`ACCEPT_TIMEOUT`]; returns how many were served.
pub fn serve(listener: &TcpListener) -> io::Result<u64> {
    set_accept_timeout(listener, ACCEPT_TIMEOUT)?;
    let mut served = 0u64;
    loop {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        served += 1;
        let mut cmd = [0u8; 1];
        s.read_exact(&mut cmd)?;
        match cmd[0] {
            b'r' => {
                let mut b = [0u8; 1];
                while s.read(&mut b)? == 1 {
                    s.write_all(&b)?;
                }
            }
            b'c' => s.write_all(b"c")?,
            b's' => {
                let mut buf = vec![0u8; CHUNK];
                let mut got = 0u64;
                loop {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                s.write_all(&got.to_le_bytes())?;
            }
            b'g' => {
                let mut n = [0u8; 8];
                s.read_exact(&mut n)?;
                let mut left = u64::from_le_bytes(n);
                let buf = vec![0xa5u8; CHUNK];
                while left > 0 {
                    let k = (left as usize).min(CHUNK);
                    s.write_all(&buf[..k])?;
                    left -= k as u64;
                }
            }
            b'w' => {
                let mut p = [0u8; 2];
                s.read_exact(&mut p)?;
                let port = u16::from_le_bytes(p);
                let start = Instant::now();
                let up = loop {
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        break true;
                    }
                    if start.elapsed() >= READY_LIMIT {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                s.write_all(if up { b"y" } else { b"n" })?;
            }
            b'q' => {
                s.write_all(b"q")?;
                return Ok(served);
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown command byte {other:#04x}"),
                ));
            }
        }
    }
}

/// accept(2) honours SO_RCVTIMEO on Linux.
fn set_accept_timeout(listener: &TcpListener, t: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a timeval of the size given, which lives
    // across the call, on a socket the listener owns.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn connect(to: SocketAddr, cmd: u8) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(&[cmd])?;
    Ok(s)
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// TCP_RR and TCP_CRR against the agent at `to`: `requests` timed 1-byte
/// round trips on one connection (each from write to the answer's read),
/// then `connects` connect + 1-byte request + answer + close, timed as a
/// whole.
pub fn round_trips(to: SocketAddr, requests: u64, connects: u64) -> io::Result<Vec<Metric>> {
    let mut s = connect(to, b'r')?;
    let mut lat = Vec::with_capacity(requests as usize);
    let mut b = [7u8; 1];
    for _ in 0..requests {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(s);
    let t = Instant::now();
    for _ in 0..connects {
        let mut c = connect(to, b'c')?;
        c.read_exact(&mut b)?;
    }
    let crr_s = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let p50 = nearest_rank(&lat, 50.0);
    Ok(vec![
        Metric::lower("score", "µs", p50),
        Metric::lower("rr_p50_us", "µs", p50),
        Metric::lower("rr_p99_us", "µs", nearest_rank(&lat, 99.0)),
        Metric::higher("crr_per_s", "1/s", connects as f64 / crr_s),
    ])
}

/// Bulk TCP both ways: `mib` MiB host → environment (until the agent
/// acknowledges the count), then `mib` MiB environment → host (until the
/// last byte arrived). MB/s of 10⁶ bytes.
pub fn stream(to: SocketAddr, mib: u64) -> io::Result<Vec<Metric>> {
    let bytes = mib << 20;
    let buf = vec![0x5au8; CHUNK];
    let mut s = connect(to, b's')?;
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let k = ((bytes - sent) as usize).min(CHUNK);
        s.write_all(&buf[..k])?;
        sent += k as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut n = [0u8; 8];
    s.read_exact(&mut n)?;
    let up_s = t.elapsed().as_secs_f64();
    if u64::from_le_bytes(n) != bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the agent received {} of {bytes} bytes",
                u64::from_le_bytes(n)
            ),
        ));
    }
    let mut g = connect(to, b'g')?;
    let t = Instant::now();
    g.write_all(&bytes.to_le_bytes())?;
    let mut got = 0u64;
    let mut rbuf = vec![0u8; CHUNK];
    while got < bytes {
        let k = g.read(&mut rbuf)?;
        if k == 0 {
            break;
        }
        got += k as u64;
    }
    let down_s = t.elapsed().as_secs_f64();
    if got != bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("received {got} of {bytes} bytes from the agent"),
        ));
    }
    let up = bytes as f64 / 1e6 / up_s;
    let down = bytes as f64 / 1e6 / down_s;
    Ok(vec![
        Metric::higher("score", "MB/s", (up + down) / 2.0),
        Metric::higher("to_env_mbs", "MB/s", up),
        Metric::higher("from_env_mbs", "MB/s", down),
    ])
}

/// Asks the agent whether `port` accepts inside the environment (it waits
/// up to [`READY_LIMIT`]).
pub fn ready_inside(to: SocketAddr, port: u16) -> io::Result<bool> {
    let mut s = connect(to, b'w')?;
    s.set_read_timeout(Some(READY_LIMIT + IO_TIMEOUT))?;
    s.write_all(&port.to_le_bytes())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0] == b'y')
}

/// Tells the agent to stop serving.
pub fn quit(to: SocketAddr) -> io::Result<()> {
    let mut s = connect(to, b'q')?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
}

/// Waits until a server answers at `to` (a service's readiness), up to
/// `limit`; returns how long that took. Answering means: the connection is
/// accepted and then neither closed nor reset at once — the server either
/// speaks first or waits for the client (a read times out). A mere accept
/// is not enough: QEMU's user-mode forward accepts on the host before the
/// guest's server listens, and then closes.
pub fn wait_accepting(to: SocketAddr, limit: Duration) -> io::Result<Duration> {
    let start = Instant::now();
    loop {
        let answered =
            TcpStream::connect_timeout(&to, Duration::from_millis(500)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                let mut b = [0u8; 1];
                match s.read(&mut b) {
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed at once",
                    )),
                    Ok(_) => Ok(()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            });
        match answered {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() >= limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).map_err(io::Error::from)
}

/// Pins every thread of process `pid` to `cpu` (a QEMU process: vCPU and
/// I/O threads alike).
pub fn pin_process(pid: u32, cpu: usize) -> io::Result<()> {
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).map_err(io::Error::from)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(tid) = task?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A thread that ended meanwhile is no error.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &one);
    }
    Ok(())
}

/// The CPU both ends of a measurement share: the last one isobench may
/// run on.
pub fn shared_cpu() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .and_then(|set| {
            (0..nix::sched::CpuSet::count())
                .rev()
                .find(|c| set.is_set(*c).unwrap_or(false))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(m: &[Metric], name: &str) -> f64 {
        m.iter().find(|x| x.name == name).unwrap().value
    }

    #[test]
    fn round_trips_and_streams_against_the_server_over_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let server = std::thread::spawn(move || serve(&l));
        let rr = round_trips(to, 50, 5).unwrap();
        assert!(metric(&rr, "rr_p50_us") > 0.0);
        assert!(metric(&rr, "rr_p99_us") >= metric(&rr, "rr_p50_us"));
        assert!(metric(&rr, "crr_per_s") > 0.0);
        let st = stream(to, 2).unwrap();
        assert!(metric(&st, "to_env_mbs") > 0.0 && metric(&st, "from_env_mbs") > 0.0);
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(ready_inside(to, other.local_addr().unwrap().port()).unwrap());
        quit(to).unwrap();
        // r + 5 c + s + g + w + q
        assert_eq!(server.join().unwrap().unwrap(), 10);
    }
}
