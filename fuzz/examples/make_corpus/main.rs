//! Writes the seed corpora in `fuzz/corpus/<target>/` (committed; run this
//! again only to change them):
//!
//! ```sh
//! cd fuzz && cargo run --release --example make_corpus [GENERATOR...]
//! ```
//!
//! With names (the functions below: `signalling`, `srtp_seal`, ...) only
//! those generators run and only their targets' seeds are rewritten. Seeds
//! named `regression-*` (inputs a fuzzer found, committed by hand with the
//! fix) are always kept.
//!
//! Seeds are real inputs: signalling messages from `docs/protocol.md`, the
//! sample `deploy/weir.toml`, tokens minted with the `token` target's keys,
//! the recording rule of `docs/recording.md`, the REST bodies of the README,
//! str0m offers, and RTP of short H.264 / VP8 / VP9 / AV1 / Opus clips that
//! ffmpeg encodes here (needs `ffmpeg` with libx264, libvpx, libaom and
//! libopus), also recorded to files in progress for the recovery target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod media;
mod sfu;
mod srtp_seal;
mod text;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.parent().expect("repo");
    let out = root.join("corpus");
    let work = std::env::temp_dir().join("weir-fuzz-corpus");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut corpus = Corpus {
        dir: out,
        seeds: BTreeMap::new(),
    };

    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let wants = |generator: &str| wanted.is_empty() || wanted.iter().any(|w| w == generator);

    if wants("signalling") {
        text::signalling(&mut corpus, repo);
    }
    if wants("tokens") {
        text::tokens(&mut corpus);
    }
    if wants("config") {
        text::config(&mut corpus, repo);
    }
    if wants("recording_rule") {
        text::recording_rule(&mut corpus, repo);
    }
    if wants("rest_bodies") {
        text::rest_bodies(&mut corpus);
    }
    if wants("whip_whep") {
        text::whip_whep(&mut corpus);
    }
    if ["depacketize", "segmenter", "recover"]
        .iter()
        .any(|g| wants(g))
    {
        let media = media::Media::encode(&work);
        if wants("depacketize") {
            media::depacketize(&mut corpus, &media);
        }
        if wants("segmenter") {
            media::segmenter(&mut corpus, &media);
        }
        if wants("recover") {
            media::recover(&mut corpus, &media);
        }
    }
    if wants("forwarder") {
        sfu::forwarder(&mut corpus);
    }
    if wants("room") {
        sfu::room(&mut corpus);
    }
    if wants("srtp_seal") {
        srtp_seal::seeds(&mut corpus);
    }
    corpus.write();
}

struct Corpus {
    dir: PathBuf,
    seeds: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

impl Corpus {
    fn add(&mut self, target: &str, name: &str, bytes: impl Into<Vec<u8>>) {
        self.seeds
            .entry(target.to_string())
            .or_default()
            .push((name.to_string(), bytes.into()));
    }

    fn write(&self) {
        let mut total = 0;
        for (target, seeds) in &self.seeds {
            let dir = self.dir.join(target);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            // Generated seeds are replaced; found ones stay.
            for entry in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with("regression-") {
                    std::fs::remove_file(entry.path()).expect("old seed removed");
                }
            }
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).expect("seed");
                total += bytes.len();
            }
            println!("{target}: {} seeds", seeds.len());
        }
        println!("{total} bytes in all");
    }
}
