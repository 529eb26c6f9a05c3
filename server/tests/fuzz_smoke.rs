//! The bounded smoke of every fuzz target that CI runs (the real fuzzing is `fuzz/`, with
//! AFL++): each target's seeds, the regression inputs in `fuzz/regressions/TARGET/` (every
//! crash a fuzzer found), and seeded mutations of them (bytes flipped, inserted, removed,
//! spliced, truncated). A target that panics fails the test with the input that did it.

use idserver::fuzz::{mutate, regressions, seeds, SMOKE_MUTATIONS, TARGETS};
use rand::SeedableRng;

#[test]
fn every_fuzz_target_survives_its_seeds_regressions_and_mutations() {
    for (name, target) in TARGETS {
        let mut inputs = seeds(name);
        assert!(!inputs.is_empty(), "target {name} has no seeds");
        inputs.extend(regressions(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            name,
        ));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x1d1ab);
        let mutated: Vec<Vec<u8>> = (0..SMOKE_MUTATIONS)
            .map(|_| mutate(&mut rng, &inputs))
            .collect();
        for data in inputs.iter().chain(&mutated) {
            let outcome = std::panic::catch_unwind(|| target(data));
            assert!(
                outcome.is_ok(),
                "target {name} panicked on {} bytes: {}",
                data.len(),
                hex::encode(data)
            );
        }
    }
}
