//! Hand-in and show: a pupil hands in a photo from the tablet's camera, a
//! drawing or a text; the teacher sees every hand-in of the lesson on the
//! panel and puts one full screen for the class.
//!
//! # Design
//! - **Over HTTP, not the live channel.** A photo is megabytes; the live
//!   channel's frames are bounded to kilobytes so that one tablet cannot hold
//!   up the others. A tablet posts `POST /tablet/hand-in` with its device
//!   token (`Authorization: Bearer`) and a JSON body: `{"kind": "photo" |
//!   "drawing", "image": "<base64>"}` or `{"kind": "text", "text": "…"}`.
//!   JSON, because every request that changes the room must say so
//!   ([`crate::http::guard`]); base64 costs a third more bytes on the room's
//!   LAN, nothing on the hub's link.
//! - **Bounded.** The body is read up to `tablets.hand_in_max_bytes` (as
//!   decoded bytes, plus base64's third) within [`BODY_DEADLINE`]; a tablet has
//!   one hand-in under way at a time and at most [`PER_MINUTE`] a minute on
//!   the agent's monotonic clock; at most [`DECODING_AT_ONCE`] images are
//!   decoded and encoded at once. A tablet refused before its body is read
//!   (unpaired, no pupil, too soon) still has what it sends read and thrown
//!   away, within the same bound and [`DISCARD_DEADLINE`] ([`discard`]), so
//!   that it gets the refusal rather than a reset.
//! - **Within a memory bound.** 40 tablets handing in together must not hold
//!   40 photos in memory: a hand-in takes one of [`READING_AT_ONCE`] turns
//!   before its body is read and keeps it until its picture is re-encoded.
//!   The others wait, their bodies still on the network, at most
//!   [`TURN_DEADLINE`] (then the tablet is told to send again). A turn holds
//!   one buffer of the body (sized by `Content-Length`), the image's bytes
//!   decoded from base64 straight out of it (the JSON's string is borrowed,
//!   not copied), then the decoded picture; each is dropped as soon as the
//!   next is made. The kept picture and the thumbnail are scaled down by
//!   averaging areas, without the floating-point copy of the whole picture
//!   a filtered resize makes, the thumbnail from the kept picture. The
//!   decoders the agent has (JPEG, PNG, BMP, WebP) cannot decode at a
//!   reduced size, so a picture is decoded whole.
//! - **Checked by decoding.** An image is decoded by the roll call's decoder
//!   with its limits ([`crate::attendance::pipeline::decode_upright`]: at most
//!   8192 pixels a side and 128 MiB of pixels), which also turns a camera's
//!   sideways photo upright. What is not an image, is cut short or damaged,
//!   or would take too much memory is refused with a reply saying which.
//! - **No more than needed.** The picture is re-encoded as a JPEG of at most
//!   [`MAX_SIDE`] pixels a side, big enough for the panel, and a thumbnail of
//!   [`THUMBNAIL_SIDE`] made beside it (the `image` crate); the upload's
//!   bytes, with their EXIF (place, time, the device), are never written.
//! - **Recorded.** The files are written (0600, in the store's hand-ins area,
//!   see [`crate::store::hand_ins`]), then the row and the outbox event
//!   `lesson.hand_in` commit together. The hub receives a reference (id,
//!   lesson, pupil, kind, size, SHA-256); the file stays in the room. A store
//!   that refuses the commit deletes the files and tells the tablet to send
//!   again (503), as an answer would be.
//! - Only a tablet held by a pupil hands in: the work names the pupil
//!   (personal ID) and the lesson by the timetable's period. The outbox event
//!   names the pupil only with the parents' consent to keep learning records,
//!   as answers do; the room's own row always does, so that the teacher sees
//!   whose it is and erasure finds it.
//! - The panel's routes (`/api/hand-ins…`) are the teacher's: the list of a
//!   lesson, each file and thumbnail (never cached by the browser), and a
//!   pupil's erasure. The panel learns of a new hand-in from its live feed:
//!   the outbox event is a record like any other.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{Lesson, TabletsConfig};
use crate::attendance::pipeline::{self, DecodeError};
use crate::clock::Monotonic;
use crate::http::error::{ApiError, JsonBody, PathParams, QueryParams};
use crate::proto;
use crate::store::hand_ins::{self, HandIn, HandInKind};
use crate::store::tablets::Tablet;

/// The longest side of a kept picture: a 4K panel shows it full height.
pub const MAX_SIDE: u32 = 2160;
/// The longest side of a thumbnail on the panel's strip.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Images decoded and encoded at once, whatever the number of tablets.
pub const DECODING_AT_ONCE: usize = 2;
/// Hand-ins whose bodies are read and held at once: enough to keep the
/// decoders busy while the next bodies arrive.
pub const READING_AT_ONCE: usize = 4;
/// Hand-ins a tablet may make in a minute.
pub const PER_MINUTE: usize = 10;
/// The longest a hand-in's body may take to arrive. A bounded wait on a
/// peer over the network: on the runtime's own timer.
const BODY_DEADLINE: Duration = Duration::from_secs(60);
/// The longest a refused hand-in's body is read on, to be thrown away.
const DISCARD_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a hand-in waits for its turn to be read: 40 tablets at once
/// take well under this on the panel's hardware. On the runtime's timer, as
/// the body's deadline.
const TURN_DEADLINE: Duration = Duration::from_secs(120);
/// The most characters of a text hand-in.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// The range `tablets.hand_in_max_bytes` may take.
const MAX_BYTES_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=64 * 1024 * 1024;

const JPEG_QUALITY: u8 = 85;
const TEXT_MEDIA_TYPE: &str = "text/plain; charset=utf-8";

/// The `tablets.hand_in*` rules serde cannot express, as `(key, message, hint)`.
pub fn config_problems(config: &TabletsConfig) -> Vec<(&'static str, String, &'static str)> {
    let mut problems = Vec::new();
    if !MAX_BYTES_RANGE.contains(&config.hand_in_max_bytes) {
        problems.push((
            "tablets.hand_in_max_bytes",
            format!("{} bytes is out of range", config.hand_in_max_bytes),
            "use 65536 to 67108864; 8388608 (8 MiB) takes any tablet's camera photo",
        ));
    }
    if config.hand_ins_kept == 0 {
        problems.push((
            "tablets.hand_ins_kept",
            "0 would delete every hand-in as it arrives".to_owned(),
            "keep at least 1; 2000 is some weeks of a class's work in about 1 GB",
        ));
    }
    problems
}

/// What a tablet posts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload<'a> {
    kind: HandInKind,
    /// A photo or drawing, base64 (standard alphabet).
    #[serde(default, borrow)]
    image: Option<Base64<'a>>,
    #[serde(default)]
    text: Option<String>,
}

/// A picture's base64, borrowed from the body unless JSON escaped some of it
/// (base64 needs no escape but an encoder may write `/` as `\/`).
#[derive(Debug, Deserialize)]
struct Base64<'a>(#[serde(borrow)] Cow<'a, str>);

/// A hand-in ready to be written: the file, its thumbnail and its type.
#[derive(Debug)]
pub struct Prepared {
    pub file: Vec<u8>,
    pub thumbnail: Option<Vec<u8>>,
    pub media_type: &'static str,
}

/// Why a hand-in was refused; each becomes the reply the tablet shows.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the hand-in is {size} bytes, more than tablets.hand_in_max_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("the upload is not an image the agent reads (JPEG, PNG, BMP or WebP)")]
    NotAnImage,
    #[error("the image is cut short or damaged: {0}")]
    Damaged(String),
    #[error("{0}")]
    TooManyPixels(DecodeError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the text is empty")]
    EmptyText,
    #[error("the text has {0} characters, more than {MAX_TEXT_CHARS}")]
    TextTooLong(usize),
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        let detail = refused.to_string();
        match refused {
            Refused::TooLarge { max, .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "hand_in_too_large",
                format!(
                    "Bài nộp quá lớn (tối đa {} MB). Em hãy chụp lại với ảnh nhỏ hơn.",
                    max / (1024 * 1024)
                ),
                detail,
            )
            .with("max_bytes", max),
            Refused::NotAnImage => ApiError::bad_request(
                "not_an_image",
                "Tệp này không phải là ảnh. Em hãy chọn ảnh chụp hoặc hình vẽ.",
                detail,
            ),
            Refused::Damaged(_) => ApiError::bad_request(
                "damaged_image",
                "Ảnh bị hỏng hoặc chưa tải hết. Em hãy chụp lại.",
                detail,
            ),
            Refused::TooManyPixels(_) => ApiError::bad_request(
                "image_too_large",
                "Ảnh có kích thước quá lớn. Em hãy chụp lại với độ phân giải thấp hơn.",
                detail,
            ),
            Refused::BadRequest(_) => {
                ApiError::bad_request("bad_hand_in", "Bài nộp không hợp lệ.", detail)
            }
            Refused::EmptyText => {
                ApiError::bad_request("empty_text", "Em chưa viết gì để nộp.", detail)
            }
            Refused::TextTooLong(_) => ApiError::bad_request(
                "text_too_long",
                format!("Bài viết dài quá {MAX_TEXT_CHARS} ký tự."),
                detail,
            ),
        }
    }
}

/// Checks and re-encodes what a tablet handed in. Blocking (decoding and
/// encoding an image take tens of milliseconds): run it off the async runtime.
pub fn prepare(kind: HandInKind, image: &[u8], text: &str) -> Result<Prepared, Refused> {
    if kind.is_image() {
        let picture = decode(image)?;
        let kept = fit(&picture, MAX_SIDE).unwrap_or(picture);
        let thumbnail = fit(&kept, THUMBNAIL_SIDE);
        Ok(Prepared {
            thumbnail: Some(encode_jpeg(thumbnail.as_ref().unwrap_or(&kept))?),
            file: encode_jpeg(&kept)?,
            media_type: "image/jpeg",
        })
    } else {
        let text: String =
            unicode_normalization::UnicodeNormalization::nfc(text.trim()).collect::<String>();
        let chars = text.chars().count();
        if chars == 0 {
            return Err(Refused::EmptyText);
        }
        if chars > MAX_TEXT_CHARS {
            return Err(Refused::TextTooLong(chars));
        }
        Ok(Prepared {
            file: text.into_bytes(),
            thumbnail: None,
            media_type: TEXT_MEDIA_TYPE,
        })
    }
}

fn decode(bytes: &[u8]) -> Result<RgbImage, Refused> {
    if image::guess_format(bytes).is_err() {
        return Err(Refused::NotAnImage);
    }
    pipeline::decode_upright(bytes).map_err(|err| match err {
        DecodeError::Unreadable(why) => Refused::Damaged(why),
        too_large @ DecodeError::TooLarge { .. } => Refused::TooManyPixels(too_large),
    })
}

/// The picture scaled down, keeping its proportions, to at most `side` pixels
/// a side, each pixel the average of the area it covers; `None` when it is
/// no larger already.
fn fit(picture: &RgbImage, side: u32) -> Option<RgbImage> {
    let (width, height) = picture.dimensions();
    let longest = width.max(height);
    if longest <= side {
        return None;
    }
    let scaled = |length: u32| {
        let length =
            (u64::from(length) * u64::from(side) + u64::from(longest) / 2) / u64::from(longest);
        (length as u32).max(1)
    };
    Some(image::imageops::thumbnail(
        picture,
        scaled(width),
        scaled(height),
    ))
}

fn encode_jpeg(picture: &RgbImage) -> Result<Vec<u8>, Refused> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut bytes), JPEG_QUALITY)
        .encode_image(picture)
        .map_err(|err| Refused::Damaged(format!("cannot encode it again: {err}")))?;
    Ok(bytes)
}

/// The hand-ins each tablet has under way and made lately.
#[derive(Default)]
struct Pace {
    under_way: std::collections::HashSet<String>,
    recent: HashMap<String, VecDeque<Monotonic>>,
}

/// What the tablets' route shares: the pace of each tablet, the turns to be
/// read and the decoders' permits.
struct Desk {
    lesson: Arc<Lesson>,
    pace: Mutex<Pace>,
    reading: Semaphore,
    decoding: Semaphore,
}

/// A tablet's hand-in under way; ends it when dropped, however the request ended.
struct UnderWay<'a> {
    desk: &'a Desk,
    tablet_id: String,
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.desk
            .pace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .under_way
            .remove(&self.tablet_id);
    }
}

impl Desk {
    /// Lets a tablet start a hand-in, or says why not.
    fn begin(&self, tablet_id: &str) -> Result<UnderWay<'_>, ApiError> {
        let now = self.lesson.clock.monotonic();
        let mut pace = self
            .pace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pace.under_way.contains(tablet_id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "hand_in_under_way",
                "Bài trước của em đang được gửi. Em chờ một chút nhé.",
                "this tablet has a hand-in under way; send the next once it is answered",
            )
            .retry_after(Duration::from_secs(1)));
        }
        let recent = pace.recent.entry(tablet_id.to_owned()).or_default();
        while recent
            .front()
            .is_some_and(|at| now.saturating_since(*at) >= Duration::from_secs(60))
        {
            recent.pop_front();
        }
        if recent.len() >= PER_MINUTE {
            let wait = Duration::from_secs(60).saturating_sub(now.saturating_since(recent[0]));
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_hand_ins",
                "Em đã nộp nhiều bài quá. Em chờ một lát rồi nộp tiếp.",
                format!("this tablet handed in {PER_MINUTE} times in the last minute"),
            )
            .retry_after(wait.max(Duration::from_secs(1))));
        }
        recent.push_back(now);
        pace.under_way.insert(tablet_id.to_owned());
        Ok(UnderWay {
            desk: self,
            tablet_id: tablet_id.to_owned(),
        })
    }
}

/// What tablets reach: the upload, and the page's script for it.
pub fn tablet_routes<S>(lesson: &Arc<Lesson>) -> Router<S> {
    let desk = Arc::new(Desk {
        lesson: lesson.clone(),
        pace: Mutex::new(Pace::default()),
        reading: Semaphore::new(READING_AT_ONCE),
        decoding: Semaphore::new(DECODING_AT_ONCE),
    });
    Router::new()
        .route("/tablet/hand-in", post(hand_in))
        .route("/tablet/hand_in.js", get(script))
        .with_state(desk)
}

const SCRIPT: &str = include_str!("client/hand_in.js");

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn bearer(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// Who hands in, by its bearer `token`: a paired tablet held by a pupil, with no other hand-in
/// under way and within its pace; or the refusal saying why not.
async fn admit(
    desk: &Desk,
    token: Option<String>,
) -> Result<(Tablet, String, UnderWay<'_>), ApiError> {
    let tablet = match token {
        Some(token) => desk.lesson.authenticate(&token).await,
        None => None,
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_paired",
            "Máy này chưa được ghép nối với lớp học. Em hãy nhờ thầy cô ghép nối.",
            "a hand-in needs a paired tablet's token as `Authorization: Bearer <token>`",
        )
    })?;
    let Some(personal_id) = tablet.pupil_personal_id.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_pupil",
            "Em hãy chọn tên của mình trước khi nộp bài.",
            format!(
                "tablet {} is held by no pupil: a hand-in must name whose work it is",
                tablet.tablet_id
            ),
        ));
    };
    let under_way = desk.begin(&tablet.tablet_id)?;
    Ok((tablet, personal_id, under_way))
}

/// Reads and drops what a refused tablet is still sending, up to `limit`
/// bytes and for at most [`DISCARD_DEADLINE`], so that it reads the refusal
/// rather than a connection reset (a socket closed with unread data is
/// reset, and the reset can overtake the reply). Nothing is kept.
async fn discard(body: Body, limit: usize) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_DEADLINE, drain).await;
}

/// `POST /tablet/hand-in`: checks, keeps and records a pupil's work.
async fn hand_in(State(desk): State<Arc<Desk>>, request: Request) -> Result<Response, ApiError> {
    let lesson = &desk.lesson;
    let max = lesson.config().hand_in_max_bytes;
    // base64 takes 4 bytes for 3, and the JSON around it a little.
    let body_limit = max / 3 * 4 + 4096;
    let (tablet, personal_id, _under_way) = match admit(&desk, bearer(&request)).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            discard(request.into_body(), body_limit).await;
            return Err(refusal);
        }
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(length) = announced.filter(|length| *length > 2 * body_limit) {
        return Err(Refused::TooLarge {
            size: length / 4 * 3,
            max,
        }
        .into());
    }
    let _turn = match tokio::time::timeout(TURN_DEADLINE, desk.reading.acquire()).await {
        Ok(permit) => permit.expect("the readers' semaphore is never closed"),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hand_in_busy",
                "Nhiều bạn đang nộp bài cùng lúc. Em hãy nộp lại sau một lát.",
                format!(
                    "the hand-in waited {} s for its turn behind the class's others; send it again",
                    TURN_DEADLINE.as_secs()
                ),
            )
            .retry_after(Duration::from_secs(5)));
        }
    };
    let capacity = announced.unwrap_or(0).min(body_limit);
    let body = match tokio::time::timeout(
        BODY_DEADLINE,
        read_body(request.into_body(), body_limit, capacity),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(size)) => {
            return Err(Refused::TooLarge {
                size: size / 4 * 3,
                max,
            }
            .into());
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "hand_in_too_slow",
                "Mạng chậm quá, bài chưa gửi được. Em hãy nộp lại.",
                format!(
                    "the hand-in did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            ));
        }
    };
    let Upload {
        kind,
        image: encoded,
        text,
    } = serde_json::from_slice(&body)
        .map_err(|err| Refused::BadRequest(format!("the body is not a hand-in: {err}")))?;
    let image = match (kind.is_image(), encoded) {
        (true, Some(Base64(encoded))) => decode_base64(&encoded)?,
        (true, None) => {
            return Err(Refused::BadRequest(format!("a {} needs `image`", kind.as_str())).into());
        }
        (false, _) => Vec::new(),
    };
    if image.len() > max {
        return Err(Refused::TooLarge {
            size: image.len(),
            max,
        }
        .into());
    }
    let text = text.unwrap_or_default();
    if text.len() > max {
        return Err(Refused::TooLarge {
            size: text.len(),
            max,
        }
        .into());
    }
    drop(body);
    let prepared = {
        let _permit = desk
            .decoding
            .acquire()
            .await
            .expect("the decoders' semaphore is never closed");
        tokio::task::spawn_blocking(move || prepare(kind, &image, &text))
            .await
            .map_err(|err| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "hand_in_failed",
                    "Không nhận được bài nộp. Em hãy nộp lại.",
                    format!("the worker preparing the hand-in failed: {err}"),
                )
            })??
    };
    let now = lesson.clock.now();
    let hand_in = HandIn {
        id: uuid::Uuid::now_v7().to_string(),
        lesson_id: lesson.lesson_id(),
        tablet_id: tablet.tablet_id.clone(),
        personal_id: personal_id.clone(),
        kind,
        media_type: prepared.media_type.to_owned(),
        size_bytes: prepared.file.len() as u64,
        sha256: Sha256::digest(&prepared.file).into(),
        handed_in_at_ms: now.as_millisecond(),
    };
    let event = proto::HandIn {
        hand_in_id: hand_in.id.clone(),
        lesson_id: hand_in.lesson_id.clone(),
        tablet_id: hand_in.tablet_id.clone(),
        pupil_personal_id: if tablet.pupil_learning_data_consent {
            personal_id
        } else {
            String::new()
        },
        kind: kind.as_str().to_owned(),
        media_type: hand_in.media_type.clone(),
        size_bytes: hand_in.size_bytes,
        sha256: hand_in.sha256.to_vec(),
    };
    let kept = lesson.config().hand_ins_kept;
    let record = hand_in.clone();
    lesson
        .store()
        .blocking(move |store| keep(store, &record, prepared, event, kept))
        .await?;
    tracing::info!(
        hand_in = %hand_in.id,
        tablet = %hand_in.tablet_id,
        kind = kind.as_str(),
        bytes = hand_in.size_bytes,
        "hand-in received"
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "hand_in_id": hand_in.id,
            "lesson_id": hand_in.lesson_id,
            "kind": kind.as_str(),
            "size_bytes": hand_in.size_bytes,
            "sha256": hex::encode(hand_in.sha256),
        })),
    )
        .into_response())
}

/// Writes the files, then the row and its event; a failure leaves no file behind.
fn keep(
    store: &crate::store::Store,
    hand_in: &HandIn,
    prepared: Prepared,
    event: proto::HandIn,
    kept: u32,
) -> Result<(), crate::store::StoreError> {
    let dir = store.hand_in_dir()?;
    let file = hand_ins::file_path(&dir, &hand_in.id, hand_in.kind);
    let thumbnail = hand_ins::thumbnail_path(&dir, &hand_in.id);
    let io = |source| crate::store::StoreError::DataDir {
        path: dir.clone(),
        source,
    };
    let written =
        hand_ins::write_private(&file, &prepared.file).and_then(|()| match &prepared.thumbnail {
            Some(bytes) => hand_ins::write_private(&thumbnail, bytes),
            None => Ok(()),
        });
    let result = written
        .map_err(io)
        .and_then(|()| store.record_hand_in(hand_in, event, kept).map(|_| ()));
    if result.is_err() {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&thumbnail);
    }
    result
}

/// The teacher's routes for the panel.
pub fn teacher_routes() -> Router<Arc<Lesson>> {
    Router::new()
        .route("/api/hand-ins", get(list))
        .route("/api/hand-ins/{id}/file", get(file))
        .route("/api/hand-ins/{id}/thumbnail", get(thumbnail))
        .route("/api/hand-ins/erase", post(erase))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    lesson: Option<String>,
}

/// `GET /api/hand-ins[?lesson=ID]`: the lesson's hand-ins (the one going on by default).
async fn list(
    State(lesson): State<Arc<Lesson>>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lesson_id = query.lesson.unwrap_or_else(|| lesson.lesson_id());
    let id = lesson_id.clone();
    let hand_ins = lesson
        .store()
        .blocking(move |store| store.hand_ins_of_lesson(&id))
        .await?;
    Ok(Json(
        json!({ "lesson_id": lesson_id, "hand_ins": hand_ins }),
    ))
}

async fn file(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    serve(&lesson, id, false).await
}

async fn thumbnail(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    serve(&lesson, id, true).await
}

/// One hand-in's file or thumbnail; a child's work, so the browser keeps no copy.
async fn serve(lesson: &Arc<Lesson>, id: String, thumbnail: bool) -> Result<Response, ApiError> {
    let missing = || {
        ApiError::not_found(
            "no_such_hand_in",
            "Không có bài nộp này (có thể đã bị xóa).",
            "no hand-in has this id: never handed in, erased or past tablets.hand_ins_kept",
        )
    };
    let found = lesson
        .store()
        .blocking(move |store| {
            let Some(hand_in) = store.hand_in(&id)? else {
                return Ok(None);
            };
            let dir = store.hand_in_dir()?;
            let path = if thumbnail && hand_in.kind.is_image() {
                hand_ins::thumbnail_path(&dir, &hand_in.id)
            } else {
                hand_ins::file_path(&dir, &hand_in.id, hand_in.kind)
            };
            Ok(std::fs::read(path).ok().map(|bytes| (hand_in, bytes)))
        })
        .await?;
    let (hand_in, bytes) = found.ok_or_else(missing)?;
    Ok((
        [
            (header::CONTENT_TYPE, hand_in.media_type),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Erase {
    pupil_personal_id: String,
    reason: String,
}

/// `POST /api/hand-ins/erase`: erases every hand-in of a pupil at once, files
/// and rows, and records the erasure for the hub.
async fn erase(
    State(lesson): State<Arc<Lesson>>,
    JsonBody(request): JsonBody<Erase>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let personal_id = request
        .pupil_personal_id
        .parse::<crate::roster::PersonalId>()
        .map_err(|err| {
            ApiError::bad_request(
                "bad_personal_id",
                "Mã định danh không hợp lệ",
                format!("`pupil_personal_id`: {err}"),
            )
        })?;
    let reason = request.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason_required",
            "Hãy ghi lý do xóa",
            "`reason` must say why the pupil's hand-ins are erased (it is recorded for the hub)",
        ));
    }
    let erased = lesson
        .store()
        .blocking(move |store| store.erase_hand_ins(personal_id.as_str(), &reason))
        .await?;
    Ok(Json(json!({ "erased": erased })))
}

/// The bytes of base64 `encoded`, in one buffer of the size they take.
fn decode_base64(encoded: &str) -> Result<Vec<u8>, Refused> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut bytes = Vec::with_capacity(base64::decoded_len_estimate(encoded.len()));
    engine
        .decode_vec(encoded, &mut bytes)
        .map_err(|err| Refused::BadRequest(format!("`image` is not base64: {err}")))?;
    Ok(bytes)
}

/// Reads `body` whole, into a buffer of `capacity` to begin with, when it holds at most `limit` bytes. A larger one is
/// read on and thrown away up to `limit` more bytes, and `Err` gives what
/// arrived: the tablet, still sending, then reads the refusal instead of a
/// connection reset; past twice the limit the connection is dropped. A body
/// that fails mid-way counts as cut short, like one too large.
async fn read_body(body: Body, limit: usize, capacity: usize) -> Result<Vec<u8>, usize> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::with_capacity(capacity);
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(seen);
        };
        seen += chunk.len();
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > 2 * limit {
            return Err(seen);
        }
    }
    if seen > limit {
        return Err(seen);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(width: u32, height: u32) -> Vec<u8> {
        let picture = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        encode_jpeg(&picture).unwrap()
    }

    #[test]
    fn a_photo_is_kept_small_enough_for_the_panel_with_a_thumbnail() {
        let prepared = prepare(HandInKind::Photo, &photo(3000, 1500), "").unwrap();
        let kept = image::load_from_memory(&prepared.file).unwrap();
        assert_eq!((kept.width(), kept.height()), (MAX_SIDE, MAX_SIDE / 2));
        let thumbnail = image::load_from_memory(&prepared.thumbnail.unwrap()).unwrap();
        assert_eq!(
            (thumbnail.width(), thumbnail.height()),
            (THUMBNAIL_SIDE, THUMBNAIL_SIDE / 2)
        );
        assert_eq!(prepared.media_type, "image/jpeg");
    }

    #[test]
    fn what_is_not_a_whole_image_is_refused_saying_which() {
        assert!(matches!(
            prepare(HandInKind::Photo, b"%PDF-1.4 not a photo", ""),
            Err(Refused::NotAnImage)
        ));
        let whole = photo(64, 64);
        assert!(matches!(
            prepare(HandInKind::Drawing, &whole[..whole.len() / 2], ""),
            Err(Refused::Damaged(_))
        ));
        assert!(matches!(
            prepare(HandInKind::Text, b"", "  "),
            Err(Refused::EmptyText)
        ));
        let text = prepare(HandInKind::Text, b"", " Bài làm của em ").unwrap();
        assert_eq!(text.file, "Bài làm của em".as_bytes());
    }

    #[test]
    fn a_pictures_base64_is_read_where_it_lies_in_the_body_unless_escaped() {
        let upload: Upload = serde_json::from_slice(br#"{"kind":"photo","image":"q8/+"}"#).unwrap();
        assert!(matches!(upload.image, Some(Base64(Cow::Borrowed("q8/+")))));
        let escaped: Upload =
            serde_json::from_slice(br#"{"kind":"photo","image":"q8\/+"}"#).unwrap();
        assert!(matches!(&escaped.image, Some(Base64(Cow::Owned(copy))) if copy == "q8/+"));
        assert_eq!(decode_base64("q8/+").unwrap(), [0xab, 0xcf, 0xfe]);
    }

    #[test]
    fn the_config_bounds_are_checked() {
        let config = TabletsConfig {
            hand_in_max_bytes: 10,
            hand_ins_kept: 0,
            ..TabletsConfig::default()
        };
        let keys: Vec<&str> = config_problems(&config).iter().map(|p| p.0).collect();
        assert_eq!(keys, ["tablets.hand_in_max_bytes", "tablets.hand_ins_kept"]);
        assert!(config_problems(&TabletsConfig::default()).is_empty());
    }
}
