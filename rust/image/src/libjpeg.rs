//! JPEG decoding with libjpeg-turbo's decoder, as vendored by `mozjpeg-sys` (MozJPEG changes
//! only the encoder), compiled from C by the `cc` crate. Its x86 SIMD (IDCT, upsampling, colour
//! conversion in AVX2/SSE2) is assembled by NASM, and built in only where `nasm` is on the
//! build machine's `PATH`; without it the build still succeeds, with plain C.
//!
//! Used for reduced-size decodes (DCT scaling to 1/2, 1/4 or 1/8), which zune-jpeg cannot do,
//! and, when this build has the SIMD and the CPU runs it ([`has_simd`]), for full-size decodes
//! too: there it is faster than zune-jpeg, and without SIMD it is half zune-jpeg's speed.
//!
//! Errors: libjpeg reports a fatal error by calling the error manager's `error_exit`, which
//! must not return. Ours unwinds with `std::panic::resume_unwind` (no panic hook, nothing
//! printed) through libjpeg's C frames back to the `catch_unwind` in [`decode_scaled`], which
//! then destroys the decompressor. This is libjpeg's documented longjmp-out-of-`error_exit`
//! protocol, with Rust's unwinding in place of `longjmp`: the C functions and our callbacks
//! are `extern "C-unwind"`, the C is compiled with unwind tables (mozjpeg-sys's `unwinding`
//! feature adds `-fexceptions`), and C frames have no destructors to skip. Warnings about
//! damaged data take the same exit, since libjpeg would otherwise fill the rest of the image
//! with grey and carry on: a cut file is [`ImageError::Truncated`], a bad Huffman code or a
//! misplaced marker [`ImageError::Corrupt`]. Built with `panic = "abort"` there is no
//! unwinding, so this path is not used and every JPEG is decoded in full by zune-jpeg.
//!
//! One decompressor per call, no global state but libjpeg's per-thread record of the CPU's
//! SIMD support: thread- and fork-safe.

use std::ffi::{c_int, c_ulong};
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;

use mozjpeg_sys as j;

use crate::error::{Format, ImageError, Result};
use crate::rgb::RgbImage;

/// What unwinds out of libjpeg: its message code and text.
struct Failure {
    code: c_int,
    message: String,
}

/// Why a decode stopped short.
enum Stop {
    /// libjpeg failed (or was stopped by a warning we treat as fatal).
    Jpeg(Failure),
    /// A colour type, precision or coding this path does not handle: decode in full instead.
    Unhandled,
}

// libjpeg-turbo's own SIMD dispatch (`simd/x86_64/jsimd.c`, or `jsimd_none.c` in a build
// without NASM, where every answer is 0). Each checks the CPU once per thread. (mozjpeg-sys
// builds it with `NO_GETENV`, so libjpeg-turbo's `JSIMD_FORCENONE` has no effect.)
extern "C" {
    fn jsimd_can_idct_islow() -> c_int;
    fn jsimd_can_ycc_rgb() -> c_int;
}

/// The environment variable that, set to `zune-jpeg`, keeps full-size decodes on zune-jpeg.
pub const DECODER_ENV: &str = "PIXMO_STREAM_JPEG_DECODER";

/// Whether libjpeg-turbo runs its SIMD here: it was assembled in (NASM was found when the
/// package was built), the CPU has SSE2 or AVX2, and `PIXMO_STREAM_JPEG_DECODER` is not
/// `zune-jpeg`. Then libjpeg-turbo decodes full-size JPEGs too (measured per 1.7 MP photo:
/// 6.3 ms against zune-jpeg's 7.2; without SIMD, 13.2). Decided once per process.
pub fn has_simd() -> bool {
    static SIMD: OnceLock<bool> = OnceLock::new();
    *SIMD.get_or_init(|| {
        if std::env::var_os(DECODER_ENV).is_some_and(|v| v == "zune-jpeg") {
            return false;
        }
        // SAFETY: both take no arguments and only read the CPU's features.
        unsafe { jsimd_can_idct_islow() != 0 && jsimd_can_ycc_rgb() != 0 }
    })
}

/// Decodes the JPEG at `1/reduce` of its size (1, 2, 4 or 8), to RGB8. `Ok(None)` when this
/// decoder does not handle the image (arithmetic coding, 12-bit or lossless data, an unusual
/// colour space, a header it reads differently from zune-jpeg's): the caller decodes it in
/// full. `width` x `height` is the size zune-jpeg read from the header, which the caller has
/// checked against its pixel limit; libjpeg must read the same.
pub(crate) fn decode_scaled(
    bytes: &[u8],
    width: u32,
    height: u32,
    reduce: u32,
) -> Result<Option<RgbImage>> {
    decode_scaled_limited(bytes, width, height, reduce, MAX_SCANS)
}

/// At most this many scans in a progressive JPEG. Every scan is a pass over the whole image's
/// coefficients, so a small file of many tiny scans (a "scan bomb") would keep a decoder busy
/// for minutes; real encoders write about 10 (libjpeg's default script). The full-size
/// decoder, zune-jpeg, refuses more than 100 by default, so both paths take the same images.
const MAX_SCANS: c_int = 100;

/// libjpeg's progress manager, with the scan limit beside it; `mgr` first, so libjpeg's
/// pointer to it is a pointer to the whole.
#[repr(C)]
struct Progress {
    mgr: j::jpeg_progress_mgr,
    max_scans: c_int,
}

fn decode_scaled_limited(
    bytes: &[u8],
    width: u32,
    height: u32,
    reduce: u32,
    max_scans: c_int,
) -> Result<Option<RgbImage>> {
    if !cfg!(panic = "unwind") || !matches!(reduce, 1 | 2 | 4 | 8) {
        return Ok(None);
    }
    // SAFETY: both are plain C structs for which all-zero is a valid (empty) state; the error
    // manager is filled in by `jpeg_std_error` and the decompressor by `jpeg_CreateDecompress`.
    // Neither moves while libjpeg holds pointers to them (to the end of this function).
    let mut err: j::jpeg_error_mgr = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut cinfo: j::jpeg_decompress_struct = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `err` outlives `cinfo`'s use of it; the callbacks match libjpeg's signatures.
    unsafe {
        j::jpeg_std_error(&mut err);
    }
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err.output_message = Some(output_message);
    cinfo.common.err = &mut err;
    let mut progress = Progress {
        mgr: j::jpeg_progress_mgr {
            progress_monitor: Some(progress_monitor),
            pass_counter: 0,
            pass_limit: 0,
            completed_passes: 0,
            total_passes: 0,
        },
        max_scans,
    };

    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `cinfo` is set up as above; `bytes` outlives the decompressor.
        unsafe { run(&mut cinfo, &mut progress, bytes, (width, height), reduce) }
    }));
    // SAFETY: valid in any state after creation (and a no-op before it: `mem` is null),
    // including after an error unwound out of libjpeg; frees everything libjpeg allocated.
    unsafe { j::jpeg_destroy_decompress(&mut cinfo) };
    match run {
        Ok(Ok(img)) => Ok(Some(img)),
        Ok(Err(Stop::Unhandled)) => Ok(None),
        Ok(Err(Stop::Jpeg(f))) => failure(f),
        Err(payload) => match payload.downcast::<Failure>() {
            Ok(f) => failure(*f),
            // A panic of ours (a bug), not libjpeg's error: let it go on.
            Err(other) => panic::resume_unwind(other),
        },
    }
}

/// # Safety
/// `c` is zeroed but for its error manager, which is ours (its `error_exit` unwinds);
/// `progress` lives as long as `c` is used.
unsafe fn run(
    c: &mut j::jpeg_decompress_struct,
    progress: &mut Progress,
    bytes: &[u8],
    size: (u32, u32),
    reduce: u32,
) -> std::result::Result<RgbImage, Stop> {
    j::jpeg_create_decompress(c);
    // Set after creation, which clears every field but the error manager. `progress`
    // outlives the decompressor's use of it, as the error manager does.
    c.common.progress = &mut progress.mgr;
    let len = c_ulong::try_from(bytes.len()).map_err(|_| Stop::Unhandled)?;
    j::jpeg_mem_src(c, bytes.as_ptr(), len);
    j::jpeg_read_header(c, 1);
    if (c.image_width, c.image_height) != size {
        return Err(Stop::Unhandled);
    }
    use j::J_COLOR_SPACE as Cs;
    let (out, channels) = match c.jpeg_color_space {
        Cs::JCS_GRAYSCALE | Cs::JCS_YCbCr | Cs::JCS_RGB => (Cs::JCS_RGB, 3),
        // YCCK is converted to CMYK by libjpeg; CMYK to RGB below, as zune-jpeg does.
        Cs::JCS_CMYK | Cs::JCS_YCCK => (Cs::JCS_CMYK, 4),
        _ => return Err(Stop::Unhandled),
    };
    c.out_color_space = out;
    c.scale_num = 1;
    c.scale_denom = reduce;
    j::jpeg_start_decompress(c);
    let (w, h) = (c.output_width as usize, c.output_height as usize);
    if c.output_components as usize != channels || w == 0 || h == 0 {
        return Err(Stop::Unhandled);
    }
    let stride = w * channels;
    // Not zeroed (a full-size photo's 5 MB of memset): libjpeg writes every byte of every row.
    let mut buf: Vec<u8> = Vec::with_capacity(stride * h);
    let base = buf.as_mut_ptr();
    let mut rows: Vec<*mut u8> = (0..h).map(|y| base.add(y * stride)).collect();
    while (c.output_scanline as usize) < h {
        let y = c.output_scanline as usize;
        // Rows `y..h` of `buf`, which nothing else touches until the loop ends.
        let n = j::jpeg_read_scanlines(c, rows.as_mut_ptr().add(y), (h - y) as u32);
        if n == 0 {
            // Only a suspending data source returns no rows; the memory source never does.
            return Err(Stop::Jpeg(Failure {
                code: j::JWRN_JPEG_EOF,
                message: "no rows returned".into(),
            }));
        }
    }
    // SAFETY: each of the `h` rows, `stride` bytes apiece, was written by
    // `jpeg_read_scanlines` (it returned every row up to `h`); the capacity is `stride * h`.
    buf.set_len(stride * h);
    // Not `jpeg_finish_decompress`: every pixel is in, and what follows the last scan (a
    // missing EOI, trailing bytes) matters no more here than it does to zune-jpeg.
    let data = if channels == 4 {
        cmyk_to_rgb(&buf)
    } else {
        buf
    };
    Ok(RgbImage {
        width: w as u32,
        height: h as u32,
        data,
    })
}

fn failure(f: Failure) -> Result<Option<RgbImage>> {
    let (code, detail) = (f.code, f.message);
    let format = Format::Jpeg;
    if UNHANDLED.contains(&code) {
        return Ok(None);
    }
    Err(if TRUNCATED.contains(&code) {
        ImageError::Truncated { format, detail }
    } else {
        ImageError::Corrupt { format, detail }
    })
}

/// Errors that say the data ends early.
const TRUNCATED: [c_int; 3] = [j::JWRN_JPEG_EOF, j::JERR_INPUT_EOF, j::JERR_INPUT_EMPTY];

/// Errors that say this build of libjpeg lacks a feature: the full decoder gets to decide.
const UNHANDLED: [c_int; 5] = [
    j::JERR_ARITH_NOTIMPL,
    j::JERR_BAD_PRECISION,
    j::JERR_SOF_UNSUPPORTED,
    j::JERR_NOT_COMPILED,
    j::JERR_CONVERSION_NOTIMPL,
];

/// Warnings about damaged data, fatal here (libjpeg would go on with grey or zeros). Others
/// (stray bytes before a marker, an unknown JFIF version or Adobe transform) are harmless:
/// PIL and zune-jpeg read those images too.
/// (Arithmetic decoding is not compiled in, so its "bad arithmetic code" cannot occur.)
const FATAL_WARNINGS: [c_int; 5] = [
    j::JWRN_JPEG_EOF,
    j::JWRN_HIT_MARKER,
    j::JWRN_HUFF_BAD_CODE,
    j::JWRN_MUST_RESYNC,
    j::JWRN_BOGUS_PROGRESSION,
];

/// libjpeg's text for the error manager's current message (code and parameters).
///
/// # Safety
/// `cinfo.err` points to an error manager set up by `jpeg_std_error`.
unsafe fn message(cinfo: &mut j::jpeg_common_struct) -> Failure {
    let (code, format) = {
        let err = &*cinfo.err;
        (err.msg_code, err.format_message)
    };
    let mut text = String::new();
    if let Some(format) = format {
        // The binding types the output buffer as `&[u8; 80]`, but libjpeg writes into it
        // (JMSG_LENGTH_MAX bytes, NUL-terminated): call it with a pointer to a mutable one.
        type Writes = unsafe extern "C-unwind" fn(&mut j::jpeg_common_struct, *mut u8);
        let format: Writes = std::mem::transmute::<_, Writes>(format);
        let mut buf = [0u8; 80];
        format(cinfo, buf.as_mut_ptr());
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        text = String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    if text.is_empty() {
        text = format!("libjpeg message {code}");
    }
    Failure {
        code,
        message: text,
    }
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut j::jpeg_common_struct) {
    let failure = message(cinfo);
    panic::resume_unwind(Box::new(failure));
}

unsafe extern "C-unwind" fn emit_message(cinfo: &mut j::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return; // trace messages
    }
    if FATAL_WARNINGS.contains(&(*cinfo.err).msg_code) {
        error_exit(cinfo);
    }
    (*cinfo.err).num_warnings += 1;
}

/// Called by libjpeg as it reads the input (every scan of a progressive JPEG is read inside
/// `jpeg_start_decompress`): stops a decode past the scan limit, the way `error_exit` does.
unsafe extern "C-unwind" fn progress_monitor(cinfo: &mut j::jpeg_common_struct) {
    if cinfo.is_decompressor == 0 || cinfo.progress.is_null() {
        return;
    }
    // SAFETY: ours is the only progress manager, always inside a `Progress`; a decompressor's
    // common fields are the first of its `jpeg_decompress_struct`.
    let limit = (*cinfo.progress.cast::<Progress>()).max_scans;
    let scans = (*(cinfo as *mut j::jpeg_common_struct).cast::<j::jpeg_decompress_struct>())
        .input_scan_number;
    if scans > limit {
        panic::resume_unwind(Box::new(Failure {
            code: SCAN_LIMIT,
            message: format!("more than {limit} scans (a progressive JPEG this long is refused)"),
        }));
    }
}

/// Our own code for the scan limit (libjpeg's codes are small and non-negative).
const SCAN_LIMIT: c_int = -1;

unsafe extern "C-unwind" fn output_message(_cinfo: &mut j::jpeg_common_struct) {}

/// Inverted (Adobe) CMYK as libjpeg returns it to RGB, as zune-jpeg converts it:
/// `c * k / 255`, rounded, per channel.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mul = |v: u8, k: u8| {
        let t = u32::from(v) * u32::from(k) + 128;
        ((t + (t >> 8)) >> 8) as u8
    };
    cmyk.chunks_exact(4)
        .flat_map(|p| [mul(p[0], p[3]), mul(p[1], p[3]), mul(p[2], p[3])])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use j::J_COLOR_SPACE as Cs;

    /// Encodes `px` (`channels` bytes a pixel in `space`, stored as `stored`) with libjpeg's
    /// own encoder: libjpeg-turbo's defaults (4:2:0 for colour), quality 90.
    fn encode(px: &[u8], w: u32, h: u32, space: Cs, stored: Cs, progressive: bool) -> Vec<u8> {
        let channels = px.len() / (w * h) as usize;
        // SAFETY: as in `decode_scaled`, with libjpeg's compressor and memory destination.
        unsafe {
            let mut err: j::jpeg_error_mgr = MaybeUninit::zeroed().assume_init();
            j::jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            let mut c: j::jpeg_compress_struct = MaybeUninit::zeroed().assume_init();
            c.common.err = &mut err;
            j::jpeg_create_compress(&mut c);
            let (mut out, mut len): (*mut u8, c_ulong) = (std::ptr::null_mut(), 0);
            j::jpeg_mem_dest(&mut c, &mut out, &mut len);
            (c.image_width, c.image_height) = (w, h);
            c.input_components = channels as c_int;
            c.in_color_space = space;
            let fastest = j::JCP_FASTEST as c_int;
            j::jpeg_c_set_int_param(&mut c, j::J_INT_PARAM::JINT_COMPRESS_PROFILE, fastest);
            j::jpeg_set_defaults(&mut c);
            j::jpeg_set_colorspace(&mut c, stored);
            j::jpeg_set_quality(&mut c, 90, 1);
            if progressive {
                j::jpeg_simple_progression(&mut c);
            }
            j::jpeg_start_compress(&mut c, 1);
            while c.next_scanline < h {
                let row = [px[c.next_scanline as usize * w as usize * channels..].as_ptr()];
                j::jpeg_write_scanlines(&mut c, row.as_ptr(), 1);
            }
            j::jpeg_finish_compress(&mut c);
            let data = std::slice::from_raw_parts(out, len as usize).to_vec();
            j::jpeg_destroy_compress(&mut c);
            libc::free(out.cast());
            data
        }
    }

    /// A smooth colour gradient.
    fn photo(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 90]))
            .collect()
    }

    /// Width and height from the frame header libjpeg's encoder writes (SOF0 or SOF2; its
    /// segments before it hold no 0xFF 0xC0/0xC2 pair at these qualities). Read here, not
    /// with `formats`, which depends on this module.
    fn size(data: &[u8]) -> (u32, u32) {
        let at = data
            .windows(2)
            .position(|m| m[0] == 0xFF && matches!(m[1], 0xC0 | 0xC2))
            .expect("a frame header");
        let b = &data[at + 5..at + 9];
        let be = |i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        (be(2), be(0))
    }

    /// A full-size decode by the other decoder, zune-jpeg.
    fn full(jpeg: &[u8]) -> RgbImage {
        let opts = zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(jpeg),
            opts,
        );
        let (width, height) = size(jpeg);
        RgbImage {
            width,
            height,
            data: d.decode().unwrap(),
        }
    }

    fn scaled(data: &[u8], reduce: u32) -> Result<Option<RgbImage>> {
        let (w, h) = size(data);
        decode_scaled(data, w, h, reduce)
    }

    /// Largest difference between `img` and the full-size decode sampled at the centres of
    /// the blocks each of its pixels stands for.
    fn max_diff(img: &RgbImage, full: &RgbImage, reduce: u32) -> u8 {
        let mut worst = 0;
        for y in 0..img.height {
            for x in 0..img.width {
                let (fx, fy) = (
                    (x * reduce + reduce / 2).min(full.width - 1),
                    (y * reduce + reduce / 2).min(full.height - 1),
                );
                for ch in 0..3 {
                    let a = img.data[((y * img.width + x) * 3 + ch) as usize];
                    let b = full.data[((fy * full.width + fx) * 3 + ch) as usize];
                    worst = worst.max(a.abs_diff(b));
                }
            }
        }
        worst
    }

    #[test]
    fn scaled_decodes_have_the_reduced_size_and_the_same_pixels() {
        for progressive in [false, true] {
            let data = encode(
                &photo(203, 151),
                203,
                151,
                Cs::JCS_RGB,
                Cs::JCS_YCbCr,
                progressive,
            );
            let reference = full(&data);
            for reduce in [1, 2, 4, 8] {
                let img = scaled(&data, reduce).unwrap().unwrap();
                assert_eq!(
                    (img.width, img.height),
                    (203u32.div_ceil(reduce), 151u32.div_ceil(reduce))
                );
                assert!(max_diff(&img, &reference, reduce) <= 6, "1/{reduce}");
            }
        }
    }

    #[test]
    fn gray_cmyk_and_ycck_become_rgb_as_zune_converts_them() {
        let (w, h) = (64, 48);
        let gray = encode(
            &vec![77; 64 * 48],
            w,
            h,
            Cs::JCS_GRAYSCALE,
            Cs::JCS_GRAYSCALE,
            false,
        );
        let cmyk: Vec<u8> = [200, 100, 50, 128].repeat(64 * 48);
        let adobe = encode(&cmyk, w, h, Cs::JCS_CMYK, Cs::JCS_CMYK, false);
        let ycck = encode(&cmyk, w, h, Cs::JCS_CMYK, Cs::JCS_YCCK, false);
        for data in [gray, adobe, ycck] {
            let reference = full(&data);
            let img = scaled(&data, 4).unwrap().unwrap();
            assert_eq!((img.width, img.height), (16, 12));
            assert!(max_diff(&img, &reference, 4) <= 2);
        }
        let img = scaled(&encode(&cmyk, w, h, Cs::JCS_CMYK, Cs::JCS_CMYK, false), 2)
            .unwrap()
            .unwrap();
        assert!(img.data.chunks(3).all(|p| p
            .iter()
            .zip([100, 50, 25])
            .all(|(&a, b)| a.abs_diff(b) <= 2)));
    }

    #[test]
    fn cut_data_is_truncated_and_damaged_data_an_error_never_a_panic() {
        let data = encode(&photo(120, 90), 120, 90, Cs::JCS_RGB, Cs::JCS_YCbCr, false);
        let (w, h) = (120, 90);
        for (cut, reduce) in [data.len() / 2, data.len() - 20, 200]
            .into_iter()
            .flat_map(|c| [(c, 1), (c, 4)])
        {
            let err = decode_scaled(&data[..cut], w, h, reduce).unwrap_err();
            assert_eq!(err.reason(), "truncated", "{cut} 1/{reduce}: {err}");
            assert!(
                err.to_string().contains("Premature end of JPEG file"),
                "{err}"
            );
        }
        // A different size than the caller read: not decoded here.
        assert!(decode_scaled(&data, w + 1, h, 4).unwrap().is_none());
        // Damaged entropy-coded data: an error (or, by chance, still an image), never a panic.
        let mut seed = 7u32;
        let mut errors = 0;
        for k in 0..600 {
            let mut b = data.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (seed >> 8) as usize % b.len();
                b[i] = (seed >> 3) as u8;
            }
            // At half size and at full size (the full-size path where libjpeg has its SIMD).
            match decode_scaled(&b, w, h, 1 + (k % 2)) {
                Ok(Some(img)) => {
                    assert_eq!(img.data.len(), img.width as usize * img.height as usize * 3)
                }
                Ok(None) => {}
                Err(e) => {
                    assert!(matches!(e.reason(), "corrupt" | "truncated"), "{e}");
                    errors += 1;
                }
            }
        }
        assert!(errors > 100, "{errors}");
    }

    #[test]
    fn a_progressive_jpeg_past_the_scan_limit_is_refused() {
        let data = encode(&photo(64, 48), 64, 48, Cs::JCS_RGB, Cs::JCS_YCbCr, true);
        // libjpeg's default progressive script has 10 scans for colour.
        assert!(decode_scaled_limited(&data, 64, 48, 4, 10)
            .unwrap()
            .is_some());
        let err = decode_scaled_limited(&data, 64, 48, 4, 3).unwrap_err();
        assert_eq!(err.reason(), "corrupt", "{err}");
        assert!(err.to_string().contains("more than 3 scans"), "{err}");
        // Baseline: one scan, under any limit.
        let base = encode(&photo(64, 48), 64, 48, Cs::JCS_RGB, Cs::JCS_YCbCr, false);
        assert!(decode_scaled_limited(&base, 64, 48, 4, 1)
            .unwrap()
            .is_some());
    }

    #[test]
    fn message_codes_match_the_compiled_library() {
        // The binding's codes are generated from jerror.h, whose list has conditional entries
        // further down: check that the ones used here name the messages we mean.
        // SAFETY: `jpeg_std_error` fills the table pointer; the codes are below its length.
        let text = |code: c_int| unsafe {
            let mut err: j::jpeg_error_mgr = MaybeUninit::zeroed().assume_init();
            j::jpeg_std_error(&mut err);
            assert!(code <= err.last_jpeg_message);
            CStr::from_ptr(*err.jpeg_message_table.add(code as usize))
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(text(j::JWRN_JPEG_EOF), "Premature end of JPEG file");
        assert_eq!(text(j::JERR_INPUT_EOF), "Premature end of input file");
        assert_eq!(text(j::JERR_INPUT_EMPTY), "Empty input file");
        assert_eq!(
            text(j::JWRN_HUFF_BAD_CODE),
            "Corrupt JPEG data: bad Huffman code"
        );
        assert_eq!(
            text(j::JWRN_HIT_MARKER),
            "Corrupt JPEG data: premature end of data segment"
        );
        assert!(text(j::JWRN_MUST_RESYNC).contains("instead of RST"));
        assert!(text(j::JWRN_BOGUS_PROGRESSION).starts_with("Inconsistent progression"));
        assert!(text(j::JERR_ARITH_NOTIMPL).contains("arithmetic"));
        assert!(text(j::JERR_BAD_PRECISION).contains("precision"));
        assert!(text(j::JERR_SOF_UNSUPPORTED).starts_with("Unsupported JPEG process"));
        assert!(text(j::JERR_NOT_COMPILED).contains("omitted at compile time"));
        assert!(text(j::JERR_CONVERSION_NOTIMPL).contains("color conversion"));
    }

    #[test]
    fn cmyk_conversion_rounds_like_zune() {
        assert_eq!(
            cmyk_to_rgb(&[255, 0, 128, 255, 255, 255, 255, 0]),
            [255, 0, 128, 0, 0, 0]
        );
        assert_eq!(cmyk_to_rgb(&[200, 100, 50, 128]), [100, 50, 25]);
    }
}
