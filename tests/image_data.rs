//! Image data: the synthetic shapes set and AFHQ-layout image folders.

use std::path::{Path, PathBuf};

use dpm::data::{build_eval_folder, load_flat_folder, ImageFolder, Shapes};
use dpm::Error;

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

#[test]
fn shapes_are_deterministic_and_batches_match_single_images() {
    for res in [16, 32] {
        let s = Shapes::new(res, 3).unwrap();
        let (a, la) = s.image(7, 123);
        let (b, lb) = s.image(7, 123);
        assert_eq!(a, b);
        assert_eq!(la, lb);
        assert_eq!(a.len(), 3 * res * res);
        let (c, _) = s.image(8, 123);
        assert_ne!(a, c, "another seed gives another image");
        let (d, _) = s.image(7, 124);
        assert_ne!(a, d, "another index gives another image");

        let (batch, labels) = s.batch(7, 100, 10);
        assert_eq!(batch.len(), 10 * s.dim());
        for r in 0..10 {
            let (img, l) = s.image(7, 100 + r as u64);
            assert_eq!(&batch[r * s.dim()..(r + 1) * s.dim()], &img[..]);
            assert_eq!(labels[r], l);
            assert_eq!(s.label(7, 100 + r as u64), l);
        }
    }
}

#[test]
fn shapes_labels_are_balanced_and_in_range() {
    for classes in 1..=4 {
        let s = Shapes::new(16, classes).unwrap();
        let labels: Vec<i64> = (0..120).map(|i| s.label(3, i)).collect();
        for block in labels.chunks(classes) {
            let mut b = block.to_vec();
            b.sort();
            let want: Vec<i64> = (1..=classes as i64).collect();
            assert_eq!(b, want, "each block of K indices holds every class once");
        }
        if classes == 3 {
            // Not a fixed cycle: the order changes between blocks.
            let firsts: std::collections::HashSet<i64> = labels.chunks(3).map(|b| b[0]).collect();
            assert!(firsts.len() > 1);
        }
    }
}

#[test]
fn shapes_values_are_in_range_and_use_it() {
    let s = Shapes::new(32, 3).unwrap();
    let (batch, _) = s.batch(1, 0, 30);
    assert!(batch
        .iter()
        .all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
    let max = batch.iter().cloned().fold(f32::MIN, f32::max);
    let min = batch.iter().cloned().fold(f32::MAX, f32::min);
    assert!(max > 0.5, "bright foregrounds: max {max}");
    assert!(min < -0.6, "dark backgrounds: min {min}");
}

#[test]
fn shapes_rejects_bad_configurations() {
    assert!(matches!(Shapes::new(4, 3), Err(Error::InvalidArgument(_))));
    assert!(matches!(Shapes::new(16, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(Shapes::new(16, 5), Err(Error::InvalidArgument(_))));
    assert_eq!(Shapes::default(), Shapes::new(32, 3).unwrap());
    assert_eq!(
        Shapes::new(16, 3).unwrap().class_names(),
        ["circle", "square", "triangle"]
    );
}

#[test]
fn classify_recognises_the_sets_own_images() {
    for (res, classes) in [(16, 3), (32, 3), (32, 4)] {
        let s = Shapes::new(res, classes).unwrap();
        let (batch, labels) = s.batch(2024, 0, 300);
        let got = s.classify_batch(&batch).unwrap();
        let right = got
            .iter()
            .zip(&labels)
            .filter(|(g, l)| **g == Some(**l))
            .count();
        let acc = right as f64 / 300.0;
        assert!(acc > 0.95, "{res} px, {classes} classes: accuracy {acc}");
    }
}

#[test]
fn classify_is_not_fooled_by_noise_or_wrong_shapes() {
    let s = Shapes::new(32, 3).unwrap();
    let n = 200;
    // Pure Gaussian noise (the sampler's x_T) and uniform noise.
    let mut gauss = vec![0f32; s.dim()];
    let mut uni = vec![0f64; s.dim()];
    let (mut some, mut right) = (0, 0);
    for i in 0..n {
        let label = s.label(5, i);
        dpm::rng::fill_normal(5, i, 9, &mut gauss);
        dpm::rng::fill_uniform(5, i, 10, &mut uni);
        let u: Vec<f32> = uni.iter().map(|&v| (2.0 * v - 1.0) as f32).collect();
        for img in [&gauss, &u] {
            let g = s.classify(img);
            some += usize::from(g.is_some());
            right += usize::from(g == Some(label));
        }
    }
    assert!(
        some < (2 * n as usize) / 10,
        "noise classified {some} times of {}",
        2 * n
    );
    assert!(
        right < (2 * n as usize) / 20,
        "noise right {right} times of {}",
        2 * n
    );

    // Flat images and wrong lengths.
    assert_eq!(s.classify(&vec![0.0; s.dim()]), None);
    assert_eq!(s.classify(&vec![-0.8; s.dim()]), None);
    assert_eq!(s.classify(&[0.0; 10]), None);
    assert!(s.classify_batch(&[0.0; 10]).is_err());

    // The right colour on the wrong shape is rejected: swap the red and green channels of
    // circles (a green circle is neither class 1 nor class 2).
    let plane = 32 * 32;
    let mut swapped = 0;
    let mut accepted = 0;
    for i in 0..300 {
        let (mut img, label) = s.image(11, i);
        if label != 1 {
            continue;
        }
        let (r, g) = img.split_at_mut(plane);
        r.swap_with_slice(&mut g[..plane]);
        swapped += 1;
        accepted += usize::from(s.classify(&img).is_some());
    }
    assert!(swapped > 50);
    assert!(
        accepted * 10 < swapped,
        "{accepted} of {swapped} green circles accepted"
    );
}

// ---------------------------------------------------------------------------------------------
// Image folders
// ---------------------------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dpm-image-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A w x h RGB image whose colour encodes (class, index).
fn test_image(w: u32, h: u32, class: u8, index: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([40 * class, 10 * index, ((x * 7 + y * 3) % 256) as u8])
    })
}

fn write_png(path: &Path, img: &image::RgbImage) {
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

/// AFHQ layout: cat (3 images, one JPEG), dog (5 images), wild (2), a hidden folder, a text
/// file, and a stray file at the root.
fn make_afhq(root: &Path) {
    for (class, names) in [
        (
            "dog",
            vec!["d4.png", "d0.png", "d2.png", "d1.png", "d3.png"],
        ),
        ("cat", vec!["c2.png", "c0.png", "c1.jpg"]),
        ("wild", vec!["w1.PNG", "w0.jpeg"]),
    ] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let k = match class {
            "cat" => 1,
            "dog" => 2,
            _ => 3,
        };
        for name in names {
            let idx: u8 = name[1..2].parse().unwrap();
            let img = test_image(20 + u32::from(idx), 24, k, idx);
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
                img.save_with_format(dir.join(name), image::ImageFormat::Jpeg)
                    .unwrap();
            } else {
                write_png(&dir.join(name), &img);
            }
        }
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    }
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    write_png(&root.join(".hidden/x.png"), &test_image(8, 8, 0, 0));
    std::fs::write(root.join("README"), "stray").unwrap();
}

#[test]
fn image_folder_lists_sorted_classes_with_cap() {
    let tmp = TempDir::new("list");
    make_afhq(&tmp.0);
    let f = ImageFolder::open_with(&tmp.0, 16, 4).unwrap();
    assert_eq!(f.class_names(), ["cat", "dog", "wild"]);
    assert_eq!(f.counts(), [3, 4, 2], "dog capped at 4");
    assert_eq!(f.len(), 9);
    assert_eq!(f.label_of("dog").unwrap(), 2);
    assert!(matches!(f.label_of("fox"), Err(Error::UnknownName { .. })));
    let names: Vec<String> = f
        .items()
        .iter()
        .map(|(p, l)| format!("{l}:{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(
        names,
        [
            "1:c0.png",
            "1:c1.jpg",
            "1:c2.png",
            "2:d0.png",
            "2:d1.png",
            "2:d2.png",
            "2:d3.png",
            "3:w0.jpeg",
            "3:w1.PNG"
        ]
    );
    assert_eq!(f.labels(), [1, 1, 1, 2, 2, 2, 2, 3, 3]);

    let full = ImageFolder::open(&tmp.0, 16).unwrap();
    assert_eq!(full.counts(), [3, 5, 2], "default cap 3000");
    assert!(matches!(f.load(9), Err(Error::InvalidArgument(_))));
}

#[test]
fn image_folder_loads_resized_images_in_range() {
    let tmp = TempDir::new("load");
    make_afhq(&tmp.0);
    for res in [8, 16, 24] {
        let f = ImageFolder::open(&tmp.0, res).unwrap();
        for i in 0..f.len() {
            let (img, label) = f.load(i).unwrap();
            assert_eq!(img.len(), 3 * res * res);
            assert_eq!(label, f.items()[i].1);
            assert!(img.iter().all(|v| (-1.0..=1.0).contains(v)));
            // Red channel encodes the class: 40 * k / 127.5 - 1 (exact for the PNGs, whose
            // red is constant; close for the JPEGs).
            let want = 40.0 * label as f32 / 127.5 - 1.0;
            let mean_r = img[..res * res].iter().sum::<f32>() / (res * res) as f32;
            assert!(
                (mean_r - want).abs() < 0.05,
                "item {i}: red {mean_r} vs {want}"
            );
        }
        let (batch, labels) = f.load_batch(&[4, 0, 8]).unwrap();
        assert_eq!(labels, [2, 1, 3]);
        assert_eq!(&batch[..3 * res * res], &f.load(4).unwrap().0[..]);
        assert_eq!(&batch[6 * res * res..], &f.load(8).unwrap().0[..]);
        let (all, all_labels) = f.load_all().unwrap();
        assert_eq!(all.len(), f.len() * 3 * res * res);
        assert_eq!(all_labels, f.labels());
    }

    // A PNG already at the resolution is taken exactly: v / 127.5 - 1.
    let img = test_image(16, 16, 2, 3);
    let p = tmp.0.join("exact.png");
    write_png(&p, &img);
    let x = dpm::data::load_image(&p, 16).unwrap();
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(x[c * 256 + i], f32::from(px[c]) / 127.5 - 1.0);
        }
    }
}

#[test]
fn image_folder_errors_name_the_file() {
    let tmp = TempDir::new("corrupt");
    make_afhq(&tmp.0);
    let bad = tmp.0.join("dog/d1.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n this is not a png").unwrap();
    let f = ImageFolder::open(&tmp.0, 16).unwrap();
    let err = f.load(4).unwrap_err();
    match &err {
        Error::Io { path, .. } => assert_eq!(path, &bad),
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(err.to_string().contains("d1.png"), "{err}");
    let err = f.load_all().unwrap_err();
    assert!(err.to_string().contains("d1.png"), "{err}");

    // Empty or missing roots.
    let empty = TempDir::new("empty");
    assert!(matches!(
        ImageFolder::open(&empty.0, 16),
        Err(Error::InvalidArgument(_))
    ));
    std::fs::create_dir_all(empty.0.join("cat")).unwrap();
    assert!(matches!(
        ImageFolder::open(&empty.0, 16),
        Err(Error::InvalidArgument(_))
    ));
    let missing = empty.0.join("nope");
    match ImageFolder::open(&missing, 16) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(ImageFolder::open_with(&tmp.0, 16, 0).is_err());
    assert!(ImageFolder::open(&tmp.0, 0).is_err());
}

#[test]
fn eval_folder_is_flat_complete_and_reloadable() {
    let tmp = TempDir::new("eval");
    let val = tmp.0.join("val");
    make_afhq(&val);
    let out = tmp.0.join("eval");
    let n = build_eval_folder(&val, &out, 16).unwrap();
    assert_eq!(n, 10, "every val image, no cap");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cat_00000.png",
            "cat_00001.png",
            "cat_00002.png",
            "dog_00000.png",
            "dog_00001.png",
            "dog_00002.png",
            "dog_00003.png",
            "dog_00004.png",
            "wild_00000.png",
            "wild_00001.png"
        ]
    );
    let one = image::open(out.join("dog_00003.png")).unwrap();
    assert_eq!((one.width(), one.height()), (16, 16));

    let all = load_flat_folder(&out, 16).unwrap();
    assert_eq!(all.len(), 10 * 3 * 256);
    assert!(all.iter().all(|v| (-1.0..=1.0).contains(v)));
    // The eval PNGs hold exactly the pixels the folder loader gives.
    let f = ImageFolder::open(&val, 16).unwrap();
    assert_eq!(&all[3 * 3 * 256..4 * 3 * 256], &f.load(3).unwrap().0[..]);

    // Rerunning replaces the same files; a foreign image in the output is refused.
    assert_eq!(build_eval_folder(&val, &out, 16).unwrap(), 10);
    write_png(&out.join("zzz.png"), &test_image(16, 16, 1, 1));
    let err = build_eval_folder(&val, &out, 16).unwrap_err();
    assert!(err.to_string().contains("zzz.png"), "{err}");

    // A corrupt val image is named.
    std::fs::write(val.join("wild/w0.jpeg"), b"garbage").unwrap();
    let out2 = tmp.0.join("eval2");
    let err = build_eval_folder(&val, &out2, 16).unwrap_err();
    assert!(err.to_string().contains("w0.jpeg"), "{err}");
    assert!(load_flat_folder(tmp.0.join("empty-nothing"), 16).is_err());
}

/// Writes a grid of shapes to the temp folder for a visual check (run with `--ignored`).
#[test]
#[ignore]
fn write_shapes_grid() {
    for res in [16, 32] {
        let s = Shapes::new(res, 4).unwrap();
        let (batch, labels) = s.batch(0, 0, 32);
        let path = std::env::temp_dir().join(format!("dpm-shapes-{res}.png"));
        dpm::imageio::save_grid(&path, &batch, 32, 3, res, res, 8).unwrap();
        println!("{}: labels {labels:?}", path.display());
    }
}
