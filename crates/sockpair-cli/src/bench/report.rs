//! What `sockpair bench` prints: a table, JSON, an SVG chart.

use std::fmt::Write;

use sockpair::Type;

use super::Row;
use super::transport::Impl;

/// The name of a type as the command line spells it.
pub fn type_name(ty: Type) -> &'static str {
    match ty {
        Type::SEQPACKET => "seqpacket",
        Type::DGRAM => "dgram",
        _ => "stream",
    }
}

/// The libc row of the same size: the baseline of every ratio.
fn baseline(rows: &[Row], size: usize) -> &Row {
    rows.iter()
        .find(|row| row.size == size && row.imp == Impl::Libc)
        .expect("every size has a libc row")
}

fn micros(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

fn rate(bytes_per_s: f64) -> String {
    match bytes_per_s {
        b if b >= 1e9 => format!("{:.2} GB/s", b / 1e9),
        b if b >= 1e6 => format!("{:.2} MB/s", b / 1e6),
        b => format!("{:.2} kB/s", b / 1e3),
    }
}

/// A readable table with ratios against libc (below 1 is faster for round trips, above
/// 1 is faster for throughput).
pub fn table(ty: Type, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:<8} {:>11} {:>11} {:>8}  {:>12} {:>8}",
        "type", "size", "impl", "rtt p50", "rtt p99", "vs libc", "throughput", "vs libc"
    );
    for row in rows {
        let base = baseline(rows, row.size);
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:<8} {:>11} {:>11} {:>7.3}x  {:>12} {:>7.3}x",
            type_name(ty),
            row.size,
            row.imp.name(),
            micros(row.rtt_ns_p50),
            micros(row.rtt_ns_p99),
            row.rtt_ns_p50 as f64 / base.rtt_ns_p50 as f64,
            rate(row.throughput),
            row.throughput / base.throughput,
        );
    }
    out
}

/// One JSON array, one object per row.
pub fn json(ty: Type, rows: &[Row]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "impl": row.imp.name(),
                "type": type_name(ty),
                "size": row.size,
                "rtt_ns_p50": row.rtt_ns_p50,
                "rtt_ns_p99": row.rtt_ns_p99,
                "throughput_bytes_per_s": row.throughput.round() as u64,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// A chart's title and the value it plots for a row.
type Panel = (&'static str, fn(&Row) -> f64);

const COLORS: [&str; 4] = ["#444444", "#1f77b4", "#d62728", "#2ca02c"];

/// Two panels, both with logarithmic axes: median round trip (µs) and throughput
/// (MB/s) against message size.
pub fn svg(ty: Type, rows: &[Row]) -> String {
    let mut sizes: Vec<usize> = rows.iter().map(|row| row.size).collect();
    sizes.dedup();
    let (width, height, margin) = (420.0, 300.0, 60.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * width + 40.0,
        height + 70.0
    );
    let _ = write!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let panels: [Panel; 2] = [
        ("round trip p50 (µs)", |row| row.rtt_ns_p50 as f64 / 1000.0),
        ("throughput (MB/s)", |row| row.throughput / 1e6),
    ];
    for (p, (title, value)) in panels.iter().enumerate() {
        let left = 20.0 + p as f64 * (width + 20.0);
        let positive = || rows.iter().map(value).filter(|v| *v > 0.0);
        // Whole decades around the data.
        let low = positive().fold(f64::INFINITY, f64::min).log10().floor();
        let high = positive()
            .fold(f64::MIN_POSITIVE, f64::max)
            .log10()
            .ceil()
            .max(low + 1.0);
        let x = |i: usize| {
            left + margin + i as f64 * (width - margin - 40.0) / (sizes.len().max(2) - 1) as f64
        };
        let y = |v: f64| {
            30.0 + (height - 40.0) * (1.0 - (v.max(f64::MIN_POSITIVE).log10() - low) / (high - low))
        };
        let _ = write!(
            out,
            r#"<text x="{}" y="20" font-weight="bold">{title}, {}</text>"#,
            left + margin,
            type_name(ty)
        );
        let _ = write!(
            out,
            r#"<line x1="{0}" y1="30" x2="{0}" y2="{1}" stroke="black"/><line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="black"/>"#,
            left + margin,
            height - 10.0,
            left + width
        );
        for decade in low as i32..=high as i32 {
            let v = 10f64.powi(decade);
            let label = if decade < 0 {
                format!("{v}")
            } else {
                format!("{v:.0}")
            };
            let _ = write!(
                out,
                r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#dddddd"/><text x="{3}" y="{4}" text-anchor="end">{label}</text>"##,
                left + margin,
                y(v),
                left + width,
                left + margin - 5.0,
                y(v) + 4.0,
            );
        }
        for (i, size) in sizes.iter().enumerate() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{size}</text>"#,
                x(i),
                height + 8.0
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">message size (bytes)</text>"#,
            left + width / 2.0 + 20.0,
            height + 26.0
        );
        for (imp, color) in Impl::ALL.iter().zip(COLORS) {
            let points: Vec<String> = sizes
                .iter()
                .enumerate()
                .filter_map(|(i, &size)| {
                    rows.iter()
                        .find(|r| r.size == size && r.imp == *imp)
                        .map(|r| format!("{:.1},{:.1}", x(i), y(value(r))))
                })
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    for (k, (imp, color)) in Impl::ALL.iter().zip(COLORS).enumerate() {
        let lx = 80.0 + k as f64 * 120.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" y1="{0}" x2="{1}" y2="{0}" stroke="{color}" stroke-width="3"/><text x="{2}" y="{3}">{4}</text>"#,
            height + 50.0,
            lx + 25.0,
            lx + 30.0,
            height + 54.0,
            imp.name()
        );
    }
    out.push_str("</svg>\n");
    out
}
