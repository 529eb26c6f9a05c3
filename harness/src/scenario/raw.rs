//! The scenario file as serde reads it (every field spanned where an error must point at it);
//! [`super::parse`] checks it into a [`super::Scenario`].

use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

use super::types::Mix;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) nodes: Spanned<u32>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) min_acks: Option<u32>,
    pub(super) seed: Option<u64>,
    pub(super) long: Option<bool>,
    pub(super) discovery: Option<Spanned<String>>,
    pub(super) layout: Option<Spanned<String>>,
    pub(super) security: Option<Spanned<String>>,
    pub(super) build: Option<Spanned<String>>,
    pub(super) redis: Option<Spanned<String>>,
    pub(super) timeout_s: Option<u64>,
    pub(super) recover: Option<bool>,
    pub(super) link: Option<RawLink>,
    pub(super) client_hosts: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) step: Vec<Spanned<RawStep>>,
    #[serde(default)]
    pub(super) check: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub(super) latency_ms: Option<u32>,
    pub(super) jitter_ms: Option<u32>,
    pub(super) loss_pct: Option<Spanned<f64>>,
    pub(super) rate_mbit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) that: Spanned<String>,
    pub(super) expect: Option<Spanned<String>>,
    pub(super) from: Option<Spanned<String>>,
    pub(super) min_nodes: Option<Spanned<u32>>,
    pub(super) p99_ms_max: Option<Spanned<u64>>,
}

/// Declares the step's optional fields once: the struct, and the list of those present.
macro_rules! raw_step {
    ($($field:ident : $ty:ty),* $(,)?) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawStep {
            #[serde(rename = "do")]
            pub(super) action: Spanned<String>,
            $(pub(super) $field: Option<Spanned<$ty>>,)*
        }

        impl RawStep {
            /// The fields given besides `do`, with where they are.
            pub(super) fn present(&self) -> Vec<(&'static str, Range<usize>)> {
                let mut given = Vec::new();
                $(if let Some(v) = &self.$field {
                    given.push((stringify!($field), v.span()));
                })*
                given
            }
        }
    };
}

raw_step! {
    node: String,
    nodes: Vec<String>,
    label: String,
    stagger_ms: u64,
    ms: u64,
    isolate: String,
    sides: Vec<Vec<String>>,
    from: String,
    to: String,
    mode: String,
    latency_ms: u32,
    jitter_ms: u32,
    loss_pct: f64,
    rate_mbit: u32,
    down: bool,
    direction: String,
    clear: bool,
    op: String,
    login: String,
    new_login: String,
    password: String,
    via: String,
    expect: String,
    served_by: String,
    clients: u32,
    duration_ms: u64,
    mix: Mix,
    keys: u32,
    spread: bool,
    background: bool,
    think_ms: u64,
    that: String,
    rank: u32,
    ranks: Vec<u32>,
    role: String,
    count: u32,
    timeout_ms: u64,
    within_ms: u64,
    measure: String,
    kinds: Vec<String>,
    rate_per_s: f64,
    fault_ms: u64,
    times: u32,
    first_step: u32,
    attack: String,
    epoch: u64,
    what: String,
}
