//! An IP camera for the tests: `tests/rtsp_server.py`, GStreamer's RTSP server
//! on loopback, streaming a folder of frames with digest authentication.
#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The user and password the test camera asks for.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "Lop6A1-camera";

/// The Python with GStreamer's `gi` bindings: Debian's (python3-gi), whatever
/// else comes first on the PATH.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A running RTSP server; killed when dropped.
pub struct RtspServer {
    child: Child,
    pub port: u16,
}

impl RtspServer {
    /// Starts the server on `port`, streaming `frames` (`frame000.jpg`, ...)
    /// encoded as `codec` (`h264`, `h265` or `vp8`) behind [`USER`] and
    /// [`PASSWORD`]; returns once it says it is ready.
    pub fn start(port: u16, frames: &Path, codec: &str) -> RtspServer {
        Self::start_with(port, frames, codec, &[])
    }

    /// [`RtspServer::start`] with more of the server's options, such as `--width 1920`.
    pub fn start_with(port: u16, frames: &Path, codec: &str, options: &[&str]) -> RtspServer {
        // Found from the package's directory, so the benches can use this file too.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rtsp_server.py");
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(script)
            .arg(port.to_string())
            .arg(frames)
            .args(["--codec", codec, "--user", USER, "--password", PASSWORD])
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "run tests/rtsp_server.py with /usr/bin/python3 (make test installs python3-gi)",
            );
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!("the RTSP server on port {port} did not say it was ready within 30 s");
        }
        RtspServer { child, port }
    }

    /// The stream's URL with `password`.
    pub fn url_with(&self, password: &str) -> String {
        format!("rtsp://{USER}:{password}@127.0.0.1:{}/stream", self.port)
    }

    /// The stream's URL with the right password.
    pub fn url(&self) -> String {
        self.url_with(PASSWORD)
    }

    /// Kills the server by its process ID, as a camera loses power, and waits for it to end.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // SIGKILL to the server's own process ID: nothing else is touched.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A folder of JPEG frames in `dir`, named as the server plays them, from
/// the shared test faces at `photos` (relative to the faces folder); PNGs are
/// converted to JPEG.
pub fn frames_of(dir: &Path, name: &str, faces: &Path, photos: &[&str]) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for (index, photo) in photos.iter().enumerate() {
        let image = image::open(faces.join(photo)).unwrap().into_rgb8();
        image
            .save_with_format(
                folder.join(format!("frame{index:03}.jpg")),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
    }
    folder
}
