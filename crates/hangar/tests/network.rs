//! Sandbox networking with real runc sandboxes, a real bridge, veths, namespaces and nftables.
//! Every test has its own bridge and subnet (`hangar_testkit::test_network`); servers listen
//! on loopback, on the private bridge hangar made, or inside a namespace the test makes.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_runtime::net::{veth_name, NetworkConfig, NodeNetwork};
use hangar_runtime::{AnyDriver, Driver};
use hangar_testkit::{images, test_network, wait_until, TestConfig, TestPlane};
use serde_json::{json, Value};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// An HTTP GET with busybox `nc` (the static busybox's `wget` crashes looking up the port
/// name through NSS); prints the whole response.
fn http_get(addr: &str, port: &str, timeout_s: u32) -> Vec<String> {
    vec![
        "busybox".into(),
        "sh".into(),
        "-c".into(),
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w {timeout_s} {addr} {port}"),
    ]
}

async fn get(
    tp: &TestPlane,
    t: &str,
    id: &str,
    addr: &str,
    port: &str,
    timeout_s: u32,
) -> anyhow::Result<(i64, String)> {
    let argv = http_get(addr, port, timeout_s);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    sh(tp, t, id, &argv).await
}

/// Runs `argv` in the sandbox; returns (exit code, stdout + stderr).
async fn sh(tp: &TestPlane, t: &str, id: &str, argv: &[&str]) -> anyhow::Result<(i64, String)> {
    let (status, v) = tp.exec(t, id, argv).await?;
    anyhow::ensure!(status == 200, "exec {argv:?} answered {status}: {v}");
    let out = format!(
        "{}{}",
        v["stdout"].as_str().unwrap_or(""),
        v["stderr"].as_str().unwrap_or("")
    );
    if v["exit_code"].is_null() {
        return Ok((-1, format!("no exit code: {v}")));
    }
    Ok((v["exit_code"].as_i64().unwrap_or(-1), out))
}

async fn egress_plane() -> anyhow::Result<(TestPlane, NetworkConfig)> {
    let net = test_network();
    let tp = TestPlane::start_config(TestConfig {
        network: Some(net.clone()),
        ..TestConfig::default()
    })
    .await?;
    Ok((tp, net))
}

async fn running(tp: &TestPlane, t: &str, network: &str) -> anyhow::Result<(String, Value)> {
    let sb = tp
        .create(t, json!({"image": images::BUSYBOX, "network": network}))
        .await?;
    assert_eq!(sb["network"], network);
    let id = id_of(&sb);
    let v = tp
        .wait_state(t, &id, Duration::from_secs(20), |s| s != "creating")
        .await?;
    anyhow::ensure!(v["state"] == "running", "sandbox did not start: {v}");
    Ok((id, v))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// An "internet" for the test: a network namespace joined to the host by a veth pair
/// (198.18.N.1 host side, 198.18.N.2 and 198.18.N.10 inside), with a TCP server on port 8080
/// inside that answers an HTTP 200 and records each client's address. Removed on drop.
struct Upstream {
    ns: String,
    host_veth: String,
    near: Ipv4Addr,
    far: Ipv4Addr,
    denied: Ipv4Addr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> anyhow::Result<Self> {
        let pid = std::process::id();
        let n = (pid % 250) as u8;
        let ns = format!("hgtup{pid}");
        let host_veth = format!("hgu{pid}a");
        let peer = format!("hgu{pid}b");
        let (near, far, denied) = (
            Ipv4Addr::new(198, 18, n, 1),
            Ipv4Addr::new(198, 18, n, 2),
            Ipv4Addr::new(198, 18, n, 10),
        );
        let up = Self {
            ns: ns.clone(),
            host_veth: host_veth.clone(),
            near,
            far,
            denied,
            peers: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns])?;
        ip(&["addr", "add", &format!("{near}/30"), "dev", &host_veth])?;
        ip(&["link", "set", &host_veth, "up"])?;
        ip(&[
            "route",
            "add",
            &format!("{denied}/32"),
            "via",
            &far.to_string(),
        ])?;
        ip(&["-n", &ns, "addr", "add", &format!("{far}/30"), "dev", &peer])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{denied}/32"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", &ns, "link", "set", &peer, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;

        // The server thread lives in the namespace (setns on its own thread only).
        let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (peers, stop) = (Arc::clone(&up.peers), Arc::clone(&up.stop));
        std::thread::spawn(move || {
            let bound = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
                .and_then(|()| TcpListener::bind("0.0.0.0:8080"))
                .and_then(|l| l.set_nonblocking(true).map(|()| l));
            let listener = match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        use std::io::{Read, Write};
                        peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = conn.read(&mut buf);
                        let _ =
                            conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nupstream");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))??;
        Ok(up)
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Egress: eth0 with a leased address and a default route; the upstream answers and sees
/// the node's address (masquerade); denied ranges, the node itself and other sandboxes are
/// unreachable; a `none` sandbox has only `lo`; stop and destroy leave nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn egress_reaches_upstream_masqueraded_and_nothing_else() -> anyhow::Result<()> {
    let mut net = test_network();
    let upstream = Upstream::start()?;
    net.deny
        .push(format!("{}/29", Ipv4Addr::from(u32::from(upstream.denied) & !7)).parse()?);
    let tp = TestPlane::start_config(TestConfig {
        network: Some(net.clone()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let (a, va) = running(&tp, &t, "egress").await?;
    let (b, vb) = running(&tp, &t, "egress").await?;
    let (c, vc) = running(&tp, &t, "none").await?;
    let addr_a: Ipv4Addr = va["address"].as_str().unwrap_or("").parse()?;
    let addr_b: Ipv4Addr = vb["address"].as_str().unwrap_or("").parse()?;
    assert!(net.subnet.contains(&addr_a) && net.subnet.contains(&addr_b));
    assert_ne!(addr_a, addr_b);
    assert!(vc.get("address").is_none(), "{vc}");

    // eth0 and the default route.
    let (code, out) = sh(
        &tp,
        &t,
        &a,
        &["busybox", "ip", "-4", "addr", "show", "eth0"],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{addr_a}/{}", net.subnet.prefix_len())),
        "{out}"
    );
    let (_, routes) = sh(&tp, &t, &a, &["busybox", "ip", "route"]).await?;
    assert!(
        routes.contains(&format!("default via {}", net.gateway())),
        "{routes}"
    );
    let (_, resolv) = sh(&tp, &t, &a, &["busybox", "cat", "/etc/resolv.conf"]).await?;
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    let (_, hosts) = sh(&tp, &t, &a, &["busybox", "cat", "/etc/hosts"]).await?;
    assert!(hosts.contains("localhost"), "{hosts}");

    // Out to the "internet": answered, and the server sees the node's address, not the
    // sandbox's.
    let far = upstream.far.to_string();
    let (code, out) = get(&tp, &t, &a, &far, "8080", 5).await?;
    assert!(code == 0 && out.ends_with("upstream"), "{code} {out}");
    let peers = upstream.peers();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| p.ip() == upstream.near),
        "masqueraded to the host's address: {peers:?}"
    );

    // A denied range is not reachable (the same server answers there for the host).
    let (code, out) = get(&tp, &t, &a, &upstream.denied.to_string(), "8080", 2).await?;
    assert!(
        !out.contains("upstream"),
        "denied range reached: {code} {out}"
    );

    // The node itself: a listener on the bridge's gateway address is not reachable...
    let gw_listener = tokio::net::TcpListener::bind((net.gateway(), 0)).await?;
    let gw_port = gw_listener.local_addr()?.port().to_string();
    let (code, _) = sh(
        &tp,
        &t,
        &a,
        &[
            "busybox",
            "nc",
            "-w",
            "2",
            &net.gateway().to_string(),
            &gw_port,
        ],
    )
    .await?;
    assert_ne!(code, 0, "sandbox reached the host on the gateway address");
    // ...nor is the host's address on another interface.
    let (code, _) = sh(
        &tp,
        &t,
        &a,
        &[
            "busybox",
            "nc",
            "-w",
            "2",
            &upstream.near.to_string(),
            &gw_port,
        ],
    )
    .await?;
    assert_ne!(code, 0, "sandbox reached the host's upstream address");

    // Another sandbox: B listens, A cannot connect; the host can (so B was listening).
    let (code, out) = sh(
        &tp,
        &t,
        &b,
        &[
            "busybox",
            "sh",
            "-c",
            "busybox nc -l -p 9000 >/dev/null 2>&1 </dev/null & echo started",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, _) = sh(
        &tp,
        &t,
        &a,
        &["busybox", "nc", "-w", "2", &addr_b.to_string(), "9000"],
    )
    .await?;
    assert_ne!(code, 0, "sandbox A reached sandbox B");
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((addr_b, 9000)),
    )
    .await??;

    // A none sandbox has only loopback and reaches nothing.
    let (_, links) = sh(&tp, &t, &c, &["busybox", "ip", "-o", "link"]).await?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(names, ["lo"], "{links}");
    let (_, out) = get(&tp, &t, &c, &far, "8080", 2).await?;
    assert!(!out.contains("upstream"), "{out}");

    // Stop releases the network; start brings it back.
    let dir_a = tp.data.path().join("sandboxes").join(&a);
    assert!(dir_a.join("net/lease").is_file());
    assert!(link_exists(&veth_name(a.parse()?)));
    let (status, _) = tp
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/sandboxes/{a}/stop"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    tp.wait_state(&t, &a, Duration::from_secs(20), |s| s == "stopped")
        .await?;
    assert!(!link_exists(&veth_name(a.parse()?)), "veth removed at stop");
    assert!(
        !dir_a.join("net").exists(),
        "netns, lease and files removed at stop"
    );
    let (status, _) = tp
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/sandboxes/{a}/start"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    let v = tp
        .wait_state(&t, &a, Duration::from_secs(20), |s| s == "running")
        .await?;
    assert!(v["address"].is_string(), "{v}");
    let (code, out) = get(&tp, &t, &a, &far, "8080", 5).await?;
    assert!(code == 0 && out.ends_with("upstream"), "{code} {out}");

    // Destroy leaves nothing.
    for id in [&a, &b] {
        let (status, _) = tp
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/sandboxes/{id}"),
                Some(&t),
                None,
            )
            .await?;
        assert_eq!(status, 202);
        tp.wait_state(&t, id, Duration::from_secs(20), |s| s == "destroyed")
            .await?;
        assert!(!link_exists(&veth_name(id.parse()?)));
        assert!(!tp.data.path().join("sandboxes").join(id).exists());
        assert_eq!(
            tp.plane
                .state
                .sandboxes
                .node()
                .driver()
                .network_address(id.parse()?),
            None
        );
    }
    drop(gw_listener);
    tp.shutdown().await
}

/// Ten egress sandboxes started at once get ten different addresses, recorded in lease
/// files that a fresh start of the control plane reads back.
#[tokio::test(flavor = "multi_thread")]
async fn leases_are_unique_across_concurrent_starts_and_survive_a_restart() -> anyhow::Result<()> {
    let (tp, net) = egress_plane().await?;
    let t = tp.admin_token.clone();
    let tp = Arc::new(tp);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (tp, t) = (Arc::clone(&tp), t.clone());
        tasks.push(tokio::spawn(
            async move { running(&tp, &t, "egress").await },
        ));
    }
    let mut seen = Vec::new();
    for task in tasks {
        let (id, v) = task.await??;
        let addr: Ipv4Addr = v["address"].as_str().unwrap_or("").parse()?;
        assert!(net.subnet.contains(&addr) && addr != net.gateway());
        seen.push((id, addr));
    }
    let mut addrs: Vec<Ipv4Addr> = seen.iter().map(|(_, a)| *a).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 10, "{seen:?}");

    // What a restarted control plane reads back from the lease files.
    let state_dir = tp.data.path().join("sandboxes");
    let again = NodeNetwork::new(net.clone(), &state_dir, Duration::from_secs(5))?;
    for (id, addr) in &seen {
        assert_eq!(again.address(id.parse()?), Some(*addr));
        // And the sandbox really has it.
        let (_, out) = sh(
            &tp,
            &t,
            id,
            &["busybox", "ip", "-4", "addr", "show", "eth0"],
        )
        .await?;
        assert!(out.contains(&addr.to_string()), "{out}");
    }
    let tp = Arc::into_inner(tp).ok_or_else(|| anyhow::anyhow!("plane still shared"))?;
    tp.shutdown().await
}

/// The reconciler removes network objects of sandboxes with no record: a sandbox directory
/// with its namespace and veth, and a veth on the bridge whose directory is already gone.
#[tokio::test(flavor = "multi_thread")]
async fn reconciler_removes_orphan_veths_and_namespaces() -> anyhow::Result<()> {
    let (tp, net) = egress_plane().await?;
    let t = tp.admin_token.clone();
    let (kept, _) = running(&tp, &t, "egress").await?;
    let node = tp.plane.state.sandboxes.node();
    let AnyDriver::Runc(runc) = node.driver();
    let network = runc
        .network()
        .ok_or_else(|| anyhow::anyhow!("no network"))?;

    // Orphan 1: a full attachment (dir, lease, netns, veth) with no record.
    let orphan: hangar_core::SandboxId = hangar_core::SandboxId::from_uuid(uuid::Uuid::now_v7());
    let orphan_dir = runc.sandbox_dir(orphan);
    let att = network.attach(orphan, &orphan_dir).await?;
    assert!(att.netns.exists() && link_exists(&veth_name(orphan)));

    // Orphan 2: a veth on the bridge labelled with a sandbox that has no directory.
    let ghost = hangar_core::SandboxId::from_uuid(uuid::Uuid::now_v7());
    let ghost_veth = veth_name(ghost);
    let ghost_peer = format!("hgp{}", &ghost_veth[3..]);
    ip(&[
        "link",
        "add",
        &ghost_veth,
        "type",
        "veth",
        "peer",
        "name",
        &ghost_peer,
    ])?;
    ip(&[
        "link",
        "set",
        &ghost_veth,
        "master",
        &net.bridge,
        "alias",
        &ghost.to_string(),
    ])?;

    let report = tp.plane.state.sandboxes.reconcile_once().await?;
    for id in [orphan, ghost] {
        assert!(
            report.orphans_removed.contains(&id.to_string()),
            "{report:?}"
        );
        assert!(!link_exists(&veth_name(id)), "veth of {id} left behind");
    }
    assert!(!link_exists(&ghost_peer));
    assert!(
        !orphan_dir.exists(),
        "orphan directory (with its netns mount) removed"
    );
    assert_eq!(network.address(orphan), None, "lease freed");
    // The live sandbox is untouched.
    assert!(link_exists(&veth_name(kept.parse()?)));
    let again = wait_until(
        Duration::from_secs(5),
        "kept sandbox still running",
        || async {
            let v = tp.get(&t, &kept).await?;
            Ok((v["state"] == "running").then_some(v))
        },
    )
    .await?;
    assert!(again["address"].is_string());
    tp.shutdown().await
}

/// Bad or unavailable network policies are refused as problem+json, nothing created.
#[tokio::test(flavor = "multi_thread")]
async fn network_policy_is_validated() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let (status, body) = tp
        .request(
            reqwest::Method::POST,
            "/api/v1/sandboxes",
            Some(&t),
            Some(json!({"image": images::BUSYBOX, "network": "open"})),
        )
        .await?;
    assert!(status == 400 || status == 422, "{status} {body}");
    // This plane has no sandbox network: egress is refused, none is the default.
    let (status, body) = tp
        .request(
            reqwest::Method::POST,
            "/api/v1/sandboxes",
            Some(&t),
            Some(json!({"image": images::BUSYBOX, "network": "egress"})),
        )
        .await?;
    assert_eq!(status, 422, "{body}");
    let (_, list) = tp
        .request(reqwest::Method::GET, "/api/v1/sandboxes", Some(&t), None)
        .await?;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let sb = tp.create(&t, json!({"image": images::BUSYBOX})).await?;
    assert_eq!(sb["network"], "none");
    tp.shutdown().await
}
