//! What a scenario reports: figures (printed as a Markdown table, the form RELIABILITY.md
//! keeps) and checks, each passed or failed with what was seen.

use std::fmt::Display;

/// The outcome of one scenario on one backend.
pub struct Section {
    title: String,
    figures: Vec<(String, String)>,
    notes: Vec<String>,
    checks: Vec<Check>,
}

/// One claim the scenario verified.
pub struct Check {
    /// What should hold.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub seen: String,
}

impl Section {
    /// An empty section titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Section {
            title: title.into(),
            figures: Vec::new(),
            notes: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Records a measured figure.
    pub fn figure(&mut self, name: impl Into<String>, value: impl Display) {
        self.figures.push((name.into(), value.to_string()));
    }

    /// Records a line printed after the figures (a timeline, a table of cases).
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Records whether `name` held, and what was seen.
    pub fn check(&mut self, name: impl Into<String>, ok: bool, seen: impl Display) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            seen: seen.to_string(),
        });
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.ok)
    }

    /// Prints the section as Markdown.
    pub fn print(&self) {
        println!("\n### {}\n", self.title);
        if !self.figures.is_empty() {
            println!("| figure | value |\n| --- | --- |");
            for (name, value) in &self.figures {
                println!("| {name} | {value} |");
            }
        }
        if !self.notes.is_empty() {
            println!();
            for line in &self.notes {
                println!("{line}");
            }
        }
        println!();
        for check in &self.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            println!("- {mark} {}: {}", check.name, check.seen);
        }
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }
}

/// Seconds with two decimals.
pub fn secs(duration: std::time::Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}
