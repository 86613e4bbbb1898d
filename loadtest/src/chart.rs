//! The run as a picture (SVG, no font files needed): deliveries per second
//! over time, and latency by percentile.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Percentiles plotted, as quantiles.
const QUANTILES: [f64; 9] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// Writes the chart. `timeline` is (second since the epoch, deliveries in it).
pub fn write(path: &Path, title: &str, timeline: &[(u64, u64)], latency: &Histogram<u64>) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(500);

    let start = timeline.first().map_or(0, |(sec, _)| *sec);
    let points: Vec<(u64, u64)> = timeline.iter().map(|(sec, n)| (sec - start, *n)).collect();
    let max_x = points.last().map_or(1, |(x, _)| *x + 1);
    let max_y = points.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&left)
        .caption("deliveries per second", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..max_x, 0..max_y + max_y / 10)?;
    chart.configure_mesh().x_desc("seconds").draw()?;
    chart.draw_series(LineSeries::new(points, &BLUE))?;

    let percentiles: Vec<(f64, f64)> = if latency.is_empty() {
        Vec::new()
    } else {
        QUANTILES.iter().map(|q| (q * 100.0, latency.value_at_quantile(*q) as f64 / 1000.0)).collect()
    };
    let max_ms = percentiles.iter().map(|(_, ms)| *ms).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("latency by percentile (ms)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..100.0, 0.0..max_ms * 1.1)?;
    chart.configure_mesh().x_desc("percentile").draw()?;
    chart.draw_series(LineSeries::new(percentiles.iter().copied(), &RED))?;
    chart.draw_series(percentiles.iter().map(|p| Circle::new(*p, 3, RED.filled())))?;
    root.present()?;
    Ok(())
}
