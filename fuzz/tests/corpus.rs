//! Replays every corpus (the seeds built from real examples, and the inputs the fuzzers
//! found) through its target: a regression test on the stable toolchain.

use std::path::Path;

#[test]
fn every_corpus_replays_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0usize;
    for (name, target) in rota_fuzz::TARGETS {
        let mut files = 0usize;
        for dir in [
            root.join("corpus").join(name),
            root.join("regressions").join(name),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                let data =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                eprintln!("{name}: {}", path.display());
                target(&data);
                files += 1;
            }
        }
        assert!(files > 0, "target {name} has no corpus");
        replayed += files;
    }
    eprintln!("replayed {replayed} inputs");
}
