//! Rendering: aligned text tables and key/value blocks for people, JSON for programs.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Columns separated by two spaces, each as wide as its widest cell; the last
/// column is not padded (long paths stay intact).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key   value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

/// A value, or `-` when absent.
pub fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

pub fn print_json(value: &Value) {
    // Serialising a `Value` cannot fail; fall back to the compact form regardless.
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// The server's answer verbatim with `--json`, else as `text` renders it.
pub fn show(answer: &Value, as_json: bool, text: impl Fn(&Value) -> anyhow::Result<String>) -> anyhow::Result<std::process::ExitCode> {
    if as_json {
        print_json(answer);
    } else {
        print!("{}", text(answer)?);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Read a server answer into its typed form for display.
pub fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> anyhow::Result<T> {
    T::deserialize(value).map_err(|e| anyhow::anyhow!("unexpected {what} from the server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_all_but_the_last_column() {
        let rows = vec![
            vec!["1".to_string(), "0.8312".to_string(), "/a/long/path.jpg".to_string()],
            vec!["10".to_string(), "0.1000".to_string(), "/b.png".to_string()],
        ];
        assert_eq!(
            table(&["RANK", "SCORE", "PATH"], &rows),
            "RANK  SCORE   PATH\n1     0.8312  /a/long/path.jpg\n10    0.1000  /b.png\n"
        );
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(fields(&[("Model", "m".into()), ("Images", "3".into())]), "Model   m\nImages  3\n");
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
    }
}
