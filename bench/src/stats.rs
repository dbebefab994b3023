//! Medians, percentiles and the plain-text tables the bench prints.

use std::time::Duration;

/// The median of `samples`: the middle one, or the mean of the middle two (0 when empty).
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The `p`-th percentile (nearest rank) of `samples` (0 when empty).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds in `d`.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A table printed with aligned columns.
#[derive(Clone)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table titled `title` with these column names.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Table {
            title: title.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table as Markdown (readable as text too), flushed at once.
    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:>w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        println!("\n### {}\n", self.title);
        println!("{}", line(&self.header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            println!("{}", line(row));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        PRINTED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(self.clone());
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The cells of column `name` by row, with each row's first cell; `None` when there
    /// is no such column.
    pub fn column(&self, name: &str) -> Option<Vec<(String, String)>> {
        let index = self.header.iter().position(|h| h == name)?;
        Some(
            self.rows
                .iter()
                .filter_map(|row| Some((row.first()?.trim().to_owned(), row.get(index)?.clone())))
                .collect(),
        )
    }
}

/// Every table printed so far, for the plots drawn at the end of a run.
static PRINTED: std::sync::Mutex<Vec<Table>> = std::sync::Mutex::new(Vec::new());

/// The tables printed so far.
pub fn printed() -> Vec<Table> {
    PRINTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// `x` with two decimals and a trailing `x`.
pub fn ratio(x: f64) -> String {
    format!("{x:.2}x")
}

/// A number with thousands separators.
pub fn count(n: f64) -> String {
    let n = n.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Peak and current resident memory of this process in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
