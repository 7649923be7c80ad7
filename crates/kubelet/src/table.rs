//! Plain-text tables for the plans' `Display` output.

use std::fmt;

/// Writes `rows` under `headers` with columns padded to their widest cell
/// and separated by two spaces, each line indented by two spaces.
pub(crate) fn write_table(
    f: &mut fmt::Formatter<'_>,
    headers: &[&str],
    rows: &[Vec<String>],
) -> fmt::Result {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from(" ");
        for (cell, w) in cells.zip(&widths) {
            text.push(' ');
            text.push_str(cell);
            for _ in cell.chars().count()..*w {
                text.push(' ');
            }
            text.push(' ');
        }
        writeln!(f, "{}", text.trim_end())
    };
    line(f, &mut headers.iter().copied())?;
    for row in rows {
        line(f, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}
