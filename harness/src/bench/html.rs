//! `bench.html`: the bench's report as one self-contained page (no script, no external file):
//! the summary tables and SVG plots of throughput against clients, latency CDFs per system and
//! failover times.

use super::{BenchReport, System, Workload};
use std::fmt::Write;

/// Plot size (SVG user units) and margins.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 45.0;

/// A colour per system (the same in every plot).
fn colour(system: System) -> &'static str {
    match system {
        System::Idserver => "#1f77b4",
        System::IdserverStrict => "#17becf",
        System::Etcd => "#d62728",
        System::EtcdTuned => "#ff7f0e",
        System::Sentinel => "#2ca02c",
    }
}

/// The page.
pub fn render(report: &BenchReport) -> String {
    let systems = systems_of(report);
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>idlab bench</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:60em}\
         table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
         th:first-child,td:first-child{text-align:left}\
         svg{display:block;margin:1em 0 2em}\
         svg text{font-family:sans-serif;font-size:12px}\
         </style></head><body>\n<h1>idlab bench</h1>\n",
    );
    let _ = writeln!(
        page,
        "<p>Run started at {} ms since the epoch, links {}; {} measurement(s), {} \
         failover(s). Each figure in the tables is the median over the rounds.</p>",
        report.start_ms,
        report.profile.as_str(),
        report.points.len(),
        report.failovers.len()
    );
    page.push_str(
        "<h2>Creates and lookups</h2>\n<table><tr><th>system</th><th>operation</th><th>clients</th>\
                   <th>per s</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th>\
                   <th>vs idserver</th><th>CPU s / 1000 writes</th></tr>\n",
    );
    for s in &report.summary {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.3}</td><td>{:.3}</td>\
             <td>{:.3}</td><td>{}</td><td>{:.3}</td></tr>",
            s.system.as_str(),
            s.workload.as_str(),
            s.clients,
            s.per_s,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            s.cpu_s_per_1000
        );
    }
    page.push_str("</table>\n");
    page.push_str(&throughput_plot(report, &systems));
    page.push_str(&cdf_plot(report, &systems));
    if !report.window_summary.is_empty() {
        let _ = writeln!(
            page,
            "<h2>Inconsistency window</h2>\n<p>A sampling writer creates keys while {} clients \
             load the system; after each acknowledgement every node's own copy is read until it \
             holds the key; a write's window ends at the midpoint of the read that found it on \
             the last node (± half a read's round trip).</p>\n<table><tr>\
             <th>system</th><th>writes</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th>\
             <th>timed out</th></tr>",
            report.windows.first().map_or(0, |w| w.load_clients)
        );
        for w in &report.window_summary {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
                 <td>{}</td></tr>",
                w.system.as_str(),
                w.samples,
                w.p50_ms,
                w.p99_ms,
                w.max_ms,
                w.timed_out
            );
        }
        page.push_str("</table>\n");
        page.push_str(&window_plot(report, &systems));
    }
    if !report.failover_summary.is_empty() {
        page.push_str(
            "<h2>Failover</h2>\n<table><tr><th>system</th><th>kills</th>\
                       <th>first ack p50 ms</th><th>first ack p99 ms</th>\
                       <th>agreed p50 ms</th><th>stuck</th><th>acked</th><th>lost</th></tr>\n",
        );
        for f in &report.failover_summary {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                f.system.as_str(),
                f.kills,
                f.first_ack_p50_ms,
                f.first_ack_p99_ms,
                f.agreed_p50_ms,
                f.stuck,
                f.acked,
                f.lost
            );
        }
        page.push_str("</table>\n");
        page.push_str(&failover_plot(report, &systems));
    }
    page.push_str("</body></html>\n");
    page
}

fn systems_of(report: &BenchReport) -> Vec<System> {
    System::ALL
        .into_iter()
        .filter(|s| {
            report.summary.iter().any(|p| p.system == *s)
                || report.failovers.iter().any(|f| f.system == *s)
        })
        .collect()
}

/// An SVG plot frame: axes, ticks and labels, a legend; `x` and `y` map data to the frame.
struct Frame {
    svg: String,
}

impl Frame {
    fn new(id: &str, title: &str, x_label: &str, y_label: &str) -> Frame {
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<h3>{title}</h3>\n<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             role=\"img\" aria-label=\"{title}\">\
             <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" \
             stroke=\"#888\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\
             <text transform=\"translate(15 {}) rotate(-90)\" text-anchor=\"middle\">{y_label}\
             </text>",
            WIDTH - LEFT - RIGHT,
            HEIGHT - TOP - BOTTOM,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            HEIGHT - 8.0,
            TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        );
        Frame { svg }
    }

    fn x_tick(&mut self, at: f64, label: &str) {
        let _ = write!(
            self.svg,
            "<line x1=\"{at:.1}\" y1=\"{}\" x2=\"{at:.1}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{at:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 5.0,
            HEIGHT - BOTTOM + 18.0
        );
    }

    fn y_tick(&mut self, at: f64, label: &str) {
        let _ = write!(
            self.svg,
            "<line x1=\"{}\" y1=\"{at:.1}\" x2=\"{LEFT}\" y2=\"{at:.1}\" stroke=\"#888\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            LEFT - 5.0,
            LEFT - 8.0,
            at + 4.0
        );
    }

    fn legend(&mut self, systems: &[System]) {
        for (i, system) in systems.iter().enumerate() {
            let y = TOP + 10.0 + 18.0 * i as f64;
            let x = WIDTH - RIGHT + 12.0;
            let _ = write!(
                self.svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                y - 10.0,
                colour(*system),
                x + 18.0,
                y,
                system.as_str()
            );
        }
    }

    fn polyline(&mut self, system: System, points: &[(f64, f64)]) {
        let coords: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            self.svg,
            "<polyline class=\"series\" data-system=\"{}\" fill=\"none\" stroke=\"{}\" \
             stroke-width=\"2\" points=\"{}\"/>",
            system.as_str(),
            colour(system),
            coords.join(" ")
        );
    }

    fn dot(&mut self, system: System, x: f64, y: f64) {
        let _ = write!(
            self.svg,
            "<circle class=\"series\" data-system=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" \
             fill=\"{}\" fill-opacity=\"0.7\"/>",
            system.as_str(),
            colour(system)
        );
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// The plot's inner width and height.
fn inner() -> (f64, f64) {
    (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
}

/// Round numbers for an axis from 0 to `max`: (the axis's top, its ticks).
fn ticks(max: f64) -> (f64, Vec<f64>) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let top = (max / step).ceil() * step;
    let count = (top / step).round() as usize;
    (top, (0..=count).map(|i| i as f64 * step).collect())
}

fn number(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Acknowledged creates/s against clients (one line per system; clients evenly spaced).
fn throughput_plot(report: &BenchReport, systems: &[System]) -> String {
    let creates: Vec<&super::Summary> = report
        .summary
        .iter()
        .filter(|s| s.workload == Workload::Create)
        .collect();
    let mut clients: Vec<u32> = creates.iter().map(|s| s.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let (w, h) = inner();
    let (top, y_ticks) = ticks(creates.iter().map(|s| s.per_s).fold(0.0, f64::max));
    let mut frame = Frame::new(
        "throughput",
        "Acknowledged creates against clients",
        "concurrent clients",
        "acknowledged creates/s",
    );
    let x = |i: usize| LEFT + w * (i as f64 + 0.5) / clients.len().max(1) as f64;
    let y = |v: f64| TOP + h - h * v / top;
    for (i, c) in clients.iter().enumerate() {
        frame.x_tick(x(i), &c.to_string());
    }
    for t in y_ticks {
        frame.y_tick(y(t), &number(t));
    }
    for &system in systems {
        let points: Vec<(f64, f64)> = clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let s = creates
                    .iter()
                    .find(|s| s.system == system && s.clients == *c)?;
                Some((x(i), y(s.per_s)))
            })
            .collect();
        frame.polyline(system, &points);
        for (px, py) in points {
            frame.dot(system, px, py);
        }
    }
    frame.legend(systems);
    frame.finish()
}

/// Latency CDF of acknowledged writes at the largest number of clients (log latency axis),
/// the first round's measurement of each system.
fn cdf_plot(report: &BenchReport, systems: &[System]) -> String {
    let Some(clients) = report.points.iter().map(|p| p.clients).max() else {
        return String::new();
    };
    let curves: Vec<(System, &Vec<f64>)> = systems
        .iter()
        .filter_map(|s| {
            let p = report.points.iter().find(|p| {
                p.system == *s
                    && p.workload == Workload::Create
                    && p.clients == clients
                    && !p.percentiles_ms.is_empty()
            })?;
            Some((*s, &p.percentiles_ms))
        })
        .collect();
    cdf(
        "latency-cdf",
        &format!("Latency of acknowledged writes, {clients} concurrent client(s) (CDF)"),
        "latency (ms, log scale)",
        "fraction of writes",
        &curves,
        systems,
    )
}

/// The inconsistency window's CDF per system, over every sampled write.
fn window_plot(report: &BenchReport, systems: &[System]) -> String {
    let curves: Vec<(System, &Vec<f64>)> = report
        .window_summary
        .iter()
        .filter(|w| w.samples > 0)
        .map(|w| (w.system, &w.percentiles_ms))
        .collect();
    cdf(
        "window-cdf",
        "Inconsistency window: from the acknowledgement to the last node holding the write (CDF)",
        "window (ms, log scale)",
        "fraction of writes",
        &curves,
        systems,
    )
}

/// A CDF per system from its percentiles 0..=100 (ms), on a log scale.
fn cdf(
    id: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[(System, &Vec<f64>)],
    systems: &[System],
) -> String {
    let positive = |v: f64| v.max(0.001);
    let low = curves
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .map(positive)
        .fold(f64::INFINITY, f64::min);
    let high = curves
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .fold(0.0, f64::max);
    if curves.is_empty() || !low.is_finite() {
        return String::new();
    }
    let (lo, hi) = (
        low.log10().floor(),
        positive(high).log10().ceil().max(low.log10().floor() + 1.0),
    );
    let (w, h) = inner();
    let x = |ms: f64| LEFT + w * (positive(ms).log10() - lo) / (hi - lo);
    let y = |q: f64| TOP + h - h * q;
    let mut frame = Frame::new(id, title, x_label, y_label);
    for e in (lo as i32)..=(hi as i32) {
        let ms = 10f64.powi(e);
        frame.x_tick(x(ms), &number(ms));
    }
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        frame.y_tick(y(q), &format!("{q}"));
    }
    for (system, percentiles) in curves {
        let points: Vec<(f64, f64)> = percentiles
            .iter()
            .enumerate()
            .map(|(p, ms)| (x(*ms), y(p as f64 / 100.0)))
            .collect();
        frame.polyline(*system, &points);
    }
    frame.legend(systems);
    frame.finish()
}

/// Every failover's time from the kill to the first acknowledged write, a row of dots per
/// system.
fn failover_plot(report: &BenchReport, systems: &[System]) -> String {
    let shown: Vec<System> = systems
        .iter()
        .copied()
        .filter(|s| report.failovers.iter().any(|f| f.system == *s))
        .collect();
    let (top, x_ticks) = ticks(
        report
            .failovers
            .iter()
            .filter_map(|f| f.first_ack_ms)
            .fold(0.0, f64::max),
    );
    let (w, h) = inner();
    let x = |ms: f64| LEFT + w * ms / top;
    let row = |i: usize| TOP + h * (i as f64 + 0.5) / shown.len().max(1) as f64;
    let mut frame = Frame::new(
        "failover",
        "Failover: from the leader's crash to the first acknowledged write",
        "ms after the kill",
        "system",
    );
    for t in x_ticks {
        frame.x_tick(x(t), &number(t));
    }
    for (i, system) in shown.iter().enumerate() {
        frame.y_tick(row(i), system.as_str());
        for f in report.failovers.iter().filter(|f| f.system == *system) {
            if let Some(ms) = f.first_ack_ms {
                frame.dot(*system, x(ms), row(i) + (f.kill % 5) as f64 * 3.0 - 6.0);
            }
        }
    }
    frame.legend(&shown);
    frame.finish()
}
