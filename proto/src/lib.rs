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

pub use color::{Color, UnknownColor};
