//! The face models and the ONNX Runtime library: found, checked against the
//! manifest's SHA-256 sums, and turned into inference sessions.
//!
//! # Design
//! - `models/manifest.csv` (beside the set-up script that installs the files) is
//!   compiled in: the agent refuses any model file whose hash differs from the one
//!   this build was tested with, so a truncated download or a swapped model stops
//!   attendance with a message instead of producing wrong marks.
//! - Each file is read once, hashed, and the session is built from those same
//!   bytes: nothing can change between the check and the use.
//! - Sessions get every graph optimisation ONNX Runtime has (`All`, its own
//!   default; the crate's `Level3` stops short of it at layout changes).
//! - ONNX Runtime allows one environment per process; it is created once, on
//!   first use, and kept for the life of the process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sha2::{Digest, Sha256};

const MANIFEST: &str = include_str!("../../../models/manifest.csv");

/// The face detector: boxes and scores on a 320x240 frame.
pub const DETECTOR: &str = "fr_detect.onnx";
/// MTCNN's last stage: five landmarks in a 48x48 face crop.
pub const LANDMARKS: &str = "onet.onnx";
/// The embedder: a 512-d vector from an aligned 112x112 face.
pub const EMBEDDER: &str = "fr_feature.onnx";
/// The liveness check: a live face or a photo held up, from the face and its surroundings.
pub const LIVENESS: &str = "fr_liveness.onnx";

/// Why the models cannot be used, with what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error("{}: the face model is missing\n  hint: run `models/install` (or `make setup`), or set attendance.models_dir to where the models are", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read the face model: {reason}\n  hint: give the agent's user read access to the models directory", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: the face model is altered (SHA-256 {found}, expected {expected})\n  hint: run `models/install` again to replace it with the checked file", path.display())]
    Altered {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot load the ONNX Runtime library `{}`: {reason}\n  hint: run `models/install`, then set ORT_DYLIB_PATH or attendance.onnxruntime_library to libonnxruntime.so", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("{}: ONNX Runtime cannot load the model: {reason}", path.display())]
    Session { path: PathBuf, reason: String },
}

/// The model files, read and checked, ready to become sessions on any thread.
#[derive(Clone)]
pub struct ModelSet {
    dir: PathBuf,
    files: Arc<Vec<(&'static str, Vec<u8>)>>,
    environment: &'static Environment,
}

impl ModelSet {
    /// Loads the runtime library and reads and checks every model the pipeline uses.
    pub fn load(models_dir: &Path, runtime_library: &Path) -> Result<ModelSet, ModelError> {
        let mut files = Vec::new();
        for name in [DETECTOR, LANDMARKS, EMBEDDER, LIVENESS] {
            files.push((name, read_checked(models_dir, name)?));
        }
        let environment = init_runtime(runtime_library)?;
        Ok(ModelSet {
            dir: models_dir.to_owned(),
            files: Arc::new(files),
            environment,
        })
    }

    /// A new session for `name`, running on `threads` threads of the calling worker.
    pub fn session(&self, name: &str) -> Result<Session, ModelError> {
        let path = self.dir.join(name);
        let bytes = &self
            .files
            .iter()
            .find(|(n, _)| *n == name)
            .expect("only the pipeline's models are asked for")
            .1;
        let fail = |reason: String| ModelError::Session {
            path: path.clone(),
            reason,
        };
        Session::builder(self.environment)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::All)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .map_err(|err| fail(err.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|err| fail(err.to_string()))
    }
}

/// The embedder's SHA-256: templates are tagged with it, since embeddings of
/// different models cannot be compared.
pub fn embedder_sha256() -> &'static str {
    expected_sha256(EMBEDDER)
}

/// The expected SHA-256 of a model, from the compiled-in manifest.
fn expected_sha256(name: &str) -> &'static str {
    MANIFEST
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.first() == Some(&name)).then(|| fields[5])
        })
        .expect("every model the pipeline uses is in models/manifest.csv")
}

fn read_checked(dir: &Path, name: &str) -> Result<Vec<u8>, ModelError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => ModelError::Missing { path: path.clone() },
        _ => ModelError::Unreadable {
            path: path.clone(),
            reason: err.to_string(),
        },
    })?;
    let found = hex::encode(Sha256::digest(&bytes));
    let expected = expected_sha256(name);
    if found != expected {
        return Err(ModelError::Altered {
            path,
            found,
            expected: expected.to_owned(),
        });
    }
    Ok(bytes)
}

static RUNTIME: OnceLock<Result<Environment, ModelError>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (or the default search) once per process.
fn init_runtime(library: &Path) -> Result<&'static Environment, ModelError> {
    RUNTIME
        .get_or_init(|| {
            let path = if library.as_os_str().is_empty() {
                PathBuf::from("libonnxruntime.so")
            } else {
                library.to_owned()
            };
            let fail = |reason: String| ModelError::Runtime {
                path: path.clone(),
                reason,
            };
            let builder = ort::init_from(&path).map_err(|err| fail(err.to_string()))?;
            builder
                .with_name("firmware-agent")
                .build()
                .map_err(|err| fail(err.to_string()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use super::ModelSet;

    /// The models as `make setup` installs them; panics with the fix when they are not there.
    pub fn models() -> ModelSet {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::var_os("FIRMWARE_AGENT_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("models"));
        let library = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".local/onnxruntime/libonnxruntime.so"));
        ModelSet::load(&dir, &library)
            .unwrap_or_else(|err| panic!("{err}\n(the face tests need `make setup` first)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_checked(dir.path(), DETECTOR).unwrap_err();
        assert!(matches!(err, ModelError::Missing { .. }));
        assert!(
            err.to_string()
                .contains("fr_detect.onnx: the face model is missing"),
            "{err}"
        );
        assert!(err.to_string().contains("models/install"), "{err}");
    }

    #[test]
    fn an_altered_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EMBEDDER), b"not the model").unwrap();
        let err = read_checked(dir.path(), EMBEDDER).unwrap_err();
        assert!(matches!(err, ModelError::Altered { .. }), "{err}");
        assert!(err.to_string().contains("is altered"), "{err}");
    }
}
