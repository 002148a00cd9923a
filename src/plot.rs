//! PNG plots: scatter plots of 2D point sets (samples against reference), training loss
//! curves and line charts (e.g. quality against NFE, one line per solver).
//!
//! Drawing uses `plotters`' bitmap backend in memory and text through `ab_glyph` with the
//! DejaVu Sans font embedded in the library (the `dejavu` crate), so plotting needs no system
//! library or font at build or run time. The image is encoded by libdpm's one PNG writer
//! ([`crate::imageio::write_png`]) and written atomically: to a temporary file in the
//! destination folder, then renamed over the path.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};

/// An RGB colour (8 bits a channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Blue (matplotlib's `tab:blue`).
    pub const BLUE: Rgb = Rgb(31, 119, 180);
    /// Orange (`tab:orange`).
    pub const ORANGE: Rgb = Rgb(255, 127, 14);
    /// Green (`tab:green`).
    pub const GREEN: Rgb = Rgb(44, 160, 44);
    /// Red (`tab:red`).
    pub const RED: Rgb = Rgb(214, 39, 40);
    /// Purple (`tab:purple`).
    pub const PURPLE: Rgb = Rgb(148, 103, 189);
    /// Brown (`tab:brown`).
    pub const BROWN: Rgb = Rgb(140, 86, 75);
    /// Pink (`tab:pink`).
    pub const PINK: Rgb = Rgb(227, 119, 194);
    /// Grey (`tab:gray`).
    pub const GRAY: Rgb = Rgb(127, 127, 127);
    /// Olive (`tab:olive`).
    pub const OLIVE: Rgb = Rgb(188, 189, 34);
    /// Cyan (`tab:cyan`).
    pub const CYAN: Rgb = Rgb(23, 190, 207);
    /// Black.
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    /// The colours given to the series of [`line_png`], in order (matplotlib's tab10).
    pub const PALETTE: [Rgb; 10] = [
        Rgb::BLUE,
        Rgb::ORANGE,
        Rgb::GREEN,
        Rgb::RED,
        Rgb::PURPLE,
        Rgb::BROWN,
        Rgb::PINK,
        Rgb::GRAY,
        Rgb::OLIVE,
        Rgb::CYAN,
    ];
    /// The usual colour of reference (data set) points in a scatter plot.
    pub const REFERENCE: Rgb = Rgb::BLUE;
    /// The usual colour of sampled points in a scatter plot.
    pub const SAMPLES: Rgb = Rgb::RED;

    fn color(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// A labelled, coloured set of finite 2D points.
type PointSet = (String, Vec<(f64, f64)>, Rgb);

/// Options of [`scatter_png_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterOptions {
    /// Image width in pixels (default 800).
    pub width: u32,
    /// Image height in pixels (default 800).
    pub height: u32,
    /// Radius of a point in pixels (default 2).
    pub point_radius: u32,
    /// The range `(min, max)` of both axes; by default ranges of equal length (the larger
    /// extent of the points plus a margin), centred on the points.
    pub range: Option<(f64, f64)>,
}

impl Default for ScatterOptions {
    fn default() -> Self {
        ScatterOptions {
            width: 800,
            height: 800,
            point_radius: 2,
            range: None,
        }
    }
}

/// Options of [`line_png`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineOptions {
    /// Label of the x axis (default "NFE").
    pub x_label: String,
    /// Label of the y axis (default empty).
    pub y_label: String,
    /// Logarithmic x axis (default true: NFE sweeps are usually geometric).
    pub log_x: bool,
    /// Logarithmic y axis (default false).
    pub log_y: bool,
    /// Image width in pixels (default 900).
    pub width: u32,
    /// Image height in pixels (default 600).
    pub height: u32,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions {
            x_label: "NFE".into(),
            y_label: String::new(),
            log_x: true,
            log_y: false,
            width: 900,
            height: 600,
        }
    }
}

/// Scatter plot of 2D point sets, one colour and legend entry each, drawn in order (put the
/// reference first and the samples last so that the samples are on top), with equal ranges on
/// both axes. Each set is `(label, points, colour)` with `points` the rows `(x, y)` of a flat
/// buffer. Non-finite points are left out (the legend says how many).
///
/// # Errors
/// [`Error::Shape`] for a point buffer of odd length; [`Error::InvalidArgument`] when there is
/// no finite point at all; [`Error::Io`] when the file cannot be written.
pub fn scatter_png<S: AsRef<str>>(
    path: impl AsRef<Path>,
    sets: &[(S, &[f32], Rgb)],
    title: &str,
) -> Result<()> {
    scatter_png_with(path, sets, title, &ScatterOptions::default())
}

/// [`scatter_png`] with explicit options.
///
/// # Errors
/// As [`scatter_png`], and [`Error::InvalidArgument`] for a bad size or range.
pub fn scatter_png_with<S: AsRef<str>>(
    path: impl AsRef<Path>,
    sets: &[(S, &[f32], Rgb)],
    title: &str,
    opts: &ScatterOptions,
) -> Result<()> {
    let path = path.as_ref();
    check_size(opts.width, opts.height)?;
    let mut finite: Vec<PointSet> = Vec::with_capacity(sets.len());
    for (label, pts, color) in sets {
        let label = label.as_ref();
        if !pts.len().is_multiple_of(2) {
            return Err(Error::Shape(format!(
                "scatter plot: set '{label}' has {} values, not (x, y) rows",
                pts.len()
            )));
        }
        let kept: Vec<(f64, f64)> = pts
            .chunks_exact(2)
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| (f64::from(p[0]), f64::from(p[1])))
            .collect();
        let dropped = pts.len() / 2 - kept.len();
        let label = if dropped > 0 {
            format!("{label} ({dropped} non-finite not shown)")
        } else {
            label.to_string()
        };
        finite.push((label, kept, *color));
    }
    if finite.iter().all(|(_, p, _)| p.is_empty()) {
        return Err(Error::InvalidArgument(
            "scatter plot: no finite point to plot".into(),
        ));
    }
    let (xr, yr) = match opts.range {
        Some((lo, hi)) => {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(Error::InvalidArgument(format!(
                    "scatter plot: bad axis range ({lo}, {hi})"
                )));
            }
            ((lo, hi), (lo, hi))
        }
        None => square_range(finite.iter().flat_map(|(_, p, _)| p.iter().copied())),
    };
    let radius = opts.point_radius.max(1);
    render_png(path, opts.width, opts.height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0, 0, 0).mix(0.05))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(draw_err)?;
        for (label, pts, color) in &finite {
            let c = color.color();
            let style = c.mix(0.7).filled();
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, radius as i32, style)))
                .map_err(draw_err)?
                .label(format!("{label} ({})", pts.len()))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        }
        draw_legend(&mut chart)?;
        Ok(())
    })
}

/// Training loss curve: loss against step (0-based) on a logarithmic y axis, the raw losses
/// in a light line and their trailing moving average (window `max(1, n / 50)` steps) in a dark
/// one. Losses that are not finite and positive cannot be shown on a log axis and are left out.
///
/// # Errors
/// [`Error::InvalidArgument`] when no loss is finite and positive; [`Error::Io`] when the file
/// cannot be written.
pub fn loss_curve_png(path: impl AsRef<Path>, losses: &[f32], title: &str) -> Result<()> {
    let path = path.as_ref();
    let pts: Vec<(f64, f64)> = losses
        .iter()
        .enumerate()
        .filter(|(_, &l)| l.is_finite() && l > 0.0)
        .map(|(i, &l)| (i as f64, f64::from(l)))
        .collect();
    if pts.is_empty() {
        return Err(Error::InvalidArgument(
            "loss curve: no finite positive loss to plot".into(),
        ));
    }
    let window = (pts.len() / 50).max(1);
    let mut avg = Vec::with_capacity(pts.len());
    let mut acc = 0.0;
    for (k, &(step, l)) in pts.iter().enumerate() {
        acc += l;
        if k >= window {
            acc -= pts[k - window].1;
        }
        if k + 1 >= window {
            avg.push((step, acc / window as f64));
        }
    }
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (ylo, yhi) = if ymax > ymin {
        (ymin / 1.25, ymax * 1.25)
    } else {
        (ymin / 2.0, ymax * 2.0)
    };
    let xmax = (losses.len().max(2) - 1) as f64;
    let raw_skipped = losses.len() - pts.len();
    render_png(path, 900, 600, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, (ylo..yhi).log_scale().base(log_base(ylo, yhi)))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format_tick(*v))
            .draw()
            .map_err(draw_err)?;
        let light = Rgb::BLUE.color().mix(0.35);
        let raw_label = if raw_skipped > 0 {
            format!("loss ({raw_skipped} non-finite or non-positive not shown)")
        } else {
            "loss".to_string()
        };
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), light.stroke_width(1)))
            .map_err(draw_err)?
            .label(raw_label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], light));
        if window > 1 {
            let dark = Rgb::RED.color();
            chart
                .draw_series(LineSeries::new(avg.iter().copied(), dark.stroke_width(2)))
                .map_err(draw_err)?
                .label(format!("moving average ({window} steps)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], dark.stroke_width(2))
                });
        }
        draw_legend(&mut chart)?;
        Ok(())
    })
}

/// Line chart of several named series (e.g. Chamfer distance against NFE, one line per
/// solver), each `(name, points)` with points `(x, y)` drawn in the given order with a marker
/// at every point; colours from [`Rgb::PALETTE`]. Points that cannot be shown (non-finite, or
/// not positive on a log axis) are left out.
///
/// # Errors
/// [`Error::InvalidArgument`] when no series has a point to show, or for a bad size;
/// [`Error::Io`] when the file cannot be written.
pub fn line_png<S: AsRef<str>>(
    path: impl AsRef<Path>,
    series: &[(S, Vec<(f64, f64)>)],
    title: &str,
    opts: &LineOptions,
) -> Result<()> {
    let path = path.as_ref();
    check_size(opts.width, opts.height)?;
    let shown = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let kept: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let pts = pts
                .iter()
                .copied()
                .filter(|&(x, y)| shown(x, opts.log_x) && shown(y, opts.log_y))
                .collect();
            (name.as_ref().to_string(), pts)
        })
        .collect();
    let all = || kept.iter().flat_map(|(_, p)| p.iter().copied());
    if all().next().is_none() {
        return Err(Error::InvalidArgument("line plot: no point to plot".into()));
    }
    let xr = padded_range(all().map(|p| p.0), opts.log_x);
    let yr = padded_range(all().map(|p| p.1), opts.log_y);
    render_png(path, opts.width, opts.height, |root| {
        match (opts.log_x, opts.log_y) {
            (false, false) => draw_lines(root, title, xr.0..xr.1, yr.0..yr.1, &kept, opts),
            (true, false) => draw_lines(
                root,
                title,
                (xr.0..xr.1).log_scale().base(log_base(xr.0, xr.1)),
                yr.0..yr.1,
                &kept,
                opts,
            ),
            (false, true) => draw_lines(
                root,
                title,
                xr.0..xr.1,
                (yr.0..yr.1).log_scale().base(log_base(yr.0, yr.1)),
                &kept,
                opts,
            ),
            (true, true) => draw_lines(
                root,
                title,
                (xr.0..xr.1).log_scale().base(log_base(xr.0, xr.1)),
                (yr.0..yr.1).log_scale().base(log_base(yr.0, yr.1)),
                &kept,
                opts,
            ),
        }
    })
}

/// The body of [`line_png`], generic over linear and logarithmic axes.
fn draw_lines<X, Y>(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_spec: X,
    y_spec: Y,
    series: &[(String, Vec<(f64, f64)>)],
    opts: &LineOptions,
) -> std::result::Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x_spec, y_spec)
        .map_err(draw_err)?;
    let mut mesh = chart.configure_mesh();
    mesh.label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&|v| format_tick(*v))
        .y_label_formatter(&|v| format_tick(*v));
    if !opts.x_label.is_empty() {
        mesh.x_desc(opts.x_label.as_str());
    }
    if !opts.y_label.is_empty() {
        mesh.y_desc(opts.y_label.as_str());
    }
    mesh.draw().map_err(draw_err)?;
    for (k, (name, pts)) in series.iter().enumerate() {
        let c = Rgb::PALETTE[k % Rgb::PALETTE.len()].color();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(draw_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(draw_err)?;
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// A tick label with 3 significant digits: plain for moderate magnitudes, scientific
/// otherwise, without trailing zeros.
fn format_tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.2e}")
    }
}

/// The base of a logarithmic axis' labels over `lo..hi`: powers of 10 over two decades or
/// more, of 2 over a factor 8 or more, else the fourth root of the ratio (so that a narrow
/// range still gets a few labels).
fn log_base(lo: f64, hi: f64) -> f64 {
    let ratio = hi / lo;
    if ratio >= 100.0 {
        10.0
    } else if ratio >= 8.0 {
        2.0
    } else {
        ratio.powf(0.25).max(1.0001)
    }
}

/// Ranges for x and y of equal length (the larger extent plus a 5 % margin each side),
/// centred on the points, so that the plot keeps the data's aspect ratio.
fn square_range(points: impl Iterator<Item = (f64, f64)>) -> ((f64, f64), (f64, f64)) {
    let (mut lo_x, mut hi_x, mut lo_y, mut hi_y) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in points {
        lo_x = lo_x.min(x);
        hi_x = hi_x.max(x);
        lo_y = lo_y.min(y);
        hi_y = hi_y.max(y);
    }
    let half = ((hi_x - lo_x).max(hi_y - lo_y) * 0.55).max(1e-6);
    let (cx, cy) = ((lo_x + hi_x) / 2.0, (lo_y + hi_y) / 2.0);
    ((cx - half, cx + half), (cy - half, cy + half))
}

/// The range of values with a margin (multiplicative on a log axis).
fn padded_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if log {
        if hi > lo {
            (lo / 1.2, hi * 1.2)
        } else {
            (lo / 2.0, hi * 2.0)
        }
    } else {
        let pad = if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1.0) * 0.5
        };
        (lo - pad, hi + pad)
    }
}

fn check_size(width: u32, height: u32) -> Result<()> {
    if !(100..=8192).contains(&width) || !(100..=8192).contains(&height) {
        return Err(Error::InvalidArgument(format!(
            "plot size {width} x {height} outside 100..=8192 pixels"
        )));
    }
    Ok(())
}

/// The legend of a chart's labelled series, in its upper right corner (every chart's style).
fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(draw_err)
}

fn draw_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Registers the embedded font with plotters once.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "plot: the embedded DejaVu Sans font could not be loaded".into(),
        ))
    }
}

/// Draws with `draw` on a white RGB canvas and writes it as a PNG, atomically.
fn render_png<F>(path: &Path, width: u32, height: u32, draw: F) -> Result<()>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
{
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(draw_err)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(draw_err))
            .map_err(|e| {
                Error::InvalidArgument(format!("plot {}: drawing failed: {e}", path.display()))
            })?;
    }
    crate::imageio::write_png(
        path,
        &buf,
        width as usize,
        height as usize,
        3,
        crate::imageio::PngCompression::Balanced,
    )
}
