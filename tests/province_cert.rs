//! The room's LAN certificate pushed by the province's hub, end to end: the
//! real agent serves a school certificate over HTTPS, a hub client pushes
//! certificates over mutual-TLS gRPC, and fresh TLS handshakes, an open
//! connection, `GetStatus`, `/healthz` and headless Chromium show what is
//! served.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Room, agent_binary, free_addresses};
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{
    GetStatusRequest, LanCertificateSource, PutCertificateRequest, PutCertificateResponse,
};
use pki::Pki;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The room's mDNS name, as `Room`'s config makes it.
const ROOM_NAME: &str = "TEST-01-P101.local";

/// A room serving a school certificate over HTTPS and the hub over mutual
/// TLS, configured with the province's LAN CA; and that CA.
struct ProvinceRoom {
    room: Room,
    https: SocketAddr,
    school_ca: PathBuf,
    province: LanCa,
    hub: Hub,
    _pki: tempfile::TempDir,
}

/// The hub's side of mutual TLS: the CA the room's gRPC certificate chains
/// to, and the hub's client certificate.
struct Hub {
    room_ca: String,
    cert: String,
    key: String,
}

impl ProvinceRoom {
    fn new() -> ProvinceRoom {
        let pki_dir = tempfile::tempdir().unwrap();
        let (room_ca, hub_ca) = (Pki::new("room gRPC CA"), Pki::new("hub CA"));
        let (server_cert, server_key) = room_ca.issue(
            pki_dir.path(),
            "agent",
            &["localhost"],
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        );
        let (hub_cert, hub_key) = hub_ca.issue(
            pki_dir.path(),
            "hub",
            &["hub.example"],
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        );
        let room_ca_path = room_ca.write_ca(&pki_dir.path().join("room-ca.pem"));
        let hub_ca_path = hub_ca.write_ca(&pki_dir.path().join("hub-ca.pem"));
        let hub = Hub {
            room_ca: std::fs::read_to_string(room_ca_path).unwrap(),
            cert: std::fs::read_to_string(hub_cert).unwrap(),
            key: std::fs::read_to_string(hub_key).unwrap(),
        };
        let [https] = free_addresses();
        let room = Room::with_hub(
            &format!(
                "tls_cert = {:?}\ntls_key = {:?}\nclient_ca = {:?}\n",
                server_cert.to_str().unwrap(),
                server_key.to_str().unwrap(),
                hub_ca_path.to_str().unwrap()
            ),
            "",
        );
        let dir = room.dir.path();
        let school = dir.join("school-ca");
        run_ok(&["tls", "init-ca", "--dir", school.to_str().unwrap()]);
        run_ok(&[
            "tls",
            "issue",
            "--ca",
            school.to_str().unwrap(),
            "--name",
            ROOM_NAME,
            "--ip",
            "127.0.0.1",
            "--out",
            dir.join("room").to_str().unwrap(),
        ]);
        let province = LanCa::init(&dir.join("province-ca"));
        let config = std::fs::read_to_string(&room.config_path).unwrap().replace(
            &format!("listen = \"{}\"\n", room.http),
            &format!(
                "listen = \"{}\"\ntls_cert = \"room/room.pem\"\ntls_key = \"room/room-key.pem\"\ntls_listen = \"{https}\"\nprovince_lan_ca = \"province-ca/ca.pem\"\n",
                room.http
            ),
        );
        std::fs::write(&room.config_path, config).unwrap();
        ProvinceRoom {
            room,
            https,
            school_ca: school.join("ca.pem"),
            province,
            hub,
            _pki: pki_dir,
        }
    }

    async fn hub_client(&self) -> SyncServiceClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.hub.room_ca))
            .identity(Identity::from_pem(&self.hub.cert, &self.hub.key))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", self.room.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        SyncServiceClient::new(channel)
    }

    /// A TLS connection to the HTTPS port trusting the school's and the province's CAs.
    async fn connect(&self) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        for ca in [&self.school_ca, &self.province.certificate] {
            for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(certificate.unwrap()).unwrap();
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(self.https).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    }
}

/// A LAN CA made by `firmware-agent tls init-ca`, as the province makes one,
/// issuing certificates of any validity for the tests.
struct LanCa {
    certificate: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl LanCa {
    fn init(dir: &Path) -> LanCa {
        run_ok(&["tls", "init-ca", "--dir", dir.to_str().unwrap()]);
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca-key.pem")).unwrap())
                .unwrap();
        let certificate = dir.join("ca.pem");
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(&certificate).unwrap(), key)
                .unwrap();
        LanCa {
            certificate,
            issuer,
        }
    }

    /// A certificate for `names` (DNS names and IP addresses) valid from
    /// `not_before` to `not_after` (YYYY-MM-DD): its chain and key, PEM.
    fn issue(&self, names: &[&str], not_before: &str, not_after: &str) -> PutCertificateRequest {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let date = |text: &str| {
            let date: jiff::civil::Date = text.parse().unwrap();
            rcgen::date_time_ymd(date.year().into(), date.month() as u8, date.day() as u8)
        };
        params.not_before = date(not_before);
        params.not_after = date(not_after);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        PutCertificateRequest {
            chain_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A certificate for the room valid from yesterday for `days`.
    fn for_room(&self, days: i64) -> PutCertificateRequest {
        self.issue(&[ROOM_NAME, "127.0.0.1"], &day(-1), &day(days))
    }
}

/// Today (UTC) plus `days`, as YYYY-MM-DD.
fn day(days: i64) -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .saturating_add(jiff::Span::new().days(days))
        .to_string()
}

fn run_ok(args: &[&str]) -> String {
    let output = Command::new(agent_binary()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The serial number (lowercase hex) of the leaf in `chain_pem`.
fn serial_of_pem(chain_pem: &str) -> String {
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    serial_of(&der)
}

fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
    hex::encode(parsed.raw_serial())
}

/// The serial number of the certificate `stream`'s server presented.
fn served_serial(stream: &TlsStream<TcpStream>) -> String {
    serial_of(&stream.get_ref().1.peer_certificates().unwrap()[0])
}

/// `GET path` over an open connection kept alive: the status and the body.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("a response within 10 s")
                .unwrap();
        assert!(read > 0, "the connection closed mid-response");
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("a content-length");
        if body.len() >= length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, body[..length].to_owned());
        }
    }
}

/// Waits until `/healthz` over HTTPS shows `tls` in `state`; panics after 10 s.
async fn until_tls_is(secure: &ProvinceRoom, state: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut stream = secure.connect().await;
        let (_, body) = get(&mut stream, "/healthz").await;
        let health: Value = serde_json::from_str(&body).unwrap();
        let tls = &health["subsystems"]["tls"];
        if tls["state"] == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tls is not {state} within 10 s: {tls}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_certificate_is_served_at_once_and_open_connections_keep_theirs() {
    let secure = ProvinceRoom::new();
    let agent = secure.room.start_async("agent ready").await;
    let mut hub = secure.hub_client().await;

    let mut before = secure.connect().await;
    let school_serial = served_serial(&before);
    assert_eq!(get(&mut before, "/healthz").await.0, 200);
    let status = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.lan_certificate_source(),
        LanCertificateSource::SchoolFile
    );
    assert_eq!(status.lan_certificate_names, [ROOM_NAME, "127.0.0.1"]);
    let school_expiry = status.lan_certificate_not_after.unwrap().seconds;

    // A certificate that expires within 30 days is served, and shown degraded.
    let short = secure.province.for_room(20);
    let response: PutCertificateResponse = hub
        .put_certificate(short.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(response.serving);
    let fresh = secure.connect().await;
    assert_eq!(served_serial(&fresh), serial_of_pem(&short.chain_pem));
    assert_ne!(served_serial(&fresh), school_serial);
    let status = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.lan_certificate_source(),
        LanCertificateSource::ProvincePush
    );
    let short_expiry = status.lan_certificate_not_after.unwrap().seconds;
    assert_eq!(Some(short_expiry), response.not_after.map(|t| t.seconds));
    assert!(short_expiry < school_expiry);
    until_tls_is(&secure, "degraded").await;

    // A fresh one clears it, without a restart.
    let long = secure.province.for_room(398);
    hub.put_certificate(long.clone()).await.unwrap();
    assert_eq!(
        served_serial(&secure.connect().await),
        serial_of_pem(&long.chain_pem)
    );
    until_tls_is(&secure, "ok").await;

    // The connection opened before the pushes goes on with the school's certificate.
    assert_eq!(get(&mut before, "/healthz").await.0, 200);
    assert_eq!(served_serial(&before), school_serial);

    // Kept 0600 in a 0700 directory, and served again after a restart.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let kept = secure.room.data_dir().join("tls/province-room.pem");
    assert_eq!((mode(&kept), mode(kept.parent().unwrap())), (0o600, 0o700));
    drop(agent);
    let _again = secure.room.start_async("agent ready").await;
    assert_eq!(
        served_serial(&secure.connect().await),
        serial_of_pem(&long.chain_pem)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_push_is_refused_naming_what_is_wrong_and_the_served_certificate_stays() {
    let secure = ProvinceRoom::new();
    let _agent = secure.room.start_async("agent ready").await;
    let mut hub = secure.hub_client().await;
    let good = secure.province.for_room(398);
    hub.put_certificate(good.clone()).await.unwrap();
    let served = serial_of_pem(&good.chain_pem);

    let other_key = PutCertificateRequest {
        key_pem: secure.province.for_room(398).key_pem,
        ..good.clone()
    };
    let other_name =
        secure
            .province
            .issue(&["TEST-01-P102.local", "127.0.0.1"], &day(-1), &day(398));
    let no_address = secure.province.issue(&[ROOM_NAME], &day(-1), &day(398));
    let expired = secure
        .province
        .issue(&[ROOM_NAME, "127.0.0.1"], &day(-30), &day(-1));
    let elsewhere = LanCa::init(&secure.room.dir.path().join("other-ca")).for_room(398);
    let garbage = PutCertificateRequest {
        chain_pem: "not a certificate".to_owned(),
        key_pem: good.key_pem.clone(),
    };
    for (case, request, says) in [
        (
            "a key that is not the certificate's",
            other_key,
            "key_pem: not the private key",
        ),
        (
            "another room's name",
            other_name,
            "does not name TEST-01-P101.local",
        ),
        ("no address", no_address, "does not name 127.0.0.1"),
        ("an expired certificate", expired, "expired"),
        (
            "another CA",
            elsewhere,
            "does not chain to the province's LAN CA",
        ),
        ("no certificate", garbage, "chain_pem: "),
    ] {
        let refused = hub.put_certificate(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{case}: {refused:?}");
        assert!(
            refused.message().contains(says) && refused.message().contains("unchanged"),
            "{case}: {}",
            refused.message()
        );
        assert_eq!(served_serial(&secure.connect().await), served, "{case}");
    }
    let kept =
        std::fs::read_to_string(secure.room.data_dir().join("tls/province-room.pem")).unwrap();
    assert_eq!(serial_of_pem(&kept), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_trusting_only_the_province_ca_loads_the_tablet_page_after_the_push() {
    let secure = ProvinceRoom::new();
    let _agent = secure.room.start_async("agent ready").await;
    let mut hub = secure.hub_client().await;
    hub.put_certificate(secure.province.for_room(398))
        .await
        .unwrap();
    let home = browser::home_trusting(&secure.province.certificate);
    let page = format!("https://127.0.0.1:{}/tablet/", secure.https.port());
    let mut chromium = browser::Chromium::open_at_home(&page, home.path()).await;
    chromium
        .wait_for("document.readyState === 'complete' && !!document.getElementById('status')")
        .await;
    assert_eq!(chromium.evaluate("location.protocol").await, "https:");
}
