//! A self-contained HTML timeline of one scenario: nodes as lanes coloured by role (with the
//! epoch written where it changes), a lane per client host with every operation, fault windows shaded
//! across the lanes they touch, then the steps and the verdicts. Inline SVG and CSS only.

use super::escape;
use crate::executor::ScenarioResult;
use crate::history::{Outcome, Sample};
use idserver::core::Role;
use std::fmt::Write;

const WIDTH_PX: f64 = 1400.0;
const LABEL_PX: f64 = 70.0;
const LANE_PX: f64 = 34.0;
const OPS_SHOWN_MAX: usize = 20_000;

fn role_colour(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Coordinator) => "#d9534f",
        Some(Role::Follower) => "#5b8def",
        Some(Role::Candidate) => "#f0ad4e",
        Some(Role::Joining) => "#b0b7c3",
        None => "#e6e6e6",
    }
}

/// The scenario's timeline page.
pub fn timeline(r: &ScenarioResult) -> String {
    let frame = Frame::of(r);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH_PX}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">",
        frame.height()
    );
    // Fault windows first, under everything.
    fault_windows(&mut svg, r, &frame);
    node_lanes(&mut svg, r, &frame);
    client_lanes(&mut svg, r, &frame);
    time_axis(&mut svg, &frame);
    svg.push_str("</svg>");
    page(
        r,
        &svg,
        &steps_table(r),
        &assertions_table(r),
        &figures_table(r),
    )
}

/// Where things go: the run's time span across, node lanes then client-host lanes down.
struct Frame {
    start: u64,
    end: u64,
    span: f64,
    /// Top of the first client-host lane.
    client_y: f64,
    /// Height of the client-host lanes.
    clients_px: f64,
    /// Client hosts that ran operations.
    hosts: u32,
}

impl Frame {
    fn of(r: &ScenarioResult) -> Frame {
        let start = r.start_ms;
        let end = (r.start_ms + r.duration_ms.max(1)).max(
            r.samples
                .iter()
                .map(|s| s.at_ms)
                .chain(r.history.iter().map(|o| o.complete_ms))
                .max()
                .unwrap_or(start + 1),
        );
        // One lane per client host that ran operations.
        let hosts = r.history.iter().map(|o| o.host + 1).max().unwrap_or(1);
        Frame {
            start,
            end,
            span: (end - start).max(1) as f64,
            client_y: 30.0 + r.nodes.len() as f64 * LANE_PX,
            clients_px: hosts as f64 * LANE_PX,
            hosts,
        }
    }

    /// The x coordinate of time `t`.
    fn x(&self, t: u64) -> f64 {
        LABEL_PX + (t.saturating_sub(self.start) as f64 / self.span) * (WIDTH_PX - LABEL_PX - 10.0)
    }

    fn height(&self) -> f64 {
        self.client_y + self.clients_px + 30.0
    }
}

/// Each fault as a shaded window over the lane of the node it concerns (or all lanes).
fn fault_windows(svg: &mut String, r: &ScenarioResult, frame: &Frame) {
    let (end, client_y, clients_px) = (frame.end, frame.client_y, frame.clients_px);
    for f in &r.faults {
        let (x0, x1) = (
            frame.x(f.start_ms),
            frame
                .x(f.end_ms.unwrap_or(end))
                .max(frame.x(f.start_ms) + 2.0),
        );
        let (y0, h) = if f.nodes.is_empty() {
            (20.0, client_y + clients_px - 20.0)
        } else {
            let lane = f.nodes[0] as f64;
            (30.0 + lane * LANE_PX - 3.0, LANE_PX)
        };
        let _ = write!(
            *svg,
            "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#000\" fill-opacity=\"0.12\"><title>{}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">{}</text>",
            x1 - x0,
            escape(&f.label),
            x0 + 2.0,
            y0 + 9.0,
            escape(&f.label)
        );
    }
}

/// Per node, its role and epoch over time, one segment per stretch of the same state.
fn node_lanes(svg: &mut String, r: &ScenarioResult, frame: &Frame) {
    let start = frame.start;
    for (lane, name) in r.nodes.iter().enumerate() {
        let y = 30.0 + lane as f64 * LANE_PX;
        let _ = write!(
            *svg,
            "<text x=\"4\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            y + 17.0,
            escape(name)
        );
        let samples: Vec<&Sample> = r.samples.iter().filter(|s| s.node == lane).collect();
        let mut i = 0;
        while i < samples.len() {
            let key = |s: &Sample| s.status.as_ref().map(|v| (v.role, v.epoch));
            let first = samples[i];
            let mut j = i;
            while j + 1 < samples.len() && key(samples[j + 1]) == key(first) {
                j += 1;
            }
            let seg_end = samples.get(j + 1).map_or(samples[j].at_ms, |s| s.at_ms);
            let role = first.status.as_ref().map(|v| v.role);
            let (x0, x1) = (frame.x(first.at_ms), frame.x(seg_end));
            let title = match &first.status {
                Some(v) => format!(
                    "{name}: {} epoch {} rank {} clock {} (+{} ms)",
                    v.role,
                    v.epoch,
                    v.rank.map_or("-".into(), |r| r.to_string()),
                    v.clock,
                    first.at_ms - start
                ),
                None => format!("{name}: not answering (+{} ms)", first.at_ms - start),
            };
            let _ = write!(
                *svg,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                y + 6.0,
                (x1 - x0).max(1.0),
                LANE_PX - 12.0,
                role_colour(role),
                escape(&title)
            );
            if let Some(v) = &first.status {
                if x1 - x0 > 18.0 {
                    let _ = write!(
                        *svg,
                        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\">e{}</text>",
                        x0 + 2.0,
                        y + 21.0,
                        v.epoch
                    );
                }
            }
            i = j + 1;
        }
    }
}

/// Per client host, its operations as bars (writes tall, reads short), coloured by outcome;
/// acknowledged writes missing from the final history stand apart.
fn client_lanes(svg: &mut String, r: &ScenarioResult, frame: &Frame) {
    let (start, client_y, hosts) = (frame.start, frame.client_y, frame.hosts);
    for host in 0..hosts {
        let _ = write!(
            *svg,
            "<text x=\"4\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            client_y + host as f64 * LANE_PX + 17.0,
            crate::cluster::client_host_name(host)
        );
    }
    // Acknowledged writes missing from the final history are drawn apart: the window shows.
    let kept: std::collections::BTreeSet<uuid::Uuid> = r
        .final_logs
        .values()
        .max_by_key(|log| log.len())
        .map(|log| log.iter().map(|e| e.event.request_id).collect())
        .unwrap_or_default();
    for op in r.history.iter().take(OPS_SHOWN_MAX) {
        let lost = op.outcome == Outcome::Ok
            && !r.final_logs.is_empty()
            && op.request_id.is_some_and(|id| !kept.contains(&id));
        let colour = match op.outcome {
            _ if lost => "#8e44ad",
            Outcome::Ok => "#3c9a4a",
            Outcome::Fail => "#e0a030",
            Outcome::Timeout => "#c0392b",
        };
        let (x0, x1) = (frame.x(op.invoke_ms), frame.x(op.complete_ms));
        let tall = if op.kind.is_write() { 0.0 } else { 10.0 };
        let lane_y = client_y + op.host as f64 * LANE_PX;
        let _ = write!(
            *svg,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.7\"><title>{}</title></rect>",
            lane_y + 4.0 + tall,
            (x1 - x0).max(1.0),
            LANE_PX - 8.0 - tall,
            escape(&format!(
                "session {} {:?} {} {:?}{}{} +{}..+{} ms via {}",
                op.session,
                op.kind,
                op.login,
                op.outcome,
                op.error.as_deref().map(|e| format!(" {e}")).unwrap_or_default(),
                if lost { ", then lost" } else { "" },
                op.invoke_ms - start,
                op.complete_ms - start,
                op.server.as_deref().unwrap_or("-")
            ))
        );
    }
}

/// The seconds axis, with a grid line per step.
fn time_axis(svg: &mut String, frame: &Frame) {
    let (start, span) = (frame.start, frame.span);
    let axis_y = frame.client_y + frame.clients_px + 14.0;
    let step_ms = [100u64, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000]
        .into_iter()
        .find(|s| span / (*s as f64) <= 16.0)
        .unwrap_or(120_000);
    let mut t = 0;
    while t as f64 <= span {
        let xt = frame.x(start + t);
        let _ = write!(
            *svg,
            "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"24\" y2=\"{:.1}\" stroke=\"#ccc\" stroke-width=\"0.5\"/><text x=\"{:.1}\" y=\"{axis_y:.1}\" fill=\"#666\">{:.1} s</text>",
            axis_y - 10.0,
            xt - 8.0,
            t as f64 / 1000.0
        );
        t += step_ms;
    }
}

/// The steps as table rows.
fn steps_table(r: &ScenarioResult) -> String {
    let start = r.start_ms;
    let mut steps = String::new();
    for s in &r.steps {
        let _ = write!(
            steps,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>+{} ms</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
            if s.ok { "ok" } else { "bad" },
            s.number,
            s.line,
            s.start_ms.saturating_sub(start),
            s.duration_ms,
            escape(&s.summary),
            escape(&s.note)
        );
    }
    steps
}

/// The assertions as table rows.
fn assertions_table(r: &ScenarioResult) -> String {
    let mut checks = String::new();
    for a in &r.assertions {
        let details: Vec<String> = a
            .finding
            .details
            .iter()
            .take(50)
            .map(|d| escape(d))
            .collect();
        let _ = write!(
            checks,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:?}</td><td>{:?}</td><td>{}</td></tr>",
            if a.passed { "ok" } else { "bad" },
            escape(&a.name),
            a.line,
            a.expect,
            a.finding.verdict,
            details.join("<br>")
        );
    }
    checks
}

/// The figures as table rows.
fn figures_table(r: &ScenarioResult) -> String {
    let mut figures = String::new();
    for (name, values) in &r.figures {
        let shown: Vec<String> = values.iter().take(40).map(|v| v.to_string()).collect();
        let _ = write!(
            figures,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(name),
            shown.join(", ")
        );
    }
    figures
}

/// The whole page around the drawing and tables.
fn page(r: &ScenarioResult, svg: &str, steps: &str, checks: &str, figures: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>idlab: {name}</title><style>\
body{{font-family:sans-serif;margin:20px;color:#222}}table{{border-collapse:collapse;margin:10px 0}}\
td,th{{border:1px solid #ddd;padding:3px 8px;font-size:13px;vertical-align:top}}tr.bad td{{background:#fbe3e3}}\
tr.ok td:first-child{{border-left:4px solid #3c9a4a}}tr.bad td:first-child{{border-left:4px solid #c0392b}}\
.legend span{{display:inline-block;padding:2px 8px;margin-right:6px;color:#fff;font-size:12px}}\
</style></head><body><h1>{name}: {verdict:?}</h1><p>{description}</p>\
<p>seed {seed} · {duration:.1} s · file {file}{reason}</p>\
<div class=\"legend\"><span style=\"background:#d9534f\">coordinator</span><span style=\"background:#5b8def\">follower</span>\
<span style=\"background:#f0ad4e\">candidate</span><span style=\"background:#b0b7c3\">joining</span>\
<span style=\"background:#e6e6e6;color:#333\">not answering</span><span style=\"background:#3c9a4a\">op ok</span>\
<span style=\"background:#e0a030\">op failed</span><span style=\"background:#c0392b\">op unknown</span>\
<span style=\"background:#8e44ad\">acked, then lost</span>\
<span style=\"background:#bbb\">fault window</span> (e<i>N</i>: epoch; hover for details)</div>\
{svg}<h2>Assertions</h2><table><tr><th>assertion</th><th>line</th><th>expect</th><th>verdict</th><th>details</th></tr>{checks}</table>\
<h2>Figures</h2><table>{figures}</table>\
<h2>Steps</h2><table><tr><th>#</th><th>line</th><th>start</th><th>took</th><th>step</th><th>result</th></tr>{steps}</table>\
</body></html>\n",
        name = escape(&r.name),
        verdict = r.verdict,
        description = escape(&r.description),
        seed = r.seed,
        duration = r.duration_ms as f64 / 1000.0,
        file = escape(&r.file),
        reason = r
            .reason
            .as_ref()
            .map(|x| format!(" · <b>{}</b>", escape(x)))
            .unwrap_or_default(),
    )
}
