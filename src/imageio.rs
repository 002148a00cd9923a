//! Images in and out: model tensors (CHW, float, [-1, 1]) to 8-bit PNG files and grids, as the
//! reference writes them: `round((x * 0.5 + 0.5).clamp(0, 1) * 255)`.

use std::path::Path;

use crate::error::{Error, Result};
pub use crate::fsutil::write_atomic;

/// One value of a [-1, 1] image to 8 bits (round half to even, like torch.round).
pub fn to_u8(x: f32) -> u8 {
    let v = ((x * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even();
    v as u8
}

fn check_shape(len: usize, n: usize, c: usize, h: usize, w: usize) -> Result<()> {
    if !(c == 1 || c == 3) {
        return Err(Error::Shape(format!(
            "images need 1 or 3 channels, got {c}"
        )));
    }
    if h == 0 || w == 0 || n == 0 {
        return Err(Error::Shape(format!(
            "empty image batch {n} x {c} x {h} x {w}"
        )));
    }
    let want = [n, c, h, w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Shape("image batch too large".into()))?;
    if len != want {
        return Err(Error::Shape(format!(
            "{len} values do not form {n} images of {c} x {h} x {w}"
        )));
    }
    Ok(())
}

/// How hard [`encode_png`] compresses (always with adaptive filtering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngCompression {
    /// Fast deflate: generated images, grids and the evaluation folder (the `image` crate's
    /// default, what libdpm has always written them with).
    Fast,
    /// Balanced deflate (the `png` crate's default): plots, whose flat colours it packs into
    /// files several times smaller, and which keep the bytes they have always had.
    Balanced,
}

/// Encodes 8-bit pixels as a PNG file's bytes: `h` rows of `w` pixels, row-major, `c`
/// interleaved channels (1: gray, 3: RGB). Every PNG libdpm writes (images, grids, the
/// evaluation folder, plots) goes through here.
///
/// # Errors
/// [`Error::Shape`] when `pixels` does not hold `w x h x c` values, `c` is not 1 or 3, or a
/// side is 0 or does not fit 32 bits; [`Error::InvalidArgument`] when encoding fails.
pub fn encode_png(
    pixels: &[u8],
    w: usize,
    h: usize,
    c: usize,
    compression: PngCompression,
) -> Result<Vec<u8>> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let color = match c {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => return Err(Error::Shape(format!("PNG: 1 or 3 channels, got {c}"))),
    };
    let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(Error::Shape(format!("PNG: {w} x {h} pixels is too large")));
    };
    // The encoder panics on a buffer of the wrong length: check it first.
    if w == 0 || h == 0 || w.checked_mul(h).and_then(|v| v.checked_mul(c)) != Some(pixels.len()) {
        return Err(Error::Shape(format!(
            "PNG: {} bytes are not {w} x {h} pixels of {c} channel(s)",
            pixels.len()
        )));
    }
    let level = match compression {
        PngCompression::Fast => CompressionType::Fast,
        // `image` maps its `Default` to the `png` crate's `Balanced`.
        PngCompression::Balanced => CompressionType::Default,
    };
    let mut out = Vec::new();
    let enc = PngEncoder::new_with_quality(&mut out, level, FilterType::Adaptive);
    image::ImageEncoder::write_image(enc, pixels, w32, h32, color)
        .map_err(|e| Error::InvalidArgument(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// [`encode_png`], then written to `path` atomically ([`write_atomic`]).
///
/// # Errors
/// As [`encode_png`] and [`write_atomic`].
pub fn write_png(
    path: &Path,
    pixels: &[u8],
    w: usize,
    h: usize,
    c: usize,
    compression: PngCompression,
) -> Result<()> {
    write_atomic(path, &encode_png(pixels, w, h, c, compression)?)
}

/// Interleaved 8-bit pixels (HWC) of image `i` of a CHW batch.
fn pixels(images: &[f32], i: usize, c: usize, h: usize, w: usize) -> Vec<u8> {
    let img = &images[i * c * h * w..(i + 1) * c * h * w];
    let mut px = vec![0u8; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            px[p * c + ch] = to_u8(img[ch * h * w + p]);
        }
    }
    px
}

/// Layout of the 8-bit pixels [`to_pixels`] writes: interleaved channels, row-major (HWC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// R, G, B, A (alpha 255): 4 bytes per pixel, what GPU textures usually take.
    Rgba8,
    /// R, G, B: 3 bytes per pixel.
    Rgb8,
    /// One gray byte per pixel (from RGB images: [`luma`]).
    Gray8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgba8 => 4,
            PixelFormat::Rgb8 => 3,
            PixelFormat::Gray8 => 1,
        }
    }
}

/// Gray value of an 8-bit RGB pixel: Rec. 601 luma `0.299 R + 0.587 G + 0.114 B` of the 8-bit
/// values, rounded half up, in exact integer arithmetic: `(299 R + 587 G + 114 B + 500) / 1000`
/// (the weights sum to 1000, so gray stays gray and 255 stays 255).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000;
    // At most (255 * 1000 + 500) / 1000 = 255.
    y.min(255) as u8
}

/// Converts a batch of `n` model-space CHW images (`c` = 1 or 3 channels, values in [-1, 1])
/// to 8-bit pixels in `format`, image after image, each row-major with interleaved channels
/// (HWC): `out` holds exactly `n * h * w * format.bytes_per_pixel()` bytes. Each value is
/// converted by [`to_u8`], as the PNG writer does. One-channel images are replicated into R, G
/// and B; three-channel images become gray by [`luma`]; RGBA's alpha is 255.
pub fn to_pixels(
    images: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    format: PixelFormat,
    out: &mut [u8],
) -> Result<()> {
    check_shape(images.len(), n, c, h, w)?;
    let bpp = format.bytes_per_pixel();
    let plane = h * w;
    let want = n
        .checked_mul(plane)
        .and_then(|v| v.checked_mul(bpp))
        .ok_or_else(|| Error::Shape("image batch too large".into()))?;
    if out.len() != want {
        return Err(Error::Shape(format!(
            "the pixel buffer holds {} bytes; {n} images of {h} x {w} at {bpp} bytes per pixel \
need {want}",
            out.len()
        )));
    }
    for (img, dst) in images
        .chunks_exact(c * plane)
        .zip(out.chunks_exact_mut(plane * bpp))
    {
        for (p, px) in dst.chunks_exact_mut(bpp).enumerate() {
            let v = |ch: usize| to_u8(img[ch * plane + p]);
            let rgb = if c == 1 {
                let g = v(0);
                [g, g, g]
            } else {
                [v(0), v(1), v(2)]
            };
            match format {
                PixelFormat::Gray8 => {
                    px[0] = if c == 1 {
                        rgb[0]
                    } else {
                        luma(rgb[0], rgb[1], rgb[2])
                    }
                }
                PixelFormat::Rgb8 => px.copy_from_slice(&rgb),
                PixelFormat::Rgba8 => {
                    px[..3].copy_from_slice(&rgb);
                    px[3] = 255;
                }
            }
        }
    }
    Ok(())
}

/// Saves image `i` of a batch of `n` CHW images as a PNG file.
pub fn save_png(
    path: &Path,
    images: &[f32],
    n: usize,
    i: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    check_shape(images.len(), n, c, h, w)?;
    if i >= n {
        return Err(Error::InvalidArgument(format!(
            "image {i} of a batch of {n}"
        )));
    }
    write_png(
        path,
        &pixels(images, i, c, h, w),
        w,
        h,
        c,
        PngCompression::Fast,
    )
}

/// Saves a batch of `n` CHW images as one PNG grid with `cols` columns and a 2-pixel gap.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<()> {
    check_shape(images.len(), n, c, h, w)?;
    let cols = cols.clamp(1, n);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut grid = vec![255u8; gw * gh * c];
    for i in 0..n {
        let px = pixels(images, i, c, h, w);
        let (ox, oy) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
        for y in 0..h {
            let dst = ((oy + y) * gw + ox) * c;
            grid[dst..dst + w * c].copy_from_slice(&px[y * w * c..(y + 1) * w * c]);
        }
    }
    write_png(path, &grid, gw, gh, c, PngCompression::Fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_matches_the_reference_formula() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(5.0), 255);
        assert_eq!(to_u8(-3.0), 0);
        assert_eq!(to_u8(0.0), 128); // 127.5 rounds to even
        assert_eq!(to_u8(f32::NAN), 0);
    }

    #[test]
    fn luma_is_rec601_rounded() {
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(128, 128, 128), 128);
        assert_eq!(luma(255, 0, 0), 76); // 76.245
        assert_eq!(luma(0, 255, 0), 150); // 149.685
        assert_eq!(luma(0, 0, 255), 29); // 29.07
        assert_eq!(luma(10, 20, 30), 18); // 2.99 + 11.74 + 3.42 = 18.15
        for (r, g, b) in [(3u8, 200u8, 77u8), (255, 1, 128), (17, 17, 90)] {
            let exact = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
            assert!(
                (f64::from(luma(r, g, b)) - exact).abs() <= 0.5,
                "{r} {g} {b}"
            );
        }
    }

    #[test]
    fn pixels_in_every_format() {
        // Two 3-channel images of 2 x 3; image 1 is image 0 negated.
        let (n, c, h, w) = (2, 3, 2, 3);
        let plane = h * w;
        let img0: Vec<f32> = (0..c * plane).map(|i| i as f32 / 9.0 - 1.0).collect();
        let mut imgs = img0.clone();
        imgs.extend(img0.iter().map(|v| -v));
        let mut rgb = vec![0u8; n * plane * 3];
        to_pixels(&imgs, n, c, h, w, PixelFormat::Rgb8, &mut rgb).unwrap();
        let mut rgba = vec![0u8; n * plane * 4];
        to_pixels(&imgs, n, c, h, w, PixelFormat::Rgba8, &mut rgba).unwrap();
        let mut gray = vec![0u8; n * plane];
        to_pixels(&imgs, n, c, h, w, PixelFormat::Gray8, &mut gray).unwrap();
        for i in 0..n {
            for p in 0..plane {
                let want: Vec<u8> = (0..c)
                    .map(|ch| to_u8(imgs[i * c * plane + ch * plane + p]))
                    .collect();
                let q = i * plane + p;
                assert_eq!(&rgb[q * 3..q * 3 + 3], &want[..], "image {i} pixel {p}");
                assert_eq!(&rgba[q * 4..q * 4 + 3], &want[..]);
                assert_eq!(rgba[q * 4 + 3], 255);
                assert_eq!(gray[q], luma(want[0], want[1], want[2]));
            }
        }
        // The same bytes as the PNG writer's.
        assert_eq!(&rgb[..plane * 3], &pixels(&imgs, 0, c, h, w)[..]);
        assert_eq!(&rgb[plane * 3..], &pixels(&imgs, 1, c, h, w)[..]);

        // One channel: as is in gray, replicated in RGB(A).
        let one = [-1.0f32, 0.0, 1.0, 0.5];
        let mut g = [0u8; 4];
        to_pixels(&one, 1, 1, 2, 2, PixelFormat::Gray8, &mut g).unwrap();
        assert_eq!(g, [0, 128, 255, 191]); // 191.25
        let mut c4 = [0u8; 16];
        to_pixels(&one, 1, 1, 2, 2, PixelFormat::Rgba8, &mut c4).unwrap();
        assert_eq!(
            c4,
            [0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 255, 255, 191, 191, 191, 255]
        );
        let mut c3 = [0u8; 12];
        to_pixels(&one, 1, 1, 2, 2, PixelFormat::Rgb8, &mut c3).unwrap();
        assert_eq!(c3, [0, 0, 0, 128, 128, 128, 255, 255, 255, 191, 191, 191]);
    }

    #[test]
    fn pixels_refuse_mismatched_buffers() {
        let imgs = [0f32; 2 * 3 * 4];
        let mut out = [0u8; 2 * 4 * 4];
        let shape = |r: Result<()>| matches!(r, Err(Error::Shape(_)));
        let fmt = PixelFormat::Rgba8;
        assert!(to_pixels(&imgs, 2, 3, 2, 2, fmt, &mut out).is_ok());
        assert!(shape(to_pixels(&imgs, 2, 3, 2, 2, fmt, &mut out[1..])));
        assert!(shape(to_pixels(
            &imgs,
            2,
            3,
            2,
            2,
            PixelFormat::Rgb8,
            &mut out
        )));
        assert!(shape(to_pixels(&imgs[1..], 2, 3, 2, 2, fmt, &mut out)));
        assert!(shape(to_pixels(&imgs, 3, 3, 2, 2, fmt, &mut out)));
        assert!(shape(to_pixels(&imgs, 2, 2, 3, 2, fmt, &mut out))); // 2 channels
        assert!(shape(to_pixels(&imgs, 0, 3, 2, 2, fmt, &mut [])));
        assert!(shape(to_pixels(&imgs, usize::MAX, 3, 2, 2, fmt, &mut out)));
    }

    #[test]
    fn grid_and_single_images_round_trip() {
        let dir = std::env::temp_dir().join(format!("dpm-imageio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (n, c, h, w) = (3, 3, 4, 5);
        let imgs: Vec<f32> = (0..n * c * h * w)
            .map(|i| (i % 7) as f32 / 3.5 - 1.0)
            .collect();
        save_png(&dir.join("one.png"), &imgs, n, 1, c, h, w).unwrap();
        let back = image::open(dir.join("one.png")).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (5, 4));
        let p = back.get_pixel(2, 1);
        let base = c * h * w;
        assert_eq!(p[1], to_u8(imgs[base + h * w + w + 2]));
        save_grid(&dir.join("grid.png"), &imgs, n, c, h, w, 2).unwrap();
        assert_eq!(
            image::open(dir.join("grid.png"))
                .unwrap()
                .to_rgb8()
                .dimensions(),
            (2 * 7 + 2, 2 * 6 + 2)
        );
        assert!(save_png(&dir.join("x.png"), &imgs[1..], n, 0, c, h, w).is_err());
        assert!(save_grid(&dir.join("no/such/dir/g.png"), &imgs, n, c, h, w, 2).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn png_encoding_keeps_each_writer_s_bytes() {
        // Flat colours with a few marks, like a plot, and noise, like an image.
        let (w, h) = (67, 41);
        let mut seed = 7u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        let plot: Vec<u8> = (0..w * h * 3)
            .map(|i| if (i / 3) % 13 == 0 { noise() } else { 255 })
            .collect();
        let img: Vec<u8> = (0..w * h * 3).map(|_| noise()).collect();
        for px in [&plot, &img] {
            // Balanced: what the plots were written with, the `png` crate's defaults.
            let mut want = Vec::new();
            let mut enc = png::Encoder::new(&mut want, w as u32, h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut wr = enc.write_header().unwrap();
            wr.write_image_data(px).unwrap();
            wr.finish().unwrap();
            let got = encode_png(px, w, h, 3, PngCompression::Balanced).unwrap();
            assert_eq!(got, want);
            // Fast: what images were written with, the `image` crate's default encoder.
            let mut want = Vec::new();
            image::ImageEncoder::write_image(
                image::codecs::png::PngEncoder::new(&mut want),
                px,
                w as u32,
                h as u32,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
            assert_eq!(encode_png(px, w, h, 3, PngCompression::Fast).unwrap(), want);
        }
        // Wrong sizes and channel counts are errors, not the encoder's panic.
        let shape = |r: Result<Vec<u8>>| matches!(r, Err(Error::Shape(_)));
        let fast = PngCompression::Fast;
        assert!(shape(encode_png(&img[1..], w, h, 3, fast)));
        assert!(shape(encode_png(&img, w, h, 2, fast)));
        assert!(shape(encode_png(&[], 0, 0, 3, fast)));
        assert!(shape(encode_png(&img, usize::MAX, 2, 3, fast)));
    }
}
