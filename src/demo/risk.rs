//! The demo's risk step: every lender ingests its loans; alice asks about an applicant
//! two lenders know and about an unknown one; the answers must equal the plaintext sums.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use confide_risk::RiskDataset;

use super::{data_dir, write_csv};
use crate::base::config::PartyConfig;
use crate::cli::CliError;
use crate::cli::init::toml_names;
use crate::cli::risk::{answer_json, ingest_dataset, query_ids};
use crate::kit::{LocalAlliance, add_dataset, config_path};

const DEMO_LENDERS: [&str; 3] = ["alice", "bob", "carol"];

fn demo_csv(dir: &Path, party: &str) -> PathBuf {
    dir.join("demo-data").join(format!("{party}-loans.csv"))
}

/// Writes the demo's risk data (a few hundred customers per lender, overlapping) and
/// declares it as dataset `loans`, allowing risk for the compute nodes.
pub fn data(dir: &Path, rows: usize) -> Result<(), CliError> {
    use std::fmt::Write as _;
    let n = rows.clamp(50, 300);
    data_dir(dir)?;
    for (k, party) in DEMO_LENDERS.iter().enumerate() {
        let path = demo_csv(dir, party);
        let mut f = String::from("applicant,blacklisted,loans,amount,overdue\n");
        // Lender k knows applicants k·n/2 .. k·n/2 + n: neighbours overlap by half.
        for i in k * n / 2..k * n / 2 + n {
            let h = (i * 7 + k * 13) % 97;
            let _ = writeln!(
                f,
                "A{i:06},{},{},{},{}",
                u8::from(h % 11 == 0),
                1 + h % 3,
                (1 + h) * 50_000,
                h % 2
            );
        }
        write_csv(&path, &f)?;
        let compute = PartyConfig::load(&config_path(dir, party))?
            .alliance
            .compute;
        let allow = format!("{{ risk = {} }}", toml_names(&compute));
        add_dataset(dir, party, "loans", &path, "applicant", &allow)?;
    }
    Ok(())
}

/// The demo's risk step: every lender ingests, then alice asks about an applicant two
/// lenders know and an unknown one; the answers must equal the plaintext sums.
pub async fn step(alliance: &LocalAlliance) -> Result<(), CliError> {
    let t = Instant::now();
    let mut total = 0;
    for p in DEMO_LENDERS {
        let r = ingest_dataset(&alliance.config(p)?, "loans", false).await?;
        total += r.get("rows").and_then(|v| v.as_u64()).unwrap_or(0);
    }
    let compute = alliance.config("alice")?.alliance.compute.join(" and ");
    super::step(
        &format!(
            "risk ingest: alice, bob and carol contributed {total} customers' loan figures, \
             secret-shared between the compute nodes {compute}"
        ),
        t,
    );

    let t = Instant::now();
    // Plaintext sums, and how many lenders know each applicant.
    let mut expected: HashMap<String, ([u64; 4], usize)> = HashMap::new();
    for p in DEMO_LENDERS {
        let d = RiskDataset::load(demo_csv(&alliance.dir, p), "applicant")?;
        for r in d.records {
            let e = expected.entry(r.id).or_default();
            for k in 0..4 {
                e.0[k] += r.values[k];
            }
            e.1 += 1;
        }
    }
    let known = expected
        .iter()
        .filter(|(_, (_, holders))| *holders >= 2)
        .min_by_key(|(id, (v, _))| (std::cmp::Reverse(v[0]), *id))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| CliError::Failed("demo data: no applicant known to two lenders".into()))?;
    let unknown = "Z999999".to_string();
    let ids = [known.clone(), unknown.clone()];
    let answers = query_ids(&alliance.config("alice")?, &ids).await?;
    for (id, a) in ids.iter().zip(&answers) {
        let want = expected.get(id).map(|e| e.0).unwrap_or_default();
        let got = [a.blacklisted, a.loans, a.amount, a.overdue];
        if got != want || a.queried_by < 1 {
            return Err(CliError::Failed(format!(
                "risk answer for {id}: got {got:?}, the plaintext sums are {want:?}"
            )));
        }
    }
    super::step(
        &format!(
            "risk query by alice (logged on the audit chain before the nodes answered): {} and {}; \
             both equal the plaintext sums across the three lenders",
            answer_json(&ids[0], &answers[0]),
            answer_json(&ids[1], &answers[1])
        ),
        t,
    );
    Ok(())
}
