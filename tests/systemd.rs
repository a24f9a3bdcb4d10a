//! The systemd integration: the unit verifies, the sysusers and tmpfiles
//! snippets apply, and the agent speaks the notify protocol (READY, WATCHDOG,
//! STOPPING) on the socket systemd would hand it.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::{Room, RunningAgent, repo_root};

fn tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|path| path.exists())
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed here; nothing to verify with");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_root().join("systemd/firmware-agent.service")).unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = unit.replace(
        "/usr/bin/firmware-agent",
        common::agent_binary().to_str().unwrap(),
    );
    let path = dir.path().join("firmware-agent.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "warnings: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_kiosk_user_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed here; nothing to verify with");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit =
        std::fs::read_to_string(repo_root().join("systemd/firmware-agent-kiosk.service")).unwrap();
    // verify checks that the executables exist; the panel's browser may not be installed here.
    let unit = unit.replace("/usr/bin/chromium", "/bin/true");
    let path = dir.path().join("firmware-agent-kiosk.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        !warnings.contains("firmware-agent-kiosk.service:"),
        "warnings: {warnings}"
    );
}

#[test]
fn sysusers_and_tmpfiles_snippets_apply_to_an_empty_root() {
    let (Some(sysusers), Some(tmpfiles)) = (tool("systemd-sysusers"), tool("systemd-tmpfiles"))
    else {
        eprintln!("systemd-sysusers or systemd-tmpfiles is not installed here");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    for (name, content) in [
        ("passwd", "root:x:0:0::/root:/bin/sh\n"),
        ("group", "root:x:0:\nvideo:x:44:\ndialout:x:20:\n"),
    ] {
        std::fs::write(root.path().join("etc").join(name), content).unwrap();
    }
    let status = Command::new(sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_root().join("systemd/firmware-agent.sysusers"))
        .status()
        .unwrap();
    assert!(status.success());
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("firmware-agent:x:") && passwd.contains(":/var/lib/firmware-agent:"),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("video:") && l.ends_with("firmware-agent")),
        "{group}"
    );
    assert!(group.lines().any(|l| l.starts_with("gpio:")), "{group}");

    let status = Command::new(tmpfiles)
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(repo_root().join("systemd/firmware-agent.tmpfiles"))
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join("var/lib/firmware-agent"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_agent_notifies_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let room = Room::new("");
    let mut agent = RunningAgent::spawn(
        &room.config_path,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    // No WATCHDOG_PID: as sd_watchdog_enabled(3) says, the watchdog is then for this process.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let n = socket.recv(&mut buf).expect("the agent notifies");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    let ping = seen.iter().position(|m| m.contains("WATCHDOG=1")).unwrap();
    assert!(
        ready < ping,
        "READY comes before the first watchdog ping: {seen:?}"
    );
    agent.signal(libc::SIGTERM);
    loop {
        let n = socket
            .recv(&mut buf)
            .expect("the agent says it is stopping");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}
