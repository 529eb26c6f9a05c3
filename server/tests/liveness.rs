//! Liveness as a checked property, over random schedules on the real protocol cores: after the
//! last fault ends and a majority (strict) or at least two nodes (whitepaper; a lone node does
//! not coordinate on silence) are up and connected, one coordinator is agreed and a write is
//! acknowledged within a bound that depends only on the timings and the round trip.
//!
//! Each schedule draws its cluster the way deployments have them: 3 or 5 nodes on one host
//! (one address, ports apart), on distinct hosts, or mixed, all started with the default listen
//! address and `--peers` naming every member (strict mode's N as the binary computes it); 0 to
//! 50 ms per link with jitter, up to 5% loss; simultaneous or staggered starts; then crashes,
//! pauses, isolations, one-way cuts and splits for a while.
//!
//! A failing schedule prints its seed; `SIM_SEED=N cargo test --test liveness` replays it,
//! `SIM_SCHEDULES=N` runs more (the long tier: `SIM_SCHEDULES=1000000`), `SIM_SLOW_MS=N` lists
//! the schedules that took longer than N ms to agree, and `SIM_TRACE=1` prints role changes.

mod sim;

use idserver::core::{CoreConfig, Input, Role};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sim::data::DataSim;
use sim::{AgreementWatch, Shape, Sim, AGREEMENT_HOLD_MS};

/// How long replication gets to settle once writes stop: a link whose requests were lost with
/// a connection waits out the answer timeout (2 s) before it reconnects.
const SETTLE_MS: u64 = 4_000;

/// Schedules per mode in the default run (CI).
const SCHEDULES_DEFAULT: u64 = 10_000;

/// The bound the property promises: detection and a dead interval, then the per-rank stagger,
/// then election rounds (window, backoff) of a round trip each; all stretched by the round trip.
fn bound_ms(config: &CoreConfig, n: usize, rtt_max_ms: u64) -> u64 {
    let detect_ms = config.heartbeat_ms * u64::from(config.suspect_misses) + config.dead_ms();
    let stagger_ms = n as u64 * config.stagger_ms.max(rtt_max_ms);
    let rounds_ms = 10 * (config.election_window_ms + 4 * rtt_max_ms);
    detect_ms + stagger_ms + rounds_ms + 20 * rtt_max_ms
}

/// What one schedule measured.
struct Outcome {
    /// Per-link one-way latency (ms) the schedule ran with.
    latency_ms: u64,
    /// From the last fault's end to a coordinator every live node names.
    agreed_ms: u64,
    /// From the last fault's end to the first acknowledged write.
    acked_ms: u64,
}

fn schedule(seed: u64, strict: bool) -> Result<Outcome, String> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_11fe);
    let n = if rng.gen_bool(0.5) { 3 } else { 5 };
    let shape = Shape::ALL[rng.gen_range(0..Shape::ALL.len())];
    let latency_ms = rng.gen_range(0..=50u64);
    let jitter_ms = rng.gen_range(0..=latency_ms / 2);
    let loss = if rng.gen_bool(0.5) {
        0.0
    } else {
        rng.gen_range(0.0..0.05)
    };
    let config = CoreConfig::default();
    let mut sim = Sim::shaped(seed, n, config, strict, shape);
    // The simulator delays each message once, host to host: two links' worth.
    sim.latency_ms = (2 * (latency_ms - jitter_ms), 2 * (latency_ms + jitter_ms));
    sim.loss = loss;
    sim.duplicate = if rng.gen_bool(0.5) { 0.0 } else { 0.02 };
    let simultaneous = rng.gen_bool(0.5);
    let mut data = DataSim::new(sim);
    for i in 0..n {
        data.sim.start(i);
        if !simultaneous {
            let t = data.sim.now_ms + rng.gen_range(0..300);
            data.run_until(t, true);
        }
    }
    let faults = rng.gen_bool(0.7);
    let context =
        || {
            format!(
            "{} mode, {n} nodes, {shape:?}, {latency_ms} ± {jitter_ms} ms, loss {:.1}%, {} start{}",
            if strict { "strict" } else { "whitepaper" },
            loss * 100.0,
            if simultaneous { "simultaneous" } else { "staggered" },
            if faults { ", faults" } else { "" }
        )
        };
    if faults {
        let t = data.sim.now_ms + 500;
        data.run_until(t, true);
        inject_faults(&mut data, &mut rng);
        end_faults(&mut data, &mut rng, n);
    }
    let rtt_max_ms = 4 * (latency_ms + jitter_ms);
    let limit_ms = bound_ms(&config, n, rtt_max_ms);
    let (agreed_ms, acked_ms) = agree_and_ack(&mut data, limit_ms)
        .map_err(|why| format!("{} ({}): {why}", context(), data.sim.describe()))?;
    // Whitepaper mode: two sides of a partition may each elect in one epoch; without faults, of
    // two coordinators elected together only the one that stays acknowledges (View::settled).
    if let Some((epoch, nodes)) = data.two_ackers_in_one_epoch().filter(|_| strict || !faults) {
        return Err(format!(
            "{}: nodes {nodes:?} acknowledged writes in epoch {epoch}",
            context()
        ));
    }
    // Then the writes stop and replication settles: one history on every live node, in
    // Lamport order, holding every acknowledged write (strict mode; whitepaper mode may lose
    // writes acknowledged before a fault, none without faults).
    let history = data
        .settle(SETTLE_MS)
        .map_err(|e| format!("{}: {e} ({})", context(), data.sim.describe()))?;
    let lost = data.lost(&history);
    if !lost.is_empty() && (strict || !faults) {
        return Err(format!("{}: acknowledged writes lost: {lost:?}", context()));
    }
    Ok(Outcome {
        latency_ms,
        agreed_ms,
        acked_ms,
    })
}

/// Crashes, pauses, isolations, one-way cuts and splits, and now and then a step-down, for
/// 1 to 3 s.
fn inject_faults(data: &mut DataSim, rng: &mut SmallRng) {
    let until = data.sim.now_ms + rng.gen_range(1_000..3_000);
    while data.sim.now_ms < until {
        if rng.gen_bool(0.1) {
            data.hand_over();
        } else {
            data.sim.random_fault(rng);
        }
        let next = data.sim.now_ms + rng.gen_range(10..400);
        data.run_until(next, true);
    }
}

/// The last fault ends: cuts heal, paused nodes resume, and crashed nodes restart, except
/// that up to a minority (strict) or all but two (whitepaper) may stay down, as after a
/// coordinator crash without restart.
fn end_faults(data: &mut DataSim, rng: &mut SmallRng, n: usize) {
    data.sim.heal();
    data.sim.resume_all();
    let strict = data.sim.hosts[0].config.strict_cluster_size.is_some();
    let may_stay_down = if strict { n - (n / 2 + 1) } else { n - 2 };
    let mut down = 0;
    for i in 0..n {
        if data.sim.hosts[i].node.is_none() {
            if down < may_stay_down && rng.gen_bool(0.5) {
                down += 1;
            } else {
                data.sim.restart(i);
            }
        }
    }
}

/// Runs until a coordinator is agreed (and stays so) and a write made from now on is
/// acknowledged; the times from now, or why not within `limit_ms`.
fn agree_and_ack(data: &mut DataSim, limit_ms: u64) -> Result<(u64, u64), String> {
    const STEP_MS: u64 = 10;
    let start = data.sim.now_ms;
    let first_id = data.next_write_id();
    let mut watch = AgreementWatch::default();
    let mut agreed_ms = None;
    while data.sim.now_ms - start <= limit_ms + AGREEMENT_HOLD_MS {
        if agreed_ms.is_none() {
            agreed_ms = watch.observe(&data.sim).map(|at| at - start);
        }
        let acked_ms = data
            .acked_at_ms
            .range(first_id..)
            .map(|(_, at)| at - start)
            .min();
        if let (Some(agreed), Some(acked)) = (agreed_ms, acked_ms) {
            if agreed > limit_ms || acked > limit_ms {
                break;
            }
            return Ok((agreed, acked));
        }
        let t = data.sim.now_ms + STEP_MS;
        data.run_until(t, true);
    }
    let acked = data.acked_at_ms.range(first_id..).count();
    Err(format!(
        "within {limit_ms} ms: agreed after {agreed_ms:?} ms, {acked} new writes acknowledged"
    ))
}

fn check_mode(strict: bool) {
    let mode = if strict { "strict" } else { "whitepaper" };
    let mut failures = Vec::new();
    let mut by_latency: [Vec<(u64, u64)>; 3] = Default::default();
    let seeds = sim::seeds(SCHEDULES_DEFAULT);
    for seed in &seeds {
        match sim::run_seed(*seed, || schedule(*seed, strict)) {
            Ok(o) => {
                if std::env::var("SIM_SLOW_MS").is_ok_and(|ms| o.agreed_ms > ms.parse().unwrap()) {
                    eprintln!(
                        "slow: seed {seed}: {} ms at {} ms per link",
                        o.agreed_ms, o.latency_ms
                    );
                }
                let bucket = match o.latency_ms {
                    0..=5 => 0,
                    6..=25 => 1,
                    _ => 2,
                };
                by_latency[bucket].push((o.agreed_ms, o.acked_ms));
            }
            Err(why) => failures.push(format!("seed {seed}: {why}")),
        }
    }
    for (bucket, runs) in ["0-5 ms", "6-25 ms", "26-50 ms"]
        .iter()
        .zip(&mut by_latency)
    {
        if runs.is_empty() {
            continue;
        }
        let mut agreed: Vec<u64> = runs.iter().map(|r| r.0).collect();
        let mut acked: Vec<u64> = runs.iter().map(|r| r.1).collect();
        agreed.sort_unstable();
        acked.sort_unstable();
        let pct = |v: &[u64], p: usize| v[(v.len() - 1) * p / 100];
        eprintln!(
            "{mode}, {bucket} per link, {} schedules: agreed p50 {} p99 {} max {} ms; \
             first ack p50 {} p99 {} max {} ms",
            runs.len(),
            pct(&agreed, 50),
            pct(&agreed, 99),
            agreed.last().unwrap(),
            pct(&acked, 50),
            pct(&acked, 99),
            acked.last().unwrap()
        );
    }
    assert_none_failed(
        &failures,
        seeds.len(),
        &format!("{mode} schedules broke liveness"),
    );
}

/// Fails with the first few failures (each names its seed) if there are any.
fn assert_none_failed(failures: &[String], total: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} (replay with SIM_SEED=N):\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

#[test]
fn whitepaper_mode_elects_and_acknowledges_within_the_bound_in_every_shape() {
    check_mode(false);
}

#[test]
fn strict_mode_elects_and_acknowledges_within_the_bound_in_every_shape() {
    check_mode(true);
}

/// Issue 14's first shape exactly: three strict nodes on one host at the default listen
/// address, the coordinator killed, never restarted: the two survivors elect at once.
#[test]
fn strict_survivors_on_one_host_elect_after_the_coordinator_dies() {
    for seed in 0..50 {
        let mut sim = Sim::shaped(seed, 3, CoreConfig::default(), true, Shape::OneHost);
        assert_eq!(sim.hosts[0].config.strict_cluster_size, Some(3));
        for i in 0..3 {
            sim.start(i);
        }
        sim.time_to_agreement(2_000, 5).expect("start-up agreement");
        let old = sim.agreed_coordinator().unwrap();
        sim.crash(old);
        let took = sim.time_to_agreement(1_000, 5);
        assert!(
            took.is_some_and(|ms| ms <= 300),
            "seed {seed}: survivors agreed after {took:?} ms: {}",
            sim.describe()
        );
        let new = sim.agreed_coordinator().unwrap();
        assert_eq!(sim.view(new).unwrap().role, Role::Coordinator);
    }
}

/// Issue 14's second shape: five strict nodes started together with 20 ± 10 ms per link.
#[test]
fn strict_five_nodes_started_together_on_slow_links_agree() {
    for seed in 0..50 {
        let mut sim = Sim::shaped(seed, 5, CoreConfig::default(), true, Shape::DistinctHosts);
        // 20 ± 10 ms per link: 40 ± 20 host to host.
        sim.latency_ms = (20, 60);
        for i in 0..5 {
            sim.start(i);
        }
        let took = sim.time_to_agreement(3_000, 5);
        assert!(
            took.is_some(),
            "seed {seed}: no agreement in 3 s: {}",
            sim.describe()
        );
    }
}

/// Operators stop nodes in quick succession: the coordinator stops cleanly, a survivor wins the
/// next epoch and stops cleanly a few ms later, and the last node, which heard both leave,
/// must coordinate alone. Found in the lab (`last-node-standing`, 3 of 31 runs, finding 26 in
/// docs/findings.md). Each seed draws the latency, whether the survivors' rounds start early
/// (their RPCs to the stopping coordinator failed before its LEAVE came) and the gap between
/// the two stops.
#[test]
fn the_last_node_standing_coordinates_after_two_quick_clean_stops() {
    let mut failures = Vec::new();
    let seeds = sim::seeds(500);
    for seed in &seeds {
        if let Err(e) = sim::run_seed(*seed, || last_node_standing(*seed)) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert_none_failed(
        &failures,
        seeds.len(),
        "quick clean stops left no coordinator",
    );
}

fn last_node_standing(seed: u64) -> Result<(), String> {
    let mut sim = Sim::shaped(seed, 3, CoreConfig::default(), false, Shape::DistinctHosts);
    let mut rng = SmallRng::seed_from_u64(seed);
    sim.latency_ms = (0, rng.gen_range(1..=5));
    for i in 0..3 {
        sim.start(i);
        let t = sim.now_ms + 200;
        sim.run_until(t);
    }
    sim.time_to_agreement(2_000, 5)
        .ok_or_else(|| format!("no agreement at start-up: {}", sim.describe()))?;
    let first = sim.agreed_coordinator()?;
    if rng.gen_bool(0.5) {
        for i in (0..3).filter(|i| *i != first) {
            sim.input(i, Input::CoordinatorUnreachable);
        }
        let t = sim.now_ms + rng.gen_range(0..=3);
        sim.run_until(t);
    }
    sim.leave(first);
    let mut second = None;
    for _ in 0..2_000 {
        let t = sim.now_ms + 1;
        sim.run_until(t);
        second = sim
            .live_views()
            .into_iter()
            .find(|(_, v)| v.role == Role::Coordinator)
            .map(|(i, _)| i);
        if second.is_some() {
            break;
        }
    }
    let second = second.ok_or_else(|| format!("no second coordinator: {}", sim.describe()))?;
    let t = sim.now_ms + rng.gen_range(0..=15);
    sim.run_until(t);
    sim.leave(second);
    let last = 3 - first - second;
    sim.time_to_agreement(2_000, 5)
        .ok_or_else(|| format!("the last node never coordinated: {}", sim.describe()))?;
    let agreed = sim.agreed_coordinator()?;
    if agreed != last {
        return Err(format!("node {agreed} coordinates, not {last}"));
    }
    Ok(())
}

/// Ten round trips at 25 ms per link: the target for agreement after a failover.
const FAILOVER_AT_25_MS_MAX: u64 = 1_000;

/// Twenty coordinator kills at 25 ± 5 ms per link (a 100 ms round trip), the old coordinator
/// restarted between kills, as the lab's `*-failover-25ms` scenarios do: every failover agrees,
/// and a write is acknowledged, within ten round trips.
fn repeated_failovers_at_25_ms(strict: bool) {
    for seed in sim::seeds(10) {
        let mut data = DataSim::new(Sim::shaped(
            seed,
            3,
            CoreConfig::default(),
            strict,
            Shape::DistinctHosts,
        ));
        // 25 ± 5 ms per link: 50 ± 10 host to host.
        data.sim.latency_ms = (40, 60);
        for i in 0..3 {
            data.sim.start(i);
            let t = data.sim.now_ms + 200;
            data.run_until(t, true);
        }
        agree_and_ack(&mut data, 3_000).expect("start-up");
        for kill in 0..20 {
            let old = data.sim.agreed_coordinator().unwrap();
            data.sim.crash(old);
            let outcome = agree_and_ack(&mut data, FAILOVER_AT_25_MS_MAX);
            if let Err(e) = outcome {
                panic!("seed {seed}, kill {kill}: {e}: {}", data.sim.describe());
            }
            data.sim.restart(old);
            let t = data.sim.now_ms + 1_000;
            data.run_until(t, true);
        }
    }
}

#[test]
fn whitepaper_repeated_failovers_at_25_ms_agree_within_ten_round_trips() {
    repeated_failovers_at_25_ms(false);
}

#[test]
fn strict_repeated_failovers_at_25_ms_agree_within_ten_round_trips() {
    repeated_failovers_at_25_ms(true);
}

/// `n` strict nodes on distinct hosts with this one-way latency, started together and run until
/// they agree; the simulator and the coordinator.
fn strict_cluster_agreed(seed: u64, n: usize, latency_ms: (u64, u64)) -> (Sim, usize) {
    let mut sim = Sim::shaped(seed, n, CoreConfig::default(), true, Shape::DistinctHosts);
    sim.latency_ms = latency_ms;
    for i in 0..n {
        sim.start(i);
    }
    let t = sim.now_ms + 3_000;
    sim.run_until(t);
    let coordinator = sim.agreed_coordinator().expect("agreed at start-up");
    (sim, coordinator)
}

/// A strict coordinator with a bare majority (two of five down) on lossy links with a 40 ms
/// round trip keeps its lease: a lost heartbeat reply or two must not make it step down.
/// Before its lease outlasted two lost heartbeats, one lost reply from one member cost the
/// lease about once a second (found by the simulator's settle check, seed 1189).
#[test]
fn strict_coordinator_with_a_bare_majority_keeps_its_lease_under_loss() {
    let mut flaps = Vec::new();
    for seed in 0..20 {
        let (mut sim, coordinator) = strict_cluster_agreed(seed, 5, (20, 20));
        for i in (0..5).filter(|i| *i != coordinator).take(2) {
            sim.crash(i);
        }
        let t = sim.now_ms + 2_000;
        sim.run_until(t);
        let before = sim.elections();
        sim.loss = 0.01;
        let t = sim.now_ms + 10_000;
        sim.run_until(t);
        let elections = sim.elections() - before;
        if elections > 0 {
            flaps.push(format!(
                "seed {seed}: {elections} elections: {}",
                sim.describe()
            ));
        }
    }
    assert!(flaps.is_empty(), "{}", flaps.join("\n"));
}

/// Kill → agreement in a strict 3-node cluster at 25 ms per link, with or without a client
/// writing through the survivors meanwhile (each failed forward to the dead coordinator is an
/// `Input::CoordinatorUnreachable`, every 50 ms, as the client retries).
fn strict_failover_ms(seed: u64, clients_write: bool) -> u64 {
    let (mut sim, dead) = strict_cluster_agreed(seed, 3, (45, 55));
    sim.crash(dead);
    let killed_at = sim.now_ms;
    while sim.now_ms - killed_at < 5_000 {
        if clients_write && (sim.now_ms - killed_at) % 50 == 0 {
            let dead_id = sim.hosts[dead].node_id;
            // The client's server: the survivor of higher rank (not the one that asks first).
            let rank = |i: usize| sim.view(i).and_then(|v| v.me.rank).unwrap_or(0);
            let server = (0..3).filter(|i| *i != dead).max_by_key(|i| rank(*i));
            if let Some(i) = server {
                let names_dead = sim
                    .view(i)
                    .is_some_and(|v| v.coordinator.is_some_and(|c| c.node_id == dead_id));
                if names_dead {
                    sim.input(i, idserver::core::Input::CoordinatorUnreachable);
                }
            }
        }
        let t = sim.now_ms + 10;
        sim.run_until(t);
        if sim.agreed_coordinator().is_ok_and(|c| c != dead) {
            return sim.now_ms - killed_at;
        }
    }
    panic!("seed {seed}: no agreement within 5 s: {}", sim.describe());
}

/// A client writing during a strict failover must not delay it: a forward to the dead
/// coordinator fails and the follower runs a round at once, which fails while the other
/// survivor still hears the coordinator. (In the lab at 25 ms per link such a failed early
/// round restarted the follower's suspicion and put its next round a whole suspicion time
/// later; a failed early round now leaves suspicion where it was. This schedule does not
/// reproduce that cascade, the lab's `scripts/measure-elections` does: it guards the property.)
#[test]
fn strict_a_client_writing_during_a_failover_does_not_delay_it() {
    let mut plain = Vec::new();
    let mut writing = Vec::new();
    for seed in 0..40 {
        plain.push(strict_failover_ms(seed, false));
        writing.push(strict_failover_ms(seed, true));
    }
    plain.sort_unstable();
    writing.sort_unstable();
    let (p50, w50) = (plain[plain.len() / 2], writing[writing.len() / 2]);
    let (p90, w90) = (plain[plain.len() * 9 / 10], writing[writing.len() * 9 / 10]);
    eprintln!(
        "kill -> agreement: plain p50 {p50} p90 {p90} ms; clients writing p50 {w50} p90 {w90} ms"
    );
    assert!(
        w50 <= p50 + 20 && w90 <= p90 + 40,
        "clients writing delay the failover: p50 {w50} against {p50} ms, p90 {w90} against {p90} ms"
    );
}

/// `idclient --step-down` without faults, in every shape, 0 to 50 ms per link, with loss and
/// writes running: each hand-over is agreed and the successor acknowledges a new write within
/// a few round trips (no suspicion timeout), one node acknowledges per epoch, and no
/// acknowledged write is lost, in both modes.
fn hand_overs(strict: bool) {
    let mode = if strict { "strict" } else { "whitepaper" };
    let mut failures = Vec::new();
    let mut took: Vec<u64> = Vec::new();
    let seeds = sim::seeds(SCHEDULES_DEFAULT / 10);
    for seed in &seeds {
        let run = sim::run_seed(*seed, || -> Result<Vec<u64>, String> {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x57e9_d0e1);
            let n = if rng.gen_bool(0.5) { 3 } else { 5 };
            let shape = Shape::ALL[rng.gen_range(0..Shape::ALL.len())];
            let latency_ms = rng.gen_range(0..=50u64);
            let jitter_ms = rng.gen_range(0..=latency_ms / 2);
            let mut sim = Sim::shaped(*seed, n, CoreConfig::default(), strict, shape);
            sim.latency_ms = (2 * (latency_ms - jitter_ms), 2 * (latency_ms + jitter_ms));
            sim.loss = if rng.gen_bool(0.5) { 0.0 } else { 0.02 };
            let mut data = DataSim::new(sim);
            for i in 0..n {
                data.sim.start(i);
            }
            let bound = bound_ms(&CoreConfig::default(), n, 4 * (latency_ms + jitter_ms));
            agree_and_ack(&mut data, bound)?;
            // A hand-over's own bound: NEWMASTER or TAKEOVER and a vote, then the settle
            // time and a write's acks, a handful of round trips.
            let hand_over_bound = 1_000 + 20 * 4 * (latency_ms + jitter_ms);
            let mut times = Vec::new();
            for _ in 0..3 {
                let before = data.sim.agreed_coordinator().ok();
                // Writes are held while the successor catches up (as the server's step-down
                // holds them), then it hands over.
                let mut tries = 0;
                let to = loop {
                    if let Some(to) = data.hand_over() {
                        break to;
                    }
                    tries += 1;
                    if tries > 200 {
                        return Err(format!("{n} nodes: no caught-up follower to hand over to"));
                    }
                    let t = data.sim.now_ms + 10;
                    data.run_until(t, false);
                };
                if before == Some(to) {
                    return Err("handed over to itself".into());
                }
                let (_, acked_ms) = agree_and_ack(&mut data, hand_over_bound)
                    .map_err(|why| format!("{n} nodes, {shape:?}, {latency_ms} ms: {why}"))?;
                if data.sim.agreed_coordinator().ok() != Some(to) {
                    return Err(format!(
                        "handed over to {to}, but {:?} coordinates",
                        data.sim.agreed_coordinator()
                    ));
                }
                times.push(acked_ms);
            }
            if let Some((epoch, nodes)) = data.two_ackers_in_one_epoch() {
                return Err(format!(
                    "nodes {nodes:?} acknowledged writes in epoch {epoch}"
                ));
            }
            let history = data.settle(SETTLE_MS)?;
            let lost = data.lost(&history);
            if !lost.is_empty() {
                return Err(format!("acknowledged writes lost: {lost:?}"));
            }
            Ok(times)
        });
        match run {
            Ok(times) => took.extend(times),
            Err(why) => failures.push(format!("seed {seed}: {why}")),
        }
    }
    took.sort_unstable();
    if !took.is_empty() {
        let pct = |p: usize| took[(took.len() - 1) * p / 100];
        eprintln!(
            "{mode}: {} hand-overs, first ack on the successor p50 {} p99 {} max {} ms",
            took.len(),
            pct(50),
            pct(99),
            took.last().unwrap()
        );
    }
    assert_none_failed(
        &failures,
        seeds.len(),
        &format!("{mode} hand-over schedules failed"),
    );
}

#[test]
fn whitepaper_hand_overs_elect_at_once_and_lose_nothing() {
    hand_overs(false);
}

#[test]
fn strict_hand_overs_elect_at_once_and_lose_nothing() {
    hand_overs(true);
}
