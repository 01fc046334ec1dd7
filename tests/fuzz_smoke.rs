//! The fuzz targets' bodies (`src/fuzzing.rs`) on stable, in the normal
//! suite: each over its seed corpus (`fuzz/seeds/<target>/`) and a few
//! hundred deterministic mutations of it, so the entry points keep compiling
//! and stay panic-free without nightly. The long runs are `cargo fuzz`'s
//! (README, "Fuzzing").

use std::path::Path;

use tollgate::fuzzing;

/// Fragments the mutations splice in: the tokens the targets care about.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\\\\",
    b"null",
    b"1e400",
    b"-0",
    b"\"model\"",
    b"\"usage\"",
    b"\"choices\"",
    b"data: ",
    b"[DONE]",
    b"\n\n",
    b"\r\n\r\n",
    b"\n",
];

/// How many mutations of each seed are run.
const MUTATIONS: u64 = 100;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// xorshift64: the same inputs on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A few random edits of `seed`: a token spliced in, a byte changed, a range
/// cut or doubled.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            1 if at < out.len() => out[at] = rng.below(256) as u8,
            2 => out.truncate(at),
            _ => {
                let end = (at + rng.below(32)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

fn smoke(target: &str, run: fn(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs = 0;
    for seed in seeds(target) {
        run(&seed);
        for _ in 0..MUTATIONS {
            run(&mutate(&seed, &mut rng));
            inputs += 1;
        }
    }
    assert!(inputs >= 400, "{target}: only {inputs} inputs");
}

#[test]
fn request_parse_survives_its_seeds_and_their_mutations() {
    smoke("request_parse", fuzzing::request_parse);
}

#[test]
fn sse_rewrite_survives_its_seeds_and_their_mutations() {
    smoke("sse_rewrite", fuzzing::sse_rewrite);
}

#[test]
fn json_scan_survives_its_seeds_and_their_mutations() {
    smoke("json_scan", fuzzing::json_scan);
}
