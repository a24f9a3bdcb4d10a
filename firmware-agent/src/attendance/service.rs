//! Attendance as the daemon runs it: a source thread, inference workers, and
//! a short async loop that drives the [`Attendance`] state machine, doing
//! what it decides (records, health, the lights) and telling the source
//! which frames it wants.
//!
//! # Design
//! - Threads: one reads the source (blocking, paced) and decodes each frame
//!   once the models are done with the last (a 4K frame decoded is 25 MB,
//!   and one waiting would be older when its turn came); one inference
//!   thread takes each frame through the [`Recogniser`], which
//!   turns it into each face's track and verdict, with a crew of
//!   `attendance.threads` [`Pipeline`]s (sessions built once) sharing out
//!   the frame's tiles and faces, so one frame uses every core; the async loop only drives and hands records
//!   to the store through [`crate::store::Store::blocking`]. No inference runs on the
//!   runtime's threads.
//! - The loop holds no policy: when roll calls open and close, what a frame
//!   or a correction changes, and when the room is empty are the state
//!   machine's ([`super::state`]). The loop sleeps on the agent's clock until
//!   the machine's deadline, a frame's faces, a correction, a new config, or
//!   the next look at the room's people ([`super::people`]), which also
//!   catches a wall clock stepped by NTP within [`FOLLOW_EVERY`].
//! - The source is told which frames are wanted ([`FramesWanted`]): every
//!   frame through every model during a roll call; between roll calls one
//!   frame now and then through the detector alone, for the empty-room rule;
//!   none at all, the source closed, when that rule is off. So the models
//!   no longer run all day for nothing. A file source keeps its own pace in
//!   real time, as a camera would; the rest follows the agent's clock. A
//!   recording played once starts again when it is opened again.
//! - Frames are offered to the inference thread without waiting: when it is
//!   busy the frame is dropped, so a slow machine sees fewer frames, never
//!   older ones. The source thread looks for room, and whether the frame is wanted,
//!   before it decodes, so a frame it drops costs no decoding.
//! - /metrics counts frames by outcome (`attendance_frames_total`: analysed
//!   by every model, detected by the detector alone, dropped while the workers
//!   were busy, unreadable) and faces by how their verdict was reached
//!   (`attendance_faces_total`: through the models, or the standing match of
//!   a recognised track), so whether a room's machine keeps up with its
//!   camera can be read off it.
//! - A source that fails (a camera unplugged, a stream that stops) is reopened
//!   with back-off from 1 to 30 seconds; /healthz shows `attendance_source` as
//!   degraded meanwhile, and the roll call and the rest of the agent run on.
//! - A missing or altered model stops attendance alone: /healthz shows
//!   `attendance` as failed with the model error and its fix.
//! - The class and its templates follow the database live ([`super::people`]):
//!   enrollments, erasures and roster changes reach the running roll call
//!   without a restart, and a class without pupils waits for its roster.

use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{AttendanceConfig, SourceConfig, SourceKind};
use super::desk::Correction;
use super::models::{self, ModelSet};
use super::onvif::CameraFrameRate;
use super::people::{Class, FOLLOW_EVERY};
use super::pipeline::{self, Pipeline};
use super::recognise::{Checks, Faces, Recogniser, Verdict};
use super::rollcall::Sighting;
use super::source::{self, Frame, FrameSource, Need};
use super::state::{Action, Attendance, FrameSeen, FramesWanted};
use crate::agent::Agent;
use crate::clock::{Clock, Monotonic};
use crate::health::{Health, State};
use crate::proto::attendance_session::Phase;
use crate::proto::event::Payload;
use crate::schedule::timetable::Timetable;

const SUBSYSTEM: &str = "attendance";
const SOURCE_SUBSYSTEM: &str = "attendance_source";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the workers are to make of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Analysis {
    /// The detector alone: how many faces?
    Detect,
    /// Every model: whose faces?
    Recognise,
}

/// A decoded frame on its way to a worker.
struct Job {
    image: RgbImage,
    analysis: Analysis,
}

/// Runs attendance until shutdown. Failures are reported in health, never propagated.
pub async fn run(agent: Arc<Agent>) {
    let config = agent.config().attendance.clone();
    if !config.enabled {
        agent
            .health
            .set(SUBSYSTEM, State::Disabled, "attendance.enabled = false");
        return;
    }
    agent
        .health
        .set(SUBSYSTEM, State::Starting, "loading the face models");
    let (models_dir, library) = (
        config.models_dir.clone(),
        config.onnxruntime_library.clone(),
    );
    let models =
        match tokio::task::spawn_blocking(move || ModelSet::load(&models_dir, &library)).await {
            Ok(Ok(models)) => models,
            Ok(Err(err)) => {
                // Health first: whoever reads the log line must find the state it reports.
                agent.health.set(
                    SUBSYSTEM,
                    State::Failed,
                    format!("attendance stopped: {err}"),
                );
                tracing::error!("attendance stopped: {err}");
                return;
            }
            Err(err) => {
                agent.health.set(
                    SUBSYSTEM,
                    State::Failed,
                    format!("attendance stopped: {err}"),
                );
                return;
            }
        };
    let class = match Class::read(
        agent.store.clone(),
        config.class.clone(),
        models::embedder_sha256(),
    )
    .await
    {
        Ok(class) => class,
        Err(err) => {
            agent.health.set(
                SUBSYSTEM,
                State::Failed,
                format!("cannot read the class from the database: {err}"),
            );
            return;
        }
    };
    let recogniser = Arc::new(Recogniser::new(class.gallery(), Checks::of(&config)));

    let (results_tx, results) = mpsc::channel::<FrameSeen>(8);
    let jobs = match start_workers(&config, &models, &recogniser, results_tx) {
        Ok(jobs) => jobs,
        Err(err) => {
            agent.health.set(
                SUBSYSTEM,
                State::Failed,
                format!("attendance stopped: {err}"),
            );
            tracing::error!("attendance stopped: {err}");
            return;
        }
    };

    let mut config_changes = agent.config.subscribe();
    let (timetable, zone) = {
        let config = config_changes.borrow_and_update();
        (periods_of(&config), config.room.timezone.clone())
    };
    let mut attendance = Attendance::new(&config, zone, timetable, agent.clock.now());
    attendance.follow_class(
        agent.clock.now(),
        class.pupils(),
        class.enrolled(),
        class.face_marks(),
    );
    let (wanted, wanted_by_source) = watch::channel(attendance.frames_wanted());
    start_source(
        config.source.clone(),
        jobs,
        wanted_by_source,
        agent.clock.clone(),
        agent.health.clone(),
        agent.shutdown.clone(),
    );
    let inputs = Inputs {
        results,
        config_changes,
        corrections: agent.attendance.take_inbox(),
    };
    drive(&agent, attendance, class, &recogniser, wanted, inputs).await;
}

/// What the loop is handed besides the time.
struct Inputs {
    /// What the workers made of each frame.
    results: mpsc::Receiver<FrameSeen>,
    config_changes: watch::Receiver<Arc<crate::config::Config>>,
    /// The teacher's corrections; `None` if another took them.
    corrections: Option<mpsc::Receiver<Correction>>,
}

/// Drives `attendance` until shutdown: hands it what happens, does what it
/// decides, tells the source which frames it wants, and sleeps in between.
async fn drive(
    agent: &Arc<Agent>,
    mut attendance: Attendance,
    mut class: Class,
    recogniser: &Recogniser,
    wanted: watch::Sender<FramesWanted>,
    inputs: Inputs,
) {
    let Inputs {
        mut results,
        mut config_changes,
        mut corrections,
    } = inputs;
    let clock = agent.clock.clone();
    let mut next_follow = clock.deadline_in(FOLLOW_EVERY);
    loop {
        perform(agent, recogniser, &mut attendance).await;
        wanted.send_if_modified(|wanted| {
            std::mem::replace(wanted, attendance.frames_wanted()) != *wanted
        });
        let deadline = attendance
            .poll_timeout()
            .map(|at| monotonic_at(clock.as_ref(), at));
        tokio::select! {
            _ = agent.shutdown.cancelled() => break,
            _ = clock.sleep_until(deadline.unwrap_or_default()), if deadline.is_some() => attendance.handle_timeout(clock.now()),
            _ = clock.sleep_until(next_follow) => {
                follow_class(&mut class, recogniser, &mut attendance, clock.now()).await;
                attendance.handle_timeout(clock.now());
                next_follow = clock.deadline_in(FOLLOW_EVERY);
            }
            Ok(()) = config_changes.changed() => {
                let timetable = periods_of(&config_changes.borrow_and_update());
                attendance.follow_timetable(clock.now(), timetable);
            }
            Some(correction) = async { corrections.as_mut()?.recv().await } => {
                let verdict = attendance.correct(clock.now(), &correction.personal_id, correction.status, &correction.reason);
                // The correction's record is kept before the teacher hears it was taken.
                perform(agent, recogniser, &mut attendance).await;
                let _ = correction.reply.send(verdict);
            }
            frame = results.recv() => {
                let Some(seen) = frame else { break };
                if seen.sightings.iter().any(|sighting| matches!(sighting, Sighting::Pupil { .. })) {
                    follow_class(&mut class, recogniser, &mut attendance, clock.now()).await;
                }
                attendance.handle_frame(clock.now(), &seen);
            }
        }
    }
}

/// Does what the state machine decided, in order.
async fn perform(agent: &Arc<Agent>, recogniser: &Recogniser, attendance: &mut Attendance) {
    while let Some(action) = attendance.poll_action() {
        match action {
            Action::Record { at, payloads } => log_and_record(agent, at, payloads).await,
            Action::Health(state, detail) => agent.health.set(SUBSYSTEM, state, detail),
            Action::CheckFacesAfresh => recogniser.forget(),
            Action::RoomEmpty(after) => {
                tracing::info!(
                    "no face seen for {}: the room is empty",
                    crate::clock::text::human(after)
                );
                agent.actuators.room_occupancy(0).await;
            }
        }
    }
}

/// Reads the class again if the room's people changed, and has the
/// recogniser and the open roll call follow it.
async fn follow_class(
    class: &mut Class,
    recogniser: &Recogniser,
    attendance: &mut Attendance,
    now: Timestamp,
) {
    if class.follow(attendance.open_roll_call()).await {
        recogniser.replace_gallery(class.gallery());
        attendance.follow_class(now, class.pupils(), class.enrolled(), class.face_marks());
    }
}

/// The point on `clock`'s monotonic line when its wall clock will read `at`
/// (now, if it already has).
fn monotonic_at(clock: &dyn Clock, at: Timestamp) -> Monotonic {
    clock.deadline_in(Duration::try_from(at.duration_since(clock.now())).unwrap_or(Duration::ZERO))
}

/// The timetable roll calls follow: `None` in a room without periods, where one roll call opens at start.
fn periods_of(config: &crate::config::Config) -> Option<Timetable> {
    Timetable::new(config.schedule.clone(), &config.room.timezone)
        .ok()
        .filter(|t| !t.config.shifts.is_empty())
}

/// Records the roll call's decisions, then logs them (so a logged mark is a stored one).
async fn log_and_record(agent: &Arc<Agent>, at: Timestamp, out: Vec<Payload>) {
    record(agent, at, out.clone()).await;
    for payload in &out {
        match payload {
            Payload::AttendanceMark(mark) => {
                tracing::info!(personal_id = %mark.personal_id, status = ?mark.status(), source = ?mark.source(), similarity = mark.best_similarity, "attendance mark")
            }
            Payload::AttendanceSession(summary) if summary.phase() == Phase::Opened => {
                tracing::info!(
                    roll_call = %summary.session_id, lesson = %summary.lesson_id, class = %summary.class_name, enrolled = summary.enrolled, "roll call opened"
                )
            }
            Payload::AttendanceSession(summary) => tracing::info!(
                roll_call = %summary.session_id, present = summary.present, late = summary.late, absent = summary.absent,
                unknown_faces = summary.unknown_faces, photos_refused = summary.photos_refused, "roll call closed"
            ),
            Payload::UnknownFaces(unknown) => {
                tracing::info!(roll_call = %unknown.session_id, count = unknown.count, "unknown faces counted")
            }
            _ => {}
        }
    }
}

/// Keeps the roll call's decisions through the store's recorder: committed, or
/// queued while the store refuses (a lesson makes at most one mark a pupil, so
/// its records never need refusing).
async fn record(agent: &Arc<Agent>, at: Timestamp, out: Vec<Payload>) {
    use crate::store::recorder::{Kept, Write};
    match agent
        .store
        .recorder()
        .keep(Write::RollCall {
            occurred_at: at,
            payloads: out,
        })
        .await
    {
        Kept::Committed => {}
        Kept::Queued(refusal) => tracing::warn!(%refusal, "the roll call's records are queued"),
        Kept::Refused(refusal) => {
            tracing::error!(%refusal, "the roll call's records were not kept")
        }
    }
}

/// Starts the inference thread with its crew of `attendance.threads`
/// pipelines, which share out each frame; returns where to offer it frames.
fn start_workers(
    config: &AttendanceConfig,
    models: &ModelSet,
    recogniser: &Arc<Recogniser>,
    results: mpsc::Sender<FrameSeen>,
) -> Result<mpsc::Sender<Job>, models::ModelError> {
    let mut crew = (0..config.threads.max(1))
        .map(|_| {
            let mut pipeline = Pipeline::new(models)?;
            pipeline.set_smallest_face(config.smallest_face_pixels);
            Ok(pipeline)
        })
        .collect::<Result<Vec<_>, models::ModelError>>()?;
    let (jobs_tx, mut jobs) = mpsc::channel::<Job>(1);
    let queue = jobs_tx.downgrade();
    let recogniser = recogniser.clone();
    let spawned = std::thread::Builder::new()
        .name("inference".to_owned())
        .spawn(move || {
            while let Some(Job { image, analysis }) = jobs.blocking_recv() {
                // The queue's one place is held while the crew works on the
                // frame, so the source drops the frames meanwhile undecoded:
                // no decoded frame waits, growing older and taking memory.
                let _working = queue
                    .upgrade()
                    .and_then(|jobs| jobs.try_reserve_owned().ok());
                let seen = match analysis {
                    Analysis::Detect => recogniser.faces_in_view(&mut crew, &image).map(|faces| {
                        count_frame("detected");
                        FrameSeen {
                            faces,
                            sightings: Vec::new(),
                        }
                    }),
                    Analysis::Recognise => recogniser.analyse(&mut crew, &image).map(|faces| {
                        count_analysed(&faces);
                        let sightings = faces
                            .iter()
                            .filter_map(|(track, verdict)| verdict.sighting(*track))
                            .collect();
                        FrameSeen {
                            faces: faces.len(),
                            sightings,
                        }
                    }),
                };
                match seen {
                    Ok(seen) => {
                        if results.blocking_send(seen).is_err() {
                            return;
                        }
                    }
                    Err(err) => tracing::warn!("frame skipped: {err}"),
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the inference thread");
    }
    Ok(jobs_tx)
}

fn count_frame(outcome: &'static str) {
    metrics::counter!("attendance_frames_total", "outcome" => outcome).increment(1);
}

/// Counts a frame the models have been through, and how each of its faces' verdicts was reached.
fn count_analysed(faces: &Faces) {
    count_frame("analysed");
    let standing = faces
        .iter()
        .filter(|(_, verdict)| matches!(verdict, Verdict::Recognised(_)))
        .count();
    metrics::counter!("attendance_faces_total", "check" => "standing").increment(standing as u64);
    metrics::counter!("attendance_faces_total", "check" => "models")
        .increment((faces.len() - standing) as u64);
}

/// Reads the source on its own thread while frames are `wanted`, reopening it
/// with back-off when it fails and closing it while none are; ends when the
/// loop that wants frames has gone, or at shutdown.
fn start_source(
    config: SourceConfig,
    jobs: mpsc::Sender<Job>,
    mut wanted: watch::Receiver<FramesWanted>,
    clock: Arc<dyn Clock>,
    health: Health,
    shutdown: CancellationToken,
) {
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name("frame-source".to_owned()).spawn(move || {
        let mut backoff = Duration::from_secs(1);
        let mut source: Option<Box<dyn FrameSource>> = None;
        let mut last_detected: Option<Monotonic> = None;
        // When the source began failing, kept across retries until it delivers again.
        let mut failing_since: Option<Timestamp> = None;
        // An RTSP camera is asked to lower its own frame rate each time its stream opens.
        let mut camera_frame_rate = CameraFrameRate::new(config.onvif_frame_rate);
        while !shutdown.is_cancelled() {
            let frames_wanted = *wanted.borrow_and_update();
            let analysis = match frames_wanted {
                FramesWanted::Nothing => {
                    if source.take().is_some() {
                        health.set(SOURCE_SUBSYSTEM, State::Ok, "closed until frames are wanted: no roll call open, empty-room rule off");
                        tracing::info!("frame source closed until frames are wanted");
                    }
                    // Nobody left to want frames: the loop has stopped.
                    if runtime.block_on(wanted.changed()).is_err() {
                        return;
                    }
                    continue;
                }
                FramesWanted::DetectEvery(every) => last_detected.is_none_or(|at| clock.monotonic() >= at + every).then_some(Analysis::Detect),
                FramesWanted::Recognise => Some(Analysis::Recognise),
            };
            let need = if analysis == Some(Analysis::Recognise) { Need::EveryFrame } else { Need::NowAndThen };
            if source.is_none() {
                match source::open(&config, need) {
                    Ok(opened) => {
                        if config.kind == SourceKind::Rtsp {
                            camera_frame_rate.apply(config.camera_url(), clock.now());
                        }
                        health.set(SOURCE_SUBSYSTEM, State::Ok, format!("{} delivering frames", source::name_of(&config)));
                        backoff = Duration::from_secs(1);
                        failing_since = None;
                        source = Some(opened);
                    }
                    Err(err) => {
                        let since = *failing_since.get_or_insert_with(|| clock.now());
                        let detail = format!("{err}; failing since {}; retrying in {} s", since.round(jiff::Unit::Second).unwrap_or(since), backoff.as_secs());
                        health.set(SOURCE_SUBSYSTEM, State::Degraded, detail);
                        runtime.block_on(async {
                            tokio::select! {
                                _ = shutdown.cancelled() => {}
                                _ = clock.sleep(backoff) => {}
                            }
                        });
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(open) = source.as_mut() else { continue };
            open.need(need);
            match (open.next_frame(), analysis) {
                // A live camera is read at its pace whether or not its frame is wanted, so the next one is fresh.
                (Ok(Some(_)), None) => {}
                (Ok(Some(_)), Some(_)) if jobs.capacity() == 0 => count_frame("dropped"),
                (Ok(Some(frame)), Some(analysis)) => {
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
                    if analysis == Analysis::Detect {
                        last_detected = Some(clock.monotonic());
                    }
                    match jobs.try_send(Job { image, analysis }) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                (Ok(None), _) => {
                    health.set(SOURCE_SUBSYSTEM, State::Ok, "the recording has been played to its end");
                    return;
                }
                (Err(err), _) => {
                    let since = *failing_since.get_or_insert_with(|| clock.now());
                    health.set(SOURCE_SUBSYSTEM, State::Degraded, format!("{err}; failing since {}; reopening", since.round(jiff::Unit::Second).unwrap_or(since)));
                    source = None;
                }
            }
        }
    });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the frame source");
    }
}
