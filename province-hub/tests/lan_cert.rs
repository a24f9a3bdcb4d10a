//! The rooms' HTTPS certificates from the province's LAN CA, end to end: the
//! hub binary against a real PostgreSQL and a real agent serving HTTPS with a
//! school certificate; the hub replaces it with one from the province, and
//! renews that one when the room's clock is within 30 days of its expiry.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{HubConfig, Postgres, Room, agent_binary, free_addresses, wait_until};
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{AgentStatus, GetStatusRequest, LanCertificateSource};

fn run_ok(args: &[&str]) {
    let output = Command::new(agent_binary()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn init_ca(dir: &Path) {
    run_ok(&["tls", "init-ca", "--dir", dir.to_str().unwrap()]);
}

/// The room's status, asked over its gRPC port as the hub asks it.
fn status(room: &Room) -> AgentStatus {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = SyncServiceClient::connect(format!("http://{}", room.grpc))
            .await
            .unwrap();
        client
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    })
}

#[test]
fn the_hub_gives_a_room_a_province_certificate_and_renews_it_near_expiry() {
    let postgres = Postgres::start();
    let room = Room::new("LC-THCS-07", "P301");
    let dir = room.dir.path();
    init_ca(&dir.join("school-ca"));
    run_ok(&[
        "tls",
        "issue",
        "--ca",
        dir.join("school-ca").to_str().unwrap(),
        "--name",
        "LC-THCS-07-P301.local",
        "--ip",
        "127.0.0.1",
        "--out",
        dir.join("room").to_str().unwrap(),
    ]);
    let province_ca = dir.join("province-ca");
    init_ca(&province_ca);
    let [https] = free_addresses();
    room.add_http_keys(&format!(
        "tls_cert = \"room/room.pem\"\ntls_key = \"room/room-key.pem\"\ntls_listen = \"{https}\"\nprovince_lan_ca = \"province-ca/ca.pem\"\n"
    ));
    let mut agent = room.start();
    let school = status(&room);
    assert_eq!(
        school.lan_certificate_source(),
        LanCertificateSource::SchoolFile
    );
    assert_eq!(
        school.lan_certificate_names,
        ["LC-THCS-07-P301.local", "127.0.0.1"]
    );

    let hub_config = HubConfig::new(&postgres, &[&room]);
    let mut toml = std::fs::read_to_string(&hub_config.path).unwrap();
    toml.push_str(&format!(
        "\n[lan_ca]\ncert = {:?}\nkey = {:?}\n",
        province_ca.join("ca.pem").to_str().unwrap(),
        province_ca.join("ca-key.pem").to_str().unwrap()
    ));
    std::fs::write(&hub_config.path, toml).unwrap();
    let hub = hub_config.start();
    wait_until(
        "the room serves a certificate from the province",
        Duration::from_secs(30),
        || status(&room).lan_certificate_source() == LanCertificateSource::ProvincePush,
    );
    let first = status(&room);
    let first_expiry = first.lan_certificate_not_after.unwrap().seconds;
    hub.wait_for_log("pushed the room's LAN certificate", Duration::from_secs(5));

    // 380 days on, on the room's clock, the certificate expires within 30 days.
    agent.kill();
    let later = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .saturating_add(jiff::Span::new().days(380))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let _agent = room.start_with_env(&[("FIRMWARE_AGENT_SIMULATED_CLOCK", &later)]);
    wait_until(
        "the room's certificate renewed",
        Duration::from_secs(30),
        || {
            status(&room)
                .lan_certificate_not_after
                .is_some_and(|renewed| renewed.seconds > first_expiry + 300 * 86_400)
        },
    );
    assert_eq!(
        status(&room).lan_certificate_source(),
        LanCertificateSource::ProvincePush
    );
}

#[test]
fn check_config_refuses_a_lan_ca_that_cannot_sign_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    init_ca(&one);
    init_ca(&two);
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        "[postgres]\nurl = \"host=127.0.0.1 user=hub dbname=province\"\n\n[tls]\nplaintext = true\n\n\
         [lan_ca]\ncert = \"one/ca.pem\"\nkey = \"two/nothing.pem\"\n",
    )
    .unwrap();
    let output = Command::new(common::hub_binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:8:8: lan_ca:", path.display()))
            && stderr.contains("nothing.pem"),
        "{stderr}"
    );
}
