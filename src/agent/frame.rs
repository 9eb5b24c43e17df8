//! The frame protocol between the agent and the host.
//!
//! The agent writes one frame per line, `@@isobench {json}`, on a channel of
//! its own: descriptor [`crate::env::FRAME_FD`] (native, container) or the
//! guest's second serial port (vm). Nothing else writes there: a program the
//! agent runs cannot reach that channel, and what an instance prints on its
//! standard streams or a guest's console is data, which the host never
//! reads as frames (a line there that looks like a frame stays a line of
//! output).

use crate::workload::Metric;
use serde::{Deserialize, Serialize};

/// The marker that starts every frame.
pub const PREFIX: &str = "@@isobench ";

/// One message from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// In a VM only, the agent's very first act, before it sets the guest
    /// up: the host times the guest's first byte by it.
    Boot,
    /// The agent is running and about to start the workload (its first act
    /// outside a VM).
    Ready {
        /// The agent's process id as it sees it (1 in a container or a VM).
        pid: u32,
        /// In a VM: the guest's uptime (CLOCK_BOOTTIME) at the agent's
        /// start, in ms — the time the guest kernel took to boot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_ms: Option<f64>,
        /// In a VM on x86-64: the virtual CPU's time-stamp counter at the
        /// agent's start, in ms — the time since QEMU reset the CPU, which
        /// counts the early boot the guest's own clocks do not see.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_clock_ms: Option<f64>,
        /// In a VM: the agent's own set-up (mounts, modules, disk check)
        /// from its start to this frame, by the guest's clock, in ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        setup_ms: Option<f64>,
        /// For workloads served across the boundary: the port the agent
        /// listens on (inside the environment), accepting already.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// The workload's results for this instance.
    Result {
        /// The figures the workload measured with its own monotonic clock.
        metrics: Vec<Metric>,
        /// A digest of the workload's output, which must be equal in every
        /// environment (the `cpu` workload's final SHA-256).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        /// For a program run by the agent: its exit status (128 + the
        /// signal number when a signal ended it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<i32>,
    },
    /// The workload or the agent failed.
    Error {
        /// What failed, in words.
        message: String,
    },
    /// The agent's last frame: it exits (or powers the VM off) next.
    Done,
}

impl Frame {
    /// The frame as one line, with the trailing newline.
    pub fn encode(&self) -> String {
        // Serializing these plain types cannot fail: no maps with non-string
        // keys, no failing Serialize impls.
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","message":"frame encoding failed: {e}"}}"#)
        });
        format!("{PREFIX}{json}\n")
    }

    /// Finds a frame in one line of output. `None` when the line holds no
    /// frame marker; `Some(Err)` when it holds a marker but no valid frame.
    pub fn parse_line(line: &str) -> Option<Result<Frame, serde_json::Error>> {
        let start = line.find(PREFIX)?;
        let json = line[start + PREFIX.len()..].trim_end_matches(['\r', '\n']);
        Some(serde_json::from_str(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Boot,
            Frame::Ready {
                pid: 1,
                uptime_ms: Some(812.5),
                cpu_clock_ms: Some(1062.5),
                setup_ms: Some(3.25),
                port: Some(5201),
            },
            Frame::Ready {
                pid: 4242,
                uptime_ms: None,
                cpu_clock_ms: None,
                setup_ms: None,
                port: None,
            },
            Frame::Result {
                metrics: vec![Metric::higher("score", "rounds/s", 1234.5)],
                digest: Some("ab".repeat(32)),
                status: Some(137),
            },
            Frame::Error {
                message: "disk \"full\"\nreally".into(),
            },
            Frame::Done,
        ];
        for frame in frames {
            let line = frame.encode();
            assert!(line.starts_with(PREFIX) && line.ends_with('\n'));
            assert_eq!(line.matches('\n').count(), 1, "one frame, one line");
            assert_eq!(Frame::parse_line(&line).unwrap().unwrap(), frame);
        }
    }

    #[test]
    fn frames_survive_surrounding_noise() {
        let line = "[    1.234] random: crng init done@@isobench {\"type\":\"done\"}\r\n";
        assert_eq!(Frame::parse_line(line).unwrap().unwrap(), Frame::Done);
        assert!(Frame::parse_line("hello world").is_none());
        assert!(Frame::parse_line("@@isobench {not json").unwrap().is_err());
    }
}
