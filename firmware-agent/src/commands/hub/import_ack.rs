//! `firmware-agent hub import-ack FILE`: the province's acknowledgement,
//! carried back on the stick, moves the room's acknowledged cursor exactly as
//! an Ack over gRPC does, and acknowledged records past their retention are
//! pruned as after an Ack.
//!
//! The file must be signed by `hub.province_signing_key`, name this room and
//! this outbox, and acknowledge no seq beyond what the room handed out;
//! anything else is refused and changes nothing. An older acknowledgement
//! imported after a newer one leaves the cursor where it is.

use std::path::Path;

use classroom_bundle::ack;

use super::{Ending, check_room, province_signing_key, run_on_store};
use crate::config::Config;
use crate::exit::Exit;
use crate::hub::service::{AckRejected, acknowledge};
use crate::store::Store;

pub fn import_ack(config_path: &Path, file: &Path) -> Exit {
    run_on_store(config_path, file, run)
}

fn run(config: &Config, store: &Store, file: &Path) -> Result<Ending, Ending> {
    let province = province_signing_key(config)?;
    let ack = ack::open(file, &province).map_err(|err| {
        Ending::bundle(
            &err,
            "Tệp xác nhận của Sở bị hỏng hoặc không đúng: không dùng",
        )
    })?;
    check_room(file, config, &ack.room)?;
    let refused = |detail: String| {
        Ending::failed(
            Exit::InvalidInput,
            "Tệp xác nhận của Sở không khớp với dữ liệu của lớp: không dùng",
            format!("{}: {detail}; nothing was acknowledged", file.display()),
        )
    };
    let acked_seq = match acknowledge(store, ack.outbox_identity.as_bytes(), ack.acked_seq) {
        Ok(Ok(acked_seq)) => acked_seq,
        Ok(Err(AckRejected::OtherOutbox(other))) => {
            return Err(refused(format!(
                "it acknowledges outbox {}, but this room's outbox is {}: the room's database was replaced since that export\n  hint: export again and carry the new bundle to the province",
                other.claimed, other.ours
            )));
        }
        Ok(Err(AckRejected::Refused(why))) => return Err(refused(why.to_string())),
        Err(err) => {
            return Err(Ending::failed(
                Exit::Failure,
                "Không ghi được vào cơ sở dữ liệu của lớp: báo cán bộ tin học",
                err.to_string(),
            ));
        }
    };
    let days = i64::from(config.hub.retention_days);
    let cutoff = store.clock().now() - jiff::SignedDuration::from_hours(24 * days);
    let pruned = store.prune_acknowledged(cutoff).map_err(|err| {
        Ending::failed(
            Exit::Failure,
            "Đã nhận xác nhận nhưng chưa dọn được dữ liệu cũ: báo cán bộ tin học",
            format!("acknowledged up to seq {acked_seq}, but pruning failed: {err}"),
        )
    })?;
    Ok(Ending::done(
        format!("Sở đã nhận đủ dữ liệu đến bản ghi #{acked_seq}"),
        format!(
            "acknowledged up to seq {acked_seq} (the file says {}); pruned {pruned} acknowledged record(s) older than {days} day(s)",
            ack.acked_seq
        ),
    ))
}
