//! The hub's systemd integration as a Debian admin installs it: its units
//! pass `systemd-analyze verify` against the binary under test, and its
//! sysusers and tmpfiles snippets apply to an empty root. (What the stick's
//! handler does is tested in `usb.rs`, on a mounted stick.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `unit` from `systemd/`, saved as `saved_as` in `dir` with each path of
/// `replacements` swapped for the file under test, then verified.
fn verify(unit: &str, saved_as: &str, replacements: &[(&str, PathBuf)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(repo_file(&format!("systemd/{unit}"))).unwrap();
    for (installed, here) in replacements {
        assert!(text.contains(installed), "{unit} runs {installed}");
        text = text.replace(installed, here.to_str().unwrap());
    }
    let path = dir.path().join(saved_as);
    std::fs::write(&path, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package; make test installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{unit}: {stderr}");
    assert!(stderr.is_empty(), "{unit} warnings: {stderr}");
}

#[test]
fn the_hub_unit_and_the_stick_unit_pass_systemd_analyze_verify() {
    let hub = PathBuf::from(env!("CARGO_BIN_EXE_province-hub"));
    verify(
        "province-hub.service",
        "province-hub.service",
        &[("/usr/bin/province-hub", hub)],
    );
    verify(
        "province-hub-usb@.service",
        "province-hub-usb@sdb1.service",
        &[(
            "/usr/lib/province-hub/usb-stick",
            repo_file("systemd/province-hub-usb-stick"),
        )],
    );
}

#[test]
fn sysusers_and_tmpfiles_snippets_make_the_hub_user_and_its_config_directory() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    let status = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_file("systemd/province-hub.sysusers"))
        .status()
        .unwrap();
    assert!(status.success());
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(passwd.contains("province-hub:x:"), "{passwd}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group.lines().any(|line| line.starts_with("province-hub:")),
        "{group}"
    );

    let status = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(repo_file("systemd/province-hub.tmpfiles"))
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(root.path().join("etc/province-hub"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o750,
        "the config (naming the keys) is the hub's only"
    );
}
