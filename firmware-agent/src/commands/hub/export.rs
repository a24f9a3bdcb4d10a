//! `firmware-agent hub export --to DIR`: every record the province has not
//! acknowledged, as one bundle on the stick mounted at DIR.
//!
//! # Design
//! The outbox is read in one read transaction (a snapshot: the daemon goes on
//! appending beside it) from the acknowledged cursor to the newest seq at the
//! start, in pages, each row turned into the same `Event` a Pull sends
//! (`hub::wire::event`) and streamed into the bundle, so memory does not grow
//! with the backlog. The export changes nothing in the room: records leave the
//! outbox only when the province's acknowledgement comes back
//! (`hub import-ack`). So a full stick, a pulled stick or a failed write loses
//! nothing, and the next export writes everything still unacknowledged again,
//! the province importing by event id.

use std::path::Path;

use classroom_bundle::keys::RoomKeys;
use classroom_bundle::records;
use prost::Message;

use super::{Ending, room_of, run_on_store};
use crate::config::Config;
use crate::exit::Exit;
use crate::hub::{usb, wire};
use crate::proto::RoomIdentity;
use crate::store::Store;
use crate::store::outbox::read_after;

/// Rows read from the outbox at a time.
const PAGE: usize = 2_000;

pub fn export(config_path: &Path, to: &Path) -> Exit {
    run_on_store(config_path, to, run)
}

fn run(config: &Config, store: &Store, to: &Path) -> Result<Ending, Ending> {
    let recipient = config.hub.province_recipient().map_err(|err| {
        Ending::failed(
            Exit::InvalidInput,
            "Máy của lớp chưa có khóa của Sở: báo cán bộ tin học",
            format!("{err}\n  hint: then run check-config and export again"),
        )
    })?;
    if !to.is_dir() {
        return Err(Ending::failed(
            Exit::InvalidInput,
            "Không thấy USB: hãy cắm lại",
            format!(
                "--to {}: not a directory\n  hint: name the directory where the stick is mounted",
                to.display()
            ),
        ));
    }
    let status = store.outbox_status().map_err(database)?;
    if status.backlog == 0 {
        return Ok(Ending::done(
            "Không có bản ghi mới cần chép: Sở đã nhận đủ",
            format!(
                "nothing to export: every record up to seq {} is acknowledged by the province",
                status.acked_seq
            ),
        ));
    }
    let keys = RoomKeys::load_or_create(&usb::keys_path(&config.storage.data_dir))
        .map_err(|err| Ending::bundle(&err, "Không đọc được khóa của lớp: báo cán bộ tin học"))?;
    let room = room_of(config);
    let mut writer = records::Writer::create(
        to,
        &room,
        store.outbox_identity(),
        store.clock().now(),
        &keys,
        &recipient,
    )
    .map_err(|err| Ending::bundle(&err, "Chưa chép được ra USB: hãy thử lại"))?;
    let identity = RoomIdentity {
        school_code: room.school_code.clone(),
        room_id: room.room_id.clone(),
    };
    let mut reader = store.reader().map_err(database)?;
    let snapshot = reader
        .transaction()
        .map_err(|err| database(store.error(err)))?;
    let mut after = status.acked_seq;
    while after < status.last_seq {
        let rows = read_after(&snapshot, after, PAGE).map_err(|err| database(store.error(err)))?;
        let Some(last) = rows.last().map(|row| row.seq) else {
            break;
        };
        for row in rows
            .into_iter()
            .take_while(|row| row.seq <= status.last_seq)
        {
            let seq = row.seq;
            let event = wire::event(row, &identity);
            writer
                .event(seq, &event.encode_to_vec())
                .map_err(|err| Ending::bundle(&err, "Chưa chép được ra USB: hãy thử lại"))?;
        }
        after = last;
    }
    drop(snapshot);
    let written = writer
        .finish()
        .map_err(|err| Ending::bundle(&err, "Chưa chép được ra USB: hãy thử lại"))?;
    let summary = written.summary;
    Ok(Ending::done(
        format!(
            "Đã chép {} bản ghi ra USB; hãy mang USB đến phòng giáo dục",
            summary.events
        ),
        format!(
            "exported {} records (seq {}-{}) to {} ({} bytes); they stay in the room until the province's acknowledgement is imported (hub import-ack)",
            summary.events,
            summary.first_seq,
            summary.last_seq,
            written.path.display(),
            written.bytes
        ),
    ))
}

fn database(err: crate::store::StoreError) -> Ending {
    Ending::failed(
        Exit::Failure,
        "Không đọc được cơ sở dữ liệu của lớp: báo cán bộ tin học",
        err.to_string(),
    )
}
