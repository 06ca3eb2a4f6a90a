//! Crash recovery's parsers (`weir_recorder::recover`) on arbitrary files:
//! an MP4 in progress, an HLS media segment with its init segment, and the
//! HLS playlists.
//!
//! Input: a mode byte; 0: the MP4 file (the rest); 1: the init segment
//! (`u16`-prefixed), then the media segment (the rest); 2: the
//! multivariant and media playlists (`u16`-prefixed), then a trailing
//! segment URI, its duration (`u16` ms) and its init segment URI.
//!
//! Invariants: no panic; what recovery keeps lies inside the file; the
//! recovered MP4 is as large as announced and demuxes; a recovered HLS
//! recording names only relative paths inside its directory.
#![no_main]

use std::io::Cursor;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_fuzz::recording::mp4_samples;
use weir_fuzz::Reader;
use weir_recorder::recover::{
    hls_media_uri, recover_hls, recover_mp4, recover_segment, TrailingSegment,
};
use weir_recorder::Command;

fn relative(path: &str) {
    assert!(
        !path.is_empty() && !path.starts_with('/') && !path.contains(".."),
        "recovery names {path:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    match r.u8() % 3 {
        0 => {
            let bytes = r.rest();
            let Ok(recovered) = recover_mp4(&mut Cursor::new(bytes), bytes.len() as u64, "a.mp4")
            else {
                return;
            };
            assert!(recovered.keep_len <= bytes.len() as u64);
            assert!(recovered.fragments > 0);
            let mut file = bytes[..recovered.keep_len as usize].to_vec();
            for command in recovered.commands {
                match command {
                    Command::WriteAt { offset, bytes, .. } => {
                        let start = usize::try_from(offset).expect("offset fits");
                        assert!(start + bytes.len() <= file.len(), "patch past the end");
                        file[start..start + bytes.len()].copy_from_slice(&bytes);
                    }
                    Command::Append { bytes, .. } => file.extend_from_slice(&bytes),
                    other => panic!("recovery emitted {other:?}"),
                }
            }
            assert_eq!(file.len() as u64, recovered.size);
            // (A damaged file may keep fragments without samples.)
            mp4_samples(&file);
        }
        1 => {
            let init = r.bytes();
            let segment = r.rest();
            if let Ok(Some(kept)) =
                recover_segment(init, &mut Cursor::new(segment), segment.len() as u64)
            {
                assert!(kept.keep_len > 0 && kept.keep_len <= segment.len() as u64);
            }
        }
        _ => {
            let multivariant = r.bytes();
            let media = r.bytes();
            let uri = r.string();
            let duration = Duration::from_millis(u64::from(r.u16()));
            let init_uri = r.string();
            if let Ok(uri) = hls_media_uri(multivariant) {
                relative(&uri);
            }
            let trailing = (!uri.is_empty()).then(|| TrailingSegment {
                uri: &uri,
                duration,
                init_uri: &init_uri,
            });
            let Ok(recovered) = recover_hls(multivariant, media, trailing) else {
                return;
            };
            relative(&recovered.media_uri);
            assert_eq!(recovered.paths.first(), Some(&recovered.media_uri));
            for path in &recovered.paths {
                relative(path);
            }
        }
    }
});
