//! The hub's PostgreSQL database: the schema and its migrations, each room's
//! outbox identities and cursors, and the transactions that land a batch.
//!
//! # Design
//! Exactly once rests on one rule: a batch's events and the cursor after
//! them are written in one transaction, and the room is acknowledged only
//! after it committed. A crash before the commit leaves neither; after it,
//! both. The next Pull starts from the stored cursor, so a batch is received
//! again only when its transaction did not commit. Events are also unique by
//! their id (the primary key), so an event that reaches the hub twice by any
//! other road (a USB bundle, a cursor moved back by hand, a second hub
//! process) is still stored once.
//!
//! **Landing speed.** A batch is written with binary `COPY`, one per table,
//! inside a savepoint: a pulled batch follows the stored cursor, so it almost
//! never holds an event already stored, and `COPY` is the cheapest way into
//! PostgreSQL (no plan, no speculative insertion, rows streamed as they are
//! encoded). Should any id be held already, the primary key refuses the
//! `COPY`, the savepoint is rolled back and the batch is inserted again
//! skipping the ids held (`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
//! NOTHING`), in the same transaction. A mark's similarity score is checked
//! against the pupil's stored erasures before the `COPY` (one query for the
//! batch), so the rows go in as they are.
//!
//! The cursor is moved with `WHERE cursor = <the cursor the batch followed>`:
//! if anything else moved it meanwhile (a second hub process pulling the same
//! room), the transaction is rolled back and the room's link starts again from
//! what is stored, rather than land a batch that does not follow on.
//!
//! An erasure makes the hub drop the biometric-derived values it holds for the
//! pupil (the similarity scores of face-made marks) in the same transaction as
//! the erasure is stored; marks of that pupil that arrive later but happened
//! before the erasure are stored without their score. What the hub keeps is
//! listed in `DESIGN.md`: marks themselves (present, late...) are school
//! records, not biometric data.

pub mod bundle;
pub mod content;
pub mod roster;
pub mod rows;

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};
use uuid::Uuid;

use crate::config::RoomKey;
use crate::proto;
use rows::BatchRows;

/// The migrations, in order; the number of those applied is kept in `schema_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema/0001_landing.sql"),
    include_str!("schema/0002_usb.sql"),
    include_str!("schema/0003_fewer_indexes.sql"),
    include_str!("schema/0004_roster.sql"),
    include_str!("schema/0005_content.sql"),
];

/// Serialises concurrent migrations (several hub processes starting at once).
const MIGRATION_LOCK: i64 = 0x5052_4f56_4855_4201;

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the connection pool cannot be made: {0}")]
    PoolConfig(String),
    #[error("no PostgreSQL connection from the pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(
        "the stored cursor of {room} moved from {expected} while a batch was landing: another hub process pulls this room"
    )]
    CursorMoved { room: RoomKey, expected: i64 },
    #[error("{0}")]
    Batch(#[from] rows::BatchError),
}

/// Where the hub is in one outbox of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPosition {
    pub identity: Uuid,
    /// Every event up to this seq is stored (or recorded as skipped).
    pub cursor: i64,
}

/// Opens a connection, its driver task running on the current runtime.
pub async fn connect(url: &str, timeout: Duration) -> Result<Client, StoreError> {
    let (client, connection) = tokio::time::timeout(timeout, tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| StoreError::TimedOut(timeout))??;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {err}");
        }
    });
    Ok(client)
}

/// A bounded pool of at most `size` connections to `url`, shared by every
/// room's link: a link holds one only while it reads its cursor or lands a
/// batch. Waiting for a free connection, and opening one, each take at most
/// `timeout`.
pub fn pool(url: &str, timeout: Duration, size: usize) -> Result<Pool, StoreError> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|err| StoreError::PoolConfig(err.to_string()))
}

/// Brings the schema up to date; safe to call from several processes at once.
pub async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await?;
    let applied: i64 = tx
        .query_one("SELECT count(*) FROM schema_version", &[])
        .await?
        .get(0);
    let applied = applied as usize;
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(number as i32 + 1)],
        )
        .await?;
        tracing::info!(version = number + 1, "database schema migrated");
    }
    tx.commit().await?;
    Ok(MIGRATIONS.len())
}

/// The outbox the hub pulls now from `room`, and its cursor; `None` for a room never heard from.
pub async fn current_outbox(
    client: &Client,
    room: &RoomKey,
) -> Result<Option<OutboxPosition>, StoreError> {
    let row = client
        .query_opt(
            "SELECT o.identity, o.cursor FROM rooms r JOIN outboxes o \
             ON o.school_code = r.school_code AND o.room_id = r.room_id AND o.identity = r.current_identity \
             WHERE r.school_code = $1 AND r.room_id = $2",
            &[&room.school_code, &room.room_id],
        )
        .await?;
    Ok(row.map(|row| OutboxPosition {
        identity: row.get(0),
        cursor: row.get(1),
    }))
}

/// Makes `identity` the room's current outbox: a new one starts at cursor 0,
/// one seen before (a database put back) resumes from its stored cursor. The
/// rows and cursors of other identities stay as they are.
pub async fn adopt_identity(
    client: &mut Client,
    room: &RoomKey,
    identity: Uuid,
) -> Result<OutboxPosition, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO rooms (school_code, room_id, current_identity) VALUES ($1, $2, $3) \
         ON CONFLICT (school_code, room_id) DO UPDATE SET current_identity = EXCLUDED.current_identity",
        &[&room.school_code, &room.room_id, &identity],
    )
    .await?;
    tx.execute(
        "INSERT INTO outboxes (school_code, room_id, identity, cursor) VALUES ($1, $2, $3, 0) \
         ON CONFLICT DO NOTHING",
        &[&room.school_code, &room.room_id, &identity],
    )
    .await?;
    let cursor: i64 = tx
        .query_one(
            "SELECT cursor FROM outboxes WHERE school_code = $1 AND room_id = $2 AND identity = $3",
            &[&room.school_code, &room.room_id, &identity],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(OutboxPosition { identity, cursor })
}

/// Stores `events` (in seq order, all after `from.cursor`) and moves the
/// cursor to the last one's seq, in one transaction. Returns the new position.
pub async fn land_batch(
    client: &mut Client,
    room: &RoomKey,
    from: OutboxPosition,
    events: &[proto::Event],
) -> Result<OutboxPosition, StoreError> {
    let Some(last) = events.last() else {
        return Ok(from);
    };
    let mut rows = BatchRows::from_events(events)?;
    let tx = client.transaction().await?;
    move_cursor(&tx, room, from, last.seq).await?;
    insert_rows(&tx, room, from.identity, &mut rows).await?;
    tx.commit().await?;
    Ok(OutboxPosition {
        identity: from.identity,
        cursor: last.seq,
    })
}

/// Records an event the room could not send and moves the cursor past it, in one transaction.
pub async fn record_skipped(
    client: &mut Client,
    room: &RoomKey,
    from: OutboxPosition,
    skipped: &proto::SkippedEvent,
) -> Result<OutboxPosition, StoreError> {
    let tx = client.transaction().await?;
    move_cursor(&tx, room, from, skipped.seq).await?;
    tx.execute(
        "INSERT INTO skipped_events (school_code, room_id, outbox_identity, seq, id, kind, message_bytes, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        &[
            &room.school_code,
            &room.room_id,
            &from.identity,
            &skipped.seq,
            &Uuid::from_slice(&skipped.id).ok(),
            &skipped.kind,
            &(skipped.message_bytes.min(i64::MAX as u64) as i64),
            &skipped.reason,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(OutboxPosition {
        identity: from.identity,
        cursor: skipped.seq,
    })
}

async fn move_cursor(
    tx: &Transaction<'_>,
    room: &RoomKey,
    from: OutboxPosition,
    to: i64,
) -> Result<(), StoreError> {
    let moved = tx
        .execute(
            "UPDATE outboxes SET cursor = $5, last_stored_at = now() \
             WHERE school_code = $1 AND room_id = $2 AND identity = $3 AND cursor = $4",
            &[
                &room.school_code,
                &room.room_id,
                &from.identity,
                &from.cursor,
                &to,
            ],
        )
        .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(StoreError::CursorMoved {
            room: room.clone(),
            expected: from.cursor,
        })
    }
}

/// Inserts a batch's rows, each event once by its id; returns how many events
/// were new. See "Landing speed" above.
async fn insert_rows(
    tx: &Transaction<'_>,
    room: &RoomKey,
    identity: Uuid,
    rows: &mut BatchRows,
) -> Result<u64, StoreError> {
    drop_erased_scores(tx, &mut rows.marks).await?;
    tx.batch_execute("SAVEPOINT new_rows").await?;
    match copy_rows(tx, room, identity, rows).await {
        Ok(added) => {
            tx.batch_execute("RELEASE SAVEPOINT new_rows").await?;
            Ok(added)
        }
        Err(StoreError::Postgres(err)) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT new_rows").await?;
            insert_new_rows(tx, room, identity, rows).await
        }
        Err(err) => Err(err),
    }
}

/// Takes the similarity score off every mark of a pupil erased since (see
/// [`rows::MarkColumns::drop_erased_scores`]), with the erasures stored so far.
async fn drop_erased_scores(
    tx: &Transaction<'_>,
    marks: &mut rows::MarkColumns,
) -> Result<(), StoreError> {
    let scored: Vec<&str> = marks
        .personal_id
        .iter()
        .zip(&marks.best_similarity)
        .filter(|(_, score)| score.is_some())
        .map(|(pupil, _)| pupil.as_str())
        .collect();
    if scored.is_empty() {
        return Ok(());
    }
    let erased = tx
        .query(
            "SELECT personal_id, occurred_at FROM erasures WHERE personal_id = ANY($1)",
            &[&scored],
        )
        .await?;
    if !erased.is_empty() {
        let erased: Vec<(String, Option<std::time::SystemTime>)> =
            erased.iter().map(|row| (row.get(0), row.get(1))).collect();
        marks.drop_erased_scores(&erased);
    }
    Ok(())
}

/// Writes a batch's rows with binary `COPY`, one per table: PostgreSQL's
/// fastest way in. The primary keys refuse the whole statement should any
/// event be stored already.
async fn copy_rows(
    tx: &Transaction<'_>,
    room: &RoomKey,
    identity: Uuid,
    rows: &BatchRows,
) -> Result<u64, StoreError> {
    let (school, room_id) = (&room.school_code, &room.room_id);
    let e = &rows.events;
    let added = copy_in(
        tx,
        "events (id, school_code, room_id, outbox_identity, seq, kind, occurred_at, recorded_at, \
         clock_synced, clock_step_back_ms, payload)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::UUID,
            Type::INT8,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::BOOL,
            Type::INT8,
            Type::BYTEA,
        ],
        e.id.len(),
        |i| {
            vec![
                &e.id[i],
                school,
                room_id,
                &identity,
                &e.seq[i],
                &e.kind[i],
                &e.occurred_at[i],
                &e.recorded_at[i],
                &e.clock_synced[i],
                &e.clock_step_back_ms[i],
                &e.payload[i],
            ]
        },
    )
    .await?;
    let m = &rows.marks;
    copy_in(
        tx,
        "attendance_marks (event_id, school_code, room_id, session_id, lesson_id, personal_id, \
         status, source, best_similarity, reason, teacher_personal_id, occurred_at)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT4,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ],
        m.event_id.len(),
        |i| {
            vec![
                &m.event_id[i],
                school,
                room_id,
                &m.session_id[i],
                &m.lesson_id[i],
                &m.personal_id[i],
                &m.status[i],
                &m.source[i],
                &m.best_similarity[i],
                &m.reason[i],
                &m.teacher_personal_id[i],
                &m.occurred_at[i],
            ]
        },
    )
    .await?;
    let a = &rows.answers;
    copy_in(
        tx,
        "answers (event_id, school_code, room_id, lesson_id, question_id, tablet_id, \
         pupil_personal_id, choices, answer_text, graded, correct, time_to_answer_ms, occurred_at)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT_ARRAY,
            Type::TEXT,
            Type::BOOL,
            Type::BOOL,
            Type::INT8,
            Type::TIMESTAMPTZ,
        ],
        a.event_id.len(),
        |i| {
            vec![
                &a.event_id[i],
                school,
                room_id,
                &a.lesson_id[i],
                &a.question_id[i],
                &a.tablet_id[i],
                &a.pupil_personal_id[i],
                &a.choices[i],
                &a.text[i],
                &a.graded[i],
                &a.correct[i],
                &a.time_to_answer_ms[i],
                &a.occurred_at[i],
            ]
        },
    )
    .await?;
    let a = &rows.actuations;
    copy_in(
        tx,
        "actuations (event_id, school_code, room_id, device, device_kind, command, cause, outcome, \
         detail, latency_ms, occurred_at)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TIMESTAMPTZ,
        ],
        a.event_id.len(),
        |i| {
            vec![
                &a.event_id[i],
                school,
                room_id,
                &a.device[i],
                &a.device_kind[i],
                &a.command[i],
                &a.cause[i],
                &a.outcome[i],
                &a.detail[i],
                &a.latency_ms[i],
                &a.occurred_at[i],
            ]
        },
    )
    .await?;
    let e = &rows.erasures;
    copy_in(
        tx,
        "erasures (event_id, school_code, room_id, personal_id, what, count, reason, occurred_at)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ],
        e.event_id.len(),
        |i| {
            vec![
                &e.event_id[i],
                school,
                room_id,
                &e.personal_id[i],
                &e.what[i],
                &e.count[i],
                &e.reason[i],
                &e.occurred_at[i],
            ]
        },
    )
    .await?;
    erase_scores(tx, room, &e.personal_id).await?;
    Ok(added)
}

/// One binary `COPY` of `count` rows into `table` (with its column list),
/// row `i` given by `row(i)` in the order of `types`; returns the rows written.
async fn copy_in<'a>(
    tx: &Transaction<'_>,
    table: &str,
    types: &[Type],
    count: usize,
    row: impl Fn(usize) -> Vec<&'a (dyn ToSql + Sync)>,
) -> Result<u64, StoreError> {
    if count == 0 {
        return Ok(0);
    }
    let sink = tx
        .copy_in(&format!("COPY {table} FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    tokio::pin!(writer);
    for i in 0..count {
        writer.as_mut().write(&row(i)).await?;
    }
    Ok(writer.finish().await?)
}

/// An erasure arrived for `pupils`: the similarity scores of their marks
/// stored so far are dropped, in the erasure's transaction.
async fn erase_scores(
    tx: &Transaction<'_>,
    room: &RoomKey,
    pupils: &[String],
) -> Result<(), StoreError> {
    if pupils.is_empty() {
        return Ok(());
    }
    let erased = tx
        .execute(
            "UPDATE attendance_marks SET best_similarity = NULL \
             WHERE personal_id = ANY($1) AND best_similarity IS NOT NULL",
            &[&pupils],
        )
        .await?;
    tracing::info!(
        room = %room,
        pupils = pupils.len(),
        marks = erased,
        "erasure applied: similarity scores of the pupils' marks dropped"
    );
    Ok(())
}

/// Inserts a batch's rows leaving out every event stored already; the road
/// taken when [`copy_rows`] was refused.
async fn insert_new_rows(
    tx: &Transaction<'_>,
    room: &RoomKey,
    identity: Uuid,
    rows: &BatchRows,
) -> Result<u64, StoreError> {
    let (school, room_id) = (&room.school_code, &room.room_id);
    let e = &rows.events;
    let added = tx.execute(
        "INSERT INTO events (id, school_code, room_id, outbox_identity, seq, kind, occurred_at, recorded_at, \
         clock_synced, clock_step_back_ms, payload) \
         SELECT id, $1, $2, $3, seq, kind, occurred_at, recorded_at, clock_synced, step_back, payload \
         FROM unnest($4::uuid[], $5::bigint[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::boolean[], \
         $10::bigint[], $11::bytea[]) AS t(id, seq, kind, occurred_at, recorded_at, clock_synced, step_back, payload) \
         ON CONFLICT (id) DO NOTHING",
        &[
            school, room_id, &identity, &e.id, &e.seq, &e.kind, &e.occurred_at, &e.recorded_at,
            &e.clock_synced, &e.clock_step_back_ms, &e.payload,
        ],
    )
    .await?;
    let m = &rows.marks;
    if !m.event_id.is_empty() {
        tx.execute(
            "INSERT INTO attendance_marks (event_id, school_code, room_id, session_id, lesson_id, personal_id, \
             status, source, best_similarity, reason, teacher_personal_id, occurred_at) \
             SELECT t.event_id, $1, $2, t.session_id, t.lesson_id, t.personal_id, t.status, t.source, \
             t.best_similarity, t.reason, t.teacher, t.occurred_at \
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::real[], \
             $10::text[], $11::text[], $12::timestamptz[]) \
             AS t(event_id, session_id, lesson_id, personal_id, status, source, best_similarity, reason, teacher, occurred_at) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                school, room_id, &m.event_id, &m.session_id, &m.lesson_id, &m.personal_id, &m.status,
                &m.source, &m.best_similarity, &m.reason, &m.teacher_personal_id, &m.occurred_at,
            ],
        )
        .await?;
    }
    let a = &rows.answers;
    if !a.event_id.is_empty() {
        let choices: Vec<String> = a.choices.iter().map(|c| rows::array_literal(c)).collect();
        tx.execute(
            "INSERT INTO answers (event_id, school_code, room_id, lesson_id, question_id, tablet_id, \
             pupil_personal_id, choices, answer_text, graded, correct, time_to_answer_ms, occurred_at) \
             SELECT event_id, $1, $2, lesson_id, question_id, tablet_id, pupil, choices::text[], answer_text, \
             graded, correct, ms, occurred_at \
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
             $10::boolean[], $11::boolean[], $12::bigint[], $13::timestamptz[]) \
             AS t(event_id, lesson_id, question_id, tablet_id, pupil, choices, answer_text, graded, correct, ms, occurred_at) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                school, room_id, &a.event_id, &a.lesson_id, &a.question_id, &a.tablet_id,
                &a.pupil_personal_id, &choices, &a.text, &a.graded, &a.correct, &a.time_to_answer_ms,
                &a.occurred_at,
            ],
        )
        .await?;
    }
    let a = &rows.actuations;
    if !a.event_id.is_empty() {
        tx.execute(
            "INSERT INTO actuations (event_id, school_code, room_id, device, device_kind, command, cause, outcome, \
             detail, latency_ms, occurred_at) \
             SELECT event_id, $1, $2, device, device_kind, command, cause, outcome, detail, latency_ms, occurred_at \
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
             $10::bigint[], $11::timestamptz[]) \
             AS t(event_id, device, device_kind, command, cause, outcome, detail, latency_ms, occurred_at) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                school, room_id, &a.event_id, &a.device, &a.device_kind, &a.command, &a.cause, &a.outcome,
                &a.detail, &a.latency_ms, &a.occurred_at,
            ],
        )
        .await?;
    }
    let e = &rows.erasures;
    if !e.event_id.is_empty() {
        tx.execute(
            "INSERT INTO erasures (event_id, school_code, room_id, personal_id, what, count, reason, occurred_at) \
             SELECT event_id, $1, $2, personal_id, what, count, reason, occurred_at \
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::timestamptz[]) \
             AS t(event_id, personal_id, what, count, reason, occurred_at) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                school, room_id, &e.event_id, &e.personal_id, &e.what, &e.count, &e.reason, &e.occurred_at,
            ],
        )
        .await?;
    }
    erase_scores(tx, room, &e.personal_id).await?;
    Ok(added)
}
