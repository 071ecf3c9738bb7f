//! The migration engine (issue #4): cycles, transforms, the threshold engine and the journal.
//! Built piece by piece; what is here is complete and tested.

pub mod journal;
pub mod plan;
pub mod threshold;
pub mod transform;
