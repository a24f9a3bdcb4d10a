//! Where frames come from, behind one trait: a V4L2 camera, a folder of images
//! or an MJPEG file played at a set pace, an IP camera's MJPEG stream over
//! HTTP(S) or its H.264/H.265 stream over RTSP.
//!
//! # Design
//! - Sources are blocking and are opened and read on their own thread (a camera
//!   handle cannot move between threads): a camera read waits for
//!   the next frame, a file source waits out its pace. Nothing here runs on the
//!   async runtime.
//! - A source reports failure as an error, never a panic; whoever drives it
//!   reopens it with back-off (`attendance::service`) and says so in /healthz.
//! - Frames are handed over as they come, encoded (JPEG from files, IP
//!   cameras and most USB cameras in MJPEG mode) or as pixels; the thread
//!   that reads the source decodes them (`attendance::service`), while the
//!   inference workers are busy with the frame before.
//! - The camera path is thin: `nokhwa` opens the device with the configured
//!   resolution and rate and hands over each frame as it comes.
//! - An IP camera is read through `ureq`, blocking like the rest: its stream is
//!   cut into frames by the multipart boundary and each part's Content-Length,
//!   which the camera states, rather than by guessing at JPEG markers that an
//!   EXIF thumbnail inside a frame repeats. A camera silent for `READ_TIMEOUT`
//!   is an error, so the back-off reopens it instead of waiting for ever.
//! - An RTSP camera is received and decoded by GStreamer (`rtsp`); a source
//!   is told what is wanted of it (`Need`), so that one whose decoding is
//!   costly decodes only keyframes while frames are wanted now and then.

mod folder;
mod mjpeg_file;
mod mjpeg_http;
pub mod rtsp;
mod v4l2;

use std::time::{Duration, Instant};

use image::RgbImage;

use super::config::{SourceConfig, SourceKind};
use folder::FolderSource;
use mjpeg_file::MjpegFileSource;
use mjpeg_http::IpCameraSource;
pub use mjpeg_http::{check_camera_url, without_password};
use rtsp::RtspSource;
use v4l2::CameraSource;

/// One frame as the source delivers it.
pub enum Frame {
    /// An encoded image (JPEG, PNG, ...), still to be decoded.
    Encoded(Vec<u8>),
    /// Pixels already decoded by the camera driver.
    Rgb(RgbImage),
}

/// Why a source cannot deliver frames, in words for IT staff.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub reason: String,
}

/// How many of its frames the reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every frame the reader takes: the roll call is recognising faces.
    EveryFrame,
    /// One frame now and then: any frame will do, however old its keyframe.
    NowAndThen,
}

/// A supplier of frames.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when a finite source (a file played once) has ended.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// Tells the source how many frames are wanted, so it can spend less on
    /// those that are not. Sources whose frames cost nothing to skip ignore it.
    fn need(&mut self, _need: Need) {}
}

/// Opens the source the config describes, for a reader wanting `need`.
pub fn open(config: &SourceConfig, need: Need) -> Result<Box<dyn FrameSource>, SourceError> {
    let pace = Pace::new(config.rate);
    Ok(match config.kind {
        SourceKind::Folder => Box::new(FolderSource::open(&config.path, config.repeat, pace)?),
        SourceKind::MjpegFile => {
            Box::new(MjpegFileSource::open(&config.path, config.repeat, pace)?)
        }
        SourceKind::IpCamera => Box::new(IpCameraSource::open(&config.url)?),
        SourceKind::Camera => Box::new(CameraSource::open(config)?),
        SourceKind::Rtsp => Box::new(RtspSource::open(
            config.camera_url(),
            config.transport,
            need,
        )?),
    })
}

/// The source as IT staff know it, never with a password: the camera's URL,
/// its device, or the file or folder played.
pub fn name_of(config: &SourceConfig) -> String {
    match config.kind {
        SourceKind::Rtsp => without_password(config.camera_url()),
        SourceKind::IpCamera => without_password(&config.url),
        SourceKind::Camera => format!("/dev/video{}", config.device),
        SourceKind::Folder | SourceKind::MjpegFile => config.path.display().to_string(),
    }
}

/// Keeps a file source to its configured frame rate.
pub(super) struct Pace {
    interval: Duration,
    next: Option<Instant>,
}

impl Pace {
    fn new(rate: f64) -> Pace {
        Pace {
            interval: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            next: None,
        }
    }

    /// Waits until the next frame is due, as a camera would deliver it.
    pub(super) fn wait(&mut self) {
        let now = Instant::now();
        let due = self.next.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        self.next = Some(due.max(now) + self.interval);
    }
}

/// A frame larger than this is not a camera frame: a file is resynchronised
/// past it, a camera's stream refused.
pub(super) const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_missing_folder_or_camera_is_an_error_not_a_crash() {
        let config = SourceConfig {
            kind: SourceKind::Folder,
            path: "/nonexistent/frames".into(),
            ..SourceConfig::default()
        };
        let err = open(&config, Need::EveryFrame).err().expect("must fail");
        assert!(
            err.to_string()
                .contains("/nonexistent/frames: cannot read the folder"),
            "{err}"
        );
        let camera = SourceConfig {
            kind: SourceKind::Camera,
            device: 97,
            ..SourceConfig::default()
        };
        assert!(open(&camera, Need::EveryFrame).is_err());
        let ip = SourceConfig {
            kind: SourceKind::IpCamera,
            url: format!("http://127.0.0.1:{}/video", closed_port()),
            ..SourceConfig::default()
        };
        let err = open(&ip, Need::EveryFrame)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("cannot connect"), "{err}");
    }

    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
