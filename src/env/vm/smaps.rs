//! Where QEMU's memory goes: `/proc/PID/smaps`, and the VMM's own share.
//!
//! The method is Firecracker's: sum the proportional set size (PSS) of
//! every mapping of the VMM process, leave out the mappings whose size
//! equals the guest's RAM (QEMU maps guest RAM as one anonymous block of
//! exactly that size), and what remains is what the VMM itself costs: its
//! code and libraries, heap, thread stacks, device state and, under TCG, the
//! translated-code cache. The guest-RAM mapping's own PSS says how much of
//! the guest's memory the guest has touched so far.

use procfs::FromBufRead;
use procfs::process::{MMapPath, MemoryMaps};

/// One mapping of a process, as `smaps` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// The mapped file, a pseudo path (`[heap]`), or anonymous memory.
    pub path: MMapPath,
    /// `Size`, in KiB.
    pub size_kib: u64,
    /// `Rss`, in KiB.
    pub rss_kib: u64,
    /// `Pss`, in KiB.
    pub pss_kib: u64,
}

/// Parses the text of `/proc/PID/smaps` (with `procfs`).
pub fn parse(text: &str) -> Result<Vec<Mapping>, String> {
    let maps = MemoryMaps::from_buf_read(text.as_bytes()).map_err(|e| format!("smaps: {e}"))?;
    Ok(maps
        .into_iter()
        .map(|m| {
            // `procfs` gives the figures in bytes.
            let kib = |key: &str| m.extension.map.get(key).map_or(0, |b| b / 1024);
            Mapping {
                start: m.address.0,
                end: m.address.1,
                size_kib: kib("Size"),
                rss_kib: kib("Rss"),
                pss_kib: kib("Pss"),
                path: m.pathname,
            }
        })
        .collect())
}

/// A VMM process's memory, split as Firecracker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmmMemory {
    /// PSS of the whole process, in KiB.
    pub pss_kib: u64,
    /// RSS of the whole process, in KiB.
    pub rss_kib: u64,
    /// PSS of the guest-RAM mapping(s): guest memory the guest has touched.
    pub guest_ram_pss_kib: u64,
    /// PSS of everything else: the VMM's own overhead.
    pub overhead_pss_kib: u64,
}

/// Splits a VMM's mappings into guest RAM (every mapping whose size equals
/// `guest_ram_kib`) and the rest. An error when no mapping has that size:
/// then guest RAM cannot be told apart, and no overhead figure is better
/// than a wrong one.
pub fn vmm_memory(maps: &[Mapping], guest_ram_kib: u64) -> Result<VmmMemory, String> {
    let is_ram = |m: &Mapping| m.size_kib == guest_ram_kib;
    if !maps.iter().any(is_ram) {
        return Err(format!(
            "no mapping of exactly {guest_ram_kib} kB (the guest's RAM) among {} mappings",
            maps.len()
        ));
    }
    let pss_kib = maps.iter().map(|m| m.pss_kib).sum();
    let guest_ram_pss_kib = maps.iter().filter(|m| is_ram(m)).map(|m| m.pss_kib).sum();
    Ok(VmmMemory {
        pss_kib,
        rss_kib: maps.iter().map(|m| m.rss_kib).sum(),
        guest_ram_pss_kib,
        overhead_pss_kib: pss_kib - guest_ram_pss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed `smaps` of a QEMU with a 256 MiB guest: its binary, the
    /// guest RAM (262144 kB), a guard page after it, the heap and a
    /// translation-cache mapping.
    const SMAPS: &str = "\
55d1c0000000-55d1c0021000 r--p 00000000 fd:01 1234                       /usr/bin/qemu-system-x86_64
Size:                132 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                 132 kB
Pss:                  66 kB
Pss_Dirty:             0 kB
Shared_Clean:        132 kB
VmFlags: rd mr mw me sd
55d1c1000000-55d1c2000000 rw-p 00000000 00:00 0                          [heap]
Size:              16384 kB
Rss:                9000 kB
Pss:                9000 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:               40960 kB
Pss:               40960 kB
VmFlags: rd wr mr mw me ac sd hg dd
7f0010000000-7f0010001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
Pss:                   0 kB
VmFlags: mr mw me sd
7f1000000000-7f1040000000 rwxp 00000000 00:00 0 
Size:            1048576 kB
Rss:               20480 kB
Pss:               20480 kB
VmFlags: rd wr ex mr mw me ac sd
";

    #[test]
    fn smaps_is_parsed_per_mapping() {
        let maps = parse(SMAPS).unwrap();
        assert_eq!(maps.len(), 5);
        assert_eq!(
            maps[0].path,
            MMapPath::Path("/usr/bin/qemu-system-x86_64".into())
        );
        assert_eq!(
            (maps[0].size_kib, maps[0].rss_kib, maps[0].pss_kib),
            (132, 132, 66)
        );
        assert_eq!(maps[1].path, MMapPath::Heap);
        assert_eq!(maps[2].path, MMapPath::Anonymous);
        assert_eq!(maps[2].end - maps[2].start, 262144 * 1024);
    }

    #[test]
    fn guest_ram_is_left_out_of_the_overhead() {
        let mem = vmm_memory(&parse(SMAPS).unwrap(), 256 * 1024).unwrap();
        assert_eq!(mem.pss_kib, 66 + 9000 + 40960 + 20480);
        assert_eq!(mem.guest_ram_pss_kib, 40960);
        assert_eq!(mem.overhead_pss_kib, 66 + 9000 + 20480);
        assert_eq!(mem.rss_kib, 132 + 9000 + 40960 + 20480);
    }

    #[test]
    fn unknown_guest_ram_size_is_an_error_not_a_guess() {
        let err = vmm_memory(&parse(SMAPS).unwrap(), 512 * 1024).unwrap_err();
        assert!(err.contains("524288 kB"), "{err}");
        assert!(parse("Size: 4 kB\n").is_err());
        assert!(parse("00400000-00401000 r-xp 0 0:0 0 /x\nRss: many kB\n").is_err());
    }
}
