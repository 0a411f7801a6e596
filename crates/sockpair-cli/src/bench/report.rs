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

/// How the numbers were taken, printed with them.
#[derive(Debug)]
pub struct Conditions {
    /// The CPU parent and child were pinned to, if they were.
    pub pinned: Option<usize>,
    /// The `--duration` asked for, in seconds.
    pub duration: f64,
    /// How long the measurement really took, in seconds.
    pub took: f64,
}

impl Conditions {
    fn describe(&self) -> String {
        let pinning = match self.pinned {
            Some(cpu) => format!("parent and child pinned to CPU {cpu}"),
            None => "UNPINNED (--no-pin): small round trips vary with where the scheduler puts the two processes".to_string(),
        };
        format!(
            "{pinning}; {:.1} s of measurement (--duration {} asked for about {} s)",
            self.took, self.duration, self.duration
        )
    }
}

/// What the two ratio columns mean.
const LEGEND: &str = "ratios against libc, same size, same run: rtt \"vs libc\" below 1.000x is faster (lower is better); throughput \"vs libc\" above 1.000x is faster (higher is better). Bursts are batched (feed each message, flush once) for channel, async-channel and tokio-framed, one message per call for the others (channel-unbatched: send per message); libc is headerless and descriptor-blind (a floor), libc-framed writes and reads the channel's frames by hand with room for descriptors (the limit); shared (from 1 MiB) hands over a sealed memfd, its bytes neither copied nor read";

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
pub fn table(ty: Type, rows: &[Row], conditions: &Conditions) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:<13} {:>11} {:>11} {:>8}  {:>12} {:>8}",
        "type", "size", "impl", "rtt p50", "rtt p99", "vs libc", "throughput", "vs libc"
    );
    for row in rows {
        let base = baseline(rows, row.size);
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:<13} {:>11} {:>11} {:>7.3}x  {:>12} {:>7.3}x",
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
    let _ = writeln!(out, "# {}", conditions.describe());
    let _ = writeln!(out, "# {LEGEND}");
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
                "burst_batched": row.imp.batched(),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// A chart's title and the value it plots for a row.
type Panel = (&'static str, fn(&Row) -> f64);

/// One style per implementation, in [`Impl::ALL`]'s order: colour, dash pattern and
/// marker differ, so that lines that overlap (libc and socket often do) stay apart.
const STYLES: [(&str, &str, Marker); 9] = [
    ("#444444", "", Marker::Circle),
    ("#8c564b", "4,2", Marker::Circle),
    ("#1f77b4", "6,3", Marker::Square),
    ("#d62728", "2,2", Marker::Triangle),
    ("#e377c2", "5,2,1,2", Marker::Triangle),
    ("#9467bd", "8,3,2,3", Marker::Diamond),
    ("#ff7f0e", "1,3", Marker::Cross),
    ("#2ca02c", "10,4", Marker::Plus),
    ("#17becf", "3,1", Marker::Square),
];

#[derive(Clone, Copy, Debug)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Plus,
}

/// The SVG of `marker` centred on `(x, y)`, in `color`.
fn marker(marker: Marker, x: f64, y: f64, color: &str) -> String {
    let r = 4.0;
    match marker {
        Marker::Circle => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{color}"/>"#),
        Marker::Square => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{}" height="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        Marker::Triangle => format!(
            r#"<polygon points="{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"/>"#,
            y - r,
            x - r,
            y + r,
            x + r,
            y + r
        ),
        Marker::Diamond => format!(
            r#"<polygon points="{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            y - r,
            x + r,
            y + r,
            x - r
        ),
        Marker::Cross => format!(
            r#"<path d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" stroke="{color}" stroke-width="2"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
        Marker::Plus => format!(
            r#"<path d="M{:.1},{y:.1}L{:.1},{y:.1}M{x:.1},{:.1}L{x:.1},{:.1}" stroke="{color}" stroke-width="2"/>"#,
            x - r,
            x + r,
            y - r,
            y + r
        ),
    }
}

/// Two panels, both with logarithmic axes: median round trip (µs) and throughput
/// (MB/s) against message size, a legend, and how the numbers were taken.
pub fn svg(ty: Type, rows: &[Row], conditions: &Conditions) -> String {
    let mut sizes: Vec<usize> = rows.iter().map(|row| row.size).collect();
    sizes.dedup();
    let (width, height, margin) = (420.0, 300.0, 60.0);
    // Room around everything: 20 px at the sides, the legend and notes below.
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * width + 60.0,
        height + 120.0
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
            r#"<text x="{}" y="{}" text-anchor="middle">message size (bytes; evenly spaced, not to scale)</text>"#,
            left + width / 2.0 + 20.0,
            height + 26.0
        );
        for (imp, (color, dash, shape)) in Impl::ALL.iter().zip(STYLES) {
            let points: Vec<(f64, f64)> = sizes
                .iter()
                .enumerate()
                .filter_map(|(i, &size)| {
                    rows.iter()
                        .find(|r| r.size == size && r.imp == *imp)
                        .map(|r| (x(i), y(value(r))))
                })
                .collect();
            if points.is_empty() {
                continue; // not measured on this type
            }
            let line: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
                line.join(" ")
            );
            for (px, py) in points {
                out.push_str(&marker(shape, px, py, color));
            }
        }
    }
    let measured: Vec<(usize, Impl)> = Impl::ALL
        .iter()
        .enumerate()
        .filter(|(_, imp)| rows.iter().any(|row| row.imp == **imp))
        .map(|(k, imp)| (k, *imp))
        .collect();
    for (slot, (k, imp)) in measured.into_iter().enumerate() {
        let (color, dash, shape) = STYLES[k];
        let lx = 80.0 + slot as f64 * 130.0;
        let ly = height + 50.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>{1}<text x="{2}" y="{3}">{4}</text>"#,
            lx + 30.0,
            marker(shape, lx + 15.0, ly, color),
            lx + 35.0,
            ly + 4.0,
            imp.name()
        );
    }
    let _ = write!(
        out,
        r##"<text x="20" y="{}" fill="#555555">{}</text><text x="20" y="{}" fill="#555555">round trip: lower is better; throughput: higher is better; batched bursts (feed + one flush): channel, async-channel, tokio-framed</text>"##,
        height + 80.0,
        conditions.describe(),
        height + 98.0
    );
    out.push_str("</svg>\n");
    out
}
