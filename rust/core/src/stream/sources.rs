//! The row sources of the read-ahead: one dataset's consumer rows, a mixture's draws (with
//! the epoch each was drawn in), a packed epoch's rows (with the size of each packed row), and
//! a packed mixture's rows (with both).

use super::RowSource;
use crate::error::Result;
use crate::plan::{ConsumerRows, DrawnRow, MixturePackedRows, MixtureRows, PackedRows};

impl RowSource for ConsumerRows {
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
        out.extend(self.by_ref().take(n).map(|r| (0, r)));
        Ok(())
    }
}

impl RowSource for MixtureRows {
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
        let mut v = Vec::with_capacity(n);
        MixtureRows::next_rows(self, n, &mut v)?;
        out.extend(v.into_iter().map(|(d, r)| (d.source, r)));
        Ok(())
    }
}

/// A mixture's rows with the epoch of its source each was drawn in (for sample ids).
pub struct DrawnRows {
    rows: MixtureRows,
    epochs: Vec<u64>,
}

impl DrawnRows {
    pub fn new(rows: MixtureRows) -> Self {
        DrawnRows {
            rows,
            epochs: Vec::new(),
        }
    }
}

impl RowSource for DrawnRows {
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
        let mut v = Vec::with_capacity(n.min(1 << 16));
        self.rows.next_rows(n, &mut v)?;
        self.epochs.clear();
        for (d, r) in v {
            self.epochs.push(self.rows.epoch_of(&d));
            out.push((d.source, r));
        }
        Ok(())
    }

    fn take_marks(&mut self, _groups: &mut Vec<u32>, epochs: &mut Vec<u64>) {
        epochs.append(&mut self.epochs);
    }
}

/// A packed epoch's rows: each call takes `n` *packed rows* (one batch of them) and reports
/// their sizes, so the consumer can cut the batch's examples back into rows.
pub struct PackedSource {
    rows: PackedRows,
    ids: Vec<u64>,
    sizes: Vec<u32>,
}

impl PackedSource {
    pub fn new(rows: PackedRows) -> Self {
        PackedSource {
            rows,
            ids: Vec::new(),
            sizes: Vec::new(),
        }
    }
}

impl RowSource for PackedSource {
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
        self.ids.clear();
        self.sizes.clear();
        self.rows.next_rows(n, &mut self.ids, &mut self.sizes)?;
        out.extend(self.ids.iter().map(|&r| (0, r)));
        Ok(())
    }

    fn take_marks(&mut self, groups: &mut Vec<u32>, _epochs: &mut Vec<u64>) {
        groups.append(&mut self.sizes);
    }
}

/// A packed mixture's rows: each call takes `n` packed rows and reports their sizes and the
/// source epoch each example was drawn in.
pub struct PackedDraws {
    rows: MixturePackedRows,
    drawn: Vec<DrawnRow>,
    sizes: Vec<u32>,
}

impl PackedDraws {
    pub fn new(rows: MixturePackedRows) -> Self {
        PackedDraws {
            rows,
            drawn: Vec::new(),
            sizes: Vec::new(),
        }
    }
}

impl RowSource for PackedDraws {
    fn next_rows(&mut self, n: usize, out: &mut Vec<(usize, u64)>) -> Result<()> {
        self.drawn.clear();
        self.sizes.clear();
        self.rows.next_rows(n, &mut self.drawn, &mut self.sizes)?;
        out.extend(self.drawn.iter().map(|d| (d.source, d.row)));
        Ok(())
    }

    fn take_marks(&mut self, groups: &mut Vec<u32>, epochs: &mut Vec<u64>) {
        groups.append(&mut self.sizes);
        epochs.extend(self.drawn.drain(..).map(|d| d.epoch));
    }
}
