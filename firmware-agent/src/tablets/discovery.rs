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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio_util::sync::CancellationToken;

use crate::health::{Health, State};

/// The DNS-SD service type tablets browse for.
pub const SERVICE_TYPE: &str = "_classroom._tcp.local.";

/// The room as the advertisement names it (from `[room]`).
#[derive(Debug, Clone)]
pub struct AdvertisedRoom {
    pub name: String,
    pub school_code: String,
    pub room_id: String,
}

/// Advertises `room`, served at `http`, until `shutdown`, when `enabled`
/// (`tablets.discovery`); reports how it went to `health`.
pub async fn advertise(
    enabled: bool,
    room: AdvertisedRoom,
    http: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) {
    if !enabled || http.ip().is_loopback() {
        return;
    }
    let daemon = match mdns_sd::ServiceDaemon::new() {
        Ok(daemon) => daemon,
        Err(err) => {
            health.set(
                "discovery",
                State::Degraded,
                format!("cannot start mDNS: {err}"),
            );
            return;
        }
    };
    let instance = format!("{}-{}", room.school_code, room.room_id);
    let host = format!("{instance}.local.");
    let mut properties = vec![
        ("room", room.name),
        ("school", room.school_code),
        ("room_id", room.room_id),
        ("proto", super::protocol::VERSION.to_string()),
    ];
    if let Some(tls) = super::tls::advertised() {
        properties.push(("tls_port", tls.port.to_string()));
    }
    let addresses: Vec<IpAddr> = if http.ip().is_unspecified() {
        lan_address().into_iter().collect()
    } else {
        vec![http.ip()]
    };
    let service = mdns_sd::ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        &addresses[..],
        http.port(),
        &properties[..],
    )
    .map(|service| {
        if addresses.is_empty() {
            service.enable_addr_auto()
        } else {
            service
        }
    });
    match service.and_then(|service| daemon.register(service)) {
        Ok(()) => {
            health.set(
                "discovery",
                State::Ok,
                format!("advertised as {instance} ({SERVICE_TYPE})"),
            );
            tracing::info!(instance, "advertised on the LAN over mDNS");
        }
        Err(err) => {
            health.set(
                "discovery",
                State::Degraded,
                format!("cannot advertise over mDNS: {err}"),
            );
            return;
        }
    }
    shutdown.cancelled().await;
    let _ = daemon.shutdown();
}

/// This machine's address on the room's network, as a tablet would reach it,
/// read from the interfaces' own addresses: a room's LAN often has no default
/// route (no Internet, or only a 4G router on another interface), so the
/// route to an outside destination says nothing about it.
pub fn lan_address() -> Option<IpAddr> {
    best_for_tablets(&interface_addresses()).map(IpAddr::V4)
}

/// One IPv4 address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InterfaceAddress {
    address: Ipv4Addr,
    loopback: bool,
    up: bool,
    /// The link has a carrier (a cable, an associated Wi-Fi).
    running: bool,
}

/// The address a tablet most likely reaches: an interface that is up and not
/// loopback; one with a carrier before one without; a private address (a
/// classroom's Wi-Fi) before any other, and link-local last. Ties go to the
/// interface the kernel lists first.
fn best_for_tablets(addresses: &[InterfaceAddress]) -> Option<Ipv4Addr> {
    let kind = |ip: &Ipv4Addr| {
        if ip.is_private() {
            0
        } else if ip.is_link_local() {
            2
        } else {
            1
        }
    };
    addresses
        .iter()
        .filter(|a| a.up && !a.loopback && !a.address.is_loopback() && !a.address.is_unspecified())
        .min_by_key(|a| (!a.running, kind(&a.address)))
        .map(|a| a.address)
}

/// Every IPv4 address of this machine's interfaces, in the kernel's order.
fn interface_addresses() -> Vec<InterfaceAddress> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that is read here
    // and freed once, below; nothing keeps a pointer into it.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        // SAFETY: an AF_INET address is a sockaddr_in.
        if !ifa.ifa_addr.is_null()
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            let address = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let flags = ifa.ifa_flags as i32;
            found.push(InterfaceAddress {
                address: Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)),
                loopback: flags & libc::IFF_LOOPBACK != 0,
                up: flags & libc::IFF_UP != 0,
                running: flags & libc::IFF_RUNNING != 0,
            });
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: frees the list getifaddrs allocated, once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str, running: bool) -> InterfaceAddress {
        InterfaceAddress {
            address: address.parse().unwrap(),
            loopback: false,
            up: true,
            running,
        }
    }

    #[test]
    fn the_rooms_private_network_is_chosen_over_the_uplink_and_loopback() {
        let lo = InterfaceAddress {
            loopback: true,
            ..at("127.0.0.1", true)
        };
        let uplink_4g = at("100.72.14.9", true);
        let wifi = at("192.168.10.2", true);
        let unplugged = at("10.0.0.5", false);
        let down = InterfaceAddress {
            up: false,
            ..at("10.1.1.1", true)
        };
        assert_eq!(
            best_for_tablets(&[
                lo.clone(),
                uplink_4g.clone(),
                unplugged.clone(),
                wifi,
                down.clone()
            ]),
            Some("192.168.10.2".parse().unwrap())
        );
        assert_eq!(
            best_for_tablets(&[lo.clone(), unplugged.clone(), uplink_4g.clone()]),
            Some("100.72.14.9".parse().unwrap())
        );
        assert_eq!(
            best_for_tablets(&[at("169.254.3.4", true), unplugged]),
            Some("169.254.3.4".parse().unwrap())
        );
        assert_eq!(
            best_for_tablets(&[lo, down]),
            None,
            "no address a tablet could reach"
        );
    }
}
