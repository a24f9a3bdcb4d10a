//! The hub's config file: where PostgreSQL is, which rooms to pull, how the
//! hub proves who it is to them, and where `/healthz` and `/metrics` listen.
//!
//! # Design
//! Values that need checks serde cannot express are read as
//! [`toml::Spanned`], so every problem, whether serde's or ours, is reported
//! as `FILE:LINE:COL: what is wrong` with a hint, all of them in one pass
//! once the file parses. The documented example is
//! `config/province-hub.example.toml`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::store::bundle::UnknownRooms;

/// The most events the hub asks for in one batch; the agent never sends more.
pub const MAX_BATCH: u32 = 10_000;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub http: HttpConfig,
    pub tls: TlsConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    /// Where rooms the hub cannot reach open their own links; no dial-in without it.
    pub dial_in: Option<DialInConfig>,
    #[serde(default)]
    pub rooms: Vec<RoomConfig>,
    /// The province's keys for records carried on USB sticks; `import-bundle` needs them.
    pub usb: Option<UsbConfig>,
    /// The province's CA for the rooms' HTTPS certificates; without it the
    /// hub pushes none.
    pub lan_ca: Option<LanCaConfig>,
    /// The learning material the hub pushes to the rooms; none without it.
    pub content: Option<ContentConfig>,
}

/// The province's keys for the rooms' USB bundles, made by `classroom-bundle keygen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbConfig {
    /// The province's age identity file (`province.age`): opens the rooms' records bundles.
    pub identity: Spanned<PathBuf>,
    /// The province's Ed25519 signing key file (`province-signing.key`): signs acknowledgements.
    pub signing_key: Spanned<PathBuf>,
    /// A bundle from a room the hub has never heard of: `register` it or `refuse` it.
    #[serde(default = "register_unknown_rooms")]
    pub unknown_rooms: UnknownRooms,
}

fn register_unknown_rooms() -> UnknownRooms {
    UnknownRooms::Register
}

/// The CA that issues the rooms' certificates for HTTPS on their LAN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanCaConfig {
    /// The CA's certificate (PEM), the one every school's devices trust.
    pub cert: Spanned<PathBuf>,
    /// The CA's private key (PEM).
    pub key: Spanned<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq connection string: `host=... port=... user=... dbname=...` or `postgresql://...`.
    pub url: Spanned<String>,
    /// The longest a connection attempt may take, in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: Spanned<u64>,
    /// Connections the hub holds at most, shared by every room's link.
    #[serde(default = "default_pool_size")]
    pub max_connections: Spanned<usize>,
}

fn default_pool_size() -> Spanned<usize> {
    Spanned::new(0..0, 16)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `/healthz` and `/metrics` are served.
    pub listen: SocketAddr,
    /// Connections served at once; more are closed at once.
    pub max_connections: Spanned<usize>,
    /// The longest one connection may stay open, in seconds.
    pub connection_timeout_seconds: Spanned<u64>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9480)),
            max_connections: Spanned::new(0..0, 64),
            connection_timeout_seconds: Spanned::new(0..0, 10),
        }
    }
}

/// The hub's side of mutual TLS with the rooms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Talk to the rooms without TLS: only for tests on loopback.
    #[serde(default = "not_plaintext")]
    pub plaintext: Spanned<bool>,
    /// The hub's client certificate chain (PEM), shown to the rooms.
    pub cert: Option<Spanned<PathBuf>>,
    /// The private key (PEM) of `cert`.
    pub key: Option<Spanned<PathBuf>>,
    /// The CA certificate(s) (PEM) the rooms' certificates chain to.
    pub room_ca: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Events asked for in one batch (1-10000); each batch is one transaction.
    pub max_batch: Spanned<u32>,
    /// The largest gRPC message accepted from a room, in bytes.
    pub max_message_bytes: Spanned<usize>,
    /// The longest a connection attempt or a unary call (status, ack) may take, in seconds.
    pub request_timeout_seconds: Spanned<u64>,
    /// A Pull stream silent this long (no batch, no heartbeat) is dropped and dialled again, in seconds.
    pub silence_timeout_seconds: Spanned<u64>,
    /// The first retry's delay after a failure, in milliseconds; it doubles up to `retry_max_ms`.
    pub retry_min_ms: Spanned<u64>,
    /// The longest delay between retries, in milliseconds.
    pub retry_max_ms: Spanned<u64>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_batch: Spanned::new(0..0, 5_000),
            max_message_bytes: Spanned::new(0..0, 16 * 1024 * 1024),
            request_timeout_seconds: Spanned::new(0..0, 30),
            silence_timeout_seconds: Spanned::new(0..0, 30),
            retry_min_ms: Spanned::new(0..0, 500),
            retry_max_ms: Spanned::new(0..0, 60_000),
        }
    }
}

/// The listener for rooms that dial the hub (`hub.connect` in the room's config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialInConfig {
    /// Where rooms connect, `ADDRESS:PORT`.
    pub listen: Spanned<SocketAddr>,
    /// The hub's server certificate chain (PEM), for the name rooms dial (their `hub.connect_name`).
    pub cert: Option<Spanned<PathBuf>>,
    /// The private key (PEM) of `cert`.
    pub key: Option<Spanned<PathBuf>>,
    /// The CA certificate(s) (PEM) that vouch for the rooms' client certificates.
    pub room_ca: Option<Spanned<PathBuf>>,
    /// Links open at once, handshakes included; a connection over the cap is closed at once.
    #[serde(default = "default_max_links")]
    pub max_links: Spanned<usize>,
}

fn default_max_links() -> Spanned<usize> {
    Spanned::new(0..0, 2_000)
}

/// One room the hub pulls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    pub school_code: Spanned<String>,
    pub room_id: Spanned<String>,
    /// The room agent's gRPC address, `HOST:PORT`.
    pub address: Spanned<String>,
    /// The name the room's certificate is issued for, when it is not the address's host.
    pub tls_server_name: Option<String>,
}

fn not_plaintext() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_connect_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

/// A room as the hub's tables name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    pub school_code: String,
    pub room_id: String,
}

impl std::fmt::Display for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.school_code, self.room_id)
    }
}

impl RoomConfig {
    pub fn key(&self) -> RoomKey {
        RoomKey {
            school_code: self.school_code.get_ref().clone(),
            room_id: self.room_id.get_ref().clone(),
        }
    }
}

impl SyncConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(*self.request_timeout_seconds.get_ref())
    }

    pub fn silence_timeout(&self) -> Duration {
        Duration::from_secs(*self.silence_timeout_seconds.get_ref())
    }
}

/// One thing wrong with the file, at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {reason}\n  hint: check the path and that this user may read it", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            format!(
                "{}:{}:{}: {}\n  hint: {}",
                path.display(),
                p.line,
                p.column,
                p.message,
                p.hint
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const EXAMPLE: &str = "config/province-hub.example.toml";

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|err| ConfigError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        Config::parse(path, &source)
    }

    /// Checks `source`, the text of the file at `path`; relative TLS paths are
    /// resolved against the file's directory.
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let mut config: Config = toml::from_str(source).map_err(|err| {
            let (line, column) = line_column(source, err.span().map_or(0, |s| s.start));
            let message = err.message().trim().to_owned();
            let hint = hint_for(&message);
            invalid(vec![Problem {
                line,
                column,
                message,
                hint,
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(usb) = &mut config.usb {
            for file in [&mut usb.identity, &mut usb.signing_key] {
                let resolved = base.join(file.get_ref());
                *file.get_mut() = resolved;
            }
        }
        if let Some(content) = &mut config.content {
            let resolved = base.join(content.dir.get_ref());
            *content.dir.get_mut() = resolved;
        }
        let mut problems = Vec::new();
        config.check(&mut |span: Range<usize>, message: String, hint: &str| {
            let (line, column) = line_column(source, span.start);
            problems.push(Problem {
                line,
                column,
                message,
                hint: hint.to_owned(),
            });
        });
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return Err(invalid(problems));
        }
        let dial_in_files = config
            .dial_in
            .iter_mut()
            .flat_map(|d| [&mut d.cert, &mut d.key, &mut d.room_ca]);
        let lan_ca = config.lan_ca.as_mut().map(|ca| [&mut ca.cert, &mut ca.key]);
        for file in [
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.tls.room_ca,
        ]
        .into_iter()
        .chain(dial_in_files)
        .flatten()
        .chain(lan_ca.into_iter().flatten())
        {
            let resolved = base.join(file.get_ref());
            *file.get_mut() = resolved;
        }
        if let Some(ca) = &config.lan_ca
            && let Err(err) =
                crate::sync::lan_cert::LanCa::load(ca.cert.get_ref(), ca.key.get_ref())
        {
            let (line, column) = line_column(source, ca.cert.span().start);
            return Err(invalid(vec![Problem {
                line,
                column,
                message: format!("lan_ca: {err}"),
                hint: "make the province's LAN CA with `firmware-agent tls init-ca --dir DIR` and name its ca.pem and ca-key.pem".to_owned(),
            }]));
        }
        Ok(config)
    }

    fn check(&self, report: &mut dyn FnMut(Range<usize>, String, &str)) {
        let url = &self.postgres.url;
        if let Err(err) = tokio_postgres::Config::from_str(url.get_ref()) {
            report(
                url.span(),
                format!("postgres.url is not a PostgreSQL connection string: {err}"),
                "write \"host=127.0.0.1 port=5432 user=hub dbname=province\" or \"postgresql://hub@127.0.0.1/province\"",
            );
        }
        positive(
            report,
            &self.postgres.connect_timeout_seconds,
            "postgres.connect_timeout_seconds",
        );
        positive(
            report,
            &self.postgres.max_connections,
            "postgres.max_connections",
        );
        let http = &self.http;
        positive(report, &http.max_connections, "http.max_connections");
        positive(
            report,
            &http.connection_timeout_seconds,
            "http.connection_timeout_seconds",
        );
        self.check_tls(report);
        self.check_dial_in(report);
        let sync = &self.sync;
        let batch = *sync.max_batch.get_ref();
        if !(1..=MAX_BATCH).contains(&batch) {
            report(
                sync.max_batch.span(),
                format!("sync.max_batch is {batch}; it must be 1 to {MAX_BATCH}"),
                "5000 lands a backlog fast; each batch is one PostgreSQL transaction",
            );
        }
        if *sync.max_message_bytes.get_ref() < 64 * 1024 {
            report(
                sync.max_message_bytes.span(),
                "sync.max_message_bytes is below 65536: a batch of one event may not fit".into(),
                "leave the default (16777216) unless the rooms' hub.max_message_bytes says otherwise",
            );
        }
        positive(
            report,
            &sync.request_timeout_seconds,
            "sync.request_timeout_seconds",
        );
        positive(
            report,
            &sync.silence_timeout_seconds,
            "sync.silence_timeout_seconds",
        );
        positive(report, &sync.retry_min_ms, "sync.retry_min_ms");
        if sync.retry_max_ms.get_ref() < sync.retry_min_ms.get_ref() {
            report(
                sync.retry_max_ms.span(),
                format!(
                    "sync.retry_max_ms ({}) is below sync.retry_min_ms ({})",
                    sync.retry_max_ms.get_ref(),
                    sync.retry_min_ms.get_ref()
                ),
                "the longest delay between retries must be at least the first one",
            );
        }
        self.check_rooms(report);
        if let Some(usb) = &self.usb {
            check_usb(usb, report);
        }
        if let Some(content) = &self.content {
            check_content(content, report);
        }
    }

    fn check_tls(&self, report: &mut dyn FnMut(Range<usize>, String, &str)) {
        let tls = &self.tls;
        let files = [
            ("tls.cert", &tls.cert),
            ("tls.key", &tls.key),
            ("tls.room_ca", &tls.room_ca),
        ];
        if *tls.plaintext.get_ref() {
            for (key, file) in files {
                if let Some(file) = file {
                    report(
                        file.span(),
                        format!("{key} is set but tls.plaintext = true"),
                        "plaintext is for loopback tests only: remove tls.plaintext, or remove the TLS files",
                    );
                }
            }
        } else {
            for (key, file) in files {
                if file.is_none() {
                    report(
                        tls.plaintext.span(),
                        format!("{key} is missing: the rooms accept only a hub with a certificate"),
                        "set tls.cert, tls.key and tls.room_ca (PEM files), or tls.plaintext = true for a loopback test",
                    );
                }
            }
        }
    }

    fn check_dial_in(&self, report: &mut dyn FnMut(Range<usize>, String, &str)) {
        let Some(dial_in) = &self.dial_in else {
            return;
        };
        positive(report, &dial_in.max_links, "dial_in.max_links");
        let files = [
            ("dial_in.cert", &dial_in.cert),
            ("dial_in.key", &dial_in.key),
            ("dial_in.room_ca", &dial_in.room_ca),
        ];
        if *self.tls.plaintext.get_ref() {
            for (key, file) in files {
                if let Some(file) = file {
                    report(
                        file.span(),
                        format!("{key} is set but tls.plaintext = true"),
                        "plaintext is for loopback tests only: remove tls.plaintext, or remove the dial-in TLS files",
                    );
                }
            }
        } else {
            for (key, file) in files {
                if file.is_none() {
                    report(
                        dial_in.listen.span(),
                        format!("{key} is missing: rooms dial the hub only over mutual TLS"),
                        "set dial_in.cert, dial_in.key and dial_in.room_ca (PEM files), or tls.plaintext = true for a loopback test",
                    );
                }
            }
        }
    }

    fn check_rooms(&self, report: &mut dyn FnMut(Range<usize>, String, &str)) {
        let mut seen = HashSet::new();
        for (i, room) in self.rooms.iter().enumerate() {
            for (name, value) in [
                ("school_code", &room.school_code),
                ("room_id", &room.room_id),
            ] {
                if !valid_code(value.get_ref()) {
                    report(
                        value.span(),
                        format!("rooms[{i}].{name} {:?} is not a code", value.get_ref()),
                        "1-32 letters, digits, - or _, as in the room's own [room] section",
                    );
                }
            }
            if !seen.insert(room.key()) {
                report(
                    room.room_id.span(),
                    format!("rooms[{i}] repeats the room {}", room.key()),
                    "each room is listed once; remove the repeated [[rooms]] entry",
                );
            }
            if let Err(reason) = parse_address(room.address.get_ref()) {
                report(
                    room.address.span(),
                    format!("rooms[{i}].address {:?}: {reason}", room.address.get_ref()),
                    "write the room's gRPC HOST:PORT, such as \"10.20.1.15:50051\" or \"p201.thcs0101.lc.edu.vn:50051\"",
                );
            }
        }
    }
}

/// The key files must load and be readable by their owner only.
fn check_usb(usb: &UsbConfig, report: &mut dyn FnMut(Range<usize>, String, &str)) {
    use classroom_bundle::keys;
    use std::os::unix::fs::PermissionsExt;
    let loaded = [
        (
            "usb.identity",
            &usb.identity,
            keys::load_identity(usb.identity.get_ref()).err(),
        ),
        (
            "usb.signing_key",
            &usb.signing_key,
            keys::load_signing_key(usb.signing_key.get_ref()).err(),
        ),
    ];
    for (key, file, error) in loaded {
        if let Some(error) = error {
            report(
                file.span(),
                format!("{key}: {error}"),
                "name the files `classroom-bundle keygen --out DIR` made (province.age, province-signing.key)",
            );
        } else if let Ok(metadata) = std::fs::metadata(file.get_ref())
            && metadata.permissions().mode() & 0o077 != 0
        {
            report(
                file.span(),
                format!(
                    "{key}: {} may be read by other users (mode {:o})",
                    file.get_ref().display(),
                    metadata.permissions().mode() & 0o777
                ),
                "a province key opens every room's records: chmod 600 it",
            );
        }
    }
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    report: &mut dyn FnMut(Range<usize>, String, &str),
    value: &Spanned<T>,
    key: &str,
) {
    if *value.get_ref() <= T::default() {
        report(
            value.span(),
            format!("{key} is {}; it must be above 0", value.get_ref()),
            &format!("{EXAMPLE} shows the default and its meaning"),
        );
    }
}

/// School and room codes as the agent accepts them.
pub fn valid_code(code: &str) -> bool {
    (1..=32).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What is wrong with a room's `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("give HOST:PORT without a scheme; tls.plaintext chooses http or https")]
    Scheme,
    #[error("no port")]
    NoPort,
    #[error("{0:?} is not a port (1-65535)")]
    BadPort(String),
    #[error("{0:?} is not a host name or address")]
    BadHost(String),
}

/// `HOST:PORT` with a host and a non-zero port.
pub fn parse_address(address: &str) -> Result<(String, u16), AddressError> {
    if address.contains("://") {
        return Err(AddressError::Scheme);
    }
    let (host, port) = address.rsplit_once(':').ok_or(AddressError::NoPort)?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| AddressError::BadPort(port.to_owned()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(AddressError::BadHost(host.to_owned()));
    }
    Ok((host.to_owned(), port))
}

/// One-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn hint_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("remove it or check its spelling; {EXAMPLE} lists every key")
    } else if message.starts_with("missing field") {
        format!("add it; {EXAMPLE} shows every key with its meaning")
    } else if message.contains("socket address") {
        "write an address and port, such as \"127.0.0.1:9480\"".into()
    } else {
        format!("{EXAMPLE} shows the expected form of each value")
    }
}

/// Where the province keeps the files it pushes to the rooms, and how fast it pushes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// The directory the province's staff fill: `all/` for every room,
    /// `schools/<school_code>/` for a school's rooms, `rooms/<school_code>/<room_id>/`
    /// for one room. Relative to the config file's directory.
    pub dir: Spanned<PathBuf>,
    /// Files pushed to one room at once.
    #[serde(default = "default_files_at_once")]
    pub files_at_once: Spanned<usize>,
    /// The slowest link a push is allowed, in KiB per second: a file's push
    /// times out after `sync.request_timeout_seconds` plus its size at this rate.
    #[serde(default = "default_min_kib_per_second")]
    pub min_kib_per_second: Spanned<u64>,
}

fn default_files_at_once() -> Spanned<usize> {
    Spanned::new(0..0, 2)
}

fn default_min_kib_per_second() -> Spanned<u64> {
    Spanned::new(0..0, 64)
}

impl ContentConfig {
    /// How long pushing a file of `size` bytes may take.
    pub fn push_timeout(&self, sync: &SyncConfig, size: u64) -> Duration {
        let rate = (*self.min_kib_per_second.get_ref()).max(1) * 1024;
        sync.request_timeout() + Duration::from_secs(size.div_ceil(rate))
    }
}

/// The content directory must exist and be a directory the hub can list.
fn check_content(content: &ContentConfig, report: &mut dyn FnMut(Range<usize>, String, &str)) {
    let dir = &content.dir;
    match std::fs::read_dir(dir.get_ref()) {
        Ok(_) => {}
        Err(err) => report(
            dir.span(),
            format!("content.dir {}: {err}", dir.get_ref().display()),
            "create the directory (with all/, schools/<school_code>/ and rooms/<school_code>/<room_id>/ under it) or correct the path; the hub's user must be able to read it",
        ),
    }
    positive(report, &content.files_at_once, "content.files_at_once");
    positive(
        report,
        &content.min_kib_per_second,
        "content.min_kib_per_second",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[postgres]\nurl = \"host=127.0.0.1 user=hub dbname=province\"\n\n[tls]\nplaintext = true\n\n[[rooms]]\nschool_code = \"LC-01\"\nroom_id = \"P201\"\naddress = \"127.0.0.1:50051\"\n";

    fn problems(source: &str) -> Vec<Problem> {
        match Config::parse(Path::new("hub.toml"), source) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let example = include_str!("../../config/province-hub.example.toml");
        let config = Config::parse(Path::new("/etc/province-hub/hub.toml"), example).unwrap();
        assert_eq!(config.rooms.len(), 1);
        assert!(!*config.tls.plaintext.get_ref());
        let dial_in = config.dial_in.expect("the example accepts dial-in links");
        assert_eq!(
            dial_in.room_ca.unwrap().get_ref(),
            Path::new("/etc/province-hub/tls/rooms-ca.pem")
        );
    }

    #[test]
    fn a_valid_file_is_read() {
        let config = Config::parse(Path::new("hub.toml"), GOOD).unwrap();
        assert_eq!(config.rooms[0].key().to_string(), "LC-01/P201");
        assert_eq!(*config.sync.max_batch.get_ref(), 5_000);
    }

    #[test]
    fn every_bad_value_is_reported_at_its_place() {
        let source = GOOD
            .replace("127.0.0.1:50051", "http://x:1")
            .replace("\"P201\"", "\"P 201\"")
            + "\n[sync]\nmax_batch = 0\nretry_min_ms = 900\nretry_max_ms = 100\n";
        let found = problems(&source);
        let places: Vec<(usize, usize)> = found.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(
            places,
            vec![(9, 11), (10, 11), (13, 13), (15, 16)],
            "{found:#?}"
        );
        assert!(
            found[1].message.contains("without a scheme") || found[1].hint.contains("HOST:PORT")
        );
    }

    #[test]
    fn tls_files_are_required_unless_plaintext() {
        let found = problems(&GOOD.replace("plaintext = true", "plaintext = false"));
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].message.contains("tls.cert is missing"));
    }

    #[test]
    fn dial_in_needs_its_tls_files_unless_plaintext() {
        let with_tls = GOOD.replace(
            "plaintext = true",
            "cert = \"hub.pem\"\nkey = \"hub.key\"\nroom_ca = \"ca.pem\"",
        );
        let source = format!(
            "{with_tls}\n[dial_in]\nlisten = \"0.0.0.0:50443\"\nkey = \"in.key\"\nmax_links = 0\n"
        );
        let found = problems(&source);
        let places: Vec<(usize, usize)> = found.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(places, vec![(15, 10), (15, 10), (17, 13)], "{found:#?}");
        assert!(found[0].message.contains("dial_in.cert is missing"));
        assert!(found[1].message.contains("dial_in.room_ca is missing"));
        assert!(found[2].message.contains("dial_in.max_links"));
        let plaintext = format!("{GOOD}\n[dial_in]\nlisten = \"127.0.0.1:50443\"\n");
        let config = Config::parse(Path::new("hub.toml"), &plaintext).unwrap();
        assert_eq!(*config.dial_in.unwrap().max_links.get_ref(), 2_000);
        let bad_address = format!("{GOOD}\n[dial_in]\nlisten = \"hub:50443\"\n");
        assert_eq!(
            (
                problems(&bad_address)[0].line,
                problems(&bad_address)[0].column
            ),
            (13, 10)
        );
    }

    #[test]
    fn an_unknown_key_is_located() {
        let found = problems(&GOOD.replace("[tls]\n", "[tls]\nplaintxt = true\n"));
        assert_eq!((found[0].line, found[0].column), (5, 1), "{found:#?}");
        assert!(found[0].message.contains("plaintxt"));
    }

    #[test]
    fn a_repeated_room_is_refused() {
        let source = format!(
            "{GOOD}\n[[rooms]]\nschool_code = \"LC-01\"\nroom_id = \"P201\"\naddress = \"127.0.0.1:50052\"\n"
        );
        let found = problems(&source);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("repeats the room LC-01/P201"));
        assert_eq!(found[0].line, 14);
    }

    #[test]
    fn a_missing_content_dir_is_reported_at_its_place() {
        let source = format!("{GOOD}\n[content]\ndir = \"no-such-dir\"\nfiles_at_once = 0\n");
        let found = problems(&source);
        let places: Vec<(usize, usize)> = found.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(places, vec![(13, 7), (14, 17)], "{found:#?}");
        assert!(found[0].message.contains("no-such-dir"), "{found:#?}");
        assert!(found[1].message.contains("content.files_at_once"));
    }
}
