//! The built-in workloads, as the agent runs them.
//!
//! Every timing here comes from the agent's own monotonic clock, so it
//! measures the workload inside its environment, not the cost of reaching it.

use crate::workload::{Metric, WorkloadSpec};
use sha2::{Digest, Sha256};
use std::time::Instant;

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

/// Runs one workload. `Ok(None)`: the workload measures nothing itself (`noop`).
pub fn run(spec: &WorkloadSpec) -> Result<Option<Outcome>, String> {
    match *spec {
        WorkloadSpec::Noop => Ok(None),
        WorkloadSpec::Cpu { rounds, buffer_kib } => Ok(Some(cpu(rounds, buffer_kib))),
        WorkloadSpec::Command { ref argv } => super::command::run(argv).map(Some),
    }
}

/// The fixed input of the `cpu` workload: the same bytes everywhere.
fn cpu_buffer(kib: u64) -> Vec<u8> {
    let len = usize::try_from(kib * 1024).unwrap_or(usize::MAX);
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// The digest chain: `h0 = sha256(buf)`, `h(i) = sha256(h(i-1) || buf)`.
/// Returns the last digest in hex.
pub fn cpu_digest(rounds: u64, buffer: &[u8]) -> String {
    let mut digest = Sha256::digest(buffer);
    for _ in 1..rounds {
        let mut hasher = Sha256::new();
        hasher.update(digest);
        hasher.update(buffer);
        digest = hasher.finalize();
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 in software (the `force-soft` feature of `sha2`): the same
/// instructions run natively and under any emulated CPU, whatever the host's
/// SHA extensions, so the comparison is of environments, not of code paths.
fn cpu(rounds: u64, buffer_kib: u64) -> Outcome {
    let buffer = cpu_buffer(buffer_kib);
    let start = Instant::now();
    let digest = cpu_digest(rounds, &buffer);
    let elapsed = start.elapsed().as_secs_f64();
    let mib = (rounds * buffer_kib) as f64 / 1024.0;
    Outcome {
        metrics: vec![
            Metric::higher("score", "rounds/s", rounds as f64 / elapsed),
            Metric::higher("throughput", "MiB/s", mib / elapsed),
            Metric::lower("elapsed_ms", "ms", elapsed * 1e3),
        ],
        digest: Some(digest),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_digest_is_a_sha256_chain() {
        // One round is plain SHA-256 of the buffer; the value for a 1 KiB
        // buffer of this pattern was computed independently with Python:
        // hashlib.sha256(bytes((i*31) % 251 for i in range(1024))).hexdigest()
        let buffer = cpu_buffer(1);
        assert_eq!(
            cpu_digest(1, &buffer),
            "566831246a14668f33e86d5501f4fcc66b10d28b0ab3e0727970520da68d9de4"
        );
        // Two rounds: sha256(h1 || buffer), also from Python.
        assert_eq!(
            cpu_digest(2, &buffer),
            "74903d8dc7c4e5483e1cef29faa7ceb46b874d7cc86cf14421d8f2acdc333dfc"
        );
    }

    #[test]
    fn cpu_reports_score_and_digest() {
        let outcome = run(&WorkloadSpec::Cpu {
            rounds: 3,
            buffer_kib: 1,
        })
        .unwrap()
        .unwrap();
        assert_eq!(outcome.digest.as_deref().map(str::len), Some(64));
        let score = outcome.metrics.iter().find(|m| m.name == "score").unwrap();
        assert!(score.value > 0.0 && score.value.is_finite());
        assert_eq!(run(&WorkloadSpec::Noop), Ok(None));
    }
}
