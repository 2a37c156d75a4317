//! Per-sample work on the read-ahead threads (image decoding, by a [`SampleStage`] the caller
//! supplies) and the one policy for samples that cannot be used: a damaged chunk or page, or
//! a value the stage refuses (an image that does not decode).
//!
//! Under [`BadSamplePolicy::Replace`] a bad row is replaced by a row chosen from
//! `(seed, source, row, attempt)` only, so every rank and every resumed run makes the same
//! replacement and the stream keeps its length (ranks stay in step, resumption stays exact).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::decode::{ColumnChunk, Node, VarKind};
use crate::error::{Error, Location, Result};
use crate::Dataset;

/// One row of a read-ahead batch: its decoded, verified column chunks and its index inside them.
#[derive(Debug, Clone)]
pub struct ReadRow {
    pub source: usize,
    /// The row read (of dataset `source`): the plan's, or its replacement (see `ReadBatch::bad`).
    pub row: u64,
    /// One chunk per projected column of `source`, in projection order.
    pub chunks: Vec<Arc<ColumnChunk>>,
    /// Index of the row inside its chunks.
    pub index: usize,
    /// What the read-ahead's [`SampleStage`] made of the row.
    pub processed: Option<StageValue>,
}

/// A batch of rows in plan order.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    pub rows: Vec<ReadRow>,
    /// Rows of the plan replaced under [`BadSamplePolicy::Replace`], in plan order.
    pub bad: Vec<BadSample>,
    /// What the stage made of the whole batch ([`SampleStage::finish_batch`]).
    pub assembled: Option<StageValue>,
    /// Rows per packed row, in order, when the row source packs (else empty).
    pub groups: Vec<u32>,
    /// The epoch each row was drawn in, when the row source says (a mixture's; else empty).
    pub epochs: Vec<u64>,
}

/// What a [`SampleStage`] made of a row or a batch (decoded pixels); the bindings downcast it.
#[derive(Clone)]
pub struct StageValue(pub Arc<dyn Any + Send + Sync>);

impl fmt::Debug for StageValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StageValue(..)")
    }
}

/// What happens to a row that cannot be read or processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSamplePolicy {
    /// The stream fails with [`Error::BadSample`] naming file, row group, column and row.
    Raise,
    /// The row is replaced (see [`replacement_row`]) and reported in [`ReadBatch::bad`];
    /// after `max_attempts` bad replacements in a row the stream fails as under `Raise`.
    Replace { seed: u64, max_attempts: u32 },
}

/// A row that was replaced, as reported to the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSample {
    /// Index in its batch of the row read instead.
    pub position: usize,
    pub source: usize,
    /// The bad row (of dataset `source`).
    pub row: u64,
    /// The row read in its place.
    pub replacement: u64,
    pub location: Location,
    pub reason: String,
}

/// Work done on each row on the read threads, after its chunks are read and verified.
pub trait SampleStage: Send + Sync + 'static {
    /// Processes row `row` of dataset `source`. An [`Error::BadSample`] or [`Error::Corrupt`]
    /// is handled by the stream's [`BadSamplePolicy`]; any other error ends the stream.
    fn process(&self, source: usize, dataset: &Dataset, row: &ReadRow) -> Result<StageValue>;

    /// A buffer for the output of a whole batch of `rows` rows, for a stage that writes each
    /// row's output straight into its slot of it ([`SampleStage::process_into`]); `None`: rows
    /// are processed on their own.
    fn begin_batch(&self, rows: usize) -> Option<BatchBuffer> {
        let _ = rows;
        None
    }

    /// [`SampleStage::process`] for the row in slot `slot` of `buffer` (a replacement row
    /// takes the slot of the row it replaces, and writes all of it again).
    fn process_into(
        &self,
        source: usize,
        dataset: &Dataset,
        row: &ReadRow,
        buffer: &mut BatchBuffer,
        slot: usize,
    ) -> Result<StageValue> {
        let _ = (buffer, slot);
        self.process(source, dataset, row)
    }

    /// Runs once a batch's rows are all processed (e.g. to gather fixed-size images into one
    /// buffer), still on the read thread, with the buffer `begin_batch` made.
    fn finish_batch(&self, batch: &mut ReadBatch, buffer: Option<BatchBuffer>) -> Result<()> {
        let _ = (batch, buffer);
        Ok(())
    }
}

/// What [`SampleStage::begin_batch`] makes; the stage downcasts it.
pub type BatchBuffer = Box<dyn Any + Send>;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The row of a dataset of `num_rows` rows read instead of bad row `row` of `source`, at
/// replacement attempt `attempt` (0, 1, ...): a pure function of its arguments, uniform over
/// the dataset, so a damaged row group (many bad rows) is replaced from all the others.
pub fn replacement_row(seed: u64, source: usize, row: u64, attempt: u32, num_rows: u64) -> u64 {
    let h = mix64(mix64(mix64(seed) ^ source as u64) ^ row);
    let h = mix64(h ^ u64::from(attempt));
    // Lemire's multiply-shift: bias below 2^-64 * num_rows, irrelevant for a replacement.
    ((u128::from(h) * u128::from(num_rows.max(1))) >> 64) as u64
}

/// Whether the policy applies to `e` (damage in one sample) rather than ending the stream.
pub fn is_bad_sample(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::BadSample { .. })
}

/// `e` (a bad-sample error, see [`is_bad_sample`]) as an [`Error::BadSample`] naming `row`.
pub fn at_row(e: Error, row: u64) -> Error {
    match e {
        Error::Corrupt { location, reason } => Error::BadSample {
            location,
            row,
            reason: format!("corrupt data: {reason}"),
        },
        Error::BadSample {
            location, reason, ..
        } => Error::BadSample {
            location,
            row,
            reason,
        },
        other => other,
    }
}

/// The location and reason of a bad-sample error.
pub fn describe(e: &Error) -> (Location, String) {
    match e {
        Error::Corrupt { location, reason } => {
            (location.clone(), format!("corrupt data: {reason}"))
        }
        Error::BadSample {
            location, reason, ..
        } => (location.clone(), reason.clone()),
        other => (Location::default(), other.to_string()),
    }
}

/// The verified bytes of value `index` of a binary column chunk; `None` for a null.
pub fn binary_value(chunk: &ColumnChunk, index: usize) -> Result<Option<&[u8]>> {
    match &chunk.root {
        Node::Var {
            kind: VarKind::Binary,
            offsets,
            data,
            ..
        } => {
            let raw = chunk.raw();
            if chunk.root.is_null(raw, index) {
                return Ok(None);
            }
            let range = Node::var_range(raw, offsets, data, index);
            chunk.check(range.clone())?;
            Ok(Some(&raw[range]))
        }
        _ => Err(Error::InvalidArgument("not a binary column".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_are_a_function_of_their_inputs_and_spread_over_the_dataset() {
        let a: Vec<u64> = (0..64).map(|k| replacement_row(7, 0, 5, k, 1000)).collect();
        let b: Vec<u64> = (0..64).map(|k| replacement_row(7, 0, 5, k, 1000)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&r| r < 1000));
        assert_ne!(
            replacement_row(7, 0, 5, 0, 1000),
            replacement_row(8, 0, 5, 0, 1000)
        );
        assert_ne!(
            replacement_row(7, 0, 5, 0, 1000),
            replacement_row(7, 1, 5, 0, 1000)
        );
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 50, "{distinct:?}");
        assert_eq!(replacement_row(1, 0, 0, 0, 1), 0);
    }

    #[test]
    fn corrupt_chunks_become_bad_samples_naming_the_row() {
        let e = Error::corrupt(Location::chunk("a.pxs", 3, "image"), "page 2 checksum");
        assert!(is_bad_sample(&e));
        let msg = at_row(e, 41).to_string();
        assert!(
            msg.contains("a.pxs") && msg.contains("row group 3"),
            "{msg}"
        );
        assert!(msg.contains("'image'") && msg.contains("row 41") && msg.contains("page 2"));
        assert!(!is_bad_sample(&Error::InvalidArgument("x".into())));
    }
}
