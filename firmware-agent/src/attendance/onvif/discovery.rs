//! WS-Discovery: which ONVIF cameras are on the room's network segment, and
//! where their device service answers.
//!
//! # Design
//! One Probe for `dn:NetworkVideoTransmitter` goes out on each chosen IPv4
//! interface from a socket bound to that interface's address, with the
//! multicast TTL at 1 so no router forwards it; cameras answer by unicast to
//! that socket. Every interface is listened on at once for the same bounded
//! time. An answer is a ProbeMatches; one that is too large, not XML, not
//! for this probe, or without an endpoint reference is skipped with a debug
//! log, so a hostile device on the Wi-Fi can hide nothing but itself.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::parse_xml;
use super::soap::SOAP_ENVELOPE;

/// The WS-Discovery multicast group and port.
pub const DISCOVERY_GROUP: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 3702);
/// The largest answer read; a ProbeMatches is one or two kilobytes.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The most devices kept from one discovery, against a flood of made-up ones.
const MAX_DEVICES: usize = 256;
/// The most device-service addresses and scopes kept from one answer.
const MAX_LIST_ITEMS: usize = 32;

const ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const DISCOVERY: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";

/// A camera (or other ONVIF device) that answered the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredDevice {
    /// The device's endpoint reference, the same on every interface and across reboots.
    pub endpoint: String,
    /// Where its device service answers (`http://192.168.1.20/onvif/device_service`).
    pub device_urls: Vec<String>,
    /// The name it gives itself in its scopes (`onvif://www.onvif.org/name/...`).
    pub name: Option<String>,
    /// Its hardware model, from its scopes.
    pub hardware: Option<String>,
    /// The address its answer came from.
    pub answered_from: SocketAddr,
}

/// An IPv4 interface a probe goes out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInterface {
    pub name: String,
    pub address: Ipv4Addr,
}

/// Every interface a probe goes out on: the one `chosen` (a name such as
/// `eth0` or an IPv4 address of this machine), or every non-loopback one
/// with an IPv4 address.
pub fn probe_interfaces(chosen: Option<&str>) -> Result<Vec<ProbeInterface>, String> {
    let interfaces = if_addrs::get_if_addrs()
        .map_err(|err| format!("cannot list the network interfaces: {err}"))?;
    let ipv4: Vec<ProbeInterface> = interfaces
        .into_iter()
        .filter_map(|interface| match interface.addr {
            if_addrs::IfAddr::V4(addr) if !addr.ip.is_loopback() => Some(ProbeInterface {
                name: interface.name,
                address: addr.ip,
            }),
            _ => None,
        })
        .collect();
    let known = || {
        ipv4.iter()
            .map(|interface| format!("{} ({})", interface.name, interface.address))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match chosen {
        Some(chosen) => {
            let matching: Vec<ProbeInterface> = ipv4
                .iter()
                .filter(|interface| {
                    interface.name == chosen || interface.address.to_string() == chosen
                })
                .cloned()
                .collect();
            if matching.is_empty() {
                return Err(format!(
                    "no network interface `{chosen}` with an IPv4 address; this machine has: {}",
                    if ipv4.is_empty() { "none".to_owned() } else { known() }
                ));
            }
            Ok(matching)
        }
        None if ipv4.is_empty() => Err(
            "this machine has no network interface with an IPv4 address besides loopback; connect it to the room's network"
                .to_owned(),
        ),
        None => Ok(ipv4),
    }
}

/// Probes on every interface of `interfaces` and collects the answers for
/// `wait`; devices are merged by endpoint reference, in the order first heard.
/// Fails only when no probe could be sent at all.
pub fn discover(
    interfaces: &[ProbeInterface],
    wait: Duration,
) -> Result<Vec<DiscoveredDevice>, String> {
    let message_id = format!("uuid:{}", uuid::Uuid::new_v4());
    let probe = probe_message(&message_id);
    let mut sockets = Vec::new();
    let mut failures = Vec::new();
    for interface in interfaces {
        match send_probe(interface, probe.as_bytes()) {
            Ok(socket) => {
                tracing::debug!(interface = %interface.name, address = %interface.address, "WS-Discovery probe sent");
                sockets.push(socket);
            }
            Err(err) => {
                tracing::warn!(interface = %interface.name, "cannot send the WS-Discovery probe: {err}");
                failures.push(format!("{} ({}): {err}", interface.name, interface.address));
            }
        }
    }
    if sockets.is_empty() {
        return Err(format!(
            "cannot send the WS-Discovery probe on any interface: {}",
            failures.join("; ")
        ));
    }
    let deadline = Instant::now() + wait;
    let answers: Vec<DiscoveredDevice> = std::thread::scope(|scope| {
        let listeners: Vec<_> = sockets
            .iter()
            .map(|socket| scope.spawn(|| collect_answers(socket, &message_id, deadline)))
            .collect();
        listeners
            .into_iter()
            .flat_map(|listener| listener.join().unwrap_or_default())
            .collect()
    });
    let mut devices: Vec<DiscoveredDevice> = Vec::new();
    for answer in answers {
        match devices
            .iter()
            .position(|known| known.endpoint == answer.endpoint)
        {
            Some(index) => {
                let known = &mut devices[index];
                for url in answer.device_urls {
                    if !known.device_urls.contains(&url) {
                        known.device_urls.push(url);
                    }
                }
            }
            None if devices.len() < MAX_DEVICES => devices.push(answer),
            None => {
                tracing::debug!(endpoint = %answer.endpoint, "more than {MAX_DEVICES} devices answered; skipped")
            }
        }
    }
    Ok(devices)
}

/// The Probe for ONVIF video transmitters, under `message_id`.
fn probe_message(message_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"{SOAP_ENVELOPE}\" xmlns:a=\"{ADDRESSING}\" xmlns:d=\"{DISCOVERY}\" \
         xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\">\
         <s:Header><a:MessageID>{message_id}</a:MessageID>\
         <a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>\
         <a:Action>{DISCOVERY}/Probe</a:Action></s:Header>\
         <s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>\
         </s:Envelope>"
    )
}

/// Sends `probe` to the discovery group from a socket bound to `interface`,
/// with a TTL of 1, and returns the socket the answers come to.
fn send_probe(interface: &ProbeInterface, probe: &[u8]) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::from((interface.address, 0)).into())?;
    socket.set_multicast_if_v4(&interface.address)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket.send_to(probe, &SocketAddr::V4(DISCOVERY_GROUP).into())?;
    Ok(socket.into())
}

/// The devices that answer on `socket` until `deadline`.
fn collect_answers(
    socket: &UdpSocket,
    message_id: &str,
    deadline: Instant,
) -> Vec<DiscoveredDevice> {
    let mut devices = Vec::new();
    // One byte more than the largest accepted answer, to tell an oversized one.
    let mut buffer = vec![0u8; MAX_ANSWER_BYTES + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return devices;
        }
        let (length, from) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return devices;
            }
            Err(err) => {
                tracing::debug!("WS-Discovery receive failed: {err}");
                return devices;
            }
        };
        if length > MAX_ANSWER_BYTES {
            tracing::debug!(%from, "WS-Discovery answer over {MAX_ANSWER_BYTES} bytes; skipped");
            continue;
        }
        match parse_probe_matches(&buffer[..length], message_id, from) {
            Ok(found) => devices.extend(found),
            Err(reason) => tracing::debug!(%from, "WS-Discovery answer skipped: {reason}"),
        }
    }
}

/// The devices a ProbeMatches answer to `message_id` names.
pub fn parse_probe_matches(
    answer: &[u8],
    message_id: &str,
    from: SocketAddr,
) -> Result<Vec<DiscoveredDevice>, String> {
    let text = std::str::from_utf8(answer).map_err(|_| "not UTF-8".to_owned())?;
    let document = parse_xml(text)?;
    let envelope = document.root_element();
    if !envelope.has_tag_name((SOAP_ENVELOPE, "Envelope")) {
        return Err("not a SOAP 1.2 envelope".to_owned());
    }
    let relates_to = envelope
        .descendants()
        .find(|node| node.has_tag_name((ADDRESSING, "RelatesTo")))
        .and_then(|node| node.text())
        .map(str::trim);
    if relates_to.is_some_and(|relates_to| relates_to != message_id) {
        return Err(format!(
            "answers another probe ({})",
            relates_to.unwrap_or_default()
        ));
    }
    let matches: Vec<_> = envelope
        .descendants()
        .filter(|node| node.has_tag_name((DISCOVERY, "ProbeMatch")))
        .collect();
    if matches.is_empty() {
        return Err("no ProbeMatch".to_owned());
    }
    let mut devices = Vec::new();
    for probe_match in matches {
        let child_text = |namespace: &str, name: &str| {
            probe_match
                .descendants()
                .find(|node| node.has_tag_name((namespace, name)))
                .and_then(|node| node.text())
                .map(str::trim)
                .unwrap_or("")
        };
        let endpoint = child_text(ADDRESSING, "Address");
        if endpoint.is_empty() {
            return Err("a ProbeMatch without an endpoint reference".to_owned());
        }
        let device_urls: Vec<String> = child_text(DISCOVERY, "XAddrs")
            .split_whitespace()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .take(MAX_LIST_ITEMS)
            .map(str::to_owned)
            .collect();
        let scopes: Vec<&str> = child_text(DISCOVERY, "Scopes")
            .split_whitespace()
            .take(MAX_LIST_ITEMS)
            .collect();
        let scope = |kind: &str| {
            let prefix = format!("onvif://www.onvif.org/{kind}/");
            scopes
                .iter()
                .find_map(|scope| scope.strip_prefix(prefix.as_str()))
                .map(percent_decoded)
        };
        devices.push(DiscoveredDevice {
            endpoint: endpoint.to_owned(),
            device_urls,
            name: scope("name"),
            hardware: scope("hardware"),
            answered_from: from,
        });
    }
    Ok(devices)
}

/// A scope's value with `%XX` escapes decoded (cameras write `Camera%201`);
/// a malformed escape is kept as written.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| value.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(relates_to: &str, body: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"{SOAP_ENVELOPE}\" \
             xmlns:wsa=\"{ADDRESSING}\" xmlns:wsd=\"{DISCOVERY}\">\
             <env:Header><wsa:RelatesTo>{relates_to}</wsa:RelatesTo></env:Header>\
             <env:Body>{body}</env:Body></env:Envelope>"
        )
    }

    const MATCH: &str = "<wsd:ProbeMatches><wsd:ProbeMatch>\
        <wsa:EndpointReference><wsa:Address>urn:uuid:cam-1</wsa:Address></wsa:EndpointReference>\
        <wsd:Types>dn:NetworkVideoTransmitter</wsd:Types>\
        <wsd:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/name/Camera%20L%E1%BB%9Bp%206A1 \
        onvif://www.onvif.org/hardware/DS-2CD2143G2</wsd:Scopes>\
        <wsd:XAddrs>http://192.168.1.20/onvif/device_service ftp://nonsense http://[fe80::1]/onvif/device_service</wsd:XAddrs>\
        </wsd:ProbeMatch></wsd:ProbeMatches>";

    fn from() -> SocketAddr {
        "192.168.1.20:3702".parse().unwrap()
    }

    #[test]
    fn a_probe_match_gives_the_endpoint_addresses_name_and_hardware() {
        let devices =
            parse_probe_matches(answer("uuid:probe", MATCH).as_bytes(), "uuid:probe", from())
                .unwrap();
        assert_eq!(
            devices,
            vec![DiscoveredDevice {
                endpoint: "urn:uuid:cam-1".to_owned(),
                device_urls: vec![
                    "http://192.168.1.20/onvif/device_service".to_owned(),
                    "http://[fe80::1]/onvif/device_service".to_owned()
                ],
                name: Some("Camera Lớp 6A1".to_owned()),
                hardware: Some("DS-2CD2143G2".to_owned()),
                answered_from: from(),
            }]
        );
    }

    #[test]
    fn the_probe_is_well_formed_and_asks_for_video_transmitters() {
        let probe = probe_message("uuid:probe-1");
        let document = roxmltree::Document::parse(&probe).unwrap();
        let types = document
            .descendants()
            .find(|node| node.has_tag_name((DISCOVERY, "Types")))
            .unwrap();
        assert_eq!(types.text(), Some("dn:NetworkVideoTransmitter"));
        assert_eq!(
            types.lookup_namespace_uri(Some("dn")),
            Some("http://www.onvif.org/ver10/network/wsdl")
        );
    }

    #[test]
    fn answers_to_another_probe_or_not_xml_or_with_entities_are_refused() {
        let other = answer("uuid:other", MATCH);
        assert!(parse_probe_matches(other.as_bytes(), "uuid:probe", from()).is_err());
        assert!(parse_probe_matches(b"<not xml", "uuid:probe", from()).is_err());
        let laughs = format!(
            "<!DOCTYPE e [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
            answer("uuid:probe", "&b;")
        );
        assert!(parse_probe_matches(laughs.as_bytes(), "uuid:probe", from()).is_err());
        let no_endpoint = answer(
            "uuid:probe",
            "<wsd:ProbeMatches><wsd:ProbeMatch><wsd:XAddrs>http://x/</wsd:XAddrs></wsd:ProbeMatch></wsd:ProbeMatches>",
        );
        assert!(parse_probe_matches(no_endpoint.as_bytes(), "uuid:probe", from()).is_err());
    }

    #[test]
    fn a_malformed_escape_is_kept_as_written() {
        assert_eq!(percent_decoded("50%25%zz%4"), "50%%zz%4");
    }
}
