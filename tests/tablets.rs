//! The tablets and the live lesson, end to end: the real agent, real
//! WebSocket clients over loopback, the real SQLite outbox, and the browser
//! client in Debian's headless Chromium.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/lesson.rs"]
mod lesson;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Room, api_call as call};
use futures_util::{SinkExt, StreamExt};
use lesson::{
    PATIENCE, ProtocolTablet as Tablet, open_pairing, outbox_of_kind as outbox, pair, stop,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const TABLETS: usize = 40;

fn question(id: &str) -> Value {
    json!({
        "id": id,
        "question_kind": "single_choice",
        "prompt": "7 × 6 = ?",
        "choices": [{ "id": "a", "text": "42" }, { "id": "b", "text": "36" }],
        "correct": ["a"],
        "time_limit_s": 120,
    })
}

/// The lesson's records in the outbox: (command, acknowledged, connected) each.
fn lesson_records(room: &Room) -> Vec<(String, u32, u32)> {
    outbox(room, "lesson.record")
        .into_iter()
        .map(|p| match p {
            firmware_agent::proto::event::Payload::LessonRecord(r) => {
                (r.command, r.acknowledged, r.connected)
            }
            _ => unreachable!(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_tablets_pair_in_one_window_follow_a_lock_and_answer_a_question() {
    let room = Room::new("");
    let agent = room.start();
    let address = room.http;

    let code = open_pairing(address).await;
    let pairings = (0..TABLETS).map(|n| {
        let code = code.clone();
        tokio::spawn(async move { pair(address, &code, &format!("Bàn {n}")).await })
    });
    let mut tokens = Vec::new();
    for pairing in pairings {
        tokens.push(pairing.await.unwrap());
    }
    let (_, window) = call(address, "GET", "/api/tablets/pairing", None).await;
    assert_eq!(window["window"]["paired"], TABLETS);

    // Each tablet acks every command and answers the question: even tablets rightly.
    let mut clients = Vec::new();
    for (n, (_, token)) in tokens.iter().enumerate() {
        let (mut tablet, welcome) = Tablet::connect(address, token, 0).await;
        assert_eq!(welcome["state"]["locked"], false);
        clients.push(tokio::spawn(async move {
            let lock = tablet.follow_until("lock").await;
            assert_eq!(lock["command"]["message"], "Các em nhìn lên bảng");
            let start = tablet.follow_until("question_start").await;
            assert!(
                start["command"].get("correct").is_none(),
                "the correct answer must not reach tablets: {start}"
            );
            let choice = if n % 2 == 0 { "a" } else { "b" };
            tablet
                .send(json!({ "type": "answer", "question": "q-7x6", "choices": [choice] }))
                .await;
            let received = tablet.receive().await;
            assert_eq!(
                received,
                json!({ "type": "answer_received", "question": "q-7x6" })
            );
            tablet
        }));
    }
    let (_, listed) = call(address, "GET", "/api/tablets", None).await;
    assert_eq!(listed["connected"], TABLETS);

    let (status, lock) = call(
        address,
        "POST",
        "/api/lesson/lock?wait_ms=15000",
        Some(json!({ "message": "Các em nhìn lên bảng" })),
    )
    .await;
    assert_eq!(status, 200, "{lock}");
    assert_eq!(
        (lock["connected"].as_u64(), lock["acknowledged"].as_u64()),
        (Some(TABLETS as u64), Some(TABLETS as u64)),
        "{lock}"
    );

    let (status, started) = call(
        address,
        "POST",
        "/api/lesson/question/start",
        Some(question("q-7x6")),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    for client in clients {
        client.await.unwrap();
    }
    let (_, results) = call(
        address,
        "GET",
        "/api/lesson/question?answers=40&wait_ms=15000",
        None,
    )
    .await;
    let results = &results["results"];
    assert_eq!(results["answers"].as_array().unwrap().len(), TABLETS);
    assert_eq!(
        (
            results["tally"]["a"].as_u64(),
            results["tally"]["b"].as_u64(),
            results["correct"].as_u64()
        ),
        (Some(20), Some(20), Some(20))
    );

    // Every answer was durable before the tablet heard `answer_received`.
    let answers = outbox(&room, "lesson.answer");
    assert_eq!(answers.len(), TABLETS);
    let mut by_correctness = BTreeMap::new();
    for answer in answers {
        let firmware_agent::proto::event::Payload::QuestionAnswer(answer) = answer else {
            unreachable!()
        };
        assert_eq!(answer.question_id, "q-7x6");
        assert!(answer.graded);
        assert_eq!(answer.correct, answer.choices == ["a"]);
        *by_correctness.entry(answer.correct).or_insert(0) += 1;
    }
    assert_eq!(by_correctness, BTreeMap::from([(false, 20), (true, 20)]));
    assert_eq!(outbox(&room, "tablet.pairing").len(), TABLETS);

    // The lesson's log: each command with the acks of the 40.
    agent.wait_for_log("lesson command recorded", PATIENCE);
    agent.wait_for_log("lesson command recorded", PATIENCE);
    let log = lesson_records(&room);
    assert_eq!(
        log,
        [
            ("lock".to_owned(), 40, 40),
            ("question.start".to_owned(), 40, 40)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_dropped_mid_question_reconnects_and_catches_up() {
    let room = Room::new("");
    let agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (_, token) = pair(address, &code, "Bàn 5").await;
    let (mut tablet, _) = Tablet::connect(address, &token, 0).await;

    call(
        address,
        "POST",
        "/api/lesson/question/start",
        Some(question("q1")),
    )
    .await;
    let start = tablet.follow_until("question_start").await;
    let seen = start["id"].as_u64().unwrap();
    drop(tablet);
    agent.wait_for_log("tablet disconnected", PATIENCE);

    call(
        address,
        "POST",
        "/api/lesson/message",
        Some(json!({ "text": "Còn 1 phút" })),
    )
    .await;
    call(
        address,
        "POST",
        "/api/lesson/lock",
        Some(json!({ "message": "Hết giờ thảo luận" })),
    )
    .await;

    let (mut tablet, welcome) = Tablet::connect(address, &token, seen).await;
    let state = &welcome["state"];
    assert_eq!(state["locked"], true, "{welcome}");
    assert_eq!(state["lock_message"], "Hết giờ thảo luận");
    assert_eq!(state["question"]["question"]["id"], "q1");
    assert_eq!(state["question"]["answered"], false);
    let missed: Vec<&str> = welcome["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["command"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["message", "lock"]);

    tablet
        .send(json!({ "type": "answer", "question": "q1", "choices": ["a"] }))
        .await;
    assert_eq!(tablet.receive().await["type"], "answer_received");
    drop(tablet);
    let (_, welcome) =
        Tablet::connect(address, &token, state["last_command"].as_u64().unwrap()).await;
    assert_eq!(welcome["state"]["question"]["answered"], true, "{welcome}");
    assert_eq!(welcome["missed"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_from_one_address_are_refused_unchecked_and_a_revoked_token_too() {
    let room = Room::new("[tablets]\nmax_wrong_codes = 5\nretry_delay_ms = 60000\n");
    let agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (status, qr) = call(address, "GET", "/api/tablets/pairing/qr.svg", None).await;
    assert_eq!(status, 200);
    assert!(
        qr.as_str().is_some_and(|svg| svg.contains("<svg")),
        "the panel shows the QR code as SVG: {qr:.80}"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, body) = call(
            address,
            "POST",
            "/tablet/pair",
            Some(json!({ "code": wrong })),
        )
        .await;
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty())
                && body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        statuses.push((status, body["error"].as_str().unwrap().to_owned()));
    }
    assert_eq!(statuses[0], (403, "wrong_code".to_owned()));
    assert!(
        statuses[1..]
            .iter()
            .all(|s| *s == (429, "too_soon".to_owned())),
        "{statuses:?}"
    );
    let (status, _) = call(
        address,
        "POST",
        "/tablet/pair",
        Some(json!({ "code": code })),
    )
    .await;
    assert_eq!(
        status, 429,
        "the right code is not checked inside the delay"
    );
    let (_, window) = call(address, "GET", "/api/tablets/pairing", None).await;
    assert_eq!(
        (
            &window["window"]["locked"],
            &window["window"]["wrong_codes"],
            &window["window"]["refused_tries"]
        ),
        (&json!(false), &json!(1), &json!(8)),
        "one address cannot lock the class's window: {window}"
    );

    let code = open_pairing(address).await;
    let (tablet_id, token) = pair(address, &code, "Bàn 9").await;
    let (mut tablet, _) = Tablet::connect(address, &token, 0).await;
    let (status, revoked) = call(
        address,
        "POST",
        &format!("/api/tablets/{tablet_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(
        tablet.receive().await,
        Value::Null,
        "the live connection is closed at once"
    );
    agent.wait_for_log("tablet disconnected", PATIENCE);

    let mut again = Tablet::open(address).await;
    again
        .send(json!({ "type": "hello", "v": 1, "token": token }))
        .await;
    assert_eq!(again.receive().await["code"], "unauthorized");
    assert_eq!(again.receive().await, Value::Null);
    let records: Vec<i32> = outbox(&room, "tablet.pairing")
        .into_iter()
        .map(|p| match p {
            firmware_agent::proto::event::Payload::TabletPairing(record) => record.action,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(records, [1, 2], "paired, then revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_a_protocol_error_and_disturb_no_other_tablet() {
    let room = Room::new("");
    let _agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (_, token_a) = pair(address, &code, "Bàn 1").await;
    let (_, token_b) = pair(address, &code, "Bàn 2").await;

    let mut stranger = Tablet::open(address).await;
    stranger.send(json!({ "type": "ping" })).await;
    assert_eq!(stranger.receive().await["code"], "out_of_order");

    let (mut noisy, _) = Tablet::connect(address, &token_a, 0).await;
    let (mut quiet, _) = Tablet::connect(address, &token_b, 0).await;
    let cases = [
        ("{\"type\": \"answer\", ".to_owned(), "malformed"),
        ("{\"type\": \"dance\"}".to_owned(), "malformed"),
        ("[1, 2, 3]".to_owned(), "malformed"),
        (
            json!({ "type": "status", "locked": "maybe" }).to_string(),
            "malformed",
        ),
        (
            json!({ "type": "answer", "question": "q1", "text": "x".repeat(20_000) }).to_string(),
            "too_large",
        ),
        (
            json!({ "type": "ack", "id": 999 }).to_string(),
            "out_of_order",
        ),
        (
            json!({ "type": "hello", "v": 1, "token": token_a }).to_string(),
            "out_of_order",
        ),
        (
            json!({ "type": "answer", "question": "q1", "choices": ["a"] }).to_string(),
            "question_closed",
        ),
    ];
    for (frame, expected) in cases {
        noisy.send_text(frame.clone()).await;
        let reply = noisy.receive().await;
        assert_eq!(reply["type"], "error", "{frame:.60}: {reply}");
        assert_eq!(reply["code"], expected, "{frame:.60}: {reply}");
    }
    noisy.send(json!({ "type": "ping" })).await;
    assert_eq!(
        noisy.receive().await["type"],
        "pong",
        "the noisy tablet's connection still works"
    );

    let waiting = call(
        address,
        "POST",
        "/api/lesson/lock?wait_ms=10000",
        Some(json!({ "message": "Trật tự" })),
    );
    let (lock, quiet_saw, noisy_saw) = tokio::join!(
        waiting,
        quiet.follow_until("lock"),
        noisy.follow_until("lock")
    );
    assert_eq!(quiet_saw["id"], noisy_saw["id"]);
    assert_eq!(
        (
            lock.1["connected"].as_u64(),
            lock.1["acknowledged"].as_u64()
        ),
        (Some(2), Some(2)),
        "{}",
        lock.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_pairs_and_answers_a_question_in_headless_chromium() {
    let room = Room::new("");
    let _agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let mut chromium =
        browser::Chromium::open(&format!("http://{address}/tablet/#code={code}")).await;

    chromium.wait_for("!document.getElementById('pairing').hidden && document.getElementById('code').value.length === 6").await;
    chromium.evaluate("document.getElementById('name').value = 'Bàn Chromium'; document.getElementById('pair-button').click(); true").await;
    chromium
        .wait_for("document.getElementById('status').dataset.state === 'online'")
        .await;
    assert_eq!(
        chromium
            .evaluate("document.getElementById('status').textContent")
            .await,
        "Bàn Chromium"
    );

    let (status, lock) = call(
        address,
        "POST",
        "/api/lesson/lock?wait_ms=10000",
        Some(json!({ "message": "Chờ một chút" })),
    )
    .await;
    assert_eq!(
        (status, lock["acknowledged"].as_u64()),
        (200, Some(1)),
        "{lock}"
    );
    chromium
        .wait_for("!document.getElementById('lock').hidden")
        .await;
    assert_eq!(
        chromium
            .evaluate("document.getElementById('lock-message').textContent")
            .await,
        "Chờ một chút"
    );
    call(address, "POST", "/api/lesson/unlock?wait_ms=10000", None).await;

    call(
        address,
        "POST",
        "/api/lesson/question/start",
        Some(question("q-web")),
    )
    .await;
    chromium.wait_for("document.getElementById('lock').hidden && document.querySelectorAll('#choices .choice').length === 2").await;
    chromium.evaluate("document.querySelector('#choices .choice[data-id=\"a\"]').click(); document.getElementById('send-answer').click(); true").await;
    chromium
        .wait_for("document.getElementById('answer-state').className === 'sent'")
        .await;

    let answers = outbox(&room, "lesson.answer");
    let [firmware_agent::proto::event::Payload::QuestionAnswer(answer)] = &answers[..] else {
        panic!("one answer expected: {answers:?}")
    };
    assert_eq!(
        (
            answer.question_id.as_str(),
            answer.choices.as_slice(),
            answer.correct
        ),
        ("q-web", &["a".to_owned()][..], true)
    );
}

/// A native client's TLS: trusts exactly the certificate whose SHA-256 the QR code gave.
mod pinned {
    use std::sync::Arc;

    use sha2::{Digest, Sha256};
    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{
        CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Pinned {
        fingerprint: String,
        provider: CryptoProvider,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if hex::encode(Sha256::digest(end_entity)) == self.fingerprint {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the agent's certificate is not the one paired with".into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub fn connector(fingerprint: &str) -> tokio_rustls::TlsConnector {
        let verifier = Pinned {
            fingerprint: fingerprint.to_owned(),
            provider: ring::default_provider(),
        };
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_client_pins_the_agents_certificate_from_the_qr_code() {
    let room = Room::new("[tablets]\ntls_listen = \"127.0.0.1:0\"\n");
    let _agent = room.start();
    let address = room.http;
    let (_, opened) = call(address, "POST", "/api/tablets/pairing", None).await;
    let fingerprint = opened["tls"]["fingerprint"].as_str().unwrap().to_owned();
    let port = opened["tls"]["port"].as_u64().unwrap() as u16;
    let link = opened["link"].as_str().unwrap();
    assert!(
        link.ends_with(&format!("&tls={port}&fp={fingerprint}")),
        "the QR code carries the pin: {link}"
    );
    let (_, token) = pair(
        address,
        opened["window"]["code"].as_str().unwrap(),
        "Máy gốc",
    )
    .await;
    let secure: SocketAddr = ([127, 0, 0, 1], port).into();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = TcpStream::connect(secure).await.unwrap();
    let tls = pinned::connector(&fingerprint)
        .connect(name.clone(), tcp)
        .await
        .expect("the pinned certificate is accepted");
    let (mut socket, _) = tokio_tungstenite::client_async("wss://localhost/tablet/ws", tls)
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({ "type": "hello", "v": 1, "token": token }).to_string(),
        ))
        .await
        .unwrap();
    let welcome: Value =
        serde_json::from_str(socket.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    let impostor = "0".repeat(64);
    let tcp = TcpStream::connect(secure).await.unwrap();
    let refused = pinned::connector(&impostor).connect(name, tcp).await;
    assert!(
        refused.is_err(),
        "a certificate other than the pinned one is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_store_serves_paired_tablets_with_ranges_and_etags() {
    let room = Room::new("");
    std::fs::create_dir_all(room.data_dir().join("content/toan")).unwrap();
    std::fs::write(
        room.data_dir().join("content/toan/bài 1.txt"),
        "Bài 1: phép cộng",
    )
    .unwrap();
    let _agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (_, token) = pair(address, &code, "Bàn 1").await;
    let url = format!("http://{address}/content/toan/b%C3%A0i%201.txt");
    let result = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let get = |headers: &[(&str, &str)]| {
            let mut request = agent.get(&url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let mut response = request.call().unwrap();
            let etag = response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                response.status().as_u16(),
                etag,
                response.body_mut().read_to_string().unwrap_or_default(),
            )
        };
        let bearer = format!("Bearer {token}");
        let anonymous = get(&[]);
        let whole = get(&[("authorization", &bearer)]);
        let part = get(&[("authorization", &bearer), ("range", "bytes=0-5")]);
        let etag = whole.1.clone().expect("an ETag");
        let unchanged = get(&[("authorization", &bearer), ("if-none-match", &etag)]);
        let by_query = agent
            .get(&format!("{url}?token={token}"))
            .call()
            .unwrap()
            .status()
            .as_u16();
        (anonymous.0, whole, part, unchanged.0, by_query)
    })
    .await
    .unwrap();
    let (anonymous, whole, part, unchanged, by_query) = result;
    assert_eq!(anonymous, 401, "only paired tablets read the content store");
    assert_eq!((whole.0, whole.2.as_str()), (200, "Bài 1: phép cộng"));
    assert_eq!(
        (part.0, part.2.as_str()),
        (206, "Bài 1"),
        "a range request gets just the range"
    );
    assert_eq!(unchanged, 304);
    assert_eq!(by_query, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_bound_pupil_only_with_consent_to_keep_learning_records() {
    let room = Room::new("");
    room.import_roster(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n\
         pupil,010206001234,Nguyễn Văn An,6A1,no,yes,2026-08-20\n\
         pupil,010206005678,Lò Thị Bình,6A1,no,no,\n",
    );
    let _agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (consenting, token_a) = pair(address, &code, "Bàn An").await;
    let (declining, token_b) = pair(address, &code, "Bàn Bình").await;
    for (tablet, pupil) in [(&consenting, "010206001234"), (&declining, "010206005678")] {
        let (status, body) = call(
            address,
            "POST",
            &format!("/api/tablets/{tablet}/bind"),
            Some(json!({ "pupil_personal_id": pupil })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = call(
        address,
        "POST",
        &format!("/api/tablets/{consenting}/bind"),
        Some(json!({ "pupil_personal_id": "010206009999" })),
    )
    .await;
    assert_eq!(status, 404, "a pupil not in the roster cannot be bound");

    let (mut a, _) = Tablet::connect(address, &token_a, 0).await;
    let (mut b, _) = Tablet::connect(address, &token_b, 0).await;
    call(
        address,
        "POST",
        "/api/lesson/question/start",
        Some(question("q1")),
    )
    .await;
    for tablet in [&mut a, &mut b] {
        tablet.follow_until("question_start").await;
        tablet
            .send(json!({ "type": "answer", "question": "q1", "choices": ["a"] }))
            .await;
        assert_eq!(tablet.receive().await["type"], "answer_received");
    }
    let named: BTreeMap<String, String> = outbox(&room, "lesson.answer")
        .into_iter()
        .map(|p| match p {
            firmware_agent::proto::event::Payload::QuestionAnswer(answer) => {
                (answer.tablet_id, answer.pupil_personal_id)
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(named[&consenting], "010206001234");
    assert_eq!(
        named[&declining], "",
        "no consent: the answer is kept without the pupil's id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_raised_hands_shows_on_the_panel_without_a_log_line_each() {
    let room = Room::new("");
    let mut agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (tablet_id, token) = pair(address, &code, "Bàn 1").await;
    let (mut tablet, _) = Tablet::connect(address, &token, 0).await;
    for _ in 0..2000 {
        tablet.send(json!({ "type": "raise_hand" })).await;
    }
    tablet.send(json!({ "type": "ping" })).await;
    assert_eq!(
        tablet.receive().await["type"],
        "pong",
        "the hands before the ping were handled"
    );
    let (_, listed) = call(address, "GET", "/api/tablets", None).await;
    let row = listed["tablets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["tablet"]["tablet_id"] == tablet_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        row["status"]["hand_raised"], true,
        "the panel shows the hand: {row}"
    );
    stop(&mut agent, Duration::from_secs(10));
    let log = agent.log.lock().unwrap().clone();
    let per_hand = log
        .iter()
        .filter(|line| line.contains("hand raised"))
        .count();
    assert_eq!(
        per_hand,
        0,
        "2000 messages, {per_hand} info lines about them; the log has {} lines",
        log.len()
    );
}

/// A stop with a tablet connected: the tablet hears a close frame saying the
/// agent is going away, the agent exits 0 within the 5 seconds `DESIGN.md`
/// promises, and the record of a command still waiting for its acks is kept
/// with the acks it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_each_tablets_channel_and_keeps_the_record_of_a_command_awaiting_acks() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let room = Room::new("[tablets]\nack_timeout_ms = 600000\n");
    let mut agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (_, token) = pair(address, &code, "Bàn 3").await;
    let (mut tablet, _) = Tablet::connect(address, &token, 0).await;
    let (status, lock) = call(
        address,
        "POST",
        "/api/lesson/lock",
        Some(json!({ "message": "Hết giờ" })),
    )
    .await;
    assert_eq!(status, 200, "{lock}");
    assert_eq!(
        tablet.receive().await["command"]["kind"],
        "lock",
        "seen, never acked"
    );

    let stopping = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    let close = loop {
        match tokio::time::timeout(PATIENCE, tablet.socket.next())
            .await
            .expect("the agent closes the channel within the patience")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            ended => panic!("the channel ended without a close frame: {ended:?}"),
        }
    };
    let close = close.expect("the close frame gives a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    let exit = tokio::task::block_in_place(|| agent.wait_exit(Duration::from_secs(5)));
    assert!(
        exit.is_some_and(|status| status.success()),
        "exit 0 within 5 s of SIGTERM: {exit:?} after {:?}",
        stopping.elapsed()
    );

    let records = lesson_records(&room);
    assert_eq!(
        records,
        [("lock".to_owned(), 0, 1)],
        "the lock's record, written at the stop with the acks so far"
    );
}

/// On a room's LAN without a default route (no Internet, or an uplink on
/// another interface that is down), the QR code names the address of the
/// interface tablets share with the agent; with no such interface, the panel
/// says so instead of showing `0.0.0.0`. Run in a private network namespace
/// (`unshare`) whose only LAN is a bridge the test makes.
#[test]
fn the_pairing_qr_code_names_the_lan_address_without_a_default_route() {
    let room = Room::new("[tablets]\ndiscovery = false\n");
    let port = room.http.port();
    room.set_http_listen(&format!("0.0.0.0:{port}"));
    let run = room.run_in_own_network(
        "",
        &format!(
            r#"local=http://127.0.0.1:{port}
echo "alone $(curl -s -X POST -H 'content-type: application/json' $local/api/tablets/pairing)"
echo "alone_qr $(curl -s -o '{dir}/alone.svg' -w '%{{http_code}}' $local/api/tablets/pairing/qr.svg)"
ip link add br-lop type bridge
ip link set br-lop up
ip addr add 10.20.30.40/24 dev br-lop
echo "routes $(ip route | tr '\n' ';')"
echo "lan $(curl -s -X POST -H 'content-type: application/json' $local/api/tablets/pairing)"
echo "lan_qr $(curl -s -o /dev/null -w '%{{http_code}}' $local/api/tablets/pairing/qr.svg)""#,
            dir = room.dir.path().display(),
        ),
    );
    let answer = |key: &str| run.answer(key);
    assert!(!answer("routes").contains("default"), "{}", run.text);
    let lan: Value = serde_json::from_str(&answer("lan")).unwrap();
    let link = lan["link"].as_str().unwrap_or_default();
    assert!(
        link.starts_with(&format!("http://10.20.30.40:{port}/tablet/#code=")),
        "the tablets' address, not the route's: {lan}"
    );
    assert_eq!(answer("lan_qr"), "200");

    let alone: Value = serde_json::from_str(&answer("alone")).unwrap();
    assert_eq!(alone["link"], Value::Null, "no link to 0.0.0.0: {alone}");
    let problem = &alone["link_problem"];
    assert_eq!(problem["error"], "no_lan_address", "{alone}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .starts_with("Máy của lớp chưa có địa chỉ"),
        "{alone}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("http.listen"),
        "{alone}"
    );
    assert_eq!(answer("alone_qr"), "503");
    let shown = std::fs::read_to_string(room.dir.path().join("alone.svg")).unwrap();
    assert!(
        shown.starts_with("<svg") && shown.contains("http.listen"),
        "the panel shows why there is no QR code: {shown}"
    );
    assert_eq!(answer("exit"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_store_follows_no_link_out_of_itself() {
    let room = Room::new("");
    let content = room.data_dir().join("content");
    std::fs::create_dir_all(content.join("toan")).unwrap();
    std::fs::write(content.join("toan/bai-1.txt"), "Bài 1: phép cộng").unwrap();
    std::os::unix::fs::symlink("toan/bai-1.txt", content.join("moi-nhat.txt")).unwrap();
    std::os::unix::fs::symlink(&room.config_path, content.join("cau-hinh.toml")).unwrap();
    std::os::unix::fs::symlink(room.data_dir(), content.join("du-lieu")).unwrap();
    std::os::unix::fs::symlink("/etc", content.join("he-thong")).unwrap();
    let _agent = room.start();
    let address = room.http;
    let code = open_pairing(address).await;
    let (_, token) = pair(address, &code, "Bàn 1").await;
    let fetched = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        [
            "moi-nhat.txt",
            "cau-hinh.toml",
            "du-lieu/agent.sqlite3",
            "he-thong/passwd",
        ]
        .map(|name| {
            let mut response = agent
                .get(&format!("http://{address}/content/{name}"))
                .header("authorization", &format!("Bearer {token}"))
                .call()
                .unwrap();
            (
                name,
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            )
        })
    })
    .await
    .unwrap();
    assert_eq!(
        fetched[0],
        ("moi-nhat.txt", 200, "Bài 1: phép cộng".to_owned()),
        "a link within the store is served"
    );
    for (name, status, body) in &fetched[1..] {
        assert_eq!(*status, 404, "{name} leads out of the store: {body:.80}");
    }
}
