//! Compiles `cutover/v1/*.proto` with `protox` (a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`) and hands the descriptors to tonic's prost codegen.
//! The encoded descriptor set is kept in `OUT_DIR` for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "cutover/v1/common.proto",
    "cutover/v1/source.proto",
    "cutover/v1/sink.proto",
    "cutover/v1/node_admin.proto",
    "cutover/v1/proxy_control.proto",
    "cutover/v1/orchestrator.proto",
    "cutover/v1/pipelines.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=cutover");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    fs::write(out_dir.join("cutover_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Bodies decode as slices of the received buffer, not copies: pulls move millions.
        .bytes(".cutover.v1.Document.body")
        .compile_fds(fds)?;
    Ok(())
}
