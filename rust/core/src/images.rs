//! Image decoding on the read-ahead threads: a [`SampleStage`] that decodes one binary
//! column of each row with `pixmo_stream_image`, so pixels are ready when the consumer asks
//! for the batch. A broken image (not an image, truncated, corrupt, zero size, more pixels
//! than allowed) is an [`Error::BadSample`], handled by the stream's bad-sample policy.

use std::sync::{Arc, Weak};

use pixmo_stream_image as img;

use crate::batch_memory::{give_back, CropsMemory, CropsPool, Gather};
use crate::error::{Error, Location, Result};
use crate::sample::{binary_value, BatchBuffer, SampleStage, StageValue};
use crate::stream::{ReadBatch, ReadRow};
use crate::Dataset;

/// What is made of each image.
#[derive(Debug, Clone)]
pub enum ImageWork {
    /// Decoded to upright RGB8 and resized as the options say.
    Rgb(img::DecodeOptions),
    /// Molmo's multi-crop preprocessing (crops, patch mask, token indices).
    Molmo(img::MolmoConfig),
}

/// One decoded image of a row.
#[derive(Debug)]
pub enum DecodedImage {
    Rgb(img::RgbImage),
    Molmo(img::MolmoImage),
}

/// The fixed-size RGB images of a whole batch in one contiguous `[n, height, width, 3]`
/// buffer (row `i` of the batch at `i * height * width * 3`), gathered on the read thread.
#[derive(Debug)]
pub struct RgbBatch {
    pub data: Vec<u8>,
    pub n: usize,
    pub height: usize,
    pub width: usize,
}

/// A batch's Molmo crops in one buffer, `[n, slot_crops, patches, patch_len]`: row `i`'s
/// crops at the front of slot `i`, the rest of the slot padding crops (-1.0 float32, 0 uint8,
/// as Molmo's collator pads), written there by the read thread as it preprocessed each row
/// (the rows' own `MolmoImage`s then have empty `crops`).
///
/// Its buffer comes from, and goes back to when the batch is dropped, the stage's
/// [`CropsPool`] (while the stage lives).
#[derive(Debug)]
pub struct MolmoBatch {
    memory: CropsMemory,
    pub n: usize,
    pub slot_crops: usize,
    pub patches: usize,
    pub patch_len: usize,
    pool: Weak<CropsPool>,
}

impl Drop for MolmoBatch {
    fn drop(&mut self) {
        give_back(&self.pool, &mut self.memory);
    }
}

impl MolmoBatch {
    /// The crops' memory (float32 or uint8 values).
    pub fn memory(&self) -> &CropsMemory {
        &self.memory
    }

    fn slot_len(&self) -> usize {
        self.slot_crops * self.patches * self.patch_len
    }

    /// Slot `i` as the crops' destination.
    fn slot(&mut self, i: usize) -> img::CropsOut<'_> {
        let len = self.slot_len();
        self.memory.out(i * len..(i + 1) * len)
    }

    /// Slot `i` all padding (a row without an image).
    fn pad(&mut self, i: usize) {
        match self.slot(i) {
            img::CropsOut::F32(s) => s.fill(img::molmo::PAD_F32),
            img::CropsOut::U8(s) => s.fill(0),
        }
    }
}

/// Decodes the image column of each row read.
#[derive(Debug, Clone)]
pub struct ImageStage {
    /// Per source dataset: the image column's position in that source's projected columns
    /// and its name, or `None` for a source without it (its rows pass undecoded).
    columns: Vec<Option<(usize, String)>>,
    work: ImageWork,
    /// Molmo: write each batch's crops into one [`MolmoBatch`] (see [`ImageStage::gathering`]).
    gather: Gather,
    /// Where those batches' buffers come from.
    pool: Arc<CropsPool>,
}

impl ImageStage {
    pub fn new(columns: Vec<Option<(usize, String)>>, work: ImageWork) -> Result<Self> {
        let checked = match &work {
            ImageWork::Rgb(o) if o.max_pixels == 0 => {
                return Err(Error::InvalidArgument(
                    "max_pixels must be at least 1".into(),
                ))
            }
            ImageWork::Rgb(o) => o.resize.validate(),
            ImageWork::Molmo(c) => c.validate(),
        };
        checked.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(ImageStage {
            columns,
            work,
            gather: Gather::Off,
            pool: Arc::default(),
        })
    }

    /// With Molmo's preprocessing: each read batch's crops go straight into one
    /// [`MolmoBatch`], padded to `max_crops + 1` crops a row, which a consumer whose batches
    /// are the read batches uses as its batch tensor without copying a crop, in this
    /// process's memory or in shared memory (for a DataLoader worker, whose batches then cross
    /// to the main process uncopied). Off by default (another consumer would only hold the
    /// padding in memory).
    pub fn gathering(mut self, gather: Gather) -> Self {
        self.gather = gather;
        self
    }

    /// `(height, width)` of every image when the work gives one fixed size.
    pub fn fixed_size(&self) -> Option<(usize, usize)> {
        match &self.work {
            ImageWork::Rgb(o) => match o.resize {
                img::Resize::Exact { width, height } | img::Resize::Pad { width, height } => {
                    Some((height as usize, width as usize))
                }
                img::Resize::None | img::Resize::MaxSide(_) => None,
            },
            ImageWork::Molmo(_) => None,
        }
    }

    fn bad(ds: &Dataset, row: &ReadRow, column: &str, reason: String) -> Error {
        let location = match ds.locate(row.row) {
            Ok((s, g, _)) => Location::chunk(ds.shard_path(s), g, column),
            Err(_) => Location::file(ds.path()),
        };
        Error::BadSample {
            location,
            row: row.row,
            reason,
        }
    }
}

impl ImageStage {
    /// The row's image decoded; Molmo's crops into `out` when given.
    fn decode_row(
        &self,
        source: usize,
        ds: &Dataset,
        row: &ReadRow,
        out: Option<img::CropsOut<'_>>,
    ) -> Result<StageValue> {
        let Some(Some((pos, name))) = self.columns.get(source) else {
            return Ok(StageValue(Arc::new(())));
        };
        let chunk = row.chunks.get(*pos).ok_or_else(|| {
            Error::InvalidArgument(format!("image column {name:?} is not among those read"))
        })?;
        let bytes = match binary_value(chunk, row.index) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(Self::bad(ds, row, name, "the image is null".into())),
            Err(Error::InvalidArgument(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "column {name:?} of {} is not a binary column: it holds no encoded images",
                    ds.path().display()
                )))
            }
            Err(e) => return Err(e),
        };
        let decoded = match &self.work {
            ImageWork::Rgb(o) => img::decode_rgb(bytes, o).map(DecodedImage::Rgb),
            ImageWork::Molmo(c) => {
                img::molmo_preprocess_into(bytes, c, out).map(DecodedImage::Molmo)
            }
        };
        match decoded {
            Ok(d) => Ok(StageValue(Arc::new(d))),
            Err(img::ImageError::InvalidArgument(m)) => Err(Error::InvalidArgument(m)),
            Err(e) => Err(Self::bad(ds, row, name, format!("{} ({})", e, e.reason()))),
        }
    }
}

impl SampleStage for ImageStage {
    fn process(&self, source: usize, ds: &Dataset, row: &ReadRow) -> Result<StageValue> {
        self.decode_row(source, ds, row, None)
    }

    fn begin_batch(&self, rows: usize) -> Option<BatchBuffer> {
        let ImageWork::Molmo(c) = &self.work else {
            return None;
        };
        if self.gather == Gather::Off || rows == 0 {
            return None;
        }
        let (slot_crops, patches, patch_len) = (
            c.max_crops as usize + 1,
            c.patches_per_crop(),
            c.patch_len(),
        );
        let len = rows * slot_crops * patches * patch_len;
        // Every slot is written before it is read (crops, then padding).
        Some(Box::new(MolmoBatch {
            memory: self.pool.take(c.normalize, len, self.gather),
            n: rows,
            slot_crops,
            patches,
            patch_len,
            pool: Arc::downgrade(&self.pool),
        }))
    }

    fn process_into(
        &self,
        source: usize,
        ds: &Dataset,
        row: &ReadRow,
        buffer: &mut BatchBuffer,
        slot: usize,
    ) -> Result<StageValue> {
        let Some(batch) = buffer.downcast_mut::<MolmoBatch>() else {
            return self.process(source, ds, row);
        };
        let value = self.decode_row(source, ds, row, Some(batch.slot(slot)))?;
        if value.0.downcast_ref::<DecodedImage>().is_none() {
            batch.pad(slot); // (a source without the image column)
        }
        Ok(value)
    }

    /// Hands out a batch's Molmo crops buffer, or gathers fixed-size images into one buffer
    /// (one copy each; the per-row buffers are freed) when every row of the batch has one.
    fn finish_batch(&self, batch: &mut ReadBatch, buffer: Option<BatchBuffer>) -> Result<()> {
        if let Some(buffer) = buffer {
            if let Ok(molmo) = buffer.downcast::<MolmoBatch>() {
                batch.assembled = Some(StageValue(Arc::new(*molmo)));
            }
            return Ok(());
        }
        let Some((height, width)) = self.fixed_size() else {
            return Ok(());
        };
        let slot = height * width * 3;
        let all_decoded = batch.rows.iter().all(|r| {
            r.processed
                .as_ref()
                .is_some_and(|p| p.0.downcast_ref::<DecodedImage>().is_some())
        });
        if !all_decoded || batch.rows.is_empty() {
            return Ok(());
        }
        let mut data = Vec::with_capacity(slot * batch.rows.len());
        for r in &mut batch.rows {
            if let Some(p) = r.processed.take() {
                if let Some(DecodedImage::Rgb(im)) = p.0.downcast_ref::<DecodedImage>() {
                    if im.data.len() != slot {
                        return Err(Error::Internal(format!(
                            "row {} decoded to {}x{}, not the fixed {width}x{height}",
                            r.row, im.width, im.height
                        )));
                    }
                    data.extend_from_slice(&im.data);
                }
            }
        }
        batch.assembled = Some(StageValue(Arc::new(RgbBatch {
            data,
            n: batch.rows.len(),
            height,
            width,
        })));
        Ok(())
    }
}
