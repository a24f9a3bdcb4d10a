//! The rosters and timetables the province keeps for its rooms
//! (`schema/0002_roster.sql`): the newest version a room does not hold yet,
//! as the `PutRoster` request that carries it, and what the room answered.
//!
//! # Design
//! A version is read in one repeatable-read transaction, so the pupils,
//! teachers and timetable pushed are those of one version even while the
//! province is editing. A version the room refused (a pupil without a consent
//! date, a timetable it cannot read) is recorded with the reason and not
//! pushed again: the next change in PostgreSQL makes a new version, which is.

use deadpool_postgres::Object;
use tokio_postgres::IsolationLevel;

use super::StoreError;
use crate::config::RoomKey;
use crate::proto;

/// The room's roster of the newest version, when it is newer than `held` (the
/// version the room holds) and than every version the room already answered.
pub async fn newer_roster(
    db: &mut Object,
    room: &RoomKey,
    held: u64,
) -> Result<Option<proto::PutRosterRequest>, StoreError> {
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&room.school_code, &room.room_id];
    let tx = db
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let held = i64::try_from(held).unwrap_or(i64::MAX);
    let Some(row) = tx
        .query_opt(
            "SELECT r.version, r.timetable_toml FROM room_rosters r \
             WHERE r.school_code = $1 AND r.room_id = $2 AND r.version > $3 \
             AND r.version > coalesce((SELECT max(d.version) FROM roster_deliveries d \
                 WHERE d.school_code = r.school_code AND d.room_id = r.room_id), 0)",
            &[&room.school_code, &room.room_id, &held],
        )
        .await?
    else {
        return Ok(None);
    };
    let version: i64 = row.get(0);
    let pupils = tx
        .query(
            "SELECT personal_id, full_name, class_name, face_consent, learning_data_consent, \
             coalesce(to_char(consent_date, 'YYYY-MM-DD'), '') \
             FROM roster_pupils WHERE school_code = $1 AND room_id = $2 ORDER BY personal_id",
            &key,
        )
        .await?
        .into_iter()
        .map(|row| proto::Pupil {
            personal_id: row.get(0),
            full_name: row.get(1),
            class_name: row.get(2),
            face_consent: row.get(3),
            learning_data_consent: row.get(4),
            consent_date: row.get(5),
        })
        .collect();
    let teachers = tx
        .query(
            "SELECT personal_id, full_name FROM roster_teachers \
             WHERE school_code = $1 AND room_id = $2 ORDER BY personal_id",
            &key,
        )
        .await?
        .into_iter()
        .map(|row| proto::Teacher {
            personal_id: row.get(0),
            full_name: row.get(1),
        })
        .collect();
    tx.commit().await?;
    Ok(Some(proto::PutRosterRequest {
        version: version as u64,
        pupils,
        teachers,
        timetable_toml: row.get(1),
    }))
}

/// Records the room's answer to the push of `version` over a `link` link:
/// what it holds now, or why it refused.
pub async fn record_answer(
    db: &Object,
    room: &RoomKey,
    version: u64,
    link: &str,
    answer: Result<&proto::PutRosterResponse, &str>,
) -> Result<(), StoreError> {
    let (accepted, pupils, teachers, refusal) = match answer {
        Ok(response) => (
            true,
            Some(response.pupils as i32),
            Some(response.teachers as i32),
            None,
        ),
        Err(reason) => (false, None, None, Some(reason)),
    };
    db.execute(
        "INSERT INTO roster_deliveries \
         (school_code, room_id, version, link, accepted, pupils, teachers, refusal) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (school_code, room_id, version) DO UPDATE SET answered_at = now(), \
         link = EXCLUDED.link, accepted = EXCLUDED.accepted, pupils = EXCLUDED.pupils, \
         teachers = EXCLUDED.teachers, refusal = EXCLUDED.refusal",
        &[
            &room.school_code,
            &room.room_id,
            &(version as i64),
            &link,
            &accepted,
            &pupils,
            &teachers,
            &refusal,
        ],
    )
    .await?;
    Ok(())
}
