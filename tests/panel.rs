//! The teacher's screen, end to end: who may use it, and the page itself in a
//! real browser.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/classroom.rs"]
mod classroom;
mod common;

use std::process::Command;
use std::time::Duration;

use common::Room;
use firmware_agent::proto::event::Payload;
use firmware_agent::proto::{MarkSource, MarkStatus};

/// A teacher's laptop on the room's network, for real: the agent runs in a
/// private network namespace where 192.0.2.1 is one of the machine's own
/// addresses, so requests to it arrive from a non-loopback peer. Nothing
/// leaves the namespace.
#[test]
fn from_the_lan_the_teacher_needs_the_pin_and_a_tablet_token_is_no_substitute() {
    let room = Room::new("[panel]\nteacher_pin = \"482193\"\n");
    let port = room.http.port();
    // The agent must listen on every address of the namespace, not only loopback.
    room.set_http_listen(&format!("0.0.0.0:{port}"));
    let run = room.run_in_own_network(
        "ip addr add 192.0.2.1/32 dev lo",
        &format!(
            r#"lan=http://192.0.2.1:{port}; local=http://127.0.0.1:{port}
code() {{ curl -s -o /dev/null -w '%{{http_code}}' "$@"; }}
json='content-type: application/json'
echo "lan_state $(code $lan/api/panel/state)"
echo "lan_bell $(code -X POST -H "$json" $lan/api/bell/ring)"
echo "lan_tablets $(code $lan/api/tablets)"
pairing=$(curl -s -X POST -H "$json" $local/api/tablets/pairing)
pin=$(printf '%s' "$pairing" | python3 -c 'import json,sys; print(json.load(sys.stdin)["window"]["code"])')
token=$(curl -s -X POST -H "$json" -d "{{\"code\":\"$pin\",\"name\":\"Bàn 1\"}}" $lan/tablet/pair | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "lan_tablets_with_tablet_token $(code -H "authorization: Bearer $token" -b "panel_session=$token" $lan/api/tablets)"
echo "wrong $(curl -s -X POST -H "$json" -d '{{"pin":"000000"}}' $lan/api/panel/login)"
echo "right $(code -c '{dir}/jar' -X POST -H "$json" -d '{{"pin":"482193"}}' $lan/api/panel/login)"
echo "lan_state_with_session $(code -b '{dir}/jar' $lan/api/panel/state)"
echo "lan_tablets_with_session $(code -b '{dir}/jar' $lan/api/tablets)"
echo "local_state $(code $local/api/panel/state)"
for n in 1 2 3 4 5; do last=$(curl -s -X POST -H "$json" -d '{{"pin":"111111"}}' $lan/api/panel/login); done
echo "fifth_wrong $last"
echo "right_while_locked $(code -X POST -H "$json" -d '{{"pin":"482193"}}' $lan/api/panel/login)""#,
            dir = room.dir.path().display(),
        ),
    );
    let answer = |key: &str| run.answer(key);
    let text = &run.text;
    assert_eq!(answer("lan_state"), "401");
    assert_eq!(answer("lan_bell"), "401");
    assert_eq!(answer("lan_tablets"), "401");
    assert_eq!(
        answer("lan_tablets_with_tablet_token"),
        "401",
        "a tablet's token opens nothing of the teacher's"
    );
    let wrong: serde_json::Value = serde_json::from_str(&answer("wrong")).unwrap();
    assert_eq!(wrong["error"], "wrong_pin", "{text}");
    assert_eq!(wrong["tries_left"], 4, "{text}");
    assert!(
        wrong["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    assert_eq!(answer("right"), "200");
    assert_eq!(answer("lan_state_with_session"), "200");
    assert_eq!(answer("lan_tablets_with_session"), "200");
    assert_eq!(
        answer("local_state"),
        "200",
        "the panel itself needs no PIN"
    );
    let locked: serde_json::Value = serde_json::from_str(&answer("fifth_wrong")).unwrap();
    assert_eq!(locked["error"], "locked_out", "{text}");
    assert!(
        locked["retry_after_seconds"]
            .as_u64()
            .is_some_and(|wait| wait > 0),
        "{text}"
    );
    assert_eq!(answer("right_while_locked"), "429");
    assert_eq!(answer("exit"), "0");
}

/// A pupil's phone that takes a new address for every few guesses: 50
/// addresses on the room's LAN (a private network namespace) each try wrong
/// PINs, and then the right PIN from a 51st address is refused too, because
/// the room as a whole is locked; the panel's status shows someone guessing,
/// and the panel itself still works.
#[test]
fn wrong_pins_from_fifty_addresses_lock_the_room_and_show_on_the_panel() {
    let room = Room::new("[panel]\nteacher_pin = \"482193\"\n");
    let port = room.http.port();
    room.set_http_listen(&format!("0.0.0.0:{port}"));
    let run = room.run_in_own_network(
        "for n in $(seq 1 51); do ip addr add 192.0.2.$n/32 dev lo; done",
        &format!(
            r#"json='content-type: application/json'
login() {{ curl -s --interface 192.0.2.$1 -X POST -H "$json" -d "{{\"pin\":\"$2\"}}" http://192.0.2.1:{port}/api/panel/login; }}
for n in $(seq 1 50); do for guess in 1 2; do last=$(login $n 00000$guess); echo "guess $n $guess $last" >> '{dir}/guesses'; done; done
echo "last_guess $last"
echo "right_pin_from_a_new_address $(login 51 482193)"
echo "panel_state $(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/api/panel/state)"
echo "health $(curl -s http://127.0.0.1:{port}/healthz)""#,
            dir = room.dir.path().display(),
        ),
    );
    let guesses = std::fs::read_to_string(room.dir.path().join("guesses")).unwrap();
    let checked = guesses
        .lines()
        .filter(|line| line.contains("wrong_pin"))
        .count();
    assert_eq!(
        checked, 9,
        "nine guesses checked, the tenth trips the room's lockout:\n{guesses}"
    );
    let refused: serde_json::Value =
        serde_json::from_str(&run.answer("right_pin_from_a_new_address")).unwrap();
    assert_eq!(refused["error"], "locked_out", "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("locked for everyone"),
        "{refused}"
    );
    assert_eq!(
        run.answer("panel_state"),
        "200",
        "the panel itself still works"
    );
    let health: serde_json::Value = serde_json::from_str(&run.answer("health")).unwrap();
    let shown = &health["subsystems"]["teacher_sign_in"];
    assert_eq!(shown["state"], "degraded", "{health}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap()
            .contains("10 wrong PINs from 5 addresses"),
        "{shown}"
    );
}

/// Over TLS the sign-in cookie is `Secure`, so the browser never sends it in
/// clear; over plain HTTP (a room without TLS) it cannot be.
#[test]
fn the_sign_in_cookie_is_secure_over_tls() {
    let room =
        Room::new("[panel]\nteacher_pin = \"482193\"\n\n[tablets]\ntls_listen = \"127.0.0.1:0\"\n");
    let _agent = room.start();
    let opened = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", "content-type: application/json"])
        .arg(format!("http://{}/api/tablets/pairing", room.http))
        .output()
        .unwrap();
    let opened: serde_json::Value = serde_json::from_slice(&opened.stdout).unwrap();
    let tls_port = opened["tls"]["port"].as_u64().expect("the TLS port");
    let cookie = |url: String| {
        let reply = Command::new("curl")
            .args([
                "-sk",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"pin":"482193"}"#,
            ])
            .arg(url)
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&reply.stdout).to_string();
        head.lines()
            .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
            .unwrap_or_else(|| panic!("no cookie in {head}"))
            .to_owned()
    };
    let secure = cookie(format!("https://127.0.0.1:{tls_port}/api/panel/login"));
    assert!(
        secure.trim_end().ends_with("; Secure") && secure.contains("HttpOnly"),
        "{secure}"
    );
    let plain = cookie(format!("http://{}/api/panel/login", room.http));
    assert!(!plain.contains("Secure"), "{plain}");
}

/// Every view, in a real browser against the real agent: the roll call fills in
/// from the camera, a teacher's correction reaches the outbox, a tablet pairs
/// and appears, a question's answers arrive. Screenshots of every view at
/// 1920x1080 and 3840x2160 are kept in the target directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_works_in_headless_chromium() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = classroom::frames(scratch.path());
    let room = classroom::attendance_room_with(
        &format!(
            "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
            folder.display()
        ),
        "late_after_minutes = 30\nwindow_minutes = 40\n",
        "[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n",
    );
    for (id, person) in classroom::PEOPLE {
        let photo = classroom::faces().join(format!("enroll/{person}/{person}_a.jpg"));
        assert!(
            classroom::enroll(&room, id, &[&photo]).status.success(),
            "{person} enrolls"
        );
    }
    let agent = room.start_async("roll call opened").await;
    let panel = format!("http://{}/panel/", room.http);
    let mut page = browser::Chromium::open_sized(&panel, 1920, 1080).await;
    page.wait_for("document.getElementById('room-name').textContent === 'Phòng thử'")
        .await;
    assert_eq!(page.evaluate("document.documentElement.lang").await, "vi");
    assert_eq!(
        page.evaluate("document.querySelector('[data-view=rollcall]').textContent")
            .await,
        "Điểm danh"
    );

    // The roll call fills in from the camera: the three people the frames show.
    page.evaluate("document.querySelector('[data-view=rollcall]').click(); true")
        .await;
    page.wait_for_within(
        "document.querySelectorAll('#rollcall-grid .pupil.PRESENT').length === 3",
        Duration::from_secs(90),
    )
    .await;
    let present: Vec<String> = serde_json::from_value(
        page.evaluate("[...document.querySelectorAll('#rollcall-grid .pupil.PRESENT')].map(p => p.dataset.personalId).sort()").await,
    )
    .unwrap();
    assert_eq!(present, ["001206001001", "001206001002", "001206001003"]);

    // A one-touch correction: alex_lacamoire is here after all, says the teacher.
    page.evaluate(
        "document.querySelector('[data-personal-id=\"001206001000\"] button').click(); \
                   document.getElementById('reason-text').value = 'đến cùng phụ huynh'; \
                   document.querySelector('#reason-form button[type=submit]').click(); true",
    )
    .await;
    page.wait_for("document.querySelector('[data-personal-id=\"001206001000\"]').classList.contains('PRESENT')").await;
    // A reload late in the lesson shows the whole roll call again: the camera's three and the correction.
    page.evaluate("document.body.dataset.beforeReload = 'yes'; location.reload(); true")
        .await;
    page.wait_for("document.body.dataset.beforeReload === undefined && document.getElementById('room-name').textContent === 'Phòng thử'").await;
    page.evaluate("document.querySelector('[data-view=rollcall]').click(); true")
        .await;
    page.wait_for("document.querySelectorAll('#rollcall-grid .pupil.PRESENT').length === 4")
        .await;
    let corrected = outbox(&room).into_iter().find_map(|payload| match payload {
        Payload::AttendanceMark(mark) if mark.personal_id == "001206001000" => Some(mark),
        _ => None,
    });
    let corrected = corrected.expect("the correction is in the outbox");
    assert_eq!(
        (corrected.status(), corrected.source()),
        (MarkStatus::Present, MarkSource::Teacher)
    );
    assert_eq!(corrected.reason, "đến cùng phụ huynh");

    // The school office's export: the correction is in today's file, in Vietnamese.
    let csv = page
        .evaluate("fetch(document.getElementById('export-day').href.replace('format=xlsx', 'format=csv')).then(r => r.text())")
        .await;
    assert!(
        csv.as_str()
            .unwrap()
            .contains("001206001000,alex_lacamoire,Có mặt,Giáo viên"),
        "{csv}"
    );
    let xlsx_is_zip = page
        .evaluate("fetch(document.getElementById('export-month').href).then(r => r.arrayBuffer()).then(b => new Uint8Array(b).slice(0, 2).join(','))")
        .await;
    assert_eq!(xlsx_is_zip, "80,75", "the workbook is a zip archive (PK)");

    // A tablet pairs with the code the panel shows, and appears in the list.
    page.evaluate("document.querySelector('[data-view=tablets]').click(); document.getElementById('pair-open').click(); true").await;
    page.wait_for("/^[0-9]{6}$/.test(document.getElementById('pair-code').textContent)")
        .await;
    let code = page
        .evaluate("document.getElementById('pair-code').textContent")
        .await;
    let tablet_url = format!(
        "http://{}/tablet/#code={}",
        room.http,
        code.as_str().unwrap()
    );
    let mut tablet = browser::Chromium::open(&tablet_url).await;
    tablet.wait_for("!document.getElementById('pairing').hidden && document.getElementById('code').value.length === 6").await;
    tablet.evaluate("document.getElementById('name').value = 'Bàn 1'; document.getElementById('pair-button').click(); true").await;
    tablet
        .wait_for("document.getElementById('status').dataset.state === 'online'")
        .await;
    page.wait_for("[...document.querySelectorAll('#tablets-list li')].some(li => li.textContent.startsWith('Bàn 1'))").await;
    screenshots(&mut page, "tablets").await;

    // A question: started at the panel, answered on the tablet, counted on the panel.
    page.evaluate("document.querySelector('[data-view=questions]').click(); true")
        .await;
    page.wait_for("document.getElementById('quiz-start') !== null")
        .await;
    page.evaluate("document.getElementById('quiz-prompt').value = '2 + 2 = ?'; \
                   document.getElementById('quiz-choice-A').value = '3'; document.getElementById('quiz-choice-B').value = '4'; \
                   document.querySelector('[data-correct=B]').click(); document.getElementById('quiz-start').click(); true").await;
    tablet
        .wait_for("document.querySelectorAll('#choices .choice').length === 4")
        .await;
    tablet.evaluate("document.querySelector('#choices .choice[data-id=\"B\"]').click(); document.getElementById('send-answer').click(); true").await;
    page.wait_for(
        "document.querySelector('.quiz-bar[data-choice=B] .quiz-bar-count')?.textContent === '1' \
         && document.getElementById('quiz-results').textContent.includes('100% đúng')",
    )
    .await;
    screenshots(&mut page, "questions").await;

    // The bell by hand, from the room view.
    page.evaluate("document.querySelector('[data-view=room]').click(); true")
        .await;
    page.wait_for("document.querySelector('[data-device=bell] button') !== null")
        .await;
    page.evaluate("document.querySelector('[data-device=bell] button').click(); true")
        .await;
    page.wait_for("[...document.querySelectorAll('#actuations li')].some(li => li.textContent.startsWith('bell'))").await;
    screenshots(&mut page, "room").await;

    for view in ["now", "rollcall", "status"] {
        page.evaluate(&format!(
            "document.querySelector('[data-view={view}]').click(); true"
        ))
        .await;
        screenshots(&mut page, view).await;
    }

    // Labels and contrast, in the view with the most on it.
    page.evaluate("document.querySelector('[data-view=rollcall]').click(); true")
        .await;
    let unlabeled = page.evaluate(ACCESSIBILITY).await;
    assert_eq!(
        unlabeled,
        serde_json::json!([]),
        "controls without a label or text below WCAG AA contrast"
    );

    // English is one touch away.
    page.evaluate("document.getElementById('lang').click(); true")
        .await;
    assert_eq!(
        page.evaluate("document.querySelector('[data-view=rollcall]').textContent")
            .await,
        "Roll call"
    );
    drop(agent);
}

/// A room whose only device is a simulated bell with a 10 ms pattern, for records cheaply made.
fn bell_room() -> Room {
    Room::new(
        "[schedule.patterns.short]\npulses_ms = [10]\n\n[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n",
    )
}

/// The live feed's lines, read until one satisfies `enough`; panics with what came after 10 s.
fn feed_lines(
    room: &Room,
    last_event_id: Option<&str>,
    query: &str,
    enough: impl Fn(&str) -> bool,
) -> Vec<String> {
    use std::io::BufRead;
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut request = agent.get(&format!("http://{}/api/panel/events{query}", room.http));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.call().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(response.body_mut().as_reader()).lines() {
        let line = line.unwrap_or_else(|err| panic!("the feed stopped after {lines:?}: {err}"));
        let done = enough(&line);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("the feed ended after {lines:?}");
}

/// The ids of the live feed's records, read until the record `newest`.
fn feed_ids(room: &Room, last_event_id: Option<&str>, query: &str, newest: i64) -> Vec<i64> {
    let lines = feed_lines(room, last_event_id, query, |line| {
        line == format!("id: {newest}")
    });
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

/// A page that lost its feed reconnects with `Last-Event-ID` (the browser's own reconnect) and gets every
/// record committed meanwhile, none twice; a page opening its feed after its snapshot says `?after=`.
#[test]
fn a_reconnecting_feed_gets_the_records_it_missed() {
    let room = bell_room();
    let _agent = room.start();
    for _ in 0..4 {
        let rung = room.command(&["bell", "ring", "--pattern", "short"]);
        assert!(
            rung.status.success(),
            "{}",
            String::from_utf8_lossy(&rung.stderr)
        );
    }
    let (_, health) = common::http_get(room.http, "/healthz");
    let newest =
        serde_json::from_str::<serde_json::Value>(&health).unwrap()["database"]["last_seq"]
            .as_i64()
            .unwrap();
    assert!(newest >= 4, "{health}");

    assert_eq!(
        feed_ids(&room, Some("1"), "", newest),
        (2..=newest).collect::<Vec<_>>(),
        "resumed after record 1"
    );
    assert_eq!(
        feed_ids(&room, None, "?after=2", newest),
        (3..=newest).collect::<Vec<_>>(),
        "opened after the snapshot's record 2"
    );
    assert_eq!(
        feed_ids(&room, Some("3"), "?after=0", newest),
        (4..=newest).collect::<Vec<_>>(),
        "the browser's Last-Event-ID wins"
    );
    // A page that holds records of an outbox since replaced is told to take a fresh snapshot.
    let lines = feed_lines(&room, Some("1000000"), "", |line| line == "event: reset");
    assert!(
        lines.iter().all(|line| !line.starts_with("id: ")),
        "{lines:?}"
    );

    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut refused = agent
        .get(&format!("http://{}/api/panel/events", room.http))
        .header("Last-Event-ID", "ba")
        .call()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    assert!(
        refused
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("Last-Event-ID must be a record's seq")
    );
}

/// The panel's snapshot holds the open roll call whole, however many records came after its marks.
#[test]
fn the_snapshot_holds_the_roll_call_whole_beyond_its_window_of_recent_records() {
    use firmware_agent::proto::{self, AttendanceMark, AttendanceSession};
    let room = bell_room();
    let mut first_run = room.start();
    first_run.signal(libc::SIGTERM);
    first_run
        .wait_exit(Duration::from_secs(10))
        .expect("the agent stops");
    // A roll call, then 300 other records, committed while the agent was stopped.
    let store = std::sync::Arc::new(
        firmware_agent::store::Store::open(
            &room.database(),
            std::sync::Arc::new(firmware_agent::clock::SystemClock),
        )
        .unwrap(),
    );
    let now = jiff::Timestamp::now();
    let session = AttendanceSession {
        session_id: "s-1".into(),
        class_name: "6A1".into(),
        phase: proto::attendance_session::Phase::Opened as i32,
        ..Default::default()
    };
    let mark = |id: &str, status: MarkStatus| {
        Payload::AttendanceMark(AttendanceMark {
            session_id: "s-1".into(),
            personal_id: id.into(),
            status: status as i32,
            source: MarkSource::Teacher as i32,
            ..Default::default()
        })
    };
    let marks = vec![
        Payload::AttendanceSession(session),
        mark("001206001001", MarkStatus::Present),
        mark("001206001002", MarkStatus::Late),
    ];
    let write = firmware_agent::store::recorder::Write::RollCall {
        occurred_at: now,
        payloads: marks,
    };
    let kept = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { store.recorder().keep(write).await });
    assert_eq!(kept, firmware_agent::store::recorder::Kept::Committed);
    let others = (0..300).map(|_| {
        firmware_agent::store::outbox::NewEvent::new(
            now,
            proto::Actuation {
                device: "bell".into(),
                command: "ring:short".into(),
                ..Default::default()
            },
        )
    });
    store.append_batch(others.collect()).unwrap();
    drop(store);
    let _agent = room.start();

    let (status, body) = common::http_get(room.http, "/api/panel/state");
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        state["recent"]
            .as_array()
            .unwrap()
            .iter()
            .all(|record| record["kind"] == "actuation"),
        "the marks are outside the window"
    );
    assert_eq!(
        state["rollcall"]["session"]["payload"]["session_id"], "s-1",
        "{}",
        state["rollcall"]
    );
    let marks: Vec<(&str, &str)> = state["rollcall"]["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["personal_id"].as_str().unwrap(),
                m["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [("001206001001", "PRESENT"), ("001206001002", "LATE")]
    );
    assert_eq!(
        state["last_seq"],
        state["recent"].as_array().unwrap().last().unwrap()["seq"],
        "the feed resumes after the newest record held"
    );
}

/// Every payload in the room's outbox, oldest first.
fn outbox(room: &Room) -> Vec<Payload> {
    let store = firmware_agent::store::Store::open(
        &room.database(),
        std::sync::Arc::new(firmware_agent::clock::SystemClock),
    )
    .unwrap();
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 10_000).unwrap();
    events
        .iter()
        .filter_map(|event| event.payload().unwrap())
        .collect()
}

/// Screenshots of the page at the panel's two usual sizes, kept as test artefacts.
async fn screenshots(page: &mut browser::Chromium, view: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("panel-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1920, 1080), (3840, 2160)] {
        page.call("Emulation.setDeviceMetricsOverride", serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false })).await;
        let png = page.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{view}-{width}x{height}.png")), png).unwrap();
    }
    page.call("Emulation.setDeviceMetricsOverride", serde_json::json!({ "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false })).await;
}

/// Lists visible controls with no accessible name, and visible text whose
/// contrast with its background is below WCAG AA (4.5:1).
const ACCESSIBILITY: &str = r#"(() => {
  const problems = [];
  const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  for (const e of document.querySelectorAll('button, input, select, textarea')) {
    if (!visible(e) || e.type === 'radio') continue;
    const label = e.getAttribute('aria-label') || e.textContent.trim() || (e.id && document.querySelector(`label[for="${e.id}"]`)?.textContent.trim()) || e.closest('label')?.textContent.trim() || e.placeholder;
    if (!label) problems.push(`no label: ${e.outerHTML.slice(0, 80)}`);
  }
  const rgb = c => c.match(/[\d.]+/g).map(Number);
  const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = e => { for (let n = e; n; n = n.parentElement) { const c = rgb(getComputedStyle(n).backgroundColor); if (c.length < 4 || c[3] > 0) return c; } return [255, 255, 255]; };
  for (const e of document.querySelectorAll('body *')) {
    if (!visible(e) || ![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const s = getComputedStyle(e);
    const [a, b] = [lum(rgb(s.color)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: ${e.textContent.trim().slice(0, 40)}`);
  }
  return problems;
})()"#;

/// The panel's power over RS-232, for real, through a school day on the agent's simulated clock: the
/// agent writes to the slave side of a pseudo-terminal as it would to a USB serial adapter, and the test
/// reads the panel's commands from the master side. Off before the day, on ten minutes before the first
/// of the morning's five periods, off fifteen minutes after the last.
#[test]
fn the_panel_is_switched_on_over_rs232_during_the_school_day() {
    let (mut master, slave_path) = pseudo_terminal();
    let room = Room::new(&format!(
        "[panel.power]\ncontrol = \"rs232\"\nserial_device = \"{slave_path}\"\nbaud = 9600\non_bytes = \"AA 11 FE 01 01 11\"\noff_bytes = \"AA 11 FE 01 00 10\"\n\n\
         [[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]\n\
         periods = [{{ start = \"07:00\", end = \"07:45\" }}, {{ start = \"07:50\", end = \"08:35\" }}, {{ start = \"08:55\", end = \"09:40\" }}, \
         {{ start = \"09:45\", end = \"10:30\" }}, {{ start = \"10:35\", end = \"11:20\" }}]\n\n\
         [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n"
    ));
    let (tx, commands) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 64];
        loop {
            match master.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
            while bytes.len() >= 6 {
                if tx.send(bytes.drain(..6).collect::<Vec<u8>>()).is_err() {
                    return;
                }
            }
        }
    });
    let (on, off) = (
        [0xAA, 0x11, 0xFE, 0x01, 0x01, 0x11],
        [0xAA, 0x11, 0xFE, 0x01, 0x00, 0x10],
    );
    let next_command = || {
        commands
            .recv_timeout(Duration::from_secs(20))
            .expect("the panel receives a command")
    };
    let mut agent = room.start_at("2026-09-07T06:30:00+07:00");
    assert_eq!(next_command(), off, "off before the school day");
    agent.advance_to("2026-09-07T06:49:00+07:00");
    agent.advance_to("2026-09-07T06:50:00+07:00");
    assert_eq!(next_command(), on, "on ten minutes before the first period");
    // The bytes arrive before the agent hears that its write returned: wait for its report.
    let health = wait_for_health(&room, |health| {
        health["subsystems"]["panel_power"]["detail"] == "on for the school day"
    });
    assert_eq!(
        health["subsystems"]["panel_power"]["state"], "ok",
        "{health}"
    );
    agent.advance_to("2026-09-07T11:34:00+07:00");
    agent.advance_to("2026-09-07T11:35:00+07:00");
    assert_eq!(
        next_command(),
        off,
        "off fifteen minutes after the last period"
    );
    wait_for_health(&room, |health| {
        health["subsystems"]["panel_power"]["detail"] == "off"
    });
    assert!(
        commands.try_recv().is_err(),
        "one command at each change, none in between"
    );
    // Stopped, the agent has committed every record it kept.
    agent.signal(libc::SIGTERM);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(10))
            .and_then(|status| status.code()),
        Some(0)
    );

    let store = firmware_agent::store::Store::open(
        &room.database(),
        std::sync::Arc::new(firmware_agent::clock::SystemClock),
    )
    .unwrap();
    let switched: Vec<(String, jiff::Timestamp)> =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000)
            .unwrap()
            .into_iter()
            .filter_map(|event| match event.payload().unwrap() {
                Some(Payload::Actuation(a)) if a.device == "panel" => {
                    Some((a.command, event.occurred_at))
                }
                _ => None,
            })
            .collect();
    let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
    assert_eq!(
        switched,
        [
            ("off".to_owned(), at("2026-09-07T06:30:00+07:00")),
            ("on".to_owned(), at("2026-09-07T06:50:00+07:00")),
            ("off".to_owned(), at("2026-09-07T11:35:00+07:00")),
        ]
    );
}

/// `/healthz` once `holds` is true of it, checked every 20 ms; panics with the last one after 10 s.
fn wait_for_health(room: &Room, holds: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health: serde_json::Value =
            serde_json::from_str(&common::http_get(room.http, "/healthz").1).unwrap();
        if holds(&health) {
            return health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz never held: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pseudo-terminal pair: the master side as a file, and the slave's path.
fn pseudo_terminal() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors this test then owns.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    let path = std::fs::read_link(format!("/proc/self/fd/{slave}"))
        .unwrap()
        .display()
        .to_string();
    // The slave stays open in the test so the terminal survives the agent's opens and closes.
    std::mem::forget(unsafe { std::fs::File::from_raw_fd(slave) });
    (unsafe { std::fs::File::from_raw_fd(master) }, path)
}
