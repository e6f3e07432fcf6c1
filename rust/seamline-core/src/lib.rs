//! Seamline core: canonical encoding, digests, leaves, merkle trees and range diffs over Arrow
//! record batches. Knows nothing of stores or of Python.

pub mod canonical;
pub mod diff;
pub mod digest;
pub mod error;
pub mod fasthash;
pub mod leaves;
pub mod logical;
pub mod merkle;
pub mod partition;
pub mod passes;
pub mod retain;
pub mod scan;

pub use diff::{classify, compact, differences_batch, DiffKind, Difference, Side};
pub use digest::LeafFilter;
pub use error::{CoreError, Result};
pub use leaves::{Leaf, LeafSet};
pub use logical::{ColumnSpec, LogicalType, SideSpec, StringOptions, TimePrecision};
pub use merkle::MerkleTree;
pub use partition::{coalesce_ranges, Partitioner};
pub use passes::{
    collect_pass, collect_pass_known, hash_pass, hash_pass_remembering, Collected, PassConfig, RowLeaves,
};
pub use retain::Retained;
pub use scan::{BatchStream, SliceTag};
