//! Learning material the teacher can lead the class through: the PDFs,
//! images and folders of slides of the content store, listed for the panel,
//! served to it, and described to tablets; the follow commands' API; and
//! pdf.js, which draws PDF pages on the panel and on the tablets.
//!
//! # Design
//! - The material is the content store itself ([`super::content`]): a file
//!   ending in `.pdf` is a PDF, an image file is one page, and a folder
//!   holding images is a slide show, one image a page, in name order (so
//!   `01.png`, `02.png`, … as teachers number them). Listing walks at most
//!   [`MAX_DEPTH`] folders deep and names at most [`MAX_LISTED`] items, so
//!   a careless copy of a whole disk into the store cannot stall the panel.
//! - The panel reads files through the teacher's API (`/api/lesson/material/file/…`),
//!   tablets through `/content/…` with their token, as for `open`; both
//!   refuse a name that leads out of the store.
//! - PDF pages are drawn by pdf.js in the browser, never by the agent.
//!   The agent serves Debian's build (package `libjs-pdf`) from where the
//!   package installs it, under a route only the panel and paired tablets
//!   can read (`/api/lesson/pdfjs/…`, `/tablet/pdfjs/…?token=`). Without the
//!   package, `/healthz` says so (`pdfjs` degraded) and the material list
//!   tells the panel, which then offers images and slides only.
//! - `POST /api/lesson/follow/{start,page,release}` give the follow commands
//!   ([`super::follow`]) through the same path as every lesson command, with
//!   the same audience (`to`) and `?wait_ms=`; `start` checks first that the
//!   material is in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_http::services::ServeFile;

use super::Lesson;
use super::api::{Wait, give};
use super::content::{bearer, leads_out, query_token};
use super::protocol::content_name;
use crate::health::{Health, State as HealthState};
use crate::http::error::{ApiError, OptionalJsonBody, PathParams, QueryParams};

/// Where Debian's `libjs-pdf` installs pdf.js.
pub const PDFJS_DIR: &str = "/usr/share/javascript/pdf/build";
/// The only files of pdf.js the agent serves.
const PDFJS_FILES: [&str; 2] = ["pdf.js", "pdf.worker.js"];
/// How deep the listing looks into the content store's folders.
const MAX_DEPTH: usize = 4;
/// The most items the listing names.
const MAX_LISTED: usize = 1000;
/// The image types a page may be, by file extension.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "gif", "svg"];

/// What kind of material a content-store name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Pdf,
    Image,
    Slides,
}

/// One item the teacher can lead the class through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Material {
    /// The content-store name, such as `toan/bai-3.pdf` or `dia-li/bai-5`.
    pub name: String,
    pub kind: Kind,
    /// A slide show's images, in order (content-store names); empty otherwise.
    pub slides: Vec<String>,
}

/// Whether pdf.js is installed where the agent serves it from.
pub fn pdfjs_installed() -> bool {
    PDFJS_FILES
        .iter()
        .all(|file| Path::new(PDFJS_DIR).join(file).is_file())
}

/// Tells `/healthz` whether PDFs can be shown.
pub fn report_pdfjs(health: &Health) {
    if pdfjs_installed() {
        health.set("pdfjs", HealthState::Ok, format!("pdf.js from {PDFJS_DIR}"));
    } else {
        health.set(
            "pdfjs",
            HealthState::Degraded,
            format!(
                "pdf.js is missing from {PDFJS_DIR}: PDFs cannot be shown to follow; install the Debian package libjs-pdf"
            ),
        );
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

fn is_pdf(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("pdf"))
}

fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The images of folder `relative` (in `root`), in name order, as content-store names.
fn slides_of(root: &Path, relative: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(relative)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !hidden(name) && is_image(Path::new(name)))
        .map(|name| format!("{relative}/{name}"))
        .collect();
    names.sort();
    names.truncate(MAX_LISTED);
    names
}

/// Every PDF, image and slide folder of the store at `root`, by name.
pub fn list(root: &Path) -> Vec<Material> {
    let mut found = Vec::new();
    walk(root, "", 0, &mut found);
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

fn walk(root: &Path, relative: &str, depth: usize, found: &mut Vec<Material>) {
    let Ok(entries) = std::fs::read_dir(root.join(relative)) else {
        return;
    };
    // A slide show's images are its pages, not material of their own.
    let in_slide_show = !relative.is_empty() && !slides_of(root, relative).is_empty();
    let mut entries: Vec<(String, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let is_dir = entry.file_type().ok()?.is_dir();
            Some((entry.file_name().into_string().ok()?, is_dir))
        })
        .filter(|(name, _)| !hidden(name))
        .collect();
    entries.sort();
    for (name, is_dir) in entries {
        if found.len() >= MAX_LISTED {
            return;
        }
        let name = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        if is_dir {
            let slides = slides_of(root, &name);
            if !slides.is_empty() {
                found.push(Material {
                    name: name.clone(),
                    kind: Kind::Slides,
                    slides,
                });
            }
            if depth + 1 < MAX_DEPTH {
                walk(root, &name, depth + 1, found);
            }
        } else if is_pdf(Path::new(&name)) {
            found.push(Material {
                name,
                kind: Kind::Pdf,
                slides: Vec::new(),
            });
        } else if is_image(Path::new(&name)) && !in_slide_show {
            found.push(Material {
                name,
                kind: Kind::Image,
                slides: Vec::new(),
            });
        }
    }
}

/// The material `name` of the store at `root`, if it is material.
pub fn describe(root: &Path, name: &str) -> Option<Material> {
    content_name(name).ok()?;
    if leads_out(root, name) {
        return None;
    }
    let path = root.join(name);
    if path.is_dir() {
        let slides = slides_of(root, name);
        return (!slides.is_empty()).then(|| Material {
            name: name.to_owned(),
            kind: Kind::Slides,
            slides,
        });
    }
    let kind = if !path.is_file() {
        return None;
    } else if is_pdf(&path) {
        Kind::Pdf
    } else if is_image(&path) {
        Kind::Image
    } else {
        return None;
    };
    Some(Material {
        name: name.to_owned(),
        kind,
        slides: Vec::new(),
    })
}

fn unknown_material(name: &str) -> ApiError {
    ApiError::not_found(
        "unknown_material",
        "Không có tài liệu này",
        format!(
            "`{name}` is no PDF, image or folder of images in the content store: choose one from GET /api/lesson/material"
        ),
    )
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The teacher's routes: the material, its files, pdf.js, and the follow commands.
pub fn teacher_routes() -> Router<Arc<Lesson>> {
    Router::new()
        .route("/api/lesson/material", get(list_material))
        .route("/api/lesson/material/describe", get(describe_material))
        .route("/api/lesson/material/file/{*name}", get(material_file))
        .route("/api/lesson/pdfjs/{file}", get(pdfjs_file))
        .route("/api/lesson/follow", get(follow_lead))
        .route("/api/lesson/follow/{action}", post(follow_command))
}

/// What paired tablets reach: pdf.js and the description of material (a slide show's pages).
pub fn tablet_routes(lesson: &Arc<Lesson>) -> Router<Arc<Lesson>> {
    Router::new()
        .route("/tablet/pdfjs/{file}", get(pdfjs_file))
        .route("/tablet/material", get(describe_material))
        .layer(middleware::from_fn_with_state(lesson.clone(), paired_only))
}

/// Lets in requests with a paired tablet's token (header or `?token=`).
async fn paired_only(State(lesson): State<Arc<Lesson>>, request: Request, next: Next) -> Response {
    let paired = match bearer(&request).or_else(|| query_token(&request)) {
        Some(token) => lesson.authenticate(&token).await.is_some(),
        None => false,
    };
    if paired {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Máy tính bảng chưa ghép nối",
            "a paired tablet's token is needed, as `Authorization: Bearer` or `?token=`",
        )
        .into_response()
    }
}

async fn list_material(State(lesson): State<Arc<Lesson>>) -> Json<Value> {
    let root = lesson.content_dir().to_owned();
    let materials = tokio::task::spawn_blocking(move || list(&root))
        .await
        .unwrap_or_default();
    Json(json!({ "materials": materials, "pdfjs": pdfjs_installed() }))
}

async fn describe_material(
    State(lesson): State<Arc<Lesson>>,
    QueryParams(Named { name }): QueryParams<Named>,
) -> Result<Json<Material>, ApiError> {
    let root = lesson.content_dir().to_owned();
    let asked = name.clone();
    tokio::task::spawn_blocking(move || describe(&root, &asked))
        .await
        .ok()
        .flatten()
        .map(Json)
        .ok_or_else(|| unknown_material(&name))
}

async fn material_file(
    State(lesson): State<Arc<Lesson>>,
    PathParams(name): PathParams<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let root = lesson.content_dir();
    if content_name(&name).is_err() || leads_out(root, &name) || !root.join(&name).is_file() {
        return Err(unknown_material(&name));
    }
    serve(root.join(&name), request).await
}

async fn pdfjs_file(
    PathParams(file): PathParams<String>,
    request: Request,
) -> Result<Response, ApiError> {
    if !PDFJS_FILES.contains(&file.as_str()) {
        return Err(ApiError::not_found(
            "no_such_route",
            "Không có trang này",
            format!("pdf.js has no file `{file}` here: use pdf.js or pdf.worker.js"),
        ));
    }
    let path = Path::new(PDFJS_DIR).join(&file);
    if !path.is_file() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pdfjs_missing",
            "Chưa cài pdf.js nên không hiện được PDF",
            format!(
                "{} is missing: install the Debian package libjs-pdf",
                path.display()
            ),
        ));
    }
    let mut response = serve(path, request).await?;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    Ok(response)
}

/// Serves one file with range requests and `Last-Modified`, as the content store does.
async fn serve(path: PathBuf, request: Request) -> Result<Response, ApiError> {
    let response = ServeFile::new(path)
        .try_call(request)
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "read_failed",
                "Không đọc được tệp",
                err,
            )
        })?;
    Ok(response.map(Body::new))
}

async fn follow_lead(State(lesson): State<Arc<Lesson>>) -> Json<Value> {
    Json(json!({ "follow": lesson.follow_lead() }))
}

async fn follow_command(
    State(lesson): State<Arc<Lesson>>,
    PathParams(action): PathParams<String>,
    QueryParams(wait): QueryParams<Wait>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let kind = match action.as_str() {
        "start" => "follow",
        "page" => "page",
        "release" => "release",
        _ => {
            return Err(ApiError::not_found(
                "unknown_command",
                "Không có lệnh này",
                format!("unknown follow command `{action}`: use start, page or release"),
            ));
        }
    };
    if kind == "follow" {
        let name = body
            .as_ref()
            .and_then(|body| body.get("file"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let root = lesson.content_dir().to_owned();
        let asked = name.clone();
        let found = tokio::task::spawn_blocking(move || describe(&root, &asked))
            .await
            .ok()
            .flatten();
        if found.is_none() {
            return Err(unknown_material(&name));
        }
    }
    give(lesson, kind, body, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_lists_pdfs_images_and_folders_of_slides_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dia-li/bai-5")).unwrap();
        for file in [
            "dia-li/bai-5/02.png",
            "dia-li/bai-5/01.jpg",
            "toan.pdf",
            "anh.PNG",
            "ghi-chu.txt",
            ".an.pdf",
        ] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        std::fs::create_dir(root.join("trong")).unwrap();
        let listed: Vec<(String, Kind)> = list(root)
            .into_iter()
            .map(|material| (material.name, material.kind))
            .collect();
        assert_eq!(
            listed,
            [
                ("anh.PNG".to_owned(), Kind::Image),
                ("dia-li/bai-5".to_owned(), Kind::Slides),
                ("toan.pdf".to_owned(), Kind::Pdf),
            ]
        );
        assert_eq!(
            describe(root, "dia-li/bai-5").unwrap().slides,
            ["dia-li/bai-5/01.jpg", "dia-li/bai-5/02.png"]
        );
        assert_eq!(describe(root, "ghi-chu.txt"), None, "not material");
        assert_eq!(describe(root, "../etc"), None, "not a content name");
        assert_eq!(describe(root, "trong"), None, "a folder without images");
    }
}
