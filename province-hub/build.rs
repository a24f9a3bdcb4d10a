//! Generates the hub contract's client from the shared `proto/`: the hub
//! only calls rooms, it serves no gRPC.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let sync = proto_root.join("classroom/hub/v1/sync.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&[sync], &[proto_root])?;
    Ok(())
}
