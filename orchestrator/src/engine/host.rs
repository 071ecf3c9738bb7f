//! What the process that runs the engine lends it, and the builder that gathers it: the store
//! of the green node the engine runs in (its pipeline into that node is written directly), and
//! the native transforms the process registered, which a plan names instead of jq programs.
//!
//! ```no_run
//! # use std::{path::Path, sync::Arc};
//! # use bytes::Bytes;
//! # use cutover_orchestrator::engine::{Engine, transform::{Outcome, Transform}};
//! #[derive(Debug)]
//! struct SplitName;
//!
//! impl Transform for SplitName {
//!     fn apply(&self, body: &Bytes) -> Outcome {
//!         // …parse `body`, split `name` into `first_name` and `last_name`…
//! #       Outcome::Body(body.clone())
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // A plan's `[collections.users] forward_native = "split_name"` runs `SplitName`.
//! let engine = Engine::builder()
//!     .native("split_name", Arc::new(SplitName))
//!     .open(Path::new("/var/lib/cutover/journal"))?;
//! # Ok(()) }
//! ```

use std::{path::Path, sync::Arc};

use cutover_node::store::Store;

use super::{
    transform::{Natives, Transform},
    upgrade::{Engine, EngineError},
};

/// What the process running the engine lends each of its drivers.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The store of the green node the engine runs in, if any.
    pub local: Option<Store>,
    /// The native transforms the process registered.
    pub natives: Natives,
}

/// Gathers what an engine runs with, then opens it ([`Engine::builder`]).
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `open`"]
pub struct EngineBuilder {
    host: Host,
}

impl EngineBuilder {
    /// The engine runs inside the green node whose store is `store`.
    pub fn local(mut self, store: Store) -> Self {
        self.host.local = Some(store);
        self
    }

    /// Registers `transform` as `name`, which plans may give as a collection's
    /// `forward_native` or `reverse_native`.
    pub fn native(mut self, name: impl Into<String>, transform: Arc<dyn Transform>) -> Self {
        self.host.natives.insert(name, transform);
        self
    }

    /// Registers every transform of `natives` (a registry shared with the nodes' `Pipelines`
    /// service, say), in place of those registered so far.
    pub fn natives(mut self, natives: Natives) -> Self {
        self.host.natives = natives;
        self
    }

    /// Opens the journal in `path` and resumes an interrupted upgrade, whose plan is compiled
    /// again with these native transforms. Must be called inside a tokio runtime.
    pub fn open(self, path: &Path) -> Result<Arc<Engine>, EngineError> {
        Engine::open_with(path, self.host)
    }
}

#[cfg(test)]
mod tests {
    use cutover_proto::v1::Phase;

    use super::*;
    use crate::engine::transform::Identity;

    const PLAN: &str = "[blue]\nsources = [\"http://127.0.0.1:1\"]\n\
                        [green]\nsinks = [\"http://127.0.0.1:2\"]\n\
                        [collections.users]\nforward_native = \"split_nmae\"\n";

    #[tokio::test]
    async fn a_start_naming_an_unregistered_native_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::builder()
            .native("split_name", Arc::new(Identity))
            .native("join_name", Arc::new(Identity))
            .open(&dir.path().join("journal"))
            .expect("opens");
        assert_eq!(
            engine.natives().names().collect::<Vec<_>>(),
            ["join_name", "split_name"]
        );
        let refused = engine
            .start(PLAN, "plan.toml", false)
            .await
            .expect_err("split_nmae is not registered")
            .to_string();
        assert!(
            refused.starts_with(
                "plan.toml: collections.users.forward_native: no native transform `split_nmae` \
                 is registered in this process (registered: `join_name`, `split_name`)"
            ),
            "{refused}"
        );
        assert!(
            matches!(engine.status().phase(), Phase::Idle | Phase::Unspecified),
            "nothing started: {:?}",
            engine.status()
        );
        let dry = engine
            .dry_run(PLAN, "plan.toml", 1)
            .await
            .expect_err("the dry run checks the same")
            .to_string();
        assert!(dry.contains("no native transform `split_nmae`"), "{dry}");
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn an_engine_opened_without_natives_knows_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(&dir.path().join("journal"), None).expect("opens");
        assert!(engine.natives().is_empty());
        let refused = engine
            .start(PLAN, "plan.toml", false)
            .await
            .expect_err("no native at all")
            .to_string();
        assert!(refused.contains("(registered: none)"), "{refused}");
        assert!(
            refused.contains("the `cutover` binary registers none"),
            "{refused}"
        );
        engine.shutdown().await;
    }
}
