//! Families: which section of the report a series belongs to.
//!
//! A report groups its series (workload, environment, metric) into the
//! families a lecture on isolation would: startup, memory, CPU, system calls
//! and processes, disk, network and density. The family is decided from the
//! metric's name and the workload's *kind* (from the scenario in
//! `meta.json`), by [`RULES`]: the first rule that matches decides.
//!
//! | # | rule                                                        | family    |
//! |---|-------------------------------------------------------------|-----------|
//! | 1 | workload kind `density`, or metric name starting `density_` | density   |
//! | 2 | metric `startup_ms`, `boot_kernel_ms`, `teardown_ms`         | startup   |
//! | 3 | metric name starting `boot_` or ending `_start_ms` (VM boot breakdown, e.g. `vmm_start_ms`) | startup |
//! | 4 | metric name containing `pss`, `rss` or `vmm_overhead`        | memory    |
//! | 5 | metric name ending `_mib` or `_kib`                          | memory    |
//! | 6 | workload kind `memory` (STREAM bandwidth)                    | memory    |
//! | 7 | workload kind `cpu`                                          | cpu       |
//! | 8 | workload kind `syscall`, `fork` or `pagefault`               | syscalls  |
//! | 9 | workload kind `fileio`                                       | disk      |
//! | 10 | workload kind `net`, `net_rr`, `net_stream` or `service`     | network   |
//!
//! A series no rule matches (say `host_cpu_ms` of the `noop` workload) is
//! shown under "Other figures". Because rules 4–5 come before the workload
//! rules, a workload's own figure should not end in `_mib`/`_kib` unless it
//! is a memory footprint (use a unit instead: `read` in `MiB/s`).
//!
//! Each family also knows how to explain itself ([`Family::lecture`]): two or
//! three plain sentences on what the difference means and why it arises.

use serde::Serialize;

/// A section of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Time to start (and stop) an instance, with the VM boot breakdown.
    Startup,
    /// Memory footprint on the host, with the VMM's own overhead.
    Memory,
    /// CPU-bound work inside the instance.
    Cpu,
    /// System calls, process creation and page faults.
    Syscalls,
    /// File I/O.
    Disk,
    /// Network I/O.
    Network,
    /// Many instances at once: per-instance cost.
    Density,
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy)]
pub enum Match {
    /// The metric name is one of these.
    Metric(&'static [&'static str]),
    /// The metric name starts with this.
    MetricPrefix(&'static str),
    /// The metric name ends with this.
    MetricSuffix(&'static str),
    /// The metric name contains this.
    MetricContains(&'static str),
    /// The workload's kind is one of these.
    Kind(&'static [&'static str]),
}

impl Match {
    fn matches(self, kind: &str, metric: &str) -> bool {
        match self {
            Match::Metric(names) => names.contains(&metric),
            Match::MetricPrefix(p) => metric.starts_with(p),
            Match::MetricSuffix(s) => metric.ends_with(s),
            Match::MetricContains(s) => metric.contains(s),
            Match::Kind(kinds) => kinds.contains(&kind),
        }
    }
}

/// The family table (see the module documentation); the first match wins.
pub const RULES: &[(Match, Family)] = &[
    (Match::Kind(&["density"]), Family::Density),
    (Match::MetricPrefix("density_"), Family::Density),
    (
        Match::Metric(&["startup_ms", "boot_kernel_ms", "teardown_ms"]),
        Family::Startup,
    ),
    (Match::MetricPrefix("boot_"), Family::Startup),
    (Match::MetricSuffix("_start_ms"), Family::Startup),
    (Match::MetricContains("pss"), Family::Memory),
    (Match::MetricContains("rss"), Family::Memory),
    (Match::MetricContains("vmm_overhead"), Family::Memory),
    (Match::MetricSuffix("_mib"), Family::Memory),
    (Match::MetricSuffix("_kib"), Family::Memory),
    (Match::Kind(&["memory"]), Family::Memory),
    (Match::Kind(&["cpu"]), Family::Cpu),
    (
        Match::Kind(&["syscall", "fork", "pagefault"]),
        Family::Syscalls,
    ),
    (Match::Kind(&["fileio"]), Family::Disk),
    (
        Match::Kind(&["net", "net_rr", "net_stream", "service"]),
        Family::Network,
    ),
];

/// The family of a metric of a workload of this kind, or `None` ("other").
pub fn classify(kind: &str, metric: &str) -> Option<Family> {
    RULES
        .iter()
        .find(|(m, _)| m.matches(kind, metric))
        .map(|(_, f)| *f)
}

impl Family {
    /// Every family, in report order.
    pub const ALL: [Family; 7] = [
        Family::Startup,
        Family::Memory,
        Family::Cpu,
        Family::Syscalls,
        Family::Disk,
        Family::Network,
        Family::Density,
    ];

    /// Short name, used in chart file names and HTML anchors.
    pub fn slug(self) -> &'static str {
        match self {
            Family::Startup => "startup",
            Family::Memory => "memory",
            Family::Cpu => "cpu",
            Family::Syscalls => "syscalls",
            Family::Disk => "disk",
            Family::Network => "network",
            Family::Density => "density",
        }
    }

    /// Section title.
    pub fn title(self) -> &'static str {
        match self {
            Family::Startup => "Startup",
            Family::Memory => "Memory",
            Family::Cpu => "CPU",
            Family::Syscalls => "System calls and processes",
            Family::Disk => "Disk",
            Family::Network => "Network",
            Family::Density => "Density",
        }
    }

    /// The metrics a family's main chart prefers, in order: per workload, the
    /// one measured in the most environments, the first on a tie; when a
    /// workload has none of them, its first metric in the family is charted.
    /// (Short native and container instances end before the sampler's first
    /// PSS tick; their memory shows as the peak RSS from `wait4`.)
    pub fn headline(self) -> &'static [&'static str] {
        match self {
            Family::Startup => &["startup_ms"],
            Family::Memory => &[
                "pss_mib",
                "pss_steady_mib",
                "pss_peak_mib",
                "max_rss_mib",
                "rss_peak_mib",
                "rss_mib",
            ],
            _ => &["score"],
        }
    }

    /// What the difference between environments means and why it arises, in
    /// plain sentences (a lecture handout's paragraph). The figures quoted
    /// come from Felter et al., IBM RC25482 (2014); Agache et al.,
    /// Firecracker (NSDI 2020); Kata Containers' metrics; and Manco et al.,
    /// LightVM (SOSP 2017).
    pub fn lecture(self) -> &'static [&'static str] {
        match self {
            Family::Startup => &[
                "Starting a native process is one fork and one exec: the kernel copies a process \
                 and maps a static binary, which takes about a millisecond. A container is the \
                 same fork/exec plus new namespaces, an overlay mount, pivot_root and a fresh \
                 /proc, which adds a few milliseconds but no new kernel.",
                "A VM must start its virtual machine monitor (here QEMU), create the virtual \
                 hardware and boot a whole guest kernel before the agent can run as its PID 1. \
                 With KVM that is well under a second: the Firecracker paper measured median \
                 end-to-end boots of 102 ms (Cloud Hypervisor), 161 ms (Firecracker) and 243 ms \
                 (QEMU). The breakdown splits the VM's startup into the guest kernel's own boot \
                 (its uptime when the agent started) and the rest: QEMU's start and setup before \
                 the kernel runs, plus the ready frame's trip over the serial line.",
            ],
            Family::Memory => &[
                "A process and a container share the host's kernel and page cache, so their \
                 footprint is the program's own pages; the namespaces of a container cost only \
                 a few kernel objects. A VM also carries a second kernel inside its guest RAM and \
                 the monitor's own memory on top.",
                "PSS (proportional set size) divides every shared page among the processes that \
                 map it, so it adds up correctly across many instances, unlike RSS. The VMM \
                 overhead is the monitor's memory beyond the guest RAM mapping; the Firecracker \
                 paper measured about 2.5 MiB for Firecracker and 131-148 MiB for QEMU, \
                 independent of the guest's size.",
                "Memory bandwidth (the STREAM kernels) is the same natively and in a container: \
                 the same loads and stores reach the same caches and DRAM. Under KVM a guest \
                 comes close too (IBM measured no difference for STREAM), since nested paging \
                 only costs on a TLB miss; under TCG every guest load and store goes through \
                 QEMU's software MMU and bandwidth falls by an order of magnitude.",
            ],
            Family::Cpu => &[
                "CPU-bound user code runs directly on the processor in all three environments. \
                 A container is an ordinary process with different namespaces, so its score \
                 should match native within a few percent (IBM's study: Linpack 290.4 vs 290.8 \
                 GFLOPS).",
                "A KVM guest also executes its instructions natively, and loses 0-3% when its \
                 vCPUs are pinned and its topology matches the host; IBM measured 2% tuned and \
                 17% untuned. Any larger gap comes from emulation or from a noisy host.",
            ],
            Family::Syscalls => &[
                "A system call in a container enters the same kernel as a native one; namespaces \
                 only change which objects the kernel looks up, so the cost is nearly \
                 identical.",
                "In a VM, system calls stay inside the guest kernel, but everything that changes \
                 memory mappings (fork, page faults) pays for two-level address translation: a \
                 TLB miss walks the guest's page tables and the host's nested ones, and \
                 operations that need the hypervisor cost a VM exit of a microsecond or more.",
            ],
            Family::Disk => &[
                "A container reads and writes through overlayfs into the host's filesystem: \
                 data goes at native speed, while metadata operations and the first write to a \
                 file of the read-only layer (a copy-up) cost extra.",
                "A VM's disk is a virtual device: every request crosses from the guest's driver \
                 to QEMU and back. Latency-bound random I/O suffers most (IBM measured 4 KiB \
                 random reads at 49% fewer IOPS under KVM) while large sequential transfers \
                 barely do (726 vs 751 MB/s).",
            ],
            Family::Network => &[
                "Here both ends talk over the environment's own loopback, on one CPU, so the \
                 figure is the cost of the TCP path of the kernel the workload runs on. A \
                 container's network namespace is the same kernel code with its own tables: \
                 over loopback it costs almost nothing, while a veth pair and NAT to the \
                 outside can double the round-trip latency (IBM's Docker NAT measurements).",
                "In a VM the same path runs in the guest kernel: close to native under KVM, \
                 emulated instruction by instruction under TCG. Traffic that leaves a VM also \
                 crosses a virtual network device and the host's tap or vhost path: IBM \
                 measured TCP request/response latency 80% higher under KVM (67.9 vs 37.6 µs), \
                 with bulk throughput suffering less than latency.",
            ],
            Family::Density => &[
                "Density asks what each instance costs when many run at once. Containers share \
                 one kernel, so the per-instance cost stays close to the program's own; every VM \
                 brings its own kernel and monitor, a fixed cost per instance (Kata Containers \
                 measures the PSS of every host process per container for 20 idle ones).",
                "Startup can also grow with the number of instances already running (LightVM \
                 found this for stock Xen), so per-instance figures are worth reading against the \
                 count.",
            ],
        }
    }

    /// What TCG does to this family's VM numbers.
    pub fn tcg_caveat(self) -> &'static str {
        match self {
            Family::Startup => {
                "Here the VM ran under TCG: QEMU translated every guest instruction in software, \
                 so booting took seconds instead of the few hundred milliseconds of a KVM guest. \
                 Read the VM's figures as the cost of emulation, not of hardware virtualization."
            }
            Family::Memory => {
                "Under TCG QEMU also keeps a cache of translated guest code in its own memory, \
                 so the VMM overhead here is larger than a KVM guest's."
            }
            Family::Cpu => {
                "Here the VM ran under TCG, which translates guest code in software instead of \
                 running it on the processor; the VM's score shows the cost of that emulation, \
                 typically several times slower, not the 0-3% of a KVM guest."
            }
            _ => {
                "Here the VM ran under TCG: the guest kernel's own code is emulated too, so \
                 its system calls, page faults and I/O paths are all slowed by translation. The \
                 VM figures overstate what a KVM guest would pay."
            }
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_decides_as_documented() {
        let cases = [
            ("noop", "startup_ms", Some(Family::Startup)),
            ("cpu", "boot_kernel_ms", Some(Family::Startup)),
            ("cpu", "teardown_ms", Some(Family::Startup)),
            ("noop", "vmm_start_ms", Some(Family::Startup)),
            ("noop", "boot_firmware_ms", Some(Family::Startup)),
            ("noop", "pss_mib", Some(Family::Memory)),
            ("cpu", "rss_peak_mib", Some(Family::Memory)),
            ("noop", "vmm_overhead_mib", Some(Family::Memory)),
            ("noop", "slab_kib", Some(Family::Memory)),
            ("cpu", "score", Some(Family::Cpu)),
            ("cpu", "elapsed_ms", Some(Family::Cpu)),
            ("syscall", "score", Some(Family::Syscalls)),
            ("fork", "score", Some(Family::Syscalls)),
            ("pagefault", "faults_per_s", Some(Family::Syscalls)),
            ("memory", "score", Some(Family::Memory)),
            ("memory", "copy_mbs", Some(Family::Memory)),
            ("fileio", "read", Some(Family::Disk)),
            ("net", "rtt_us", Some(Family::Network)),
            ("density", "pss_mib", Some(Family::Density)),
            ("density", "startup_ms", Some(Family::Density)),
            ("noop", "density_pss_mib", Some(Family::Density)),
            ("noop", "host_cpu_ms", None),
        ];
        for (kind, metric, want) in cases {
            assert_eq!(classify(kind, metric), want, "{kind}/{metric}");
        }
    }

    #[test]
    fn every_family_explains_itself() {
        for f in Family::ALL {
            assert!(!f.lecture().is_empty() && f.lecture().len() <= 3, "{f}");
            assert!(!f.tcg_caveat().is_empty());
            assert!(!f.slug().contains(' '));
        }
    }
}
