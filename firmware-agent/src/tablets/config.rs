//! The `[tablets]` section of the room's config: pairing, the live channel's
//! limits and heartbeats, how the browser client is offered, discovery, the
//! content store and TLS for native clients.

use std::path::PathBuf;

use serde::Deserialize;

/// `[tablets]` in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TabletsConfig {
    /// How long a pairing code stays valid, in seconds.
    pub pairing_window_s: u32,
    /// Checked wrong codes (from all tablets together) that lock a pairing window.
    pub max_wrong_codes: u32,
    /// How long one address must wait after its first wrong code, in milliseconds (doubled after each further one).
    pub retry_delay_ms: u32,
    /// How often tablets send `ping`, in seconds (told to them in `welcome`).
    pub heartbeat_s: u32,
    /// A tablet silent this long, in seconds, is disconnected.
    pub heartbeat_timeout_s: u32,
    /// The largest message a tablet may send, in bytes.
    pub max_message_bytes: usize,
    /// How long a command waits for acks before its log record is written, in milliseconds.
    pub ack_timeout_ms: u32,
    /// How the browser client is offered; see the module documentation.
    pub browser_client: BrowserClient,
    /// Advertise the agent on the LAN over mDNS (never when http.listen is loopback).
    pub discovery: bool,
    /// The content store, relative to storage.data_dir unless absolute.
    pub content_dir: PathBuf,
    /// Where native clients connect over TLS; off when absent.
    pub tls_listen: Option<std::net::SocketAddr>,
    /// The largest hand-in a tablet may upload, in bytes.
    pub hand_in_max_bytes: usize,
    /// How many hand-ins the room keeps; past it the oldest are deleted.
    pub hand_ins_kept: u32,
}

impl Default for TabletsConfig {
    fn default() -> Self {
        Self {
            pairing_window_s: 300,
            max_wrong_codes: 10,
            retry_delay_ms: 1000,
            heartbeat_s: 10,
            heartbeat_timeout_s: 30,
            max_message_bytes: 16 * 1024,
            ack_timeout_ms: 5000,
            browser_client: BrowserClient::PlainHttp,
            discovery: true,
            content_dir: PathBuf::from("content"),
            tls_listen: None,
            hand_in_max_bytes: 8 * 1024 * 1024,
            hand_ins_kept: 2000,
        }
    }
}

/// Whether the browser client is served, and how.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BrowserClient {
    PlainHttp,
    Disabled,
}

/// The config rules serde cannot express, as `(key, message, hint)`.
pub fn config_problems(config: &TabletsConfig) -> Vec<(&'static str, String, &'static str)> {
    let mut problems = Vec::new();
    if !(30..=3600).contains(&config.pairing_window_s) {
        problems.push((
            "tablets.pairing_window_s",
            format!("{} s is out of range", config.pairing_window_s),
            "use 30 to 3600 seconds; 300 lets a class of 40 pair",
        ));
    }
    if !(3..=100).contains(&config.max_wrong_codes) {
        problems.push((
            "tablets.max_wrong_codes",
            format!("{} is out of range", config.max_wrong_codes),
            "use 3 to 100; 10 keeps guessing a 6-digit code hopeless",
        ));
    }
    if config.heartbeat_s == 0 || config.heartbeat_timeout_s < 2 * config.heartbeat_s {
        problems.push((
            "tablets.heartbeat_timeout_s",
            format!(
                "{} s with heartbeats every {} s",
                config.heartbeat_timeout_s, config.heartbeat_s
            ),
            "make the timeout at least twice the heartbeat, such as 10 and 30",
        ));
    }
    if !(1024..=1024 * 1024).contains(&config.max_message_bytes) {
        problems.push((
            "tablets.max_message_bytes",
            format!("{} bytes is out of range", config.max_message_bytes),
            "use 1024 to 1048576; 16384 fits any answer",
        ));
    }
    problems.extend(super::hand_in::config_problems(config));
    problems
}
