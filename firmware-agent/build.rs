//! Generates the hub contract's Rust types and gRPC stubs from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let sync = proto_root.join("classroom/hub/v1/sync.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    // The payloads, as the reference hub client prints them in JSON.
    let mut builder = tonic_prost_build::configure()
        .type_attribute("classroom.hub.v1.Event.payload", "#[derive(serde::Serialize)] #[serde(rename_all = \"snake_case\")]");
    for message in [
        "AttendanceSession", "AttendanceMark", "UnknownFaces", "LessonRecord", "TabletPairing",
        "QuestionAnswer", "Actuation", "DeviceHealth", "Erasure",
    ] {
        builder = builder.type_attribute(format!("classroom.hub.v1.{message}"), "#[derive(serde::Serialize)]");
    }
    builder
        .build_server(true)
        .build_client(true)
        .compile_protos(&[sync], &[proto_root])?;
    Ok(())
}
