//! Landing figures (run with `cargo bench -p province-hub`): events per second
//! from one room's backlog into PostgreSQL through the hub's own sync code,
//! side by side in the same run with two baselines over the same rows:
//! - a raw read of the room's SQLite outbox (what the agent can read at best);
//! - a plain binary `COPY` of those rows into a table shaped like `events`
//!   (what PostgreSQL can take at best).
//!
//! The aim is the hub within 2x of the slower of the two. A third figure puts
//! the first in proportion: a binary `COPY` of the rows the hub itself writes
//! for these events (a row in `events` and one in `attendance_marks` each,
//! five index entries against the first COPY's two).
//!
//! Each run also prints the CPU time the hub (this process), the room's agent
//! and PostgreSQL spent, so the spread shows where the time goes; on a busy
//! machine the wall-clock rates follow the sum of these.
//!
//! `PROVINCE_HUB_BENCH_EVENTS` sets the backlog (default 1 000 000) and
//! `PROVINCE_HUB_BENCH_RUNS` how many times the hub lands it (default 3), each
//! into emptied tables, so the spread of the runs shows the noise. The room is
//! the real agent binary on loopback; PostgreSQL is a server of the bench's
//! own in a temporary directory.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{Postgres, Room};
use firmware_agent::proto as agent_proto;
use firmware_agent::store::outbox::{NewEvent, StoredEvent, read_after};
use province_hub::config::{RoomKey, SyncConfig};
use province_hub::health::Board;
use province_hub::store;
use province_hub::sync::link::Backoff;
use province_hub::sync::room::{LinkContext, sync_over};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn mark(n: usize) -> NewEvent {
    NewEvent::new(
        jiff::Timestamp::now(),
        agent_proto::AttendanceMark {
            session_id: format!("2026-09-07/morning/{}/6A1", n / 40 % 5 + 1),
            lesson_id: format!("2026-09-07/morning/{}", n / 40 % 5 + 1),
            personal_id: format!("0102060{:05}", n % 100_000),
            status: agent_proto::MarkStatus::Present as i32,
            source: agent_proto::MarkSource::Face as i32,
            best_similarity: 0.83,
            ..Default::default()
        },
    )
}

/// Every row of the outbox, read straight out of SQLite in pages of 1000.
fn read_raw(room: &Room) -> (Vec<StoredEvent>, Duration) {
    let store = room.writer();
    let started = Instant::now();
    let conn = store.reader().unwrap();
    let (mut cursor, mut rows) = (0, Vec::new());
    loop {
        let page = read_after(&conn, cursor, 1_000).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        rows.extend(page);
    }
    (rows, started.elapsed())
}

fn system_time(timestamp: jiff::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(timestamp.as_millisecond() as u64)
}

/// COPYs `rows` into `table`, shaped like `events`, with each row's payload
/// or without it (as the hub stores marks); how many rows went in.
async fn copy_events(
    db: &tokio_postgres::Client,
    table: &str,
    rows: &[StoredEvent],
    identity: uuid::Uuid,
    with_payload: bool,
) -> u64 {
    let mut types = vec![
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
    ];
    let payload_column = if with_payload {
        types.push(Type::BYTEA);
        ", payload"
    } else {
        ""
    };
    let sink = db
        .copy_in(&format!(
            "COPY {table} (id, school_code, room_id, outbox_identity, seq, kind, occurred_at, recorded_at, \
             clock_synced, clock_step_back_ms{payload_column}) FROM STDIN BINARY"
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    for row in rows {
        let occurred = system_time(row.occurred_at);
        let recorded = system_time(row.recorded_at);
        let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &row.id,
            &"BENCH-01",
            &"P101",
            &identity,
            &row.seq,
            &row.kind,
            &occurred,
            &recorded,
            &row.clock_synced,
            &row.clock_step_back_ms,
        ];
        if with_payload {
            values.push(&row.payload);
        }
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap()
}

/// The rows COPYed into a table shaped like `events`, indexes included.
async fn copy_rows(
    db: &tokio_postgres::Client,
    rows: &[StoredEvent],
    identity: uuid::Uuid,
) -> Duration {
    db.batch_execute(
        "DROP TABLE IF EXISTS copy_baseline; CREATE TABLE copy_baseline (LIKE events INCLUDING ALL)",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let copied = copy_events(db, "copy_baseline", rows, identity, true).await;
    assert_eq!(copied as usize, rows.len());
    started.elapsed()
}

/// The rows the hub itself writes for these events (each mark's row in a
/// table shaped like `events`, without its payload, and in one shaped like
/// `attendance_marks`, indexes included), COPYed one table after the other:
/// what PostgreSQL can take at best of the hub's own rows.
async fn copy_hub_rows(
    db: &tokio_postgres::Client,
    rows: &[StoredEvent],
    identity: uuid::Uuid,
) -> Duration {
    use prost::Message;
    db.batch_execute(
        "DROP TABLE IF EXISTS copy_events, copy_marks; \
         CREATE TABLE copy_events (LIKE events INCLUDING ALL); \
         CREATE TABLE copy_marks (LIKE attendance_marks INCLUDING ALL)",
    )
    .await
    .unwrap();
    let marks: Vec<agent_proto::AttendanceMark> = rows
        .iter()
        .map(|row| agent_proto::AttendanceMark::decode(&row.payload[..]).unwrap())
        .collect();
    let started = Instant::now();
    copy_events(db, "copy_events", rows, identity, false).await;
    let sink = db
        .copy_in(
            "COPY copy_marks (event_id, school_code, room_id, session_id, lesson_id, personal_id, status, \
             source, best_similarity, reason, teacher_personal_id, occurred_at) FROM STDIN BINARY",
        )
        .await
        .unwrap();
    let types = [
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
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    for (row, mark) in rows.iter().zip(&marks) {
        let occurred = system_time(row.occurred_at);
        writer
            .as_mut()
            .write(&[
                &row.id,
                &"BENCH-01",
                &"P101",
                &mark.session_id,
                &mark.lesson_id,
                &mark.personal_id,
                &"present",
                &"face",
                &mark.best_similarity,
                &mark.reason,
                &mark.teacher_personal_id,
                &occurred,
            ])
            .await
            .unwrap();
    }
    let copied = writer.finish().await.unwrap();
    assert_eq!(copied as usize, rows.len());
    started.elapsed()
}

/// The hub's own per-room sync from cursor 0 until every event is stored.
async fn land(postgres: &Postgres, room: &Room, agent: u32, last_seq: i64) -> Duration {
    let pool = store::pool(&postgres.url(), Duration::from_secs(10), 2).unwrap();
    let db = pool.get().await.unwrap();
    db.batch_execute(
        "TRUNCATE attendance_marks, answers, actuations, erasures, skipped_events, events, outboxes, rooms",
    )
    .await
    .unwrap();
    let key = RoomKey {
        school_code: room.school_code.clone(),
        room_id: room.room_id.clone(),
    };
    let board = Board::new([(key.clone(), "")]);
    let sync = SyncConfig::default();
    let shutdown = CancellationToken::new();
    let cpu_before = CpuSplit::now(&db, agent).await;
    let started = Instant::now();
    let mut client = province_hub::proto::sync_service_client::SyncServiceClient::connect(format!(
        "http://{}",
        room.grpc
    ))
    .await
    .unwrap()
    .max_decoding_message_size(*sync.max_message_bytes.get_ref());
    let watcher = {
        let (board, shutdown) = (board.clone(), shutdown.clone());
        tokio::spawn(async move {
            while board.snapshot()[0].cursor < last_seq {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            shutdown.cancel();
        })
    };
    let context = LinkContext {
        room: &key,
        sync: &sync,
        board: &board,
        shutdown: &shutdown,
        link: province_hub::health::PULL,
        lan_ca: None,
        content: None,
    };
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    sync_over(&mut client, &pool, &context, &mut backoff)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let cpu = CpuSplit::now(&db, agent).await.since(cpu_before);
    watcher.await.unwrap();
    let stored: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, last_seq, "every event landed once");
    println!("hub run: {:.2} s; CPU: {cpu}", elapsed.as_secs_f64());
    elapsed
}

/// CPU time used so far by process `pid` (user and system, every thread).
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO; // ended meanwhile
    };
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// CPU time used by the hub (this process), the room's agent, and PostgreSQL
/// (every process of its server).
#[derive(Debug, Clone, Copy, Default)]
struct CpuSplit {
    hub: Duration,
    agent: Duration,
    postgres: Duration,
}

impl CpuSplit {
    async fn now(db: &tokio_postgres::Client, agent: u32) -> CpuSplit {
        let server: Vec<i32> = db
            .query("SELECT pid FROM pg_stat_activity", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        CpuSplit {
            hub: cpu_time(std::process::id()),
            agent: cpu_time(agent),
            postgres: server.into_iter().map(|pid| cpu_time(pid as u32)).sum(),
        }
    }

    fn since(self, before: CpuSplit) -> CpuSplit {
        CpuSplit {
            hub: self.hub - before.hub,
            agent: self.agent - before.agent,
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hub {:.1} s, agent {:.1} s, PostgreSQL {:.1} s",
            self.hub.as_secs_f64(),
            self.agent.as_secs_f64(),
            self.postgres.as_secs_f64()
        )
    }
}

fn rate(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64()
}

fn main() {
    let count = env_count("PROVINCE_HUB_BENCH_EVENTS", 1_000_000);
    let runs = env_count("PROVINCE_HUB_BENCH_RUNS", 3).max(1);
    let postgres = Postgres::start();
    let room = Room::new("BENCH-01", "P101");
    let filling = Instant::now();
    {
        let store = room.writer();
        for start in (0..count).step_by(10_000) {
            let end = (start + 10_000).min(count);
            store
                .append_batch((start..end).map(mark).collect())
                .unwrap();
        }
    }
    println!(
        "backlog: {count} events committed in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let agent = room.start();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    // The hub's schema, and an identity for the COPY rows.
    let db = runtime.block_on(async {
        let mut db = store::connect(&postgres.url(), Duration::from_secs(10))
            .await
            .unwrap();
        store::migrate(&mut db).await.unwrap();
        db
    });

    read_raw(&room); // warm the page cache the same way for everyone
    let (rows, raw_time) = read_raw(&room);
    assert_eq!(rows.len(), count);
    let last_seq = rows.last().unwrap().seq;
    let cpu_before = runtime.block_on(CpuSplit::now(&db, agent.pid()));
    let copy_time = runtime.block_on(copy_rows(&db, &rows, uuid::Uuid::new_v4()));
    let cpu = runtime
        .block_on(CpuSplit::now(&db, agent.pid()))
        .since(cpu_before);
    println!("COPY: {:.2} s; CPU: {cpu}", copy_time.as_secs_f64());
    let cpu_before = runtime.block_on(CpuSplit::now(&db, agent.pid()));
    let hub_rows_time = runtime.block_on(copy_hub_rows(&db, &rows, uuid::Uuid::new_v4()));
    let cpu = runtime
        .block_on(CpuSplit::now(&db, agent.pid()))
        .since(cpu_before);
    println!(
        "COPY of the hub's rows: {:.2} s; CPU: {cpu}",
        hub_rows_time.as_secs_f64()
    );
    drop(rows);
    let hub_times: Vec<Duration> = (0..runs)
        .map(|_| runtime.block_on(land(&postgres, &room, agent.pid(), last_seq)))
        .collect();

    let raw_rate = rate(count, raw_time);
    let copy_rate = rate(count, copy_time);
    let hub_rows_rate = rate(count, hub_rows_time);
    let hub_rates: Vec<f64> = hub_times.iter().map(|time| rate(count, *time)).collect();
    let median = {
        let mut sorted = hub_rates.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        }
    };
    let slower = raw_rate.min(copy_rate);
    println!(
        "raw SQLite read of the outbox (baseline): {raw_rate:>10.0} events/s ({:.2} s)",
        raw_time.as_secs_f64()
    );
    println!(
        "binary COPY into PostgreSQL (baseline):   {copy_rate:>10.0} events/s ({:.2} s)",
        copy_time.as_secs_f64()
    );
    println!(
        "binary COPY of the hub's own rows (events and attendance_marks): {hub_rows_rate:>10.0} events/s ({:.2} s)",
        hub_rows_time.as_secs_f64()
    );
    println!(
        "hub: Pull, land in one transaction a batch, Ack: median {median:>10.0} events/s over {runs} run(s): {}",
        hub_rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "the slower baseline is {:.2}x the hub's median (aim within 2x): {}",
        slower / median,
        if slower / median <= 2.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "the COPY of the hub's own rows is {:.2}x the hub's median",
        hub_rows_rate / median
    );
}
