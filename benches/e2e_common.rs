//! Helpers shared by the end-to-end benches: the input CSVs, a daemon's Prometheus byte
//! counter and its job summary line.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use confide_training::Table;

pub fn write_csv(path: &Path, t: &Table, label: bool) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    write!(f, "id").unwrap();
    if label {
        write!(f, ",default").unwrap();
    }
    for n in &t.feature_names {
        write!(f, ",{n}").unwrap();
    }
    writeln!(f).unwrap();
    for (i, id) in t.ids.iter().enumerate() {
        write!(f, "{id}").unwrap();
        if let (true, Some(y)) = (label, &t.label) {
            write!(f, ",{}", y[i]).unwrap();
        }
        for v in t.features.row(i) {
            write!(f, ",{v}").unwrap();
        }
        writeln!(f).unwrap();
    }
    f.flush().unwrap();
}

/// Total bytes a daemon has sent to its peers, from its Prometheus endpoint.
pub fn metrics_bytes_sent(port: u16) -> u64 {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("confide_peer_bytes_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The last `train finished` summary in a daemon's log.
pub fn summary_from_log(path: &Path) -> Option<serde_json::Value> {
    let log = std::fs::read_to_string(path).ok()?;
    let line = log.lines().rev().find(|l| l.contains("train finished"))?;
    let start = line.find("summary")?;
    let json = &line[start + line[start..].find('{')?..];
    serde_json::Deserializer::from_str(json)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()
}
