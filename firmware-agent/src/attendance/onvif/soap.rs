//! One ONVIF SOAP call over HTTP: the envelope, the WS-Security UsernameToken
//! every authenticated call carries, and the answer's body or the fault that
//! says why not.
//!
//! # Design
//! ONVIF cameras take the password as a digest (ONVIF Core Specification,
//! 5.12 "Security"; OASIS WS-Security UsernameToken Profile 1.0):
//! `Base64(SHA-1(nonce ++ created ++ password))`, where `nonce` is the raw
//! bytes sent Base64-encoded beside it and `created` the UTC time as sent. A
//! fresh nonce per call keeps a recorded request from being replayed, and the
//! password never crosses the wire. A refusal comes back as a SOAP fault with
//! the subcode `ter:NotAuthorized` (or HTTP 401 from cameras that check
//! before SOAP); both are [`OnvifError::CredentialsRefused`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use sha1::{Digest as _, Sha1};

use super::{OnvifError, parse_xml};

/// How long a camera may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a camera may take to answer one call.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read; a camera's answers to these calls are a few kilobytes.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

pub const SOAP_ENVELOPE: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// A user name and password for the camera's ONVIF service.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: *** }}", self.user)
    }
}

/// The WS-Security password digest: `Base64(SHA-1(nonce ++ created ++ password))`.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(nonce);
    sha1.update(created.as_bytes());
    sha1.update(password.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// The `<s:Header>` carrying a UsernameToken for `credentials` at `now`.
fn security_header(credentials: &Credentials, now: Timestamp) -> String {
    let nonce: [u8; 16] = rand::random();
    let created = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    format!(
        "<s:Header><wsse:Security s:mustUnderstand=\"1\" xmlns:wsse=\"{WSSE}\" xmlns:wsu=\"{WSU}\">\
         <wsse:UsernameToken><wsse:Username>{user}</wsse:Username>\
         <wsse:Password Type=\"{PASSWORD_DIGEST}\">{digest}</wsse:Password>\
         <wsse:Nonce EncodingType=\"{BASE64_BINARY}\">{nonce}</wsse:Nonce>\
         <wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>",
        user = escape(&credentials.user),
        digest = password_digest(&nonce, &created, &credentials.password),
        nonce = BASE64.encode(nonce),
    )
}

/// `text` safe inside an XML element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Posts `body` (the elements inside `<s:Body>`) to `url` and returns the
/// answer's text, which [`parse_xml`] has accepted and whose body is no fault.
pub fn call(
    url: &str,
    credentials: Option<&Credentials>,
    now: Timestamp,
    body: &str,
) -> Result<String, OnvifError> {
    let header =
        credentials.map_or_else(String::new, |credentials| security_header(credentials, now));
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"{SOAP_ENVELOPE}\">{header}<s:Body>{body}</s:Body></s:Envelope>"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_recv_body(Some(READ_TIMEOUT))
        .http_status_as_error(false)
        .user_agent("firmware-agent")
        .build()
        .into();
    let unreachable = |reason: String| OnvifError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let response = agent
        .post(url)
        .header("content-type", "application/soap+xml; charset=utf-8")
        .send(envelope.as_bytes())
        .map_err(|err| unreachable(err.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|err| unreachable(format!("reading the answer: {err}")))?;
    if status == 401 || status == 403 {
        return Err(OnvifError::CredentialsRefused {
            url: url.to_owned(),
        });
    }
    let document = parse_xml(&text).map_err(|reason| OnvifError::BadAnswer {
        url: url.to_owned(),
        reason: format!("HTTP {status}, {reason}"),
    })?;
    if let Some(fault) = document
        .descendants()
        .find(|node| node.has_tag_name((SOAP_ENVELOPE, "Fault")))
    {
        let texts = |name: &str| {
            fault
                .descendants()
                .filter(|node| node.has_tag_name((SOAP_ENVELOPE, name)))
                .filter_map(|node| node.text())
                .map(str::trim)
                .collect::<Vec<_>>()
        };
        let codes = texts("Value");
        if codes.iter().any(|code| {
            let local = code.rsplit(':').next().unwrap_or(code);
            local == "NotAuthorized" || local == "FailedAuthentication"
        }) {
            return Err(OnvifError::CredentialsRefused {
                url: url.to_owned(),
            });
        }
        return Err(OnvifError::Refused {
            url: url.to_owned(),
            reason: format!("{} ({})", texts("Text").join("; "), codes.join(", ")),
        });
    }
    if status != 200 {
        return Err(OnvifError::BadAnswer {
            url: url.to_owned(),
            reason: format!("HTTP {status} without a SOAP fault"),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the ONVIF Application Programmer's Guide (5.12.2):
    /// nonce `LKqI6G/AikKCQrN0zqZFlg==`, created `2010-09-16T07:50:45Z`,
    /// password `userpassword`.
    #[test]
    fn the_digest_is_that_of_the_onvif_guide() {
        let nonce = BASE64.decode("LKqI6G/AikKCQrN0zqZFlg==").unwrap();
        assert_eq!(
            password_digest(&nonce, "2010-09-16T07:50:45Z", "userpassword"),
            "tuOSpGlFlIXsozq4HFNeeGeFLEI="
        );
    }

    #[test]
    fn the_header_carries_a_digest_that_checks_and_no_password() {
        let credentials = Credentials {
            user: "admin<&>".to_owned(),
            password: "mật khẩu".to_owned(),
        };
        let now: Timestamp = "2026-03-02T01:02:03Z".parse().unwrap();
        let header = format!(
            "<s:Envelope xmlns:s=\"{SOAP_ENVELOPE}\">{}</s:Envelope>",
            security_header(&credentials, now)
        );
        assert!(!header.contains("mật khẩu"));
        let document = roxmltree::Document::parse(&header).unwrap();
        let text = |name: &str| {
            document
                .descendants()
                .find(|node| node.tag_name().name() == name)
                .and_then(|node| node.text())
                .unwrap()
                .to_owned()
        };
        assert_eq!(text("Username"), "admin<&>");
        assert_eq!(text("Created"), "2026-03-02T01:02:03Z");
        let nonce = BASE64.decode(text("Nonce")).unwrap();
        assert_eq!(nonce.len(), 16);
        assert_eq!(
            text("Password"),
            password_digest(&nonce, "2026-03-02T01:02:03Z", "mật khẩu")
        );
    }
}
