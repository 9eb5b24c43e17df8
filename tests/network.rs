//! Network across the boundary: `net_rr` from the host into a container
//! (bridge) and a VM (bridge, user); no route out of 198.18.0.0/15 from an
//! instance; nothing of a run's links left after it, nor after SIGKILL +
//! `isobench clean`. Every check of links is scoped to this test's run id
//! (other runs may have bridges of their own on this host).

mod common;

use common::*;
use isobench::net::link::Netlink;
use std::path::Path;
use std::time::Duration;

/// The run id of the run whose reports are under `reports`.
fn run_id(reports: &Path) -> String {
    latest(reports)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The host's links named with `run_id`'s tag.
fn links_of(run_id: &str) -> Vec<String> {
    let tag = isobench::net::tag(run_id);
    Netlink::open()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| isobench::net::is_run_link(n, &tag))
        .collect()
}

fn bridge_ready() -> bool {
    is_root() && Path::new("/dev/net/tun").exists() && Netlink::open().is_ok()
}

#[test]
fn net_rr_crosses_container_bridge_and_vm_bridge_and_user() {
    if !require(
        is_root() && bridge_ready(),
        "root, /dev/net/tun and netlink",
    ) {
        return;
    }
    let envs = if vm_ready() {
        "container,vm"
    } else {
        eprintln!("skipped (vm part): QEMU and a guest kernel (scripts/setup.sh installs both)");
        "container"
    };
    let s = Scratch::new("net-rr");
    let scenario = "name = \"netrr\"\nreps = 1\nwarmups = 0\n\
        [[workload]]\nkind = \"net_rr\"\nname = \"rr-bridge\"\nrequests = 200\nconnects = 20\nnetwork = \"bridge\"\n\
        [[workload]]\nkind = \"net_rr\"\nname = \"rr-host-user\"\nrequests = 200\nconnects = 20\n\
        network = { container = \"host\", vm = \"user\" }\n";
    let out = s.run("net.toml", scenario, &["--env", envs]);
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    for env in envs.split(',') {
        for w in ["rr-bridge", "rr-host-user"] {
            let p50 = rows
                .iter()
                .find(|r| r.0 == w && r.1 == env && r.3 == "rr_p50_us")
                .unwrap_or_else(|| panic!("no rr_p50_us for {w} in {env}"));
            assert!(p50.5 > 0.0 && p50.5 < 1e6, "{w} {env}: {p50:?}");
            assert!(
                rows.iter()
                    .any(|r| r.0 == w && r.1 == env && r.3 == "crr_per_s" && r.5 > 0.0),
                "no crr_per_s for {w} in {env}"
            );
        }
        assert!(
            rows.iter()
                .any(|r| r.0 == "rr-bridge" && r.1 == env && r.3 == "net_setup_ms" && r.5 > 0.0),
            "no net_setup_ms for the bridge in {env}"
        );
    }
    let id = run_id(&s.reports());
    assert!(links_of(&id).is_empty(), "links left: {:?}", links_of(&id));
    assert_clean(&s);
}

/// The routes of `/proc/net/route` as (destination, mask). The kernel
/// prints each address as the hex of its bytes read as a little-endian u32.
fn routes(text: &str) -> Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    let addr = |h: &str| {
        u32::from_str_radix(h, 16)
            .ok()
            .map(|v| std::net::Ipv4Addr::from(v.to_le_bytes()))
    };
    text.lines()
        .filter_map(|l| {
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[1] == "Destination" {
                return None;
            }
            Some((addr(f[1])?, addr(f[7])?))
        })
        .collect()
}

#[test]
fn an_instance_has_no_route_outside_the_benchmark_range() {
    if !require(bridge_ready(), "root, /dev/net/tun and netlink") {
        return;
    }
    if !require(Path::new("/bin/bash").exists(), "/bin/bash") {
        return;
    }
    let envs = if vm_ready() {
        "container,vm"
    } else {
        eprintln!("skipped (vm part): QEMU and a guest kernel (scripts/setup.sh installs both)");
        "container"
    };
    let s = Scratch::new("net-route");
    // The routing table, then a connection to TEST-NET-1 (outside the range).
    // (bash builtins only: nothing but bash and its libraries is packed)
    let script = "while read -r l; do echo $l; done < /proc/net/route; echo ROUTES-END; \
        if exec 3<>/dev/tcp/192.0.2.1/80; then echo CONNECTED; fi; echo TRIED";
    let scenario = format!(
        "name = \"route\"\nreps = 1\nwarmups = 0\n[[workload]]\nkind = \"command\"\nname = \"route\"\n\
         argv = [\"bash\", \"-c\", \"{script}\"]\nnetwork = \"bridge\"\n"
    );
    let out = s.run("route.toml", &scenario, &["--env", envs]);
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    for env in envs.split(',') {
        let log = std::fs::read_to_string(run.join(format!("logs/route-{env}-r1.log"))).unwrap();
        let table = log.split("ROUTES-END").next().unwrap();
        let found = routes(table);
        assert!(
            !found.is_empty(),
            "{env}: no route at all (is eth0 up?): {log}"
        );
        for (dest, mask) in &found {
            assert!(!mask.is_unspecified(), "{env}: a default route: {log}");
            assert_eq!(
                u32::from(*dest) & 0xfffe_0000,
                0xc612_0000,
                "{env}: a route outside 198.18.0.0/15: {dest}/{mask}\n{log}"
            );
        }
        assert!(log.contains("TRIED"), "{env}: {log}");
        assert!(
            !log.contains("CONNECTED"),
            "{env}: reached 192.0.2.1: {log}"
        );
        assert!(
            log.contains("Network is unreachable"),
            "{env}: connecting outside the range did not fail with ENETUNREACH: {log}"
        );
    }
    let id = run_id(&s.reports());
    assert!(links_of(&id).is_empty(), "links left: {:?}", links_of(&id));
    assert_clean(&s);
}

#[test]
fn sigkill_then_clean_removes_the_runs_bridge() {
    if !require(bridge_ready(), "root, /dev/net/tun and netlink") {
        return;
    }
    let s = Scratch::new("net-kill");
    let mut child = s.spawn_run(
        "long.toml",
        "name = \"long\"\nreps = 50\nwarmups = 0\n[[workload]]\nkind = \"net_rr\"\n\
         requests = 100000\nconnects = 10\nnetwork = \"bridge\"\n",
        &["--env", "container"],
    );
    // Wait for the run's bridge to appear (its id is its directory's name).
    let id = s.wait_for_run(
        &mut child,
        Duration::from_secs(60),
        "no bridge of the run appeared",
        |id| links_of(id).iter().any(|l| l.starts_with("ib")),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The bridge outlives a SIGKILL (veths go with their namespaces).
    assert!(!links_of(&id).is_empty(), "the bridge went without clean");
    // It forwards nothing toward the host's other interfaces.
    let bridge = format!("ib{}", isobench::net::tag(&id));
    let forwarding =
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding")).unwrap();
    assert_eq!(forwarding.trim(), "0", "{bridge} forwards");
    // A link named like the run's but not marked as isobench's: not its to
    // delete.
    let stranger = format!("iv{}99", isobench::net::tag(&id));
    Netlink::open().unwrap().add_bridge(&stranger).unwrap();
    let out = s.isobench().arg("clean").output().unwrap();
    let still_there = links_of(&id);
    let _ = Netlink::open().unwrap().delete(&stranger);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("ib{}", isobench::net::tag(&id))),
        "clean did not say it removed the bridge: {}",
        text(&out)
    );
    assert_eq!(
        still_there,
        vec![stranger],
        "clean removed an unmarked link, or left one of its own"
    );
    assert!(links_of(&id).is_empty(), "links left: {:?}", links_of(&id));
    assert_clean(&s);
}
