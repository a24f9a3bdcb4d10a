//! The `[attendance]` section of the room's config: where the models are, how
//! many threads run inference, how sure a match must be, and where frames come from.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::liveness::DEFAULT_MIN_SCORE;
use crate::config::diagnostics::Unlocated;

/// Cosine similarity at or above which a face is the enrolled pupil. Measured on
/// the shared test faces: the same person scored 0.54 to 0.98, different people
/// at most 0.14; 0.35 sits in the middle of that gap.
pub const DEFAULT_THRESHOLD: f32 = 0.35;

/// The back row of a class of forty, seen by a 4K camera above the panel.
pub const DEFAULT_SMALLEST_FACE_PIXELS: u32 = 45;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttendanceConfig {
    /// Whether the camera takes the roll call.
    pub enabled: bool,
    /// The directory holding the face models; empty means `$FIRMWARE_AGENT_MODELS`,
    /// or `/usr/share/firmware-agent/models` when that is unset.
    pub models_dir: PathBuf,
    /// The ONNX Runtime shared library; empty means `$ORT_DYLIB_PATH`, or
    /// `libonnxruntime.so` on the library path when that is unset.
    pub onnxruntime_library: PathBuf,
    /// Inference worker threads (each with its own model sessions).
    pub threads: usize,
    /// Cosine similarity at or above which a face is taken to be the enrolled pupil.
    pub threshold: f32,
    /// The class whose roll the camera takes.
    pub class: String,
    /// Refuses faces the liveness check takes for a photo held up to the camera.
    pub liveness: bool,
    /// The liveness score, from 0 to 1, below which a face is taken for a photo.
    pub liveness_min_score: f32,
    /// Frames a pupil must be recognised in before being marked.
    pub confirm_frames: u32,
    /// Minutes after the roll call opens after which an arriving pupil is late.
    pub late_after_minutes: f64,
    /// Minutes after which the roll call closes and everyone unseen is absent.
    pub window_minutes: f64,
    /// Faces narrower than this many pixels are ignored during the roll call.
    pub min_face_pixels: u32,
    /// The narrowest face, in the frame's pixels, the detector must find: the
    /// back row's. Frames much larger are searched in tiles, which costs time.
    pub smallest_face_pixels: u32,
    /// Minutes without a face on camera after which the room's lights go off
    /// (as automation: a lesson on the timetable or a teacher still wins); 0 never.
    pub empty_room_minutes: f64,
    /// Keeps the photos given to `face enroll` beside the database (for debugging only).
    pub keep_debug_photos: bool,
    pub source: SourceConfig,
}

impl Default for AttendanceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            models_dir: PathBuf::new(),
            onnxruntime_library: PathBuf::new(),
            threads: 1,
            threshold: DEFAULT_THRESHOLD,
            class: String::new(),
            liveness: false,
            liveness_min_score: DEFAULT_MIN_SCORE,
            confirm_frames: 3,
            late_after_minutes: 5.0,
            window_minutes: 15.0,
            min_face_pixels: 32,
            smallest_face_pixels: DEFAULT_SMALLEST_FACE_PIXELS,
            empty_room_minutes: 10.0,
            keep_debug_photos: false,
            source: SourceConfig::default(),
        }
    }
}

/// Where frames come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// `camera`: the V4L2 device index (0 for /dev/video0).
    pub device: u32,
    /// `camera`: the requested resolution.
    pub width: u32,
    pub height: u32,
    /// Frames per second: asked of the camera, or the pace a folder or file is played at.
    pub rate: f64,
    /// `folder`: a directory of JPEG/PNG images, played in name order; `mjpeg_file`: a file of concatenated JPEGs.
    pub path: PathBuf,
    /// `folder` and `mjpeg_file`: start again at the end instead of stopping.
    pub repeat: bool,
    /// `ip_camera`: the MJPEG stream over http:// or https://, such as
    /// `http://user:password@192.168.1.20/video.mjpg` (the password is sent as basic auth and never shown).
    /// `rtsp`: the camera's main stream, such as
    /// `rtsp://user:password@192.168.1.64:554/Streaming/Channels/101` (the password is never shown).
    pub url: String,
    /// `rtsp`: the camera's sub-stream, smaller and cheaper to decode, such as
    /// `rtsp://user:password@192.168.1.64:554/Streaming/Channels/102`.
    pub sub_url: String,
    /// `rtsp`: which of the camera's streams the roll call reads.
    pub stream: CameraStream,
    /// `rtsp`: how the camera sends its packets.
    pub transport: Transport,
    /// RTSP cameras: the most frames a second the camera is asked, through
    /// ONVIF, to send when its stream opens ([`super::onvif::CameraFrameRate`]); 0 leaves it as it is.
    pub onvif_frame_rate: u32,
}

/// Which of an RTSP camera's streams is read.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CameraStream {
    /// `url`: full resolution, what a 4K camera needs to see the back row.
    #[default]
    Main,
    /// `sub_url`: enough for a small room or a camera close to the class.
    Sub,
}

/// How an RTSP camera's packets travel.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Interleaved in the RTSP connection: passes firewalls and NAT, loses nothing.
    #[default]
    Tcp,
    /// Separate UDP packets: less delay, but a busy Wi-Fi loses some.
    Udp,
}

impl SourceConfig {
    /// The URL of the stream `stream` chooses.
    pub fn camera_url(&self) -> &str {
        match self.stream {
            CameraStream::Main => &self.url,
            CameraStream::Sub => &self.sub_url,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Camera,
            device: 0,
            width: 1280,
            height: 720,
            rate: 5.0,
            path: PathBuf::new(),
            repeat: false,
            url: String::new(),
            sub_url: String::new(),
            stream: CameraStream::Main,
            transport: Transport::Tcp,
            onvif_frame_rate: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Camera,
    Folder,
    MjpegFile,
    IpCamera,
    Rtsp,
}

impl AttendanceConfig {
    /// Anchors relative paths at the config file's directory and fills in the
    /// environment's defaults for the models and the runtime library.
    pub fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        if self.models_dir.as_os_str().is_empty() {
            self.models_dir = std::env::var_os("FIRMWARE_AGENT_MODELS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/share/firmware-agent/models"));
        }
        self.models_dir = resolve(&self.models_dir);
        if self.onnxruntime_library.as_os_str().is_empty() {
            self.onnxruntime_library = std::env::var_os("ORT_DYLIB_PATH")
                .map(PathBuf::from)
                .unwrap_or_default();
        } else {
            self.onnxruntime_library = resolve(&self.onnxruntime_library);
        }
        if !self.source.path.as_os_str().is_empty() {
            self.source.path = resolve(&self.source.path);
        }
    }

    /// The rules serde cannot express.
    pub fn problems(&self) -> Vec<Unlocated> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            problems.push(Unlocated {
                key: format!("attendance.{key}"),
                message,
                hint: hint.to_owned(),
            })
        };
        if !(1..=16).contains(&self.threads) {
            problem(
                "threads",
                format!("{} inference threads", self.threads),
                "use 1 to 16; one per spare core",
            );
        }
        if !(0.0..1.0).contains(&self.threshold) || self.threshold <= 0.0 {
            problem(
                "threshold",
                format!("{} is not a similarity between 0 and 1", self.threshold),
                "keep the measured default, 0.35",
            );
        }
        if !(0.0..1.0).contains(&self.liveness_min_score) || self.liveness_min_score <= 0.0 {
            problem(
                "liveness_min_score",
                format!("{} is not a score between 0 and 1", self.liveness_min_score),
                "keep the default, 0.5",
            );
        }
        if self.empty_room_minutes.is_nan() || self.empty_room_minutes < 0.0 {
            problem(
                "empty_room_minutes",
                format!("{} minutes", self.empty_room_minutes),
                "use 10, or 0 to leave the lights alone",
            );
        }
        if !(12..=1000).contains(&self.smallest_face_pixels) {
            problem(
                "smallest_face_pixels",
                format!("{} pixels", self.smallest_face_pixels),
                "use the width of a back-row face in the camera's frame, 12 to 1000: about 45 at 4K, 22 at 1080p",
            );
        }
        if self.confirm_frames == 0 {
            problem(
                "confirm_frames",
                "zero frames".to_owned(),
                "use 2 or more so one odd frame cannot mark a pupil",
            );
        }
        if self.window_minutes.is_nan() || self.window_minutes <= 0.0 {
            problem(
                "window_minutes",
                format!("{} minutes", self.window_minutes),
                "give the roll call a window, such as 15",
            );
        }
        if !(0.0..=self.window_minutes).contains(&self.late_after_minutes) {
            problem(
                "late_after_minutes",
                format!(
                    "{} is outside the window of {} minutes",
                    self.late_after_minutes, self.window_minutes
                ),
                "use a number of minutes between 0 and window_minutes",
            );
        }
        if self.enabled {
            if self.class.is_empty() {
                problem(
                    "class",
                    "no class named".to_owned(),
                    "name the class on roll call, as in the roster, such as `6A1`",
                );
            }
            let source = &self.source;
            if !(source.rate > 0.0 && source.rate <= 60.0) {
                problem(
                    "source.rate",
                    format!("{} frames per second", source.rate),
                    "use 1 to 30 frames per second",
                );
            }
            match source.kind {
                SourceKind::Folder | SourceKind::MjpegFile
                    if source.path.as_os_str().is_empty() =>
                {
                    problem(
                        "source.path",
                        "no path given".to_owned(),
                        "name the folder of images or the MJPEG file to play",
                    )
                }
                SourceKind::IpCamera => {
                    if let Err(reason) = super::source::check_camera_url(&source.url) {
                        problem(
                            "source.url",
                            reason,
                            "give the camera's MJPEG stream, such as `http://user:password@192.168.1.20/video.mjpg`",
                        )
                    }
                }
                SourceKind::Rtsp => {
                    let hint = "give the camera's stream, such as `rtsp://user:password@192.168.1.64:554/Streaming/Channels/101` (Hikvision) or `rtsp://user:password@192.168.1.108:554/cam/realmonitor?channel=1&subtype=0` (Dahua)";
                    if let Err(reason) = super::source::rtsp::check_rtsp_url(&source.url) {
                        problem("source.url", reason, hint)
                    }
                    let sub_stream_given =
                        source.stream == CameraStream::Sub || !source.sub_url.is_empty();
                    if sub_stream_given
                        && let Err(reason) = super::source::rtsp::check_rtsp_url(&source.sub_url)
                    {
                        problem("source.sub_url", reason, hint)
                    }
                }
                _ => {}
            }
        }
        problems
    }
}
