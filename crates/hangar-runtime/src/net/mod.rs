//! Sandbox networking on one node: policy `egress` gives a sandbox outbound internet through
//! NAT with isolation; policy `none` leaves it with loopback only (runc makes that namespace).
//!
//! ```text
//!  sandbox netns (DIR/net/netns)        host                              outside
//!  eth0 10.89.0.7/16 ── veth ── hgv…  ──┐
//!  default via 10.89.0.1                bridge hangar0 10.89.0.1/16 ── route ── masquerade ─▶
//!  /etc/resolv.conf: host upstreams   ──┘ (isolated ports; nft table inet/bridge hangar_hangar0)
//! ```
//!
//! - Node setup ([`NodeNetwork::setup_node`], idempotent): the bridge with the subnet's first
//!   address as gateway, `net.ipv4.ip_forward=1`, hangar's nftables tables
//!   ([`firewall`]).
//! - Per sandbox ([`NodeNetwork::attach`], at process start): a lease from the subnet
//!   ([`lease`], file `DIR/net/lease`), a network namespace bind-mounted at `DIR/net/netns`,
//!   a veth pair (`eth0` inside, [`veth_name`] on the bridge, isolated, aliased with the
//!   sandbox id), `/etc/resolv.conf` and `/etc/hosts` ([`files`]) for read-only bind mounts.
//! - [`NodeNetwork::detach`] (stop, destroy) undoes all of it and is idempotent;
//!   [`NodeNetwork::leftovers`] finds ports whose sandbox the reconciler no longer knows.
//!
//! **Must not:** let a sandbox open a connection to the node itself (its API, any host
//! service) or to another sandbox, reach a denied range (cloud metadata), or be reachable from
//! outside; change any firewall table but its own; run a namespace change on a runtime thread.

pub mod files;
pub mod firewall;
pub mod lease;
mod link;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hangar_core::SandboxId;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use lease::LeaseTable;

/// The bridge name when none is configured.
pub const DEFAULT_BRIDGE: &str = "hangar0";
/// The subnet when none is configured (RFC 1918, rarely used by cloud VPCs or Docker).
pub const DEFAULT_SUBNET: &str = "10.89.0.0/16";
/// The hostname every sandbox has (also in the OCI spec).
pub const SANDBOX_HOSTNAME: &str = "sandbox";
/// The per-sandbox directory (under the sandbox's directory) holding its network files.
pub const SANDBOX_NET_DIR: &str = "net";

/// How a node's sandbox network is laid out. The `[network]` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The Linux bridge sandboxes attach to (1-15 characters of `[A-Za-z0-9_-]`).
    pub bridge: String,
    /// Sandbox addresses come from here; the first host address is the bridge's (the
    /// gateway). Prefix length 8 to 30.
    pub subnet: Ipv4Net,
    /// Nameservers written into sandboxes' `/etc/resolv.conf` (queried directly: the node
    /// runs no resolver for them). At most three are used.
    pub dns: Vec<Ipv4Addr>,
    /// Destinations sandboxes may never reach (DNS to the servers above excepted).
    pub deny: Vec<Ipv4Net>,
}

impl NetworkConfig {
    /// Ranges denied by default: link-local (169.254.0.0/16, the cloud metadata services),
    /// "this network" (0.0.0.0/8), multicast (224.0.0.0/4) and reserved/broadcast
    /// (240.0.0.0/4). Private ranges are not denied by default (the node's DNS or a
    /// package mirror may live there); add `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`
    /// to wall sandboxes off from the local network.
    pub fn default_deny() -> Vec<Ipv4Net> {
        ["169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// The defaults with `dns` as the nameservers.
    pub fn with_dns(dns: Vec<Ipv4Addr>) -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_owned(),
            subnet: DEFAULT_SUBNET
                .parse()
                .unwrap_or_else(|_| Ipv4Net::default()),
            dns,
            deny: Self::default_deny(),
        }
    }

    /// Checks names and ranges. [`NetError::Config`] names the field.
    pub fn validate(&self) -> Result<(), NetError> {
        let b = &self.bridge;
        if b.is_empty()
            || b.len() > 15
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NetError::Config {
                field: "bridge",
                reason: format!("{b:?} must be 1-15 characters of A-Z a-z 0-9 _ -"),
            });
        }
        if !(8..=30).contains(&self.subnet.prefix_len()) {
            return Err(NetError::Config {
                field: "subnet",
                reason: format!("{} must have a prefix length from 8 to 30", self.subnet),
            });
        }
        if self.subnet.trunc() != self.subnet {
            return Err(NetError::Config {
                field: "subnet",
                reason: format!(
                    "{} has host bits set (use {})",
                    self.subnet,
                    self.subnet.trunc()
                ),
            });
        }
        Ok(())
    }

    /// The bridge's address and every sandbox's default gateway: the subnet's first host.
    pub fn gateway(&self) -> Ipv4Addr {
        LeaseTable::gateway(self.subnet)
    }

    /// The name of hangar's nftables tables (`inet` and `bridge`) for this bridge:
    /// `hangar_<bridge>`.
    pub fn table_name(&self) -> String {
        format!("hangar_{}", self.bridge)
    }
}

/// Every sandbox veth's host end starts with this.
pub const VETH_PREFIX: &str = "hgv";

/// The host end of a sandbox's veth pair: `hgv` and 12 hex digits of the SHA-256 of the
/// sandbox id (15 characters, the kernel's `IFNAMSIZ - 1`). The full id is the link's alias.
pub fn veth_name(id: SandboxId) -> String {
    let digest = sha2::Sha256::digest(id.to_string().as_bytes());
    format!("{VETH_PREFIX}{}", &hex::encode(digest)[..12])
}

/// [`veth_name`] for a sandbox directory's name (`None`-safe for tests and cleanup: a name
/// that is not a sandbox id gives a name no sandbox has).
pub fn veth_name_for(dir_name: &std::ffi::OsStr) -> String {
    match dir_name.to_str().and_then(|n| n.parse::<SandboxId>().ok()) {
        Some(id) => veth_name(id),
        None => "hgv-none".to_owned(),
    }
}

/// Network failures. Context in fields.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The `[network]` settings are unusable.
    #[error("network setting {field}: {reason}")]
    Config {
        /// The setting (`bridge`, `subnet`, ...).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The kernel refused a netlink request.
    #[error("netlink {op} {target}")]
    Netlink {
        /// What was asked (`add veth`, `add address`, ...).
        op: &'static str,
        /// The link or object.
        target: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// Creating, entering or removing a network namespace failed.
    #[error("{op} network namespace {path}")]
    Namespace {
        /// What was being done.
        op: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file (lease, resolv.conf, sysctl) could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the ruleset or failed.
    #[error("nftables: {reason}")]
    Firewall {
        /// nft's complaint (stderr) or the encoding problem.
        reason: String,
    },
    /// Every address of the subnet is leased.
    #[error("no free address in {subnet}")]
    SubnetFull {
        /// The node's subnet.
        subnet: Ipv4Net,
    },
    /// A lease file conflicts with another or lies outside the subnet.
    #[error("lease of sandbox {id}: {reason}")]
    Lease {
        /// The sandbox whose lease it is.
        id: SandboxId,
        /// What is wrong.
        reason: String,
    },
    /// A network step did not finish within its deadline.
    #[error("{op} did not finish within {after:?}")]
    Timeout {
        /// The step.
        op: &'static str,
        /// The deadline.
        after: Duration,
    },
}

/// What a started egress sandbox's OCI spec needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its leased address on `eth0`.
    pub address: Ipv4Addr,
    /// The network namespace file runc joins.
    pub netns: PathBuf,
    /// The generated resolv.conf, bind-mounted read-only at `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The generated hosts file, bind-mounted read-only at `/etc/hosts`.
    pub hosts: PathBuf,
}

struct HostLink {
    handle: rtnetlink::Handle,
    bridge_index: u32,
}

/// The node's sandbox network: its settings, the lease table and the netlink connection.
/// One per driver; shared by its clones.
pub struct NodeNetwork {
    config: NetworkConfig,
    state_dir: PathBuf,
    deadline: Duration,
    leases: Mutex<LeaseTable>,
    host: tokio::sync::OnceCell<HostLink>,
}

impl std::fmt::Debug for NodeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeNetwork")
            .field("config", &self.config)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn net_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join(SANDBOX_NET_DIR)
}

impl NodeNetwork {
    /// Validates `config` and reads every lease file under `state_dir` (`<state>/<id>/net/lease`)
    /// into the lease table. A lease that conflicts is logged and ignored (its sandbox gets a
    /// fresh one on its next start). `deadline` bounds each network step.
    pub fn new(
        config: NetworkConfig,
        state_dir: &Path,
        deadline: Duration,
    ) -> Result<Self, NetError> {
        config.validate()?;
        let mut table = LeaseTable::new(config.subnet);
        if let Ok(entries) = std::fs::read_dir(state_dir) {
            for entry in entries.flatten() {
                let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<SandboxId>().ok())
                else {
                    continue;
                };
                let path = net_dir(&entry.path()).join("lease");
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                match lease::parse_lease(&text) {
                    Some(addr) => {
                        if let Err(e) = table.restore(id, addr) {
                            tracing::warn!(error = %e, "ignoring lease");
                        }
                    }
                    None => tracing::warn!(path = %path.display(), "unreadable lease file"),
                }
            }
        }
        Ok(Self {
            config,
            state_dir: state_dir.to_owned(),
            deadline,
            leases: Mutex::new(table),
            host: tokio::sync::OnceCell::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Sets the node up once per process (later calls return at once): bridge with the
    /// gateway address, IPv4 forwarding, hangar's nftables tables. Idempotent across
    /// restarts: an existing bridge and address are kept, the tables replaced whole.
    pub async fn setup_node(&self) -> Result<(), NetError> {
        self.host().await.map(|_| ())
    }

    async fn host(&self) -> Result<&HostLink, NetError> {
        self.host
            .get_or_try_init(|| async {
                let handle = link::connect()?;
                let bridge_index = tokio::time::timeout(
                    self.deadline,
                    link::ensure_bridge(
                        &handle,
                        &self.config.bridge,
                        self.config.gateway(),
                        self.config.subnet.prefix_len(),
                    ),
                )
                .await
                .map_err(|_| NetError::Timeout {
                    op: "bridge setup",
                    after: self.deadline,
                })??;
                write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
                // The bridge itself needs no IPv6 (no link-local address for sandboxes to reach).
                let _ = write_sysctl(
                    &format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.config.bridge),
                    "1",
                );
                firewall::apply(
                    &firewall::ruleset(&self.config),
                    &self.state_dir.join(format!(".nft-{}.json", self.config.bridge)),
                    self.deadline,
                )
                .await?;
                tracing::info!(bridge = %self.config.bridge, subnet = %self.config.subnet, "sandbox network ready");
                Ok(HostLink {
                    handle,
                    bridge_index,
                })
            })
            .await
    }

    /// Gives sandbox `id` (directory `sandbox_dir`) its network: lease, namespace, veth,
    /// resolv.conf and hosts. Idempotent: a leftover veth or namespace from an interrupted
    /// start is replaced; an existing lease is kept.
    pub async fn attach(&self, id: SandboxId, sandbox_dir: &Path) -> Result<Attachment, NetError> {
        let host = self.host().await?;
        let dir = net_dir(sandbox_dir);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let address = {
            let mut table = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let address = table.allocate(id)?;
            let path = dir.join("lease");
            if let Err(e) = std::fs::write(&path, format!("{address}\n")) {
                table.free(id);
                return Err(NetError::Io {
                    op: "write",
                    path,
                    source: e,
                });
            }
            address
        };
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(&resolv_conf, files::resolv_conf(&self.config.dns))
            .map_err(io("write", &resolv_conf))?;
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, files::hosts_file(SANDBOX_HOSTNAME)).map_err(io("write", &hosts))?;

        let veth = veth_name(id);
        let netns = dir.join("netns");
        link::delete(&host.handle, &veth).await?;
        link::remove_namespace(&netns)?;
        link::create_namespace(
            link::Namespace {
                path: netns.clone(),
                host_veth: veth.clone(),
                address,
                prefix: self.config.subnet.prefix_len(),
                gateway: self.config.gateway(),
            },
            self.deadline,
        )
        .await?;
        tokio::time::timeout(
            self.deadline,
            link::attach_port(&host.handle, &veth, host.bridge_index, &id.to_string()),
        )
        .await
        .map_err(|_| NetError::Timeout {
            op: "attach veth",
            after: self.deadline,
        })??;
        Ok(Attachment {
            address,
            netns,
            resolv_conf,
            hosts,
        })
    }

    /// Removes sandbox `id`'s network: veth, namespace, lease and files. Idempotent; works
    /// for a sandbox that never had one.
    pub async fn detach(&self, id: SandboxId, sandbox_dir: &Path) -> Result<(), NetError> {
        let dir = net_dir(sandbox_dir);
        if let Some(host) = self.host.get() {
            tokio::time::timeout(self.deadline, link::delete(&host.handle, &veth_name(id)))
                .await
                .map_err(|_| NetError::Timeout {
                    op: "delete veth",
                    after: self.deadline,
                })??;
        } else if dir.exists() {
            // Not set up in this process yet (a restart): connect to remove what is left.
            let host = self.host().await?;
            link::delete(&host.handle, &veth_name(id)).await?;
        }
        link::remove_namespace(&dir.join("netns"))?;
        let mut table = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        table.free(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetError::Io {
                op: "remove",
                path: dir,
                source,
            }),
        }
    }

    /// Sandbox `id`'s leased address, if it holds one (it does while it runs with egress).
    pub fn address(&self, id: SandboxId) -> Option<Ipv4Addr> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
    }

    /// Sandboxes that have a port on the bridge (by the port's alias), for orphan removal.
    /// Ports hangar did not label are left alone.
    pub async fn leftovers(&self) -> Result<Vec<SandboxId>, NetError> {
        let host = self.host().await?;
        let ports =
            tokio::time::timeout(self.deadline, link::ports(&host.handle, host.bridge_index))
                .await
                .map_err(|_| NetError::Timeout {
                    op: "list bridge ports",
                    after: self.deadline,
                })??;
        Ok(ports
            .into_iter()
            .filter_map(|(name, alias)| {
                let id = alias?.parse::<SandboxId>().ok()?;
                (veth_name(id) == name).then_some(id)
            })
            .collect())
    }
}

/// Removes the node's bridge and hangar's nftables tables for `config` (the bench and tests
/// use a throw-away bridge; a production node keeps its own). Sandbox veths go with their
/// namespaces. `scratch` is a writable path for the nft document; each step has `deadline`.
pub async fn remove_node(
    config: &NetworkConfig,
    scratch: &Path,
    deadline: Duration,
) -> Result<(), NetError> {
    let handle = link::connect()?;
    tokio::time::timeout(deadline, link::delete(&handle, &config.bridge))
        .await
        .map_err(|_| NetError::Timeout {
            op: "delete bridge",
            after: deadline,
        })??;
    firewall::apply(&firewall::removal(config), scratch, deadline).await
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_owned();
    move |source| NetError::Io { op, path, source }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(io("write", Path::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_differ() {
        let a = SandboxId::from_uuid(uuid::Uuid::from_u128(1));
        let b = SandboxId::from_uuid(uuid::Uuid::from_u128(2));
        let name = veth_name(a);
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("hgv"));
        assert!(name[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(veth_name(a), name, "stable");
        assert_ne!(veth_name(b), name);
    }

    #[test]
    fn config_is_validated() {
        let good = NetworkConfig::with_dns(vec![Ipv4Addr::new(1, 1, 1, 1)]);
        good.validate().expect("defaults are valid");
        assert_eq!(good.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(good.table_name(), "hangar_hangar0");
        assert!(good.deny.contains(&"169.254.0.0/16".parse().expect("net")));
        for (bridge, subnet) in [
            ("", "10.89.0.0/16"),
            ("a-very-long-bridge", "10.89.0.0/16"),
            ("bad name", "10.89.0.0/16"),
            ("ok0", "10.89.0.5/16"),
            ("ok0", "10.89.0.0/31"),
            ("ok0", "10.0.0.0/7"),
        ] {
            let c = NetworkConfig {
                bridge: bridge.into(),
                subnet: subnet.parse().expect("net"),
                ..good.clone()
            };
            assert!(
                matches!(c.validate(), Err(NetError::Config { .. })),
                "{bridge} {subnet}"
            );
        }
    }

    #[test]
    fn leases_are_read_back_from_sandbox_directories() {
        let state = tempfile::tempdir().expect("tempdir");
        let a = SandboxId::from_uuid(uuid::Uuid::from_u128(10));
        let b = SandboxId::from_uuid(uuid::Uuid::from_u128(11));
        for (id, addr) in [(a, "10.89.0.9\n"), (b, "10.89.0.9\n")] {
            let dir = state.path().join(id.to_string()).join(SANDBOX_NET_DIR);
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(dir.join("lease"), addr).expect("lease");
        }
        std::fs::create_dir_all(state.path().join("not-a-sandbox")).expect("dir");
        let net = NodeNetwork::new(
            NetworkConfig::with_dns(vec![]),
            state.path(),
            Duration::from_secs(5),
        )
        .expect("network");
        // One of the two conflicting leases wins; the other is ignored.
        let holders = [a, b]
            .iter()
            .filter(|id| net.address(**id).is_some())
            .count();
        assert_eq!(holders, 1);
    }
}
