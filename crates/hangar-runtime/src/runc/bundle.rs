//! Builds the OCI runtime spec (`config.json`, runtime-spec v1.0.2) for one sandbox with the
//! `oci-spec` crate. Pure: no I/O, so the whole shape is unit-tested.

use std::path::Path;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::driver::{DriverError, SandboxSpec};

/// Where the guest agent binary is bind-mounted (read-only) inside every sandbox.
pub const GUEST_AGENT_PATH: &str = "/.hangar/hangar-guest";
/// The directory inside the sandbox where the guest agent creates its socket; a host
/// directory is bind-mounted there so the node can reach the socket.
pub const GUEST_SOCKET_DIR: &str = "/run/hangar";
/// The guest agent's socket inside the sandbox.
pub const GUEST_SOCKET_PATH: &str = "/run/hangar/agent.sock";
/// CFS period used for the CPU quota, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Open-files limit (soft and hard) for the sandbox's processes; node-based CLIs need many.
pub const NOFILE_LIMIT: u64 = 65_536;

/// Host paths the spec refers to.
#[derive(Debug, Clone, Copy)]
pub struct BundlePaths<'a> {
    /// The mounted overlay (the container's root), absolute.
    pub rootfs: &'a Path,
    /// The host's static guest agent binary.
    pub guest_agent: &'a Path,
    /// The host directory bind-mounted at [`GUEST_SOCKET_DIR`].
    pub socket_dir: &'a Path,
    /// Open-files limit for the sandbox: [`NOFILE_LIMIT`] capped at the host's hard limit
    /// (runc cannot raise it above the caller's); see [`host_nofile_limit`].
    pub nofile_limit: u64,
    /// For an egress sandbox: the network namespace to join and the files to mount. `None`
    /// gives runc's own loopback-only namespace.
    pub network: Option<NetworkPaths<'a>>,
}

/// Host paths of an egress sandbox's network ([`crate::net::Attachment`]).
#[derive(Debug, Clone, Copy)]
pub struct NetworkPaths<'a> {
    /// The bind-mounted network namespace file runc joins.
    pub netns: &'a Path,
    /// Mounted read-only at `/etc/resolv.conf`.
    pub resolv_conf: &'a Path,
    /// Mounted read-only at `/etc/hosts`.
    pub hosts: &'a Path,
}

/// [`NOFILE_LIMIT`] capped at this process's hard `RLIMIT_NOFILE`.
pub fn host_nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(NOFILE_LIMIT))
        .unwrap_or(1024)
}

/// The spec for `spec` with the host paths in `paths`:
/// - process: the image's `init` if it has one, else the guest agent listening on
///   [`GUEST_SOCKET_PATH`]; as the image's unprivileged user, in its home, no new privileges;
/// - root: the overlay, writable;
/// - mounts: runc's defaults plus the guest agent (ro bind) and the socket directory (rw bind);
/// - namespaces: pid, network, ipc, uts, mount, cgroup; the network namespace is runc's
///   own (loopback only) unless `paths.network` names one hangar made (egress), which also
///   adds read-only `/etc/resolv.conf` and `/etc/hosts`;
/// - resources: CPU quota `cpu_millis * period / 1000` per [`CPU_PERIOD_US`], memory limit
///   with swap equal to it (no swap), pids limit; cgroup `/hangar/<id>`.
pub fn build_spec(spec: &SandboxSpec, paths: BundlePaths<'_>) -> Result<Spec, DriverError> {
    let config = &spec.image.config;
    let user = &config.user;
    let args = match &config.init {
        Some(init) if !init.is_empty() => init.clone(),
        _ => vec![
            GUEST_AGENT_PATH.to_owned(),
            "--listen".to_owned(),
            GUEST_SOCKET_PATH.to_owned(),
        ],
    };
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        format!("HOME={}", user.home),
        format!("USER={}", user.name),
        "LANG=C.UTF-8".to_owned(),
    ];
    env.extend(config.env.iter().cloned());
    env.push(format!("HANGAR_GUEST_AGENT={GUEST_AGENT_PATH}"));
    env.push(format!("HANGAR_GUEST_LISTEN={GUEST_SOCKET_PATH}"));
    env.push(format!("HANGAR_SANDBOX_ID={}", spec.id));

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .build()
                .map_err(DriverError::Spec)?,
        )
        .args(args)
        .env(env)
        .cwd(user.home.clone())
        .no_new_privileges(true)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(paths.nofile_limit)
            .hard(paths.nofile_limit)
            .build()
            .map_err(DriverError::Spec)?])
        .build()
        .map_err(DriverError::Spec)?;

    let mut mounts = oci_spec::runtime::get_default_mounts();
    mounts.push(
        MountBuilder::default()
            .destination(GUEST_AGENT_PATH)
            .typ("bind")
            .source(paths.guest_agent)
            .options(vec![
                "bind".to_owned(),
                "ro".to_owned(),
                "nosuid".to_owned(),
            ])
            .build()
            .map_err(DriverError::Spec)?,
    );
    mounts.push(
        MountBuilder::default()
            .destination(GUEST_SOCKET_DIR)
            .typ("bind")
            .source(paths.socket_dir)
            .options(vec![
                "bind".to_owned(),
                "rw".to_owned(),
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "noexec".to_owned(),
            ])
            .build()
            .map_err(DriverError::Spec)?,
    );

    let mut namespaces = oci_spec::runtime::get_default_namespaces();
    if let Some(net) = paths.network {
        for file in [
            ("/etc/resolv.conf", net.resolv_conf),
            ("/etc/hosts", net.hosts),
        ] {
            mounts.push(
                MountBuilder::default()
                    .destination(file.0)
                    .typ("bind")
                    .source(file.1)
                    .options(vec![
                        "bind".to_owned(),
                        "ro".to_owned(),
                        "nosuid".to_owned(),
                        "nodev".to_owned(),
                        "noexec".to_owned(),
                    ])
                    .build()
                    .map_err(DriverError::Spec)?,
            );
        }
        for ns in &mut namespaces {
            if ns.typ() == LinuxNamespaceType::Network {
                ns.set_path(Some(net.netns.to_owned()));
            }
        }
    }

    let limits = spec.limits;
    let memory_bytes = i64::from(limits.memory_mib) * 1024 * 1024;
    let quota = i64::from(limits.cpu_millis) * (CPU_PERIOD_US as i64) / 1000;
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory_bytes)
                .swap(memory_bytes)
                .build()
                .map_err(DriverError::Spec)?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()
                .map_err(DriverError::Spec)?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(i64::from(limits.pids_max))
                .build()
                .map_err(DriverError::Spec)?,
        )
        .build()
        .map_err(DriverError::Spec)?;

    let defaults = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(defaults.masked_paths().clone().unwrap_or_default())
        .readonly_paths(defaults.readonly_paths().clone().unwrap_or_default())
        .resources(resources)
        .cgroups_path(format!("/hangar/{}", spec.id))
        .build()
        .map_err(DriverError::Spec)?;

    SpecBuilder::default()
        .version("1.0.2")
        .hostname("sandbox")
        .root(
            RootBuilder::default()
                .path(paths.rootfs)
                .readonly(false)
                .build()
                .map_err(DriverError::Spec)?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(DriverError::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Image, ImageConfig, ImageUser};
    use hangar_core::{Limits, SandboxId};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn sample(init: Option<Vec<String>>) -> SandboxSpec {
        SandboxSpec {
            id: SandboxId::from_uuid(uuid_for_tests()),
            image: Image {
                name: "t".into(),
                digest: "sha256:00".into(),
                rootfs: PathBuf::from("/images/x/rootfs"),
                config: ImageConfig {
                    user: ImageUser {
                        uid: 1000,
                        gid: 1000,
                        name: "hangar".into(),
                        home: "/home/hangar".into(),
                    },
                    env: vec!["EXTRA=1".into()],
                    init,
                    labels: BTreeMap::new(),
                },
                created_at_ms: 0,
                size_bytes: 0,
            },
            limits: Limits {
                cpu_millis: 1500,
                memory_mib: 512,
                pids_max: 64,
            },
            network: hangar_core::NetworkPolicy::None,
        }
    }

    fn uuid_for_tests() -> uuid::Uuid {
        uuid::Uuid::from_u128(7)
    }

    fn paths() -> BundlePaths<'static> {
        BundlePaths {
            rootfs: Path::new("/data/sandboxes/x/rootfs"),
            guest_agent: Path::new("/data/bin/hangar-guest"),
            socket_dir: Path::new("/data/sandboxes/x/run"),
            nofile_limit: 4096,
            network: None,
        }
    }

    #[test]
    fn spec_carries_limits_user_and_agent() {
        let spec = build_spec(&sample(None), paths()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["cwd"], "/home/hangar");
        assert_eq!(
            json["process"]["args"],
            serde_json::json!([GUEST_AGENT_PATH, "--listen", GUEST_SOCKET_PATH])
        );
        assert_eq!(json["process"]["noNewPrivileges"], true);
        let res = &json["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 512 * 1024 * 1024);
        assert_eq!(res["memory"]["swap"], 512 * 1024 * 1024);
        assert_eq!(res["cpu"]["quota"], 150_000);
        assert_eq!(res["cpu"]["period"], 100_000);
        assert_eq!(res["pids"]["limit"], 64);
        assert_eq!(json["process"]["rlimits"][0]["hard"], 4096);
        assert_eq!(json["root"]["readonly"], false);
        let namespaces: Vec<String> = json["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str().map(str::to_owned))
            .collect();
        assert!(namespaces.contains(&"network".to_owned()));
        assert!(namespaces.contains(&"pid".to_owned()));
        let mounts = json["mounts"].as_array().expect("mounts");
        assert!(mounts.iter().any(
            |m| m["destination"] == GUEST_AGENT_PATH && m["source"] == "/data/bin/hangar-guest"
        ));
        assert!(mounts.iter().any(|m| m["destination"] == GUEST_SOCKET_DIR));
        let env = json["process"]["env"].as_array().expect("env");
        assert!(env.iter().any(|e| e == "EXTRA=1"));
    }

    #[test]
    fn egress_joins_hangars_namespace_and_mounts_resolver_files() {
        let none =
            serde_json::to_value(build_spec(&sample(None), paths()).expect("spec")).expect("json");
        let net_ns = |json: &serde_json::Value| {
            json["linux"]["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
                .expect("network namespace")
        };
        assert!(
            net_ns(&none).get("path").is_none(),
            "runc makes a fresh one"
        );
        let mounts = none["mounts"].as_array().expect("mounts");
        assert!(!mounts
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf"));

        let egress = BundlePaths {
            network: Some(NetworkPaths {
                netns: Path::new("/data/sandboxes/x/net/netns"),
                resolv_conf: Path::new("/data/sandboxes/x/net/resolv.conf"),
                hosts: Path::new("/data/sandboxes/x/net/hosts"),
            }),
            ..paths()
        };
        let json =
            serde_json::to_value(build_spec(&sample(None), egress).expect("spec")).expect("json");
        assert_eq!(net_ns(&json)["path"], "/data/sandboxes/x/net/netns");
        let mounts = json["mounts"].as_array().expect("mounts");
        for (dest, src) in [
            ("/etc/resolv.conf", "/data/sandboxes/x/net/resolv.conf"),
            ("/etc/hosts", "/data/sandboxes/x/net/hosts"),
        ] {
            let m = mounts
                .iter()
                .find(|m| m["destination"] == dest)
                .expect("mount");
            assert_eq!(m["source"], src);
            assert!(m["options"]
                .as_array()
                .expect("opts")
                .iter()
                .any(|o| o == "ro"));
        }
    }

    #[test]
    fn image_init_replaces_agent() {
        let init = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "sleep 100".to_owned(),
        ];
        let spec = build_spec(&sample(Some(init.clone())), paths()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["args"], serde_json::json!(init));
    }
}
