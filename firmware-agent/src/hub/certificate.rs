//! `PutCertificate`: the room's LAN certificate from the province's CA,
//! checked, kept and served at once (see [`crate::tls::pushed`]).

use tonic::Status;

use super::wire;
use crate::agent::Agent;
use crate::proto::{LanCertificateSource, PutCertificateRequest, PutCertificateResponse};
use crate::tls::pushed::{self, Wanted};
use crate::tls::served::Source;

/// Checks the pushed certificate and, when it passes, keeps it and serves it
/// to every new connection. Blocking (it reads the CA and writes the file).
pub fn receive(
    agent: &Agent,
    request: &PutCertificateRequest,
) -> Result<PutCertificateResponse, Status> {
    let config = agent.config();
    let province_ca = match &config.http.province_lan_ca {
        Some(path) => Some(pushed::read_province_ca(path).map_err(|err| {
            Status::failed_precondition(format!(
                "http.province_lan_ca = {err}: the room cannot check the certificate; nothing was changed"
            ))
        })?),
        None => None,
    };
    let wanted = Wanted::of(&config);
    let served = pushed::check(
        request.chain_pem.as_bytes(),
        request.key_pem.as_bytes(),
        &wanted,
        agent.clock.now(),
        province_ca.as_ref(),
    )
    .map_err(|refused| {
        tracing::warn!(%refused, "a certificate pushed by the hub was refused");
        Status::invalid_argument(format!("{refused}; the certificate served is unchanged"))
    })?;
    let path = pushed::keep(&config.storage.data_dir, &request.chain_pem, &request.key_pem)
        .map_err(|err| {
            tracing::error!(%err, "cannot keep the certificate the hub pushed");
            Status::unavailable(format!(
                "cannot write the certificate in the room's data directory: {err}; the certificate served is unchanged"
            ))
        })?;
    let not_after = Some(wire::timestamp(served.expires));
    let (expires, serial) = (served.expires, served.serial.clone());
    let serving = match &agent.lan_certificate {
        Some(slot) => {
            slot.replace(served);
            true
        }
        None => false,
    };
    tracing::info!(path = %path.display(), %serial, %expires, serving, "certificate from the province's CA kept");
    Ok(PutCertificateResponse { not_after, serving })
}

/// What `AgentStatus` says of the served certificate: its source, expiry
/// and the names a certificate for this room must carry.
pub fn status(
    agent: &Agent,
) -> (
    LanCertificateSource,
    Option<prost_types::Timestamp>,
    Vec<String>,
) {
    let names = Wanted::of(&agent.config()).as_text();
    match &agent.lan_certificate {
        None => (LanCertificateSource::None, None, names),
        Some(slot) => {
            let current = slot.current();
            let source = match current.source {
                Source::SchoolFile => LanCertificateSource::SchoolFile,
                Source::ProvincePush => LanCertificateSource::ProvincePush,
            };
            (source, Some(wire::timestamp(current.expires)), names)
        }
    }
}
