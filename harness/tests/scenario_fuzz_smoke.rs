//! The bounded smoke of the `scenario` fuzz target (the parser of scenario files; the real
//! fuzzing is `fuzz/`): the suite's files, the regression inputs in
//! `fuzz/regressions/scenario/`, and seeded mutations of them. Any panic fails.

use idserver::fuzz::{mutate, regressions, SMOKE_MUTATIONS};
use rand::SeedableRng;
use std::path::Path;

#[test]
fn the_scenario_parser_survives_the_suite_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(root.join("../scenarios"))
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "toml").then(|| std::fs::read(path).ok())?
        })
        .collect();
    assert!(inputs.len() > 10);
    inputs.extend(regressions(root, "scenario"));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5ce7);
    for _ in 0..SMOKE_MUTATIONS / 10 {
        let data = mutate(&mut rng, &inputs);
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let outcome = std::panic::catch_unwind(|| {
            let _ = harness::scenario::parse(Path::new("fuzz.toml"), text);
        });
        assert!(outcome.is_ok(), "the parser panicked on:\n{text}");
    }
}
