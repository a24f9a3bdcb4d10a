//! The roll call as the daemon runs it: a source thread, inference workers,
//! and a thin async loop that feeds the [`RollCall`] state machine and writes
//! what it decides to the store.
//!
//! # Design
//! - Threads: one reads the source (blocking, paced) and decodes each frame,
//!   so the next frame is decoded while the workers run the models on the
//!   last; `attendance.threads` workers each own a [`Pipeline`] (sessions
//!   built once) and share one [`Recogniser`], which turns a frame into each
//!   face's track and verdict; the async loop only decides and hands records
//!   to the store through [`crate::store::Store::blocking`]. No inference runs on the
//!   runtime's threads.
//! - Frames are offered to the workers without waiting: when all are busy the
//!   frame is dropped, so a slow machine sees fewer frames, never older ones.
//!   The source thread looks for room before it decodes, so a frame it drops
//!   costs no decoding, however fast the camera.
//! - /metrics counts frames by outcome (`attendance_frames_total`: analysed,
//!   dropped while the workers were busy, unreadable) and faces by how their
//!   verdict was reached (`attendance_faces_total`: through the models, or the
//!   standing match of a recognised track), so whether a room's machine keeps
//!   up with its camera can be read off it.
//! - A source that fails (a camera unplugged, a stream that stops) is reopened
//!   with back-off from 1 to 30 seconds; /healthz shows `attendance_source` as
//!   degraded meanwhile, and the roll call and the rest of the agent run on.
//! - A missing or altered model stops attendance alone: /healthz shows
//!   `attendance` as failed with the model error and its fix.
//! - A roll call opens at the start of each period of the timetable (see
//!   [`super::lessons`]), or once when attendance starts in a room without a
//!   timetable, for the class in `attendance.class`; its window closes after
//!   `attendance.window_minutes`. Between roll calls, frames are dropped.
//! - The class and its templates follow the database live ([`super::people`]):
//!   enrollments, erasures and roster changes reach the running roll call
//!   without a restart, and a class without pupils waits for its roster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::RgbImage;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::AttendanceConfig;
use super::lessons::{self, Next};
use super::models::{self, ModelSet};
use super::people::{self, Class};
use super::pipeline::{self, Pipeline};
use super::recognise::{Checks, Faces, Recogniser, Verdict};
use super::rollcall::{RollCall, Rules, Sighting};
use super::source::{self, Frame};
use crate::agent::Agent;
use crate::health::{Health, State};
use crate::proto::event::Payload;
use crate::schedule::timetable::Timetable;

const SUBSYSTEM: &str = "attendance";
const SOURCE_SUBSYSTEM: &str = "attendance_source";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs attendance until shutdown. Failures are reported in health, never propagated.
pub async fn run(agent: Arc<Agent>) {
    let config = agent.config().attendance.clone();
    if !config.enabled {
        agent.health.set(SUBSYSTEM, State::Disabled, "attendance.enabled = false");
        return;
    }
    agent.health.set(SUBSYSTEM, State::Starting, "loading the face models");
    let (models_dir, library) = (config.models_dir.clone(), config.onnxruntime_library.clone());
    let models = match tokio::task::spawn_blocking(move || ModelSet::load(&models_dir, &library)).await {
        Ok(Ok(models)) => models,
        Ok(Err(err)) => {
            // Health first: whoever reads the log line must find the state it reports.
            agent.health.set(SUBSYSTEM, State::Failed, format!("attendance stopped: {err}"));
            tracing::error!("attendance stopped: {err}");
            return;
        }
        Err(err) => {
            agent.health.set(SUBSYSTEM, State::Failed, format!("attendance stopped: {err}"));
            return;
        }
    };
    let mut class = match Class::read(agent.store.clone(), config.class.clone(), models::embedder_sha256()).await {
        Ok(class) => class,
        Err(err) => {
            agent.health.set(SUBSYSTEM, State::Failed, format!("cannot read the class from the database: {err}"));
            return;
        }
    };
    let recogniser = Arc::new(Recogniser::new(class.gallery(), Checks::of(&config)));

    let (results_tx, mut results) = mpsc::channel::<Faces>(8);
    let jobs = match start_workers(&config, &models, &recogniser, results_tx) {
        Ok(jobs) => jobs,
        Err(err) => {
            agent.health.set(SUBSYSTEM, State::Failed, format!("attendance stopped: {err}"));
            tracing::error!("attendance stopped: {err}");
            return;
        }
    };
    start_source(&config, jobs, agent.health.clone(), agent.shutdown.clone());

    let rules = Rules {
        confirm_frames: config.confirm_frames,
        late_after: SignedDuration::from_secs_f64(config.late_after_minutes * 60.0),
        window: SignedDuration::from_secs_f64(config.window_minutes * 60.0),
    };
    let mut config_changes = agent.config.subscribe();
    let mut timetable = periods_of(&config_changes.borrow_and_update());
    let zone = agent.config().room.timezone.clone();
    let mut follow = tokio::time::interval(people::FOLLOW_EVERY);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut roll: Option<RollCall> = None;
    let mut last_lesson: Option<String> = None;
    let mut corrections = agent.attendance.take_inbox();
    // The camera also tells when the room is empty: no face for a while switches
    // the lights off (as automation, so a lesson or the teacher still wins).
    let empty_room_after = (config.empty_room_minutes > 0.0).then(|| SignedDuration::from_secs_f64(config.empty_room_minutes * 60.0));
    let mut last_face_seen = agent.clock.now();
    let mut reported_empty = false;
    loop {
        let now = agent.clock.now();
        // Open the next roll call when it is due: each period's, or one now without a timetable.
        let due = match (&timetable, roll.as_ref().is_some_and(|r| !r.is_closed())) {
            (_, true) => Next::Never,
            (_, false) if !class.has_pupils() => {
                let detail = format!("class `{}` has no pupils: import the roster, or fix attendance.class; the roll call starts once it has some", class.name());
                agent.health.set(SUBSYSTEM, State::Degraded, detail);
                Next::Never
            }
            (Some(timetable), false) => lessons::next(timetable, now, rules.window, last_lesson.as_deref()),
            (None, false) if last_lesson.is_none() => Next::Open { lesson_id: lesson_id(now, &zone), start: now },
            (None, false) => Next::Never,
        };
        let mut open_at = None;
        match due {
            Next::Open { lesson_id, start } => {
                let session_id = uuid::Uuid::now_v7().to_string();
                // Each lesson's pupils are checked afresh: who sat where in the last one proves nothing.
                recogniser.forget();
                let (pupils, enrolled) = (class.pupils(), class.enrolled());
                let (pupil_count, enrolled_count) = (pupils.len(), enrolled.len());
                let (opened_roll, opened) = RollCall::open(session_id, lesson_id.clone(), config.class.clone(), pupils, enrolled, rules, start);
                record(&agent, now, vec![opened]).await;
                tracing::info!(session = opened_roll.session_id(), lesson = %lesson_id, class = %config.class, pupils = pupil_count, enrolled = enrolled_count, "roll call opened");
                agent.health.set(SUBSYSTEM, State::Ok, format!("roll call of {} open; {enrolled_count} of {pupil_count} pupils enrolled", config.class));
                roll = Some(opened_roll);
                last_lesson = Some(lesson_id);
            }
            Next::Wait(at) => {
                agent.health.set(SUBSYSTEM, State::Ok, format!("waiting for the next period ({at})"));
                open_at = Some(at);
            }
            Next::Never => {}
        }
        let until = |instant: Timestamp| Duration::try_from(instant.duration_since(agent.clock.now())).unwrap_or(Duration::ZERO);
        let close_wait = roll.as_ref().filter(|r| !r.is_closed()).map(|r| until(r.closes_at()));
        let open_wait = open_at.map(until);
        tokio::select! {
            _ = agent.shutdown.cancelled() => break,
            _ = tokio::time::sleep(close_wait.unwrap_or_default()), if close_wait.is_some() => {
                class.follow(&recogniser, roll.as_mut()).await;
                let now = agent.clock.now();
                if let Some(roll) = roll.as_mut() {
                    let out = roll.tick(now);
                    log_and_record(&agent, now, out).await;
                }
            }
            _ = tokio::time::sleep(open_wait.unwrap_or_default()), if open_wait.is_some() => {}
            _ = follow.tick() => {
                class.follow(&recogniser, roll.as_mut()).await;
            }
            Ok(()) = config_changes.changed() => timetable = periods_of(&config_changes.borrow_and_update()),
            Some(correction) = async { corrections.as_mut()?.recv().await } => {
                let now = agent.clock.now();
                let Some(open) = roll.as_mut() else {
                    let _ = correction.reply.send(Err("Chưa có buổi điểm danh nào (no roll call yet)".to_owned()));
                    continue;
                };
                match open.correct(&correction.personal_id, correction.status, &correction.reason, "") {
                    Ok(mark) => {
                        log_and_record(&agent, now, vec![mark]).await;
                        let _ = correction.reply.send(Ok(()));
                    }
                    Err(err) => { let _ = correction.reply.send(Err(err.to_string())); }
                }
            }
            frame = results.recv() => {
                let Some(faces) = frame else { break };
                let now = agent.clock.now();
                if !faces.is_empty() {
                    last_face_seen = now;
                    reported_empty = false;
                } else if let Some(after) = empty_room_after.filter(|after| !reported_empty && now.duration_since(last_face_seen) >= *after) {
                    reported_empty = true;
                    tracing::info!("no face seen for {}: the room is empty", crate::clock::text::human(after));
                    agent.actuators.room_occupancy(0).await;
                }
                let Some(open) = roll.as_mut().filter(|r| !r.is_closed()) else { continue };
                let sightings: Vec<Sighting> = faces.iter().filter_map(|(track, verdict)| verdict.sighting(*track)).collect();
                if sightings.iter().any(|s| matches!(s, Sighting::Pupil { .. })) {
                    class.follow(&recogniser, Some(&mut *open)).await;
                }
                let out = open.observe(now, &sightings);
                log_and_record(&agent, now, out).await;
            }
        }
    }
}

/// The timetable roll calls follow: `None` in a room without periods, where one roll call opens at start.
fn periods_of(config: &crate::config::Config) -> Option<Timetable> {
    Timetable::new(config.schedule.clone(), &config.room.timezone).ok().filter(|t| !t.config.shifts.is_empty())
}

/// Records the roll call's decisions, then logs them (so a logged mark is a stored one).
async fn log_and_record(agent: &Arc<Agent>, now: Timestamp, out: Vec<Payload>) {
    record(agent, now, out.clone()).await;
    for payload in &out {
        match payload {
            Payload::AttendanceMark(mark) => {
                tracing::info!(personal_id = %mark.personal_id, status = ?mark.status(), source = ?mark.source(), similarity = mark.best_similarity, "attendance mark")
            }
            Payload::AttendanceSession(session) => tracing::info!(
                session = %session.session_id, present = session.present, late = session.late, absent = session.absent,
                unknown_faces = session.unknown_faces, photos_refused = session.photos_refused, "roll call closed"
            ),
            _ => {}
        }
    }
}

/// Keeps the roll call's decisions through the store's recorder: committed, or
/// queued while the store refuses (a lesson makes at most one mark a pupil, so
/// its records never need refusing).
async fn record(agent: &Arc<Agent>, now: Timestamp, out: Vec<Payload>) {
    use crate::store::recorder::{Kept, Write};
    if out.is_empty() {
        return;
    }
    match agent.store.recorder().keep(Write::RollCall { occurred_at: now, payloads: out }).await {
        Kept::Committed => {}
        Kept::Queued(refusal) => tracing::warn!(%refusal, "the roll call's records are queued"),
        Kept::Refused(refusal) => tracing::error!(%refusal, "the roll call's records were not kept"),
    }
}

/// "YYYY-MM-DD/<shift>/<HHMM>" in the room's time zone: the date, the shift of
/// the day, and the time the roll call opened.
fn lesson_id(now: Timestamp, timezone: &str) -> String {
    let local = now.to_zoned(jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC));
    let shift = if local.hour() < 12 { "morning" } else { "afternoon" };
    format!("{}/{shift}/{:02}{:02}", local.date(), local.hour(), local.minute())
}

/// Starts the inference workers; returns where to offer them frames.
fn start_workers(
    config: &AttendanceConfig,
    models: &ModelSet,
    recogniser: &Arc<Recogniser>,
    results: mpsc::Sender<Faces>,
) -> Result<mpsc::Sender<RgbImage>, models::ModelError> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<RgbImage>(config.threads);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    for index in 0..config.threads {
        let mut pipeline = Pipeline::new(models)?;
        let (jobs, results, recogniser) = (jobs_rx.clone(), results.clone(), recogniser.clone());
        let spawned = std::thread::Builder::new().name(format!("inference-{index}")).spawn(move || {
            loop {
                let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                let Some(image) = job else { return };
                match recogniser.analyse(&mut pipeline, &image) {
                    Ok(faces) => {
                        count_analysed(&faces);
                        if results.blocking_send(faces).is_err() {
                            return;
                        }
                    }
                    Err(err) => tracing::warn!("frame skipped: {err}"),
                }
            }
        });
        if let Err(err) = spawned {
            tracing::error!(%err, "cannot start an inference worker");
        }
    }
    Ok(jobs_tx)
}

fn count_frame(outcome: &'static str) {
    metrics::counter!("attendance_frames_total", "outcome" => outcome).increment(1);
}

/// Counts a frame the models have been through, and how each of its faces' verdicts was reached.
fn count_analysed(faces: &Faces) {
    count_frame("analysed");
    let standing = faces.iter().filter(|(_, verdict)| matches!(verdict, Verdict::Recognised(_))).count();
    metrics::counter!("attendance_faces_total", "check" => "standing").increment(standing as u64);
    metrics::counter!("attendance_faces_total", "check" => "models").increment((faces.len() - standing) as u64);
}

/// Reads the source on its own thread, reopening it with back-off when it fails.
fn start_source(config: &AttendanceConfig, jobs: mpsc::Sender<RgbImage>, health: Health, shutdown: CancellationToken) {
    let source_config = config.source.clone();
    let spawned = std::thread::Builder::new().name("frame-source".to_owned()).spawn(move || {
        let mut backoff = Duration::from_secs(1);
        while !shutdown.is_cancelled() {
            let mut source = match source::open(&source_config) {
                Ok(source) => source,
                Err(err) => {
                    let detail = format!("{err}; retrying in {} s", backoff.as_secs());
                    health.set(SOURCE_SUBSYSTEM, State::Degraded, detail);
                    wait_or_stop(&shutdown, backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            health.set(SOURCE_SUBSYSTEM, State::Ok, format!("{:?} source delivering frames", source_config.kind));
            backoff = Duration::from_secs(1);
            while !shutdown.is_cancelled() {
                match source.next_frame() {
                    Ok(Some(_)) if jobs.capacity() == 0 => count_frame("dropped"),
                    Ok(Some(frame)) => {
                        let image = match frame {
                            Frame::Rgb(image) => image,
                            Frame::Encoded(bytes) => match pipeline::decode(&bytes) {
                                Ok(image) => image,
                                Err(err) => {
                                    count_frame("unreadable");
                                    tracing::warn!("frame skipped: {err}");
                                    continue;
                                }
                            },
                        };
                        match jobs.try_send(image) {
                            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    Ok(None) => {
                        health.set(SOURCE_SUBSYSTEM, State::Ok, "the recording has been played to its end");
                        return;
                    }
                    Err(err) => {
                        health.set(SOURCE_SUBSYSTEM, State::Degraded, format!("{err}; reopening"));
                        break;
                    }
                }
            }
        }
    });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the frame source");
    }
}

/// Sleeps `duration` on the source thread, waking early on shutdown.
fn wait_or_stop(shutdown: &CancellationToken, duration: Duration) {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < duration && !shutdown.is_cancelled() {
        std::thread::sleep(step);
        waited += step;
    }
}
