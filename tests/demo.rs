//! The README's first command: `tollgate demo` runs on its embedded defaults with nothing
//! installed (librdkafka's in-process mock cluster, the reference example, a synthetic stream)
//! and prints where every event went.

mod common;

use std::process::Command;

#[test]
fn the_demo_routes_a_synthetic_stream_on_its_embedded_defaults() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["demo", "--events", "3000", "--rate", "0", "--metrics-listen", &metrics])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.split("Routed 3000 events").nth(1).unwrap_or_else(|| panic!("no summary: {stdout}"));
    // After the progress lines, the summary: one line per route and one for dead letters. Every
    // kind of outcome occurs in the mix, and together they account for every event.
    let counts: Vec<(String, u64)> = ["auto_commit", "async_review", "sync_review", "auto_reject", "dead_letter"]
        .iter()
        .map(|name| {
            let line = summary
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("{name}: {stdout}"));
            let n = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"));
            (name.to_string(), n)
        })
        .collect();
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 3000, "{counts:?}");
}
