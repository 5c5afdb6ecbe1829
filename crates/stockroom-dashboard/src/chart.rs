//! Charts drawn on the server as SVG: step lines over time, and a small bar sparkline. Every
//! text placed in the SVG is escaped here; the result is inserted into pages as it is.

use std::collections::BTreeMap;
use std::fmt::Write;

use stockroom_store::HistoryEntry;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// One line: its label, colour and points (x, y).
pub struct Line<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The figures after each entry of a history series (oldest first), summed over the locations
/// it covers: (time in seconds, total, allocated, available).
pub fn stock_series(entries: &[HistoryEntry]) -> Vec<(f64, u64, u64, u64)> {
    let mut at: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    entries
        .iter()
        .map(|e| {
            at.insert(e.location.as_str(), (e.after.total(), e.after.allocated()));
            let (total, allocated) = at
                .values()
                .fold((0, 0), |(t, a), (et, ea)| (t + et, a + ea));
            (
                e.created_at.micros() as f64 / 1e6,
                total,
                allocated,
                total - allocated,
            )
        })
        .collect()
}

/// The chart of a product's total, allocated and available over its history series.
pub fn stock_chart(entries: &[HistoryEntry]) -> String {
    let series = stock_series(entries);
    if series.is_empty() {
        return "<p class=\"muted\">No history to draw.</p>".to_owned();
    }
    let pick = |f: fn(&(f64, u64, u64, u64)) -> u64| -> Vec<(f64, f64)> {
        series.iter().map(|p| (p.0, f(p) as f64)).collect()
    };
    let first = super::pages::when(stockroom_domain::Timestamp(entries[0].created_at.micros()));
    let last = super::pages::when(stockroom_domain::Timestamp(
        entries[entries.len() - 1].created_at.micros(),
    ));
    step_chart(
        "Total, allocated and available over time",
        &[
            Line {
                label: "total",
                colour: "#1f5fbf",
                points: pick(|p| p.1),
            },
            Line {
                label: "allocated",
                colour: "#c0392b",
                points: pick(|p| p.2),
            },
            Line {
                label: "available",
                colour: "#1e8449",
                points: pick(|p| p.3),
            },
        ],
        (&first, &last),
    )
}

/// Step lines (a value holds until the next point) on shared axes from 0.
pub fn step_chart(title: &str, lines: &[Line<'_>], x_labels: (&str, &str)) -> String {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let y1 = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v - x0) / span * plot_w;
    let y = |v: f64| TOP + plot_h - v / y1 * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = escape(title)
    );
    for i in 0..=4 {
        let v = y1 * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" fill=\"#555\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&if y1 < 10.0 {
                format!("{v:.1}")
            } else {
                super::pages::figure(v.round() as u64)
            }),
            y = y(v),
        );
    }
    for line in lines {
        let mut d = String::new();
        let mut previous: Option<f64> = None;
        for &(px, py) in &line.points {
            match previous {
                None => {
                    let _ = write!(d, "M{:.1},{:.1}", x(px), y(py));
                }
                Some(_) => {
                    let _ = write!(d, " H{:.1} V{:.1}", x(px), y(py));
                }
            }
            previous = Some(py);
        }
        let _ = write!(d, " H{:.1}", WIDTH - RIGHT);
        let _ = write!(
            svg,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></path>",
            line.colour,
            escape(line.label)
        );
    }
    let base = HEIGHT - BOTTOM + 16.0;
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{base}\" font-size=\"12\" fill=\"#555\">{}</text>\
         <text x=\"{}\" y=\"{base}\" font-size=\"12\" fill=\"#555\" text-anchor=\"end\">{}</text>",
        escape(x_labels.0),
        WIDTH - RIGHT,
        escape(x_labels.1)
    );
    let mut lx = LEFT;
    for line in lines {
        let ly = HEIGHT - 8.0;
        let _ = write!(
            svg,
            "<rect x=\"{lx}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{ly}\" font-size=\"12\" fill=\"#333\">{}</text>",
            ly - 5.0,
            line.colour,
            lx + 18.0,
            escape(line.label)
        );
        lx += 110.0;
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_domain::{Action, ProductId, Stock, Timestamp};

    fn entry(location: &str, at: i64, total: i64, allocated: i64) -> HistoryEntry {
        HistoryEntry {
            id: format!("{location}{at}"),
            product_id: ProductId::parse("p").expect("id"),
            location: location.into(),
            action: Action::Set,
            quantity: 1,
            after: Stock::from_figures(total, allocated).expect("figures"),
            order_id: None,
            reason: None,
            created_at: Timestamp::from_secs(at),
        }
    }

    #[test]
    fn the_series_sums_each_locations_latest_figures() {
        let series = stock_series(&[
            entry("a", 1, 10, 0),
            entry("b", 2, 5, 1),
            entry("a", 3, 7, 2),
        ]);
        let figures: Vec<(u64, u64, u64)> = series.iter().map(|p| (p.1, p.2, p.3)).collect();
        assert_eq!(figures, [(10, 0, 10), (15, 1, 14), (12, 3, 9)]);
    }

    #[test]
    fn charts_escape_their_text_and_draw_one_path_per_line() {
        let svg = step_chart(
            "<b>",
            &[Line {
                label: "a&b",
                colour: "#000",
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            ("x<", "y>"),
        );
        assert!(svg.contains("&lt;b&gt;") && svg.contains("a&amp;b") && svg.contains("x&lt;"));
        assert!(!svg.contains("<b>"));
        assert_eq!(svg.matches("<path").count(), 1);
    }
}
