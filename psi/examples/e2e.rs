//! In-process end-to-end PSI: two (or more) parties over `memory_mesh`, N IDs each, N/2
//! of them common to all parties.
//!
//! ```text
//! cargo run --release -p confide-psi --example e2e -- 65536 [parties]
//! ```
//! Prints the time, items per second (per party's set) and the process's peak RSS (both
//! parties live in this one process).

use std::io::Write;
use std::time::Instant;

use confide_mpc::transport::memory_mesh;
use confide_psi::{OutputMode, PsiJob};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1 << 16);
    let parties: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2);
    let names: Vec<String> = (0..parties).map(|i| format!("party{i}")).collect();
    let dir = tempfile::tempdir()?;
    for (p, name) in names.iter().enumerate() {
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.path().join(name))?);
        writeln!(w, "id,value")?;
        // Each party: n IDs; the last party's are offset by n/2, the others' spread
        // between, so all parties share exactly n/2 IDs.
        let offset = p * (n / 2) / (parties - 1).max(1);
        for i in 0..n {
            writeln!(w, "+86{:011},{i}", i + offset)?;
        }
        w.flush()?;
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mesh = memory_mesh(&name_refs, 8);
    let start = Instant::now();
    let mut handles = Vec::new();
    for (t, name) in mesh.into_iter().zip(&names) {
        let job = PsiJob {
            initiator: names[0].clone(),
            parties: names.clone(),
            mode: OutputMode::Initiator,
            protocol: confide_psi::Protocol::Ecdh,
            input: dir.path().join(name),
            id_column: "id".into(),
            output: Some(dir.path().join(format!("{name}.out.csv"))),
            work_dir: dir.path().join("work"),
        };
        handles.push(tokio::spawn(async move {
            confide_psi::run(&t, &job, &|_| {}).await
        }));
    }
    let mut reports = Vec::new();
    for h in handles {
        reports.push(h.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let r = &reports[0];
    println!(
        "{parties} parties × {n} IDs: intersection {} in {secs:.2} s = {:.0} items/s per party \
         ({} threads); initiator sent {} B, received {} B; peak RSS {:.0} MiB (all parties)",
        r.intersection_size.unwrap_or(0),
        n as f64 / secs,
        rayon::current_num_threads(),
        r.bytes_sent,
        r.bytes_received,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
