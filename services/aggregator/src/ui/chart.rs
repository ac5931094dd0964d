//! Bar charts as inline SVG: no script, no library, readable by a screen reader (a title and a
//! description per chart, a `<title>` per bar) and as a table beside it.

use maud::{Markup, html};

/// One bar: its label under the axis and its value.
pub struct Bar {
    pub label: String,
    pub value: u64,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const AXIS: f64 = 30.0;

/// Vertical bars over time (oldest first). `every` labels every n-th bar.
pub fn columns(title: &str, unit: &str, bars: &[Bar], every: usize) -> Markup {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let slot = WIDTH / bars.len().max(1) as f64;
    let total: u64 = bars.iter().map(|b| b.value).sum();
    let plot = HEIGHT - AXIS;
    html! {
        figure.chart {
            svg viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label={(title) ": " (total) " " (unit) " in all"} {
                title { (title) }
                line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) class="axis" {}
                @for (n, bar) in bars.iter().enumerate() {
                    @let h = (bar.value as f64 / max as f64) * (plot - 12.0);
                    @let x = n as f64 * slot;
                    rect x=(format!("{:.1}", x + slot * 0.15)) y=(format!("{:.1}", plot - h)) width=(format!("{:.1}", slot * 0.7)) height=(format!("{:.1}", h)) class="bar" {
                        title { (bar.label) ": " (bar.value) " " (unit) }
                    }
                    @if every > 0 && n % every == 0 {
                        text x=(format!("{:.1}", (x + slot / 2.0).clamp(30.0, WIDTH - 30.0))) y=(HEIGHT - 6.0) class="tick" text-anchor="middle" { (bar.label) }
                    }
                }
                text x="4" y="18" class="tick" { "max " (max) }
            }
            figcaption { (title) " — " (total) " " (unit) }
        }
    }
}

/// Horizontal bars for categories (severities, repositories), each with its class for colour.
pub fn rows(title: &str, bars: &[(String, u64, &str)]) -> Markup {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    html! {
        figure.chart.rows {
            dl aria-label=(title) {
                @for (label, value, class) in bars {
                    dt { (label) }
                    dd {
                        svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label={(label) ": " (value)} {
                            rect x="0" y="0" height="10" width=(format!("{:.1}", *value as f64 * 100.0 / max as f64)) class={"bar " (class)} {}
                        }
                        span.value { (value) }
                    }
                }
            }
        }
    }
}
