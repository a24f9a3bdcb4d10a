//! An IP camera's RTSP stream (H.264 or H.265), received and decoded by GStreamer.
//!
//! # Design
//! - The pipeline is `rtspsrc ! depay ! parse ! decoder ! videoconvert ! appsink`.
//!   The depayloader, parser and decoder are chosen when the camera's stream
//!   appears, from the encoding its SDP names: a VA-API decoder when the
//!   machine has one (`vah264dec`, `vah265dec`), libav's software decoder
//!   otherwise. Any other encoding (MJPEG over RTP, VP8, ...) is refused as an
//!   unsupported codec, in words that say which one.
//! - The credentials are taken out of the URL and handed to `rtspsrc` as its
//!   user and password, which it answers with digest or basic authentication
//!   as the camera asks; the URL `rtspsrc` sees, and so every message it
//!   posts, has no password in it.
//! - The appsink keeps one frame and drops the rest, without clock sync: the
//!   reader always gets the newest frame and a slow reader never backs the
//!   stream up. Each frame carries its own caps, so a camera that changes its
//!   resolution is simply followed.
//! - While frames are wanted only now and then, a probe before the decoder
//!   drops every frame but the keyframes, so the decoder works on a second's
//!   worth of frames once every GOP; when every frame is wanted again, it
//!   keeps dropping until the next keyframe so that nothing is decoded
//!   against a missing reference.
//! - A camera that does not answer, or whose stream carries nothing for
//!   `SILENCE_LIMIT`, is an error, so the back-off reopens it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use image::RgbImage;

use super::mjpeg_http::without_password;
use super::{Frame, FrameSource, Need, SourceError};
use crate::attendance::config::Transport;

/// How long the camera may go without sending anything (a keyframe-only
/// reader counts the frames it drops) before it counts as gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// How long the first frame may take: connection, authentication, and the
/// first keyframe of a camera that sends one every few seconds.
const FIRST_FRAME_LIMIT: Duration = Duration::from_secs(10);

/// What the camera's stream turned out to be, once its first frame is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The encoding the camera names, such as `H264` or `H265`.
    pub codec: String,
    /// The decoder doing the work, such as `avdec_h264` or `vah264dec`.
    pub decoder: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second the camera states, if it states it.
    pub frame_rate: Option<f64>,
}

/// An RTSP camera, read through a GStreamer pipeline.
pub struct RtspSource {
    camera: String,
    password: Option<String>,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    chosen: Arc<Mutex<Chosen>>,
    keyframes_only: Arc<AtomicBool>,
    last_data: Arc<Mutex<Instant>>,
    /// The first frame, decoded while opening and not yet handed over.
    first: Option<RgbImage>,
}

/// What the pipeline decided when the camera's stream appeared.
#[derive(Default)]
struct Chosen {
    codec: Option<String>,
    decoder: Option<String>,
    /// An encoding the source cannot decode, named by the camera.
    unsupported: Option<String>,
}

/// The camera's URL split into what `rtspsrc` is given.
struct Credentials {
    location: String,
    user: Option<String>,
    password: Option<String>,
}

fn credentials_of(url: &str) -> Credentials {
    let split = url.split_once("://").and_then(|(scheme, rest)| {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (user_info, host) = authority.rsplit_once('@')?;
        let (user, password) = match user_info.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (user_info, None),
        };
        Some(Credentials {
            location: format!("{scheme}://{host}{path}"),
            user: Some(percent_decoded(user)),
            password: password.map(percent_decoded),
        })
    });
    split.unwrap_or_else(|| Credentials {
        location: url.to_owned(),
        user: None,
        password: None,
    })
}

/// `text` with its `%XX` escapes (a password holding `@` or `:`) turned back into bytes.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that `url` is an rtsp:// URL with a host; the reason it is not otherwise.
pub fn check_rtsp_url(url: &str) -> Result<(), String> {
    let shown = without_password(url);
    let Some(rest) = url.strip_prefix("rtsp://") else {
        return Err(format!("`{shown}` is not an rtsp:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host_port.starts_with('[') => {
            (host, Some(port))
        }
        _ => (host_port, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{shown}` names no camera host"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{shown}`: `{port}` is not a port number"));
    }
    Ok(())
}

/// GStreamer, initialised once for the process; the reason when it cannot be.
fn gstreamer() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|err| {
            format!(
                "GStreamer cannot start ({err}); install the Debian packages the Makefile names"
            )
        })
    })
    .clone()
}

impl RtspSource {
    /// Connects to the camera and waits for its first decoded frame.
    pub fn open(url: &str, transport: Transport, need: Need) -> Result<RtspSource, SourceError> {
        let camera = without_password(url);
        let Credentials {
            location,
            user,
            password,
        } = credentials_of(url);
        let fail = |reason: String| SourceError {
            source_name: camera.clone(),
            reason: scrubbed(reason, password.as_deref()),
        };
        check_rtsp_url(url).map_err(&fail)?;
        gstreamer().map_err(&fail)?;
        let element = |factory: &str| {
            gst::ElementFactory::make(factory).build().map_err(|_| {
                fail(format!(
                    "the GStreamer element `{factory}` is missing; install the Debian packages the Makefile names"
                ))
            })
        };
        let source = element("rtspsrc")?;
        source.set_property("location", &location);
        if let Some(user) = &user {
            source.set_property("user-id", user);
        }
        if let Some(password) = &password {
            source.set_property("user-pw", password);
        }
        source.set_property_from_str(
            "protocols",
            match transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            },
        );
        source.set_property("latency", 200u32);
        source.set_property("tcp-timeout", SILENCE_LIMIT.as_micros() as u64);
        source.set_property("timeout", SILENCE_LIMIT.as_micros() as u64);
        let convert = element("videoconvert")?;
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::Rgb)
                    .build(),
            )
            .max_buffers(1)
            .drop(true)
            .sync(false)
            .build();
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([&source, &convert, sink.upcast_ref()])
            .map_err(|err| fail(err.to_string()))?;
        convert.link(&sink).map_err(|err| fail(err.to_string()))?;

        let chosen = Arc::new(Mutex::new(Chosen::default()));
        let keyframes_only = Arc::new(AtomicBool::new(need == Need::NowAndThen));
        let last_data = Arc::new(Mutex::new(Instant::now()));
        let stream = Stream {
            pipeline: pipeline.downgrade(),
            convert: convert.clone(),
            chosen: chosen.clone(),
            keyframes_only: keyframes_only.clone(),
            last_data: last_data.clone(),
        };
        source.connect_pad_added(move |source, pad| stream.link(source, pad));

        let mut opened = RtspSource {
            camera,
            password,
            pipeline,
            sink,
            chosen,
            keyframes_only,
            last_data,
            first: None,
        };
        opened
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| opened.error_or("the pipeline would not start".to_owned()))?;
        let first = opened.pull(FIRST_FRAME_LIMIT, true)?;
        opened.first = Some(first);
        Ok(opened)
    }

    /// What the camera sends, as decoded so far (after `open`, its first frame).
    pub fn info(&self) -> StreamInfo {
        let chosen = self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        let caps = self
            .sink
            .static_pad("sink")
            .and_then(|pad| pad.current_caps());
        let video = caps
            .as_ref()
            .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok());
        StreamInfo {
            codec: chosen.codec.clone().unwrap_or_default(),
            decoder: chosen.decoder.clone().unwrap_or_default(),
            width: video.as_ref().map_or(0, |info| info.width()),
            height: video.as_ref().map_or(0, |info| info.height()),
            frame_rate: video.and_then(|info| {
                let rate = info.fps();
                (rate.numer() > 0 && rate.denom() > 0)
                    .then(|| f64::from(rate.numer()) / f64::from(rate.denom()))
            }),
        }
    }

    /// The next decoded frame, waiting while the camera sends data that the
    /// reader does not want decoded (keyframes only), up to `limit` for the
    /// first frame or `SILENCE_LIMIT` of silence.
    fn pull(&self, limit: Duration, first: bool) -> Result<RgbImage, SourceError> {
        let started = Instant::now();
        loop {
            if let Some(reason) = self.bus_failure() {
                return Err(self.error(reason));
            }
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(200))
            {
                return rgb_of(&sample).map_err(|reason| self.error(reason));
            }
            if self.sink.is_eos() {
                return Err(self.error_or("the camera ended its stream".to_owned()));
            }
            let silent_for = self
                .last_data
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            let waited = started.elapsed();
            if first && waited >= limit {
                return Err(self.error_or(format!(
                    "no picture within {} s: the camera did not answer or sent nothing; check that it is on and reachable, and its address and port",
                    limit.as_secs()
                )));
            }
            if !first && silent_for >= limit {
                return Err(self.error_or(format!(
                    "the camera stopped sending for {} s",
                    limit.as_secs()
                )));
            }
        }
    }

    /// The first error GStreamer has posted, in words for IT staff.
    fn bus_failure(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(message) =
            bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])
        {
            match message.view() {
                gst::MessageView::Error(error) => {
                    let unsupported = self
                        .chosen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .unsupported
                        .clone();
                    return Some(cause_of(
                        error.error(),
                        error.debug().as_deref(),
                        unsupported,
                    ));
                }
                gst::MessageView::Eos(_) => return Some("the camera ended its stream".to_owned()),
                _ => {}
            }
        }
        None
    }

    /// `fallback` unless GStreamer said why first.
    fn error_or(&self, fallback: String) -> SourceError {
        self.error(self.bus_failure().unwrap_or(fallback))
    }

    fn error(&self, reason: String) -> SourceError {
        SourceError {
            source_name: self.camera.clone(),
            reason: scrubbed(reason, self.password.as_deref()),
        }
    }
}

impl Drop for RtspSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl FrameSource for RtspSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(Frame::Rgb(first)));
        }
        self.pull(SILENCE_LIMIT, false)
            .map(|image| Some(Frame::Rgb(image)))
    }

    fn need(&mut self, need: Need) {
        self.keyframes_only
            .store(need == Need::NowAndThen, Ordering::Relaxed);
    }
}

/// `reason` with the password, should any message have carried it, masked.
fn scrubbed(reason: String, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => reason.replace(password, "***"),
        _ => reason,
    }
}

/// What `rtspsrc`'s pad-added handler needs to finish the pipeline.
struct Stream {
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    convert: gst::Element,
    chosen: Arc<Mutex<Chosen>>,
    keyframes_only: Arc<AtomicBool>,
    last_data: Arc<Mutex<Instant>>,
}

impl Stream {
    /// Links a stream the camera offers: its video through the decoder its
    /// encoding needs, anything else (audio, metadata) into a sink that discards it.
    fn link(&self, source: &gst::Element, pad: &gst::Pad) {
        let Some(pipeline) = self.pipeline.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(structure) = caps.structure(0) else {
            return;
        };
        let media = structure.get::<&str>("media").unwrap_or("");
        let encoding = structure
            .get::<&str>("encoding-name")
            .unwrap_or("")
            .to_ascii_uppercase();
        let already_linked = self
            .convert
            .static_pad("sink")
            .is_some_and(|sink| sink.is_linked());
        let chain = match (media, encoding.as_str()) {
            ("video", "H264" | "H265") if !already_linked => decode_chain(&encoding),
            ("video", _) if !already_linked => {
                self.chosen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unsupported = Some(encoding.clone());
                None
            }
            _ => None,
        };
        let Some((depay, parse, decoder, decoder_name)) = chain else {
            // Not the video the roll call decodes: discarded, so it cannot stall the camera's other streams.
            if let Ok(discard) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
                && pipeline.add(&discard).is_ok()
            {
                let _ = discard.sync_state_with_parent();
                let _ = pad.link(&discard.static_pad("sink").expect("fakesink has a sink"));
            }
            let unsupported = self
                .chosen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unsupported
                .clone();
            if let Some(encoding) = unsupported {
                gst::element_error!(
                    source,
                    gst::StreamError::CodecNotFound,
                    ("the camera sends {encoding}, which is not decoded here")
                );
            }
            return;
        };
        {
            let mut chosen = self.chosen.lock().unwrap_or_else(|p| p.into_inner());
            chosen.codec = Some(encoding);
            chosen.decoder = Some(decoder_name);
        }
        let elements = [&depay, &parse, &decoder];
        if pipeline.add_many(elements).is_err()
            || gst::Element::link_many([&depay, &parse, &decoder, &self.convert]).is_err()
        {
            return;
        }
        for element in elements {
            let _ = element.sync_state_with_parent();
        }
        self.drop_frames_not_wanted(&decoder);
        let _ = pad.link(&depay.static_pad("sink").expect("a depayloader has a sink"));
    }

    /// Counts every frame that reaches the decoder as a sign of life, and
    /// drops those not wanted: while keyframes only are, every other frame,
    /// and after that until the next keyframe.
    fn drop_frames_not_wanted(&self, decoder: &gst::Element) {
        let Some(pad) = decoder.static_pad("sink") else {
            return;
        };
        let keyframes_only = self.keyframes_only.clone();
        let last_data = self.last_data.clone();
        let decoding_from_keyframe = AtomicBool::new(false);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            *last_data.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                decoding_from_keyframe.store(true, Ordering::Relaxed);
                return gst::PadProbeReturn::Ok;
            }
            if keyframes_only.load(Ordering::Relaxed) {
                decoding_from_keyframe.store(false, Ordering::Relaxed);
            }
            if decoding_from_keyframe.load(Ordering::Relaxed) {
                gst::PadProbeReturn::Ok
            } else {
                // `Handled`, not `Drop`: the bindings free the buffer either
                // way, and GStreamer 1.22 would then free it a second time.
                gst::PadProbeReturn::Handled
            }
        });
    }
}

/// The depayloader, parser and decoder for `encoding` (`H264` or `H265`), and the decoder's name.
fn decode_chain(encoding: &str) -> Option<(gst::Element, gst::Element, gst::Element, String)> {
    let codec = if encoding == "H264" { "h264" } else { "h265" };
    let make = |name: &str| gst::ElementFactory::make(name).build().ok();
    let decoder_name = [
        format!("va{codec}dec"),
        format!("vaapi{codec}dec"),
        format!("avdec_{codec}"),
    ]
    .into_iter()
    .find(|name| gst::ElementFactory::find(name).is_some())?;
    Some((
        make(&format!("rtp{codec}depay"))?,
        make(&format!("{codec}parse"))?,
        make(&decoder_name)?,
        decoder_name,
    ))
}

/// The frame in `sample` as RGB pixels, rows unpadded.
fn rgb_of(sample: &gst::Sample) -> Result<RgbImage, String> {
    let caps = sample.caps().ok_or("a frame without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|err| err.to_string())?;
    let buffer = sample.buffer().ok_or("a frame without data")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|err| err.to_string())?;
    let (width, height) = (info.width(), info.height());
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|err| err.to_string())?;
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for line in data.chunks(stride).take(height as usize) {
        pixels.extend_from_slice(&line[..row]);
    }
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| "a truncated frame".to_owned())
}

/// GStreamer's error, as the cause IT staff act on.
fn cause_of(error: gst::glib::Error, debug: Option<&str>, unsupported: Option<String>) -> String {
    if let Some(encoding) = unsupported {
        return format!(
            "unsupported codec: the camera sends {encoding}; set the camera's video encoding to H.264 or H.265"
        );
    }
    let debug = debug.unwrap_or("");
    if let Some(kind) = error.kind::<gst::ResourceError>() {
        match kind {
            gst::ResourceError::NotAuthorized => {
                return "wrong user or password (RTSP 401 Unauthorized); put the camera's user and password in the URL, as `rtsp://user:password@192.168.1.64:554/...`".to_owned();
            }
            gst::ResourceError::NotFound => {
                return "stream not found (RTSP 404): the camera has no stream at this path; check the path against the camera's manual (Hikvision `/Streaming/Channels/101`, Dahua `/cam/realmonitor?channel=1&subtype=0`)".to_owned();
            }
            gst::ResourceError::OpenRead
            | gst::ResourceError::OpenReadWrite
            | gst::ResourceError::Read
            | gst::ResourceError::Write => {
                return format!(
                    "camera unreachable ({}): check that it is on, its address and RTSP port (554 by default), and the network",
                    debug.lines().last().unwrap_or("no answer").trim()
                );
            }
            _ => {}
        }
    }
    if error.matches(gst::StreamError::CodecNotFound)
        || error.matches(gst::StreamError::Decode)
        || error.matches(gst::CoreError::Negotiation)
        || debug.contains("not-negotiated")
    {
        return format!(
            "unsupported codec: the stream cannot be decoded here ({}); set the camera's video encoding to H.264 or H.265",
            error.message()
        );
    }
    format!(
        "{} ({})",
        error.message(),
        debug.lines().last().unwrap_or("").trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_of_the_url_and_decoded() {
        let split = credentials_of("rtsp://admin:p%40ss:w@192.168.1.64:554/Streaming/Channels/102");
        assert_eq!(
            split.location,
            "rtsp://192.168.1.64:554/Streaming/Channels/102"
        );
        assert_eq!(split.user.as_deref(), Some("admin"));
        assert_eq!(split.password.as_deref(), Some("p@ss:w"));
        let bare = credentials_of("rtsp://cam/live");
        assert_eq!(
            (bare.location.as_str(), bare.user),
            ("rtsp://cam/live", None)
        );
    }

    #[test]
    fn a_malformed_rtsp_url_is_refused_without_its_password() {
        assert!(
            check_rtsp_url("rtsp://admin:pw@192.168.1.64:554/cam/realmonitor?channel=1&subtype=0")
                .is_ok()
        );
        assert!(check_rtsp_url("rtsp://[::1]:8554/stream").is_ok());
        for (url, says) in [
            ("http://admin:hunter2@cam/x", "not an rtsp:// URL"),
            ("rtsp://admin:hunter2@/x", "names no camera host"),
            ("rtsp://admin:hunter2@cam:55x4/x", "not a port number"),
        ] {
            let err = check_rtsp_url(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
