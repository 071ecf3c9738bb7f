//! Native transforms by name: what a program that embeds the engine registers, and what a
//! plan's `forward_native` and `reverse_native` name instead of a jq program.

use std::{collections::BTreeMap, fmt, sync::Arc};

use bytes::Bytes;

use super::{Outcome, Runner, Transform};

/// The native transforms of a process, by name. Cloning it is cheap (one `Arc`): the engine,
/// its drivers and each node's `Pipelines` service hold the same registry.
///
/// ```
/// use std::sync::Arc;
///
/// use bytes::Bytes;
/// use cutover_formats::transform::{Natives, Outcome, Transform};
///
/// #[derive(Debug)]
/// struct Upper;
///
/// impl Transform for Upper {
///     fn apply(&self, body: &Bytes) -> Outcome {
///         Outcome::Body(Bytes::from(body.to_ascii_uppercase()))
///     }
/// }
///
/// let natives = Natives::new().with("upper", Arc::new(Upper));
/// assert_eq!(natives.names().collect::<Vec<_>>(), ["upper"]);
/// let upper = natives.get("upper").expect("registered");
/// assert_eq!(upper.apply(&Bytes::from("\"a\"")), Outcome::Body(Bytes::from("\"A\"")));
/// assert_eq!(upper.describe(), "native `upper` (a Rust transform registered in this process)");
/// ```
#[derive(Clone, Default)]
pub struct Natives {
    by_name: Arc<BTreeMap<String, Arc<Named>>>,
}

impl fmt::Debug for Natives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Natives {
    /// No native transform: what the `cutover` binary runs with.
    pub fn new() -> Self {
        Self::default()
    }

    /// This registry with `transform` registered as `name` (in place of one of that name).
    pub fn with(mut self, name: impl Into<String>, transform: Arc<dyn Transform>) -> Self {
        self.insert(name, transform);
        self
    }

    /// Registers `transform` as `name`; the transform that was registered as `name`, if any.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        transform: Arc<dyn Transform>,
    ) -> Option<Arc<dyn Transform>> {
        let name = name.into();
        let named = Arc::new(Named {
            name: name.clone(),
            transform,
        });
        Arc::make_mut(&mut self.by_name)
            .insert(name, named)
            .map(|previous| Arc::clone(&previous.transform))
    }

    /// The transform registered as `name`, which reports itself by that name
    /// ([`Transform::describe`]: "native `name` …").
    pub fn get(&self, name: &str) -> Option<Arc<dyn Transform>> {
        self.by_name
            .get(name)
            .map(|named| Arc::clone(named) as Arc<dyn Transform>)
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// How many transforms are registered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A registered transform: the embedder's, with the name the plan gives it.
#[derive(Debug)]
struct Named {
    name: String,
    transform: Arc<dyn Transform>,
}

impl Transform for Named {
    fn apply(&self, body: &Bytes) -> Outcome {
        self.transform.apply(body)
    }

    fn is_identity(&self) -> bool {
        self.transform.is_identity()
    }

    fn runner(&self) -> Runner {
        self.transform.runner()
    }

    fn off_fast_path(&self) -> Option<&str> {
        self.transform.off_fast_path()
    }

    fn describe(&self) -> String {
        match self.transform.runner() {
            Runner::Native => format!(
                "native `{}` (a Rust transform registered in this process)",
                self.name
            ),
            // Anything may be registered, a compiled jq program too: say what runs it.
            _ => format!("native `{}`: {}", self.name, self.transform.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{Identity, Jq};

    #[derive(Debug)]
    struct Reverse;

    impl Transform for Reverse {
        fn apply(&self, body: &Bytes) -> Outcome {
            Outcome::Body(body.iter().rev().copied().collect())
        }
    }

    #[test]
    fn registered_transforms_are_found_by_name_and_report_it() {
        let natives = Natives::new()
            .with("reverse", Arc::new(Reverse))
            .with("copy", Arc::new(Identity));
        assert_eq!(natives.names().collect::<Vec<_>>(), ["copy", "reverse"]);
        assert_eq!((natives.len(), natives.is_empty()), (2, false));
        assert!(natives.get("nope").is_none());
        let reverse = natives.get("reverse").expect("registered");
        assert_eq!(
            reverse.apply(&Bytes::from("[1,2]")),
            Outcome::Body(Bytes::from("]2,1["))
        );
        assert_eq!(reverse.runner(), Runner::Native);
        assert_eq!(
            reverse.describe(),
            "native `reverse` (a Rust transform registered in this process)"
        );
        let copy = natives.get("copy").expect("registered");
        assert!(copy.is_identity(), "what the transform says passes through");
        assert_eq!(
            copy.describe(),
            "native `copy`: identity (bodies copied unparsed)"
        );
        assert_eq!(format!("{natives:?}"), r#"{"copy", "reverse"}"#);
    }

    #[test]
    fn clones_share_what_was_registered_before_and_not_after() {
        let mut natives = Natives::new().with("a", Arc::new(Reverse));
        let before = natives.clone();
        let jq: Arc<dyn Transform> = Arc::new(Jq::compile(".v = 1").expect("compiles"));
        assert!(natives.insert("b", Arc::clone(&jq)).is_none());
        let replaced = natives.insert("b", Arc::new(Identity)).expect("was there");
        assert!(Arc::ptr_eq(&replaced, &jq), "the one it replaced");
        assert_eq!(before.names().collect::<Vec<_>>(), ["a"]);
        assert_eq!(natives.names().collect::<Vec<_>>(), ["a", "b"]);
    }
}
