//! The report's chart (SVG, drawn with plotters): one bar panel per headline metric, bars at
//! the median, whiskers from min to max, one colour per server.

use crate::results::{Results, metric};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const PANELS: &[(&str, &[(&str, &str)])] = &[
    (
        "memory per idle session (KiB)",
        &[("idle_plain_kib", "plain"), ("idle_tls_kib", "TLS")],
    ),
    (
        "server CPU per message (µs)",
        &[("tput_plain_cpu_us", "plain"), ("tput_tls_cpu_us", "TLS")],
    ),
    ("idle RSS after start (MiB)", &[("idle_rss_mib", "")]),
    (
        "server CPU per TLS+SCRAM login (ms)",
        &[("storm_cpu_ms", "")],
    ),
    (
        "server CPU per presence delivery (µs)",
        &[("fanout_cpu_us", "")],
    ),
    ("unloaded latency p99 (µs)", &[("lat_p99_us", "")]),
    (
        "bytes written per archived message, {rate}/s",
        &[("archive_write_bytes", "")],
    ),
    (
        "fsync-type calls per second at {rate} msg/s",
        &[("archive_syncs_per_s", "")],
    ),
];

fn colour(server: &str) -> RGBColor {
    match server {
        "xmppd" => RGBColor(0x1b, 0x9e, 0x77),
        "prosody" => RGBColor(0x75, 0x70, 0xb3),
        "ejabberd" => RGBColor(0xd9, 0x5f, 0x02),
        _ => RGBColor(0x66, 0x66, 0x66),
    }
}

struct Bar {
    label: String,
    server: String,
    median: f64,
    min: f64,
    max: f64,
}

fn bars(results: &Results, servers: &[String], series: &[(&str, &str)]) -> Vec<Bar> {
    let mut out = Vec::new();
    for (key, variant) in series {
        for s in servers {
            if let Some(st) = results.stats(key, s) {
                let label = if variant.is_empty() {
                    s.clone()
                } else {
                    variant.to_string()
                };
                out.push(Bar {
                    label,
                    server: s.clone(),
                    median: st.median,
                    min: st.min,
                    max: st.max,
                });
            }
        }
    }
    out
}

fn value_label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn panel(area: &DrawingArea<SVGBackend, Shift>, title: &str, bars: &[Bar]) -> DrawResult {
    if bars.is_empty() {
        area.titled(title, ("sans-serif", 16))?;
        return Ok(());
    }
    let top = bars
        .iter()
        .map(|b| b.max.max(b.median))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.18;
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(48)
        // A segmented range a..b has b - a + 1 slots.
        .build_cartesian_2d((0..n.saturating_sub(1).max(1)).into_segmented(), 0f64..top)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_style(("sans-serif", 11))
        .y_label_style(("sans-serif", 11))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    for (i, b) in bars.iter().enumerate() {
        let c = colour(&b.server);
        let mut rect = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.median),
            ],
            c.filled(),
        );
        rect.set_margin(0, 0, 6, 6);
        chart.draw_series(std::iter::once(rect))?;
        if b.max > b.min {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), b.min),
                    (SegmentValue::CenterOf(i), b.max),
                ],
                BLACK.stroke_width(1),
            )))?;
        }
        let style = TextStyle::from(("sans-serif", 11).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        );
        chart.draw_series(std::iter::once(Text::new(
            value_label(b.median),
            (SegmentValue::CenterOf(i), b.max.max(b.median) + top * 0.02),
            style,
        )))?;
    }
    Ok(())
}

/// `archive_rate` fills in the archive panels' titles.
pub fn write_chart(
    path: &Path,
    results: &Results,
    servers: &[String],
    archive_rate: u32,
) -> DrawResult {
    let root = SVGBackend::new(path, (1600, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "xmppd vs Prosody vs ejabberd — median, whiskers min–max (lower is better)",
        ("sans-serif", 18),
    )?;
    let (legend, root) = root.split_vertically(26);
    let mut x = 620;
    for s in servers {
        legend.draw(&Rectangle::new([(x, 6), (x + 14, 20)], colour(s).filled()))?;
        legend.draw(&Text::new(s.clone(), (x + 20, 6), ("sans-serif", 15)))?;
        x += 40 + 9 * s.len() as i32;
    }
    let areas = root.split_evenly((2, 4));
    for (area, (title, series)) in areas.iter().zip(PANELS) {
        debug_assert!(series.iter().all(|(k, _)| metric(k).is_some()));
        let title = title.replace("{rate}", &archive_rate.to_string());
        panel(area, &title, &bars(results, servers, series))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_server() {
        let mut r = Results::default();
        for (s, v) in [("xmppd", 1.0), ("prosody", 40.0), ("ejabberd", 200.0)] {
            for (k, _) in PANELS.iter().flat_map(|(_, s)| s.iter()) {
                r.add(k, s, Some(v));
                r.add(k, s, Some(v * 1.1));
            }
        }
        let path =
            std::env::temp_dir().join(format!("xmppd-bench-chart-{}.svg", std::process::id()));
        let servers: Vec<String> = ["xmppd", "prosody", "ejabberd"].map(String::from).to_vec();
        write_chart(&path, &r, &servers, 100).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for s in [
            "\nTLS\n",
            "\nplain\n",
            "ejabberd",
            "memory per idle session",
            "bytes written per archived message, 100/s",
        ] {
            assert!(svg.contains(s), "missing {s}");
        }
    }
}
