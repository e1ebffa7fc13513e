//! Netlink work (links, addresses, routes) with `rtnetlink`, and the sandbox's network
//! namespace (a bind-mounted nsfs file). Everything in-process: no `ip` subprocesses.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::NetError;

const EEXIST: i32 = libc::EEXIST;
const ENODEV: i32 = libc::ENODEV;

/// The errno of a netlink refusal, if it was one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error().map(i32::abs),
        _ => None,
    }
}

fn nl(op: &'static str, target: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let target = target.into();
    move |source| NetError::Netlink { op, target, source }
}

/// A netlink connection in this thread's network namespace (the host's, for the driver),
/// its reader task spawned on the current runtime.
pub(super) fn connect() -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
        op: "open netlink socket",
        path: PathBuf::from("netlink"),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of link `name`, or `None` if there is none.
pub(super) async fn index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl("get link", name)(e)),
    }
}

/// Makes sure bridge `name` exists, is up and holds `gateway/prefix`. Returns its index.
pub(super) async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32, NetError> {
    if index(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(nl("add bridge", name)(e)),
        }
    }
    let idx = index(handle, name).await?.ok_or_else(|| NetError::Config {
        field: "bridge",
        reason: format!("{name} vanished while being set up"),
    })?;
    match handle
        .address()
        .add(idx, IpAddr::V4(gateway), prefix)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(EEXIST) => {}
        Err(e) => return Err(nl("add address", name)(e)),
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl("set up", name))?;
    Ok(idx)
}

/// Deletes link `name` (a veth: its peer goes with it). A missing link is no error.
pub(super) async fn delete(handle: &Handle, name: &str) -> Result<(), NetError> {
    let Some(idx) = index(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(idx).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
        Err(e) => Err(nl("delete link", name)(e)),
    }
}

/// Attaches the host end `veth` to the bridge as an isolated port (it can talk to the
/// bridge's own address only, never to another isolated port), labels it with `alias` (the
/// sandbox id, for orphan removal) and brings it up.
pub(super) async fn attach_port(
    handle: &Handle,
    veth: &str,
    bridge_index: u32,
    alias: &str,
) -> Result<(), NetError> {
    let idx = index(handle, veth).await?.ok_or_else(|| NetError::Config {
        field: "veth",
        reason: format!("{veth} missing after creation"),
    })?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(idx)
                .controller(bridge_index)
                .alias(alias)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("attach to bridge", veth))?;
    handle
        .link()
        .set_port(LinkBridgePort::new(idx).isolated(true).build())
        .execute()
        .await
        .map_err(nl("isolate port", veth))?;
    Ok(())
}

/// The ports of bridge `bridge_index`: (name, alias).
pub(super) async fn ports(
    handle: &Handle,
    bridge_index: u32,
) -> Result<Vec<(String, Option<String>)>, NetError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links", "all"))?;
    Ok(links
        .into_iter()
        .filter(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == bridge_index))
        })
        .filter_map(|l| {
            let mut name = None;
            let mut alias = None;
            for a in l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::IfAlias(s) => alias = Some(s),
                    _ => {}
                }
            }
            name.map(|n| (n, alias))
        })
        .collect())
}

/// What to build inside a new network namespace.
#[derive(Debug, Clone)]
pub(super) struct Namespace {
    /// The nsfs bind mount to create (an empty file is made first).
    pub path: PathBuf,
    /// Name of the veth end left in the host's namespace.
    pub host_veth: String,
    /// The sandbox's address and prefix length on `eth0`.
    pub address: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// The default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

/// Creates the namespace at `ns.path` with `lo` up and `eth0` (a veth whose peer
/// `ns.host_veth` is in the caller's namespace) holding the address and default route.
/// IPv6 is disabled inside. Runs on a thread of its own that enters the new namespace and
/// ends after, so no runtime thread ever changes namespace. Bounded by `deadline`.
pub(super) async fn create_namespace(ns: Namespace, deadline: Duration) -> Result<(), NetError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = ns.path.clone();
    std::thread::Builder::new()
        .name("hangar-netns".into())
        .spawn(move || {
            let _ = tx.send(build_namespace(&ns));
        })
        .map_err(|source| NetError::Namespace {
            op: "spawn thread for",
            path: path.clone(),
            source,
        })?;
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(NetError::Namespace {
            op: "create",
            path,
            source: std::io::Error::other("namespace thread ended without an answer"),
        }),
        Err(_) => Err(NetError::Timeout {
            op: "create network namespace",
            after: deadline,
        }),
    }
}

fn ns_err(op: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> NetError {
    let path = path.to_owned();
    move |errno| NetError::Namespace {
        op,
        path,
        source: errno.into(),
    }
}

/// Runs on its own thread (see [`create_namespace`]).
fn build_namespace(ns: &Namespace) -> Result<(), NetError> {
    let host = File::open("/proc/thread-self/ns/net").map_err(|source| NetError::Namespace {
        op: "open host",
        path: PathBuf::from("/proc/thread-self/ns/net"),
        source,
    })?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(ns_err("unshare", &ns.path))?;
    File::create(&ns.path).map_err(|source| NetError::Namespace {
        op: "create",
        path: ns.path.clone(),
        source,
    })?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        &ns.path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(ns_err("bind mount", &ns.path))?;
    // /proc/sys/net is this thread's namespace now. No IPv6: sandboxes get IPv4 egress only,
    // and no link-local addresses to talk over.
    for knob in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetError::Namespace {
            op: "start runtime in",
            path: ns.path.clone(),
            source,
        })?;
    rt.block_on(async {
        let handle = connect()?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(ns.host_veth.clone())
            .setns_by_fd(host.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name("eth0".to_owned())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        handle
            .link()
            .add(veth)
            .execute()
            .await
            .map_err(nl("add veth", ns.host_veth.clone()))?;
        handle
            .link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(nl("set up", "lo"))?;
        let eth0 = index(&handle, "eth0")
            .await?
            .ok_or_else(|| NetError::Config {
                field: "veth",
                reason: "eth0 missing after creation".into(),
            })?;
        handle
            .address()
            .add(eth0, IpAddr::V4(ns.address), ns.prefix)
            .execute()
            .await
            .map_err(nl("add address", "eth0"))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(nl("set up", "eth0"))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(ns.gateway)
            .output_interface(eth0)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(nl("add default route", "eth0"))?;
        Ok(())
    })
}

/// Unmounts and removes the namespace file at `path` (lazily: a process still inside keeps
/// the namespace alive until it exits). Missing or unmounted is no error.
pub(super) fn remove_namespace(path: &Path) -> Result<(), NetError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(ns_err("unmount", path)(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::Namespace {
            op: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}
