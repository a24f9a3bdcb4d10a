//! ONVIF end to end: `camera discover` finds a camera by WS-Discovery in a
//! network namespace of the test's own and reads its profiles over SOAP with
//! the WS-Security digest; the frame-rate limit is lowered on a camera that
//! checks what it is sent. The camera is `tests/onvif_camera.py`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{agent_binary, repo_root};
use firmware_agent::attendance::onvif::{
    Credentials, FrameRateChange, OnvifError, StreamChoice, limit_frame_rate,
};
use serde_json::Value;

const PASSWORD: &str = "mật-khẩu 6A1";
const ENDPOINT: &str = "urn:uuid:6a1c0a3e-0000-4000-8000-00000000cafe";

fn camera_script() -> String {
    repo_root()
        .join("tests/onvif_camera.py")
        .display()
        .to_string()
}

/// Runs `script` as root of a new network namespace holding only loopback
/// and a bridge `cam0` (10.77.0.1/24) with a multicast route, after starting
/// the fake camera on it; `$bin` is the agent, `$dir` the test's directory
/// and `$camera` the camera's process, stopped when the script ends.
fn in_own_network(dir: &Path, camera_args: &str, script: &str) -> String {
    let full = format!(
        "set -e\nip link set lo up\nip link add cam0 type bridge\nip link set cam0 up\n\
         ip addr add 10.77.0.1/24 dev cam0\nip route add 239.0.0.0/8 dev cam0\n\
         bin='{bin}'; dir='{dir}'\n\
         : >\"$dir/camera.out\"\n\
         /usr/bin/python3 '{camera}' --interface 10.77.0.1 --password '{PASSWORD}' --record \"$dir/record.jsonl\" {camera_args} >\"$dir/camera.out\" 2>\"$dir/camera.err\" & camera=$!\n\
         trap 'kill $camera 2>/dev/null' EXIT\n\
         timeout 10 grep -m1 -q ready <(tail -n +1 -f \"$dir/camera.out\") || {{ echo 'camera did not start'; cat \"$dir/camera.err\"; exit 1; }}\n\
         set +e\n{script}\nexit 0\n",
        bin = agent_binary().display(),
        dir = dir.display(),
        camera = camera_script(),
    );
    let output = Command::new("unshare")
        .args(["--map-root-user", "--net", "bash", "-c", &full])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn records(dir: &Path, event: &str) -> Vec<Value> {
    read(&dir.join("record.jsonl"))
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["event"] == event)
        .collect()
}

#[test]
fn discover_lists_the_camera_with_its_profiles_and_skips_hostile_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let text = in_own_network(
        path,
        "--hostile",
        &format!(
            "\"$bin\" camera discover --json --verbose --wait 1 --user admin --password '{PASSWORD}' >\"$dir/found.json\" 2>\"$dir/found.log\"; echo \"found $?\"\n\
             \"$bin\" camera discover --wait 1 --user admin --password wrong >\"$dir/refused.txt\" 2>&1; echo \"refused $?\"\n\
             \"$bin\" camera discover --interface eth9 --wait 1 >\"$dir/unknown.txt\" 2>&1; echo \"unknown $?\""
        ),
    );
    assert!(
        text.contains("found 0\n"),
        "{text}{}",
        read(&path.join("found.log"))
    );
    let found: Value = serde_json::from_str(&read(&path.join("found.json"))).unwrap();
    let cameras = found.as_array().unwrap();
    // The camera answered twice and sent four hostile answers: one camera is listed.
    assert_eq!(cameras.len(), 1, "{found:#}");
    let camera = &cameras[0];
    assert_eq!(camera["endpoint"], ENDPOINT);
    assert_eq!(camera["name"], "Camera Lớp 6A1");
    assert_eq!(camera["hardware"], "DS-2CD2143G2");
    assert_eq!(camera["credentials_refused"], false);
    let profiles: Vec<(String, u64, u64, u64, String, String)> = camera["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|profile| {
            (
                profile["name"].as_str().unwrap().to_owned(),
                profile["width"].as_u64().unwrap(),
                profile["height"].as_u64().unwrap(),
                profile["frame_rate"].as_u64().unwrap(),
                profile["encoding"].as_str().unwrap().to_owned(),
                profile["stream_url"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let profile = |name: &str, width, height, fps, codec: &str, path: &str| {
        (
            name.to_owned(),
            width,
            height,
            fps,
            codec.to_owned(),
            format!("rtsp://127.0.0.1:554/Streaming/Channels/{path}"),
        )
    };
    assert_eq!(
        profiles,
        vec![
            profile("mainStream", 1920, 1080, 25, "H264", "101"),
            profile("subStream", 640, 360, 15, "H265", "102"),
        ]
    );
    let log = read(&path.join("found.log"));
    for skipped in [
        "over 16384 bytes; skipped",
        "XML with DTD",
        "skipped: not UTF-8",
        "answers another probe",
    ] {
        assert!(log.contains(skipped), "no `{skipped}` in:\n{log}");
    }
    // The probe went out on the namespace's own interface alone, with a TTL of 1.
    let sent: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WS-Discovery probe sent"))
        .collect();
    assert_eq!(sent.len(), 1, "{log}");
    assert!(sent[0].contains("interface=cam0"), "{log}");
    let probes = records(path, "probe");
    assert!(!probes.is_empty());
    assert!(probes.iter().all(|probe| probe["ttl"] == 1), "{probes:?}");

    assert!(text.contains("refused 1\n"), "{text}");
    let refused = read(&path.join("refused.txt"));
    assert!(refused.contains("Camera Lớp 6A1"), "{refused}");
    assert!(
        refused.contains("refused the user name and password"),
        "{refused}"
    );
    assert!(!refused.contains("rtsp://"), "{refused}");

    for shown in ["found.json", "found.log", "refused.txt"] {
        assert!(
            !read(&path.join(shown)).contains(PASSWORD),
            "{shown} shows the password"
        );
    }

    assert!(text.contains("unknown 2\n"), "{text}");
    let unknown = read(&path.join("unknown.txt"));
    assert!(unknown.contains("no network interface `eth9`"), "{unknown}");
    assert!(unknown.contains("cam0 (10.77.0.1)"), "{unknown}");
}

#[test]
fn discover_without_a_camera_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    // The camera is stopped first: the segment holds no camera that answers.
    let text = in_own_network(
        path,
        "",
        "kill $camera; wait $camera\n\
         \"$bin\" camera discover --wait 0.5 >\"$dir/none.txt\" 2>&1; echo \"none $?\"",
    );
    assert!(text.contains("none 1\n"), "{text}");
    let none = read(&path.join("none.txt"));
    assert!(
        none.contains("no ONVIF camera answered within 0.5 s"),
        "{none}"
    );
}

/// The fake camera on loopback without discovery; killed when dropped.
struct Camera {
    child: Child,
    device_url: String,
    dir: tempfile::TempDir,
}

impl Camera {
    fn start(extra: &[&str]) -> Camera {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(camera_script())
            .args(["--password", PASSWORD, "--record"])
            .arg(dir.path().join("record.jsonl"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.strip_prefix("ready ").unwrap().trim().to_owned();
        Camera {
            child,
            device_url: format!("http://127.0.0.1:{port}/onvif/device_service"),
            dir,
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin(password: &str) -> Credentials {
    Credentials {
        user: "admin".to_owned(),
        password: password.to_owned(),
    }
}

#[test]
fn the_frame_rate_limit_is_lowered_and_the_rest_of_the_encoder_left_as_it_was() {
    let camera = Camera::start(&[]);
    let now = jiff::Timestamp::now();
    let substream =
        StreamChoice::StreamUrl("rtsp://admin:x@127.0.0.1:554/Streaming/Channels/102".to_owned());
    let change = limit_frame_rate(
        &camera.device_url,
        Some(&admin(PASSWORD)),
        now,
        &substream,
        5,
    )
    .unwrap();
    assert_eq!(change, FrameRateChange::Lowered { from: 15 });
    let sets = records(camera.dir.path(), "set");
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["encoder"], "VideoEncoder_2");
    assert_eq!(sets[0]["force_persistence"], "true");
    let mut expected = sets[0]["original"].as_array().unwrap().clone();
    for element in &mut expected {
        if element[0].as_str().unwrap().ends_with("}FrameRateLimit") {
            element[1] = Value::from("5");
        }
    }
    assert_eq!(sets[0]["sent"].as_array().unwrap(), &expected);

    // Asked again, the camera is already there; nothing more is set.
    let again = limit_frame_rate(
        &camera.device_url,
        Some(&admin(PASSWORD)),
        now,
        &substream,
        5,
    )
    .unwrap();
    assert_eq!(again, FrameRateChange::AlreadyAtMost { current: 5 });
    assert_eq!(records(camera.dir.path(), "set").len(), 1);

    // The main stream, chosen by its token, is its own encoder.
    let main = StreamChoice::Token("Profile_1".to_owned());
    let change = limit_frame_rate(&camera.device_url, Some(&admin(PASSWORD)), now, &main, 5);
    assert_eq!(change.unwrap(), FrameRateChange::Lowered { from: 25 });
}

#[test]
fn a_camera_that_refuses_says_why() {
    let camera = Camera::start(&["--refuse-set"]);
    let now = jiff::Timestamp::now();
    let main = StreamChoice::Token("Profile_1".to_owned());
    let refused = limit_frame_rate(&camera.device_url, Some(&admin(PASSWORD)), now, &main, 5);
    assert!(
        matches!(&refused, Err(OnvifError::Refused { reason, .. }) if reason.contains("cannot be changed")),
        "{refused:?}"
    );
    let wrong = limit_frame_rate(&camera.device_url, Some(&admin("wrong")), now, &main, 5);
    assert!(
        matches!(wrong, Err(OnvifError::CredentialsRefused { .. })),
        "{wrong:?}"
    );
    let unknown = StreamChoice::Token("Profile_9".to_owned());
    let missing = limit_frame_rate(&camera.device_url, Some(&admin(PASSWORD)), now, &unknown, 5);
    assert!(
        matches!(missing, Err(OnvifError::Refused { .. })),
        "{missing:?}"
    );
}
