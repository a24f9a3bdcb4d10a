//! The content store: lesson material kept on the agent and served to paired
//! tablets over the LAN, so that 40 tablets never fetch a video over the
//! school's 4G link.
//!
//! # Design
//! - Files live under `tablets.content_dir`, by relative name such as
//!   `toan/bai-3.pdf`. `GET /content/<name>` serves them with range requests
//!   (video seeking) and `Last-Modified` from tower-http's `ServeDir`, plus a
//!   weak `ETag` made from size and modification time, answered with 304 on
//!   `If-None-Match`.
//! - Only paired tablets may read: a device token as
//!   `Authorization: Bearer <token>` or `?token=` (an `<iframe>` or `<video>`
//!   cannot set headers).
//! - A tablet reads only what is in the store. check-config refuses a
//!   content directory that holds the agent's data, its config or a system
//!   directory ([`crate::config::content_store`]); a symbolic link that leads out of the store
//!   is answered 404 ([`leads_out`]). The link is resolved when the request
//!   arrives, so only someone who may already write in the store could swap
//!   it in between.
//! - The hub pushes files with `PutContent` (see `sync.proto`); the service
//!   hands the chunks to [`store_pushed`], which writes a temporary file,
//!   checks size and SHA-256, syncs it and renames it into place: a reader
//!   sees the old file or the whole new one, never a part.
//! - Question sets (`*.quiz.toml`) hold their correct answers: they are read
//!   by the panel only and answered 404 to tablets.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower_http::services::ServeDir;

use super::protocol::{BadContentName, content_name};
use super::{Lesson, TabletsConfig};

/// The content directory: `tablets.content_dir`, inside `data_dir` unless absolute.
pub fn content_dir(data_dir: &Path, tablets: &TabletsConfig) -> PathBuf {
    data_dir.join(&tablets.content_dir)
}

pub fn routes(lesson: &Arc<Lesson>) -> axum::Router<Arc<Lesson>> {
    let dir = lesson.content_dir().to_owned();
    axum::Router::new()
        .nest_service(
            "/content",
            ServeDir::new(&dir).append_index_html_on_directories(false),
        )
        .layer(middleware::from_fn_with_state((lesson.clone(), dir), guard))
}

/// Lets in tablets with a valid token, and adds the ETag.
async fn guard(
    State((lesson, dir)): State<(Arc<Lesson>, PathBuf)>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = match bearer(&request).or_else(|| query_token(&request)) {
        Some(token) => lesson.authenticate(&token).await.is_some(),
        None => false,
    };
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            "Chỉ máy tính bảng đã ghép nối mới xem được tài liệu (pair this tablet first)",
        )
            .into_response();
    }
    let relative = request
        .uri()
        .path()
        .trim_start_matches("/content/")
        .to_owned();
    if percent_decode(&relative)
        .is_none_or(|name| leads_out(&dir, &name) || super::question_set::is_question_set(&name))
    {
        return (
            StatusCode::NOT_FOUND,
            "Không có tài liệu này (not in the content store)",
        )
            .into_response();
    }
    let tag = percent_decode(&relative)
        .filter(|name| content_name(name).is_ok())
        .and_then(|name| etag(&dir.join(name)));
    if let Some(tag) = &tag {
        let matches = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
        if matches {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag.clone())]).into_response();
        }
    }
    let mut response = next.run(request).await;
    if let Some(tag) = tag.and_then(|tag| HeaderValue::from_str(&tag).ok())
        && response.status().is_success()
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

pub(super) fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

pub(super) fn query_token(request: &Request) -> Option<String> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name` in `dir` is, or passes through, a symbolic link to a
/// place outside `dir`. A link within the store (a short name for a file
/// kept in it) is served; anything else would let a tablet read whatever a
/// link points to.
pub(super) fn leads_out(dir: &Path, name: &str) -> bool {
    let Ok(root) = fs::canonicalize(dir) else {
        return false;
    };
    match fs::canonicalize(dir.join(name)) {
        Ok(target) => !target.starts_with(&root),
        // A dangling link leads nowhere; a missing file is a plain 404.
        Err(_) => false,
    }
}

fn etag(path: &Path) -> Option<String> {
    let metadata = fs::metadata(path).ok().filter(|m| m.is_file())?;
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "W/\"{:x}-{:x}\"",
        metadata.len(),
        modified.as_nanos()
    ))
}

/// Why a pushed file was refused; nothing was changed in the store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    BadName(#[from] BadContentName),
    #[error("`{name}`: received {received} bytes, the push announced {announced}")]
    WrongSize {
        name: String,
        announced: u64,
        received: u64,
    },
    #[error(
        "`{name}`: the SHA-256 of the received bytes is {received}, the push announced {announced}; send the file again"
    )]
    WrongChecksum {
        name: String,
        announced: String,
        received: String,
    },
    #[error("`{name}`: cannot write to the content store {}: {source}\n  hint: check free space and the agent's write access to tablets.content_dir", dir.display())]
    Io {
        name: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// A file now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Stores a file pushed by the hub: `chunks` in order, announced `size` and `sha256`.
/// Blocking; the caller runs it off the async runtime.
pub fn store_pushed<I, E>(
    dir: &Path,
    name: &str,
    size: u64,
    sha256: [u8; 32],
    chunks: I,
) -> Result<StoredContent, ContentError>
where
    I: IntoIterator<Item = Result<Vec<u8>, E>>,
    E: std::fmt::Display,
{
    content_name(name)?;
    let target = dir.join(name);
    let parent = target
        .parent()
        .expect("a joined name has a parent")
        .to_owned();
    let io = |source| ContentError::Io {
        name: name.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    fs::create_dir_all(&parent).map_err(io)?;
    let temporary = parent.join(format!(".incoming-{}", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        let mut file = File::create(&temporary).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        for chunk in chunks {
            let chunk = chunk.map_err(|err| {
                io(std::io::Error::other(format!(
                    "the push was cut off: {err}"
                )))
            })?;
            received += chunk.len() as u64;
            if received > size {
                return Err(ContentError::WrongSize {
                    name: name.to_owned(),
                    announced: size,
                    received,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io)?;
        }
        if received != size {
            return Err(ContentError::WrongSize {
                name: name.to_owned(),
                announced: size,
                received,
            });
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if digest != sha256 {
            return Err(ContentError::WrongChecksum {
                name: name.to_owned(),
                announced: hex::encode(sha256),
                received: hex::encode(digest),
            });
        }
        file.sync_all().map_err(io)?;
        fs::rename(&temporary, &target).map_err(io)?;
        File::open(&parent).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(StoredContent {
            name: name.to_owned(),
            size,
            sha256,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8]) -> Vec<Result<Vec<u8>, String>> {
        data.chunks(3).map(|c| Ok(c.to_vec())).collect()
    }

    #[test]
    fn a_pushed_file_lands_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"bai giang toan lop 6".to_vec();
        let sum: [u8; 32] = Sha256::digest(&data).into();
        let stored = store_pushed(
            dir.path(),
            "toan/bai-1.txt",
            data.len() as u64,
            sum,
            chunks(&data),
        )
        .unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(fs::read(dir.path().join("toan/bai-1.txt")).unwrap(), data);

        let other = b"phien ban moi bi hong".to_vec();
        let err = store_pushed(
            dir.path(),
            "toan/bai-1.txt",
            other.len() as u64,
            sum,
            chunks(&other),
        )
        .unwrap_err();
        assert!(matches!(err, ContentError::WrongChecksum { .. }), "{err}");
        let short = store_pushed(dir.path(), "toan/bai-1.txt", 99, sum, chunks(&data)).unwrap_err();
        assert!(matches!(short, ContentError::WrongSize { .. }), "{short}");
        let cut: Vec<Result<Vec<u8>, String>> =
            vec![Ok(b"bai".to_vec()), Err("stream reset".into())];
        assert!(store_pushed(dir.path(), "toan/bai-1.txt", data.len() as u64, sum, cut).is_err());
        assert_eq!(
            fs::read(dir.path().join("toan/bai-1.txt")).unwrap(),
            data,
            "the old file is untouched"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("toan")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        assert!(matches!(
            store_pushed(dir.path(), "../escape", 0, sum, chunks(b"")),
            Err(ContentError::BadName(_))
        ));
    }
}
