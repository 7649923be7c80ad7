//! SVG plots of replays: disk usage and misses over time, comparisons of
//! several runs, and miss-ratio curves over disk sizes.
//!
//! Sizes are in decimal gigabytes (GB = 10^9 bytes), times in days since
//! the trace's start. The output is plain SVG text (plotters' SVG backend),
//! deterministic for equal input.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::RunReport;

const GB: f64 = 1e9;
const WIDTH: u32 = 1280;
const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(170, 170, 170);

/// Ten colours that stay distinct side by side (the "tab10" palette).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A plot that could not be drawn.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The drawing backend failed (a bug in the plot code, or input it
    /// cannot lay out); the message is plotters'.
    #[error("cannot draw the plot: {message}")]
    Draw {
        /// plotters' message.
        message: String,
    },
    /// Nothing to plot.
    #[error("nothing to plot: {what}")]
    Empty {
        /// What was missing.
        what: &'static str,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw {
        message: format!("{e:?}"),
    }
}

/// One curve of a miss-ratio plot: a label and one run per disk size.
#[derive(Clone, Debug)]
pub struct Curve<'a> {
    /// The legend text (policy and ordering).
    pub label: String,
    /// Runs of the same policy and ordering on several disks, each report
    /// carrying its disk size.
    pub runs: Vec<&'a RunReport>,
}

/// How a legend entry shows its colour.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Dashed,
    Box,
}

/// Draws a legend in its own area: a heading, then one mark and its label
/// per entry, top to bottom.
fn side_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    heading: &str,
    entries: &[(String, RGBColor, Mark)],
) -> Result<(), PlotError> {
    let style = TextStyle::from((FONT, 14).into_font()).color(&BLACK);
    area.draw(&Text::new(
        heading.to_owned(),
        (8, 40),
        TextStyle::from((FONT, 15).into_font()).color(&BLACK),
    ))
    .map_err(draw_err)?;
    for (i, (label, c, mark)) in entries.iter().enumerate() {
        let y = 72 + 24 * i as i32;
        match mark {
            Mark::Line => area
                .draw(&PathElement::new(vec![(8, y), (36, y)], c.stroke_width(4)))
                .map_err(draw_err)?,
            Mark::Dashed => {
                for x in [8, 20, 32] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        c.stroke_width(3),
                    ))
                    .map_err(draw_err)?;
                }
            }
            Mark::Box => area
                .draw(&Rectangle::new([(10, y - 7), (34, y + 7)], c.filled()))
                .map_err(draw_err)?,
        }
        area.draw(&Text::new(label.clone(), (44, y - 8), style.clone()))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// A legend of plain lines.
fn lines(labels: impl IntoIterator<Item = String>) -> Vec<(String, RGBColor, Mark)> {
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, colour(i), Mark::Line))
        .collect()
}

/// The colour of series `i`.
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn days_of(report: &RunReport) -> f64 {
    report.days().max(1e-9)
}

/// Sample `i`'s time in days.
fn sample_day(report: &RunReport, i: usize) -> f64 {
    (i as u64 * report.series.interval_ms) as f64 / 86_400_000.0
}

/// A single run: disk usage by kind over time with the disk's size, and
/// cache misses per 6 hours (first builds and rebuilds of collected
/// records).
///
/// # Errors
///
/// [`PlotError`] if the report has no samples or drawing fails.
pub fn disk_usage_svg(report: &RunReport, title: &str) -> Result<String, PlotError> {
    if report.series.used.is_empty() {
        return Err(PlotError::Empty { what: "samples" });
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH + 300, 860)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, (FONT, 24)).map_err(draw_err)?;
        let (plots, legend) = root.split_horizontally(WIDTH);
        let (top, bottom) = plots.split_vertically(500);
        let (legend_top, legend_bottom) = legend.split_vertically(500);
        usage_panel(&top, report)?;
        let capacity = report.disk_total as f64 / GB;
        let usage = [
            ("all data".to_owned(), BLACK, Mark::Line),
            ("build cache".to_owned(), colour(0), Mark::Line),
            ("images".to_owned(), colour(1), Mark::Line),
            ("containers".to_owned(), colour(2), Mark::Line),
            (
                format!("disk size ({capacity:.0} GB)"),
                colour(3),
                Mark::Dashed,
            ),
        ];
        side_legend(&legend_top, "disk used by", &usage)?;
        misses_panel(&bottom, report)?;
        let misses = [
            ("first build of new content".to_owned(), GREY, Mark::Box),
            (
                "  (the same under every policy)".to_owned(),
                WHITE,
                Mark::Box,
            ),
            ("rebuild of content a".to_owned(), colour(3), Mark::Box),
            ("  collector deleted".to_owned(), WHITE, Mark::Box),
        ];
        side_legend(&legend_bottom, "misses", &misses)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn usage_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, r: &RunReport) -> Result<(), PlotError> {
    let s = &r.series;
    let capacity = r.disk_total as f64 / GB;
    let peak = s.used.iter().copied().max().unwrap_or(0) as f64 / GB;
    let y_max = (peak.max(capacity) * 1.08).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .caption("Disk used", (FONT, 18))
        .build_cartesian_2d(0f64..days_of(r), 0f64..y_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (days)")
        .y_desc("GB (10^9 bytes)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_err)?;
    let series: [(&Vec<u64>, RGBColor); 4] = [
        (&s.used, BLACK),
        (&s.cache, colour(0)),
        (&s.images, colour(1)),
        (&s.containers, colour(2)),
    ];
    for (values, c) in series {
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (sample_day(r, i), *v as f64 / GB))
            .collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(draw_err)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, capacity), (days_of(r), capacity)],
            8,
            6,
            colour(3).stroke_width(2),
        ))
        .map_err(draw_err)?;
    Ok(())
}

fn misses_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, r: &RunReport) -> Result<(), PlotError> {
    let s = &r.series;
    // Buckets of 6 hours, from the cumulative series.
    let per_bucket = (6 * 3_600_000 / s.interval_ms.max(1)).max(1) as usize;
    let mut bars: Vec<(f64, f64, u64, u64)> = Vec::new();
    let last = s.misses.len().saturating_sub(1);
    let mut i = 0;
    while i < last {
        let j = (i + per_bucket).min(last);
        let misses = s.misses[j] - s.misses[i];
        let rebuilds = s.rebuilds[j] - s.rebuilds[i];
        bars.push((
            sample_day(r, i),
            sample_day(r, j),
            misses - rebuilds,
            rebuilds,
        ));
        i = j;
    }
    let y_max = bars.iter().map(|b| b.2 + b.3).max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .caption(
            "Cache misses per 6 hours (steps that had to run)",
            (FONT, 18),
        )
        .build_cartesian_2d(0f64..days_of(r), 0f64..y_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time since start (days)")
        .y_desc("misses per 6 h")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_err)?;
    let red = colour(3);
    chart
        .draw_series(bars.iter().map(|&(x0, x1, cold, _)| {
            Rectangle::new([(x0, 0.0), (x1, cold as f64)], GREY.filled())
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(bars.iter().map(|&(x0, x1, cold, re)| {
            Rectangle::new([(x0, cold as f64), (x1, (cold + re) as f64)], red.filled())
        }))
        .map_err(draw_err)?;
    Ok(())
}

/// Several runs on the same trace: disk used over time, and cumulative
/// rebuild time caused by collection. The disk panel is clipped at twice
/// the largest disk size, and says so, when a run goes far beyond it.
///
/// # Errors
///
/// [`PlotError`] if there are no runs or drawing fails.
pub fn comparison_svg(runs: &[(String, &RunReport)], title: &str) -> Result<String, PlotError> {
    if runs.is_empty() {
        return Err(PlotError::Empty { what: "runs" });
    }
    let days = runs.iter().map(|(_, r)| days_of(r)).fold(0.0, f64::max);
    let capacity = runs.iter().map(|(_, r)| r.disk_total).max().unwrap_or(0) as f64 / GB;
    let peak = runs
        .iter()
        .map(|(_, r)| r.disk.peak_used)
        .max()
        .unwrap_or(0) as f64
        / GB;
    let clip = capacity * 2.0;
    let clipped = peak > clip * 1.05;
    let y_max = if clipped {
        clip
    } else {
        (peak.max(capacity) * 1.08).max(1.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH + 300, 960)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, (FONT, 24)).map_err(draw_err)?;
        let (plots, legend) = root.split_horizontally(WIDTH);
        let entries = lines(runs.iter().map(|(label, _)| label.clone()));
        side_legend(&legend, "policy / ordering", &entries)?;
        let (top, bottom) = plots.split_vertically(500);
        let caption = if clipped {
            format!("Disk used (dashed: disk size; clipped at {clip:.0} GB, peaks in the table)")
        } else {
            "Disk used (dashed: disk size)".to_owned()
        };
        let mut chart = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .caption(caption, (FONT, 18))
            .build_cartesian_2d(0f64..days, 0f64..y_max)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (days)")
            .y_desc("GB (10^9 bytes)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (i, (_, r)) in runs.iter().enumerate() {
            let c = colour(i);
            let points: Vec<(f64, f64)> = r
                .series
                .used
                .iter()
                .enumerate()
                .map(|(k, v)| (sample_day(r, k), (*v as f64 / GB).min(y_max)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(draw_err)?;
        }
        let mut sizes: Vec<u64> = runs.iter().map(|(_, r)| r.disk_total).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            let gb = size as f64 / GB;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, gb), (days, gb)],
                    8,
                    6,
                    BLACK.stroke_width(1),
                ))
                .map_err(draw_err)?;
        }

        let hours_max = runs
            .iter()
            .map(|(_, r)| r.rebuilds.seconds / 3600.0)
            .fold(0.0, f64::max)
            .max(0.1)
            * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .caption(
                "Rebuild time caused by collection, cumulative (a miss on content a collector deleted)",
                (FONT, 18),
            )
            .build_cartesian_2d(0f64..days, 0f64..hours_max)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (days)")
            .y_desc("rebuild hours")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(draw_err)?;
        for (i, (_, r)) in runs.iter().enumerate() {
            let c = colour(i);
            let points: Vec<(f64, f64)> = r
                .series
                .rebuild_seconds
                .iter()
                .enumerate()
                .map(|(k, v)| (sample_day(r, k), v / 3600.0))
                .collect();
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Miss-ratio curves for capacity planning: for each policy and ordering,
/// over disk sizes, the share of cache steps that missed, the rebuild
/// hours per day caused by collection, and the hours spent over capacity.
///
/// # Errors
///
/// [`PlotError`] if there is no curve with a point or drawing fails.
pub fn miss_ratio_svg(curves: &[Curve<'_>], title: &str) -> Result<String, PlotError> {
    let sizes: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.runs.iter().map(|r| r.disk_total as f64 / GB))
        .collect();
    if sizes.is_empty() {
        return Err(PlotError::Empty { what: "curves" });
    }
    let x_min = sizes.iter().copied().fold(f64::MAX, f64::min) * 0.95;
    let x_max = sizes.iter().copied().fold(0.0, f64::max) * 1.05;
    type Metric = fn(&RunReport) -> f64;
    let panels: [(&str, &str, Metric); 3] = [
        (
            "Cache miss ratio (all misses, first builds included)",
            "misses per step (%)",
            |r| r.miss_ratio() * 100.0,
        ),
        (
            "Rebuild time caused by collection",
            "rebuild hours per day",
            RunReport::rebuild_hours_per_day,
        ),
        (
            "Time over capacity (writes would fail)",
            "hours over capacity",
            |r| r.disk.over_capacity_ms as f64 / 3_600_000.0,
        ),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH + 300, 1260)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, (FONT, 24)).map_err(draw_err)?;
        let (plots, legend) = root.split_horizontally(WIDTH);
        let entries = lines(curves.iter().map(|c| c.label.clone()));
        side_legend(&legend, "policy / ordering", &entries)?;
        let areas = plots.split_evenly((3, 1));
        for (index, (area, (caption, y_desc, metric))) in areas.iter().zip(panels).enumerate() {
            let values: Vec<f64> = curves
                .iter()
                .flat_map(|c| c.runs.iter().map(|r| metric(r)))
                .collect();
            let high = values.iter().copied().fold(0.0, f64::max).max(0.1);
            let low = values.iter().copied().fold(f64::MAX, f64::min);
            // The miss ratio has a floor (first builds), so its axis starts
            // near the data; the others start at zero.
            let y_min = if index == 0 {
                (low - (high - low).max(1.0) * 0.15).max(0.0).floor()
            } else {
                0.0
            };
            let y_max = high + (high - y_min).max(0.1) * 0.1;
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(75)
                .caption(caption, (FONT, 18))
                .build_cartesian_2d(x_min..x_max, y_min..y_max)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("disk size (GB, 10^9 bytes)")
                .y_desc(y_desc)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 15))
                .draw()
                .map_err(draw_err)?;
            for (i, curve) in curves.iter().enumerate() {
                let c = colour(i);
                let mut points: Vec<(f64, f64)> = curve
                    .runs
                    .iter()
                    .map(|r| (r.disk_total as f64 / GB, metric(r)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(draw_err)?;
                chart
                    .draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                    .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}
