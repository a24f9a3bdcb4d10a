//! The room's configuration: one TOML file that IT staff copy from
//! `config/agent.example.toml`, edit, and check with `firmware-agent check-config`.
//!
//! # Design
//! - Every section but `[room]` has defaults, so a room needs only its identity.
//! - Unknown keys and wrong types are errors, never silently ignored: a typo in a
//!   key that would fall back to a default is the most expensive kind of mistake
//!   when a hundred rooms are provisioned by copying one file.
//! - Relative paths are resolved against the directory of the config file, so a
//!   config and the data it names can be moved together.
//! - Loading collects every problem it can find (see [`diagnostics`]) instead of
//!   stopping at the first, each with a line and column.
//! - Each part owns its section in its own `config.rs` (`[panel]` in
//!   `panel/config.rs`, `[hub]` in `hub/config.rs`…), with the rules that
//!   concern that section alone. Of this module they import only
//!   [`diagnostics`] (a problem's type), and nothing that imports this module
//!   (`agent`, the parts' running code), so gathering them makes no circle.
//!   This module keeps the whole file, the sections no part owns (`[room]`,
//!   `[storage]`, `[http]`, `[log]`), loading, and what spans sections, as the
//!   one place that sees the whole file: the check that the content store holds
//!   no data or config ([`content_store`]), and what a section's rules need of
//!   the rest (the devices for the timetable, the bell patterns for the devices,
//!   the largest event for `hub.max_message_bytes`), handed in as plain values.

pub mod content_store;
pub mod diagnostics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::actuators::config::ActuatorsConfig;
use crate::attendance::config::AttendanceConfig;
use crate::hub::config::HubConfig;
use crate::panel::config::PanelConfig;
use crate::schedule::config::ScheduleConfig;
pub use diagnostics::{ConfigError, Problem};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub room: RoomConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub hub: HubConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub panel: PanelConfig,
    #[serde(default)]
    pub tablets: crate::tablets::TabletsConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub actuators: ActuatorsConfig,
    #[serde(default)]
    pub attendance: AttendanceConfig,
}

/// Who this room is: the identity every record sent to the hub carries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    /// The school's code in the provincial education database.
    pub school_code: String,
    /// The room's id, unique within the school.
    pub room_id: String,
    /// A name for people: shown on the panel and advertised to tablets.
    #[serde(default)]
    pub name: String,
    /// IANA time zone of the school day.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "Asia/Ho_Chi_Minh".to_owned()
}

/// Where the agent keeps its database and files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/firmware-agent"),
        }
    }
}

/// The HTTP server: panel, health, metrics and the tablets' channel.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Host names the agent answers to besides its addresses, `localhost`
    /// and its mDNS name (see `http::guard`).
    pub server_names: Vec<String>,
    /// Connections open at once from the LAN (see `http::limits`).
    pub max_connections: usize,
    /// Connections open at once from one LAN address.
    pub max_connections_per_address: usize,
    /// How long a new connection has to send its first request's headers, in milliseconds.
    pub header_read_timeout_ms: u32,
    /// The room's certificate (PEM, from `firmware-agent tls issue`); with
    /// `tls_key`, every route is served over HTTPS and `listen` only redirects.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Where HTTPS is served when `tls_cert` is set.
    pub tls_listen: SocketAddr,
    /// The province's LAN CA (PEM): a certificate the hub pushes is served
    /// only if it chains to it.
    pub province_lan_ca: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            server_names: Vec::new(),
            max_connections: 256,
            max_connections_per_address: 32,
            header_read_timeout_ms: 5000,
            tls_cert: None,
            tls_key: None,
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            province_lan_ca: None,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive, such as `info` or `info,firmware_agent::store=debug`.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Auto,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald when started by systemd, readable text on a terminal.
    Auto,
    Text,
    Json,
    Journald,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|err| ConfigError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        let source = diagnostics::utf8_text(path, bytes)?;
        Self::parse(path, &source)
    }

    /// Parses and validates `source`; `path` names it in messages and anchors relative paths.
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        let mut config: Config = diagnostics::deserialize(path, source)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let problems = config.semantic_problems(base);
        if !problems.is_empty() {
            return Err(diagnostics::located(path, source, problems));
        }
        config.storage.data_dir = resolve(base, &config.storage.data_dir);
        config.hub.resolve_paths(|path| resolve(base, path));
        for path in [
            &mut config.http.tls_cert,
            &mut config.http.tls_key,
            &mut config.http.province_lan_ca,
        ]
        .into_iter()
        .flatten()
        {
            *path = resolve(base, path);
        }
        config.attendance.resolve_paths(|path| resolve(base, path));
        Ok(config)
    }

    /// The rules serde cannot express. Each problem names the key path it
    /// concerns. `base` is the config file's directory.
    fn semantic_problems(&self, base: &Path) -> Vec<diagnostics::Unlocated> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            problems.push(diagnostics::Unlocated {
                key: key.to_owned(),
                message,
                hint: hint.to_owned(),
            })
        };
        for (key, value) in [
            ("room.school_code", &self.room.school_code),
            ("room.room_id", &self.room.room_id),
        ] {
            if !is_identifier(value) {
                problem(
                    key,
                    format!("`{value}` is not a valid identifier"),
                    "use 1 to 32 letters, digits, `-` or `_`, as in the provincial database",
                );
            }
        }
        if jiff::tz::TimeZone::get(&self.room.timezone).is_err() {
            problem(
                "room.timezone",
                format!("unknown time zone `{}`", self.room.timezone),
                "use an IANA zone name such as `Asia/Ho_Chi_Minh`",
            );
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            problem(
                "storage.data_dir",
                "the data directory is empty".to_owned(),
                "name a directory, such as `/var/lib/firmware-agent`",
            );
        }
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&self.log.filter) {
            problem(
                "log.filter",
                format!("invalid filter: {err}"),
                "use a directive such as `info` or `info,firmware_agent=debug`",
            );
        }
        if self.http.listen == self.hub.listen {
            problem(
                "hub.listen",
                format!("{} is also http.listen", self.hub.listen),
                "give the gRPC server its own port, such as 50051",
            );
        }
        if !(1..=4096).contains(&self.http.max_connections) {
            problem(
                "http.max_connections",
                format!("{} is out of range", self.http.max_connections),
                "use 1 to 4096; 256 serves 40 tablets, the teacher's laptops and their browsers",
            );
        }
        if !(1..=self.http.max_connections).contains(&self.http.max_connections_per_address) {
            problem(
                "http.max_connections_per_address",
                format!(
                    "{} with http.max_connections = {}",
                    self.http.max_connections_per_address, self.http.max_connections
                ),
                "use 1 to http.max_connections; 32 lets a laptop's browser open its pages",
            );
        }
        if !(100..=60_000).contains(&self.http.header_read_timeout_ms) {
            problem(
                "http.header_read_timeout_ms",
                format!("{} ms is out of range", self.http.header_read_timeout_ms),
                "use 100 to 60000; 5000 is ample on the room's Wi-Fi",
            );
        }
        let data_dir = resolve(base, &self.storage.data_dir);
        let content_dir = resolve(&data_dir, &self.tablets.content_dir);
        if let Some(message) =
            content_store::dir_problem(&content_dir, &data_dir, &resolve(base, Path::new(".")))
        {
            problem(
                "tablets.content_dir",
                message,
                "paired tablets read every file in it: name a directory of its own, such as \"content\" (inside the data directory)",
            );
        }
        problems.extend(crate::tls::room::config_problems(&self.http, base));
        problems.extend(self.panel.problems());
        problems.extend(self.hub.problems(crate::hub::wire::largest_message()));
        for (key, message, hint) in crate::tablets::config_problems(&self.tablets) {
            problems.push(diagnostics::Unlocated {
                key: key.to_owned(),
                message,
                hint: hint.to_owned(),
            });
        }
        problems.extend(crate::actuators::config::problems(
            &self.actuators,
            &self.schedule.patterns,
        ));
        let devices: Vec<&str> = self
            .actuators
            .device
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        problems.extend(crate::schedule::config::problems(&self.schedule, &devices));
        problems.extend(self.attendance.problems());
        problems
    }

    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("agent.sqlite3")
    }
}

fn is_identifier(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `path`, relative to `base` unless absolute.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    // Lexically: `config/../var` becomes `var`, so messages name the real place.
    let mut clean = std::path::absolute(&joined).unwrap_or(joined);
    clean = clean.components().fold(PathBuf::new(), |mut out, part| {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
        out
    });
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::parse(Path::new("/etc/agent/room.toml"), MINIMAL).unwrap();
        assert_eq!(config.room.timezone, "Asia/Ho_Chi_Minh");
        assert_eq!(config.http.listen.port(), 8080);
        assert_eq!(
            config.database_path(),
            Path::new("/var/lib/firmware-agent/agent.sqlite3")
        );
    }

    #[test]
    fn relative_data_dir_is_resolved_against_the_config_file() {
        let source = format!("{MINIMAL}[storage]\ndata_dir = \"data\"\n");
        let config = Config::parse(Path::new("/etc/agent/room.toml"), &source).unwrap();
        assert_eq!(config.storage.data_dir, Path::new("/etc/agent/data"));
    }

    #[test]
    fn a_content_dir_holding_the_data_the_config_or_the_system_is_refused() {
        let data = "[storage]\ndata_dir = \"/var/lib/firmware-agent\"\n";
        for (content_dir, reason) in [
            (".", "holds the data directory /var/lib/firmware-agent"),
            ("..", "holds the data directory /var/lib/firmware-agent"),
            ("/srv/agent", "holds the config file's directory /srv/agent"),
            ("/", "holds the data directory"),
            ("/usr", "is or holds the system directory /usr"),
            ("/lib", "is or holds the system directory /lib"),
            ("/etc", "is or holds the system directory /etc"),
        ] {
            let source = format!("{MINIMAL}{data}[tablets]\ncontent_dir = \"{content_dir}\"\n");
            let text = Config::parse(Path::new("/srv/agent/room.toml"), &source)
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("room.toml:7:1: tablets.content_dir:") && text.contains(reason),
                "{content_dir}: {text}"
            );
        }
        for content_dir in [
            "content",
            "/var/lib/firmware-agent/content",
            "/srv/lessons",
            "/home/teacher/bai-giang",
        ] {
            let source = format!("{MINIMAL}{data}[tablets]\ncontent_dir = \"{content_dir}\"\n");
            Config::parse(Path::new("/srv/agent/room.toml"), &source)
                .unwrap_or_else(|err| panic!("{content_dir}: {err}"));
        }
    }

    #[test]
    fn semantic_problem_is_located_at_its_key() {
        let source =
            "[room]\nschool_code = \"LC 0101\"\nroom_id = \"6A1\"\ntimezone = \"Mars/Olympus\"\n";
        let err = Config::parse(Path::new("room.toml"), source).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("room.toml:2:1: room.school_code"), "{text}");
        assert!(
            text.contains("room.toml:4:1: room.timezone: unknown time zone"),
            "{text}"
        );
    }
}
