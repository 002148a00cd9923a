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
    let want = n
        .checked_mul(c * h * w)
        .ok_or_else(|| Error::Shape("image batch too large".into()))?;
    if len != want {
        return Err(Error::Shape(format!(
            "{len} values do not form {n} images of {c} x {h} x {w}"
        )));
    }
    Ok(())
}

fn encode_png(pixels: &[u8], w: usize, h: usize, c: usize) -> Result<Vec<u8>> {
    let color = if c == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(enc, pixels, w as u32, h as u32, color)
        .map_err(|e| Error::InvalidArgument(format!("PNG encoding failed: {e}")))?;
    Ok(out)
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
    write_atomic(path, &encode_png(&pixels(images, i, c, h, w), w, h, c)?)
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
    write_atomic(path, &encode_png(&grid, gw, gh, c)?)
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
}
