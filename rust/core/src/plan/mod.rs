//! Epoch plans: which row every position of an epoch reads, and which positions each consumer
//! (rank × worker) takes. Everything here is a pure function of small integers (seed, epoch,
//! the row-group layout, world size, ...), computed over row ids, never over loaded samples,
//! so that any machine rebuilds the same order and a resumed run skips to its position
//! without reading what it skips. See `docs/STREAMING.md` for the design.
//!
//! The shuffle has two levels, as a shuffle buffer over a stream of shards has:
//! 1. the row groups of the dataset are permuted (seeded by seed and epoch);
//! 2. the permuted row groups are cut into *windows* of consecutive row groups holding at least
//!    `window_rows` rows each, and the rows of each window are permuted.
//!
//! A reader therefore only ever needs the row groups of one window at a time (the memory bound
//! of the shuffle), and a position's row is found by computing one window's permutation.
//!
//! The pieces, each a module: [`rng`] (the seeded generators every order derives from),
//! [`order`] (one dataset's epoch order), [`split`] (which positions each consumer takes) and
//! [`mixture`] (which source each position of a mixture draws from, and which row), [`pack`]
//! (which examples share a packed row of a token and crop budget) and [`pack_mixture`] (the
//! same for a mixture's open-ended stream).

pub mod mixture;
pub mod order;
pub mod pack;
mod pack_fit;
pub mod pack_mixture;
pub mod rng;
pub mod split;
#[cfg(test)]
mod testing;

pub use mixture::{Draw, MixtureDraws, MixtureRows, MixtureSchedule, MixtureSource};
pub use order::{EpochPlan, PlanCursor, ShuffleOptions, Window, MAX_WINDOW_ROWS};
pub use pack::{
    pack_window, PackCosts, PackCursor, PackOptions, PackPlan, PackedRows, PackedWindow,
};
pub use pack_mixture::{
    DrawnRow, MixturePackCursor, MixturePackPlan, MixturePackedRows, MixtureWindow, WindowAnchor,
};
pub use rng::{derive_seed, splitmix64, Rng};
pub use split::{ConsumerRows, ConsumerSplit, Remainder};
