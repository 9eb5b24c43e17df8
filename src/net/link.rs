//! Links and addresses over a plain rtnetlink socket (`netlink-sys` +
//! `netlink-packet-route`): bridges, veth pairs, moving a link into a
//! network namespace, addresses, link up, removal. No `ip` process.
//!
//! A [`Netlink`] socket acts in the network namespace it was created in:
//! [`Netlink::open`] in the caller's, [`Netlink::open_in`] in another one
//! (named by a path such as `/proc/<pid>/ns/net`).

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

/// One link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its alias (`ip link set … alias`), where it has one.
    pub alias: Option<String>,
}

/// How long a netlink request waits for the kernel's reply.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A NETLINK_ROUTE socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // A kernel that never answers must not hang a run's set-up or
        // clean-up: replies wait at most REPLY_TIMEOUT.
        let limit = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &limit)
            .map_err(io::Error::from)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace `netns` names (a socket stays in
    /// the namespace it was made in): made on a short-lived thread that
    /// enters the namespace, so the caller's threads never change theirs.
    pub fn open_in(netns: &Path) -> io::Result<Netlink> {
        let ns = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
        })
    }

    fn send(&mut self, flags: u16, payload: RouteNetlinkMessage) -> io::Result<u32> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until its ack (or the end of a dump),
    /// passing every other message to `each`.
    fn replies(&mut self, seq: u32, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the kernel sent no netlink reply within {} s",
                            REPLY_TIMEOUT.as_secs()
                        ),
                    )
                } else {
                    e
                }
            })?;
            let mut at = 0;
            while at < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink message of length 0",
                    ));
                }
                at += len.next_multiple_of(4);
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(m) => each(m),
                    _ => {}
                }
            }
        }
    }

    fn request(&mut self, flags: u16, payload: RouteNetlinkMessage) -> io::Result<()> {
        let seq = self.send(NLM_F_REQUEST | NLM_F_ACK | flags, payload)?;
        self.replies(seq, |_| {})
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let seq = self.send(
            NLM_F_REQUEST | NLM_F_DUMP,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        let mut links = Vec::new();
        self.replies(seq, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let name = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                });
                let alias = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfAlias(n) => Some(n.clone()),
                    _ => None,
                });
                if let Some(name) = name {
                    links.push(Link {
                        index: l.header.index,
                        name,
                        alias,
                    });
                }
            }
        })?;
        Ok(links)
    }

    /// The index of the link named `name`.
    pub fn index(&mut self, name: &str) -> io::Result<u32> {
        self.links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link `{name}`")))
    }

    /// Every IPv4 address of the namespace, with its prefix length.
    pub fn ipv4_addresses(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let seq = self.send(
            NLM_F_REQUEST | NLM_F_DUMP,
            RouteNetlinkMessage::GetAddress(msg),
        )?;
        let mut found = Vec::new();
        self.replies(seq, |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                for attr in &a.attributes {
                    if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                        found.push((*ip, a.header.prefix_len));
                    }
                }
            }
        })?;
        Ok(found)
    }

    /// Creates a bridge named `name`.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(NLM_F_CREATE | NLM_F_EXCL, RouteNetlinkMessage::NewLink(msg))
    }

    /// Creates a veth pair: `name` here, enslaved to the bridge `master`,
    /// and `peer` created directly in the network namespace `peer_ns` (an
    /// open `/proc/<pid>/ns/net`).
    pub fn add_veth(
        &mut self,
        name: &str,
        master: u32,
        peer: &str,
        peer_ns: &std::fs::File,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Controller(master),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.request(NLM_F_CREATE | NLM_F_EXCL, RouteNetlinkMessage::NewLink(msg))
    }

    /// Enslaves link `index` to the bridge `master` (0: none).
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::Controller(master)];
        self.request(0, RouteNetlinkMessage::SetLink(msg))
    }

    /// Sets the alias of link `index`: isobench's mark of ownership.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::IfAlias(alias.into())];
        self.request(0, RouteNetlinkMessage::SetLink(msg))
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(0, RouteNetlinkMessage::SetLink(msg))
    }

    /// Adds `ip/prefix` to link `index`.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(IpAddr::V4(ip)),
            AddressAttribute::Address(IpAddr::V4(ip)),
        ];
        self.request(
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewAddress(msg),
        )
    }

    /// Deletes the link named `name`; one already gone is not an error.
    pub fn delete(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.into())];
        match self.request(0, RouteNetlinkMessage::DelLink(msg)) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other,
        }
    }
}

/// Creates a persistent tap device `name` (TUNSETIFF + TUNSETPERSIST on
/// `/dev/net/tun`: tun devices cannot be created over netlink), for QEMU to
/// open by name; [`Netlink::delete`] removes it. A device of that name
/// already there is an error (`IFF_TUN_EXCL`), never adopted: isobench
/// deletes only the taps it made.
pub fn add_tap(name: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: a zeroed ifreq is valid; the name is shorter than IFNAMSIZ
    // (checked by the caller's naming, and truncated here at 15 bytes).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL) as i16;
    // SAFETY: TUNSETIFF reads and writes the ifreq, which lives across the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETPERSIST takes an integer argument.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_lists_loopback() {
        let Ok(mut nl) = Netlink::open() else {
            eprintln!("skipped: no netlink socket here");
            return;
        };
        let links = nl.links().unwrap();
        assert!(
            links.iter().any(|l| l.name == "lo" && l.index > 0),
            "{links:?}"
        );
        assert!(nl.index("lo").is_ok());
        assert!(nl.index("no-such-link").is_err());
    }
}
