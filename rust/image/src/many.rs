//! Many images at once, on scoped threads started for the call and joined before it
//! returns: nothing outlives the call, so a forked data-loader worker inherits no pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::decode::{decode_rgb, DecodeOptions};
use crate::error::{ImageError, Result};
use crate::resize::Resize;
use crate::rgb::RgbImage;

/// `f(0..n)` on up to `threads` threads (0 or 1: the calling thread), results in order.
/// Work is handed out one item at a time, so one slow image does not hold up a fixed share.
pub fn parallel_map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let v = f(i);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every index is computed once")
        })
        .collect()
}

/// Decodes every input; one result per input, in order.
pub fn decode_many(
    inputs: &[&[u8]],
    opts: &DecodeOptions,
    threads: usize,
) -> Vec<Result<RgbImage>> {
    parallel_map(inputs.len(), threads, |i| decode_rgb(inputs[i], opts))
}

/// Decodes every input to the same fixed size (`Resize::Exact` or `Resize::Pad`) straight
/// into `out`, one `height * width * 3` slot per input, as one contiguous batch. A slot whose
/// image fails is zero-filled and its error returned at its index.
pub fn decode_many_into(
    inputs: &[&[u8]],
    opts: &DecodeOptions,
    threads: usize,
    out: &mut [u8],
) -> Result<Vec<Result<()>>> {
    let (w, h) = match opts.resize {
        Resize::Exact { width, height } | Resize::Pad { width, height } => (width, height),
        other => {
            return Err(ImageError::InvalidArgument(format!(
                "a stacked batch needs a fixed output size (Exact or Pad), not {other:?}"
            )))
        }
    };
    opts.resize.validate()?;
    let slot = w as usize * h as usize * 3;
    if out.len() != slot * inputs.len() {
        return Err(ImageError::InvalidArgument(format!(
            "output buffer holds {} bytes, {} images of {w}x{h} need {}",
            out.len(),
            inputs.len(),
            slot * inputs.len()
        )));
    }
    let chunks: Vec<Mutex<&mut [u8]>> = out.chunks_mut(slot.max(1)).map(Mutex::new).collect();
    Ok(parallel_map(inputs.len(), threads, |i| {
        let mut dst = chunks[i].lock().unwrap_or_else(|p| p.into_inner());
        match decode_rgb(inputs[i], opts) {
            Ok(img) => {
                dst.copy_from_slice(&img.data);
                Ok(())
            }
            Err(e) => {
                dst.fill(0);
                Err(e)
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order() {
        for threads in [0, 1, 2, 5, 100] {
            assert_eq!(
                parallel_map(37, threads, |i| i * i),
                (0..37).map(|i| i * i).collect::<Vec<_>>()
            );
        }
        assert!(parallel_map(0, 4, |i| i).is_empty());
    }

    #[test]
    fn stacking_needs_a_fixed_size() {
        let opts = DecodeOptions {
            resize: Resize::MaxSide(10),
            ..Default::default()
        };
        assert!(matches!(
            decode_many_into(&[], &opts, 1, &mut []),
            Err(ImageError::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_bad_input_fails_alone() {
        let opts = DecodeOptions {
            resize: Resize::Exact {
                width: 2,
                height: 2,
            },
            ..Default::default()
        };
        let mut out = vec![7u8; 2 * 12];
        let res = decode_many_into(&[b"junk", b"more junk"], &opts, 2, &mut out).unwrap();
        assert!(res
            .iter()
            .all(|r| r.as_ref().unwrap_err().reason() == "not_an_image"));
        assert!(out.iter().all(|&b| b == 0));
    }
}
