//! The class at a glance and commands to some tablets, end to end: the real
//! agent on a simulated Monday morning, the panel in headless Chromium driven
//! by touch, two browser tablets (Chromium pages) whose pupils choose their own
//! names, and protocol-level WebSocket tablets for the rest of the class.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/lesson.rs"]
mod lesson;

use std::net::SocketAddr;
use std::time::Duration;

use common::api_call as call;
use firmware_agent::proto::event::Payload;
use lesson::{
    FIRST_LESSON as FIRST_PERIOD, MONDAY_FIRST_PERIOD, PairedTablet, ProtocolTablet,
    browser_tablet, class_6a1, open_panel, outbox, protocol_tablets, screenshots, stop,
    tablet_id_named,
};
use serde_json::{Value, json};

/// Tablets that speak the protocol directly, beside the two browser tablets.
const PROTOCOL_TABLETS: usize = 6;

/// The names a paired tablet is offered to choose from, by its token.
async fn roster_offered_to(address: SocketAddr, token: &str) -> Vec<String> {
    let (url, bearer) = (
        format!("http://{address}/tablet/roster"),
        format!("Bearer {token}"),
    );
    let roster: Value = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .header("authorization", &bearer)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(roster["pupil"], Value::Null);
    let choices = roster["choices"].as_array().unwrap();
    assert!(
        choices
            .iter()
            .all(|c| !c.to_string().contains("0102060000")),
        "no personal ID reaches a tablet: {roster}"
    );
    choices
        .iter()
        .map(|c| c["full_name"].as_str().unwrap().to_owned())
        .collect()
}

fn tile(tablet_id: &str) -> String {
    format!("#class-tiles .tile[data-tablet-id=\"{tablet_id}\"]")
}

/// The id of a browser tablet, found by the name its page shows.
async fn tablet_id_of(tablet: &mut browser::Chromium, address: SocketAddr) -> String {
    let name = tablet
        .evaluate("document.getElementById('status').textContent")
        .await;
    tablet_id_named(address, &name).await
}

/// Everything issue 16's first three items promise, as a teacher and a class would do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teacher_sees_the_class_and_gives_commands_to_one_tablet_and_to_a_group() {
    let room = class_6a1("", 5);
    let _agent = room.start_at(MONDAY_FIRST_PERIOD);
    let address = room.http;

    // The panel, touched as the interactive panel is.
    let mut panel = open_panel(address, 1920, 1080).await;
    assert_eq!(
        panel
            .evaluate("document.querySelector('[data-view=class]').textContent")
            .await,
        "Cả lớp"
    );
    panel.tap("[data-view=tablets]").await;
    panel.tap("#pair-open").await;
    panel
        .wait_for("/^[0-9]{6}$/.test(document.getElementById('pair-code').textContent)")
        .await;
    let code = panel
        .evaluate("document.getElementById('pair-code').textContent")
        .await;
    let code = code.as_str().unwrap().to_owned();

    // Two pupils pair their tablets and choose their own names.
    let mut an = browser_tablet(address, &code, Some("Bàn 1"), Some("Nguyễn Văn An")).await;
    let mut binh = browser_tablet(address, &code, Some("Bàn 2"), Some("Lò Thị Bình")).await;
    let an_id = tablet_id_of(&mut an, address).await;
    let binh_id = tablet_id_of(&mut binh, address).await;

    // The rest of the class, at protocol level.
    let mut protocol = protocol_tablets(address, &code, 3, PROTOCOL_TABLETS).await;
    for paired in &protocol {
        assert_eq!(
            paired.welcome["pupil"],
            Value::Null,
            "nobody holds a new tablet"
        );
    }
    let (status, roster) = call(address, "GET", "/tablet/roster", None).await;
    assert_eq!(
        status, 401,
        "the roster is for paired tablets only: {roster}"
    );
    let offered = roster_offered_to(address, &protocol[1].token).await;
    assert_eq!(
        offered,
        ["Hà Thị Dung", "Phạm Văn Cường", "Vàng A Dế"],
        "the names An and Bình chose are taken"
    );

    // The class view: a tile per tablet, the pupils in the roster's order first.
    panel.tap("[data-view=class]").await;
    panel
        .wait_for(&format!(
            "document.querySelectorAll('#class-tiles .tile').length === {} && document.querySelectorAll('#class-tiles .tile[data-connected=true]').length === {}",
            PROTOCOL_TABLETS + 2,
            PROTOCOL_TABLETS + 2
        ))
        .await;
    let names: Vec<String> = serde_json::from_value(
        panel.evaluate("[...document.querySelectorAll('#class-tiles .tile .who')].slice(0, 2).map(e => e.textContent)").await,
    )
    .unwrap();
    assert_eq!(
        names,
        ["Lò Thị Bình", "Nguyễn Văn An"],
        "the roster's order, by name"
    );
    // The tiles are laid out as a grid by the class view's own stylesheet.
    assert_eq!(
        panel
            .evaluate("getComputedStyle(document.getElementById('class-tiles')).display")
            .await,
        "grid"
    );
    assert_eq!(
        panel
            .evaluate("document.getElementById('class-lesson').textContent")
            .await,
        FIRST_PERIOD
    );

    // The teacher binds Cường to the first protocol tablet at the panel.
    let cuong_id = &protocol[0].id;
    panel.tap(&format!("{} .more", tile(cuong_id))).await;
    panel
        .wait_for("!document.getElementById('tile-detail').hidden")
        .await;
    panel
        .evaluate("document.getElementById('detail-pupil').value = '010206000003'; true")
        .await;
    panel.tap("#detail-bind").await;
    panel
        .wait_for(&format!(
            "document.querySelector('{} .who').textContent === 'Phạm Văn Cường'",
            tile(cuong_id)
        ))
        .await;
    panel.tap("#detail-close").await;

    // A command to one tablet: Bình's screen locks, nobody else's.
    panel.tap(&tile(&binh_id)).await;
    panel
        .wait_for("document.getElementById('class-chosen').textContent === 'Đã chọn 1 máy'")
        .await;
    panel.tap("#class-lock").await;
    binh.wait_for("!document.getElementById('lock').hidden")
        .await;
    for PairedTablet { tablet, .. } in &mut protocol {
        tablet
            .heard_nothing("a lock for Bình reaches no other tablet")
            .await;
    }
    panel
        .wait_for(&format!(
            "document.querySelector('{}').dataset.locked === 'true'",
            tile(&binh_id)
        ))
        .await;
    assert_eq!(panel.evaluate("classState.view.locked").await, 1);

    // A group of three, saved and reused: a message reaches its tablets only.
    panel.tap("#class-choose-none").await;
    for PairedTablet { id, .. } in &protocol[..3] {
        panel.tap(&tile(id)).await;
    }
    panel
        .wait_for("document.getElementById('class-chosen').textContent === 'Đã chọn 3 máy'")
        .await;
    panel
        .evaluate("document.getElementById('group-name').value = 'Nhóm 1'; true")
        .await;
    panel.tap("#group-save").await;
    panel
        .wait_for("document.querySelector('#class-groups [data-group=\"Nhóm 1\"]') !== null")
        .await;
    panel.tap("#class-choose-none").await;
    panel.tap("#class-groups [data-group=\"Nhóm 1\"]").await;
    panel
        .wait_for("document.getElementById('class-chosen').textContent === 'Đã chọn 3 máy'")
        .await;
    panel
        .evaluate("document.getElementById('class-text').value = 'Nhóm 1 làm bài 3'; true")
        .await;
    panel.tap("#class-message").await;
    for PairedTablet { tablet, .. } in &mut protocol[..3] {
        let (_, command) = tablet.command().await;
        assert_eq!(
            command,
            json!({ "kind": "message", "text": "Nhóm 1 làm bài 3" })
        );
    }
    for PairedTablet { tablet, .. } in &mut protocol[3..] {
        tablet
            .heard_nothing("the group's message reaches no tablet outside it")
            .await;
    }
    assert_eq!(
        an.evaluate("document.getElementById('message').hidden")
            .await,
        true
    );

    // Catching up: a tablet outside the group reconnects from the start and is
    // given neither the lock nor the message; one inside gets the message.
    let outsider = protocol.pop().unwrap();
    drop(outsider.tablet);
    let (_, welcome) = ProtocolTablet::connect(address, &outsider.token, 0).await;
    assert_eq!(
        welcome["missed"],
        json!([]),
        "nothing was meant for it: {welcome}"
    );
    assert_eq!(welcome["state"]["locked"], false);
    let member = protocol.remove(1);
    drop(member.tablet);
    let (_, welcome) = ProtocolTablet::connect(address, &member.token, 0).await;
    let missed: Vec<&str> = welcome["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|envelope| envelope["command"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["message"], "{welcome}");

    // An leaves the lesson page for another tab: the tile says so, and it is counted.
    let away_before = panel.evaluate("classState.view.away").await;
    assert_eq!(away_before, 0);
    an.call("Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    panel
        .wait_for(&format!(
            "document.querySelector('{}').dataset.away === 'true'",
            tile(&an_id)
        ))
        .await;
    assert_eq!(panel.evaluate("classState.view.away").await, 1);
    assert!(
        panel
            .evaluate(&format!(
                "document.querySelector('{}').textContent",
                tile(&an_id)
            ))
            .await
            .as_str()
            .unwrap()
            .contains("rời bài học")
    );
    an.call("Page.bringToFront", json!({})).await;
    panel
        .wait_for(&format!(
            "document.querySelector('{}').dataset.away === 'false'",
            tile(&an_id)
        ))
        .await;

    // A question to the class, answered on An's tablet: the answer names An and the period.
    panel.tap("[data-view=questions]").await;
    panel
        .wait_for("document.getElementById('quiz-prompt') !== null")
        .await;
    panel
        .evaluate(
            "document.getElementById('quiz-prompt').value = '2 + 2 = ?'; document.getElementById('quiz-choice-A').value = '3'; \
             document.getElementById('quiz-choice-B').value = '4'; true",
        )
        .await;
    panel.tap("[data-correct=B]").await;
    panel.tap("#quiz-start").await;
    an.wait_for("document.querySelectorAll('#choices .choice').length === 4")
        .await;
    an.evaluate("document.querySelector('#choices .choice[data-id=\"B\"]').click(); document.getElementById('send-answer').click(); true")
        .await;
    an.wait_for("document.getElementById('answer-state').className === 'sent'")
        .await;
    panel.tap("[data-view=class]").await;
    panel
        .wait_for(&format!(
            "document.querySelector('{}').dataset.answered === 'true'",
            tile(&an_id)
        ))
        .await;
    let dir = screenshots(&mut panel, "class-view", "class").await;
    println!("class view screenshots: {}", dir.display());

    let records = outbox(&room);
    let answers: Vec<_> = records
        .iter()
        .filter_map(|p| match p {
            Payload::QuestionAnswer(answer) => Some(answer),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (
            answers[0].pupil_personal_id.as_str(),
            answers[0].lesson_id.as_str(),
            answers[0].tablet_id.as_str()
        ),
        ("010206000001", FIRST_PERIOD, an_id.as_str())
    );
    let chosen: Vec<_> = records
        .iter()
        .filter_map(|p| match p {
            Payload::TabletPairing(pairing)
                if pairing.action() == firmware_agent::proto::tablet_pairing::Action::Bound =>
            {
                Some((
                    pairing.pupil_personal_id.as_str(),
                    pairing.chosen_on_tablet,
                    pairing.lesson_id.as_str(),
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        chosen,
        [
            ("010206000001", true, FIRST_PERIOD),
            ("010206000002", true, FIRST_PERIOD),
            ("010206000003", false, FIRST_PERIOD)
        ],
        "two pupils chose their names, the teacher bound the third"
    );
    drop((an, binh, panel));
    // The records of the lock and the message name their audience once the agent stops.
    let mut agent = _agent;
    stop(&mut agent, Duration::from_secs(10));
    let commands: Vec<_> = outbox(&room)
        .into_iter()
        .filter_map(|p| match p {
            Payload::LessonRecord(record) => Some((
                record.command,
                record.tablet_ids,
                record.group,
                record.lesson_id,
            )),
            _ => None,
        })
        .collect();
    assert!(
        commands.contains(&(
            "lock".to_owned(),
            vec![binh_id.clone()],
            String::new(),
            FIRST_PERIOD.to_owned()
        )),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|(command, ids, group, _)| command == "message"
                && ids.len() == 3
                && group == "Nhóm 1"),
        "{commands:?}"
    );
}
