//! Charts of a monitor's metrics as self-contained SVG: a metric of one column over the
//! windows (drift against its threshold, the mean, nulls, model quality, rows), which the API
//! serves for pages to embed and `tarn monitors report` writes into one HTML file.

use std::fmt::Write;

use tarn_lake::format_timestamp;

use crate::overview::{Overview, Point, Series};
use crate::tables::TABLE_ROW;
use crate::windows::Window;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;
const COLOURS: [&str; 3] = ["#2563eb", "#ea580c", "#16a34a"];

/// What a chart shows of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The drift score against the baseline and the previous window, with the threshold.
    Drift,
    Mean,
    Nulls,
    /// Accuracy (classification) or RMSE (regression), on the table's row.
    Quality,
    /// Rows per window, on the table's row.
    Rows,
}

impl Metric {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "drift" => Self::Drift,
            "mean" => Self::Mean,
            "nulls" => Self::Nulls,
            "quality" => Self::Quality,
            "rows" => Self::Rows,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drift => "drift",
            Self::Mean => "mean",
            Self::Nulls => "nulls",
            Self::Quality => "quality",
            Self::Rows => "rows",
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn label(window: Option<Window>) -> String {
    match window {
        Some(window) => format_timestamp(window.start / 1000)
            .chars()
            .take(16)
            .collect::<String>()
            .replace('T', " "),
        None => "snapshot".into(),
    }
}

/// A line chart of `series` over `windows`, with an optional dashed threshold.
pub fn line_chart(
    title: &str,
    windows: &[Option<Window>],
    series: &[(String, Vec<Option<f64>>)],
    threshold: Option<(String, f64)>,
) -> String {
    let values = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .chain(threshold.as_ref().map(|(_, t)| *t))
        .filter(|v| v.is_finite());
    let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    if low >= 0.0 && low < high * 0.5 {
        low = 0.0;
    }
    if high - low < 1e-12 {
        (low, high) = (low - 0.5, high + 0.5);
    }
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if windows.len() <= 1 {
            LEFT + plot_width / 2.0
        } else {
            LEFT + plot_width * i as f64 / (windows.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_height * (1.0 - (v - low) / (high - low));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11"><title>{}</title><rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(title),
        escape(title)
    );
    for tick in 0..=4 {
        let value = low + (high - low) * tick as f64 / 4.0;
        let at = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#4b5563">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0,
            short(value)
        );
    }
    let step = windows.len().div_ceil(6).max(1);
    for (i, window) in windows.iter().enumerate().step_by(step) {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#4b5563">{}</text>"##,
            x(i),
            HEIGHT - BOTTOM + 16.0,
            escape(&label(*window))
        );
    }
    if let Some((name, value)) = &threshold {
        let at = y(*value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#dc2626" stroke-dasharray="5 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#dc2626">{}</text>"##,
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            at - 4.0,
            escape(name)
        );
    }
    for (index, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut path = String::new();
        let mut pen_down = false;
        for (i, point) in points.iter().enumerate() {
            match point.filter(|v| v.is_finite()) {
                Some(value) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(i),
                        y(value)
                    );
                    pen_down = true;
                    let _ = write!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}: {}</title></circle>"#,
                        x(i),
                        y(value),
                        escape(&label(windows[i])),
                        short(value)
                    );
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{}" fill="{colour}">{}</text>"#,
            path.trim(),
            LEFT + 8.0 + 140.0 * index as f64,
            TOP + 12.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn short(value: f64) -> String {
    if value != 0.0 && (value.abs() >= 1e5 || value.abs() < 1e-3) {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The threshold above (or for p-values, below) which a test's score means drift.
fn threshold_of(test: &str) -> Option<f64> {
    match test {
        "wasserstein" | "jensenshannon" => Some(0.1),
        "ks" | "chisquare" | "z" => Some(0.05),
        _ => None,
    }
}

fn values(
    series: &Series,
    windows: &[Option<Window>],
    pick: impl Fn(&Point) -> Option<f64>,
) -> Vec<Option<f64>> {
    windows
        .iter()
        .map(|w| series.points.get(w).and_then(&pick))
        .collect()
}

/// The chart of `metric` for `column` (`:table` for rows, quality and the share of drifted
/// columns); None when the monitor has no such column or nothing to draw.
pub fn chart(overview: &Overview, column: &str, metric: Metric) -> Option<String> {
    let series = overview.columns.iter().find(|s| s.column == column)?;
    let windows = overview.windows();
    let table = overview.monitor.table_name.as_str();
    let (title, lines, threshold) = match (metric, column == TABLE_ROW) {
        (Metric::Drift, true) => (
            format!("{table}: share of columns drifted against the baseline"),
            vec![(
                "share drifted".to_string(),
                values(series, &windows, |p| p.share_drifted),
            )],
            Some(("dataset drift (0.5)".to_string(), 0.5)),
        ),
        (Metric::Drift, false) => {
            let test = series
                .points
                .values()
                .find_map(|p| p.baseline.as_ref().or(p.consecutive.as_ref()))
                .map(|d| d.test.clone())?;
            (
                format!("{column}: drift ({test})"),
                vec![
                    (
                        "vs baseline".to_string(),
                        values(series, &windows, |p| p.baseline.as_ref().map(|d| d.score)),
                    ),
                    (
                        "vs previous window".to_string(),
                        values(series, &windows, |p| {
                            p.consecutive.as_ref().map(|d| d.score)
                        }),
                    ),
                ],
                threshold_of(&test).map(|t| (format!("threshold {t}"), t)),
            )
        }
        (Metric::Mean, _) => (
            format!("{column}: mean"),
            vec![("mean".to_string(), values(series, &windows, |p| p.avg))],
            None,
        ),
        (Metric::Nulls, _) => (
            format!("{column}: nulls (%)"),
            vec![(
                "nulls %".to_string(),
                values(series, &windows, |p| p.percent_null),
            )],
            None,
        ),
        (Metric::Quality, _) => (
            format!(
                "{table}: {}",
                series
                    .points
                    .values()
                    .find_map(|p| p.quality.as_ref().map(|q| q.0.clone()))?
            ),
            vec![(
                "quality".to_string(),
                values(series, &windows, |p| p.quality.as_ref().map(|q| q.1)),
            )],
            None,
        ),
        (Metric::Rows, _) => (
            format!("{table}: rows per window"),
            vec![(
                "rows".to_string(),
                values(series, &windows, |p| Some(p.count as f64)),
            )],
            None,
        ),
    };
    if lines.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
        return None;
    }
    Some(line_chart(&title, &windows, &lines, threshold))
}

/// A self-contained HTML report: the table's charts, then each column's.
pub fn report(overview: &Overview) -> String {
    let mut html = String::new();
    let table = escape(&overview.monitor.table_name);
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Monitor of {table}</title><style>body{{font-family:sans-serif;margin:24px;color:#111}}h2{{margin-top:32px}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body><h1>Monitor of {table}</h1><p>Granularity {} · source version {} · monitor version {}</p>",
        escape(overview.granularity.as_deref().unwrap_or("snapshot")),
        overview.source_version.unwrap_or_default(),
        overview.monitor.monitor_version
    );
    for series in &overview.columns {
        let heading = if series.column == TABLE_ROW {
            "The table".to_string()
        } else {
            format!("{} ({})", escape(&series.column), escape(&series.data_type))
        };
        let metrics: &[Metric] = if series.column == TABLE_ROW {
            &[Metric::Drift, Metric::Quality, Metric::Rows]
        } else {
            &[Metric::Drift, Metric::Mean, Metric::Nulls]
        };
        let charts: Vec<String> = metrics
            .iter()
            .filter_map(|metric| chart(overview, &series.column, *metric))
            .collect();
        if charts.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<h2>{heading}</h2><div class=\"charts\">{}</div>",
            charts.join("")
        );
    }
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_names_and_skips_missing_windows() {
        let windows = vec![
            Some(Window {
                start: 0,
                end: 86_400_000_000,
            }),
            Some(Window {
                start: 86_400_000_000,
                end: 172_800_000_000,
            }),
            Some(Window {
                start: 172_800_000_000,
                end: 259_200_000_000,
            }),
        ];
        let svg = line_chart(
            "<script>",
            &windows,
            &[("a&b".into(), vec![Some(0.05), None, Some(0.3)])],
            Some(("threshold".into(), 0.1)),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("a&amp;b"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(
            svg.matches(" M").count() + usize::from(svg.contains("d=\"M")),
            2,
            "the gap breaks the line"
        );
        assert!(svg.contains("stroke-dasharray"));
    }
}
