//! Learning content from the province's content directory to the rooms'
//! content stores, over whichever link each room has, beside its records.
//!
//! The province's staff put files under `[content] dir`: `all/…` for every
//! room, `schools/<school_code>/…` for that school's rooms,
//! `rooms/<school_code>/<room_id>/…` for one room; the path under that place
//! is the name tablets request (`/content/<name>`). [`Library`] knows what
//! the directory holds; [`ContentPush`] is one link's task that pushes the
//! room what it lacks (`PutContent`) and records the room's answers
//! (`store::content`).
//!
//! # Design
//! - **Beside the records, never in their way.** A link's push is a task of
//!   its own sharing the link's `Channel` (HTTP/2 carries the Pull stream and
//!   the pushes side by side). The Pull loop only nudges it at each heartbeat;
//!   it never waits for a scan, a hash or a push. At most
//!   `content.files_at_once` files go to a room at once, in chunks of 1 MiB,
//!   each call timed out after the request timeout plus its size at
//!   `content.min_kib_per_second`. The task ends with the link (dropping
//!   [`ContentPush`] cancels it), and a file cut off half-way is pushed whole
//!   again next time: the room replaces a name only once every byte arrived.
//! - **What to push.** A room is pushed a name when PostgreSQL records no
//!   accepted version of it at the file's SHA-256 and no refusal of that
//!   version. A more specific place wins over a general one for the same name.
//! - **Scanning.** Files are hashed once per (path, size, modification time);
//!   the directory is listed again at most every [`RESCAN_AFTER`], whichever
//!   link asks, so hundreds of rooms' heartbeats cost one listing. A link
//!   looks again when the listing changed, or when its last round left files
//!   to try again (a timeout, a room that could not write).
//! - **Nothing dropped silently.** A file that cannot be sent (hidden, outside
//!   the three places, unreadable, not a regular file) is logged once, shown
//!   on `/healthz` and counted on `/metrics` for as long as it is there. The
//!   hub sends only the proto's rules' names; the room's own limits (say, a
//!   name over 255 bytes) come back as its refusal, recorded per room.
//! - **Not supported:** removing a file from the rooms. The proto has no call
//!   for it; a file removed here stays in the rooms' stores.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::Pool;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::{ContentConfig, RoomKey, SyncConfig, valid_code};
use crate::health::Board;
use crate::proto::PutContentChunk;
use crate::proto::sync_service_client::SyncServiceClient;
use crate::store::{StoreError, content as store};

/// The size of each chunk of a pushed file, as the proto advises.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// How old a listing of the content directory may be before a link asks for a new one.
pub const RESCAN_AFTER: Duration = Duration::from_secs(2);

/// Where a file of the content directory goes; ordered from the most general
/// to the most specific, which wins for a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Place {
    All,
    School(String),
    Room(RoomKey),
}

impl Place {
    /// Whether the place's files go to `room`.
    fn covers(&self, room: &RoomKey) -> bool {
        match self {
            Place::All => true,
            Place::School(school) => *school == room.school_code,
            Place::Room(key) => key == room,
        }
    }
}

/// One file of the content directory, ready to push.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentFile {
    place: Place,
    /// The name in the rooms' content stores.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A file of the content directory that is not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Unsendable {
    pub path: PathBuf,
    pub reason: String,
}

/// One listing of the content directory.
#[derive(Debug, Default)]
pub struct Catalogue {
    files: Vec<ContentFile>,
    pub unsendable: Vec<Unsendable>,
    /// Changes whenever a file's content, name or place changes, or what cannot be sent.
    pub generation: u64,
}

impl Catalogue {
    /// The files `room` should hold, by name, the most specific place winning.
    pub fn for_room(&self, room: &RoomKey) -> BTreeMap<&str, &ContentFile> {
        let mut chosen: BTreeMap<&str, &ContentFile> = BTreeMap::new();
        for file in self.files.iter().filter(|file| file.place.covers(room)) {
            match chosen.get(file.name.as_str()) {
                Some(held) if held.place >= file.place => {}
                _ => {
                    chosen.insert(&file.name, file);
                }
            }
        }
        chosen
    }
}

/// A file's hash, valid while its size and modification time are these.
#[derive(Debug, Clone, Copy)]
struct Hashed {
    size: u64,
    modified: Option<SystemTime>,
    sha256: [u8; 32],
}

struct Listing {
    at: Option<Instant>,
    hashes: HashMap<PathBuf, Hashed>,
    catalogue: Arc<Catalogue>,
}

/// The province's content directory, as the rooms' links see it.
pub struct Library {
    config: ContentConfig,
    board: Board,
    listing: Mutex<Listing>,
}

impl Library {
    pub fn new(config: ContentConfig, board: Board) -> Library {
        Library {
            config,
            board,
            listing: Mutex::new(Listing {
                at: None,
                hashes: HashMap::new(),
                catalogue: Arc::default(),
            }),
        }
    }

    /// The directory's files, listed at most [`RESCAN_AFTER`] ago; files new
    /// or changed since the last listing are hashed now.
    pub async fn current(&self) -> Arc<Catalogue> {
        let mut listing = self.listing.lock().await;
        if listing.at.is_some_and(|at| at.elapsed() < RESCAN_AFTER) {
            return listing.catalogue.clone();
        }
        let dir = self.config.dir.get_ref().clone();
        let previous = std::mem::take(&mut listing.hashes);
        let scanned = tokio::task::spawn_blocking(move || scan(&dir, &previous)).await;
        let (catalogue, hashes) = match scanned {
            Ok(scanned) => scanned,
            Err(err) => {
                tracing::error!("listing the content directory failed: {err}");
                return listing.catalogue.clone();
            }
        };
        if catalogue.unsendable != listing.catalogue.unsendable {
            for file in &catalogue.unsendable {
                tracing::warn!(path = %file.path.display(), "a content file is not sent to any room: {}", file.reason);
            }
            metrics::gauge!("province_hub_content_unsendable_files")
                .set(catalogue.unsendable.len() as f64);
            self.board.content_unsendable(catalogue.unsendable.clone());
        }
        if catalogue.generation != listing.catalogue.generation {
            metrics::gauge!("province_hub_content_files").set(catalogue.files.len() as f64);
            tracing::info!(
                files = catalogue.files.len(),
                unsendable = catalogue.unsendable.len(),
                "the content directory changed"
            );
        }
        let catalogue = Arc::new(catalogue);
        *listing = Listing {
            at: Some(Instant::now()),
            hashes,
            catalogue: catalogue.clone(),
        };
        catalogue
    }
}

/// Lists `dir`, reusing the `previous` hashes of files whose size and
/// modification time did not change.
fn scan(dir: &Path, previous: &HashMap<PathBuf, Hashed>) -> (Catalogue, HashMap<PathBuf, Hashed>) {
    let mut scan = Scan {
        previous,
        hashes: HashMap::new(),
        catalogue: Catalogue::default(),
    };
    scan.top(dir);
    let mut catalogue = scan.catalogue;
    catalogue
        .files
        .sort_by(|a, b| (&a.place, &a.name).cmp(&(&b.place, &b.name)));
    catalogue.unsendable.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in &catalogue.files {
        (&file.place, &file.name, file.size, file.sha256).hash(&mut hasher);
    }
    catalogue.unsendable.hash(&mut hasher);
    catalogue.generation = hasher.finish();
    (catalogue, scan.hashes)
}

struct Scan<'a> {
    previous: &'a HashMap<PathBuf, Hashed>,
    hashes: HashMap<PathBuf, Hashed>,
    catalogue: Catalogue,
}

const PLACES: &str =
    "files go under all/, schools/<school_code>/ or rooms/<school_code>/<room_id>/";

impl Scan<'_> {
    fn refuse(&mut self, path: PathBuf, reason: impl Into<String>) {
        self.catalogue.unsendable.push(Unsendable {
            path,
            reason: reason.into(),
        });
    }

    /// The entries of `dir` that are directories, by name; anything else is reported.
    fn subdirectories(&mut self, dir: &Path, expected: &str) -> Vec<(String, PathBuf)> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.refuse(dir.to_owned(), format!("cannot list it: {err}"));
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.refuse(dir.to_owned(), format!("cannot list it: {err}"));
                    continue;
                }
            };
            let path = entry.path();
            let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
            match entry.file_name().into_string() {
                Ok(name) if is_dir && valid_code(&name) => found.push((name, path)),
                _ => self.refuse(path, format!("expected {expected}: {PLACES}")),
            }
        }
        found
    }

    fn top(&mut self, dir: &Path) {
        for (name, path) in self.subdirectories(dir, "all, schools or rooms") {
            match name.as_str() {
                "all" => self.files(&path, "", &Place::All),
                "schools" => {
                    for (school, path) in self.subdirectories(&path, "a school code") {
                        self.files(&path, "", &Place::School(school));
                    }
                }
                "rooms" => {
                    for (school, path) in self.subdirectories(&path, "a school code") {
                        for (room_id, path) in self.subdirectories(&path, "a room id") {
                            let room = RoomKey {
                                school_code: school.clone(),
                                room_id,
                            };
                            self.files(&path, "", &Place::Room(room));
                        }
                    }
                }
                _ => self.refuse(path, format!("expected all, schools or rooms: {PLACES}")),
            }
        }
    }

    /// Every file under `dir`, named `prefix` + its path under `dir`.
    fn files(&mut self, dir: &Path, prefix: &str, place: &Place) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => return self.refuse(dir.to_owned(), format!("cannot list it: {err}")),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.refuse(dir.to_owned(), format!("cannot list it: {err}"));
                    continue;
                }
            };
            let path = entry.path();
            let Ok(segment) = entry.file_name().into_string() else {
                self.refuse(path, "its name is not UTF-8: rename it");
                continue;
            };
            if segment.starts_with('.') {
                self.refuse(
                    path,
                    "hidden files and directories are not sent: rename it without the leading '.' to send it",
                );
                continue;
            }
            let name = format!("{prefix}{segment}");
            // Symbolic links are followed: the file they lead to is sent.
            let metadata = match std::fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(err) => {
                    self.refuse(path, format!("cannot read it: {err}"));
                    continue;
                }
            };
            if metadata.is_dir() {
                self.files(&path, &format!("{name}/"), place);
            } else if !metadata.is_file() {
                self.refuse(path, "not a regular file");
            } else {
                let modified = metadata.modified().ok();
                let size = metadata.len();
                let known = self
                    .previous
                    .get(&path)
                    .filter(|h| h.size == size && h.modified == modified && modified.is_some());
                let hashed = match known {
                    Some(hashed) => *hashed,
                    None => match hash_file(&path) {
                        Ok((size, sha256)) => Hashed {
                            size,
                            modified,
                            sha256,
                        },
                        Err(err) => {
                            self.refuse(path, format!("cannot read it: {err}"));
                            continue;
                        }
                    },
                };
                self.hashes.insert(path.clone(), hashed);
                self.catalogue.files.push(ContentFile {
                    place: place.clone(),
                    name,
                    path,
                    size: hashed.size,
                    sha256: hashed.sha256,
                });
            }
        }
    }
}

/// The length and SHA-256 of the file at `path`.
fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((size, hasher.finalize().into()))
}

/// What became of one push.
#[derive(Debug)]
enum Outcome {
    Stored,
    /// The room refused this version for good (a name or size it does not accept).
    Refused(String),
    /// The room could not store it now; try again.
    NotStored(String),
    /// The push did not get an answer (timeout, link down, the file changed under it); try again.
    Failed(String),
}

/// Pushes `file` to the room over `client`, within `timeout`.
async fn push_file(
    mut client: SyncServiceClient<Channel>,
    file: ContentFile,
    timeout: Duration,
) -> Outcome {
    let (tx, rx) = mpsc::channel(2);
    // Held open past the call when reading fails, so the room sees the call
    // cut off rather than a stream that ends early.
    let mut held_open = None;
    let reader = read_chunks(&file, tx);
    let call = client.put_content(ReceiverStream::new(rx));
    let work = async {
        tokio::pin!(reader, call);
        let mut read = false;
        loop {
            tokio::select! {
                answer = &mut call => return match answer {
                    Ok(_) => Outcome::Stored,
                    Err(status) => classify(status, &file.name),
                },
                result = &mut reader, if !read => match result {
                    Ok(()) => read = true,
                    Err((reason, tx)) => {
                        held_open = Some(tx);
                        return Outcome::Failed(reason);
                    }
                },
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Outcome::Failed(format!("no answer within {timeout:?}")))
}

/// The room's answer to the push of `name`. `UNAVAILABLE` is also what the
/// link itself says when it drops: only the room's own answer names the file.
fn classify(status: tonic::Status, name: &str) -> Outcome {
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            Outcome::Refused(status.message().to_owned())
        }
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            if status.message().contains(name) =>
        {
            Outcome::NotStored(status.message().to_owned())
        }
        _ => Outcome::Failed(format!("PutContent failed: {status}")),
    }
}

/// Sends `file` down `tx` in chunks of [`CHUNK_BYTES`], the first with its
/// name, size and SHA-256. Fails, giving `tx` back, when the file cannot be
/// read or no longer has the size and SHA-256 announced.
async fn read_chunks(
    file: &ContentFile,
    tx: mpsc::Sender<PutContentChunk>,
) -> Result<(), (String, mpsc::Sender<PutContentChunk>)> {
    let mut opened = match tokio::fs::File::open(&file.path).await {
        Ok(opened) => opened,
        Err(err) => return Err((format!("cannot read {}: {err}", file.path.display()), tx)),
    };
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    let mut first = true;
    loop {
        let mut data = vec![0; CHUNK_BYTES];
        let mut filled = 0;
        while filled < CHUNK_BYTES {
            match opened.read(&mut data[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) => {
                    return Err((format!("cannot read {}: {err}", file.path.display()), tx));
                }
            }
        }
        data.truncate(filled);
        sent += filled as u64;
        if sent > file.size {
            return Err((changed(file), tx));
        }
        hasher.update(&data);
        let last = filled < CHUNK_BYTES;
        if last && (sent != file.size || <[u8; 32]>::from(hasher.clone().finalize()) != file.sha256)
        {
            return Err((changed(file), tx));
        }
        let chunk = if first {
            PutContentChunk {
                name: file.name.clone(),
                size: file.size,
                sha256: file.sha256.to_vec(),
                data,
            }
        } else {
            PutContentChunk {
                data,
                ..Default::default()
            }
        };
        first = false;
        if tx.send(chunk).await.is_err() || last {
            // The call ended (the room answered early), or every byte is sent: ending the stream.
            return Ok(());
        }
    }
}

fn changed(file: &ContentFile) -> String {
    format!(
        "{} changed while it was sent; it is sent again once the content directory is listed again",
        file.path.display()
    )
}

/// One link's content push: a task beside the link's Pull that pushes the
/// room what it lacks, started after `GetStatus` and looking again at each
/// heartbeat. Dropping it ends the task and any push in flight.
pub struct ContentPush {
    token: CancellationToken,
    nudge: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// What a link's push needs, owned so that it may run as a task of its own.
pub struct PushContext {
    pub library: Arc<Library>,
    pub client: SyncServiceClient<Channel>,
    pub pool: Pool,
    pub room: RoomKey,
    /// How the room is linked: [`crate::health::PULL`] or [`crate::health::DIAL_IN`].
    pub link: &'static str,
    pub sync: SyncConfig,
}

impl ContentPush {
    /// Starts the push; it ends with `link` (the link's cancellation) or when dropped.
    pub fn start(context: PushContext, link: &CancellationToken) -> ContentPush {
        let token = link.child_token();
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(keep_pushing(context, token.clone(), nudge.clone()));
        ContentPush { token, nudge, task }
    }

    /// The room's heartbeat arrived: look whether the directory changed.
    pub fn heartbeat(&self) {
        self.nudge.notify_one();
    }
}

impl Drop for ContentPush {
    fn drop(&mut self) {
        self.token.cancel();
        self.task.abort();
    }
}

async fn keep_pushing(context: PushContext, token: CancellationToken, nudge: Arc<Notify>) {
    let mut settled_generation = None;
    loop {
        let catalogue = tokio::select! {
            () = token.cancelled() => return,
            catalogue = context.library.current() => catalogue,
        };
        if settled_generation != Some(catalogue.generation) {
            let round = tokio::select! {
                () = token.cancelled() => return,
                round = push_round(&context, &catalogue) => round,
            };
            match round {
                Ok(true) => settled_generation = Some(catalogue.generation),
                Ok(false) => settled_generation = None,
                Err(err) => {
                    tracing::warn!(room = %context.room, "content push: {err}; tried again at the next heartbeat");
                    settled_generation = None;
                }
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = nudge.notified() => {}
        }
    }
}

/// Pushes every file the room lacks; true when none is left to try again.
async fn push_round(context: &PushContext, catalogue: &Catalogue) -> Result<bool, StoreError> {
    let room = &context.room;
    let answered = {
        let db = context.pool.get().await?;
        store::answered(&db, room).await?
    };
    let mut wanted = catalogue
        .for_room(room)
        .into_values()
        .filter(|file| {
            answered
                .get(&file.name)
                .is_none_or(|answer| !answer.settled(&file.sha256))
        })
        .cloned()
        .collect::<Vec<_>>()
        .into_iter();
    let config = &context.library.config;
    let at_once = *config.files_at_once.get_ref();
    let labels = [
        ("school", room.school_code.clone()),
        ("room", room.room_id.clone()),
    ];
    let mut pushing = JoinSet::new();
    let mut complete = true;
    loop {
        while pushing.len() < at_once
            && let Some(file) = wanted.next()
        {
            let timeout = config.push_timeout(&context.sync, file.size);
            let client = context.client.clone();
            pushing.spawn(async move {
                let outcome = push_file(client, file.clone(), timeout).await;
                (file, outcome)
            });
        }
        let Some(done) = pushing.join_next().await else {
            break;
        };
        let Ok((file, outcome)) = done else {
            complete = false;
            continue;
        };
        let db = context.pool.get().await?;
        match outcome {
            Outcome::Stored => {
                store::record_delivered(
                    &db,
                    room,
                    &file.name,
                    &file.sha256,
                    file.size,
                    context.link,
                )
                .await?;
                metrics::counter!("province_hub_content_files_pushed_total", &labels).increment(1);
                tracing::info!(room = %room, name = %file.name, size = file.size, "the room stored a content file");
            }
            Outcome::Refused(reason) => {
                store::record_refused(&db, room, &file.name, Some(&file.sha256), &reason).await?;
                metrics::counter!("province_hub_content_refusals_total", &labels).increment(1);
                tracing::warn!(room = %room, name = %file.name, "the room refused a content file: {reason}; see content_deliveries");
            }
            Outcome::NotStored(reason) => {
                complete = false;
                store::record_refused(&db, room, &file.name, None, &reason).await?;
                metrics::counter!("province_hub_content_push_failures_total", &labels).increment(1);
                tracing::warn!(room = %room, name = %file.name, "the room could not store a content file: {reason}; tried again at the next heartbeat");
            }
            Outcome::Failed(reason) => {
                complete = false;
                metrics::counter!("province_hub_content_push_failures_total", &labels).increment(1);
                tracing::warn!(room = %room, name = %file.name, "a content push failed: {reason}; tried again at the next heartbeat");
            }
        }
    }
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    fn room(school: &str, room: &str) -> RoomKey {
        RoomKey {
            school_code: school.into(),
            room_id: room.into(),
        }
    }

    #[test]
    fn only_the_rooms_own_answers_are_recorded_as_refusals() {
        let name = "toan/bai-3.pdf";
        let refused =
            tonic::Status::invalid_argument(format!("`{name}` is not a content file name"));
        assert!(matches!(classify(refused, name), Outcome::Refused(_)));
        let full =
            tonic::Status::unavailable(format!("`{name}`: cannot write to the content store"));
        assert!(matches!(classify(full, name), Outcome::NotStored(_)));
        let dropped = tonic::Status::unavailable("error reading a body from connection");
        assert!(matches!(classify(dropped, name), Outcome::Failed(_)));
        let cut = tonic::Status::cancelled("the link ended");
        assert!(matches!(classify(cut, name), Outcome::Failed(_)));
    }

    #[test]
    fn the_most_specific_file_of_a_name_goes_to_each_room() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "all/toan/bai-1.pdf", "chung");
        write(dir.path(), "all/lich.txt", "tinh");
        write(dir.path(), "schools/LC-01/lich.txt", "truong");
        write(dir.path(), "rooms/LC-01/P201/lich.txt", "phong");
        write(dir.path(), "rooms/LC-01/P202/rieng.txt", "p202");
        let (catalogue, _) = scan(dir.path(), &HashMap::new());
        assert!(
            catalogue.unsendable.is_empty(),
            "{:?}",
            catalogue.unsendable
        );
        let chosen = |school, id| -> Vec<(String, String)> {
            catalogue
                .for_room(&room(school, id))
                .into_iter()
                .map(|(name, file)| {
                    (
                        name.to_owned(),
                        std::fs::read_to_string(&file.path).unwrap(),
                    )
                })
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect()
        };
        assert_eq!(
            chosen("LC-01", "P201"),
            pairs(&[("lich.txt", "phong"), ("toan/bai-1.pdf", "chung")])
        );
        assert_eq!(
            chosen("LC-01", "P202"),
            pairs(&[
                ("lich.txt", "truong"),
                ("rieng.txt", "p202"),
                ("toan/bai-1.pdf", "chung")
            ])
        );
        assert_eq!(
            chosen("LC-02", "P201"),
            pairs(&[("lich.txt", "tinh"), ("toan/bai-1.pdf", "chung")])
        );
    }

    #[test]
    fn files_that_cannot_be_sent_are_listed_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "all/.DS_Store", "x");
        write(dir.path(), "all/.git/config", "x");
        write(dir.path(), "all/ok.txt", "x");
        write(dir.path(), "loose.pdf", "x");
        write(dir.path(), "schools/not a code/a.txt", "x");
        let (catalogue, _) = scan(dir.path(), &HashMap::new());
        let unsendable: Vec<String> = catalogue
            .unsendable
            .iter()
            .map(|u| {
                u.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            unsendable,
            [
                "all/.DS_Store",
                "all/.git",
                "loose.pdf",
                "schools/not a code"
            ]
        );
        assert!(catalogue.unsendable[0].reason.contains("hidden"));
        assert!(catalogue.unsendable[2].reason.contains("all/"));
        assert_eq!(catalogue.files.len(), 1);
    }

    #[test]
    fn a_file_is_hashed_again_only_when_its_size_or_time_changes_and_its_content_changes_the_generation()
     {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "all/a.txt", "one");
        let (first, hashes) = scan(dir.path(), &HashMap::new());
        // A stale hash kept for the same size and time is reused, not recomputed.
        let mut stale = hashes.clone();
        stale.values_mut().for_each(|h| h.sha256 = [7; 32]);
        let (reused, _) = scan(dir.path(), &stale);
        assert_eq!(reused.files[0].sha256, [7; 32]);
        let (again, hashes) = scan(dir.path(), &hashes);
        assert_eq!(again.generation, first.generation);
        write(dir.path(), "all/a.txt", "two!");
        let (changed, _) = scan(dir.path(), &hashes);
        assert_ne!(changed.generation, first.generation);
        assert_eq!(
            changed.files[0].sha256,
            <[u8; 32]>::from(Sha256::digest(b"two!"))
        );
    }
}
