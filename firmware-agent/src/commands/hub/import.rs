//! `firmware-agent hub import FILE`: a roster (with its timetable) or a
//! content file from the province's office, carried in on the stick, applied
//! through the same checks and code as the hub's PutRoster and PutContent.
//!
//! The bundle must be encrypted to this room (its `bundle-keys`), signed by
//! `hub.province_signing_key` and name this room. A roster is refused unless
//! its version is newer than the one in force, as a push is, so an old
//! bundle imported again changes nothing. A content file is written to the
//! content store only once the whole bundle checked; a bundle that fails half
//! way leaves the store as it was.

use std::path::Path;

use classroom_bundle::keys::RoomKeys;
use classroom_bundle::office::{self, Payload};
use prost::Message;

use super::{Ending, check_room, province_signing_key, run_on_store};
use crate::config::Config;
use crate::exit::Exit;
use crate::hub::service::{RosterRefused, apply_roster};
use crate::hub::usb;
use crate::proto::PutRosterRequest;
use crate::store::Store;
use crate::tablets::content::{ContentError, content_dir, store_pushed};

/// Chunks in flight between the bundle and the content store.
const IN_FLIGHT: usize = 4;

pub fn import(config_path: &Path, file: &Path) -> Exit {
    run_on_store(config_path, file, run)
}

fn run(config: &Config, store: &Store, file: &Path) -> Result<Ending, Ending> {
    let province = province_signing_key(config)?;
    let refused = "Tệp của Sở trên USB bị hỏng hoặc không đúng: không dùng";
    let keys = RoomKeys::load_or_create(&usb::keys_path(&config.storage.data_dir))
        .map_err(|err| Ending::bundle(&err, "Không đọc được khóa của lớp: báo cán bộ tin học"))?;
    let bundle = office::open(file, &keys.identity, &province)
        .map_err(|err| Ending::bundle(&err, refused))?;
    check_room(file, config, &bundle.header.room)?;
    match bundle.header.payload {
        Payload::Roster => roster(config, store, file, &bundle),
        Payload::Content => content(config, file, &bundle),
    }
}

fn roster(
    config: &Config,
    store: &Store,
    file: &Path,
    bundle: &office::Office,
) -> Result<Ending, Ending> {
    let refused = "Danh sách lớp trên USB không dùng được: báo phòng giáo dục";
    // The same bound as a push over gRPC.
    let bytes = bundle
        .payload_bytes(config.hub.max_message_bytes as u64)
        .map_err(|err| Ending::bundle(&err, refused))?;
    let request = PutRosterRequest::decode(bytes.as_slice()).map_err(|err| {
        Ending::failed(
            Exit::InvalidInput,
            refused,
            format!(
                "{}: its roster is not a PutRosterRequest: {err}",
                file.display()
            ),
        )
    })?;
    match apply_roster(store, config, &request) {
        Ok(Ok((summary, timetable))) => Ok(Ending::done(
            format!(
                "Đã cập nhật danh sách lớp (phiên bản {}): {} học sinh, {} giáo viên",
                request.version, summary.pupils, summary.teachers
            ),
            format!(
                "roster version {} applied: {} pupil(s), {} teacher(s), {} removed, face templates of {} erased{}",
                request.version,
                summary.pupils,
                summary.teachers,
                summary.removed,
                summary.erased,
                if timetable.is_some() {
                    "; its timetable is stored: `systemctl reload firmware-agent` makes the running agent follow it"
                } else {
                    ""
                }
            ),
        )),
        Ok(Err(why @ RosterRefused::Stale(_))) => Err(Ending::failed(
            Exit::InvalidInput,
            "Danh sách lớp trên USB cũ hơn danh sách đang dùng: không thay đổi gì",
            format!("{}: {why}", file.display()),
        )),
        Ok(Err(why @ RosterRefused::Problems(_))) => Err(Ending::failed(
            Exit::InvalidInput,
            refused,
            format!("{}: {why}", file.display()),
        )),
        Err(err) => Err(Ending::failed(
            Exit::Failure,
            "Không ghi được vào cơ sở dữ liệu của lớp: báo cán bộ tin học",
            err.to_string(),
        )),
    }
}

fn content(config: &Config, file: &Path, bundle: &office::Office) -> Result<Ending, Ending> {
    let header = &bundle.header;
    let dir = content_dir(&config.storage.data_dir, &config.tablets);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, String>>(IN_FLIGHT);
    let stored = std::thread::scope(|scope| {
        let writer = {
            let (dir, name) = (dir.clone(), header.name.clone());
            let (size, sha256) = (header.size, header.sha256_bytes());
            scope.spawn(move || store_pushed(&dir, &name, size, sha256, rx))
        };
        let read = bundle.payload(&mut |chunk| {
            tx.send(Ok(chunk.to_vec()))
                .map_err(|_| std::io::Error::other("the content store stopped taking the file"))
        });
        // A bundle that fails its checks at the end must not be stored: the
        // store is told the file was cut off, and keeps what it had.
        if let Err(err) = &read {
            let _ = tx.send(Err(err.to_string()));
        }
        drop(tx);
        (
            read,
            writer.join().expect("the content writer does not panic"),
        )
    });
    match stored {
        (Ok(()), Ok(stored)) => Ok(Ending::done(
            format!("Đã thêm tài liệu «{}» cho máy tính bảng", stored.name),
            format!(
                "{}: content `{}` ({} bytes) stored for the tablets",
                file.display(),
                stored.name,
                stored.size
            ),
        )),
        // The bundle failed its checks: that is the reason, whatever the store said.
        (Err(err), _) if !matches!(err, classroom_bundle::BundleError::Invalid(_)) => {
            Err(Ending::bundle(
                &err,
                "Tệp của Sở trên USB bị hỏng hoặc không đúng: không dùng",
            ))
        }
        (Err(err), Ok(_)) => Err(Ending::bundle(
            &err,
            "Tệp của Sở trên USB bị hỏng hoặc không đúng: không dùng",
        )),
        (_, Err(err)) => {
            let exit = match err {
                ContentError::Io { .. } => Exit::Failure,
                _ => Exit::InvalidInput,
            };
            Err(Ending::failed(
                exit,
                "Không lưu được tài liệu từ USB: báo cán bộ tin học",
                format!("{}: {err}", file.display()),
            ))
        }
    }
}
