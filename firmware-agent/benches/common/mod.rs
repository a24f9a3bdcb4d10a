//! Where the benches find what `make setup` installs: the face models, the
//! ONNX Runtime library and the shared test photos, each overridable by the
//! environment variable the Makefile and the agent use.

use std::path::PathBuf;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The face models' directory: `$FIRMWARE_AGENT_MODELS`, or `models/`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("FIRMWARE_AGENT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, or the one `make setup` installs.
pub fn onnxruntime_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".local/onnxruntime/libonnxruntime.so"))
}

/// The shared face photos: `$CLASSROOM_SHARED_DIR/testdata/faces`, or `../shared`'s.
pub fn faces_dir() -> PathBuf {
    std::env::var_os("CLASSROOM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
        .join("testdata/faces")
}
