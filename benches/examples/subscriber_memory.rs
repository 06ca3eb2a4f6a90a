//! Where a subscriber's memory goes on the server side: a simulated room
//! (one VP8 publisher, N subscribers, everything in memory) run under
//! dhat's heap profiler; prints the bytes per subscriber live at the heap's peak,
//! grouped by the first Weir or str0m function on each allocation's stack.
//!
//! `cargo run --release -p weir-benches --example subscriber_memory -- 50`

use std::collections::HashMap;
use std::time::Duration;

use weir_benches::sim::{Downlink, SimRoom};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let subscribers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let out = std::env::temp_dir().join("weir-subscriber-memory.json");
    {
        let _profiler = dhat::Profiler::builder().file_name(&out).build();
        let mut sim = SimRoom::new(subscribers, Downlink::Deliver);
        // Two seconds of 30 fps video (6 packets a frame).
        for _ in 0..60 {
            let batch = sim.publisher_packets(6);
            for (at, datagram) in &batch {
                sim.prepare(*at);
                sim.forward(*at, datagram);
            }
            sim.settle();
            sim.run_for(Duration::from_millis(33));
        }
        let stats = dhat::HeapStats::get();
        println!(
            "live at the end: {} bytes in {} blocks ({} subscribers)",
            stats.curr_bytes, stats.curr_blocks, subscribers
        );
    }
    report(&out, subscribers);
}

/// Sums the bytes live at the end per allocation site's first frame in
/// `weir_sfu` or `str0m` (the server's room; the simulated peers are
/// str0m too, so stacks without a `weir_sfu` frame are counted apart).
fn report(path: &std::path::Path, subscribers: usize) {
    let text = std::fs::read_to_string(path).expect("dhat output");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dhat json");
    let frames: Vec<&str> = json["ftbl"]
        .as_array()
        .expect("ftbl")
        .iter()
        .map(|f| f.as_str().unwrap_or(""))
        .collect();
    let mut by_site: HashMap<String, u64> = HashMap::new();
    let mut server_total = 0;
    for pp in json["pps"].as_array().expect("pps") {
        let bytes = pp["gb"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let stack: Vec<&str> = pp["fs"]
            .as_array()
            .expect("fs")
            .iter()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .collect();
        if !stack.iter().any(|f| f.contains("weir_sfu::")) {
            continue;
        }
        server_total += bytes;
        let site = stack
            .iter()
            .find(|f| f.contains("str0m") || f.contains("weir_sfu") || f.contains("dimpl"))
            .map(|f| {
                f.split(" (")
                    .next()
                    .unwrap_or(f)
                    .trim_start_matches(|c: char| !c.is_alphabetic())
            })
            .unwrap_or("?")
            .to_string();
        *by_site.entry(site).or_default() += bytes;
    }
    let mut sites: Vec<(String, u64)> = by_site.into_iter().collect();
    sites.sort_by_key(|site| std::cmp::Reverse(site.1));
    println!(
        "server side (stacks through weir_sfu): {} bytes, {} per subscriber",
        server_total,
        server_total / subscribers.max(1) as u64
    );
    for (site, bytes) in sites.iter().take(25) {
        println!(
            "{:>10} B/subscriber  {site}",
            bytes / subscribers.max(1) as u64
        );
    }
}
