//! The rooms' LAN certificates from the province's CA: after each
//! `GetStatus`, a room that serves no certificate from the province, or one
//! that expires within 30 days, is issued a new one and sent it with
//! `PutCertificate`.
//!
//! # Design
//! - **The room says what it needs**: `AgentStatus` carries the names its
//!   certificate must hold (its mDNS name, then its LAN addresses), where
//!   its certificate comes from and when it expires. The hub keeps no list
//!   of its own to fall out of date with the rooms' networks.
//! - **On the room's clock**: whether a certificate is due, and the validity
//!   of the new one (from the day before to 398 days after), are read from
//!   the time the room reports, the clock the room checks the certificate
//!   with.
//! - **The key is made here**, not in the room: the province's CA signs
//!   offline batches for rooms reachable only by USB stick the same way.
//! - A refused push is logged and counted; the link goes on pulling, and the
//!   next link asks again.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Span, Timestamp, tz::TimeZone};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use tonic::transport::Channel;

use crate::config::RoomKey;
use crate::proto::sync_service_client::SyncServiceClient;
use crate::proto::{AgentStatus, LanCertificateSource, PutCertificateRequest};

/// From how long before it expires a room's certificate is renewed.
const RENEW_WITHIN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How long a room's certificate is valid, in days: the most browsers accept.
const VALID_DAYS: i64 = 398;

/// The province's LAN CA, ready to sign.
pub struct LanCa {
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LanCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LanCa")
    }
}

impl LanCa {
    /// Reads the CA's certificate and key (PEM, as `firmware-agent tls init-ca` writes them).
    pub fn load(certificate: &Path, key: &Path) -> Result<LanCa, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|err| format!("{}: cannot read: {err}", path.display()))
        };
        let key = KeyPair::from_pem(&read(key)?)
            .map_err(|err| format!("{}: not a private key in PEM: {err}", key.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&read(certificate)?, key).map_err(|err| {
            format!(
                "{}: not a CA certificate for lan_ca.key: {err}",
                certificate.display()
            )
        })?;
        Ok(LanCa { issuer })
    }

    /// A certificate for `names` (a DNS name or an IP address each), valid
    /// from the day before `now` for [`VALID_DAYS`]: the chain and the key, PEM.
    pub fn issue(&self, names: &[String], now: Timestamp) -> Result<PutCertificateRequest, String> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|err| err.to_string())?;
        let mut params = CertificateParams::default();
        for name in names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(address) => SanType::IpAddress(address),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|err| format!("{name}: not a DNS name: {err}"))?,
                ),
            });
        }
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let today = now.to_zoned(TimeZone::UTC).date();
        let asn1 = |date: jiff::civil::Date| {
            rcgen::date_time_ymd(date.year().into(), date.month() as u8, date.day() as u8)
        };
        params.not_before = asn1(today.yesterday().unwrap_or(today));
        params.not_after = asn1(today.saturating_add(Span::new().days(VALID_DAYS)));
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|err| err.to_string())?;
        Ok(PutCertificateRequest {
            chain_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Why the room needs a certificate now, or `None` when it does not (or
/// cannot say what names it needs).
pub fn due(status: &AgentStatus) -> Option<&'static str> {
    if status.lan_certificate_names.is_empty() {
        return None;
    }
    if status.lan_certificate_source() != LanCertificateSource::ProvincePush {
        return Some("the room has no certificate from the province");
    }
    let (Some(now), Some(expires)) = (
        status.agent_time.as_ref().and_then(timestamp),
        status
            .lan_certificate_not_after
            .as_ref()
            .and_then(timestamp),
    ) else {
        return Some("the room did not say when its certificate expires");
    };
    (expires.duration_since(now) <= RENEW_WITHIN)
        .then_some("the room's certificate expires within 30 days")
}

fn timestamp(at: &prost_types::Timestamp) -> Option<Timestamp> {
    Timestamp::new(at.seconds, at.nanos).ok()
}

/// Issues and pushes a certificate to `room` when its `status` says one is due.
pub async fn renew_if_due(
    client: &mut SyncServiceClient<Channel>,
    ca: &LanCa,
    room: &RoomKey,
    status: &AgentStatus,
    timeout: Duration,
) {
    let Some(reason) = due(status) else {
        return;
    };
    let now = status
        .agent_time
        .as_ref()
        .and_then(timestamp)
        .unwrap_or_else(Timestamp::now);
    let request = match ca.issue(&status.lan_certificate_names, now) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(room = %room, %err, names = ?status.lan_certificate_names, "cannot issue the room's LAN certificate");
            metrics::counter!("hub_lan_certificates_refused_total").increment(1);
            return;
        }
    };
    match tokio::time::timeout(timeout, client.put_certificate(request)).await {
        Ok(Ok(response)) => {
            let response = response.into_inner();
            let expires = response.not_after.as_ref().and_then(timestamp);
            tracing::info!(room = %room, reason, expires = ?expires, serving = response.serving, "pushed the room's LAN certificate");
            metrics::counter!("hub_lan_certificates_pushed_total").increment(1);
        }
        Ok(Err(status)) => {
            tracing::warn!(room = %room, code = ?status.code(), message = status.message(), "the room refused its LAN certificate");
            metrics::counter!("hub_lan_certificates_refused_total").increment(1);
        }
        Err(_) => {
            tracing::warn!(room = %room, ?timeout, "the room did not answer PutCertificate in time");
            metrics::counter!("hub_lan_certificates_refused_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(source: LanCertificateSource, now: &str, expires: Option<&str>) -> AgentStatus {
        let at = |text: &str| {
            let t: Timestamp = text.parse().unwrap();
            prost_types::Timestamp {
                seconds: t.as_second(),
                nanos: 0,
            }
        };
        AgentStatus {
            agent_time: Some(at(now)),
            lan_certificate_source: source.into(),
            lan_certificate_not_after: expires.map(at),
            lan_certificate_names: vec!["S-R.local".into(), "10.0.0.5".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_certificate_is_due_without_one_from_the_province_or_within_thirty_days_of_expiry() {
        use LanCertificateSource::*;
        let now = "2027-01-01T00:00:00Z";
        assert!(due(&status(None, now, Option::None)).is_some());
        assert!(due(&status(SchoolFile, now, Some("2028-01-01T00:00:00Z"))).is_some());
        assert!(due(&status(ProvincePush, now, Some("2027-02-01T00:00:00Z"))).is_none());
        assert!(due(&status(ProvincePush, now, Some("2027-01-30T00:00:00Z"))).is_some());
        let mut old_agent = status(None, now, Option::None);
        old_agent.lan_certificate_names.clear();
        assert!(
            due(&old_agent).is_none(),
            "an agent that names nothing is left alone"
        );
    }
}
