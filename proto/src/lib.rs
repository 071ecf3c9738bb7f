//! The cutover gRPC contract, generated from `proto/cutover/v1/*.proto`.
//!
//! The contract is the product's public face: any service that implements `Source` and `Sink`
//! can be upgraded by cutover, not only the reference node. The `.proto` files are the
//! documentation of record; this crate only adds the encoded descriptor set (for server
//! reflection) and a few conversions.

/// Generated messages, clients and servers of package `cutover.v1`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("cutover.v1");
}

/// The encoded `FileDescriptorSet` of every cutover `.proto` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cutover_descriptor.bin"));

mod color;
pub mod pull_wire;

/// HTTP/2 flow-control window of one stream, for every cutover client and server: a 1 MiB
/// batch then crosses without waiting on WINDOW_UPDATE round trips (the default is 64 KiB).
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// HTTP/2 flow-control window of one connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// Largest HTTP/2 frame every cutover client and server accepts.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// A client endpoint for `uri` (`http://host:port`) with the bulk-transfer windows above.
pub fn endpoint(
    uri: impl Into<bytes::Bytes>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(uri)?
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES))
}

/// The gRPC server reflection service for the whole contract, which every daemon serves so
/// that grpcurl and similar tools need no `.proto` files.
pub fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set decodes (proto/tests/contract.rs checks it)")
}

pub use color::{Color, UnknownColor};
