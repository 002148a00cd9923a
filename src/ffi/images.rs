//! Images out of model space: 8-bit pixels in the caller's memory (textures) and PNG files.
//!
//! Every image batch comes with its length: `images_len` floats must equal `n * c * h * w`
//! (computed without overflow) before a single value is read, so dimensions larger than the
//! caller's buffer are DPM_ERR_SHAPE, never a read past its end.

use std::ffi::c_char;

use super::args::{cstr, enum_value, path_arg, positive, slice, slice_mut};
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::imageio::PixelFormat;

/// 8-bit R, G, B, A per pixel (alpha 255): 4 bytes.
pub const DPM_PIXELS_RGBA8: i32 = 0;
/// 8-bit R, G, B per pixel: 3 bytes.
pub const DPM_PIXELS_RGB8: i32 = 1;
/// One 8-bit gray value per pixel: 1 byte.
pub const DPM_PIXELS_GRAY8: i32 = 2;

const FORMATS: &[(i32, PixelFormat)] = &[
    (DPM_PIXELS_RGBA8, PixelFormat::Rgba8),
    (DPM_PIXELS_RGB8, PixelFormat::Rgb8),
    (DPM_PIXELS_GRAY8, PixelFormat::Gray8),
];

/// Checks a caller's image batch: positive sizes, 1 or 3 channels, `images_len` equal to
/// `n * c * h * w` (overflow-safe), and only then a readable buffer of that many floats.
fn image_batch<'a>(
    images: *const f32,
    images_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> CResult<(&'a [f32], [usize; 4])> {
    let dims = [
        positive(n, "n")?,
        positive(c, "c")?,
        positive(h, "h")?,
        positive(w, "w")?,
    ];
    let [n, c, h, w] = dims;
    if !(c == 1 || c == 3) {
        return Err(Error::Shape(format!("images need 1 or 3 channels, got c = {c}")).into());
    }
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if want != Some(images_len) {
        let need = want.map_or_else(|| "more than fits in memory".into(), |v| v.to_string());
        return Err(Error::Shape(format!(
            "images_len = {images_len} floats, but {n} images of {c} x {h} x {w} need {need}"
        ))
        .into());
    }
    Ok((slice(images, images_len, "images")?, dims))
}

/// Writes `n` images (CHW floats in [-1, 1], `c` = 1 or 3) as `dir/prefix%05d.png`, converted
/// as `round((x / 2 + 0.5).clamp(0, 1) * 255)` (round half to even). `images` holds
/// `images_len` floats, which must equal `n * c * h * w` (otherwise DPM_ERR_SHAPE, checked
/// before anything is read). The folder must exist (an empty `dir` is refused); `prefix` must
/// not contain '/'.
#[no_mangle]
pub extern "C" fn dpm_write_pngs(
    images: *const f32,
    images_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    dir: *const c_char,
    prefix: *const c_char,
) -> dpm_status {
    guard0(|| {
        let (imgs, [n, c, h, w]) = image_batch(images, images_len, n, c, h, w)?;
        let dir = path_arg(dir, "dir")?;
        let prefix = cstr(prefix, "prefix")?;
        // The prefix names files inside `dir`; it must not lead anywhere else.
        if prefix.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "prefix '{prefix}' contains '/': it is a file-name prefix, not a path"
            ))
            .into());
        }
        for i in 0..n {
            crate::imageio::save_png(
                &dir.join(format!("{prefix}{i:05}.png")),
                imgs,
                n,
                i,
                c,
                h,
                w,
            )?;
        }
        Ok(())
    })
}

/// Writes `n` images (as `dpm_write_pngs`: `images_len` = `n * c * h * w` floats) as one PNG
/// grid with `cols` columns and a 2-pixel white gap.
#[no_mangle]
pub extern "C" fn dpm_write_grid(
    images: *const f32,
    images_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
    path: *const c_char,
) -> dpm_status {
    guard0(|| {
        let (imgs, [n, c, h, w]) = image_batch(images, images_len, n, c, h, w)?;
        let cols = positive(cols, "cols")?;
        crate::imageio::save_grid(path_arg(path, "path")?, imgs, n, c, h, w, cols)?;
        Ok(())
    })
}

/// Converts `n` model-space images (CHW floats in [-1, 1], `c` = 1 or 3; `images_len` must
/// equal `n * c * h * w`) to 8-bit pixels in memory, e.g. for a texture upload: image after
/// image, each row-major with interleaved channels (HWC), no padding between rows or images.
/// `format` is `DPM_PIXELS_RGBA8` (alpha 255), `DPM_PIXELS_RGB8` or `DPM_PIXELS_GRAY8`;
/// `out_len` must equal exactly `n * h * w * bytes_per_pixel` bytes (4, 3 and 1 for those
/// formats; a larger buffer is refused too), else DPM_ERR_SHAPE. Each value is converted as
/// `dpm_write_pngs` does: `round((x / 2 + 0.5).clamp(0, 1) * 255)`, round half to even (-1 is
/// 0, 0 is 128, 1 is 255). One-channel images are copied into R, G and B (and as is into
/// GRAY8); three-channel images become GRAY8 by the Rec. 601 luma of their 8-bit values,
/// rounded half up: `(299 R + 587 G + 114 B + 500) / 1000` in integer arithmetic. `out` must
/// not overlap `images`. Every argument is checked before anything is read or written.
#[no_mangle]
pub extern "C" fn dpm_images_to_pixels(
    images: *const f32,
    images_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    format: i32,
    out: *mut u8,
    out_len: usize,
) -> dpm_status {
    guard0(|| {
        let format = enum_value(format, FORMATS, "format")?;
        let (imgs, [n, c, h, w]) = image_batch(images, images_len, n, c, h, w)?;
        let bpp = format.bytes_per_pixel();
        let want = [n, h, w, bpp]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(out_len) {
            let need = want.map_or_else(|| "more than fits in memory".into(), |v| v.to_string());
            return Err(Error::Shape(format!(
                "out_len = {out_len} bytes, but {n} images of {h} x {w} at {bpp} bytes per \
                 pixel need {need}"
            ))
            .into());
        }
        let dst = slice_mut(out, out_len, "out")?;
        crate::imageio::to_pixels(imgs, n, c, h, w, format, dst)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{DPM_ERR_INVALID_ARGUMENT, DPM_ERR_NULL_ARGUMENT, DPM_ERR_SHAPE, DPM_OK};
    use std::ptr::{null, null_mut};

    /// Dimensions larger than the buffer are refused before anything is read (they used to
    /// read past the end of it: 4096 x 4096 on a 3 x 8 x 8 buffer was a SIGSEGV).
    #[test]
    fn lengths_are_checked_before_reading() {
        let img = [0.25f32; 3 * 8 * 8];
        let mut px = [0u8; 8 * 8 * 4];
        let conv = |len, n, c, h, w, out: &mut [u8]| {
            dpm_images_to_pixels(
                img.as_ptr(),
                len,
                n,
                c,
                h,
                w,
                DPM_PIXELS_RGBA8,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        assert_eq!(conv(192, 1, 3, 8, 8, &mut px), DPM_OK);
        assert_eq!(conv(192, 1, 3, 4096, 4096, &mut px), DPM_ERR_SHAPE);
        assert_eq!(conv(191, 1, 3, 8, 8, &mut px), DPM_ERR_SHAPE);
        assert_eq!(conv(193, 1, 3, 8, 8, &mut px), DPM_ERR_SHAPE);
        assert_eq!(conv(192, 1, 3, 8, 8, &mut px[1..]), DPM_ERR_SHAPE);
        assert_eq!(
            conv(192, usize::MAX, 3, usize::MAX, usize::MAX, &mut px),
            DPM_ERR_SHAPE
        );
        assert_eq!(conv(192, 1, usize::MAX, 8, 8, &mut px), DPM_ERR_SHAPE);
        assert_eq!(conv(192, 0, 3, 8, 8, &mut px), DPM_ERR_INVALID_ARGUMENT);
        assert_eq!(conv(192, 1, 2, 8, 12, &mut px), DPM_ERR_SHAPE);
        let st = dpm_images_to_pixels(null(), 192, 1, 3, 8, 8, DPM_PIXELS_RGBA8, null_mut(), 256);
        assert_eq!(st, DPM_ERR_NULL_ARGUMENT);
        let st = dpm_images_to_pixels(img.as_ptr(), 192, 1, 3, 8, 8, 3, px.as_mut_ptr(), 256);
        assert_eq!(st, DPM_ERR_INVALID_ARGUMENT);
        let dir = c"/nonexistent";
        let st = dpm_write_pngs(
            img.as_ptr(),
            192,
            1,
            3,
            4096,
            4096,
            dir.as_ptr(),
            c"s".as_ptr(),
        );
        assert_eq!(st, DPM_ERR_SHAPE);
        let st = dpm_write_grid(img.as_ptr(), 192, 64, 3, 64, 64, 8, dir.as_ptr());
        assert_eq!(st, DPM_ERR_SHAPE);
    }
}
