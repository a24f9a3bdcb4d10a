//! ONVIF, the standard the classroom's IP camera speaks besides its streams:
//! finding the cameras on the room's network, reading the stream URL of each
//! of their profiles, and asking a camera to send no more frames a second than
//! the roll call uses.
//!
//! It lives in attendance because the camera is attendance's: everything here
//! serves setting up or sparing the camera the roll call reads.
//!
//! # Design
//! - `discovery`: WS-Discovery, a SOAP Probe sent by UDP multicast to
//!   239.255.255.250:3702 with a TTL of 1, so it never leaves the room's
//!   segment, on each chosen IPv4 interface; the answers are collected for a
//!   bounded time and merged by the device's endpoint reference, since one
//!   camera answers once per interface that reached it.
//! - `soap`: one SOAP call over HTTP through `ureq`, with connect and read
//!   timeouts and the WS-Security password digest.
//! - `media`: the Media service's profiles and stream URLs, and the video
//!   encoder's frame-rate limit.
//!
//! Every answer is read with a real XML parser ([`parse_xml`]) that refuses
//! DTDs (so no entity expansion) and documents of more than a bounded number
//! of nodes; names are matched by namespace and local name, never by a prefix,
//! since each camera maker picks its own prefixes.

pub mod discovery;
pub mod media;
pub mod soap;

pub use discovery::{DiscoveredDevice, discover};
pub use media::{
    CameraFrameRate, FrameRateChange, Profile, StreamChoice, limit_frame_rate, read_profiles,
};
pub use soap::Credentials;

/// The most XML nodes read from one answer: a camera's answer to these calls
/// has a few hundred.
const MAX_XML_NODES: u32 = 20_000;

/// Why a call to a camera's ONVIF service failed.
#[derive(Debug, thiserror::Error)]
pub enum OnvifError {
    #[error(
        "{url}: cannot reach the camera's ONVIF service ({reason}); check that it is on and ONVIF is enabled in its settings"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "{url}: the camera refused the user name and password; give its ONVIF user (often an account of its own, made in the camera's ONVIF settings) with --user and --password"
    )]
    CredentialsRefused { url: String },
    #[error("{url}: the camera refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url}: the camera's answer is not ONVIF as expected: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// Parses `text` as XML within the bounds every camera answer is held to.
pub fn parse_xml(text: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_XML_NODES,
            ..Default::default()
        },
    )
    .map_err(|err| format!("not well-formed XML: {err}"))
}
