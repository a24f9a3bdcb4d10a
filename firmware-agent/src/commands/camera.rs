//! `firmware-agent camera ...`: IP cameras, as IT staff set one up for the roll call.
//!
//! `camera probe URL` opens the camera exactly as the daemon would (the same
//! frame sources, so a camera that probes well is one the roll call can
//! read) and prints what it sends; `camera discover` ([`discover`]) finds the
//! ONVIF cameras on the room's network and lists their streams.

pub mod discover;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::attendance::config::{SourceConfig, SourceKind, Transport};
use crate::attendance::pipeline;
use crate::attendance::source::rtsp::{RtspSource, StreamInfo, check_rtsp_url};
use crate::attendance::source::{
    self, Frame, FrameSource, Need, check_camera_url, without_password,
};
use crate::exit::Exit;

/// How long frames are counted to measure a rate the camera does not state.
const RATE_SAMPLE: Duration = Duration::from_secs(2);

/// Connects to the camera at `url`, decodes a frame, prints what the camera
/// sends and saves the frame to `snapshot` if asked.
pub fn probe(url: &str, snapshot: Option<&Path>, transport: Transport) -> Exit {
    let format = match snapshot.map(snapshot_format).transpose() {
        Ok(format) => format,
        Err(message) => {
            eprintln!("{message}");
            return Exit::InvalidInput;
        }
    };
    let rtsp = url.starts_with("rtsp://");
    let checked = if rtsp {
        check_rtsp_url(url)
    } else {
        check_camera_url(url)
    };
    if let Err(reason) = checked {
        eprintln!(
            "{reason}; give the camera's stream, such as `rtsp://user:password@192.168.1.64:554/Streaming/Channels/101` or `http://user:password@192.168.1.20/video.mjpg`"
        );
        return Exit::InvalidInput;
    }
    let probed = if rtsp {
        probe_rtsp(url, transport)
    } else {
        probe_mjpeg(url)
    };
    let (info, frame) = match probed {
        Ok(probed) => probed,
        Err(err) => {
            eprintln!("{err}");
            return Exit::Failure;
        }
    };
    println!("camera: {}", without_password(url));
    println!("codec: {} (decoder {})", info.codec, info.decoder);
    println!("resolution: {}x{}", info.width, info.height);
    match info.frame_rate {
        Some(rate) => println!("frame rate: {rate:.1} frames per second"),
        None => println!(
            "frame rate: unknown (fewer than two frames in {} s)",
            RATE_SAMPLE.as_secs()
        ),
    }
    println!(
        "decoded frame: {}x{}, {} bytes of RGB",
        frame.width(),
        frame.height(),
        frame.as_raw().len()
    );
    if let (Some(path), Some(format)) = (snapshot, format) {
        if let Err(err) = save_private(&frame, path, format) {
            eprintln!("cannot save the snapshot to {}: {err}", path.display());
            return Exit::Failure;
        }
        println!("snapshot: {}", path.display());
    }
    Exit::Success
}

fn probe_rtsp(
    url: &str,
    transport: Transport,
) -> Result<(StreamInfo, RgbImage), source::SourceError> {
    let mut camera = RtspSource::open(url, transport, Need::EveryFrame)?;
    let first = rgb(&mut camera, url)?;
    let mut info = camera.info();
    if info.frame_rate.is_none() {
        info.frame_rate = measured_rate(&mut camera);
    }
    Ok((info, first))
}

fn probe_mjpeg(url: &str) -> Result<(StreamInfo, RgbImage), source::SourceError> {
    let config = SourceConfig {
        kind: SourceKind::IpCamera,
        url: url.to_owned(),
        ..SourceConfig::default()
    };
    let mut camera = source::open(&config, Need::EveryFrame)?;
    let first = rgb(camera.as_mut(), url)?;
    let frame_rate = measured_rate(camera.as_mut());
    let info = StreamInfo {
        codec: "MJPEG".to_owned(),
        decoder: "image".to_owned(),
        width: first.width(),
        height: first.height(),
        frame_rate,
    };
    Ok((info, first))
}

/// The next frame of the camera at `url`, decoded.
fn rgb(camera: &mut dyn FrameSource, url: &str) -> Result<RgbImage, source::SourceError> {
    let fail = |reason: String| source::SourceError {
        source_name: without_password(url),
        reason,
    };
    match camera.next_frame()? {
        Some(Frame::Rgb(image)) => Ok(image),
        Some(Frame::Encoded(bytes)) => pipeline::decode(&bytes)
            .map_err(|err| fail(format!("its first frame cannot be decoded: {err}"))),
        None => Err(fail("the stream ended before its first frame".to_owned())),
    }
}

/// Frames per second, counted over `RATE_SAMPLE`; `None` if fewer than two came.
fn measured_rate(camera: &mut dyn FrameSource) -> Option<f64> {
    let started = Instant::now();
    let mut frames = 0u32;
    while started.elapsed() < RATE_SAMPLE {
        match camera.next_frame() {
            Ok(Some(_)) => frames += 1,
            _ => break,
        }
    }
    (frames >= 2).then(|| f64::from(frames) / started.elapsed().as_secs_f64())
}

/// The image format a snapshot's name asks for.
fn snapshot_format(path: &Path) -> Result<image::ImageFormat, String> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("jpg" | "jpeg") => Ok(image::ImageFormat::Jpeg),
        Some("png") => Ok(image::ImageFormat::Png),
        _ => Err(format!(
            "{}: a snapshot is saved as JPEG or PNG; name it `.jpg` or `.png`",
            path.display()
        )),
    }
}

/// Writes `frame` to `path` readable by its owner only: a classroom's picture is the pupils' personal data.
fn save_private(frame: &RgbImage, path: &Path, format: image::ImageFormat) -> std::io::Result<()> {
    let mut encoded = std::io::Cursor::new(Vec::new());
    frame
        .write_to(&mut encoded, format)
        .map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through `open`: make it private too.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(encoded.get_ref())?;
    file.sync_all()
}
