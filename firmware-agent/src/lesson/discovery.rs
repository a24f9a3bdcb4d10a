//! Advertises the agent on the room's network over mDNS/DNS-SD, so that a
//! tablet finds it without typing an address: service `_classroom._tcp`,
//! with TXT records `room` (the room's name), `school` (the school code),
//! `room_id` and `proto` (the tablet protocol version).
//!
//! # Design
//! Nothing is advertised when `tablets.discovery` is false or when the HTTP
//! server listens only on loopback (no tablet could reach it anyway, and
//! tests stay off the network). A failure to advertise is reported in the
//! health registry; the agent keeps working, and tablets can be given the
//! address by hand or through the QR code.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use crate::agent::Agent;
use crate::health::State;

/// The DNS-SD service type tablets browse for.
pub const SERVICE_TYPE: &str = "_classroom._tcp.local.";

/// Advertises until shutdown.
pub async fn advertise(agent: Arc<Agent>, http: SocketAddr) {
    let config = agent.config();
    if !config.tablets.discovery || http.ip().is_loopback() {
        return;
    }
    let daemon = match mdns_sd::ServiceDaemon::new() {
        Ok(daemon) => daemon,
        Err(err) => {
            agent.health.set("discovery", State::Degraded, format!("cannot start mDNS: {err}"));
            return;
        }
    };
    let instance = format!("{}-{}", config.room.school_code, config.room.room_id);
    let host = format!("{instance}.local.");
    let mut properties = vec![
        ("room", config.room.name.clone()),
        ("school", config.room.school_code.clone()),
        ("room_id", config.room.room_id.clone()),
        ("proto", super::protocol::VERSION.to_string()),
    ];
    if let Some(tls) = super::tls::advertised() {
        properties.push(("tls_port", tls.port.to_string()));
    }
    let addresses: Vec<IpAddr> = if http.ip().is_unspecified() { lan_address().into_iter().collect() } else { vec![http.ip()] };
    let service = mdns_sd::ServiceInfo::new(SERVICE_TYPE, &instance, &host, &addresses[..], http.port(), &properties[..])
        .map(|service| if addresses.is_empty() { service.enable_addr_auto() } else { service });
    match service.and_then(|service| daemon.register(service)) {
        Ok(()) => {
            agent.health.set("discovery", State::Ok, format!("advertised as {instance} ({SERVICE_TYPE})"));
            tracing::info!(instance, "advertised on the LAN over mDNS");
        }
        Err(err) => {
            agent.health.set("discovery", State::Degraded, format!("cannot advertise over mDNS: {err}"));
            return;
        }
    }
    agent.shutdown.cancelled().await;
    let _ = daemon.shutdown();
}

/// This machine's address on the LAN: the source address the kernel would
/// use for an outside destination. Connecting a UDP socket sends nothing.
pub fn lan_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}
