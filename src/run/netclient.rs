//! The host's side of the workloads served across the boundary: once an
//! instance is `ready` (its agent listening), a thread of isobench, pinned
//! to the CPU the instance is pinned to, runs the client — the TCP_RR/CRR
//! or stream protocol of [`crate::net::wire`], or a real client program
//! against a real server — and then tells the agent to stop.

use crate::extract::MetricRule;
use crate::net::wire;
use crate::workload::{Metric, WorkloadSpec};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a service's port to accept connections.
const SERVICE_READY: Duration = Duration::from_secs(60);
/// Longest run of a service's client program.
const CLIENT_LIMIT: Duration = Duration::from_secs(600);

/// What the host runs against one instance.
#[derive(Debug, Clone)]
pub struct NetClient {
    /// Pin the client thread (and the instance) to this host CPU.
    pub cpu: Option<usize>,
    /// For `service`: the server's port inside the instance, the client
    /// program and the rules reading its output.
    pub service: Option<(u16, Vec<String>, Vec<MetricRule>)>,
}

/// The client's figures, or why it failed; and the client program's output.
pub type ClientResult = (Result<Vec<Metric>, String>, String);

/// Starts the client of `spec` against the agent at `control` (and the
/// service at `service`) on a thread of its own.
pub fn start(
    client: NetClient,
    spec: WorkloadSpec,
    control: SocketAddr,
    service: Option<SocketAddr>,
) -> std::thread::JoinHandle<ClientResult> {
    std::thread::spawn(move || {
        if let Some(cpu) = client.cpu {
            let _ = wire::pin_thread(cpu);
        }
        let mut output = String::new();
        let result = match spec {
            WorkloadSpec::NetRr { requests, connects } => {
                wire::round_trips(control, requests, connects)
                    .map_err(|e| format!("net_rr client against {control}: {e}"))
            }
            WorkloadSpec::NetStream { bulk_mib } => wire::stream(control, bulk_mib)
                .map_err(|e| format!("net_stream client against {control}: {e}")),
            WorkloadSpec::Service { .. } => match (&client.service, service) {
                (Some((inside, argv, rules)), Some(at)) => {
                    run_service_client(control, *inside, argv, rules, at, &mut output)
                }
                _ => Err("service: the instance's port cannot be reached from the host".into()),
            },
            _ => Ok(Vec::new()),
        };
        // Always let the agent go, also after a failure.
        let quit =
            wire::quit(control).map_err(|e| format!("telling the agent at {control} to stop: {e}"));
        (result.and_then(|m| quit.map(|()| m)), output)
    })
}

/// `{addr}` and `{port}` in the client's arguments become `at`'s.
pub fn fill(argv: &[String], at: SocketAddr) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{addr}", &at.ip().to_string())
                .replace("{port}", &at.port().to_string())
        })
        .collect()
}

fn run_service_client(
    control: SocketAddr,
    inside: u16,
    argv: &[String],
    rules: &[MetricRule],
    at: SocketAddr,
    output: &mut String,
) -> Result<Vec<Metric>, String> {
    let start = Instant::now();
    // Listening inside first (the agent checks), then reachable from here.
    match wire::ready_inside(control, inside) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "service: port {inside} did not accept inside the environment within {} s",
                wire::READY_LIMIT.as_secs()
            ));
        }
        Err(e) => {
            return Err(format!(
                "service: asking the agent about port {inside}: {e}"
            ));
        }
    }
    wire::wait_accepting(at, SERVICE_READY).map_err(|e| {
        format!(
            "service: {at} did not accept a connection within {} s: {e}",
            SERVICE_READY.as_secs()
        )
    })?;
    let ready = start.elapsed();
    let argv = fill(argv, at);
    let (program, args) = argv.split_first().ok_or("service: empty client")?;
    let out_file = tempfile_in_proc()?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            out_file.try_clone().map_err(|e| e.to_string())?,
        ))
        .stderr(Stdio::from(
            out_file.try_clone().map_err(|e| e.to_string())?,
        ))
        .spawn()
        .map_err(|e| {
            format!("service: cannot start the client `{program}`: {e} (is it installed?)")
        })?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > CLIENT_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "service: the client `{program}` ran longer than {} s; killed",
                    CLIENT_LIMIT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("service: waiting for `{program}`: {e}")),
        }
    };
    let elapsed = start.elapsed();
    *output = read_back(out_file)?;
    if !status.success() {
        let tail: String = {
            let t = output.trim_end();
            let from = t.char_indices().rev().nth(300).map_or(0, |(i, _)| i);
            t[from..].to_string()
        };
        return Err(format!(
            "service: the client `{}` ended with {status}; its output ends: {tail}",
            argv.join(" ")
        ));
    }
    let mut metrics = crate::extract::extract(rules, output)?;
    metrics.push(Metric::lower(
        "service_ready_ms",
        "ms",
        ready.as_secs_f64() * 1e3,
    ));
    metrics.push(Metric::lower(
        "client_ms",
        "ms",
        elapsed.as_secs_f64() * 1e3,
    ));
    Ok(metrics)
}

/// An anonymous file for the client's output (no name on any disk).
fn tempfile_in_proc() -> Result<std::fs::File, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor it
    // returns is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"isobench-client".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "service: memfd_create: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn read_back(mut f: std::fs::File) -> Result<String, String> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    f.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| f.take(4 << 20).read_to_string(&mut text))
        .map_err(|e| format!("service: reading the client's output: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_the_reachable_address() {
        let at: SocketAddr = "198.18.7.2:6379".parse().unwrap();
        let argv: Vec<String> = ["redis-benchmark", "-h", "{addr}", "-p", "{port}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            fill(&argv, at),
            ["redis-benchmark", "-h", "198.18.7.2", "-p", "6379"]
        );
    }
}
