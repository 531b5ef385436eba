//! Plain-text tables: a title, a header line, right-aligned figures.

pub struct Table {
    title: String,
    columns: Vec<(&'static str, usize)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as (header, width); the first is left-aligned, the others right-aligned.
    pub fn new(title: impl Into<String>, columns: &[(&'static str, usize)]) -> Table {
        Table {
            title: title.into(),
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.columns.len(), "a cell per column");
        self.rows.push(cells);
    }

    pub fn print(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!("\n{}", self.title);
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, (cell, (_, width))) in cells.iter().zip(&self.columns).enumerate() {
                if i == 0 {
                    out.push_str(&format!("{cell:<width$}"));
                } else {
                    out.push_str(&format!("  {cell:>width$}"));
                }
            }
            println!("{}", out.trim_end());
        };
        line(self.columns.iter().map(|(header, _)| *header).collect());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// A latency in milliseconds.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A rate per second.
pub fn rate(value: f64) -> String {
    format!("{value:.0}")
}

/// `value` as a multiple of `base`.
pub fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}x", value / base)
    } else {
        "-".into()
    }
}

/// Whether a target holds.
pub fn verdict(holds: bool) -> String {
    if holds { "met" } else { "MISSED" }.into()
}
