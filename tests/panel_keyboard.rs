//! Typing on the panel, which has no keyboard: the on-screen keyboard and its
//! Telex engine, touched in a real browser against the real agent.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Room;
use firmware_agent::proto::event::Payload;
use serde_json::json;

/// The Telex engine's own table of words (`tests/js/telex.test.js`), under Node's test runner.
#[test]
fn the_telex_engine_spells_its_table_of_words() {
    let tests = common::repo_root().join("tests/js/telex.test.js");
    let run = Command::new("node")
        .arg("--test")
        .arg(&tests)
        .output()
        .expect("node (Debian's nodejs): run `make setup`");
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A teacher touches the message field, types "Điểm danh" the Telex way on the
/// keyboard that opens, and sends it: the agent records exactly that text. The
/// address field opens with plain letters, and the PIN field with a numeric pad
/// on which a wrong PIN is refused and the right one signs in. The keyboard
/// never covers the field; screenshots of it open at 1920x1080 and 3840x2160
/// are kept in the test's output directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_types_vietnamese_and_a_pin_by_touch() {
    let room = Room::new("[panel]\nteacher_pin = \"482193\"\n");
    let _agent = room.start_async("agent ready").await;
    // The window is taller than the 1080 lines shown: headless Chromium's window
    // holds its toolbars too, and a touch outside the window is lost.
    let mut page =
        browser::Chromium::open_sized(&format!("http://{}/panel/", room.http), 1920, 1200).await;
    full_hd_by_touch(&mut page).await;
    page.wait_for("document.getElementById('room-name').textContent === 'Phòng thử'")
        .await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("panel-keyboard");
    std::fs::create_dir_all(&shots).unwrap();
    println!("screenshots of the keyboard: {}", shots.display());

    // The message, in Telex: "DDieemr danh" is "Điểm danh".
    touch(&mut page, "[data-view=tablets]").await;
    page.wait_for("!document.getElementById('view-tablets').hidden")
        .await;
    touch(&mut page, "#message-text").await;
    page.wait_for("!document.getElementById('osk').hidden && document.getElementById('osk').dataset.telex === 'true'")
        .await;
    assert_uncovered(&mut page, "#message-text").await;
    for key in [
        "shift", "d", "d", "i", "e", "e", "m", "r", "space", "d", "a", "n", "h",
    ] {
        touch(&mut page, &format!("#osk [data-key=\"{key}\"]")).await;
    }
    page.wait_for("document.getElementById('message-text').value === 'Điểm danh'")
        .await;
    screenshots(&mut page, &shots, "telex", "#message-text").await;
    touch(&mut page, "#message-form button[type=submit]").await;
    page.wait_for("document.getElementById('osk').hidden").await;
    let sent = wait_for_message(&room).await;
    assert_eq!(sent, "Điểm danh");
    assert_eq!(
        sent.as_bytes(),
        "\u{110}i\u{1ec3}m danh".as_bytes(),
        "NFC: Đ and ể are one character each"
    );

    // An address is typed with plain letters: "dd" stays "dd".
    touch(&mut page, "#open-url").await;
    page.wait_for("!document.getElementById('osk').hidden && document.getElementById('osk').dataset.kind === 'url'")
        .await;
    assert_eq!(
        page.evaluate("document.getElementById('osk').dataset.telex")
            .await,
        "false"
    );
    for key in ["d", "d", "/", "a", "a"] {
        touch(&mut page, &format!("#osk [data-key=\"{key}\"]")).await;
    }
    page.wait_for("document.getElementById('open-url').value === 'dd/aa'")
        .await;
    touch(&mut page, "#osk [data-key=done]").await;
    page.wait_for("document.getElementById('osk').hidden").await;

    // The PIN, on the numeric pad. The panel itself never asks for it (it is
    // trusted on loopback), so the sign-in a teacher's LAN device gets is shown
    // here as the page shows it there; the PIN goes to the agent's real sign-in.
    page.evaluate("showLogin(); true").await;
    touch(&mut page, "#pin").await;
    page.wait_for("!document.getElementById('osk').hidden && document.getElementById('osk').dataset.kind === 'numeric'")
        .await;
    assert_uncovered(&mut page, "#pin").await;
    let letters = page
        .evaluate("document.querySelectorAll('#osk [data-key=a]').length")
        .await;
    assert_eq!(letters, 0, "the numeric pad has no letters");
    for key in ["1", "1", "1", "1", "1", "1", "enter"] {
        touch(&mut page, &format!("#osk [data-key=\"{key}\"]")).await;
    }
    page.wait_for("document.getElementById('login-error').textContent.includes('4')")
        .await;
    touch(&mut page, "#pin").await;
    page.wait_for("!document.getElementById('osk').hidden")
        .await;
    for _ in 0..6 {
        touch(&mut page, "#osk [data-key=backspace]").await;
    }
    for digit in "482193".chars() {
        touch(&mut page, &format!("#osk [data-key=\"{digit}\"]")).await;
    }
    page.wait_for("document.getElementById('pin').value === '482193'")
        .await;
    screenshots(&mut page, &shots, "pin", "#pin").await;
    touch(&mut page, "#osk [data-key=enter]").await;
    page.wait_for(
        "!document.querySelector('.tabs').hidden && document.getElementById('osk').hidden",
    )
    .await;
}

/// Touches the centre of the element `selector` names, as a finger would: the
/// touch lands on whatever is shown there, so a covered element is not touched.
/// An element below the fold is scrolled into view first, as a teacher would.
/// Returns once the page has seen the touch end.
async fn touch(page: &mut browser::Chromium, selector: &str) {
    let before = page
        .evaluate(&format!(
            "(() => {{ if (window.touchesEnded === undefined) {{ window.touchesEnded = 0; \
             addEventListener('pointerup', () => {{ touchesEnded++; }}, true); }} \
             const e = document.querySelector({selector:?}); e.scrollIntoView({{ block: 'nearest' }}); \
             const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2, touchesEnded]; }})()"
        ))
        .await;
    let (x, y) = (before[0].as_f64().unwrap(), before[1].as_f64().unwrap());
    for (kind, points) in [
        ("touchStart", json!([{ "x": x, "y": y }])),
        ("touchEnd", json!([])),
    ] {
        let reply = page
            .call(
                "Input.dispatchTouchEvent",
                json!({ "type": kind, "touchPoints": points }),
            )
            .await;
        assert!(reply.get("error").is_none(), "{selector}: {reply}");
    }
    page.wait_for(&format!("touchesEnded > {}", before[2]))
        .await;
}

/// Asserts that the keyboard is open and leaves the field `selector` wholly in view.
async fn assert_uncovered(page: &mut browser::Chromium, selector: &str) {
    let layout = page
        .evaluate(&format!(
            "(() => {{ const f = document.querySelector({selector:?}).getBoundingClientRect(); \
             const k = document.getElementById('osk').getBoundingClientRect(); \
             return {{ field: [f.top, f.bottom], keyboard: [k.top, k.bottom], height: innerHeight, \
             covered: f.bottom > k.top && f.top < k.bottom, shown: f.top >= 0 && f.bottom <= innerHeight }}; }})()"
        ))
        .await;
    assert_eq!(layout["covered"], false, "{selector}: {layout}");
    assert_eq!(layout["shown"], true, "{selector}: {layout}");
}

/// Screenshots of the page with the keyboard open at the panel's two usual
/// sizes, the field checked uncovered at each.
async fn screenshots(page: &mut browser::Chromium, dir: &std::path::Path, name: &str, field: &str) {
    for (width, height) in [(1920, 1080), (3840, 2160)] {
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        page.wait_for(&format!("innerWidth === {width}")).await;
        assert_uncovered(page, field).await;
        let png = page.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = dir.join(format!("keyboard-{name}-{width}x{height}.png"));
        std::fs::write(&path, png).unwrap();
        println!("{}", path.display());
    }
    full_hd_by_touch(page).await;
}

/// The page at 1920x1080, touched with a finger.
async fn full_hd_by_touch(page: &mut browser::Chromium) {
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    page.call(
        "Emulation.setTouchEmulationEnabled",
        json!({ "enabled": true, "maxTouchPoints": 5 }),
    )
    .await;
    page.wait_for("innerWidth === 1920 && innerHeight === 1080")
        .await;
}

/// The text of the first message the lesson recorded, waited for up to 10 s.
async fn wait_for_message(room: &Room) -> String {
    let database = room.database();
    tokio::task::spawn_blocking(move || {
        let store = firmware_agent::store::Store::open(
            &database,
            std::sync::Arc::new(firmware_agent::clock::SystemClock),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events =
                firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000)
                    .unwrap();
            let message = events
                .iter()
                .find_map(|event| match event.payload().unwrap() {
                    Some(Payload::LessonRecord(record)) if record.command == "message" => {
                        Some(record.arguments_json)
                    }
                    _ => None,
                });
            if let Some(arguments) = message {
                let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap();
                return arguments["text"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no message recorded within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
}
