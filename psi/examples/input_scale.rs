//! Reads a large generated CSV through the input stage (hygiene, bucketing to disk,
//! de-duplication, shuffling) and reports time and peak RSS.
//!
//! ```text
//! cargo run --release -p confide-psi --example input_scale -- 10000000
//! ```

use std::io::Write;
use std::time::Instant;

use confide_psi::input::{Tuning, prepare};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(w, "phone,segment,score")?;
    for i in 0..n {
        // One row in 100 repeats an earlier ID; one in 10^4 is malformed.
        let id = if i % 100 == 99 { i - 50 } else { i };
        if i % 10_000 == 1 {
            writeln!(w, "broken row")?;
        } else {
            writeln!(w, " +86{id:011} ,seg{},{}", i % 7, i % 1000)?;
        }
    }
    w.flush()?;
    drop(w);
    let size = std::fs::metadata(&path)?.len();
    let start = Instant::now();
    let (store, stats) = prepare(&path, "phone", dir.path(), &Tuning::default(), &|_, _| {})?;
    println!(
        "{n} rows ({:.0} MiB) in {:.1} s: {} buckets, {} distinct, {} duplicates, {} malformed \
         (first lines {:?}); peak RSS {:.0} MiB",
        size as f64 / 1048576.0,
        start.elapsed().as_secs_f64(),
        store.bucket_count(),
        stats.distinct,
        stats.duplicates,
        stats.malformed,
        &stats.malformed_lines[..3.min(stats.malformed_lines.len())],
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
