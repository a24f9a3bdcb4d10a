//! The room's tablets and the live lesson on them: pairing, who holds which
//! tablet, the live channel, the teacher's commands to the class, a group or
//! a few tablets, the pupils' answers, the class at a glance for the panel,
//! the content store and the browser client.
//!
//! # Design
//! - [`pairing`] and [`session`] are state machines without I/O; [`Lesson`]
//!   holds them behind one mutex, with the live connections, and is the only
//!   place that touches both the sockets and the store. The mutex is never
//!   held across an await or a database call.
//! - Time is the agent's clock, handed in ([`LessonParts`]). The lesson holds
//!   no timer of its own: the session names its next deadline (a command's
//!   ack timeout) and [`Lesson::run`] only sleeps until it and tells the
//!   session it passed; a socket's heartbeat timeout is measured on the same
//!   clock. So a test moves a `ManualClock` instead of waiting.
//! - Every task the lesson runs (each live connection, each record on its way
//!   to the outbox) is in one `TaskTracker`. At the stop, [`Lesson::run`]
//!   writes the record of each command still waiting for acks, with the acks
//!   so far, each connection sends its tablet a close frame, and `run`
//!   returns only once all of them finished: the agent exits with nothing of
//!   the lesson half-written.
//! - Each connection has a bounded queue of outgoing frames. A command is
//!   serialised once and queued to every connection; a tablet whose queue is
//!   full (it stopped reading) is disconnected rather than allowed to grow
//!   the agent's memory; it catches up when it reconnects.
//! - Answers are shown to the panel as soon as they are checked and reach the
//!   outbox through the store's recorder, which commits whatever has queued up
//!   in one transaction; a tablet hears `answer_received` only once its answer
//!   is durable, and `unavailable` (send it again) when the store refuses it.
//!   No socket's loop ever waits for the disk.
//! - A teacher's command is refused before it is given while the store refuses
//!   records; the record of one given is kept, queued if need be
//!   ([`crate::store::recorder`]).
//! - Every record names the lesson by the timetable's period, the id the roll
//!   call uses (`YYYY-MM-DD/<shift>/<period>`), or `YYYY-MM-DD/outside`
//!   outside every period ([`crate::attendance::lessons::lesson_at`]), read
//!   from the config in force when the record is made: a lesson spans no
//!   agent restart and no period boundary, and a pushed timetable counts at once.
//! - **Who holds which tablet.** A paired tablet without a pupil offers the
//!   class roster ([`page`]: `GET /tablet/roster`); the pupil picks their own
//!   name once, and only a name no other tablet holds. The names come with
//!   opaque references (a hash of a secret drawn at start, the tablet and the
//!   pupil), never with personal IDs, so a tablet learns names only, and a
//!   reference is good for that tablet alone until the agent restarts. The
//!   teacher binds, renames and revokes at the panel at any time.
//! - **The class at a glance** ([`ClassView`]) is what the lesson knows of each
//!   paired tablet: who holds it, whether it is connected, what the commands
//!   given to it make it show (locked, the open content, the question and
//!   whether it answered), and what it last reported (its own lock, battery,
//!   whether the lesson page is visible and focused, a raised hand). Lock is
//!   what the agent commanded; a tablet reporting otherwise is shown as
//!   disagreeing, never believed. Every change bumps a watch channel
//!   ([`Lesson::subscribe_class`]); the panel's feed sends the view afresh
//!   after each, coalescing bursts, so a tile follows its tablet within the
//!   feed's latency with no polling.
//! - A raised hand is recorded once, when it goes up; more raises while it is
//!   up (a pupil tapping on) are not records, until the teacher lowers hands.
//! - Device tokens are 32 random bytes, shown to the tablet once; the
//!   database keeps only their SHA-256. A revoked tablet's live connection is
//!   closed at once and its token refused from then on.
//! - The teacher's API (`/api/tablets/…`, `/api/lesson/…`, [`router`]) answers
//!   only the panel itself and teachers signed in with the room's PIN; what
//!   tablets reach is [`tablet_router`] (the HTTP server, `http/mod.rs`, decides).
//!
//! ## How the browser client is protected on the classroom Wi-Fi
//! A browser cannot pin the agent's self-signed certificate, so
//! `tablets.browser_client` chooses:
//! - `"plain-http"` (the default): the page, pairing and the live channel are
//!   plain HTTP on the room's network. The device token authenticates the
//!   connection at `hello`, and everything after it on that socket is bound
//!   to that tablet; revocation closes the socket at once. Risks: anyone on
//!   the same Wi-Fi can read the traffic (the questions, pupils' answers, and
//!   the pairing code and tokens as they pass), and could replay a sniffed
//!   token until the teacher revokes it. Acceptable only on a room network
//!   that pupils' own phones and outsiders cannot join (WPA2/3 with a key
//!   known to IT staff, client isolation off only for this SSID). No personal
//!   data other than a tablet's answers crosses the channel: pupils are bound
//!   to tablets on the agent, not on the wire.
//! - `"disabled"`: the browser page and its pairing are not served at all;
//!   only native clients are meant to connect. Choose it when the room's
//!   Wi-Fi cannot be trusted.
//!
//! Native clients connect over TLS instead (`tablets.tls_listen`, see
//! [`tls`]), pinning the agent's certificate by the fingerprint in the QR
//! code. Browsers cannot pin: they use TLS when the room has a certificate
//! from a CA that IT staff installed on the tablets (`http.tls_cert`, see
//! [`crate::tls`]), and the QR code then opens the page over HTTPS.

pub mod api;
pub mod config;
pub mod content;
pub mod discovery;
pub mod follow;
pub mod hand_in;
pub mod material;
pub mod page;
pub mod pairing;
pub mod protocol;
pub mod question_set;
pub mod quiz_api;
pub mod session;
pub mod summary;
pub mod tls;
pub mod ws;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::health::{self, Health};
use crate::proto::{HandRaised, LessonRecord};
use crate::schedule::timetable::Timetable;
use crate::store::recorder::{Kept, Refusal, Who, Write};
use crate::store::tablets::{ClaimRefused, Tablet};
use crate::store::{Store, StoreError};
pub use config::{BrowserClient, TabletsConfig, config_problems};
use pairing::{Pairing, PairingRules};
use protocol::{AgentMessage, Command, CommandEnvelope};
pub use session::Audience;
use session::{AckProgress, RefusedCommand, Session};

/// The health subsystem that shows someone guessing pairing codes.
const PAIRING_SUBSYSTEM: &str = "tablet_pairing";

/// Outgoing frames a connection may have queued before it is dropped as stuck.
const QUEUE_LENGTH: usize = 256;

/// What a connection's writer is told to do.
#[derive(Debug)]
pub enum Outgoing {
    Text(Arc<str>),
    Close(&'static str),
}

struct Connection {
    tablet: Tablet,
    queue: mpsc::Sender<Outgoing>,
    status: LiveTablet,
}

/// What a connected tablet last reported of itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LiveTablet {
    pub battery: Option<u8>,
    pub locked: Option<bool>,
    pub hand_raised: bool,
    /// Whether the lesson page is shown, and has the focus; unknown until the tablet says.
    pub visible: Option<bool>,
    pub focused: Option<bool>,
}

impl LiveTablet {
    /// The tablet said it left the lesson page (hidden, or another app or tab has the focus).
    pub fn away(&self) -> bool {
        self.visible == Some(false) || self.focused == Some(false)
    }
}

/// One tablet as the panel's class view shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tile {
    pub tablet_id: String,
    pub name: String,
    pub pupil_personal_id: Option<String>,
    pub pupil_full_name: Option<String>,
    pub connected: bool,
    /// What the agent commanded.
    pub locked: bool,
    /// Set when the tablet's own report of its lock differs from the command.
    pub lock_disagrees: bool,
    /// What the tablet last reported, while connected.
    pub status: Option<LiveTablet>,
    pub away: bool,
    /// The content the commands given to it opened: a web address or a content-store file.
    pub open: Option<String>,
    /// The open question asked of it, if any, and whether it answered.
    pub question: Option<TileQuestion>,
    /// The material and page it follows, while it follows the teacher.
    pub follow: Option<follow::Following>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TileQuestion {
    pub id: String,
    pub answered: bool,
}

/// Every paired tablet as a tile, in the roster's order, then the tablets
/// nobody holds by name, with the counts the panel shows above them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassView {
    pub lesson_id: String,
    pub tiles: Vec<Tile>,
    pub connected: usize,
    pub away: usize,
    pub hands: usize,
    pub locked: usize,
    pub answered: usize,
}

/// A name of the class roster as a tablet is offered it: no personal ID.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RosterChoice {
    /// An opaque reference, good for this tablet until the agent restarts.
    pub pupil: String,
    pub full_name: String,
}

/// Why a pupil's own choice of name was not taken.
#[derive(Debug)]
pub enum ChoiceRefused {
    /// The reference names no pupil of the class (stale, or made up).
    Unknown,
    Refused(ClaimRefused),
    Store(StoreError),
}

/// Everything behind the lesson's one mutex.
struct Shared {
    pairing: Pairing,
    session: Session,
    connections: HashMap<u64, Connection>,
}

/// Why a tablet was not paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRefused {
    /// The pairing window said no.
    Attempt(pairing::Attempt),
    /// The code was right but the tablet could not be stored; it may try again.
    Unavailable,
}

/// Why the teacher's command was not given.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The command does not fit the lesson (a question stopped twice, say).
    #[error(transparent)]
    Invalid(#[from] RefusedCommand),
    /// Its record could not be kept.
    #[error(transparent)]
    NotKept(#[from] Refusal),
}

/// What the lesson is handed at start: its own section of the config and the
/// few things of the agent it uses.
pub struct LessonParts {
    pub tablets: TabletsConfig,
    /// The room's time zone: the live lesson is named by the room's date.
    pub zone: jiff::tz::TimeZone,
    /// The config in force, for the timetable that names lessons and the
    /// class (`attendance.class`) whose roster the tablets offer.
    pub room: tokio::sync::watch::Receiver<Arc<Config>>,
    /// Where browsers open the tablets' page, for the pairing link:
    /// `http.listen`, or `http.tls_listen` when the room has a certificate.
    pub http_listen: SocketAddr,
    /// Whether the page is served over HTTPS at `http_listen`.
    pub https: bool,
    /// The content store's directory, resolved.
    pub content_dir: PathBuf,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// Where the teacher is shown that someone is guessing pairing codes.
    pub health: Health,
    /// The agent's stop: the lesson's loops end on it.
    pub shutdown: CancellationToken,
}

/// The tablets' side of the agent, shared by the socket handlers and the teacher's API.
pub struct Lesson {
    config: TabletsConfig,
    zone: jiff::tz::TimeZone,
    room: tokio::sync::watch::Receiver<Arc<Config>>,
    /// Drawn at start: makes the roster's references for tablets unguessable.
    roster_secret: [u8; 32],
    /// Bumped on every change the class view shows.
    class_changes: tokio::sync::watch::Sender<u64>,
    http_listen: SocketAddr,
    https: bool,
    content_dir: PathBuf,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    health: Health,
    shutdown: CancellationToken,
    /// Every task the lesson runs (live connections, records on their way to
    /// the outbox); [`Lesson::run`] drains it at the stop.
    tasks: TaskTracker,
    state: Mutex<Shared>,
    next_connection: AtomicU64,
    /// Woken on every ack and every answer, for callers that wait on them.
    progress: Notify,
    /// Woken when a command was given: the session may have a new deadline.
    deadlines: Notify,
    /// The question set being run ([`quiz_api`]).
    quiz_runs: Mutex<quiz_api::Runs>,
}

impl Lesson {
    pub fn new(parts: LessonParts) -> Arc<Lesson> {
        let LessonParts {
            tablets: config,
            zone,
            room,
            http_listen,
            https,
            content_dir,
            store,
            clock,
            health,
            shutdown,
        } = parts;
        let rules = PairingRules {
            window: jiff::SignedDuration::from_secs(i64::from(config.pairing_window_s)),
            max_wrong_codes: config.max_wrong_codes,
            retry_delay: jiff::SignedDuration::from_millis(i64::from(config.retry_delay_ms)),
        };
        let session = Session::new(Duration::from_millis(u64::from(config.ack_timeout_ms)));
        material::report_pdfjs(&health);
        Arc::new(Lesson {
            config,
            zone,
            room,
            roster_secret: rand::rng().random(),
            class_changes: tokio::sync::watch::Sender::new(0),
            http_listen,
            https,
            content_dir,
            store,
            clock,
            health,
            shutdown,
            tasks: TaskTracker::new(),
            state: Mutex::new(Shared {
                pairing: Pairing::new(rules),
                session,
                connections: HashMap::new(),
            }),
            next_connection: AtomicU64::new(1),
            progress: Notify::new(),
            deadlines: Notify::new(),
            quiz_runs: Mutex::default(),
        })
    }

    /// Drives the live lesson's timers until the agent stops; then writes the
    /// record of every command still waiting for acks, with the acks so far,
    /// and returns once every task the lesson runs has finished (each live
    /// connection closed, each record committed or queued by the recorder).
    pub async fn run(self: Arc<Self>) {
        loop {
            let deadline = self.lock().session.poll_timeout();
            let timeout = match deadline {
                Some(deadline) => self.clock.sleep_until(deadline),
                None => Box::pin(std::future::pending()),
            };
            tokio::select! {
                () = timeout => {
                    let now = self.clock.monotonic();
                    let timed_out = {
                        let mut state = self.lock();
                        state.session.handle_timeout(now);
                        state.session.take_timed_out()
                    };
                    self.keep_records();
                    if let Some(question) = timed_out {
                        self.stop_timed_out(question);
                    }
                }
                () = self.deadlines.notified() => {}
                () = self.shutdown.cancelled() => break,
            }
        }
        self.lock().session.settle_all();
        self.keep_records();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The open question's time is up: its tablets are told to stop showing it.
    fn stop_timed_out(self: &Arc<Self>, question: String) {
        tracing::info!(%question, "question's time is up");
        self.progress.notify_waiters();
        if let Err(err) = self.issue(Command::QuestionStop { question }, Audience::Class) {
            tracing::error!(%err, "cannot stop a question whose time is up; later answers are refused all the same");
        }
    }

    /// How long the open question has left, if it has a time limit.
    pub fn time_left(&self) -> Option<Duration> {
        self.lock().session.time_left(self.clock.monotonic())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &TabletsConfig {
        &self.config
    }

    /// The lesson going on now, by the timetable in force ([`crate::attendance::lessons::lesson_at`]).
    pub fn lesson_id(&self) -> String {
        let room = self.room.borrow().clone();
        let timetable = Timetable::new(room.schedule.clone(), &room.room.timezone).ok();
        crate::attendance::lessons::lesson_at(timetable.as_ref(), &self.zone, self.clock.now())
    }

    /// The room's class (`attendance.class`), empty when it names none.
    pub fn class_name(&self) -> String {
        self.room.borrow().attendance.class.clone()
    }

    /// Changes whenever something the class view shows changed.
    pub fn subscribe_class(&self) -> tokio::sync::watch::Receiver<u64> {
        self.class_changes.subscribe()
    }

    /// Tells the class view's followers that it changed.
    fn class_changed(&self) {
        self.class_changes
            .send_modify(|generation| *generation += 1);
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Where browsers open the tablets' page ([`LessonParts::http_listen`]).
    pub fn http_listen(&self) -> SocketAddr {
        self.http_listen
    }

    /// Whether the tablets' page is served over HTTPS.
    pub fn https(&self) -> bool {
        self.https
    }

    pub fn content_dir(&self) -> &Path {
        &self.content_dir
    }

    /// Opens a pairing window with a fresh code.
    pub fn open_pairing(&self) -> pairing::WindowView {
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
        let now = self.clock.now();
        let view = self.lock().pairing.open(now, code);
        self.health.set(
            PAIRING_SUBSYSTEM,
            health::State::Ok,
            "pairing window opened",
        );
        tracing::info!(expires_at = %view.expires_at, "pairing window opened");
        view
    }

    pub fn pairing_view(&self) -> Option<pairing::WindowView> {
        let now = self.clock.now();
        self.lock().pairing.view(now)
    }

    pub fn close_pairing(&self) {
        self.lock().pairing.close();
    }

    /// A tablet presents a code; on success it is paired and gets its token.
    pub async fn pair(
        &self,
        from: std::net::IpAddr,
        code: &str,
        name: &str,
    ) -> Result<(Tablet, String), PairingRefused> {
        let now = self.clock.now();
        let (attempt, before, after) = {
            let mut state = self.lock();
            let before = state.pairing.view(now);
            let attempt = state.pairing.attempt(now, from, code);
            (attempt, before, state.pairing.view(now))
        };
        if attempt != pairing::Attempt::Accepted {
            self.show_guessing(before, after);
            return Err(PairingRefused::Attempt(attempt));
        }
        let token_bytes: [u8; 32] = rand::rng().random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_bytes);
        let tablet_id = format!("tab-{}", uuid::Uuid::now_v7().simple());
        let name = if name.trim().is_empty() {
            format!("Máy {}", &tablet_id[tablet_id.len() - 4..])
        } else {
            name.trim().chars().take(64).collect()
        };
        let hash = token_hash(&token);
        let lesson_id = self.lesson_id();
        match self
            .store
            .blocking(move |store| store.add_tablet(&tablet_id, &name, &hash, &lesson_id))
            .await
        {
            Ok(tablet) => {
                tracing::info!(tablet = %tablet.tablet_id, name = %tablet.name, "tablet paired");
                self.class_changed();
                Ok((tablet, token))
            }
            Err(err) => {
                tracing::error!(%err, "cannot store a paired tablet");
                Err(PairingRefused::Unavailable)
            }
        }
    }

    /// Logs a refused pairing and shows the teacher that someone is guessing.
    /// Only a checked wrong code (a bounded number per window) is logged at
    /// warn; a try refused unchecked, which a flood repeats, at debug.
    fn show_guessing(
        &self,
        before: Option<pairing::WindowView>,
        after: Option<pairing::WindowView>,
    ) {
        let (Some(before), Some(after)) = (before, after) else {
            tracing::debug!("pairing refused: no window open");
            return;
        };
        if after.wrong_codes == before.wrong_codes {
            tracing::debug!(
                refused_tries = after.refused_tries,
                "pairing try refused unchecked"
            );
            return;
        }
        tracing::warn!(
            wrong_codes = after.wrong_codes,
            locked_out_addresses = after.locked_out_addresses,
            locked = after.locked,
            "wrong pairing code"
        );
        if after.locked || after.locked_out_addresses > before.locked_out_addresses {
            let detail = if after.locked {
                format!(
                    "Có người đoán mã ghép nối: đã khóa, hãy mở lại ghép nối / someone is guessing the pairing code: {} wrong codes locked the window; open a new one",
                    after.wrong_codes
                )
            } else {
                format!(
                    "Có người đoán mã ghép nối / someone is guessing the pairing code: {} address(es) locked out after {} wrong codes; the class can still pair",
                    after.locked_out_addresses, after.wrong_codes
                )
            };
            self.health
                .set(PAIRING_SUBSYSTEM, health::State::Degraded, detail);
        }
    }

    /// The tablet that holds `token`, unless revoked.
    pub async fn authenticate(&self, token: &str) -> Option<Tablet> {
        let hash = token_hash(token);
        match self
            .store
            .blocking(move |store| store.tablet_by_token(&hash))
            .await
        {
            Ok(tablet) => tablet,
            Err(err) => {
                tracing::error!(%err, "cannot look up a tablet token");
                None
            }
        }
    }

    /// Registers a live connection and returns its id, the welcome frame and its queue.
    /// The weak sender lets the connection queue its own replies without keeping
    /// its queue open once the lesson dropped it (revoked, replaced, stuck).
    pub fn connect(
        &self,
        tablet: Tablet,
        last_command: u64,
    ) -> (
        u64,
        String,
        mpsc::Receiver<Outgoing>,
        mpsc::WeakSender<Outgoing>,
    ) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(QUEUE_LENGTH);
        let mut state = self.lock();
        // A tablet holds one connection: a reconnect replaces a connection not yet timed out.
        let stale: Vec<u64> = state
            .connections
            .iter()
            .filter(|(_, c)| c.tablet.tablet_id == tablet.tablet_id)
            .map(|(id, _)| *id)
            .collect();
        for old in stale {
            if let Some(connection) = state.connections.remove(&old) {
                let _ = connection
                    .queue
                    .try_send(Outgoing::Close("replaced by a newer connection"));
            }
        }
        let live = state.session.state_for(&tablet.tablet_id);
        let welcome = AgentMessage::Welcome {
            v: protocol::VERSION,
            tablet_id: &tablet.tablet_id,
            name: &tablet.name,
            pupil: tablet.pupil_full_name.as_deref(),
            heartbeat_s: self.config.heartbeat_s,
            state: &live,
            missed: state.session.missed(&tablet.tablet_id, last_command),
        }
        .to_json();
        let own_queue = queue.downgrade();
        state.connections.insert(
            id,
            Connection {
                tablet,
                queue,
                status: LiveTablet::default(),
            },
        );
        drop(state);
        self.class_changed();
        (id, welcome, receiver, own_queue)
    }

    pub fn disconnect(&self, connection: u64) {
        let mut state = self.lock();
        if let Some(gone) = state.connections.remove(&connection) {
            let still_connected = state
                .connections
                .values()
                .any(|c| c.tablet.tablet_id == gone.tablet.tablet_id);
            if !still_connected {
                state.session.forget_expected(&gone.tablet.tablet_id);
            }
        }
        drop(state);
        self.keep_records();
        self.progress.notify_waiters();
        self.class_changed();
    }

    /// Gives the teacher's command to the connected tablets of `audience`
    /// (and, through the state, to those that connect later), unless its
    /// record could not be kept.
    pub fn issue(
        self: &Arc<Self>,
        command: Command,
        audience: Audience,
    ) -> Result<CommandEnvelope, IssueError> {
        self.store.recorder().admit(Who::Teacher)?;
        let now = self.clock.now();
        let lesson_id = self.lesson_id();
        let mut state = self.lock();
        let connected: BTreeSet<String> = state
            .connections
            .values()
            .map(|c| c.tablet.tablet_id.clone())
            .collect();
        let envelope = state.session.issue(
            now,
            self.clock.monotonic(),
            &lesson_id,
            command,
            audience,
            connected,
        )?;
        let frame: Arc<str> = AgentMessage::Command(&envelope).to_json().into();
        let mut stuck = Vec::new();
        let Shared {
            connections,
            session,
            ..
        } = &mut *state;
        for (id, connection) in connections.iter() {
            if !session.given_to(envelope.id, &connection.tablet.tablet_id) {
                continue;
            }
            if connection
                .queue
                .try_send(Outgoing::Text(frame.clone()))
                .is_err()
            {
                stuck.push(*id);
            }
        }
        for id in stuck {
            if let Some(connection) = state.connections.remove(&id) {
                tracing::warn!(tablet = %connection.tablet.tablet_id, "tablet stopped reading; disconnected");
                state.session.forget_expected(&connection.tablet.tablet_id);
            }
        }
        if self.shutdown.is_cancelled() {
            // Given while the agent stops: nobody drives the timers any more.
            state.session.settle_all();
        }
        let asked = matches!(envelope.command, Command::QuestionStart(_))
            .then(|| state.session.asked_question())
            .flatten();
        drop(state);
        if let Some(question) = asked {
            self.keep_question(question);
        }
        tracing::info!(
            id = envelope.id,
            command = envelope.command.name(),
            "command given"
        );
        self.keep_records();
        self.deadlines.notify_one();
        self.class_changed();
        Ok(envelope)
    }

    /// Keeps a question just asked for the lesson's summary.
    fn keep_question(&self, question: crate::store::lessons::AskedQuestion) {
        let recorder = self.store.recorder().clone();
        let id = question.question_id.clone();
        self.tasks.spawn(async move {
            match recorder.keep(Write::Question(question)).await {
                Kept::Committed => {}
                Kept::Queued(refusal) => {
                    tracing::warn!(%refusal, %id, "question for the summary queued")
                }
                Kept::Refused(refusal) => {
                    tracing::error!(%refusal, %id, "question for the summary not kept")
                }
            }
        });
    }

    /// Hands the records of the commands that settled to the store's recorder.
    fn keep_records(&self) {
        let records = self.lock().session.take_records();
        for record in records {
            let LessonRecord {
                command_id: id,
                acknowledged,
                connected,
                ..
            } = record.clone();
            let (recorder, write) = (
                self.store.recorder().clone(),
                Write::event(self.clock.now(), record),
            );
            self.tasks.spawn(async move {
                match recorder.keep(write).await {
                    Kept::Committed => {
                        tracing::info!(id, acknowledged, connected, "lesson command recorded")
                    }
                    Kept::Queued(refusal) => {
                        tracing::warn!(%refusal, id, "lesson command's record queued")
                    }
                    Kept::Refused(refusal) => {
                        tracing::error!(%refusal, id, "lesson command's record not kept")
                    }
                }
            });
        }
    }

    pub fn ack_progress(&self, id: u64) -> AckProgress {
        self.lock().session.ack_progress(id).unwrap_or(AckProgress {
            acknowledged: 0,
            expected: 0,
        })
    }

    /// Returns once every tablet expected to ack command `id` has done so, or
    /// after `timeout` of the lesson's clock, with the acks so far.
    pub async fn wait_for_acks(&self, id: u64, timeout: Duration) -> AckProgress {
        let mut timed_out = self.clock.sleep(timeout);
        loop {
            let woken = self.progress.notified();
            let progress = self.ack_progress(id);
            if progress.complete() {
                return progress;
            }
            tokio::select! {
                () = woken => {}
                () = &mut timed_out => return self.ack_progress(id),
            }
        }
    }

    /// Returns once the latest question has at least `count` answers (or after `timeout`).
    pub async fn wait_for_answers(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Option<session::QuestionResults> {
        let mut timed_out = self.clock.sleep(timeout);
        loop {
            let woken = self.progress.notified();
            let results = self.results();
            if results.as_ref().is_none_or(|r| r.answers.len() >= count) {
                return results;
            }
            tokio::select! {
                () = woken => {}
                () = &mut timed_out => return self.results(),
            }
        }
    }

    pub fn results(&self) -> Option<session::QuestionResults> {
        self.lock().session.results()
    }

    /// The material and page the teacher leads followers through, if anyone follows.
    pub fn follow_lead(&self) -> Option<follow::Following> {
        self.lock().session.follow_lead().cloned()
    }

    /// Handles an ack from a connected tablet.
    pub fn ack(&self, tablet_id: &str, id: u64) -> Result<(), protocol::ProtocolError> {
        let progress = self.lock().session.ack(tablet_id, id)?;
        if progress.complete() {
            self.keep_records();
            self.progress.notify_waiters();
        }
        Ok(())
    }

    /// Takes an answer: checks it and shows it to the panel at once, then
    /// hands it to the store's recorder. `reply` (the tablet's queue) gets
    /// `answer_received` once it is durable; an answer that cannot be stored is
    /// withdrawn and the tablet told to send it again.
    ///
    /// The pupil is named in the record only if their parents consented to
    /// keeping learning records (Decree 13/2023); otherwise the answer is kept
    /// without a name.
    pub fn answer(
        self: &Arc<Self>,
        tablet: &Tablet,
        question: &str,
        choices: Vec<String>,
        text: String,
        reply: mpsc::WeakSender<Outgoing>,
    ) -> Result<(), protocol::ProtocolError> {
        let pupil = tablet
            .pupil_personal_id
            .as_deref()
            .filter(|_| tablet.pupil_learning_data_consent);
        let now = self.clock.now();
        let answered = {
            let mut state = self.lock();
            state
                .session
                .answer(now, &tablet.tablet_id, pupil, question, choices, text)
                .map(|record| (record, state.session.asked_question()))
        };
        // A refused answer may change the results too: it counts as late
        // once the question's time is up.
        self.progress.notify_waiters();
        self.class_changed();
        let (record, asked) = answered?;
        let write = match asked {
            Some(question) => Write::Answer {
                question,
                occurred_at: now,
                answer: record,
            },
            None => Write::event(now, record),
        };
        let recorder = self.store.recorder().clone();
        let (lesson, question, tablet_id) =
            (self.clone(), question.to_owned(), tablet.tablet_id.clone());
        self.tasks.spawn(async move {
            let frame = match recorder.keep_or_refuse(write).await {
                Kept::Committed => AgentMessage::AnswerReceived { question: &question }.to_json(),
                Kept::Queued(refusal) | Kept::Refused(refusal) => {
                    tracing::error!(%refusal, tablet = %tablet_id, "cannot store an answer; withdrawn");
                    lesson.lock().session.withdraw_answer(&question, &tablet_id);
                    lesson.progress.notify_waiters();
                    lesson.class_changed();
                    protocol::ProtocolError::new(protocol::ErrorCode::Unavailable, "the answer could not be stored; send it again").to_json()
                }
            };
            if let Some(reply) = reply.upgrade() {
                let _ = reply.send(Outgoing::Text(frame.into())).await;
            }
        });
        Ok(())
    }

    /// The connected tablet's record as the lesson knows it now.
    pub fn authenticated_copy(&self, tablet_id: &str) -> Option<Tablet> {
        self.lock()
            .connections
            .values()
            .find(|c| c.tablet.tablet_id == tablet_id)
            .map(|c| c.tablet.clone())
    }

    /// A pupil raised their hand: shown at once, and recorded when it goes up
    /// (not again while it stays up). The pupil is named only with consent to
    /// keep learning records, as for answers.
    pub fn raise_hand(&self, tablet: &Tablet) {
        let went_up = self.change_status(&tablet.tablet_id, |status| {
            !std::mem::replace(&mut status.hand_raised, true)
        });
        if !went_up {
            return;
        }
        let record = HandRaised {
            lesson_id: self.lesson_id(),
            tablet_id: tablet.tablet_id.clone(),
            pupil_personal_id: tablet
                .pupil_personal_id
                .clone()
                .filter(|_| tablet.pupil_learning_data_consent)
                .unwrap_or_default(),
        };
        let (recorder, write) = (
            self.store.recorder().clone(),
            Write::event(self.clock.now(), record),
        );
        let tablet_id = tablet.tablet_id.clone();
        self.tasks.spawn(async move {
            if let Kept::Queued(refusal) | Kept::Refused(refusal) = recorder.keep(write).await {
                tracing::warn!(%refusal, tablet = %tablet_id, "raised hand's record not committed");
            }
        });
    }

    pub fn update_status(&self, tablet_id: &str, battery: Option<u8>, locked: bool) {
        self.change_status(tablet_id, |status| {
            status.battery = battery;
            status.locked = Some(locked);
        });
    }

    /// The tablet says whether the lesson page is shown and focused.
    pub fn update_presence(&self, tablet_id: &str, visible: bool, focused: bool) {
        self.change_status(tablet_id, |status| {
            status.visible = Some(visible);
            status.focused = Some(focused);
        });
    }

    /// Changes what a connected tablet reported and tells the class view; the
    /// change's outcome for the tablet's (one) connection.
    fn change_status<T: Default>(
        &self,
        tablet_id: &str,
        change: impl FnOnce(&mut LiveTablet) -> T,
    ) -> T {
        let outcome = self
            .lock()
            .connections
            .values_mut()
            .find(|c| c.tablet.tablet_id == tablet_id)
            .map(|connection| change(&mut connection.status))
            .unwrap_or_default();
        self.class_changed();
        outcome
    }

    /// Connected tablets with their last reported status, by tablet id.
    pub fn live_tablets(&self) -> HashMap<String, LiveTablet> {
        self.lock()
            .connections
            .values()
            .map(|c| (c.tablet.tablet_id.clone(), c.status.clone()))
            .collect()
    }

    /// Lowers every raised hand (the teacher has seen them).
    pub fn lower_hands(&self) {
        for connection in self.lock().connections.values_mut() {
            connection.status.hand_raised = false;
        }
        self.class_changed();
    }

    /// Closes the live connection of a revoked tablet.
    pub fn drop_tablet(&self, tablet_id: &str) {
        let mut state = self.lock();
        let ids: Vec<u64> = state
            .connections
            .iter()
            .filter(|(_, c)| c.tablet.tablet_id == tablet_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(connection) = state.connections.remove(&id) {
                let _ = connection.queue.try_send(Outgoing::Close("revoked"));
            }
        }
        state.session.forget_expected(tablet_id);
        drop(state);
        self.keep_records();
        self.progress.notify_waiters();
        self.class_changed();
    }

    /// Updates the name or pupil of a connected tablet after the teacher changed it.
    pub fn refresh_tablet(&self, tablet: &Tablet) {
        for connection in self
            .lock()
            .connections
            .values_mut()
            .filter(|c| c.tablet.tablet_id == tablet.tablet_id)
        {
            connection.tablet = tablet.clone();
        }
        self.class_changed();
    }

    /// Every paired tablet as the panel's class view shows it now.
    pub async fn class_view(&self) -> Result<ClassView, StoreError> {
        let class_name = self.room.borrow().attendance.class.clone();
        let (tablets, roster) = self
            .store
            .blocking(move |store| Ok((store.tablets()?, store.pupils_of_class(&class_name)?)))
            .await?;
        let place = |tablet: &Tablet| {
            let in_roster = tablet.pupil_personal_id.as_deref().and_then(|id| {
                roster
                    .iter()
                    .position(|pupil| pupil.personal_id.as_str() == id)
            });
            (in_roster.unwrap_or(usize::MAX), tablet.name.clone())
        };
        let mut tablets: Vec<Tablet> = tablets.into_iter().filter(|t| !t.revoked).collect();
        tablets.sort_by_cached_key(place);
        let state = self.lock();
        let tiles: Vec<Tile> = tablets
            .into_iter()
            .map(|tablet| {
                let status = state
                    .connections
                    .values()
                    .find(|c| c.tablet.tablet_id == tablet.tablet_id)
                    .map(|c| c.status.clone());
                let shown = state.session.shown_to(&tablet.tablet_id);
                let open = shown.open.as_ref().and_then(|open| match open {
                    Command::Open { url, file } => url.clone().or_else(|| file.clone()),
                    _ => None,
                });
                let question =
                    state
                        .session
                        .question_for(&tablet.tablet_id)
                        .map(|(id, answered)| TileQuestion {
                            id: id.to_owned(),
                            answered,
                        });
                let reported_lock = status.as_ref().and_then(|s| s.locked);
                Tile {
                    connected: status.is_some(),
                    locked: shown.locked,
                    lock_disagrees: reported_lock.is_some_and(|locked| locked != shown.locked),
                    away: status.as_ref().is_some_and(LiveTablet::away),
                    open,
                    question,
                    follow: state.session.following(&tablet.tablet_id),
                    status,
                    tablet_id: tablet.tablet_id,
                    name: tablet.name,
                    pupil_personal_id: tablet.pupil_personal_id,
                    pupil_full_name: tablet.pupil_full_name,
                }
            })
            .collect();
        drop(state);
        let count = |holds: fn(&Tile) -> bool| tiles.iter().filter(|tile| holds(tile)).count();
        Ok(ClassView {
            lesson_id: self.lesson_id(),
            connected: count(|tile| tile.connected),
            away: count(|tile| tile.away),
            hands: count(|tile| tile.status.as_ref().is_some_and(|s| s.hand_raised)),
            locked: count(|tile| tile.locked),
            answered: count(|tile| tile.question.as_ref().is_some_and(|q| q.answered)),
            tiles,
        })
    }

    /// The opaque reference by which `tablet_id` names pupil `personal_id`.
    fn roster_reference(&self, tablet_id: &str, personal_id: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.roster_secret);
        hasher.update(tablet_id.as_bytes());
        hasher.update([0]);
        hasher.update(personal_id.as_bytes());
        hex::encode(&hasher.finalize()[..12])
    }

    /// The names of the class a tablet without a pupil may choose from: the
    /// pupils of `attendance.class` (of the whole roster when no class is
    /// named) that no tablet holds, by name.
    pub async fn roster_choices(&self, tablet: &Tablet) -> Result<Vec<RosterChoice>, StoreError> {
        let class_name = self.room.borrow().attendance.class.clone();
        let (pupils, tablets) = self
            .store
            .blocking(move |store| {
                let pupils = if class_name.is_empty() {
                    store.roster()?.pupils
                } else {
                    store.pupils_of_class(&class_name)?
                };
                Ok((pupils, store.tablets()?))
            })
            .await?;
        Ok(pupils
            .into_iter()
            .filter(|pupil| {
                !tablets.iter().any(|t| {
                    !t.revoked && t.pupil_personal_id.as_deref() == Some(pupil.personal_id.as_str())
                })
            })
            .map(|pupil| RosterChoice {
                pupil: self.roster_reference(&tablet.tablet_id, pupil.personal_id.as_str()),
                full_name: pupil.full_name,
            })
            .collect())
    }

    /// The pupil holding `tablet` chose their name by its reference.
    pub async fn choose_pupil(
        &self,
        tablet: &Tablet,
        reference: &str,
    ) -> Result<Tablet, ChoiceRefused> {
        let class_name = self.room.borrow().attendance.class.clone();
        let pupils = self
            .store
            .blocking(move |store| {
                if class_name.is_empty() {
                    Ok(store.roster()?.pupils)
                } else {
                    store.pupils_of_class(&class_name)
                }
            })
            .await
            .map_err(ChoiceRefused::Store)?;
        let chosen = pupils
            .iter()
            .find(|pupil| {
                self.roster_reference(&tablet.tablet_id, pupil.personal_id.as_str()) == reference
            })
            .ok_or(ChoiceRefused::Unknown)?
            .personal_id
            .to_string();
        let (tablet_id, lesson_id) = (tablet.tablet_id.clone(), self.lesson_id());
        let claimed = self
            .store
            .blocking(move |store| store.claim_pupil(&tablet_id, &chosen, &lesson_id))
            .await
            .map_err(ChoiceRefused::Store)?
            .map_err(ChoiceRefused::Refused)?;
        tracing::info!(tablet = %claimed.tablet_id, "a pupil chose their name on a tablet");
        self.refresh_tablet(&claimed);
        Ok(claimed)
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The teacher's API: the tablets and the live lesson ([`api`]).
pub fn router(lesson: Arc<Lesson>) -> axum::Router {
    api::router()
        .merge(material::teacher_routes())
        .merge(hand_in::teacher_routes())
        .with_state(lesson)
}

/// What tablets reach: the browser client and pairing ([`page`]), the live
/// channel ([`ws`]) and the content store ([`content`]).
pub fn tablet_router(lesson: Arc<Lesson>) -> axum::Router {
    axum::Router::new()
        .merge(page::router(lesson.config.browser_client))
        .merge(ws::router())
        .merge(content::routes(&lesson))
        .merge(material::tablet_routes(&lesson))
        .merge(hand_in::tablet_routes(&lesson))
        .with_state(lesson)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::proto::event::Payload;
    use crate::store::testing;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    pub(super) fn lesson(store: Store, clock: Arc<ManualClock>) -> Arc<Lesson> {
        let tablets = TabletsConfig {
            ack_timeout_ms: TEN_MINUTES.as_millis() as u32,
            ..TabletsConfig::default()
        };
        Lesson::new(LessonParts {
            tablets,
            zone: jiff::tz::TimeZone::UTC,
            room: tokio::sync::watch::Sender::new(Arc::new(
                crate::config::Config::parse(
                    Path::new("agent.toml"),
                    "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n",
                )
                .unwrap(),
            ))
            .subscribe(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: false,
            content_dir: PathBuf::from("content"),
            store: Arc::new(store),
            health: crate::health::Health::new(clock.clone()),
            clock,
            shutdown: CancellationToken::new(),
        })
    }

    fn tablet(id: &str) -> Tablet {
        Tablet {
            tablet_id: id.into(),
            name: id.into(),
            pupil_personal_id: None,
            paired_at_ms: 0,
            revoked: false,
            pupil_learning_data_consent: false,
            pupil_full_name: None,
        }
    }

    /// The lesson records in the outbox, as (command, acknowledged, connected).
    fn records(store: &Store) -> Vec<(String, u32, u32)> {
        let events = store
            .read(|conn| crate::store::outbox::read_after(conn, 0, 1000))
            .unwrap();
        events
            .into_iter()
            .filter(|event| event.kind == "lesson.record")
            .map(
                |event| match Payload::decode_stored(&event.kind, &event.payload) {
                    Ok(Some(Payload::LessonRecord(r))) => (r.command, r.acknowledged, r.connected),
                    other => panic!("not a lesson record: {other:?}"),
                },
            )
            .collect()
    }

    #[tokio::test]
    async fn a_commands_record_waits_out_its_ack_timeout_on_the_lessons_clock() {
        let (_dir, clock, store) = testing::store();
        let lesson = lesson(store, clock.clone());
        let _connection = lesson.connect(tablet("tab-1"), 0);
        let driver = tokio::spawn(lesson.clone().run());
        lesson
            .issue(
                Command::Lock {
                    message: "Nhìn lên bảng".into(),
                },
                Audience::Class,
            )
            .unwrap();
        let mut commits = lesson.store.subscribe_commits();
        clock.advance(TEN_MINUTES);
        // Ten minutes of the lesson's clock, and no real waiting: the record is written at once.
        let written = tokio::time::timeout(Duration::from_secs(10), async {
            while records(&lesson.store).is_empty() {
                commits.changed().await.unwrap();
            }
        });
        written
            .await
            .expect("the record is written once the manual clock passed the ack timeout");
        assert_eq!(records(&lesson.store), [("lock".to_owned(), 0, 1)]);
        lesson.shutdown.cancel();
        driver.await.unwrap();
        assert_eq!(
            records(&lesson.store).len(),
            1,
            "the stop writes no record twice"
        );
    }

    #[tokio::test]
    async fn the_stop_returns_once_the_record_of_each_waiting_command_is_in_the_outbox() {
        let (_dir, clock, store) = testing::store();
        let lesson = lesson(store, clock);
        let _first = lesson.connect(tablet("tab-1"), 0);
        let _second = lesson.connect(tablet("tab-2"), 0);
        let driver = tokio::spawn(lesson.clone().run());
        let lock = lesson
            .issue(
                Command::Lock {
                    message: String::new(),
                },
                Audience::Class,
            )
            .unwrap();
        lesson
            .issue(
                Command::Message {
                    text: "Chào các em".into(),
                },
                Audience::Class,
            )
            .unwrap();
        lesson.ack("tab-2", lock.id).unwrap();
        lesson.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), driver)
            .await
            .expect("the lesson drains")
            .unwrap();
        assert_eq!(
            records(&lesson.store),
            [("lock".to_owned(), 1, 2), ("message".to_owned(), 0, 2)],
            "written before the lesson returned"
        );

        // A command the teacher gives while the agent stops has nobody left to time it: recorded at once.
        let mut commits = lesson.store.subscribe_commits();
        lesson.issue(Command::Unlock, Audience::Class).unwrap();
        let written = tokio::time::timeout(Duration::from_secs(10), async {
            while records(&lesson.store).len() < 3 {
                commits.changed().await.unwrap();
            }
        });
        written.await.expect("the unlock's record is written");
        assert_eq!(records(&lesson.store)[2], ("unlock".to_owned(), 0, 2));
    }
}
