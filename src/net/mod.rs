//! Networks across the isolation boundary: one Linux bridge per run on the
//! host, a veth pair per container instance, a tap per VM, addresses only
//! from 198.18.0.0/15 (RFC 2544's benchmarking range), no default route,
//! no NAT, no forwarding.
//!
//! Every link carries a tag of the run id in its name (IFNAMSIZ leaves 15
//! characters): the bridge `ib<tag>`, veth host ends `iv<tag><n>`, taps
//! `it<tag><n>`, where `<tag>` is the first 6 hex digits of the SHA-256 of
//! the run id. [`clean_run`] removes a dead run's links by that tag.
//!
//! [`Fabric::plumb_veth`] is the seam for every namespace-based runtime: it
//! takes a network-namespace path (`/proc/<pid>/ns/net`, or one a runtime
//! made) and returns the addresses it set up.

pub mod link;
pub mod wire;

use link::Netlink;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How an instance is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only `lo` (natively: the host's loopback).
    #[default]
    None,
    /// A veth pair (container) or a tap + virtio-net (VM) on the run's bridge.
    Bridge,
    /// No network namespace at all (containers only).
    Host,
    /// QEMU user-mode networking with a port forward (VMs only).
    User,
}

impl Mode {
    /// The name in scenarios and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Bridge => "bridge",
            Mode::Host => "host",
            Mode::User => "user",
        }
    }

    /// The mode with this name.
    pub fn from_name(name: &str) -> Option<Mode> {
        [Mode::None, Mode::Bridge, Mode::Host, Mode::User]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// The port the agent serves on inside its own network namespace.
pub const AGENT_PORT: u16 = 5201;
/// Environment variable: the port the agent listens on (0: any).
pub const PORT_ENV: &str = "ISOBENCH_NET_PORT";
/// Environment variable: the CPU the agent pins itself to.
pub const CPU_ENV: &str = "ISOBENCH_NET_CPU";
/// QEMU user-mode networking's virtual network (inside 198.18.0.0/15).
pub const USER_NET: &str = "198.19.255.0/24";
/// The guest's address on it.
pub const USER_GUEST: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 15);
/// The prefix length of every subnet isobench makes.
pub const PREFIX: u8 = 24;

/// What failed while plumbing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request or tun ioctl failed.
    #[error("network set-up: {what}: {source}")]
    Link {
        /// What was being done, naming the link.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// No free /24 left in 198.18.0.0/15.
    #[error(
        "network set-up: every /24 of 198.18.0.0/15 is in use on this host; remove stale bridges (`isobench clean`)"
    )]
    NoSubnet,
}

fn link_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Link { what, source }
}

/// The 6-hex-digit tag of a run id that its links' names carry.
pub fn tag(run_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(run_id.as_bytes());
    format!("{:02x}{:02x}{:02x}", d[0], d[1], d[2])
}

/// Whether `name` is one of the links of the run tagged `tag`.
pub fn is_run_link(name: &str, tag: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("ib")
        .or_else(|| name.strip_prefix("iv"))
        .or_else(|| name.strip_prefix("it"))
    else {
        return false;
    };
    let Some(n) = rest.strip_prefix(tag) else {
        return false;
    };
    if name.starts_with("ib") {
        n.is_empty()
    } else {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    }
}

/// A /24 of 198.18.0.0/15, by its index 0..512.
fn subnet(index: u32) -> [u8; 3] {
    [198, 18 + (index / 256) as u8, (index % 256) as u8]
}

/// The run's bridge, once made.
#[derive(Debug, Clone, Copy)]
struct Bridge {
    index: u32,
    net: [u8; 3],
}

/// An instance's end of the bridge.
#[derive(Debug, Clone)]
pub struct Plumbed {
    /// The host-side link (veth host end or tap), removed with the instance.
    pub host_link: String,
    /// The instance's address.
    pub addr: Ipv4Addr,
    /// The host's (the bridge's) address: the far end of every measurement.
    pub host_addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// Time the plumbing took.
    pub setup: Duration,
}

/// A run's network: its bridge (made by the testbed before any instance,
/// [`Fabric::prepare`], or else on first use) and a counter of instances.
/// Removes the bridge when dropped.
pub struct Fabric {
    tag: String,
    run_id: String,
    bridge: Mutex<Option<Bridge>>,
    next: AtomicU32,
}

impl Fabric {
    /// The network of run `run_id` (nothing is made yet).
    pub fn new(run_id: &str) -> Fabric {
        Fabric {
            tag: tag(run_id),
            run_id: run_id.to_string(),
            bridge: Mutex::new(None),
            next: AtomicU32::new(0),
        }
    }

    /// Makes the run's bridge now, unless it is there.
    pub fn prepare(&self) -> Result<(), NetError> {
        let mut nl = Netlink::open().map_err(link_err("opening a netlink socket"))?;
        self.bridge(&mut nl).map(drop)
    }

    /// The bridge's name.
    pub fn bridge_name(&self) -> String {
        format!("ib{}", self.tag)
    }

    /// The run's bridge, made now if it is not there yet: an unused /24 of
    /// 198.18.0.0/15 (starting at one the run id picks), `.1` on the bridge.
    fn bridge(&self, nl: &mut Netlink) -> Result<Bridge, NetError> {
        let mut slot = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = *slot {
            return Ok(b);
        }
        let used = nl
            .ipv4_addresses()
            .map_err(link_err("listing the host's addresses"))?;
        let start = u32::from_str_radix(&self.tag, 16).unwrap_or(0) % 512;
        let net = (0..512)
            .map(|i| subnet((start + i) % 512))
            .find(|n| !used.iter().any(|&(ip, prefix)| overlaps(*n, ip, prefix)))
            .ok_or(NetError::NoSubnet)?;
        let name = self.bridge_name();
        nl.add_bridge(&name)
            .map_err(link_err(format!("creating bridge {name}")))?;
        let made = (|| {
            let index = nl.index(&name)?;
            nl.set_alias(index, &mark(&self.run_id))?;
            nl.add_address(index, Ipv4Addr::new(net[0], net[1], net[2], 1), PREFIX)?;
            isolate(&name)?;
            nl.set_up(index)?;
            Ok(Bridge { index, net })
        })();
        match made {
            Ok(b) => {
                *slot = Some(b);
                Ok(b)
            }
            Err(e) => {
                let _ = nl.delete(&name);
                Err(link_err(format!(
                    "setting up bridge {name} (run {})",
                    self.run_id
                ))(e))
            }
        }
    }

    /// The next instance's number and address: .2 to .254 (the bridge is
    /// .1); past 253 instances in one run, an error, never a reused address.
    fn next_instance(&self, net: [u8; 3]) -> Result<(u32, Ipv4Addr), NetError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 253 {
            return Err(NetError::Link {
                what: format!(
                    "addressing instance {n} on bridge {} (run {})",
                    self.bridge_name(),
                    self.run_id
                ),
                source: std::io::Error::other(
                    "a run's /24 holds 253 instances; use fewer bridged instances per run",
                ),
            });
        }
        Ok((n, Ipv4Addr::new(net[0], net[1], net[2], (n + 1) as u8)))
    }

    /// Plumbs the network namespace at `netns` onto the run's bridge: a veth
    /// pair `iv<tag><n>` (host end, on the bridge) / `eth0` (made in the
    /// namespace), an address on `eth0`, `eth0` and `lo` up. No route but
    /// the subnet's own. The seam for every namespace-based runtime.
    pub fn plumb_veth(&self, netns: &Path) -> Result<Plumbed, NetError> {
        let start = Instant::now();
        let mut nl = Netlink::open().map_err(link_err("opening a netlink socket"))?;
        let bridge = self.bridge(&mut nl)?;
        let (n, addr) = self.next_instance(bridge.net)?;
        let host_link = format!("iv{}{n}", self.tag);
        let ns =
            std::fs::File::open(netns).map_err(link_err(format!("opening {}", netns.display())))?;
        nl.add_veth(&host_link, bridge.index, "eth0", &ns)
            .map_err(link_err(format!("creating veth {host_link}/eth0")))?;
        let inside = (|| {
            let index = nl.index(&host_link)?;
            nl.set_alias(index, &mark(&self.run_id))?;
            let mut inner = Netlink::open_in(netns)?;
            let eth0 = inner.index("eth0")?;
            inner.add_address(eth0, addr, PREFIX)?;
            inner.set_up(eth0)?;
            let lo = inner.index("lo")?;
            inner.set_up(lo)
        })();
        if let Err(e) = inside {
            let _ = nl.delete(&host_link);
            return Err(link_err(format!("configuring eth0 in {}", netns.display()))(e));
        }
        let b = bridge.net;
        Ok(Plumbed {
            host_link,
            addr,
            host_addr: Ipv4Addr::new(b[0], b[1], b[2], 1),
            prefix: PREFIX,
            setup: start.elapsed(),
        })
    }

    /// Makes a tap `it<tag><n>` on the run's bridge, for a guest whose
    /// address will be the returned `addr` (the guest sets it itself).
    pub fn tap(&self) -> Result<Plumbed, NetError> {
        let start = Instant::now();
        let mut nl = Netlink::open().map_err(link_err("opening a netlink socket"))?;
        let bridge = self.bridge(&mut nl)?;
        let (n, addr) = self.next_instance(bridge.net)?;
        let name = format!("it{}{n}", self.tag);
        link::add_tap(&name).map_err(link_err(format!("creating tap {name} on /dev/net/tun")))?;
        let attached = (|| {
            let index = nl.index(&name)?;
            nl.set_alias(index, &mark(&self.run_id))?;
            nl.set_master(index, bridge.index)?;
            nl.set_up(index)
        })();
        if let Err(e) = attached {
            let _ = nl.delete(&name);
            return Err(link_err(format!("attaching tap {name} to the bridge"))(e));
        }
        let b = bridge.net;
        Ok(Plumbed {
            host_link: name,
            addr,
            host_addr: Ipv4Addr::new(b[0], b[1], b[2], 1),
            prefix: PREFIX,
            setup: start.elapsed(),
        })
    }

    /// Removes an instance's host-side link (a veth's peer goes with it).
    pub fn remove(&self, host_link: &str) -> Result<(), NetError> {
        let mut nl = Netlink::open().map_err(link_err("opening a netlink socket"))?;
        nl.delete(host_link)
            .map_err(link_err(format!("deleting {host_link}")))
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let made = self.bridge.get_mut().map(|b| b.is_some()).unwrap_or(true);
        if made {
            let _ = clean_tag(&self.tag, &self.run_id);
        }
    }
}

/// Whether the /24 `net` overlaps the network of a host address `ip/prefix`
/// (compared on the shorter of the two prefixes).
fn overlaps(net: [u8; 3], ip: Ipv4Addr, prefix: u8) -> bool {
    let bits = u32::from(prefix.min(24));
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    let net = u32::from(Ipv4Addr::new(net[0], net[1], net[2], 0));
    net & mask == u32::from(ip) & mask
}

/// Keeps the bridge a dead end: no IPv4 forwarding from it (the check is
/// made per ingress device, so packets from the run's instances are never
/// routed to the host's other interfaces, whatever `ip_forward` says), and
/// no IPv6 on it at all.
fn isolate(bridge: &str) -> std::io::Result<()> {
    let v4 = format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding");
    std::fs::write(&v4, "0").map_err(|e| std::io::Error::new(e.kind(), format!("{v4}: {e}")))?;
    let v6 = format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6");
    match std::fs::write(&v6, "1") {
        // A host without IPv6 has no such file.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(std::io::Error::new(e.kind(), format!("{v6}: {e}")))
        }
        _ => Ok(()),
    }
}

/// The alias isobench gives every link of run `run_id`: with the name's
/// tag, the proof that isobench made it.
pub fn mark(run_id: &str) -> String {
    format!("isobench run {run_id}")
}

/// Whether `link` is one of run `run_id`'s, whose links carry `tag`: named
/// so, and carrying the run's [`mark`]. A link named like isobench's but
/// without the mark is left alone.
fn owned(link: &link::Link, tag: &str, run_id: &str) -> bool {
    is_run_link(&link.name, tag) && link.alias.as_deref() == Some(mark(run_id).as_str())
}

/// Deletes every link of run `run_id` (bridge, veth host ends, taps); one
/// that cannot be deleted does not stop the others, and the first such
/// error is returned after them.
fn clean_tag(tag: &str, run_id: &str) -> std::io::Result<Vec<String>> {
    let mut nl = Netlink::open()?;
    let mut removed = Vec::new();
    let mut first_error = None;
    let mut links = nl.links()?;
    // Ports before their bridge.
    links.sort_by_key(|l| l.name.starts_with("ib"));
    for l in links.into_iter().filter(|l| owned(l, tag, run_id)) {
        match nl.delete(&l.name) {
            Ok(()) => removed.push(l.name),
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    std::io::Error::new(e.kind(), format!("deleting link {}: {e}", l.name))
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Removes the links of run `run_id` (a dead run: the caller proved it),
/// unless a run in `live` carries the same tag. Returns their names.
pub fn clean_run(run_id: &str, live: &[String]) -> std::io::Result<Vec<String>> {
    let t = tag(run_id);
    if live.iter().any(|r| r != run_id && tag(r) == t) {
        return Ok(Vec::new());
    }
    clean_tag(&t, run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_is_taken_by_any_host_network_that_overlaps_it() {
        let net = [198, 18, 7];
        assert!(overlaps(net, Ipv4Addr::new(198, 18, 7, 9), 24));
        // A /15 on a real card covers every /24 of the range.
        assert!(overlaps(net, Ipv4Addr::new(198, 18, 0, 5), 15));
        assert!(overlaps(net, Ipv4Addr::new(198, 18, 7, 200), 30));
        assert!(!overlaps(net, Ipv4Addr::new(198, 18, 8, 1), 24));
        assert!(!overlaps(net, Ipv4Addr::new(10, 0, 0, 1), 8));
        assert!(overlaps(net, Ipv4Addr::new(10, 0, 0, 1), 0));
    }

    #[test]
    fn only_links_named_and_marked_for_the_run_are_its_own() {
        let run = "20261128T204700Z-04f0";
        let t = tag(run);
        let link = |name: String, alias: Option<String>| link::Link {
            index: 7,
            name,
            alias,
        };
        assert!(owned(&link(format!("ib{t}"), Some(mark(run))), &t, run));
        assert!(owned(&link(format!("it{t}3"), Some(mark(run))), &t, run));
        // Named like isobench's, but not marked, or marked for another run.
        assert!(!owned(&link(format!("ib{t}"), None), &t, run));
        assert!(!owned(
            &link(format!("iv{t}1"), Some("uplink".into())),
            &t,
            run
        ));
        assert!(!owned(
            &link(format!("iv{t}1"), Some(mark("20261128T204700Z-ffff"))),
            &t,
            run
        ));
        // Marked, but not named for the run.
        assert!(!owned(&link("eth0".into(), Some(mark(run))), &t, run));
    }

    #[test]
    fn names_carry_the_run_tag_and_fit_ifnamsiz() {
        let t = tag("20261128T204700Z-04f0");
        assert_eq!(t.len(), 6);
        assert!(is_run_link(&format!("ib{t}"), &t));
        assert!(is_run_link(&format!("iv{t}12"), &t));
        assert!(is_run_link(&format!("it{t}3"), &t));
        assert!(!is_run_link(&format!("iv{t}"), &t));
        assert!(!is_run_link(&format!("ib{t}1"), &t));
        assert!(!is_run_link(&format!("iv{t}x"), &t));
        assert!(!is_run_link("eth0", &t));
        assert!(!is_run_link("ivabcdef1", &tag("other")));
        assert!(format!("iv{t}{}", 9_999_999).len() <= 15);
    }

    #[test]
    fn subnets_stay_inside_the_benchmark_range() {
        for i in 0..512 {
            let s = subnet(i);
            let ip = u32::from(Ipv4Addr::new(s[0], s[1], s[2], 0));
            assert_eq!(ip & 0xfffe_0000, u32::from(Ipv4Addr::new(198, 18, 0, 0)));
        }
        assert_eq!(subnet(0), [198, 18, 0]);
        assert_eq!(subnet(511), [198, 19, 255]);
    }

    #[test]
    fn modes_round_trip_by_name() {
        for m in [Mode::None, Mode::Bridge, Mode::Host, Mode::User] {
            assert_eq!(Mode::from_name(m.as_str()), Some(m));
        }
        assert_eq!(Mode::from_name("nat"), None);
    }
}
