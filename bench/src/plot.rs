//! The SVG plots of BENCHMARKS.md, drawn at the end of a run from the tables it printed
//! (so a plot never shows a figure the run's own output does not): the drain against its
//! ceiling per backlog, and the write overhead against the floor and against plain diesel
//! per saves per transaction, one bar per backend.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::stats::{printed, Table};
use crate::BResult;

const BACKENDS: [&str; 3] = ["SQLite", "PostgreSQL", "MariaDB"];
const COLOURS: [RGBColor; 3] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
];

/// One plot: bars of `series` (a backend each) over `categories`, with a line at `one`.
struct Bars {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    categories: Vec<String>,
    series: Vec<(&'static str, Vec<Option<f64>>)>,
}

/// Draws every plot the run has the tables for into `dir`; returns the files written.
pub fn write_all(dir: &Path) -> BResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let tables = printed();
    let mut written = Vec::new();
    let plots = [
        by_backend(
            &tables,
            ": drain, rows deleted per second",
            "library/best ceiling",
            |row| !row.contains("synchronous_commit"),
            (
                "drain-vs-ceiling.svg",
                "Drain rows/s against the database's ceiling, per backlog (shards × rows)",
                "drain / ceiling",
            ),
        ),
        by_backend(
            &tables,
            ": write, µs per transaction",
            "vs floor (b)",
            |_| true,
            (
                "writes-vs-floor.svg",
                "Write time against the same statements by hand, per saves per transaction",
                "outbox / floor",
            ),
        ),
        by_backend(
            &tables,
            ": write, µs per transaction",
            "vs plain (a)",
            |_| true,
            (
                "writes-vs-plain-diesel.svg",
                "Write time against plain diesel (no outbox row), per saves per transaction",
                "outbox / plain diesel",
            ),
        ),
    ];
    for plot in plots.into_iter().flatten() {
        let path = dir.join(plot.file);
        draw(&plot, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// The column `column` of each backend's table whose title contains `title`, rows kept by
/// `keep`, as one series per backend; `None` when no backend printed such a table.
fn by_backend(
    tables: &[Table],
    title: &str,
    column: &str,
    keep: impl Fn(&str) -> bool,
    (file, plot_title, y_label): (&'static str, &'static str, &'static str),
) -> Option<Bars> {
    let mut categories: Vec<String> = Vec::new();
    let mut columns = Vec::new();
    for backend in BACKENDS {
        let wanted = format!("{backend}{title}");
        let Some(cells) = tables
            .iter()
            .find(|t| t.title().starts_with(&wanted))
            .and_then(|t| t.column(column))
        else {
            continue;
        };
        let cells: Vec<(String, String)> = cells.into_iter().filter(|(row, _)| keep(row)).collect();
        // Axis labels short enough to sit side by side: "c10 1,000 × 200".
        let cells: Vec<(String, String)> = cells
            .into_iter()
            .map(|(row, cell)| (row.split(" (").next().unwrap_or(&row).to_owned(), cell))
            .collect();
        for (row, _) in &cells {
            if !categories.contains(row) {
                categories.push(row.clone());
            }
        }
        columns.push((backend, cells));
    }
    if columns.is_empty() {
        return None;
    }
    let series = columns
        .into_iter()
        .map(|(backend, cells)| {
            let values = categories
                .iter()
                .map(|category| {
                    cells
                        .iter()
                        .find(|(row, _)| row == category)
                        .and_then(|(_, cell)| {
                            cell.trim()
                                .trim_end_matches('x')
                                .replace(',', "")
                                .parse()
                                .ok()
                        })
                })
                .collect();
            (backend, values)
        })
        .collect();
    Some(Bars {
        file,
        title: plot_title,
        y_label,
        categories,
        series,
    })
}

fn draw(plot: &Bars, path: &Path) -> BResult<()> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = plot
        .series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .fold(1.0_f64, |a, &b| a.max(b))
        * 1.15;
    let n = plot.categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(plot.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..top)?;
    let names = plot.categories.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 2)
        .x_label_style(("sans-serif", 12))
        .x_label_formatter(&|x| {
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-9 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(plot.y_label)
        .draw()?;
    let width = 0.8 / plot.series.len() as f64;
    for (j, (backend, values)) in plot.series.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, value)| {
                let value = (*value)?;
                let left = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new(
                    [(left, 0.0), (left + width * 0.92, value)],
                    colour.filled(),
                ))
            }))?
            .label(*backend)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart.draw_series(LineSeries::new(
        [(0.0, 1.0), (n as f64, 1.0)],
        BLACK.stroke_width(1),
    ))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
