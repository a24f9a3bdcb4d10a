//! The `[hub]` section: where the gRPC server listens, how it proves who it is
//! and whom it lets in, and how long acknowledged records are kept.

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
    /// Serve without TLS. Only for the demo and loopback tests: anyone who can
    /// reach the port could read the room's records.
    pub plaintext: bool,
    /// The agent's certificate chain (PEM), presented to the hub.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) (PEM) whose client certificates may call the service.
    pub client_ca: Option<PathBuf>,
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

    /// The province's age recipient, for `hub export`.
    pub fn province_recipient(&self) -> Result<age::x25519::Recipient, String> {
        let text = self.province_recipient.as_deref().ok_or(
            "hub.province_recipient is not set: records are carried out only encrypted to the province's key; \
             put the province's age recipient (age1…) in the [hub] section",
        )?;
        classroom_bundle::keys::parse_recipient(text)
            .map_err(|err| format!("hub.province_recipient: {err}"))
    }

    /// The province's verifying key, for `hub import-ack` and `hub import`.
    pub fn province_signing_key(&self) -> Result<ed25519_dalek::VerifyingKey, String> {
        let text = self.province_signing_key.as_deref().ok_or(
            "hub.province_signing_key is not set: files from the province are applied only when signed by its key; \
             put the province's verifying key (ed25519:…) in the [hub] section",
        )?;
        classroom_bundle::keys::parse_verifying_key(text)
            .map_err(|err| format!("hub.province_signing_key: {err}"))
    }

    /// Resolves the TLS file paths with `resolve` (against the config file's directory).
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        for path in [&mut self.tls_cert, &mut self.tls_key, &mut self.client_ca]
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
        ];
        let any_given = given.iter().any(|(_, path)| path.is_some());
        if self.plaintext && any_given {
            problem(
                "hub.plaintext",
                "plaintext = true, but TLS files are also given".to_owned(),
                "remove `plaintext = true` to serve with TLS, or remove tls_cert, tls_key and client_ca",
            );
        } else if any_given {
            for (key, path) in given {
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
                err,
                "copy the recipient the province's `classroom-bundle keygen` printed",
            );
        }
        if let Some(text) = &self.province_signing_key
            && let Err(err) = classroom_bundle::keys::parse_verifying_key(text)
        {
            problem(
                "hub.province_signing_key",
                err,
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

    use super::{TlsFiles, Transport};

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
}
