//! Measures the record store: batched inserts per second (WAL, synchronous = NORMAL), one
//! record per transaction for comparison, bytes per record, a 7-day query and the capacity
//! report over it. `cargo run --release -p trunkgate-records --example write_rate [DIR]`.
//! The figures in docs/design/records.md come from this.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use trunkgate_records::{Attempt, CallRecord, Direction, MediaLeg, Store};

fn record(i: i64) -> CallRecord {
    let start = 1_796_000_000_000 + i * 250;
    CallRecord {
        call_id: format!("{i}-4242@192.0.2.10"),
        start_ms: start,
        answer_ms: Some(start + 1800),
        end_ms: start + 1800 + 120_000,
        direction: if i % 3 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        trunk: Some(if i % 2 == 0 { "carrier-a" } else { "carrier-b" }.to_owned()),
        route: Some("default".to_owned()),
        pbx_node: Some("pbx-1".to_owned()),
        caller: "4930123456".to_owned(),
        callee: format!("49401{i:06}"),
        code: 200,
        first_provisional_ms: Some(40),
        setup_ms: Some(1800),
        duration_ms: 120_000,
        attempts: vec![Attempt {
            to: "carrier-a".to_owned(),
            offset_ms: 1,
            duration_ms: 1799,
            outcome: "200".to_owned(),
            first_provisional_ms: Some(39),
            failover: false,
        }],
        end_reason: "bye-caller".to_owned(),
        reject: None,
        transfer: false,
        media: ["pbx", "trunk"]
            .iter()
            .map(|side| MediaLeg {
                side: (*side).to_owned(),
                codec: "PCMA".to_owned(),
                packets: 6000,
                bytes: 6000 * 172,
                lost: 3,
                loss_pct: 0.05,
                jitter_ms: 1.2,
                packet_rate: 50.0,
                seconds: 120.0,
                active_seconds: 120.0,
            })
            .collect(),
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("trunkgate-write-rate"));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("records.sqlite");
    let mut store = Store::open(&path).unwrap();
    let n = 200_000i64;
    let records: Vec<CallRecord> = (0..n).map(record).collect();
    let t = Instant::now();
    for chunk in records.chunks(4096) {
        store.insert(chunk).unwrap();
    }
    let batched = t.elapsed();
    println!(
        "batched (4096/transaction): {n} records in {batched:?} = {:.0} records/s",
        n as f64 / batched.as_secs_f64()
    );
    let single: Vec<CallRecord> = (n..n + 2000).map(record).collect();
    let t = Instant::now();
    for r in &single {
        store.insert(std::slice::from_ref(r)).unwrap();
    }
    let one = t.elapsed();
    println!(
        "one per transaction: 2000 records in {one:?} = {:.0} records/s",
        2000.0 / one.as_secs_f64()
    );
    let bytes = store.live_bytes().unwrap();
    println!(
        "store: {} records, {} bytes live = {:.0} bytes/record",
        store.count().unwrap(),
        bytes,
        bytes as f64 / store.count().unwrap() as f64
    );
    let reader = Store::open_read(&path).unwrap();
    let t = Instant::now();
    let all = reader.query(0, None, usize::MAX).unwrap();
    let q = t.elapsed();
    println!("query all {} records: {q:?}", all.len());
    let t = Instant::now();
    let limits = vec![
        ("carrier-a".to_owned(), Some(300)),
        ("carrier-b".to_owned(), Some(300)),
    ];
    let rep = trunkgate_records::plan::capacity(&all, &limits, 0.01, 0.3, 0, i64::MAX / 2);
    println!(
        "capacity report over them: {:?} ({} trunks, peak {} on {})",
        t.elapsed(),
        rep.trunks.len(),
        rep.trunks[0].stats.peak_concurrency,
        rep.trunks[0].stats.key
    );
    let t = Instant::now();
    store
        .retain(i64::MAX / 4, Duration::from_secs(1), u64::MAX)
        .unwrap();
    println!("retention deleting all: {:?}", t.elapsed());
}
