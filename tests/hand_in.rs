//! Hand-in and show, end to end: the real agent on a simulated Monday
//! morning, a browser tablet (headless Chromium) whose pupil hands in a real
//! photo from the file input and a drawing on the page, the panel in
//! headless Chromium with touch showing the thumbnails and putting the photo
//! full screen, the rows, files and outbox events that follow, the uploads the
//! agent refuses, and the pupil's erasure.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/lesson.rs"]
mod lesson;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::{Room, api_call as call};
use firmware_agent::proto::event::Payload;
use lesson::{
    FIRST_LESSON as FIRST_PERIOD, MONDAY_FIRST_PERIOD, browser_tablet, class_6a1, open_pairing,
    open_panel, outbox,
};
use serde_json::{Value, json};

const AN: &str = "010206000001";
/// `tablets.hand_in_max_bytes` in the test's room.
const MAX_BYTES: usize = 1024 * 1024;

fn classroom() -> Room {
    class_6a1(&format!("[tablets]\nhand_in_max_bytes = {MAX_BYTES}\n"), 2)
}

fn photo() -> PathBuf {
    common::shared_testdata().join("faces/probe/obama_1080p.jpg")
}

/// Waits until the tablet's page says a hand-in other than `before` was taken; returns its id.
async fn handed_in(tablet: &mut browser::Chromium, before: &str) -> String {
    tablet
        .wait_for(&format!(
            "(document.getElementById('hand-in').dataset.lastHandIn || '') !== '{before}' || document.getElementById('hand-in-state').className === 'refused'"
        ))
        .await;
    let state = tablet
        .evaluate("document.getElementById('hand-in-state').textContent")
        .await;
    assert_eq!(state, "Đã nộp bài ✓");
    tablet
        .evaluate("document.getElementById('hand-in').dataset.lastHandIn")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The panel at `width`x`height`, touch on, signed in (it is on loopback), on the class view.
async fn panel(address: SocketAddr, width: u32, height: u32) -> browser::Chromium {
    let mut panel = open_panel(address, width, height).await;
    panel.tap("[data-view=class]").await;
    panel
}

/// Shows the thumbnails, puts the photo full screen with one touch and closes it with another,
/// with a screenshot of each in the test's output directory.
async fn show_on_the_panel(address: SocketAddr, width: u32, height: u32, photo_id: &str) {
    let mut panel = panel(address, width, height).await;
    panel
        .wait_for(
            "document.querySelectorAll('#hand-ins .hand-in').length === 2 && \
             [...document.querySelectorAll('#hand-ins .hand-in img')].every(i => i.complete && i.naturalWidth > 0)",
        )
        .await;
    let names: Vec<String> = serde_json::from_value(
        panel
            .evaluate(
                "[...document.querySelectorAll('#hand-ins .hand-in .who')].map(e => e.textContent)",
            )
            .await,
    )
    .unwrap();
    assert_eq!(names, ["Nguyễn Văn An", "Nguyễn Văn An"]);
    assert_eq!(
        panel
            .evaluate("document.querySelector('#hand-ins h2').firstChild.textContent")
            .await,
        "Bài nộp",
        "Vietnamese first"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hand-in");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = |name: &str| dir.join(format!("{name}-{width}x{height}.png"));
    std::fs::write(shot("thumbnails"), panel.screenshot().await).unwrap();

    panel
        .tap(&format!(
            "#hand-ins .hand-in[data-hand-in-id=\"{photo_id}\"]"
        ))
        .await;
    panel
        .wait_for(
            "(() => { const i = document.getElementById('hand-in-full-image'); return i !== null && i.complete && i.naturalWidth > 0; })()",
        )
        .await;
    let covered = panel
        .evaluate(
            "(() => { const r = document.getElementById('hand-in-show').getBoundingClientRect(); \
             return r.width === innerWidth && r.height === innerHeight; })()",
        )
        .await;
    assert_eq!(covered, true, "the pupil's work fills the panel");
    let shown = panel
        .evaluate("document.getElementById('hand-in-full-image').getBoundingClientRect().height")
        .await
        .as_f64()
        .unwrap();
    assert!(
        shown > f64::from(height) * 0.5,
        "the photo is shown large: {shown} px of {height}"
    );
    std::fs::write(shot("full-screen"), panel.screenshot().await).unwrap();
    panel.tap("#hand-in-show").await;
    panel
        .wait_for("document.getElementById('hand-in-show') === null")
        .await;
    println!("hand-in screenshots: {}", dir.display());
}

/// Posts a hand-in as a tablet would, with `token`; the status and the JSON reply.
async fn post_hand_in(address: SocketAddr, token: &str, body: Value) -> (u16, Value) {
    let (url, bearer) = (
        format!("http://{address}/tablet/hand-in"),
        format!("Bearer {token}"),
    );
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut response = agent
            .post(&url)
            .header("authorization", &bearer)
            .send_json(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap())
    })
    .await
    .unwrap()
}

/// The lines of the lesson's summary as CSV, as the panel's button downloads it.
async fn lesson_summary_csv(address: SocketAddr, lesson_id: &str) -> Vec<String> {
    let lesson: String = lesson_id
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect();
    let url = format!("http://{address}/api/lesson/summary?format=csv&lesson={lesson}");
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.lines().map(str::to_owned).collect()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The hand-ins' rows as (id, personal ID, lesson, kind).
fn rows(room: &Room) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        room.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT id, personal_id, lesson_id, kind FROM hand_ins ORDER BY id")
        .unwrap();
    stmt.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The names in the hand-ins area, sorted.
fn files(room: &Room) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(room.data_dir().join("hand-ins"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pupil_hands_in_a_photo_and_a_drawing_and_the_teacher_shows_it_full_screen() {
    let room = classroom();
    let _agent = room.start_at(MONDAY_FIRST_PERIOD);
    let address = room.http;
    let code = open_pairing(address).await;
    let mut tablet = browser_tablet(address, &code, None, Some("Nguyễn Văn An")).await;

    // A photo from the file input, as the camera would give it (a copy the browser may read).
    let camera_roll = room.dir.path().join("anh-bai-lam.jpg");
    std::fs::copy(photo(), &camera_roll).unwrap();
    let input = tablet
        .call(
            "Runtime.evaluate",
            json!({ "expression": "document.getElementById('hand-in-photo')" }),
        )
        .await;
    let object = input["result"]["result"]["objectId"].clone();
    let set = tablet
        .call(
            "DOM.setFileInputFiles",
            json!({ "files": [camera_roll.to_str().unwrap()], "objectId": object }),
        )
        .await;
    assert!(set.get("error").is_none(), "{set}");
    let photo_id = handed_in(&mut tablet, "").await;

    // A drawing on the page, drawn with the pointer.
    tablet
        .evaluate("document.getElementById('hand-in-draw').click(); true")
        .await;
    let corner = tablet
        .evaluate("(() => { const r = document.getElementById('hand-in-canvas').getBoundingClientRect(); return [r.x, r.y]; })()")
        .await;
    let (x, y) = (corner[0].as_f64().unwrap(), corner[1].as_f64().unwrap());
    let stroke = [
        ("mousePressed", 20.0, 20.0),
        ("mouseMoved", 120.0, 80.0),
        ("mouseMoved", 220.0, 40.0),
        ("mouseReleased", 220.0, 40.0),
    ];
    for (kind, dx, dy) in stroke {
        tablet
            .call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x + dx, "y": y + dy, "button": "left", "buttons": if kind == "mouseReleased" { 0 } else { 1 }, "clickCount": 1 }),
            )
            .await;
    }
    tablet
        .evaluate("document.getElementById('hand-in-send-drawing').click(); true")
        .await;
    let drawing_id = handed_in(&mut tablet, &photo_id).await;

    // The rows name the pupil and the lesson; the files are private and re-encoded.
    let mut expected = vec![
        (
            photo_id.clone(),
            AN.to_owned(),
            FIRST_PERIOD.to_owned(),
            "photo".to_owned(),
        ),
        (
            drawing_id.clone(),
            AN.to_owned(),
            FIRST_PERIOD.to_owned(),
            "drawing".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(rows(&room), expected);
    let area = room.data_dir().join("hand-ins");
    assert_eq!(
        std::fs::metadata(&area).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let kept_photo = area.join(format!("{photo_id}.jpg"));
    assert_eq!(
        std::fs::metadata(&kept_photo).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kept = std::fs::read(&kept_photo).unwrap();
    assert_ne!(
        kept,
        std::fs::read(photo()).unwrap(),
        "re-encoded, not the upload"
    );
    assert!(!kept.windows(4).any(|w| w == b"Exif"), "no EXIF is kept");
    let decoded = image::load_from_memory(&kept).unwrap();
    assert!(decoded.width() <= 2160 && decoded.height() <= 2160);
    assert!(area.join(format!("{drawing_id}.thumb.jpg")).exists());

    // The outbox tells the hub whose work, in which lesson, and its checksum.
    let hand_ins: Vec<_> = outbox(&room)
        .into_iter()
        .filter_map(|p| match p {
            Payload::HandIn(h) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(hand_ins.len(), 2);
    let photo_event = hand_ins.iter().find(|h| h.hand_in_id == photo_id).unwrap();
    assert_eq!(photo_event.pupil_personal_id, AN);
    assert_eq!(photo_event.lesson_id, FIRST_PERIOD);
    assert_eq!(photo_event.kind, "photo");
    assert_eq!(photo_event.size_bytes, kept.len() as u64);
    assert_eq!(
        photo_event.sha256,
        <sha2::Sha256 as sha2::Digest>::digest(&kept).to_vec()
    );

    // The lesson's summary counts both pieces of work for An.
    let summary = lesson_summary_csv(address, FIRST_PERIOD).await;
    let headings: Vec<&str> = summary[0].split(',').collect();
    let column = headings.iter().position(|h| *h == "Bài đã nộp").unwrap();
    let an_line = summary.iter().find(|line| line.contains(AN)).unwrap();
    assert_eq!(an_line.split(',').nth(column), Some("2"), "{summary:?}");

    // The panel shows them live and puts the photo full screen, at 1080p and 4K.
    show_on_the_panel(address, 1920, 1080, &photo_id).await;
    show_on_the_panel(address, 3840, 2160, &photo_id).await;

    // What the agent refuses, each saying why, and leaving nothing behind.
    let token = tablet
        .evaluate("localStorage.getItem('classroom.token')")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let before = (rows(&room), files(&room), outbox(&room).len());
    // A real photo cut short, as an upload that lost its end.
    let whole = std::fs::read(photo()).unwrap();
    let corrupt = whole[..whole.len() / 2].to_vec();
    let refusals = [
        (
            token.as_str(),
            json!({ "kind": "photo", "image": base64(&vec![0xFF; MAX_BYTES + 1000]) }),
            413,
            "hand_in_too_large",
        ),
        (
            token.as_str(),
            json!({ "kind": "photo", "image": base64(b"%PDF-1.4\nthis is a document, not a photo\n") }),
            400,
            "not_an_image",
        ),
        (
            token.as_str(),
            json!({ "kind": "photo", "image": base64(&corrupt) }),
            400,
            "damaged_image",
        ),
        (
            "not-a-paired-token",
            json!({ "kind": "photo", "image": base64(&std::fs::read(photo()).unwrap()) }),
            401,
            "not_paired",
        ),
    ];
    for (token, body, status, code) in refusals {
        let (got, reply) = post_hand_in(address, token, body).await;
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(code)),
            "{reply}"
        );
        assert!(
            !reply["message"].as_str().unwrap_or("").is_empty()
                && !reply["detail"].as_str().unwrap_or("").is_empty(),
            "a message for the pupil and a detail for IT staff: {reply}"
        );
        assert_eq!(
            (rows(&room), files(&room), outbox(&room).len()),
            before,
            "{code} leaves nothing behind"
        );
    }

    // Erasing the pupil's hand-ins removes their files and rows at once.
    let (status, erased) = call(
        address,
        "POST",
        "/api/hand-ins/erase",
        Some(json!({ "pupil_personal_id": AN, "reason": "yêu cầu của phụ huynh" })),
    )
    .await;
    assert_eq!(
        (status, erased["erased"].as_u64()),
        (200, Some(2)),
        "{erased}"
    );
    assert!(!kept_photo.exists());
    assert_eq!(files(&room), Vec::<String>::new());
    assert_eq!(rows(&room), Vec::new());
    assert!(outbox(&room).iter().any(|p| matches!(
        p,
        Payload::Erasure(e) if e.personal_id == AN && e.what == "hand_ins" && e.count == 2
    )));
    let (status, gone) = call(
        address,
        "GET",
        &format!("/api/hand-ins/{photo_id}/file"),
        None,
    )
    .await;
    assert_eq!(
        (status, gone["error"].as_str()),
        (404, Some("no_such_hand_in"))
    );
}
