//! One AFL++ target per decoder: `idfuzz TARGET` reads inputs from AFL++ in persistent mode and
//! hands each to the target (see `idserver::fuzz` and `harness::scenario`).

use std::path::Path;

fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = harness::scenario::parse(Path::new("fuzz.toml"), text);
    }
}

/// `idfuzz --write-seeds DIR`: every target's seeds, as files in `DIR/TARGET/`.
fn write_seeds(dir: &Path) {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut all: Vec<(String, Vec<Vec<u8>>)> = idserver::fuzz::TARGETS
        .iter()
        .map(|(name, _)| (name.to_string(), idserver::fuzz::seeds(name)))
        .collect();
    let suite = std::fs::read_dir(scenarios)
        .expect("the scenario suite")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    all.push(("scenario".into(), suite));
    for (name, seeds) in all {
        let target_dir = dir.join(&name);
        std::fs::create_dir_all(&target_dir).expect("a seed directory");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i:03}")), seed).expect("a seed file");
        }
    }
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    if name == "--write-seeds" {
        let dir = std::env::args().nth(2).expect("--write-seeds DIR");
        write_seeds(Path::new(&dir));
        return;
    }
    let target = idserver::fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .or_else(|| (name == "scenario").then_some(scenario as idserver::fuzz::Target))
        .unwrap_or_else(|| {
            let names: Vec<&str> = idserver::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            eprintln!("usage: idfuzz {}|scenario", names.join("|"));
            std::process::exit(2)
        });
    afl::fuzz!(|data: &[u8]| target(data));
}
