//! Thin VRRP I/O: raw IPPROTO 112 sockets, gratuitous ARP over AF_PACKET, and the runner
//! that owns the [`Group`] on its own OS thread with its own current-thread tokio runtime
//! (so a blocking save or a password hash on the daemon's loop never delays an advert).
//! It talks to the daemon over channels only.

use std::io::{IoSlice, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::group::{
    Action, Event, FaultReason, Group, GroupConfig, GroupStatus, MemberConfig, State,
};
use super::packet::{self, Advert, IPPROTO_VRRP, VRRP_MULTICAST, VRRP_TTL};

/// A gratuitous-ARP burst is sent at once and then this many more times...
pub const GARP_REPEATS: u32 = 4;
/// ...this far apart.
pub const GARP_SPACING: Duration = Duration::from_millis(250);
/// A status notice is sent at least this often (and after every transition).
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// A repeating send failure (interface gone, link down) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Notices queued for a daemon that is not reading; beyond this, status notices are dropped.
const NOTICE_QUEUE: usize = 256;
/// Largest datagram we read (an advert with 255 addresses and IP options fits).
const RECV_BUF: usize = 2048;

/// Error from an [`Addresses`] implementation.
pub type AddressError = Box<dyn std::error::Error + Send + Sync>;

/// Adds and removes the virtual addresses (/32) of a member; supplied by the daemon.
pub trait Addresses: Send {
    /// Add `addrs` to member `member`'s interface (already present is not an error).
    fn add(&mut self, member: usize, addrs: &[Ipv4Addr]) -> Result<(), AddressError>;
    /// Remove `addrs` from member `member`'s interface (already absent is not an error).
    fn remove(&mut self, member: usize, addrs: &[Ipv4Addr]) -> Result<(), AddressError>;
}

/// From the daemon to the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A fault condition became active or cleared.
    Fault {
        /// Which condition.
        reason: FaultReason,
        /// True = active.
        active: bool,
    },
    /// Resign (priority 0 if master), remove addresses, and end the runner thread.
    Shutdown,
    /// A new config; applied in place when the interfaces and own addresses are unchanged,
    /// else by an orderly restart (resign, reopen sockets, start as backup).
    Reconfigure(GroupConfig),
}

/// From the runner to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The group changed state.
    Transition {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: String,
    },
    /// A split brain started or ended on a member.
    SplitBrain {
        /// Member index.
        member: usize,
        /// The other master.
        other: Ipv4Addr,
        /// True = started.
        active: bool,
    },
    /// A status snapshot (after every transition and at least every [`STATUS_PERIOD`]).
    Status(GroupStatus),
}

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    /// The group has no member.
    #[error("VRRP needs at least one interface (member); the HA config lists none")]
    NoMembers,
    /// An interface does not exist.
    #[error(
        "VRRP interface '{name}' not found ({source}); check the interface name in the config"
    )]
    NoInterface {
        /// Interface name.
        name: String,
        /// OS error.
        source: nix::Error,
    },
    /// A socket operation failed.
    #[error("VRRP socket on '{name}': {what}: {source} (VRRP needs root / CAP_NET_RAW)")]
    Socket {
        /// Interface name.
        name: String,
        /// The failing step.
        what: &'static str,
        /// OS error.
        source: std::io::Error,
    },
    /// The runner thread could not be started.
    #[error("cannot start the VRRP thread: {0}")]
    Thread(std::io::Error),
}

/// The open sockets of one member.
struct MemberIo {
    name: String,
    own_addr: Ipv4Addr,
    ifindex: u32,
    vrrp: AsyncFd<Socket>,
    arp: Socket,
    mac: [u8; 6],
}

fn sock_err<'a>(
    name: &'a str,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> VrrpError + 'a {
    move |source| VrrpError::Socket {
        name: name.to_owned(),
        what,
        source,
    }
}

/// A raw VRRP socket on one interface: bound to the device, joined to 224.0.0.18 there,
/// TTL 255 for unicast and multicast, no loopback of our own multicast.
pub fn open_vrrp_socket(name: &str, ifindex: u32) -> Result<Socket, VrrpError> {
    let e = |w| sock_err(name, w);
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(e("socket(AF_INET, SOCK_RAW, 112)"))?;
    s.bind_device(Some(name.as_bytes()))
        .map_err(e("SO_BINDTODEVICE"))?;
    s.join_multicast_v4_n(&VRRP_MULTICAST, &InterfaceIndexOrAddress::Index(ifindex))
        .map_err(e("join 224.0.0.18"))?;
    s.set_multicast_ttl_v4(u32::from(VRRP_TTL))
        .map_err(e("IP_MULTICAST_TTL"))?;
    s.set_ttl_v4(u32::from(VRRP_TTL)).map_err(e("IP_TTL"))?;
    s.set_multicast_loop_v4(false)
        .map_err(e("IP_MULTICAST_LOOP"))?;
    Ok(s)
}

/// An AF_PACKET socket bound to the interface for sending gratuitous ARP (it receives
/// nothing: protocol 0), and the interface's MAC address.
pub fn open_arp_socket(name: &str, ifindex: u32) -> Result<(Socket, [u8; 6]), VrrpError> {
    let e = |w| sock_err(name, w);
    let s = Socket::new(Domain::PACKET, Type::RAW.cloexec(), None)
        .map_err(e("socket(AF_PACKET, SOCK_RAW)"))?;
    s.bind(&link_addr(ifindex, 0, [0; 6]))
        .map_err(e("bind AF_PACKET"))?;
    // getsockname on a bound packet socket reports the device's hardware address.
    let local = s.local_addr().map_err(e("getsockname AF_PACKET"))?;
    let mut st = local.as_storage();
    // SAFETY: the storage is a sockaddr_storage, large and aligned enough for any
    // sockaddr; the kernel filled it as a sockaddr_ll for this AF_PACKET socket.
    let ll = unsafe { st.view_as::<nix::libc::sockaddr_ll>() };
    let mut mac = [0u8; 6];
    if usize::from(ll.sll_halen) != 6 {
        return Err(VrrpError::Socket {
            name: name.to_owned(),
            what: "hardware address",
            source: std::io::Error::other(format!(
                "interface has a {}-byte hardware address; gratuitous ARP needs Ethernet",
                ll.sll_halen
            )),
        });
    }
    mac.copy_from_slice(&ll.sll_addr[..6]);
    Ok((s, mac))
}

/// A sockaddr_ll for `ifindex` (protocol in host order, 0 = none).
fn link_addr(ifindex: u32, protocol: u16, dst: [u8; 6]) -> SockAddr {
    let mut st = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_ll; every
    // field is plain data and written before use.
    let ll = unsafe { st.view_as::<nix::libc::sockaddr_ll>() };
    ll.sll_family = nix::libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst);
    let len = std::mem::size_of::<nix::libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of `len` bytes.
    unsafe { SockAddr::new(st, len) }
}

fn open_member(cfg: &MemberConfig) -> Result<MemberIo, VrrpError> {
    let ifindex = nix::net::if_::if_nametoindex(cfg.name.as_str()).map_err(|source| {
        VrrpError::NoInterface {
            name: cfg.name.clone(),
            source,
        }
    })?;
    let vrrp = open_vrrp_socket(&cfg.name, ifindex)?;
    // SAFETY: the Socket owns its descriptor for its whole life and AsyncFd owns the
    // Socket, so the descriptor stays open and the same until the AsyncFd is dropped.
    let vrrp = unsafe { AsyncFd::register_with_interest(vrrp, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .map_err(sock_err(&cfg.name, "register with tokio"))?;
    let (arp, mac) = open_arp_socket(&cfg.name, ifindex)?;
    Ok(MemberIo {
        name: cfg.name.clone(),
        own_addr: cfg.own_addr,
        ifindex,
        vrrp,
        arp,
        mac,
    })
}

impl MemberIo {
    /// Send one advert from our own address (IP_PKTINFO sets the source, so the socket
    /// stays unbound and keeps receiving multicast).
    fn send(&self, g: &GroupConfig, m: &MemberConfig, priority: u8) -> std::io::Result<()> {
        let dst = m.unicast_peer.unwrap_or(VRRP_MULTICAST);
        let adv = Advert::v3(g.vrid, priority, g.advert_interval, m.addresses.clone());
        let bytes = adv.encode(m.own_addr, dst);
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: self.ifindex as i32,
            ipi_spec_dst: nix::libc::in_addr {
                s_addr: u32::from(m.own_addr).to_be(),
            },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let to = nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(dst, 0));
        nix::sys::socket::sendmsg(
            self.vrrp.get_ref().as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[nix::sys::socket::ControlMessage::Ipv4PacketInfo(&info)],
            nix::sys::socket::MsgFlags::empty(),
            Some(&to),
        )
        .map(|_| ())
        .map_err(std::io::Error::from)
    }

    /// One gratuitous ARP per virtual address.
    fn garp(&self, addresses: &[Ipv4Addr]) -> std::io::Result<()> {
        let to = link_addr(self.ifindex, 0x0806, [0xff; 6]);
        for a in addresses {
            self.arp
                .send_to(&packet::gratuitous_arp(self.mac, *a), &to)?;
        }
        Ok(())
    }
}

/// What one reader task forwards: an accepted advert.
struct Received {
    member: usize,
    src: Ipv4Addr,
    advert: Advert,
}

/// Read adverts on one member until the channel closes; check TTL and drop our own.
async fn reader(member: usize, io: std::sync::Arc<MemberIo>, tx: mpsc::UnboundedSender<Received>) {
    let mut buf = [0u8; RECV_BUF];
    loop {
        let n = match io.vrrp.readable().await {
            Ok(mut guard) => match guard.try_io(|s| s.get_ref().read(&mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    warn!(iface = %io.name, error = %e, "VRRP receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_would_block) => continue,
            },
            Err(e) => {
                warn!(iface = %io.name, error = %e, "VRRP socket poll failed; reader stops");
                return;
            }
        };
        let (hdr, advert) = match packet::parse_datagram(&buf[..n]) {
            Ok(x) => x,
            Err(e) => {
                debug!(iface = %io.name, error = %e, "VRRP packet rejected");
                continue;
            }
        };
        if hdr.src == io.own_addr {
            continue;
        }
        if hdr.ttl != VRRP_TTL {
            debug!(iface = %io.name, src = %hdr.src, ttl = hdr.ttl,
                "VRRP advert dropped: TTL is not 255 (it was routed)");
            continue;
        }
        if advert.version != 3 {
            debug!(iface = %io.name, src = %hdr.src, version = advert.version,
                "VRRPv2 advert heard; the peer must use VRRP version 3");
        }
        debug!(iface = %io.name, src = %hdr.src, priority = advert.priority, "VRRP advert received");
        let r = Received {
            member,
            src: hdr.src,
            advert,
        };
        if tx.send(r).is_err() {
            return;
        }
    }
}

/// Real-time round-robin priority of the VRRP thread (1 is the lowest real-time level).
const VRRP_RT_PRIORITY: i32 = 10;

/// Put the calling thread (the VRRP thread) under `SCHED_RR`. A late advert makes the peer
/// take over while this box is alive (a spurious failover that can break calls), so adverts
/// must not wait behind forwarding, probing or a save; keepalived does the same
/// (`vrrp_rt_priority`). The kernel's real-time throttling still leaves time to the rest.
fn raise_priority() {
    let param = nix::libc::sched_param {
        sched_priority: VRRP_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread and `param` outlives the call.
    let rc = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_RR, &param) };
    if rc != 0 {
        warn!(
            error = %std::io::Error::last_os_error(),
            "VRRP thread runs at normal priority: adverts may be late when the box is busy"
        );
    }
}

/// The running VRRP group, from the daemon's side.
pub struct Runner {
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Runner {
    /// Open the sockets (in the caller's network namespace), then run the group on a new
    /// OS thread named `vrrp`. Notices arrive on the returned receiver.
    pub fn spawn(
        cfg: GroupConfig,
        addresses: Box<dyn Addresses>,
    ) -> Result<(Runner, mpsc::Receiver<Notice>), VrrpError> {
        if cfg.members.is_empty() {
            return Err(VrrpError::NoMembers);
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (notice_tx, notice_rx) = mpsc::channel(NOTICE_QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || {
                raise_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(VrrpError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let io = match open_all(&cfg) {
                        Ok(io) => io,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    run(cfg, io, addresses, control_rx, notice_tx).await;
                });
            })
            .map_err(VrrpError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok((
                Runner {
                    control,
                    thread: Some(thread),
                },
                notice_rx,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(VrrpError::Thread(std::io::Error::other(
                    "VRRP thread ended during start-up",
                )))
            }
        }
    }

    /// A sender for control messages (cheap to clone, usable from any thread or task).
    pub fn control(&self) -> mpsc::UnboundedSender<Control> {
        self.control.clone()
    }

    /// Send one control message; false if the runner has ended.
    pub fn send(&self, c: Control) -> bool {
        self.control.send(c).is_ok()
    }

    /// Orderly stop: resign (priority 0 if master), remove addresses, and wait for the
    /// thread. Blocking: from async code call it in `spawn_blocking`.
    pub fn stop(mut self) {
        let _ = self.control.send(Control::Shutdown);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("VRRP thread panicked");
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Without join: the thread resigns and ends on its own.
        let _ = self.control.send(Control::Shutdown);
    }
}

fn open_all(cfg: &GroupConfig) -> Result<Vec<std::sync::Arc<MemberIo>>, VrrpError> {
    cfg.members
        .iter()
        .map(|m| open_member(m).map(std::sync::Arc::new))
        .collect()
}

/// A pending gratuitous-ARP repeat.
struct GarpRound {
    at: Instant,
    member: usize,
    left: u32,
}

/// The runner's state besides the group.
struct Io {
    members: Vec<std::sync::Arc<MemberIo>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    rx: mpsc::UnboundedReceiver<Received>,
    addresses: Box<dyn Addresses>,
    notices: mpsc::Sender<Notice>,
    garps: Vec<GarpRound>,
    /// Per member: when a send failure was last logged, and how many were not logged since.
    send_warned: Vec<(Option<Instant>, u64)>,
}

impl Io {
    /// Log a failed send, at most once per [`WARN_EVERY`] per member.
    fn send_failed(&mut self, member: usize, what: &str, e: &std::io::Error, now: Instant) {
        if self.send_warned.len() <= member {
            self.send_warned.resize(member + 1, (None, 0));
        }
        let (last, suppressed) = &mut self.send_warned[member];
        if last.is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY) {
            *suppressed += 1;
            return;
        }
        let iface = self
            .members
            .get(member)
            .map(|m| m.name.as_str())
            .unwrap_or("?");
        warn!(iface, error = %e, suppressed = *suppressed, "{what} not sent");
        *last = Some(now);
        *suppressed = 0;
    }

    fn start_readers(&mut self, members: Vec<std::sync::Arc<MemberIo>>) {
        for r in self.readers.drain(..) {
            r.abort();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.readers = members
            .iter()
            .enumerate()
            .map(|(i, m)| tokio::spawn(reader(i, m.clone(), tx.clone())))
            .collect();
        self.members = members;
        self.rx = rx;
        self.garps.clear();
    }

    fn notify(&self, n: Notice) {
        if let Err(mpsc::error::TrySendError::Full(n)) = self.notices.try_send(n) {
            if !matches!(n, Notice::Status(_)) {
                warn!(notice = ?n, "VRRP notice dropped: the daemon is not reading");
            }
        }
    }

    /// Carry out the group's actions in order.
    fn execute(&mut self, group: &Group, now: Instant, actions: Vec<Action>) {
        let cfg = group.config();
        for a in actions {
            match a {
                Action::Send { member, priority } => {
                    if let (Some(m), Some(mc)) = (self.members.get(member), cfg.members.get(member))
                    {
                        if let Err(e) = m.send(cfg, mc, priority) {
                            self.send_failed(member, "VRRP advert", &e, now);
                        }
                    }
                }
                Action::AddAddresses { member } => {
                    if let Some(m) = cfg.members.get(member) {
                        if let Err(e) = self.addresses.add(member, &m.addresses) {
                            warn!(iface = %m.name, error = %e, "adding virtual addresses failed");
                        }
                    }
                }
                Action::RemoveAddresses { member } => {
                    if let Some(m) = cfg.members.get(member) {
                        if let Err(e) = self.addresses.remove(member, &m.addresses) {
                            warn!(iface = %m.name, error = %e, "removing virtual addresses failed");
                        }
                    }
                }
                Action::GratuitousArp { member } => {
                    self.garp(group, member, now);
                    self.garps.retain(|g| g.member != member);
                    self.garps.push(GarpRound {
                        at: now + GARP_SPACING,
                        member,
                        left: GARP_REPEATS,
                    });
                }
                Action::Transition { from, to, reason } => {
                    info!(vrid = cfg.vrid, %from, %to, %reason, "VRRP transition");
                    self.notify(Notice::Transition { from, to, reason });
                }
                Action::SplitBrain {
                    member,
                    other,
                    active,
                } => {
                    let iface = cfg.members.get(member).map(|m| m.name.as_str());
                    if active {
                        warn!(vrid = cfg.vrid, ?iface, %other, "VRRP split brain: another master is advertising; asserting mastership");
                    } else {
                        info!(vrid = cfg.vrid, ?iface, %other, "VRRP split brain over");
                    }
                    self.notify(Notice::SplitBrain {
                        member,
                        other,
                        active,
                    });
                }
            }
        }
    }

    fn garp(&mut self, group: &Group, member: usize, now: Instant) {
        if let (Some(m), Some(mc)) = (self.members.get(member), group.config().members.get(member))
        {
            if let Err(e) = m.garp(&mc.addresses) {
                self.send_failed(member, "gratuitous ARP", &e, now);
            }
        }
    }

    /// Send the repeats that are due while still master.
    fn garp_repeats(&mut self, group: &Group, now: Instant) {
        if group.state() != State::Master {
            self.garps.clear();
            return;
        }
        let due: Vec<usize> = self
            .garps
            .iter()
            .filter(|g| g.at <= now)
            .map(|g| g.member)
            .collect();
        for member in due {
            self.garp(group, member, now);
        }
        for g in &mut self.garps {
            if g.at <= now {
                g.left -= 1;
                g.at = now + GARP_SPACING;
            }
        }
        self.garps.retain(|g| g.left > 0);
    }
}

/// The runner's loop: one group, its readers, the control channel and the timers.
async fn run(
    cfg: GroupConfig,
    members: Vec<std::sync::Arc<MemberIo>>,
    addresses: Box<dyn Addresses>,
    mut control: mpsc::UnboundedReceiver<Control>,
    notices: mpsc::Sender<Notice>,
) {
    let (_, rx) = mpsc::unbounded_channel();
    let mut io = Io {
        members: Vec::new(),
        readers: Vec::new(),
        rx,
        addresses,
        notices,
        garps: Vec::new(),
        send_warned: Vec::new(),
    };
    io.start_readers(members);
    let mut group = Group::new(cfg, Instant::now());
    let acts = group.handle(Instant::now(), Event::Startup);
    io.execute(&group, Instant::now(), acts);
    io.notify(Notice::Status(group.status()));
    let mut next_status = Instant::now() + STATUS_PERIOD;
    loop {
        let wake = group
            .next_deadline()
            .into_iter()
            .chain(io.garps.iter().map(|g| g.at))
            .chain(Some(next_status))
            .min()
            .unwrap_or(next_status);
        let event = tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => Some(Event::Timer),
            r = io.rx.recv() => match r {
                Some(r) => Some(Event::Advert { member: r.member, src: r.src, advert: r.advert }),
                None => {
                    warn!("VRRP readers ended; the group stops");
                    Some(Event::Shutdown)
                }
            },
            c = control.recv() => match c {
                Some(Control::Fault { reason, active }) => Some(Event::Fault { reason, active }),
                Some(Control::Shutdown) | None => Some(Event::Shutdown),
                Some(Control::Reconfigure(new)) => {
                    group = reconfigure(group, new, &mut io);
                    io.notify(Notice::Status(group.status()));
                    None
                }
            },
        };
        let now = Instant::now();
        if let Some(event) = event {
            let stop = event == Event::Shutdown;
            let acts = group.handle(now, event);
            let changed = acts
                .iter()
                .any(|a| matches!(a, Action::Transition { .. } | Action::SplitBrain { .. }));
            io.execute(&group, now, acts);
            if stop {
                io.notify(Notice::Status(group.status()));
                break;
            }
            if changed {
                io.notify(Notice::Status(group.status()));
                next_status = now + STATUS_PERIOD;
            }
        }
        io.garp_repeats(&group, now);
        if now >= next_status {
            io.notify(Notice::Status(group.status()));
            next_status = now + STATUS_PERIOD;
        }
    }
    for r in io.readers.drain(..) {
        r.abort();
    }
}

/// Apply a new config: in place when possible (a master adds/removes the changed
/// addresses and announces the new ones), else resign, reopen and start again.
fn reconfigure(mut group: Group, new: GroupConfig, io: &mut Io) -> Group {
    let now = Instant::now();
    if &new == group.config() {
        return group;
    }
    let old = group.config().clone();
    if group.update(now, new.clone()) {
        info!(vrid = new.vrid, "VRRP config updated in place");
        if group.state() == State::Master {
            for (i, (o, n)) in old.members.iter().zip(&new.members).enumerate() {
                let gone: Vec<_> = o
                    .addresses
                    .iter()
                    .filter(|a| !n.addresses.contains(a))
                    .copied()
                    .collect();
                let added: Vec<_> = n
                    .addresses
                    .iter()
                    .filter(|a| !o.addresses.contains(a))
                    .copied()
                    .collect();
                if !gone.is_empty() {
                    if let Err(e) = io.addresses.remove(i, &gone) {
                        warn!(iface = %n.name, error = %e, "removing virtual addresses failed");
                    }
                }
                if !added.is_empty() {
                    if let Err(e) = io.addresses.add(i, &added) {
                        warn!(iface = %n.name, error = %e, "adding virtual addresses failed");
                    }
                    // Announce the new addresses like a fresh master would.
                    io.execute(&group, now, vec![Action::GratuitousArp { member: i }]);
                }
            }
        }
        return group;
    }
    info!(
        vrid = new.vrid,
        "VRRP interfaces changed: resigning and restarting"
    );
    let acts = group.handle(now, Event::Shutdown);
    io.execute(&group, now, acts);
    match open_all(&new) {
        Ok(members) => io.start_readers(members),
        Err(e) => {
            // Without sockets nothing can run: the readers' channel closes and the
            // runner ends (the daemon sees its control channel close).
            warn!(error = %e, "VRRP cannot open the new interfaces; the group stops");
            io.start_readers(Vec::new());
            return Group::new(new, now);
        }
    }
    let faults = group.active_faults();
    let mut g = Group::new(new, now);
    for reason in faults {
        g.handle(
            now,
            Event::Fault {
                reason,
                active: true,
            },
        );
    }
    let acts = g.handle(now, Event::Startup);
    io.execute(&g, now, acts);
    g
}
