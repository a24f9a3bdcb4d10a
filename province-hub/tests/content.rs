//! Learning content from the province's content directory to the rooms: the
//! hub binary with a PostgreSQL server of the test's own pushes the files to
//! real agent binaries, pulled and dialling in, and each room's content store
//! ends up with exactly its files, byte for byte; a changed file goes again
//! and an unchanged one does not; a push cut by a hub SIGKILL completes after
//! restart without the room ever holding half a file; a name the room
//! refuses is recorded; check-config finds a missing directory.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    Db, HubConfig, Postgres, Process, Room, free_addresses, http_get, hub_binary, wait_until,
};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(90);

fn put(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// `size` bytes that differ from one `seed` to another.
fn bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every file of the room's content store by name, with its bytes; hidden
/// files (the agent's unfinished pushes) under `hidden`.
fn stored(room: &Room) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    fn walk(
        dir: &Path,
        prefix: &str,
        files: &mut BTreeMap<String, Vec<u8>>,
        hidden: &mut Vec<String>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.map(Result::unwrap) {
            let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
            if entry.file_name().to_str().unwrap().starts_with('.') {
                hidden.push(name);
            } else if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), files, hidden);
            } else if let Ok(data) = std::fs::read(entry.path()) {
                files.insert(name, data);
            }
        }
    }
    let (mut files, mut hidden) = (BTreeMap::new(), Vec::new());
    walk(
        &room.data_dir().join("content"),
        "",
        &mut files,
        &mut hidden,
    );
    (files, hidden)
}

fn content_config(
    postgres: &Postgres,
    pulled: &[&Room],
    dial_in: SocketAddr,
    dir: &Path,
) -> HubConfig {
    HubConfig::with_extra(
        postgres,
        pulled,
        &format!(
            "max_batch = 500\n\n[dial_in]\nlisten = \"{dial_in}\"\n\n[content]\ndir = \"{}\"\n",
            dir.display()
        ),
    )
}

/// The accepted SHA-256, link and delivery time PostgreSQL records for `name` in `room`.
fn delivery(db: &Db, room: &Room, name: &str) -> Option<(Vec<u8>, String, String)> {
    db.query(
        "SELECT sha256, link, delivered_at::text FROM content_deliveries \
         WHERE school_code = $1 AND room_id = $2 AND name = $3 AND sha256 IS NOT NULL",
        &[&room.school_code, &room.room_id, &name],
    )
    .first()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
}

/// Log lines of `process` that contain every one of `needles`.
fn lines_with(process: &Process, needles: &[&str]) -> usize {
    process
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

#[test]
fn each_room_gets_its_files_over_pulled_and_dialled_links_and_a_changed_file_goes_again() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let content = tempfile::tempdir().unwrap();
    let dir = content.path();
    let lesson = bytes(1, 2 * 1024 * 1024 + 12_345); // three chunks
    put(dir, "all/toan/bai-3.pdf", &lesson);
    put(dir, "all/lich.txt", "lịch chung của tỉnh".as_bytes());
    put(dir, "all/.DS_Store", b"not for the rooms");
    put(
        dir,
        "schools/LC-A/truong.txt",
        "tài liệu của trường A".as_bytes(),
    );
    put(
        dir,
        "rooms/LC-A/P1/lich.txt",
        "lịch riêng của phòng P1".as_bytes(),
    );
    put(dir, "rooms/LC-A/P2/rieng.txt", "chỉ phòng P2".as_bytes());
    // Longer than the 255 bytes the room accepts for a name.
    let too_long = format!("{}/{}.pdf", "a".repeat(200), "b".repeat(100));
    put(dir, &format!("rooms/LC-B/P1/{too_long}"), b"never stored");

    let [dial_in] = free_addresses();
    let pulled_a = Room::new("LC-A", "P1");
    let dialling_a = Room::dialling("LC-A", "P2", dial_in);
    let pulled_b = Room::new("LC-B", "P1");
    let config = content_config(&postgres, &[&pulled_a, &pulled_b], dial_in, dir);
    let hub = config.start();
    let agents = [pulled_a.start(), dialling_a.start(), pulled_b.start()];

    let common = |lich: &str| -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("toan/bai-3.pdf".to_owned(), lesson.clone()),
            ("lich.txt".to_owned(), lich.as_bytes().to_vec()),
        ])
    };
    let mut expected_a1 = common("lịch riêng của phòng P1");
    expected_a1.insert("truong.txt".into(), "tài liệu của trường A".into());
    let mut expected_a2 = common("lịch chung của tỉnh");
    expected_a2.insert("truong.txt".into(), "tài liệu của trường A".into());
    expected_a2.insert("rieng.txt".into(), "chỉ phòng P2".into());
    let expected_b1 = common("lịch chung của tỉnh");
    let mut expected = [
        (&pulled_a, expected_a1),
        (&dialling_a, expected_a2),
        (&pulled_b, expected_b1),
    ];
    for (room, files) in &expected {
        wait_until(
            &format!("{}/{} holds its files", room.school_code, room.room_id),
            WAIT,
            || stored(room) == (files.clone(), Vec::new()),
        );
    }
    for (room, link) in [
        (&pulled_a, "pull"),
        (&dialling_a, "dial_in"),
        (&pulled_b, "pull"),
    ] {
        // The room stores the file before its answer reaches the hub.
        wait_until("the delivery recorded", WAIT, || {
            delivery(&db, room, "toan/bai-3.pdf").is_some()
        });
        let (sha256, recorded_link, _) = delivery(&db, room, "toan/bai-3.pdf").unwrap();
        assert_eq!(sha256, Sha256::digest(&lesson).to_vec());
        assert_eq!(recorded_link, link);
    }

    wait_until("the refusal of the long name recorded", WAIT, || {
        db.number(
            "SELECT count(*) FROM content_deliveries WHERE school_code = 'LC-B' AND room_id = 'P1' \
             AND name = $1 AND sha256 IS NULL AND refused_sha256 IS NOT NULL AND refusal LIKE '%' || $1 || '%'",
            &[&too_long],
        ) == 1
    });
    let (_, body) = http_get(config.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let unsendable = health["content_unsendable"].as_array().unwrap();
    assert_eq!(unsendable.len(), 1, "{body}");
    assert!(
        unsendable[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("all/.DS_Store"),
        "{body}"
    );
    assert!(
        unsendable[0]["reason"].as_str().unwrap().contains("hidden"),
        "{body}"
    );
    let (_, metrics) = http_get(config.http, "/metrics");
    assert!(
        metrics.contains("province_hub_content_unsendable_files 1"),
        "{metrics}"
    );

    // A changed file goes to every room again; the unchanged ones do not.
    let before: Vec<_> = expected
        .iter()
        .map(|(room, _)| delivery(&db, room, "toan/bai-3.pdf").unwrap())
        .collect();
    put(dir, "all/lich.txt", "lịch chung mới của tỉnh".as_bytes());
    for (room, files) in &mut expected {
        if room.room_id != "P1" || room.school_code != "LC-A" {
            files.insert("lich.txt".into(), "lịch chung mới của tỉnh".into());
        }
    }
    for (room, files) in &expected {
        wait_until("the changed file reached the room", WAIT, || {
            stored(room) == (files.clone(), Vec::new())
        });
    }
    wait_until("the changed file's deliveries recorded", WAIT, || {
        [&dialling_a, &pulled_b].iter().all(|room| {
            delivery(&db, room, "lich.txt").unwrap().0
                == Sha256::digest("lịch chung mới của tỉnh".as_bytes()).to_vec()
        })
    });
    for ((room, _), before) in expected.iter().zip(&before) {
        assert_eq!(delivery(&db, room, "toan/bai-3.pdf").as_ref(), Some(before));
    }
    for agent in &agents {
        assert_eq!(
            lines_with(
                agent,
                &["content pushed by the hub stored", "toan/bai-3.pdf"]
            ),
            1,
            "{:#?}",
            agent.log.lock().unwrap()
        );
    }
    // P1 of LC-A keeps its own lich.txt: the general one changing sends it nothing.
    assert_eq!(
        lines_with(
            &agents[0],
            &["content pushed by the hub stored", "lich.txt"]
        ),
        1
    );
    assert_eq!(
        lines_with(
            &agents[1],
            &["content pushed by the hub stored", "lich.txt"]
        ),
        2
    );
    // The refused version is not offered again.
    assert_eq!(
        lines_with(&hub, &["the room refused a content file", &too_long]),
        1
    );
}

#[test]
fn a_push_cut_by_a_hub_sigkill_completes_after_restart_and_the_room_never_holds_half_a_file() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let content = tempfile::tempdir().unwrap();
    let video_path = content.path().join("all/video/bai-1.mp4");
    std::fs::create_dir_all(video_path.parent().unwrap()).unwrap();
    let mut hasher = Sha256::new();
    let mut video = std::fs::File::create(&video_path).unwrap();
    let piece_bytes = 16 * 1024 * 1024;
    let pieces = 16;
    for piece in 0..pieces {
        let data = bytes(100 + piece, piece_bytes);
        hasher.update(&data);
        video.write_all(&data).unwrap();
    }
    drop(video);
    let size = (piece_bytes * pieces as usize) as u64;
    let sha256 = hasher.finalize().to_vec();

    let [dial_in] = free_addresses();
    let room = Room::new("LC-C", "P9");
    let config = content_config(&postgres, &[&room], dial_in, content.path());
    let mut hub = config.start();
    let _agent = room.start();
    let incoming = room.data_dir().join("content/video");
    let partial = || {
        std::fs::read_dir(&incoming).ok().is_some_and(|entries| {
            entries.map(Result::unwrap).any(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with(".incoming-")
                    && entry.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    wait_until("the push under way", WAIT, partial);
    hub.kill();
    let target = room.data_dir().join("content/video/bai-1.mp4");
    assert!(
        !target.exists(),
        "the push was meant to be cut before it completed"
    );
    // The room drops what it received of the cut push.
    wait_until("the unfinished push dropped", WAIT, || {
        !partial() && stored(&room).1.is_empty()
    });
    assert!(!target.exists());
    assert!(delivery(&db, &room, "video/bai-1.mp4").is_none());

    let _hub = config.start();
    wait_until("the whole file in the room", WAIT, || {
        // Whenever the name is there, it is there whole.
        match std::fs::metadata(&target) {
            Ok(metadata) => {
                assert_eq!(metadata.len(), size, "the room holds part of the file");
                true
            }
            Err(_) => false,
        }
    });
    let held = Sha256::digest(std::fs::read(&target).unwrap()).to_vec();
    assert_eq!(held, sha256);
    wait_until("the delivery recorded", WAIT, || {
        delivery(&db, &room, "video/bai-1.mp4")
            .is_some_and(|(recorded, link, _)| recorded == sha256 && link == "pull")
    });
}

#[test]
fn check_config_reports_a_missing_content_dir_at_its_line_and_column() {
    let postgres = Postgres::start();
    let [dial_in] = free_addresses();
    let missing = std::env::temp_dir().join("no-such-content-dir-for-the-hub");
    let config = content_config(&postgres, &[], dial_in, &missing);
    let source = std::fs::read_to_string(&config.path).unwrap();
    let line = source
        .lines()
        .position(|line| line.starts_with("dir = "))
        .unwrap()
        + 1;
    let output = Command::new(hub_binary())
        .arg("check-config")
        .arg(&config.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let place = format!(
        "{}:{line}:7: content.dir {}",
        config.path.display(),
        missing.display()
    );
    assert!(stderr.contains(&place), "{stderr}");
    assert!(stderr.contains("hint: create the directory"), "{stderr}");
}
