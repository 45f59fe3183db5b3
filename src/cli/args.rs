//! The command line (see docs/cli.md of the product brief: these names are a contract).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "confide",
    version,
    about = "Confide: secure multi-party computation between institutions"
)]
pub struct Cli {
    /// Log filter for the daemon (e.g. info, confide=debug); RUST_LOG also works.
    #[arg(long, global = true, env = "CONFIDE_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The party's configuration file (party.toml).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new alliance: CA, party keys and certificates, party.toml files, genesis.json, compose file.
    Init(InitArgs),
    /// Run the party daemon in the foreground.
    Serve(ConfigArg),
    /// Is the daemon up, and is each peer reachable over mutual TLS? Exit 0 only if all are.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Only check this party's own daemon (container health checks).
        #[arg(long)]
        self_only: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Private set intersection with one or more peers.
    Psi(PsiArgs),
    /// Train a model on columns split across parties (secret-shared vertical logistic regression).
    Train(TrainArgs),
    /// Score rows with a secret-shared model: neither side sees the other's features or weights.
    Predict(PredictArgs),
    /// Joint risk queries: ingest a dataset, or query applicants.
    #[command(subcommand)]
    Risk(RiskCommand),
    /// The audit chain: log, verify, prove, check.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List this daemon's jobs.
    Jobs(ConfigArg),
    /// Cancel a running job (every party of the job stops it).
    Cancel {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        job: String,
    },
    /// Check the connection to peers with a real job over the job streams.
    Netcheck {
        #[command(flatten)]
        config: ConfigArg,
        /// Peers to include (default: all).
        #[arg(long = "peer")]
        peers: Vec<String>,
        #[arg(long, default_value_t = 3)]
        rounds: u64,
        #[arg(long, default_value_t = 1024)]
        size: u64,
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    /// Bring up a whole alliance locally on generated data and run every kind of job.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write the alliance into (must not hold one already).
    #[arg(long)]
    pub dir: PathBuf,
    /// Party names, comma-separated (lowercase letters, digits, '-').
    #[arg(long, value_delimiter = ',', required = true)]
    pub parties: Vec<String>,
    /// First listen port; parties get consecutive ports.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// The two risk compute nodes (default: the first two parties).
    #[arg(long, value_delimiter = ',')]
    pub compute: Vec<String>,
    /// The training dealer (default: the third party).
    #[arg(long)]
    pub dealer: Option<String>,
    /// Host the daemons listen on and reach each other at.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Certificate lifetime in days.
    #[arg(long, default_value_t = 825)]
    pub valid_days: i64,
    /// First Prometheus port (0: no metrics endpoint).
    #[arg(long, default_value_t = 0)]
    pub metrics_base_port: u16,
    /// Succeed without writing anything if DIR already holds an alliance (containers).
    #[arg(long)]
    pub exist_ok: bool,
}

#[derive(Debug, Args)]
pub struct PsiArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// This party's dataset.
    #[arg(long)]
    pub dataset: String,
    /// A peer and its dataset, PARTY:DATASET (repeat for multi-party).
    #[arg(long = "peer", required = true)]
    pub peers: Vec<String>,
    /// Where to write the intersection (CSV with header `id`).
    #[arg(long, required_unless_present = "size_only")]
    pub output: Option<PathBuf>,
    /// Only learn the size of the intersection.
    #[arg(long)]
    pub size_only: bool,
    /// Deliver the intersection to every party, not only to the initiator (two parties).
    #[arg(long)]
    pub to_all: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub dataset: String,
    #[arg(long = "peer", required = true)]
    pub peer: String,
    #[arg(long)]
    pub label: String,
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    #[arg(long, default_value_t = 1024)]
    pub batch_size: u32,
    /// Do not reveal the model: keep it secret-shared between the two parties, to serve
    /// `confide predict` (the job id names the model).
    #[arg(long)]
    pub keep_shared: bool,
    /// Learning rate of mini-batch SGD (lr, default 0.1), or the shrinkage η of boosted
    /// trees (gbdt, default 0.3).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// The model: `lr` (logistic regression) or `gbdt` (gradient-boosted trees).
    #[arg(long, value_enum, default_value_t = ModelKind::Lr)]
    pub model: ModelKind,
    #[command(flatten)]
    pub gbdt: GbdtArgs,
}

/// The model a `train` job fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Logistic regression.
    Lr,
    /// Gradient-boosted trees (the model stays split between the parties).
    Gbdt,
}

/// The boosted-tree flags of `confide train --model gbdt`.
#[derive(Debug, Args)]
pub struct GbdtArgs {
    /// Number of trees (gbdt).
    #[arg(long, default_value_t = 10)]
    pub trees: u32,
    /// Depth of every tree (gbdt).
    #[arg(long, default_value_t = 3)]
    pub depth: u32,
    /// Most quantile bins per column, 2..=64 (gbdt).
    #[arg(long, default_value_t = 32)]
    pub bins: u32,
    /// L2 penalty λ on leaf weights (gbdt).
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Least gain γ of a split (gbdt).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f64,
    /// Least hessian sum in each child (gbdt).
    #[arg(long, default_value_t = 1.0)]
    pub min_child_weight: f64,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The job id of a `train --keep-shared` job whose model this party and the peer hold in shares.
    #[arg(long)]
    pub model: String,
    /// This party's dataset with the rows to score.
    #[arg(long)]
    pub dataset: String,
    /// The peer and its dataset, PARTY:DATASET.
    #[arg(long = "peer")]
    pub peer: String,
    /// Where to write the scores (CSV `id,score`); only this party sees them.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Contribute a dataset's per-customer figures to the alliance index.
    Ingest {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        dataset: String,
    },
    /// Ask the alliance about one applicant or a file of applicants.
    Query {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(
            long,
            conflicts_with = "ids_file",
            required_unless_present = "ids_file"
        )]
        id: Option<String>,
        #[arg(long)]
        ids_file: Option<PathBuf>,
        #[arg(long, requires = "ids_file")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries, newest last.
    Log {
        #[command(flatten)]
        config: ConfigArg,
        /// Per member: jobs started and served.
        #[arg(long)]
        summary: bool,
    },
    /// Verify the whole local copy; exit 0 if intact.
    Verify(ConfigArg),
    /// Write an offline proof bundle for a job.
    Prove {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        job: String,
        #[arg(long)]
        output: PathBuf,
    },
    /// Verify a proof bundle offline, with no daemon.
    Check {
        proof: PathBuf,
        #[arg(long)]
        genesis: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the alliance directory instead of deleting it.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// First port of the demo alliance.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// Rows of generated data per party.
    #[arg(long, default_value_t = 20_000)]
    pub rows: usize,
}
