//! Checking a raw scenario file into a [`Scenario`]: every mistake is reported as
//! `file:line:col: message`, and a field that does not apply to a step's action is an error.

use idserver::core::Role;
use std::path::Path;
use toml::Spanned;

use super::raw::*;
use super::types::*;
use crate::error::{Error, Result};
use crate::limits::{CLIENT_HOSTS_MAX, LOAD_CLIENTS_MAX, NODES_MAX, ROGUE_COUNT, ROGUE_EPOCH};

/// Reads and checks a scenario file.
/// Why `action` cannot run with every node on one host, if it cannot.
fn needs_own_hosts(action: &Action) -> Option<&'static str> {
    match action {
        Action::Partition { .. } => Some("`partition`"),
        Action::Link { .. } => Some("`link`"),
        Action::RandomFaults(spec)
            if spec.kinds.iter().any(|k| {
                matches!(
                    k,
                    FaultKind::Partition | FaultKind::Loss | FaultKind::Latency
                )
            }) =>
        {
            Some("`random-faults` with kinds `partition`, `loss` or `latency`")
        }
        _ => None,
    }
}

pub fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Setup(format!("failed to read {}: {e}", path.display())))?;
    parse(path, &text)
}

/// Parses scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario> {
    let mut p = Parser {
        path,
        text,
        client_hosts: 1,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        p.error(at, e.message().trim_end())
    })?;
    if let Some(c) = &raw.client_hosts {
        if *c.get_ref() == 0 || *c.get_ref() > CLIENT_HOSTS_MAX {
            return Err(p.error(
                c.span().start,
                format!("client_hosts must be 1 to {CLIENT_HOSTS_MAX}"),
            ));
        }
        p.client_hosts = *c.get_ref();
    }
    p.scenario(raw)
}

struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
    client_hosts: u32,
}

impl Parser<'_> {
    fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line,
            col: before[line_start..].chars().count() + 1,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> Error {
        let at = self.location(offset);
        Error::Scenario {
            file: self.path.display().to_string(),
            line: at.line,
            col: at.col,
            message: message.into(),
        }
    }

    fn scenario(&self, raw: RawScenario) -> Result<Scenario> {
        let nodes = *raw.nodes.get_ref();
        if nodes == 0 || nodes > NODES_MAX {
            return Err(self.error(
                raw.nodes.span().start,
                format!("nodes must be 1 to {NODES_MAX}, not {nodes}"),
            ));
        }
        let mode = match &raw.mode {
            None => Mode::Whitepaper,
            Some(m) => self.choice(
                m,
                "mode",
                &[("whitepaper", Mode::Whitepaper), ("strict", Mode::Strict)],
            )?,
        };
        let discovery = match &raw.discovery {
            None => Discovery::Peers,
            Some(d) => self.choice(
                d,
                "discovery",
                &[
                    ("peers", Discovery::Peers),
                    ("multicast", Discovery::Multicast),
                ],
            )?,
        };
        let layout = match &raw.layout {
            None => Layout::Hosts,
            Some(l) => self.choice(
                l,
                "layout",
                &[("hosts", Layout::Hosts), ("one-host", Layout::OneHost)],
            )?,
        };
        let security = match &raw.security {
            None => Security::Tls,
            Some(s) => self.choice(
                s,
                "security",
                &[
                    ("tls", Security::Tls),
                    ("insecure-plaintext", Security::InsecurePlaintext),
                ],
            )?,
        };
        let build = match &raw.build {
            None => Build::Current,
            Some(b) => self.choice(
                b,
                "build",
                &[("current", Build::Current), ("previous", Build::Previous)],
            )?,
        };
        let redis = match &raw.redis {
            None => RedisMode::Process,
            Some(r) => self.choice(
                r,
                "redis",
                &[
                    ("process", RedisMode::Process),
                    ("container", RedisMode::Container),
                ],
            )?,
        };
        if layout == Layout::OneHost && discovery == Discovery::Multicast {
            let at = raw.layout.as_ref().map_or(0, |l| l.span().start);
            return Err(self.error(
                at,
                "layout `one-host` needs discovery `peers`: multicast is per interface",
            ));
        }
        let raw_link = raw.link.unwrap_or_default();
        if let Some(loss) = &raw_link.loss_pct {
            self.percent(loss)?;
        }
        let link = LinkSpec {
            latency_ms: raw_link.latency_ms.unwrap_or(0),
            jitter_ms: raw_link.jitter_ms.unwrap_or(0),
            loss_pct: raw_link.loss_pct.map_or(0.0, |l| *l.get_ref()),
            rate_mbit: raw_link.rate_mbit.unwrap_or(0),
        };
        let name = raw.name.unwrap_or_else(|| {
            self.path
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
        });
        let mut labels = Vec::new();
        let mut steps = Vec::new();
        for (index, step) in raw.step.iter().enumerate() {
            let at = self.location(step.span().start);
            let action = self.action(step.get_ref(), nodes, index, &mut labels)?;
            if layout == Layout::OneHost {
                if let Some(why) = needs_own_hosts(&action) {
                    return Err(self.error(
                        step.span().start,
                        format!(
                            "{why} needs nodes on hosts of their own (layout `hosts`): in layout \
                         `one-host` the nodes talk over loopback"
                        ),
                    ));
                }
            }
            steps.push(Step { at, action });
        }
        let checks = raw
            .check
            .iter()
            .map(|c| self.check(c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Scenario {
            name,
            description: raw.description.unwrap_or_default(),
            file: self.path.to_path_buf(),
            nodes,
            mode,
            min_acks: raw.min_acks,
            seed: raw.seed,
            long: raw.long.unwrap_or(false),
            discovery,
            layout,
            security,
            build,
            redis,
            rogue: steps
                .iter()
                .any(|s: &Step| matches!(s.action, Action::Rogue { .. })),
            timeout_s: raw.timeout_s.unwrap_or(120),
            recover: raw.recover.unwrap_or(true),
            link,
            client_hosts: self.client_hosts,
            steps,
            checks,
        })
    }

    /// The value `raw` names among `choices`, or an error listing them.
    fn choice<T: Copy>(
        &self,
        raw: &Spanned<String>,
        what: &str,
        choices: &[(&str, T)],
    ) -> Result<T> {
        choices
            .iter()
            .find(|(name, _)| *name == raw.get_ref().as_str())
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
                self.error(
                    raw.span().start,
                    format!(
                        "unknown {what} `{}`, expected {}",
                        raw.get_ref(),
                        names.join(" or ")
                    ),
                )
            })
    }

    fn percent(&self, value: &Spanned<f64>) -> Result<f64> {
        let v = *value.get_ref();
        if !(0.0..=100.0).contains(&v) {
            return Err(self.error(
                value.span().start,
                format!("a percentage must be 0 to 100, not {v}"),
            ));
        }
        Ok(v)
    }

    fn check(&self, raw: &Spanned<RawCheck>) -> Result<Check> {
        let c = raw.get_ref();
        let at = self.location(raw.span().start);
        let expect = self.expect(c.expect.as_ref())?;
        let need = |field: Option<&Spanned<u64>>, name: &str| {
            field.map(|v| *v.get_ref()).ok_or_else(|| {
                self.error(
                    c.that.span().start,
                    format!("`{}` needs `{name}`", c.that.get_ref()),
                )
            })
        };
        let kind = match c.that.get_ref().as_str() {
            "event-order" => CheckKind::EventOrder,
            "logs-identical" => CheckKind::LogsIdentical,
            "acked-applied" => {
                CheckKind::AckedApplied(c.min_nodes.as_ref().map_or(2, |v| *v.get_ref()))
            }
            "window" => CheckKind::Window(need(c.p99_ms_max.as_ref(), "p99_ms_max")?),
            "latency" => CheckKind::Latency(need(c.p99_ms_max.as_ref(), "p99_ms_max")?),
            "no-lost-writes" => CheckKind::NoLostWrites,
            "unique" => CheckKind::Unique,
            "sessions" => CheckKind::Sessions,
            "linearizable" => CheckKind::Linearizable,
            "one-writer-per-epoch" => CheckKind::OneWriterPerEpoch,
            other => {
                return Err(self.error(
                    c.that.span().start,
                    format!(
                        "unknown check `{other}`, expected one of event-order, logs-identical, \
                         acked-applied, window, latency, no-lost-writes, unique, sessions, \
                         linearizable, one-writer-per-epoch"
                    ),
                ))
            }
        };
        let misplaced = match (&kind, &c.min_nodes, &c.p99_ms_max) {
            (CheckKind::AckedApplied(_), _, Some(f)) => Some(("p99_ms_max", f.span())),
            (CheckKind::Window(_) | CheckKind::Latency(_), Some(f), _) => {
                Some(("min_nodes", f.span()))
            }
            (CheckKind::AckedApplied(_) | CheckKind::Window(_) | CheckKind::Latency(_), _, _) => {
                None
            }
            (_, Some(f), _) => Some(("min_nodes", f.span())),
            (_, _, Some(f)) => Some(("p99_ms_max", f.span())),
            _ => None,
        };
        if let Some((field, span)) = misplaced {
            return Err(self.error(
                span.start,
                format!(
                    "field `{field}` does not apply to check `{}`",
                    c.that.get_ref()
                ),
            ));
        }
        let from = match &c.from {
            None => None,
            Some(_) => Some(self.client_host(&c.from)?),
        };
        Ok(Check {
            at,
            kind,
            expect,
            from,
        })
    }

    fn expect(&self, raw: Option<&Spanned<String>>) -> Result<Expect> {
        match raw.map(|e| (e.get_ref().as_str(), e.span())) {
            None | Some(("hold", _)) => Ok(Expect::Hold),
            Some(("violated", _)) => Ok(Expect::Violated),
            Some((other, span)) => Err(self.error(
                span.start,
                format!("unknown expectation `{other}`, expected `hold` or `violated`"),
            )),
        }
    }

    fn selector(
        &self,
        raw: &str,
        offset: usize,
        nodes: u32,
        labels: &[String],
    ) -> Result<Selector> {
        let parsed = match raw {
            "coordinator" => Some(Selector::Coordinator),
            "follower" => Some(Selector::Follower),
            "client" => Some(Selector::Client(0)),
            "others" => Some(Selector::Others),
            _ => None,
        };
        if let Some(s) = parsed {
            return Ok(s);
        }
        if let Some(n) = raw
            .strip_prefix("client")
            .and_then(|n| n.parse::<u32>().ok())
        {
            if (2..=self.client_hosts).contains(&n) {
                return Ok(Selector::Client(n - 1));
            }
            return Err(self.error(
                offset,
                format!(
                    "unknown client host `{raw}`: client_hosts is {}",
                    self.client_hosts
                ),
            ));
        }
        if let Some(node) = raw.strip_prefix("redis:") {
            let at = offset;
            return match self.selector(node, at, nodes, labels)? {
                Selector::Client(_) | Selector::Others | Selector::Redis(_) => Err(self.error(
                    at,
                    format!("`{raw}`: `redis:` names a node's Redis, e.g. `redis:n1`"),
                )),
                s => Ok(Selector::Redis(Box::new(s))),
            };
        }
        if let Some(rank) = raw.strip_prefix("rank:") {
            return rank.parse().map(Selector::Rank).map_err(|_| {
                self.error(
                    offset,
                    format!("`{raw}`: a rank is a number, as in `rank:2`"),
                )
            });
        }
        if let Some(label) = raw.strip_prefix('@') {
            if labels.iter().any(|l| l == label) {
                return Ok(Selector::Label(label.to_string()));
            }
            return Err(self.error(offset, format!("no earlier step has `label = \"{label}\"`")));
        }
        if let Some(n) = raw.strip_prefix('n').and_then(|n| n.parse::<u32>().ok()) {
            if (1..=nodes).contains(&n) {
                return Ok(Selector::Node(n));
            }
        }
        Err(self.error(
            offset,
            format!(
                "unknown node `{raw}`: expected n1..n{nodes}, coordinator, follower, rank:N or @label"
            ),
        ))
    }

    fn node_selector(
        &self,
        raw: &Spanned<String>,
        nodes: u32,
        labels: &[String],
    ) -> Result<Selector> {
        self.node_selector_at(raw.get_ref(), raw.span().start, nodes, labels)
    }

    fn action(
        &self,
        s: &RawStep,
        nodes: u32,
        index: usize,
        labels: &mut Vec<String>,
    ) -> Result<Action> {
        let name = s.action.get_ref().as_str();
        let at = s.action.span().start;
        let (allowed, action): (&[&str], _) = match name {
            "start" => (&["nodes", "stagger_ms"], self.start(s, nodes, labels)?),
            "kill" | "pause" | "resume" | "stop" | "restart" | "upgrade" | "kill-redis"
            | "pause-redis" | "resume-redis" => {
                let change = match name {
                    "kill" => NodeChange::Kill,
                    "pause" => NodeChange::Pause,
                    "resume" => NodeChange::Resume,
                    "stop" => NodeChange::Stop,
                    "restart" => NodeChange::Restart,
                    "upgrade" => NodeChange::Upgrade,
                    "pause-redis" => NodeChange::PauseRedis,
                    "resume-redis" => NodeChange::ResumeRedis,
                    _ => NodeChange::KillRedis,
                };
                let node = self.required(&s.node, "node", name, at)?;
                let node = self.node_selector(node, nodes, labels)?;
                let label = s.label.as_ref().map(|l| l.get_ref().clone());
                (
                    &["node", "label"][..],
                    Action::Node {
                        change,
                        node,
                        label,
                    },
                )
            }
            "partition" => (
                &["isolate", "sides", "from", "to", "mode", "label"][..],
                self.partition(s, nodes, labels)?,
            ),
            "heal" => (&[][..], Action::Heal),
            "step-down" => (
                &["label"][..],
                Action::StepDown {
                    label: s.label.as_ref().map(|l| l.get_ref().clone()),
                },
            ),
            "link" => (
                &[
                    "nodes",
                    "latency_ms",
                    "jitter_ms",
                    "loss_pct",
                    "rate_mbit",
                    "down",
                    "direction",
                    "clear",
                ][..],
                self.link(s, nodes, labels)?,
            ),
            "op" => (
                &[
                    "op",
                    "login",
                    "new_login",
                    "password",
                    "via",
                    "from",
                    "expect",
                    "served_by",
                    "measure",
                ][..],
                self.op(s, nodes, labels)?,
            ),
            "load" => (
                &[
                    "clients",
                    "duration_ms",
                    "mix",
                    "keys",
                    "spread",
                    "background",
                    "think_ms",
                    "from",
                    "nodes",
                ][..],
                self.load(s, nodes, labels)?,
            ),
            "await-load" => (&[][..], Action::AwaitLoad),
            "label" => {
                let node = self.required(&s.node, "node", name, at)?;
                let label = self.required(&s.label, "label", name, at)?;
                (
                    &["node", "label"][..],
                    Action::Label {
                        node: self.node_selector(node, nodes, labels)?,
                        label: label.get_ref().clone(),
                    },
                )
            }
            "wait" => (
                &["ms"][..],
                Action::Wait {
                    ms: *self.required(&s.ms, "ms", name, at)?.get_ref(),
                },
            ),
            "await" => {
                let condition = self.condition(s, nodes, labels, at)?;
                (
                    &[
                        "that",
                        "node",
                        "rank",
                        "ranks",
                        "role",
                        "count",
                        "epoch",
                        "what",
                        "timeout_ms",
                        "measure",
                    ][..],
                    Action::Await {
                        condition,
                        timeout_ms: s.timeout_ms.as_ref().map_or(10_000, |t| *t.get_ref()),
                        measure: s.measure.as_ref().map(|m| m.get_ref().clone()),
                    },
                )
            }
            "assert" => {
                let condition = self.condition(s, nodes, labels, at)?;
                (
                    &[
                        "that",
                        "node",
                        "rank",
                        "ranks",
                        "role",
                        "count",
                        "epoch",
                        "what",
                        "within_ms",
                        "expect",
                    ][..],
                    Action::Assert {
                        condition,
                        within_ms: s.within_ms.as_ref().map_or(0, |t| *t.get_ref()),
                        expect: self.expect(s.expect.as_ref())?,
                    },
                )
            }
            "random-faults" => (
                &["kinds", "rate_per_s", "duration_ms", "fault_ms"][..],
                self.random(s, at)?,
            ),
            "rogue" => {
                let attack = self.required(&s.attack, "attack", name, at)?;
                let attack = self.choice(attack, "attack", &crate::rogue::Attack::ALL)?;
                let mut list = self.node_list(&s.nodes, nodes, labels)?;
                if list.is_empty() {
                    list = (1..=nodes).map(Selector::Node).collect();
                }
                (
                    &["attack", "nodes", "count", "epoch"][..],
                    Action::Rogue {
                        attack,
                        nodes: list,
                        count: s.count.as_ref().map_or(ROGUE_COUNT, |c| *c.get_ref()),
                        epoch: s.epoch.as_ref().map_or(ROGUE_EPOCH, |e| *e.get_ref()),
                    },
                )
            }
            "repeat" => {
                let first = *self
                    .required(&s.first_step, "first_step", name, at)?
                    .get_ref();
                if first == 0 || first as usize > index {
                    return Err(self.error(
                        s.first_step.as_ref().map_or(at, |f| f.span().start),
                        format!("first_step must be 1 to {index} (an earlier step)"),
                    ));
                }
                let times = *self.required(&s.times, "times", name, at)?.get_ref();
                (
                    &["first_step", "times"][..],
                    Action::Repeat {
                        first: first as usize - 1,
                        times,
                    },
                )
            }
            other => {
                return Err(self.error(
                    at,
                    format!(
                        "unknown step `{other}`, expected one of start, kill, pause, resume, \
                         stop, restart, upgrade, kill-redis, pause-redis, resume-redis, \
                         partition, heal, link, step-down, op, load, await-load, wait, await, \
                         assert, random-faults, repeat, rogue"
                    ),
                ))
            }
        };
        for (field, span) in s.present() {
            if !allowed.contains(&field) {
                return Err(self.error(
                    span.start,
                    format!(
                        "field `{field}` does not apply to `{name}` (it takes: {})",
                        if allowed.is_empty() {
                            "nothing".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
        if let Some(label) = &s.label {
            labels.push(label.get_ref().clone());
        }
        Ok(action)
    }

    fn required<'s, T>(
        &self,
        field: &'s Option<Spanned<T>>,
        name: &str,
        action: &str,
        at: usize,
    ) -> Result<&'s Spanned<T>> {
        field
            .as_ref()
            .ok_or_else(|| self.error(at, format!("`{action}` needs `{name}`")))
    }

    fn node_list(
        &self,
        raw: &Option<Spanned<Vec<String>>>,
        nodes: u32,
        labels: &[String],
    ) -> Result<Vec<Selector>> {
        match raw {
            None => Ok(Vec::new()),
            Some(list) => list
                .get_ref()
                .iter()
                .map(|n| self.node_selector_at(n, list.span().start, nodes, labels))
                .collect(),
        }
    }

    fn node_selector_at(
        &self,
        raw: &str,
        offset: usize,
        nodes: u32,
        labels: &[String],
    ) -> Result<Selector> {
        let s = self.selector(raw, offset, nodes, labels)?;
        match s {
            Selector::Client(_) => Err(self.error(
                offset,
                "a client host is only allowed in partitions and `from`",
            )),
            Selector::Redis(_) => Err(self.error(
                offset,
                "a node's Redis is only allowed in `sides`, `from` and `to` of partitions",
            )),
            Selector::Others => Err(self.error(offset, "`others` is only allowed in `sides`")),
            s => Ok(s),
        }
    }

    fn start(&self, s: &RawStep, nodes: u32, labels: &[String]) -> Result<Action> {
        let mut list = self.node_list(&s.nodes, nodes, labels)?;
        if list.is_empty() {
            list = (1..=nodes).map(Selector::Node).collect();
        }
        Ok(Action::Start {
            nodes: list,
            stagger_ms: s.stagger_ms.as_ref().map_or(0, |v| *v.get_ref()),
        })
    }

    fn partition(&self, s: &RawStep, nodes: u32, labels: &[String]) -> Result<Action> {
        let at = s.action.span().start;
        let reject = match s.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("drop", _)) => false,
            Some(("reject", _)) => true,
            Some((other, span)) => {
                return Err(self.error(
                    span.start,
                    format!("unknown partition mode `{other}`, expected `drop` or `reject`"),
                ))
            }
        };
        let sel = |v: &Spanned<String>| {
            let s = self.selector(v.get_ref(), v.span().start, nodes, labels)?;
            if s == Selector::Others {
                return Err(self.error(v.span().start, "`others` is only allowed in `sides`"));
            }
            Ok(s)
        };
        let shape = match (&s.isolate, &s.sides, &s.from, &s.to) {
            (Some(node), None, None, None) => {
                PartitionShape::Isolate(self.node_selector(node, nodes, labels)?)
            }
            (None, Some(sides), None, None) => {
                let groups = sides
                    .get_ref()
                    .iter()
                    .map(|side| {
                        side.iter()
                            .map(|n| self.selector(n, sides.span().start, nodes, labels))
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?;
                if groups.len() < 2 {
                    return Err(self.error(sides.span().start, "`sides` needs at least two groups"));
                }
                PartitionShape::Sides(groups)
            }
            (None, None, Some(from), Some(to)) => PartitionShape::OneWay {
                from: sel(from)?,
                to: sel(to)?,
            },
            _ => {
                return Err(self.error(
                    at,
                    "`partition` needs exactly one of: `isolate`, `sides`, or `from` with `to`",
                ))
            }
        };
        let label = s.label.as_ref().map(|l| l.get_ref().clone());
        if label.is_some() && !matches!(shape, PartitionShape::Isolate(_)) {
            let span = s.label.as_ref().map_or(at, |l| l.span().start);
            return Err(self.error(span, "`label` applies to `isolate` partitions only"));
        }
        Ok(Action::Partition {
            shape,
            reject,
            label,
        })
    }

    fn link(&self, s: &RawStep, nodes: u32, labels: &[String]) -> Result<Action> {
        let direction = match s
            .direction
            .as_ref()
            .map(|d| (d.get_ref().as_str(), d.span()))
        {
            None | Some(("both", _)) => netns::Direction::Both,
            Some(("to-host", _)) => netns::Direction::ToHost,
            Some(("from-host", _)) => netns::Direction::FromHost,
            Some((other, span)) => {
                return Err(self.error(
                    span.start,
                    format!("unknown direction `{other}`, expected both, to-host or from-host"),
                ))
            }
        };
        let clear = s.clear.as_ref().is_some_and(|c| *c.get_ref());
        if let Some(loss) = &s.loss_pct {
            self.percent(loss)?;
        }
        let spec = (!clear).then(|| LinkSpec {
            latency_ms: s.latency_ms.as_ref().map_or(0, |v| *v.get_ref()),
            jitter_ms: s.jitter_ms.as_ref().map_or(0, |v| *v.get_ref()),
            loss_pct: s.loss_pct.as_ref().map_or(0.0, |v| *v.get_ref()),
            rate_mbit: s.rate_mbit.as_ref().map_or(0, |v| *v.get_ref()),
        });
        Ok(Action::Link {
            nodes: self.node_list(&s.nodes, nodes, labels)?,
            spec,
            down: s.down.as_ref().is_some_and(|d| *d.get_ref()),
            direction,
        })
    }

    fn op(&self, s: &RawStep, nodes: u32, labels: &[String]) -> Result<Action> {
        let at = s.action.span().start;
        let raw_kind = self.required(&s.op, "op", "op", at)?;
        let kind = match raw_kind.get_ref().as_str() {
            "create" => OpKind::Create,
            "lookup" => OpKind::Lookup,
            "modify" => OpKind::Modify,
            "delete" => OpKind::Delete,
            other => {
                return Err(self.error(
                    raw_kind.span().start,
                    format!("unknown op `{other}`, expected create, lookup, modify or delete"),
                ))
            }
        };
        let login = self
            .required(&s.login, "login", "op", at)?
            .get_ref()
            .clone();
        if kind == OpKind::Modify && s.new_login.is_none() {
            return Err(self.error(at, "`op = \"modify\"` needs `new_login`"));
        }
        let expect = match s.expect.as_ref().map(|e| e.get_ref().as_str()) {
            None | Some("ok") => OpExpect::Ok,
            Some("any") => OpExpect::Any,
            Some(code) => {
                let known = idserver::ErrorCode::ALL.iter().any(|c| c.as_str() == code);
                if !known {
                    let span = s.expect.as_ref().map_or(at, |e| e.span().start);
                    return Err(self.error(
                        span,
                        format!("unknown expectation `{code}`, expected ok, any or an error code such as not_found"),
                    ));
                }
                OpExpect::Error(code.to_string())
            }
        };
        Ok(Action::Op(OpSpec {
            kind,
            login,
            new_login: s.new_login.as_ref().map(|n| n.get_ref().clone()),
            password: s.password.as_ref().map(|p| p.get_ref().clone()),
            via: s
                .via
                .as_ref()
                .map(|v| self.node_selector(v, nodes, labels))
                .transpose()?,
            from: self.client_host(&s.from)?,
            expect,
            served_by: s
                .served_by
                .as_ref()
                .map(|v| self.node_selector(v, nodes, labels))
                .transpose()?,
            measure: s.measure.as_ref().map(|m| m.get_ref().clone()),
        }))
    }

    /// The client host `from` names (`client` if absent).
    fn client_host(&self, from: &Option<Spanned<String>>) -> Result<u32> {
        let Some(from) = from else { return Ok(0) };
        match self.selector(from.get_ref(), from.span().start, 0, &[]) {
            Ok(Selector::Client(i)) => Ok(i),
            _ => Err(self.error(
                from.span().start,
                format!(
                    "`from` names a client host: client or client2..client{}",
                    self.client_hosts
                ),
            )),
        }
    }

    fn load(&self, s: &RawStep, nodes: u32, labels: &[String]) -> Result<Action> {
        let at = s.action.span().start;
        let clients = self.required(&s.clients, "clients", "load", at)?;
        if *clients.get_ref() == 0 || *clients.get_ref() > LOAD_CLIENTS_MAX {
            return Err(self.error(
                clients.span().start,
                format!("clients must be 1 to {LOAD_CLIENTS_MAX}"),
            ));
        }
        let mix = s.mix.as_ref().map_or(
            Mix {
                create: 1,
                lookup: 0,
                modify: 0,
                delete: 0,
            },
            |m| *m.get_ref(),
        );
        if mix.create + mix.lookup + mix.modify + mix.delete == 0 {
            let span = s.mix.as_ref().map_or(at, |m| m.span().start);
            return Err(self.error(span, "the mix needs at least one non-zero weight"));
        }
        Ok(Action::Load(LoadSpec {
            clients: *clients.get_ref(),
            duration_ms: *self
                .required(&s.duration_ms, "duration_ms", "load", at)?
                .get_ref(),
            mix,
            keys: s.keys.as_ref().map_or(0, |k| *k.get_ref()),
            spread: s.spread.as_ref().is_some_and(|v| *v.get_ref()),
            background: s.background.as_ref().is_some_and(|v| *v.get_ref()),
            think_ms: s.think_ms.as_ref().map_or(0, |v| *v.get_ref()),
            from: self.client_host(&s.from)?,
            via: self.node_list(&s.nodes, nodes, labels)?,
        }))
    }

    fn condition(
        &self,
        s: &RawStep,
        nodes: u32,
        labels: &[String],
        at: usize,
    ) -> Result<Condition> {
        let that = self.required(&s.that, "that", s.action.get_ref(), at)?;
        let node = || -> Result<Selector> {
            let n = self.required(&s.node, "node", that.get_ref(), that.span().start)?;
            self.node_selector(n, nodes, labels)
        };
        Ok(match that.get_ref().as_str() {
            "agreed" => Condition::Agreed,
            "converged" => Condition::Converged,
            "coordinator" => Condition::Coordinator(node()?),
            "not-coordinator" => Condition::NotCoordinator(node()?),
            "rank" => Condition::Rank(
                node()?,
                *self
                    .required(&s.rank, "rank", "rank", that.span().start)?
                    .get_ref(),
            ),
            "ranks" => Condition::Ranks(
                self.required(&s.ranks, "ranks", "ranks", that.span().start)?
                    .get_ref()
                    .clone(),
            ),
            "role" => {
                let role = self.required(&s.role, "role", "role", that.span().start)?;
                let parsed = match role.get_ref().as_str() {
                    "joining" => Role::Joining,
                    "follower" => Role::Follower,
                    "candidate" => Role::Candidate,
                    "coordinator" => Role::Coordinator,
                    _ => {
                        return Err(self.error(
                            role.span().start,
                            "role must be joining, follower, candidate or coordinator",
                        ))
                    }
                };
                Condition::Role(node()?, parsed)
            }
            "coordinators" => Condition::Coordinators(
                *self
                    .required(&s.count, "count", "coordinators", that.span().start)?
                    .get_ref(),
            ),
            "epochs-at-most" => Condition::EpochsAtMost(
                *self
                    .required(&s.epoch, "epoch", "epochs-at-most", that.span().start)?
                    .get_ref(),
            ),
            "rejected" => {
                let what = self.required(&s.what, "what", "rejected", that.span().start)?;
                let kind = self.choice(
                    what,
                    "what",
                    &[
                        ("datagrams", RejectedKind::Datagrams),
                        ("connections", RejectedKind::Connections),
                        ("requests", RejectedKind::Requests),
                    ],
                )?;
                let count = *self
                    .required(&s.count, "count", "rejected", that.span().start)?
                    .get_ref();
                let node = match &s.node {
                    Some(n) => Some(self.node_selector(n, nodes, labels)?),
                    None => None,
                };
                Condition::Rejected(node, kind, u64::from(count))
            }
            other => {
                return Err(self.error(
                    that.span().start,
                    format!(
                        "unknown condition `{other}`, expected one of agreed, converged, \
                         coordinator, not-coordinator, rank, ranks, role, coordinators, \
                         epochs-at-most, rejected"
                    ),
                ))
            }
        })
    }

    fn random(&self, s: &RawStep, at: usize) -> Result<Action> {
        let kinds = self.required(&s.kinds, "kinds", "random-faults", at)?;
        let parsed = kinds
            .get_ref()
            .iter()
            .map(|k| match k.as_str() {
                "kill" => Ok(FaultKind::Kill),
                "pause" => Ok(FaultKind::Pause),
                "partition" => Ok(FaultKind::Partition),
                "loss" => Ok(FaultKind::Loss),
                "latency" => Ok(FaultKind::Latency),
                "kill-redis" => Ok(FaultKind::KillRedis),
                "pause-redis" => Ok(FaultKind::PauseRedis),
                other => Err(self.error(
                    kinds.span().start,
                    format!("unknown fault kind `{other}`, expected kill, pause, partition, loss, latency, kill-redis or pause-redis"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(self.error(kinds.span().start, "`kinds` must name at least one kind"));
        }
        let rate = self.required(&s.rate_per_s, "rate_per_s", "random-faults", at)?;
        if !(*rate.get_ref() > 0.0 && *rate.get_ref() <= 100.0) {
            return Err(self.error(
                rate.span().start,
                "rate_per_s must be above 0 and at most 100",
            ));
        }
        Ok(Action::RandomFaults(RandomSpec {
            kinds: parsed,
            rate_per_s: *rate.get_ref(),
            duration_ms: *self
                .required(&s.duration_ms, "duration_ms", "random-faults", at)?
                .get_ref(),
            fault_ms: s.fault_ms.as_ref().map_or(1_000, |v| *v.get_ref()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("s.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_scenario_parses() {
        let s = parse(
            Path::new("scenarios/x.toml"),
            r#"
description = "d"
nodes = 3
mode = "strict"
[link]
latency_ms = 10
[[step]]
do = "start"
[[step]]
do = "await"
that = "agreed"
measure = "startup_ms"
[[step]]
do = "kill"
node = "coordinator"
label = "old"
[[step]]
do = "restart"
node = "@old"
[[step]]
do = "partition"
sides = [["n1", "client"], ["n2", "n3"]]
mode = "reject"
[[step]]
do = "load"
clients = 4
duration_ms = 1000
mix = { create = 3, lookup = 1 }
[[check]]
that = "no-lost-writes"
expect = "violated"
"#,
        )
        .unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.mode, Mode::Strict);
        assert_eq!(s.link.latency_ms, 10);
        assert_eq!(s.steps.len(), 6);
        assert_eq!(s.steps[2].at, Location { line: 13, col: 1 });
        assert!(matches!(
            &s.steps[3].action,
            Action::Node { node: Selector::Label(l), .. } if l == "old"
        ));
        assert_eq!(s.checks[0].expect, Expect::Violated);
    }

    #[test]
    fn a_nodes_redis_is_named_in_partitions_only() {
        let s = parse(
            Path::new("s.toml"),
            "nodes = 3\nredis = \"container\"\n[[step]]\ndo = \"partition\"\n\
             sides = [[\"coordinator\"], [\"redis:coordinator\", \"redis:n2\"]]\n",
        )
        .unwrap();
        assert_eq!(s.redis, RedisMode::Container);
        let Action::Partition {
            shape: PartitionShape::Sides(sides),
            ..
        } = &s.steps[0].action
        else {
            panic!("a partition: {:?}", s.steps[0].action);
        };
        assert_eq!(
            sides[1],
            vec![
                Selector::Redis(Box::new(Selector::Coordinator)),
                Selector::Redis(Box::new(Selector::Node(2)))
            ]
        );
        assert!(err("nodes = 3\nredis = \"docker\"\n")
            .starts_with("s.toml:2:9: unknown redis `docker`"));
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"kill\"\nnode = \"redis:n1\"\n"),
            "s.toml:4:8: a node's Redis is only allowed in `sides`, `from` and `to` of partitions"
        );
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"partition\"\nfrom = \"n1\"\nto = \"redis:client\"\n"),
            "s.toml:5:6: `redis:client`: `redis:` names a node's Redis, e.g. `redis:n1`"
        );
        assert!(
            err("nodes = 3\n[[step]]\ndo = \"partition\"\nfrom = \"n1\"\nto = \"redis:n9\"\n")
                .starts_with("s.toml:5:6: unknown node `n9`")
        );
    }

    #[test]
    fn typos_are_reported_with_file_line_and_column() {
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"kil\"\n"),
            "s.toml:3:6: unknown step `kil`, expected one of start, kill, pause, resume, stop, \
             restart, upgrade, kill-redis, pause-redis, resume-redis, partition, heal, link, \
             step-down, op, load, \
             await-load, wait, await, assert, random-faults, repeat, rogue"
        );
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"rogue\"\nattack = \"forge-mastr\"\n"),
            "s.toml:4:10: unknown attack `forge-mastr`, expected `forge-master` or \
             `forge-newmaster` or `forge-rank` or `forge-heartbeat` or `forge-replicate` or \
             `forge-snapshot` or `forge-forward` or `replay` or `redirect` or `flood`"
        );
        assert!(err("nodes = 3\nsecurity = \"tsl\"\n")
            .starts_with("s.toml:2:12: unknown security `tsl`"));
        assert!(
            err("nodes = 3\nbuild = \"prev\"\n").starts_with("s.toml:2:9: unknown build `prev`")
        );
        assert!(err("nodes = 3\nnodez = 4\n").starts_with("s.toml:2:1: unknown field `nodez`"));
        assert!(err("nodes = 3\n[[step]]\ndo = \"wait\"\nms = \"x\"\n")
            .starts_with("s.toml:4:6: invalid type: string"));
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"kill\"\nnode = \"n4\"\n"),
            "s.toml:4:8: unknown node `n4`: expected n1..n3, coordinator, follower, rank:N or @label"
        );
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"kill\"\nnode = \"n1\"\nms = 3\n"),
            "s.toml:5:6: field `ms` does not apply to `kill` (it takes: node, label)"
        );
        assert_eq!(
            err("nodes = 3\n[[step]]\ndo = \"restart\"\nnode = \"@gone\"\n"),
            "s.toml:4:8: no earlier step has `label = \"gone\"`"
        );
        assert_eq!(
            err("nodes = 3\n[[check]]\nthat = \"windw\"\n")
                .split(',')
                .next()
                .unwrap(),
            "s.toml:3:8: unknown check `windw`"
        );
        assert_eq!(
            err("nodes = 3\n[link]\nloss_pct = 120.0\n"),
            "s.toml:3:12: a percentage must be 0 to 100, not 120"
        );
        assert_eq!(
            err("nodes = 0\n"),
            "s.toml:1:9: nodes must be 1 to 9, not 0"
        );
    }
}
