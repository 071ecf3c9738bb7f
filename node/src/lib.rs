//! The reference stateful node: the service whose state cutover moves. Blue and green
//! clusters are both made of these nodes.
//!
//! What it will hold (see `../shared/DESIGN.md`, "Data model"): a document store on RocksDB
//! with a by-sequence change index, an HTTP document API, and the gRPC `Source`, `Sink` and
//! `NodeAdmin` services of `cutover-proto`. It is built by the node issue; until then the
//! `cutover node` command says so and exits non-zero.
