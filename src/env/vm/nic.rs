//! A guest's network card: virtio-net (`virtio-net-device` on microvm,
//! `virtio-net-pci` on pc/q35) on a tap of the run's bridge (`bridge`), or
//! on QEMU's user-mode network (`user`, always `restrict=on`, its network
//! inside 198.18.0.0/15, forwards bound to 127.0.0.1 only). The agent gives
//! `eth0` its address itself (`--net=` on the kernel command line): no
//! DHCP, no default route.

use super::qemu::{Machine, VirtioSlot, VmConfig};
use crate::env::EnvError;
use crate::net::{Fabric, Mode, Plumbed};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The device that is the virtio NIC on this machine's transport.
fn device(machine: Machine) -> &'static str {
    match machine {
        Machine::Microvm => "virtio-net-device",
        Machine::Pc | Machine::Q35 => "virtio-net-pci",
    }
}

/// Whether vhost-net can be used, and why not.
pub fn vhost() -> (bool, String) {
    if std::path::Path::new("/dev/vhost-net").exists() {
        (true, "vhost=on: /dev/vhost-net exists".into())
    } else {
        (
            false,
            "vhost=off: /dev/vhost-net does not exist on this host (vhost_net not built or not loaded), so QEMU moves every packet itself".into(),
        )
    }
}

/// One guest's NIC.
pub struct Nic {
    mode: Mode,
    /// `bridge`: the run's network and this guest's tap on it.
    tap: Option<(Arc<Fabric>, Plumbed)>,
    /// `user`: guest port → port on the host's 127.0.0.1.
    forwards: Vec<(u16, u16)>,
    guest: Ipv4Addr,
    prefix: u8,
    /// Time the host-side plumbing took.
    pub setup: Duration,
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; QEMU binds it next).
fn free_port() -> Result<u16, EnvError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EnvError::io("finding a free port on 127.0.0.1 for a forward", e))
}

impl Nic {
    /// The NIC of a guest with network `mode` (`None` for `none`), its
    /// host side set up now: a tap on the run's bridge, or the forwards of
    /// `ports`.
    pub fn attach(
        mode: Mode,
        fabric: Option<&Arc<Fabric>>,
        ports: &[u16],
    ) -> Result<Option<Nic>, EnvError> {
        match mode {
            Mode::None => Ok(None),
            Mode::Host => Err(EnvError::Unavailable(
                "network `host` is for containers: a VM takes none, bridge or user".into(),
            )),
            Mode::Bridge => {
                let fabric = fabric.ok_or_else(|| {
                    EnvError::Unavailable(
                        "network `bridge` is not supported here (no run network)".into(),
                    )
                })?;
                if !nix::unistd::geteuid().is_root() {
                    return Err(EnvError::Unavailable(
                        "network `bridge` needs root (creating a tap and a bridge); run as root or use `user`".into(),
                    ));
                }
                let p = fabric
                    .tap()
                    .map_err(|e| EnvError::Unavailable(e.to_string()))?;
                Ok(Some(Nic {
                    mode,
                    guest: p.addr,
                    prefix: p.prefix,
                    setup: p.setup,
                    tap: Some((Arc::clone(fabric), p)),
                    forwards: Vec::new(),
                }))
            }
            Mode::User => {
                let start = std::time::Instant::now();
                let forwards = ports
                    .iter()
                    .map(|p| Ok((*p, free_port()?)))
                    .collect::<Result<Vec<_>, EnvError>>()?;
                Ok(Some(Nic {
                    mode,
                    tap: None,
                    forwards,
                    guest: crate::net::USER_GUEST,
                    prefix: crate::net::PREFIX,
                    setup: start.elapsed(),
                }))
            }
        }
    }

    /// The agent's option that configures `eth0`.
    pub fn agent_arg(&self) -> String {
        format!("--net={}/{}", self.guest, self.prefix)
    }

    /// QEMU's `-netdev` and `-device` options.
    pub fn qemu_args(&self, config: &VmConfig) -> Vec<String> {
        let mac = {
            let o = self.guest.octets();
            format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
        };
        let netdev = match &self.tap {
            Some((_, p)) => format!(
                "tap,id=n0,ifname={},script=no,downscript=no,vhost={}",
                p.host_link,
                if vhost().0 { "on" } else { "off" }
            ),
            None => {
                let mut s = format!(
                    "user,id=n0,restrict=on,net={},host={}",
                    crate::net::USER_NET,
                    Ipv4Addr::new(198, 19, 255, 2)
                );
                for (guest, host) in &self.forwards {
                    s.push_str(&format!(
                        ",hostfwd=tcp:127.0.0.1:{host}-{}:{guest}",
                        self.guest
                    ));
                }
                s
            }
        };
        vec![
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!(
                "{},netdev=n0,mac={mac}{}",
                device(config.machine),
                config.virtio_bus(VirtioSlot::Nic)
            ),
        ]
    }

    /// Where the host reaches guest port `port`.
    pub fn reach(&self, port: u16) -> Option<SocketAddr> {
        match self.mode {
            Mode::User => self
                .forwards
                .iter()
                .find(|(g, _)| *g == port)
                .map(|(_, h)| SocketAddr::from(([127, 0, 0, 1], *h))),
            _ => Some(SocketAddr::from((self.guest, port))),
        }
    }

    /// For the records.
    pub fn facts(&self, machine: Machine) -> Vec<(String, String)> {
        let mut f = vec![
            ("network".to_string(), self.mode.as_str().to_string()),
            ("nic".into(), device(machine).into()),
            ("address".into(), format!("{}/{}", self.guest, self.prefix)),
        ];
        match &self.tap {
            Some((fabric, p)) => {
                f.push(("bridge".into(), fabric.bridge_name()));
                f.push(("link".into(), format!("tap {}", p.host_link)));
                f.push(("host_address".into(), p.host_addr.to_string()));
                f.push(("vhost".into(), vhost().1));
            }
            None => {
                f.push((
                    "user_net".into(),
                    format!(
                        "QEMU user-mode networking (slirp), restrict=on, net={}, forwards on 127.0.0.1: {}",
                        crate::net::USER_NET,
                        self.forwards
                            .iter()
                            .map(|(g, h)| format!("{h}->{g}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        f
    }

    /// Removes the tap (after QEMU is gone).
    pub fn release(&mut self) -> Result<(), EnvError> {
        if let Some((fabric, p)) = self.tap.take() {
            fabric
                .remove(&p.host_link)
                .map_err(|e| EnvError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

impl Drop for Nic {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_mode_is_restricted_inside_the_range_and_forwards_on_loopback_only() {
        let nic = Nic::attach(Mode::User, None, &[5201, 6379])
            .unwrap()
            .unwrap();
        let mut cfg = super::super::qemu::tests::config(super::super::accel::Accel::Tcg);
        let args = nic.qemu_args(&cfg);
        assert_eq!(args[0], "-netdev");
        assert!(
            args[1].starts_with("user,id=n0,restrict=on,net=198.19.255.0/24,"),
            "{}",
            args[1]
        );
        assert_eq!(args[1].matches("hostfwd=tcp:127.0.0.1:").count(), 2);
        assert!(args[3].starts_with("virtio-net-device,netdev=n0,"));
        // On its own virtio-mmio transport, the one the kernel is told of.
        assert!(args[3].ends_with(",bus=virtio-mmio-bus.1"), "{}", args[3]);
        cfg.acpi = true;
        assert!(!nic.qemu_args(&cfg)[3].contains("bus="));
        cfg.machine = Machine::Q35;
        assert!(!nic.qemu_args(&cfg)[3].contains("bus="));
        assert_eq!(nic.agent_arg(), "--net=198.19.255.15/24");
        assert!(nic.reach(5201).unwrap().ip().is_loopback());
        assert!(nic.reach(80).is_none());
        assert!(Nic::attach(Mode::Host, None, &[]).is_err());
        assert!(Nic::attach(Mode::None, None, &[]).unwrap().is_none());
    }
}
