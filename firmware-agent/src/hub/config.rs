//! The `[hub]` section: where the gRPC server listens, how it proves who it is
//! and whom it lets in, where the room dials the hub when the hub cannot reach
//! it, and how long acknowledged records are kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::diagnostics::Unlocated;

/// The largest `hub.max_message_bytes` accepted (64 MiB).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The gRPC server the provincial hub pulls from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    pub listen: SocketAddr,
    /// Serve, and dial out, without TLS. Only for the demo and loopback tests:
    /// anyone who can reach the port or the link could read the room's records.
    pub plaintext: bool,
    /// The agent's certificate chain (PEM), presented to the hub.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) (PEM) whose client certificates may call the service.
    /// Without it (and with `connect`), the room does not listen and only dials out.
    pub client_ca: Option<PathBuf>,
    /// The hub's address, `host:port`, for a room the hub cannot reach (NAT,
    /// 4G): the room opens the link itself and serves the hub over it.
    pub connect: Option<String>,
    /// The CA certificate(s) (PEM) that sign the hub's certificate, when dialling out.
    pub connect_ca: Option<PathBuf>,
    /// The name the hub's certificate must carry; the host of `connect` when unset.
    pub connect_name: Option<String>,
    /// Days an acknowledged event is kept before it is pruned. Unacknowledged
    /// events are never pruned.
    pub retention_days: u32,
    /// The largest gRPC message accepted or sent, in bytes; at least the
    /// largest message one event can need (`hub::wire::largest_message`).
    pub max_message_bytes: usize,
    /// The longest a unary call (Ack, GetStatus, PutRoster) may take, in seconds;
    /// a shorter deadline sent by the client wins.
    pub request_timeout_seconds: u64,
    /// The province's age recipient (`age1…`): records carried out on a USB
    /// stick (`hub export`) are encrypted to it.
    pub province_recipient: Option<String>,
    /// The province's Ed25519 verifying key (`ed25519:…`): acknowledgement
    /// files (`hub import-ack`) and office bundles (`hub import`) must be signed with it.
    pub province_signing_key: Option<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            plaintext: false,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            connect: None,
            connect_ca: None,
            connect_name: None,
            retention_days: 30,
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_seconds: 30,
            province_recipient: None,
            province_signing_key: None,
        }
    }
}

/// The three files mutual TLS needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// Where and how the room dials the hub, as the config decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTarget {
    pub host: String,
    pub port: u16,
    /// `None` with `hub.plaintext = true`.
    pub tls: Option<DialTls>,
}

impl std::fmt::Display for DialTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The room's certificate and key, presented to the hub, and what the hub's must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hub_ca: PathBuf,
    /// The DNS name or IP address the hub's certificate must carry.
    pub server_name: String,
}

/// What is wrong with a `host:port` the hub is to be dialled at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("has no port")]
    NoPort,
    #[error("has an unclosed `[` or no IPv6 address in brackets")]
    BadBrackets,
    #[error("has an IPv6 address outside brackets")]
    BareIpv6,
    #[error("has no host name or address before the port")]
    NoHost,
    #[error("has `{0}` for a port, not 1 to 65535")]
    BadPort(String),
}

/// `host:port`, an IPv6 address in brackets (`[2001:db8::1]:50052`).
pub fn parse_host_port(text: &str) -> Result<(String, u16), HostPortError> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(HostPortError::NoPort);
    };
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .filter(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok())
            .ok_or(HostPortError::BadBrackets)?,
        None if host.contains(':') => return Err(HostPortError::BareIpv6),
        None => host,
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(HostPortError::NoHost);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostPortError::BadPort(port.to_owned())),
        Ok(port) => Ok((host.to_owned(), port)),
    }
}

/// Why the room cannot use the province's keys its config names.
#[derive(Debug, thiserror::Error)]
pub enum ProvinceKeyError {
    #[error(
        "hub.province_recipient is not set: records are carried out only encrypted to the province's key; \
         put the province's age recipient (age1…) in the [hub] section"
    )]
    RecipientMissing,
    #[error(
        "hub.province_signing_key is not set: files from the province are applied only when signed by its key; \
         put the province's verifying key (ed25519:…) in the [hub] section"
    )]
    SigningKeyMissing,
    #[error("{key}: {err}")]
    Invalid {
        key: &'static str,
        err: classroom_bundle::keys::KeyTextError,
    },
}

/// Whether `name` can be what a certificate is verified against.
fn is_server_name(name: &str) -> bool {
    tokio_rustls::rustls::pki_types::ServerName::try_from(name).is_ok()
}

/// How the server is to be reached, as the config decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Plaintext,
    MutualTls(TlsFiles),
    /// Neither TLS files nor `plaintext = true`: the server cannot start.
    Unconfigured,
}

impl HubConfig {
    pub fn transport(&self) -> Transport {
        match (
            self.plaintext,
            &self.tls_cert,
            &self.tls_key,
            &self.client_ca,
        ) {
            (true, ..) => Transport::Plaintext,
            (false, Some(cert), Some(key), Some(client_ca)) => Transport::MutualTls(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            }),
            _ => Transport::Unconfigured,
        }
    }

    /// Where the room dials the hub, when `hub.connect` says so (and the
    /// config passed its checks).
    pub fn dial_target(&self) -> Option<DialTarget> {
        let (host, port) = parse_host_port(self.connect.as_deref()?).ok()?;
        let tls = match (
            self.plaintext,
            &self.tls_cert,
            &self.tls_key,
            &self.connect_ca,
        ) {
            (true, ..) => None,
            (false, Some(cert), Some(key), Some(hub_ca)) => Some(DialTls {
                cert: cert.clone(),
                key: key.clone(),
                hub_ca: hub_ca.clone(),
                server_name: self.connect_name.clone().unwrap_or_else(|| host.clone()),
            }),
            _ => return None,
        };
        Some(DialTarget { host, port, tls })
    }

    /// The province's age recipient, for `hub export`.
    pub fn province_recipient(&self) -> Result<age::x25519::Recipient, ProvinceKeyError> {
        let text = self
            .province_recipient
            .as_deref()
            .ok_or(ProvinceKeyError::RecipientMissing)?;
        classroom_bundle::keys::parse_recipient(text).map_err(|err| ProvinceKeyError::Invalid {
            key: "hub.province_recipient",
            err,
        })
    }

    /// The province's verifying key, for `hub import-ack` and `hub import`.
    pub fn province_signing_key(&self) -> Result<ed25519_dalek::VerifyingKey, ProvinceKeyError> {
        let text = self
            .province_signing_key
            .as_deref()
            .ok_or(ProvinceKeyError::SigningKeyMissing)?;
        classroom_bundle::keys::parse_verifying_key(text).map_err(|err| ProvinceKeyError::Invalid {
            key: "hub.province_signing_key",
            err,
        })
    }

    /// Resolves the TLS file paths with `resolve` (against the config file's directory).
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        for path in [
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.client_ca,
            &mut self.connect_ca,
        ]
        .into_iter()
        .flatten()
        {
            *path = resolve(path);
        }
    }

    /// The rules serde cannot express, each naming its key. `smallest` is the
    /// least `max_message_bytes` may be: the largest message one event of this
    /// agent can need (`hub::wire::largest_message`).
    pub(crate) fn problems(&self, smallest: usize) -> Vec<Unlocated> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            problems.push(Unlocated {
                key: key.to_owned(),
                message,
                hint: hint.to_owned(),
            })
        };
        let given = [
            ("hub.tls_cert", &self.tls_cert),
            ("hub.tls_key", &self.tls_key),
            ("hub.client_ca", &self.client_ca),
            ("hub.connect_ca", &self.connect_ca),
        ];
        let any_given = given.iter().any(|(_, path)| path.is_some());
        if self.plaintext && any_given {
            problem(
                "hub.plaintext",
                "plaintext = true, but TLS files are also given".to_owned(),
                "remove `plaintext = true` to serve with TLS, or remove tls_cert, tls_key, client_ca and connect_ca",
            );
        } else if self.connect.is_some() {
            // Dialling out: the room's own certificate and the hub's CA are
            // needed; client_ca only when the room is also pulled.
            for (key, path) in &given[..2] {
                if path.is_none() && !self.plaintext {
                    problem(
                        "hub.connect",
                        format!(
                            "dialling the hub over mutual TLS needs {key}, the room's own certificate or key; it is not set"
                        ),
                        "name the room's certificate and key (PEM), or set `plaintext = true` on a network nobody else can reach",
                    );
                }
            }
            if self.connect_ca.is_none() && !self.plaintext {
                problem(
                    "hub.connect",
                    "dialling the hub over mutual TLS needs hub.connect_ca, the CA that signs the hub's certificate; it is not set".to_owned(),
                    "name the province's CA certificate (PEM)",
                );
            }
        } else if any_given {
            for (key, path) in &given[..3] {
                if path.is_none() {
                    problem(
                        key,
                        "mutual TLS needs tls_cert, tls_key and client_ca; this one is missing"
                            .to_owned(),
                        "name the PEM file",
                    );
                }
            }
        }
        if self.connect.is_none() {
            for (key, given) in [
                ("hub.connect_ca", self.connect_ca.is_some()),
                ("hub.connect_name", self.connect_name.is_some()),
            ] {
                if given {
                    problem(
                        key,
                        "is set, but hub.connect is not: the room does not dial the hub".to_owned(),
                        "set hub.connect = \"host:port\" to dial the hub, or remove this key",
                    );
                }
            }
        }
        if let Some(connect) = &self.connect
            && let Err(why) = parse_host_port(connect)
        {
            problem(
                "hub.connect",
                format!("`{connect}` {why}"),
                "give the hub's host and port, such as \"hub.example.edu.vn:50052\" or \"[2001:db8::1]:50052\"",
            );
        }
        if let Some(name) = &self.connect_name
            && !is_server_name(name)
        {
            problem(
                "hub.connect_name",
                format!("`{name}` is neither a DNS name nor an IP address"),
                "give the name on the hub's certificate, such as \"hub.example.edu.vn\"",
            );
        }
        if self.retention_days == 0 {
            problem(
                "hub.retention_days",
                "must be at least 1".to_owned(),
                "the default is 30 days",
            );
        }
        if self.max_message_bytes < smallest {
            problem(
                "hub.max_message_bytes",
                format!(
                    "{} is below {smallest}, the largest message one event of this agent can need",
                    self.max_message_bytes
                ),
                &format!(
                    "give at least {smallest}; 65536 or more is usual, and the default is 4194304 (4 MiB)"
                ),
            );
        } else if self.max_message_bytes > MAX_MESSAGE_BYTES {
            problem(
                "hub.max_message_bytes",
                format!("{} is above {MAX_MESSAGE_BYTES}", self.max_message_bytes),
                "the default is 4194304 (4 MiB)",
            );
        }
        if let Some(text) = &self.province_recipient
            && let Err(err) = classroom_bundle::keys::parse_recipient(text)
        {
            problem(
                "hub.province_recipient",
                err.to_string(),
                "copy the recipient the province's `classroom-bundle keygen` printed",
            );
        }
        if let Some(text) = &self.province_signing_key
            && let Err(err) = classroom_bundle::keys::parse_verifying_key(text)
        {
            problem(
                "hub.province_signing_key",
                err.to_string(),
                "copy the verifying key the province's `classroom-bundle keygen` printed",
            );
        }
        if !(1..=3600).contains(&self.request_timeout_seconds) {
            problem(
                "hub.request_timeout_seconds",
                "must be between 1 and 3600".to_owned(),
                "the default is 30",
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    use super::{DialTarget, DialTls, TlsFiles, Transport, parse_host_port};

    const ROOM: &str = "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n";

    fn parse(hub: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/etc/agent/room.toml"),
            &format!("{ROOM}[hub]\n{hub}"),
        )
    }

    #[test]
    fn tls_files_are_resolved_against_the_config_and_make_mutual_tls() {
        let config = parse("tls_cert = \"tls/agent.pem\"\ntls_key = \"tls/agent.key\"\nclient_ca = \"/srv/hub-ca.pem\"\n").unwrap();
        assert_eq!(
            config.hub.transport(),
            Transport::MutualTls(TlsFiles {
                cert: "/etc/agent/tls/agent.pem".into(),
                key: "/etc/agent/tls/agent.key".into(),
                client_ca: "/srv/hub-ca.pem".into(),
            })
        );
        assert_eq!(config.hub.retention_days, 30);
    }

    #[test]
    fn without_tls_or_plaintext_the_server_is_unconfigured_and_plaintext_must_be_explicit() {
        assert_eq!(parse("").unwrap().hub.transport(), Transport::Unconfigured);
        assert_eq!(
            parse("plaintext = true\n").unwrap().hub.transport(),
            Transport::Plaintext
        );
    }

    #[test]
    fn half_a_tls_setup_or_tls_with_plaintext_is_refused_at_its_key() {
        let err = parse("tls_cert = \"a.pem\"\n").unwrap_err().to_string();
        assert!(
            err.contains("hub.tls_key") && err.contains("hub.client_ca"),
            "{err}"
        );
        let err = parse(
            "plaintext = true\ntls_cert = \"a.pem\"\ntls_key = \"a.key\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("hub.plaintext"), "{err}");
        let err = parse("retention_days = 0\nmax_message_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hub.retention_days") && err.contains("hub.max_message_bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_provinces_keys_are_checked_at_their_keys() {
        let err = parse("plaintext = true\nprovince_recipient = \"age1nope\"\nprovince_signing_key = \"ed25519:AAAA\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("room.toml:6:1: hub.province_recipient"),
            "{err}"
        );
        assert!(err.contains("not an age X25519 recipient"), "{err}");
        assert!(
            err.contains("room.toml:7:1: hub.province_signing_key"),
            "{err}"
        );
        assert!(err.contains("32 bytes in base64"), "{err}");
        let config = parse("plaintext = true\n").unwrap();
        assert!(
            config
                .hub
                .province_recipient()
                .unwrap_err()
                .to_string()
                .contains("hub.province_recipient is not set")
        );
    }

    #[test]
    fn the_message_limit_must_hold_the_largest_event() {
        let smallest = crate::hub::wire::largest_message();
        parse(&format!(
            "plaintext = true\nmax_message_bytes = {smallest}\n"
        ))
        .unwrap();
        let err = parse(&format!(
            "plaintext = true\nmax_message_bytes = {}\n",
            smallest - 1
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "is below {smallest}, the largest message one event"
            )),
            "{err}"
        );
        parse("plaintext = true\nmax_message_bytes = 65536\n").unwrap();
    }

    #[test]
    fn a_room_that_dials_out_verifies_the_hub_by_the_host_it_dials_and_need_not_listen() {
        let config = parse(
            "connect = \"hub.example.edu.vn:50052\"\ntls_cert = \"tls/agent.pem\"\ntls_key = \"tls/agent.key\"\nconnect_ca = \"province-ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            config.hub.dial_target(),
            Some(DialTarget {
                host: "hub.example.edu.vn".into(),
                port: 50052,
                tls: Some(DialTls {
                    cert: "/etc/agent/tls/agent.pem".into(),
                    key: "/etc/agent/tls/agent.key".into(),
                    hub_ca: "/etc/agent/province-ca.pem".into(),
                    server_name: "hub.example.edu.vn".into(),
                }),
            })
        );
        assert_eq!(config.hub.transport(), Transport::Unconfigured);
        let named = parse(
            "connect = \"[2001:db8::5]:50052\"\nconnect_name = \"hub.example.edu.vn\"\ntls_cert = \"a.pem\"\ntls_key = \"a.key\"\nconnect_ca = \"ca.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let target = named.hub.dial_target().unwrap();
        assert_eq!(target.to_string(), "[2001:db8::5]:50052");
        assert_eq!(target.tls.unwrap().server_name, "hub.example.edu.vn");
        assert!(matches!(named.hub.transport(), Transport::MutualTls(_)));
        let plaintext = parse("connect = \"127.0.0.1:50052\"\nplaintext = true\n").unwrap();
        assert_eq!(plaintext.hub.dial_target().unwrap().tls, None);
        assert_eq!(parse("").unwrap().hub.dial_target(), None);
    }

    #[test]
    fn dialling_out_without_the_hubs_ca_or_the_rooms_key_is_refused_at_the_connect_line() {
        let err = parse(
            "retention_days = 7\nconnect = \"hub.example.edu.vn:50052\"\ntls_cert = \"a.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "room.toml:6:1: hub.connect: dialling the hub over mutual TLS needs hub.tls_key"
            ) && err.contains(
                "room.toml:6:1: hub.connect: dialling the hub over mutual TLS needs hub.connect_ca"
            ),
            "{err}"
        );
        let err = parse("connect_ca = \"ca.pem\"\nconnect_name = \"hub\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("room.toml:5:1: hub.connect_ca: is set, but hub.connect is not")
                && err.contains("room.toml:6:1: hub.connect_name: is set, but hub.connect is not"),
            "{err}"
        );
    }

    #[test]
    fn a_hub_address_must_be_host_and_port() {
        for (text, why) in [
            ("hub.example.edu.vn", "has no port"),
            ("hub.example.edu.vn:0", "not 1 to 65535"),
            ("hub.example.edu.vn:http", "not 1 to 65535"),
            (":50052", "no host"),
            ("2001:db8::5:50052", "outside brackets"),
            ("[2001:db8::5:50052", "brackets"),
        ] {
            let err = parse_host_port(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(
            parse_host_port("10.0.0.1:50052"),
            Ok(("10.0.0.1".to_owned(), 50052))
        );
        let err = parse(
            "plaintext = true\nconnect = \"hub.example.edu.vn\"\nconnect_name = \"not a name\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("room.toml:6:1: hub.connect: `hub.example.edu.vn` has no port")
                && err.contains("hub.connect_name: `not a name` is neither"),
            "{err}"
        );
    }
}
