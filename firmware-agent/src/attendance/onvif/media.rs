//! The camera's Media service: its profiles (each an encoder setting and a
//! stream), the RTSP URL of each, and the frame-rate limit of a profile's
//! video encoder.
//!
//! # Design
//! The Media service's address comes from the device service's
//! GetCapabilities, which every ONVIF camera since Profile S answers. A
//! stream is asked for as ONVIF names RTSP: `RTP-Unicast` over `RTSP`, that
//! is RTP interleaved in the RTSP connection over TCP.
//!
//! Lowering the frame rate must leave everything else of the encoder as the
//! camera had it, including the parts of the configuration this agent does
//! not know (maker extensions, multicast settings). So the configuration is
//! not rebuilt from parsed fields: the camera's own XML of it is sent back
//! with the text of `FrameRateLimit` alone replaced, and the namespaces its
//! prefixes were declared with declared again on the request's element.

use jiff::Timestamp;
use serde::Serialize;

use super::soap::{self, Credentials, escape};
use super::{OnvifError, parse_xml};

const DEVICE: &str = "http://www.onvif.org/ver10/device/wsdl";
const MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
const SCHEMA: &str = "http://www.onvif.org/ver10/schema";
/// The prefix of the Media namespace in the SetVideoEncoderConfiguration this
/// module writes; unusual, so that no camera prefix declared beside it clashes.
const SET_PREFIX: &str = "fa-media";

/// One media profile of a camera, as IT staff choose a stream by it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub token: String,
    pub name: String,
    /// `H264`, `H265`, `JPEG`, ..., as the camera names it.
    pub encoding: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The encoder's frame-rate limit, in frames a second.
    pub frame_rate: Option<u32>,
    /// The token of the profile's video encoder configuration.
    #[serde(skip)]
    pub encoder_token: Option<String>,
    /// The RTSP URL of the profile's stream, any password in it shown as `***`;
    /// `None` when the camera would not give one (the reason is in `stream_error`).
    pub stream_url: Option<String>,
    pub stream_error: Option<String>,
}

/// Which of a camera's profiles is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamChoice {
    /// The profile with this token.
    Token(String),
    /// The profile whose stream is at this RTSP URL (user and password ignored).
    StreamUrl(String),
}

/// What [`limit_frame_rate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRateChange {
    /// The limit was `from` and is now the rate asked for.
    Lowered { from: u32 },
    /// The camera already sent no more than the rate asked for.
    AlreadyAtMost { current: u32 },
}

/// The address of the camera's Media service, from its device service.
fn media_service_url(
    device_url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
) -> Result<String, OnvifError> {
    let answer = soap::call(
        device_url,
        credentials,
        now,
        &format!(
            "<tds:GetCapabilities xmlns:tds=\"{DEVICE}\"><tds:Category>Media</tds:Category></tds:GetCapabilities>"
        ),
    )?;
    let document = parse_xml(&answer).map_err(|reason| bad_answer(device_url, reason))?;
    document
        .descendants()
        .find(|node| node.has_tag_name((SCHEMA, "Media")))
        .and_then(|media| {
            media
                .children()
                .find(|node| node.has_tag_name((SCHEMA, "XAddr")))
        })
        .and_then(|node| node.text())
        .map(|url| url.trim().to_owned())
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
        .ok_or_else(|| {
            bad_answer(
                device_url,
                "no Media service address in GetCapabilities".to_owned(),
            )
        })
}

fn bad_answer(url: &str, reason: String) -> OnvifError {
    OnvifError::BadAnswer {
        url: url.to_owned(),
        reason,
    }
}

/// Every media profile of the camera whose device service is at `device_url`,
/// each with its stream URL. The camera's refusal of the credentials, or of
/// GetProfiles, is an error; a refused stream URL is noted in that profile.
pub fn read_profiles(
    device_url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
) -> Result<Vec<Profile>, OnvifError> {
    let media_url = media_service_url(device_url, credentials, now)?;
    let mut profiles = profiles_at(&media_url, credentials, now)?;
    for profile in &mut profiles {
        match stream_url(&media_url, credentials, now, &profile.token) {
            Ok(url) => profile.stream_url = Some(crate::attendance::source::without_password(&url)),
            Err(err) => profile.stream_error = Some(err.to_string()),
        }
    }
    Ok(profiles)
}

/// The profiles the Media service at `media_url` lists, without stream URLs.
fn profiles_at(
    media_url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
) -> Result<Vec<Profile>, OnvifError> {
    let answer = soap::call(
        media_url,
        credentials,
        now,
        &format!("<trt:GetProfiles xmlns:trt=\"{MEDIA}\"/>"),
    )?;
    let document = parse_xml(&answer).map_err(|reason| bad_answer(media_url, reason))?;
    Ok(parse_profiles(&document))
}

/// The child of `node` named `name` in the ONVIF schema's namespace.
fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|child| child.has_tag_name((SCHEMA, name)))
}

/// The profiles of a GetProfilesResponse.
fn parse_profiles(document: &roxmltree::Document) -> Vec<Profile> {
    let text = |node: Option<roxmltree::Node>| {
        node.and_then(|node| node.text())
            .map(|text| text.trim().to_owned())
    };
    let number = |node: Option<roxmltree::Node>| {
        text(node)
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
            .map(|value| value as u32)
    };
    document
        .descendants()
        .filter(|node| node.has_tag_name((MEDIA, "Profiles")))
        .map(|profile| {
            let encoder = child(profile, "VideoEncoderConfiguration");
            let resolution = encoder.and_then(|encoder| child(encoder, "Resolution"));
            Profile {
                token: profile.attribute("token").unwrap_or_default().to_owned(),
                name: text(child(profile, "Name")).unwrap_or_default(),
                encoding: text(encoder.and_then(|encoder| child(encoder, "Encoding"))),
                width: number(resolution.and_then(|resolution| child(resolution, "Width"))),
                height: number(resolution.and_then(|resolution| child(resolution, "Height"))),
                frame_rate: number(
                    encoder
                        .and_then(|encoder| child(encoder, "RateControl"))
                        .and_then(|rate| child(rate, "FrameRateLimit")),
                ),
                encoder_token: encoder
                    .and_then(|encoder| encoder.attribute("token"))
                    .map(str::to_owned),
                stream_url: None,
                stream_error: None,
            }
        })
        .collect()
}

/// The RTSP URL of the profile `token`'s stream, as the camera gives it.
fn stream_url(
    media_url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
    token: &str,
) -> Result<String, OnvifError> {
    let answer = soap::call(
        media_url,
        credentials,
        now,
        &format!(
            "<trt:GetStreamUri xmlns:trt=\"{MEDIA}\" xmlns:tt=\"{SCHEMA}\"><trt:StreamSetup>\
             <tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport>\
             </trt:StreamSetup><trt:ProfileToken>{}</trt:ProfileToken></trt:GetStreamUri>",
            escape(token)
        ),
    )?;
    let document = parse_xml(&answer).map_err(|reason| bad_answer(media_url, reason))?;
    document
        .descendants()
        .find(|node| node.has_tag_name((SCHEMA, "Uri")))
        .and_then(|node| node.text())
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .ok_or_else(|| bad_answer(media_url, "no Uri in GetStreamUri's answer".to_owned()))
}

/// Sets the frame-rate limit of the chosen profile's video encoder to `fps`
/// when it is higher, leaving the rest of the encoder's configuration as it was.
pub fn limit_frame_rate(
    device_url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
    choice: &StreamChoice,
    fps: u32,
) -> Result<FrameRateChange, OnvifError> {
    let media_url = media_service_url(device_url, credentials, now)?;
    let profiles = profiles_at(&media_url, credentials, now)?;
    let profile = match choice {
        StreamChoice::Token(token) => profiles.iter().find(|profile| &profile.token == token),
        StreamChoice::StreamUrl(wanted) => profiles.iter().find(|profile| {
            stream_url(&media_url, credentials, now, &profile.token)
                .is_ok_and(|url| same_stream(&url, wanted))
        }),
    };
    let refused = |reason: String| OnvifError::Refused {
        url: media_url.clone(),
        reason,
    };
    let profile = profile.ok_or_else(|| refused(format!("no profile is {choice:?}")))?;
    let encoder_token = profile
        .encoder_token
        .as_deref()
        .ok_or_else(|| refused(format!("profile `{}` has no video encoder", profile.token)))?;
    let answer = soap::call(
        &media_url,
        credentials,
        now,
        &format!(
            "<trt:GetVideoEncoderConfiguration xmlns:trt=\"{MEDIA}\"><trt:ConfigurationToken>{}</trt:ConfigurationToken></trt:GetVideoEncoderConfiguration>",
            escape(encoder_token)
        ),
    )?;
    let (current, request) =
        set_frame_rate_request(&answer, fps).map_err(|reason| bad_answer(&media_url, reason))?;
    if current <= fps {
        return Ok(FrameRateChange::AlreadyAtMost { current });
    }
    soap::call(&media_url, credentials, now, &request)?;
    Ok(FrameRateChange::Lowered { from: current })
}

/// From a GetVideoEncoderConfigurationResponse: the current frame-rate limit,
/// and the SetVideoEncoderConfiguration that sends the same configuration
/// back with the limit at `fps`.
fn set_frame_rate_request(answer: &str, fps: u32) -> Result<(u32, String), String> {
    let document = parse_xml(answer)?;
    let configuration = document
        .descendants()
        .find(|node| node.has_tag_name((MEDIA, "Configuration")))
        .ok_or("no Configuration in the answer")?;
    let limit = configuration
        .descendants()
        .find(|node| node.has_tag_name((SCHEMA, "RateControl")))
        .and_then(|rate| {
            rate.children()
                .find(|node| node.has_tag_name((SCHEMA, "FrameRateLimit")))
        })
        .ok_or("the encoder has no RateControl/FrameRateLimit")?;
    let limit_text = limit
        .first_child()
        .filter(|node| node.is_text())
        .ok_or("FrameRateLimit is empty")?;
    let current: u32 = limit_text
        .text()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|_| "FrameRateLimit is not a whole number".to_owned())?;
    let whole = configuration.range();
    let text = limit_text.range();
    let configuration_xml = format!(
        "{}{fps}{}",
        &answer[whole.start..text.start],
        &answer[text.end..whole.end]
    );
    let declarations: String = configuration
        .namespaces()
        .filter(|namespace| namespace.name() != Some("xml") && namespace.name() != Some(SET_PREFIX))
        .map(|namespace| match namespace.name() {
            Some(prefix) => format!(" xmlns:{prefix}=\"{}\"", escape(namespace.uri())),
            None => format!(" xmlns=\"{}\"", escape(namespace.uri())),
        })
        .collect();
    let request = format!(
        "<{SET_PREFIX}:SetVideoEncoderConfiguration xmlns:{SET_PREFIX}=\"{MEDIA}\"{declarations}>\
         {configuration_xml}<{SET_PREFIX}:ForcePersistence>true</{SET_PREFIX}:ForcePersistence>\
         </{SET_PREFIX}:SetVideoEncoderConfiguration>"
    );
    Ok((current, request))
}

/// Whether two RTSP URLs name the same stream, user and password aside.
fn same_stream(left: &str, right: &str) -> bool {
    let bare = |url: &str| match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        }
        None => url.to_owned(),
    };
    bare(left) == bare(right)
}

/// Asks the camera that streams `stream_url` to send no more than
/// `attendance.source.onvif_frame_rate` frames a second, through ONVIF at
/// `http://HOST/onvif/device_service` with the stream URL's user and password.
/// A camera that cannot or will not is logged once per [`CameraFrameRate`]
/// and is not an error: the roll call then samples the frames it gets.
#[derive(Debug)]
pub struct CameraFrameRate {
    fps: u32,
    refusal_logged: bool,
}

impl CameraFrameRate {
    /// `fps` from the config; 0 leaves the camera as it is.
    pub fn new(fps: u32) -> Self {
        Self {
            fps,
            refusal_logged: false,
        }
    }

    /// Lowers the camera's frame rate for `stream_url` (call when the stream opens).
    pub fn apply(&mut self, stream_url: &str, now: Timestamp) {
        if self.fps == 0 {
            return;
        }
        let shown = crate::attendance::source::without_password(stream_url);
        let result = onvif_address(stream_url)
            .ok_or_else(|| OnvifError::Refused {
                url: shown.clone(),
                reason: "the stream URL has no host".to_owned(),
            })
            .and_then(|(device_url, credentials)| {
                limit_frame_rate(
                    &device_url,
                    credentials.as_ref(),
                    now,
                    &StreamChoice::StreamUrl(stream_url.to_owned()),
                    self.fps,
                )
            });
        match result {
            Ok(FrameRateChange::Lowered { from }) => {
                tracing::info!(camera = %shown, "Camera đã giảm tốc độ khung hình từ {from} xuống {} hình/giây (ONVIF) / the camera now sends at most {} frames a second, down from {from}", self.fps, self.fps);
            }
            Ok(FrameRateChange::AlreadyAtMost { current }) => {
                tracing::debug!(camera = %shown, "the camera already sends at most {current} frames a second");
            }
            Err(err) if !self.refusal_logged => {
                self.refusal_logged = true;
                tracing::warn!(camera = %shown, "Không giảm được tốc độ khung hình của camera qua ONVIF; điểm danh vẫn tiếp tục / the camera's frame rate was not lowered, the roll call goes on: {err}");
            }
            Err(err) => {
                tracing::debug!(camera = %shown, "the camera's frame rate was not lowered: {err}")
            }
        }
    }
}

/// The ONVIF device service of the camera streaming `stream_url`, at the
/// standard path on port 80, and the user and password the URL carries.
fn onvif_address(stream_url: &str) -> Option<(String, Option<Credentials>)> {
    let rest = stream_url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((user_info, host_port)) => (Some(user_info), host_port),
        None => (None, authority),
    };
    let host = match host_port.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => host_port.split(':').next()?.to_owned(),
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let credentials = user_info.map(|user_info| {
        let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    });
    Some((format!("http://{host}/onvif/device_service"), credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODER: &str = r#"<?xml version="1.0"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:hik="urn:maker">
<SOAP-ENV:Body><trt:GetVideoEncoderConfigurationResponse>
<trt:Configuration token="VideoEncoderToken_1"><tt:Name>Main&amp;Stream</tt:Name><tt:UseCount>1</tt:UseCount>
<tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>
<tt:Quality>4</tt:Quality><tt:RateControl><tt:FrameRateLimit> 25 </tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl>
<tt:Extension><hik:Smart>on</hik:Smart></tt:Extension></trt:Configuration>
</trt:GetVideoEncoderConfigurationResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

    #[test]
    fn the_request_changes_the_frame_rate_limit_and_nothing_else() {
        let (current, request) = set_frame_rate_request(ENCODER, 4).unwrap();
        assert_eq!(current, 25);
        let envelope = format!(
            "<s:Envelope xmlns:s=\"{}\"><s:Body>{request}</s:Body></s:Envelope>",
            soap::SOAP_ENVELOPE
        );
        let sent = roxmltree::Document::parse(&envelope).unwrap();
        let original = roxmltree::Document::parse(ENCODER).unwrap();
        let configuration = |document: &roxmltree::Document<'_>| -> Vec<(String, String)> {
            document
                .descendants()
                .find(|node| node.has_tag_name((MEDIA, "Configuration")))
                .unwrap()
                .descendants()
                .filter(|node| node.is_element())
                .map(|node| {
                    (
                        format!(
                            "{}|{}",
                            node.tag_name().namespace().unwrap_or(""),
                            node.tag_name().name()
                        ),
                        node.text().unwrap_or("").trim().to_owned(),
                    )
                })
                .collect()
        };
        let expected: Vec<_> = configuration(&original)
            .into_iter()
            .map(|(name, text)| {
                let text = if name.ends_with("|FrameRateLimit") {
                    "4".to_owned()
                } else {
                    text
                };
                (name, text)
            })
            .collect();
        assert_eq!(configuration(&sent), expected);
        let set = sent
            .descendants()
            .find(|node| node.has_tag_name((MEDIA, "SetVideoEncoderConfiguration")))
            .unwrap();
        assert!(
            set.children()
                .any(|node| node.has_tag_name((MEDIA, "ForcePersistence")))
        );
    }

    #[test]
    fn an_encoder_without_a_frame_rate_limit_is_said_to_be() {
        let without = ENCODER.replace("<tt:FrameRateLimit> 25 </tt:FrameRateLimit>", "");
        assert!(
            set_frame_rate_request(&without, 4)
                .unwrap_err()
                .contains("FrameRateLimit")
        );
    }

    #[test]
    fn the_device_service_follows_from_the_stream_url() {
        let (url, credentials) =
            onvif_address("rtsp://admin:p%40ss:word@192.168.1.20:554/Streaming/Channels/102")
                .unwrap();
        assert_eq!(url, "http://192.168.1.20/onvif/device_service");
        let credentials = credentials.unwrap();
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("admin", "p%40ss:word")
        );
        assert_eq!(
            onvif_address("rtsp://[fd00::5]:554/live").unwrap().0,
            "http://[fd00::5]/onvif/device_service"
        );
        assert!(onvif_address("rtsp:///live").is_none());
    }

    /// Collects what is logged, for the test below.
    #[derive(Clone, Default)]
    struct Logged(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_camera_that_will_not_lower_its_frame_rate_is_warned_of_once() {
        let logged = Logged::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // No ONVIF service answers at 127.0.0.1:80 as a camera would.
            let mut frame_rate = CameraFrameRate::new(5);
            let now = Timestamp::now();
            frame_rate.apply("rtsp://admin:secret@127.0.0.1:554/live", now);
            frame_rate.apply("rtsp://admin:secret@127.0.0.1:554/live", now);
            CameraFrameRate::new(0).apply("rtsp://admin:secret@127.0.0.1:554/live", now);
        });
        let text = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("WARN").count(), 1, "{text}");
        assert!(text.contains("Không giảm được tốc độ khung hình"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn streams_are_the_same_whatever_the_credentials() {
        assert!(same_stream(
            "rtsp://admin:x@Cam:554/live/1",
            "rtsp://cam:554/live/1"
        ));
        assert!(!same_stream(
            "rtsp://cam:554/live/1",
            "rtsp://cam:554/live/2"
        ));
    }
}
