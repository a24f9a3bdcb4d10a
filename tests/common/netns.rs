//! A room's own network for tests: a network namespace joined to the host by
//! a veth pair, so that a room inside can dial the hub on the host side while
//! nothing on the host can reach the room. Shared by the agent's dial-out
//! tests and the province hub's dial-in tests; needs root and `ip` (iproute2).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace joined to the host by a veth pair: the hub's address
/// on the host side, the room's in the namespace. The namespace's loopback,
/// where the room's own ports are, cannot be reached from the host.
pub struct Namespace {
    pub name: String,
    host_link: String,
    pub hub_ip: Ipv4Addr,
    pub room_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Namespace {
    pub fn new() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("dialout-{pid}-{n}");
        let host_link = format!("dh{}x{n}", pid % 100_000);
        let room_link = format!("dr{}x{n}", pid % 100_000);
        let (block, slot) = ((pid % 250) as u8, ((n % 64) * 4) as u8);
        let hub_ip = Ipv4Addr::new(10, 231, block, slot + 1);
        let room_ip = Ipv4Addr::new(10, 231, block, slot + 2);
        ip(&["netns", "add", &name]);
        let namespace = Namespace {
            name,
            host_link,
            hub_ip,
            room_ip,
        };
        ip(&[
            "link",
            "add",
            &namespace.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &room_link,
            "netns",
            &namespace.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{hub_ip}/30"),
            "dev",
            &namespace.host_link,
        ]);
        ip(&["link", "set", &namespace.host_link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", namespace.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{room_ip}/30"), "dev", &room_link]);
        inside(&["link", "set", &room_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        namespace
    }

    /// Runs `work` on a thread inside the namespace: its sockets are the room's.
    pub fn inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = std::fs::File::open(&path).unwrap();
                    // SAFETY: setns(2) on a descriptor this thread opened; it moves only this thread.
                    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns into {path}");
                    work()
                })
                .join()
                .unwrap()
        })
    }

    /// The hub's address on the host side, on `port`.
    pub fn hub_address(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.hub_ip), port)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
