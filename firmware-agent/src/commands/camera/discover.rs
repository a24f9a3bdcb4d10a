//! `camera discover`: the ONVIF cameras on the room's network segment, each
//! with its profiles and their stream URLs, so IT staff can copy the one the
//! roll call should read into `attendance.source.url`.

use std::time::Duration;

use serde::Serialize;

use crate::attendance::onvif::{self, Credentials, DiscoveredDevice, OnvifError, Profile};
use crate::clock::{Clock, SystemClock};
use crate::exit::Exit;

/// List the ONVIF cameras on this room's network segment and their stream URLs.
///
/// Sends a WS-Discovery probe (UDP multicast, TTL 1: it does not leave the
/// segment), then asks each camera that answers for its media profiles:
/// resolution, frame rate, codec and RTSP URL (any password in it shown as ***).
/// Exit 0: cameras found and each one read; 1: no camera answered, or one
/// could not be read (the reason is printed beside it, such as refused
/// credentials); 2: invalid options.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// The network interface to probe on, by name (`eth0`) or IPv4 address; default: every non-loopback IPv4 interface.
    #[arg(long, value_name = "NAME|ADDRESS")]
    pub interface: Option<String>,
    /// Seconds to wait for cameras to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = wait_seconds)]
    pub wait: f64,
    /// The cameras' ONVIF user (often an account of its own, made in the camera's ONVIF settings).
    #[arg(long, value_name = "NAME", requires = "password")]
    pub user: Option<String>,
    /// The ONVIF user's password (or set FIRMWARE_AGENT_CAMERA_PASSWORD, kept out of the shell's history).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "FIRMWARE_AGENT_CAMERA_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Say on stderr what was sent and which answers were skipped, and why.
    #[arg(long)]
    pub verbose: bool,
}

fn wait_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.1..=60.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0.1 to 60"
        )),
    }
}

/// A discovered camera and what reading it gave.
#[derive(Debug, Serialize)]
struct CameraReport {
    #[serde(flatten)]
    device: DiscoveredDevice,
    /// The device service that answered (or was last tried).
    device_url: Option<String>,
    profiles: Vec<Profile>,
    /// Why the camera could not be read, if it could not.
    error: Option<String>,
    credentials_refused: bool,
}

pub fn run(args: DiscoverArgs) -> Exit {
    if args.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_env_filter("firmware_agent=debug")
            .init();
    }
    let interfaces = match onvif::discovery::probe_interfaces(args.interface.as_deref()) {
        Ok(interfaces) => interfaces,
        Err(reason) => {
            eprintln!("{reason}");
            return if args.interface.is_some() {
                Exit::InvalidInput
            } else {
                Exit::Failure
            };
        }
    };
    let devices = match onvif::discover(&interfaces, Duration::from_secs_f64(args.wait)) {
        Ok(devices) => devices,
        Err(reason) => {
            eprintln!("{reason}");
            return Exit::Failure;
        }
    };
    let credentials = args.user.map(|user| Credentials {
        user,
        password: args.password.unwrap_or_default(),
    });
    let reports: Vec<CameraReport> = devices
        .into_iter()
        .map(|device| read_camera(device, credentials.as_ref()))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialise")
        );
    } else {
        print!("{}", table(&reports));
    }
    if reports.is_empty() {
        let probed: Vec<String> = interfaces
            .iter()
            .map(|interface| format!("{} ({})", interface.name, interface.address))
            .collect();
        eprintln!(
            "no ONVIF camera answered within {} s on {}; check that the cameras are on this network segment and ONVIF discovery is enabled in their settings, or wait longer with --wait",
            args.wait,
            probed.join(", ")
        );
        return Exit::Failure;
    }
    if reports.iter().any(|report| report.error.is_some()) {
        return Exit::Failure;
    }
    Exit::Success
}

/// Reads the profiles of `device` through the first of its device services that answers.
fn read_camera(device: DiscoveredDevice, credentials: Option<&Credentials>) -> CameraReport {
    let mut report = CameraReport {
        device_url: None,
        profiles: Vec::new(),
        error: Some("the camera gave no http:// address for its device service".to_owned()),
        credentials_refused: false,
        device,
    };
    for url in &report.device.device_urls {
        report.device_url = Some(url.clone());
        match onvif::read_profiles(url, credentials, SystemClock.now()) {
            Ok(profiles) => {
                report.profiles = profiles;
                report.error = None;
                break;
            }
            Err(err) => {
                report.credentials_refused = matches!(err, OnvifError::CredentialsRefused { .. });
                report.error = Some(err.to_string());
                if !matches!(err, OnvifError::Unreachable { .. }) {
                    break;
                }
            }
        }
    }
    report
}

/// The reports as a table: one block per camera, one line per profile.
fn table(reports: &[CameraReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let device = &report.device;
        out.push_str(&format!(
            "{}  {}  {}  {}\n",
            device.answered_from.ip(),
            device.name.as_deref().unwrap_or("(no name)"),
            device.hardware.as_deref().unwrap_or("(no hardware)"),
            report
                .device_url
                .as_deref()
                .unwrap_or("(no device service)"),
        ));
        if let Some(error) = &report.error {
            out.push_str(&format!("  {error}\n"));
            continue;
        }
        let rows: Vec<[String; 5]> = report
            .profiles
            .iter()
            .map(|profile| {
                [
                    profile.name.clone(),
                    match (profile.width, profile.height) {
                        (Some(width), Some(height)) => format!("{width}x{height}"),
                        _ => "?".to_owned(),
                    },
                    profile
                        .frame_rate
                        .map_or("?".to_owned(), |rate| rate.to_string()),
                    profile.encoding.clone().unwrap_or_else(|| "?".to_owned()),
                    match (&profile.stream_url, &profile.stream_error) {
                        (Some(url), _) => url.clone(),
                        (None, Some(error)) => format!("(no stream URL: {error})"),
                        (None, None) => "(no stream URL)".to_owned(),
                    },
                ]
            })
            .collect();
        let heading = ["PROFILE", "RESOLUTION", "FPS", "CODEC", "STREAM"].map(str::to_owned);
        let widths: Vec<usize> = (0..4)
            .map(|column| {
                std::iter::once(&heading)
                    .chain(&rows)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&heading).chain(&rows) {
            out.push_str("  ");
            for (column, width) in widths.iter().enumerate() {
                out.push_str(&format!("{:<width$}  ", row[column]));
            }
            out.push_str(&row[4]);
            out.push('\n');
        }
    }
    out
}
