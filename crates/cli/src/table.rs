//! A plain-text table for terminal output.

use std::fmt::Write as _;

/// Column alignment.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// A table of rows under a header, printed with columns padded to fit.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with the given column names and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            header: columns.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each with `indent` leading spaces.
    pub fn render(&self, indent: usize) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|(n, _)| n.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = " ".repeat(indent);
            for (i, (_, align)) in self.header.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    text.push_str("  ");
                }
                match align {
                    Align::Left => {
                        text.push_str(cell);
                        if i + 1 < self.header.len() {
                            text.push_str(&" ".repeat(pad));
                        }
                    }
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(cell);
                    }
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(
            &self
                .header
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        );
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// Bytes with a human-readable binary size beside them: `1073741824 (1.0 GiB)`.
pub fn bytes(n: i64) -> String {
    if n < 0 {
        return n.to_string();
    }
    if n < 1024 {
        return n.to_string();
    }
    format!("{n} ({})", reclaim_model::ByteSize(n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns() {
        let mut t = Table::new(&[("id", Align::Left), ("size", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["bbb".into(), "100".into()]);
        assert_eq!(t.render(0), "id   size\na       1\nbbb   100\n");
    }

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(1 << 30), "1073741824 (1.0 GiB)");
    }
}
