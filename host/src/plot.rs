//! PNG line charts and histograms (plotters into an RGB buffer, saved with `image`).
//!
//! Text needs a TrueType font, found at run time (DejaVu Sans or Liberation Sans from the
//! usual system paths, or `FACELOCK_FONT`). Without one, charts are drawn without text and
//! a warning is logged once.
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::{Error, Result};

/// Font family name under which the runtime font is registered.
const FAMILY: &str = "facelock-sans";
const WIDTH: u32 = 900;
const HEIGHT: u32 = 600;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// One named series of (x, y) points.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// Registers a system font once; false when none was found (charts then carry no text).
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let mut candidates: Vec<String> = std::env::var("FACELOCK_FONT").into_iter().collect();
        candidates.extend(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                "/System/Library/Fonts/Supplemental/Arial.ttf",
            ]
            .map(String::from),
        );
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                tracing::debug!("chart font: {path}");
                return true;
            }
        }
        tracing::warn!("no TrueType font found (install fonts-dejavu-core or set FACELOCK_FONT); charts have no text");
        false
    })
}

fn plot_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("cannot draw chart '{}': {error}", path.display()))
}

fn save(path: &Path, buffer: Vec<u8>) -> Result<()> {
    let image = image::RgbImage::from_raw(WIDTH, HEIGHT, buffer)
        .ok_or_else(|| plot_error(path, "buffer size mismatch"))?;
    image.save(path).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.03;
    (lo - pad, hi + pad)
}

/// Draws `series` as lines to a PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let text = font_available();
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption(title, (FAMILY, 24))
                .x_label_area_size(50)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_error(path, e))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(x_label)
                .y_desc(y_label)
                .label_style((FAMILY, 14));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| plot_error(path, e))?;
        for (index, s) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let drawn = chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| plot_error(path, e))?;
            if text {
                drawn.label(s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
        }
        if text && series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| plot_error(path, e))?;
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    save(path, buffer)
}

/// Draws overlaid histograms (same bins for all series, counts normalised to fractions).
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(&str, &[f64])],
    bins: usize,
) -> Result<()> {
    let bins = bins.max(1);
    let (lo, hi) = range(series.iter().flat_map(|(_, values)| values.iter().copied()));
    let width = (hi - lo) / bins as f64;
    let lines: Vec<Series> = series
        .iter()
        .map(|(label, values)| {
            let mut counts = vec![0usize; bins];
            for v in values.iter().filter(|v| v.is_finite()) {
                counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
            }
            let total = values.len().max(1) as f64;
            let mut points = Vec::with_capacity(2 * bins);
            for (bin, count) in counts.iter().enumerate() {
                let left = lo + bin as f64 * width;
                points.push((left, *count as f64 / total));
                points.push((left + width, *count as f64 / total));
            }
            Series { label, points }
        })
        .collect();
    line_chart(path, title, x_label, "fraction", &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let points = (0..50)
            .map(|i| (i as f64, (i as f64 / 5.0).sin()))
            .collect();
        line_chart(
            &path,
            "sine",
            "x",
            "y",
            &[Series {
                label: "sin",
                points,
            }],
        )
        .unwrap();
        let image = image::open(&path).unwrap();
        assert_eq!((image.width(), image.height()), (WIDTH, HEIGHT));
        let hist = dir.path().join("hist.png");
        histogram(
            &hist,
            "h",
            "score",
            &[("a", &[0.1, 0.2, 0.2]), ("b", &[0.8])],
            10,
        )
        .unwrap();
        assert!(hist.exists());
    }
}
