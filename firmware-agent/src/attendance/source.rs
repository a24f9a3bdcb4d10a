//! Where frames come from, behind one trait: a V4L2 camera, a folder of images
//! or an MJPEG file played at a set pace, an IP camera's MJPEG-over-HTTP stream.
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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::config::{SourceConfig, SourceKind};

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

/// A supplier of frames.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when a finite source (a file played once) has ended.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
}

/// Opens the source the config describes.
pub fn open(config: &SourceConfig) -> Result<Box<dyn FrameSource>, SourceError> {
    let pace = Pace::new(config.rate);
    Ok(match config.kind {
        SourceKind::Folder => Box::new(FolderSource::open(&config.path, config.repeat, pace)?),
        SourceKind::MjpegFile => Box::new(MjpegFileSource::open(&config.path, config.repeat, pace)?),
        SourceKind::IpCamera => Box::new(IpCameraSource::open(&config.url)?),
        SourceKind::Camera => Box::new(CameraSource::open(config)?),
    })
}

/// Keeps a file source to its configured frame rate.
struct Pace {
    interval: Duration,
    next: Option<Instant>,
}

impl Pace {
    fn new(rate: f64) -> Pace {
        Pace { interval: Duration::from_secs_f64(1.0 / rate.max(0.01)), next: None }
    }

    /// Waits until the next frame is due, as a camera would deliver it.
    fn wait(&mut self) {
        let now = Instant::now();
        let due = self.next.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        self.next = Some(due.max(now) + self.interval);
    }
}

/// Image files of a folder, in name order.
pub struct FolderSource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    position: usize,
    repeat: bool,
    pace: Pace,
}

impl FolderSource {
    fn open(folder: &Path, repeat: bool, pace: Pace) -> Result<FolderSource, SourceError> {
        let fail = |reason: String| SourceError { source_name: folder.display().to_string(), reason };
        let entries = std::fs::read_dir(folder).map_err(|err| fail(format!("cannot read the folder: {err}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png", "bmp", "webp"].contains(&e.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail("no JPEG, PNG, BMP or WebP images in the folder".to_owned()));
        }
        Ok(FolderSource { folder: folder.to_owned(), files, position: 0, repeat, pace })
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.position == self.files.len() {
            if !self.repeat {
                return Ok(None);
            }
            self.position = 0;
        }
        self.pace.wait();
        let path = &self.files[self.position];
        self.position += 1;
        let bytes = std::fs::read(path).map_err(|err| SourceError {
            source_name: self.folder.display().to_string(),
            reason: format!("{}: cannot read: {err}", path.display()),
        })?;
        Ok(Some(Frame::Encoded(bytes)))
    }
}

/// A file of concatenated JPEG frames (what cameras record as `.mjpeg`).
pub struct MjpegFileSource {
    frames: Vec<Vec<u8>>,
    position: usize,
    repeat: bool,
    pace: Pace,
}

impl MjpegFileSource {
    fn open(path: &Path, repeat: bool, pace: Pace) -> Result<MjpegFileSource, SourceError> {
        let fail = |reason: String| SourceError { source_name: path.display().to_string(), reason };
        let bytes = std::fs::read(path).map_err(|err| fail(format!("cannot read: {err}")))?;
        let mut splitter = JpegSplitter::default();
        let frames = splitter.push(&bytes);
        if frames.is_empty() {
            return Err(fail("no JPEG frame in the file; give an MJPEG file (concatenated JPEG images)".to_owned()));
        }
        Ok(MjpegFileSource { frames, position: 0, repeat, pace })
    }
}

impl FrameSource for MjpegFileSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.position == self.frames.len() {
            if !self.repeat {
                return Ok(None);
            }
            self.position = 0;
        }
        self.pace.wait();
        self.position += 1;
        Ok(Some(Frame::Encoded(self.frames[self.position - 1].clone())))
    }
}

/// Cuts a byte stream into JPEG images at their start (FF D8) and end (FF D9) markers.
#[derive(Default)]
pub struct JpegSplitter {
    buffer: Vec<u8>,
}

/// A frame larger than this is not a camera frame: the stream is resynchronised.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

impl JpegSplitter {
    /// Adds bytes; returns the complete frames they finish.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            let Some(start) = find(&self.buffer, &[0xFF, 0xD8, 0xFF], 0) else {
                let keep = self.buffer.len().min(2);
                self.buffer.drain(..self.buffer.len() - keep);
                break;
            };
            let Some(end) = find(&self.buffer, &[0xFF, 0xD9], start + 2) else {
                self.buffer.drain(..start);
                if self.buffer.len() > MAX_FRAME_BYTES {
                    self.buffer.clear();
                }
                break;
            };
            frames.push(self.buffer[start..end + 2].to_vec());
            self.buffer.drain(..end + 2);
        }
        frames
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// An IP camera's MJPEG stream over plain HTTP (multipart/x-mixed-replace).
pub struct IpCameraSource {
    url: String,
    reader: BufReader<TcpStream>,
    splitter: JpegSplitter,
    pending: std::collections::VecDeque<Vec<u8>>,
}

/// How long a silent camera is waited for before it counts as gone.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl IpCameraSource {
    fn open(url: &str) -> Result<IpCameraSource, SourceError> {
        let fail = |reason: String| SourceError { source_name: url.to_owned(), reason };
        let rest = url.strip_prefix("http://").ok_or_else(|| fail("only http:// streams are supported".to_owned()))?;
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        let stream = std::net::ToSocketAddrs::to_socket_addrs(&address)
            .map_err(|err| fail(format!("cannot resolve {address}: {err}")))?
            .find_map(|addr| TcpStream::connect_timeout(&addr, READ_TIMEOUT).ok())
            .ok_or_else(|| fail(format!("cannot connect to {address}")))?;
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|err| fail(err.to_string()))?;
        let mut writer = stream.try_clone().map_err(|err| fail(err.to_string()))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: firmware-agent\r\nConnection: close\r\n\r\n");
        writer.write_all(request.as_bytes()).map_err(|err| fail(format!("cannot send the request: {err}")))?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).map_err(|err| fail(format!("no answer: {err}")))?;
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(fail(format!("the camera answered `{}`", status.trim())));
        }
        loop {
            let mut header = String::new();
            let read = reader.read_line(&mut header).map_err(|err| fail(format!("broken answer: {err}")))?;
            if read == 0 || header.trim().is_empty() {
                break;
            }
        }
        Ok(IpCameraSource { url: url.to_owned(), reader, splitter: JpegSplitter::default(), pending: Default::default() })
    }
}

impl FrameSource for IpCameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let mut chunk = [0u8; 64 * 1024];
        while self.pending.is_empty() {
            let read = self.reader.read(&mut chunk).map_err(|err| SourceError {
                source_name: self.url.clone(),
                reason: format!("the stream stopped: {err}"),
            })?;
            if read == 0 {
                return Err(SourceError { source_name: self.url.clone(), reason: "the camera closed the stream".to_owned() });
            }
            self.pending.extend(self.splitter.push(&chunk[..read]));
        }
        Ok(self.pending.pop_front().map(Frame::Encoded))
    }
}

/// A V4L2 camera through `nokhwa`.
pub struct CameraSource {
    device: u32,
    camera: nokhwa::Camera,
}

impl CameraSource {
    fn open(config: &SourceConfig) -> Result<CameraSource, SourceError> {
        use nokhwa::pixel_format::RgbFormat;
        use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution};
        let fail = |err: nokhwa::NokhwaError| SourceError {
            source_name: format!("/dev/video{}", config.device),
            reason: format!("{err}; check that the camera is plugged in and the agent's user is in the `video` group"),
        };
        let format = CameraFormat::new(
            Resolution::new(config.width, config.height),
            FrameFormat::MJPEG,
            config.rate.round().max(1.0) as u32,
        );
        let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(format));
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(config.device), requested).map_err(fail)?;
        camera.open_stream().map_err(fail)?;
        Ok(CameraSource { device: config.device, camera })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let fail = |err: nokhwa::NokhwaError| SourceError {
            source_name: format!("/dev/video{}", self.device),
            reason: format!("{err}; the camera may have been unplugged"),
        };
        let buffer = self.camera.frame().map_err(fail)?;
        if buffer.source_frame_format() == nokhwa::utils::FrameFormat::MJPEG {
            return Ok(Some(Frame::Encoded(buffer.buffer().to_vec())));
        }
        let image = buffer.decode_image::<nokhwa::pixel_format::RgbFormat>().map_err(fail)?;
        Ok(Some(Frame::Rgb(image)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_splitter_finds_frames_across_chunk_boundaries() {
        let frame = |fill: u8| [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[fill; 10], &[0xFF, 0xD9]].concat();
        let stream = [b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n".as_slice(), &frame(1), b"\r\n--boundary\r\n", &frame(2)].concat();
        let mut splitter = JpegSplitter::default();
        let mut frames = Vec::new();
        for chunk in stream.chunks(5) {
            frames.extend(splitter.push(chunk));
        }
        assert_eq!(frames, vec![frame(1), frame(2)]);
    }

    #[test]
    fn a_missing_folder_or_camera_is_an_error_not_a_crash() {
        let config = SourceConfig { kind: SourceKind::Folder, path: "/nonexistent/frames".into(), ..SourceConfig::default() };
        let err = open(&config).err().expect("must fail");
        assert!(err.to_string().contains("/nonexistent/frames: cannot read the folder"), "{err}");
        let camera = SourceConfig { kind: SourceKind::Camera, device: 97, ..SourceConfig::default() };
        assert!(open(&camera).is_err());
        let ip = SourceConfig { kind: SourceKind::IpCamera, url: format!("http://127.0.0.1:{}/video", closed_port()), ..SourceConfig::default() };
        assert!(open(&ip).err().expect("must fail").to_string().contains("cannot connect"));
    }

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn an_ip_camera_stream_is_read_and_its_end_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/video.mjpg", listener.local_addr().unwrap());
        let frame = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[9; 100], &[0xFF, 0xD9]].concat();
        let served = frame.clone();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n").unwrap();
            for _ in 0..2 {
                stream.write_all(b"--f\r\nContent-Type: image/jpeg\r\n\r\n").unwrap();
                stream.write_all(&served).unwrap();
                stream.write_all(b"\r\n").unwrap();
            }
        });
        let mut source = IpCameraSource::open(&url).unwrap();
        for _ in 0..2 {
            let Some(Frame::Encoded(bytes)) = source.next_frame().unwrap() else { panic!("a frame") };
            assert_eq!(bytes, frame);
        }
        server.join().unwrap();
        let err = source.next_frame().err().expect("the camera vanished");
        assert!(err.to_string().contains("closed the stream"), "{err}");
    }
}
