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
    /// DEMOS ONLY: write a whole alliance in one directory (CA, every party's private keys
    /// and certificates, party.toml files, genesis.json, compose file). Whoever runs it
    /// holds every member's private keys; a real deployment uses keygen, ca and join.
    Init(InitArgs),
    /// At a member: generate its TLS key and audit key here (they never leave), and write
    /// the request for the alliance operator (name, address, audit public key, CSR).
    Keygen(KeygenArgs),
    /// At the alliance operator: the certificate authority (key encrypted at rest).
    #[command(subcommand)]
    Ca(CaCommand),
    /// At a member: assemble party.toml from its own keys and what the operator returned.
    Join(JoinArgs),
    /// Edit this party's peers (a member admitted later).
    #[command(subcommand)]
    Peer(PeerCommand),
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
    /// The two risk compute nodes, which may then not ingest or query (default: the last two
    /// parties when there are four or more, else the first two).
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
pub struct KeygenArgs {
    /// The member's directory (its keys are written here, 0600).
    #[arg(long)]
    pub dir: PathBuf,
    /// The member's name (lowercase letters, digits, '-').
    #[arg(long)]
    pub name: String,
    /// HOST:PORT where the other members reach this member's daemon.
    #[arg(long)]
    pub address: String,
}

/// Where the CA passphrase comes from.
#[derive(Debug, Args)]
pub struct PassphraseArg {
    /// File whose first line is the CA passphrase (default: $CONFIDE_CA_PASSPHRASE).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the alliance CA: ca.pem, ca.key.enc (encrypted), members.json, crl.pem.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArg,
        /// CA certificate lifetime in days.
        #[arg(long, default_value_t = 3650)]
        valid_days: i64,
    },
    /// Issue a member's certificate from its request and record the member.
    Sign {
        /// The CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// The member's request (written by `confide keygen`).
        #[arg(long)]
        request: PathBuf,
        /// Where to write the member's certificate (PEM).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArg,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 825)]
        valid_days: i64,
    },
    /// Write the audit-chain genesis of the current members (the founding members).
    Genesis {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The audit-chain sequencer (default: the first member signed).
        #[arg(long)]
        sequencer: Option<String>,
    },
    /// Revoke a member: writes a new signed CRL (CA/crl.pem) to hand to every member.
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        passphrase: PassphraseArg,
    },
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The member directory `confide keygen` wrote.
    #[arg(long)]
    pub dir: PathBuf,
    /// This member's certificate, from `confide ca sign`.
    #[arg(long)]
    pub cert: PathBuf,
    /// The alliance CA certificate (the operator's ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// The operator's member list (members.json): the peers and their addresses.
    #[arg(long)]
    pub members: PathBuf,
    /// The audit-chain genesis (from `confide ca genesis`).
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// The alliance revocation list (the operator's crl.pem), copied to DIR/crl.pem.
    #[arg(long)]
    pub crl: Option<PathBuf>,
    /// Listen address (default: the member's address in the member list).
    #[arg(long)]
    pub listen: Option<String>,
    /// The two risk compute nodes.
    #[arg(long, value_delimiter = ',')]
    pub compute: Vec<String>,
    /// The training dealer.
    #[arg(long)]
    pub dealer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Add a peer (a member admitted later) to party.toml; restart the daemon to use it.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        name: String,
        /// HOST:PORT of the peer's daemon.
        #[arg(long)]
        address: String,
    },
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
    /// The protocol: `kkrt` (OT-based, two parties; the default for two parties unless
    /// --size-only) or `ecdh` (any number of parties, every output; the default otherwise).
    #[arg(long, value_enum)]
    pub protocol: Option<PsiProtocolArg>,
    /// Continue job JOB (cut off by a failure) from the checkpoint every party kept,
    /// instead of from zero; the other flags must be those of JOB.
    #[arg(long, value_name = "JOB")]
    pub resume: Option<String>,
}

/// `confide psi --protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PsiProtocolArg {
    Ecdh,
    Kkrt,
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
    /// Do not reveal the model: keep it secret-shared between the two parties, to serve
    /// `confide predict` (the job id names the model).
    #[arg(long)]
    pub keep_shared: bool,
    /// The model: `lr` (logistic regression) or `gbdt` (gradient-boosted trees).
    #[arg(long, value_enum, default_value_t = ModelKind::Lr)]
    pub model: ModelKind,
    /// The job's public seed (the validation split, the batch order and the gbdt row and
    /// column draws): give it to repeat a run's choices; default: drawn at random per job.
    /// Every party sees it, so it must not be a secret.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue job JOB (cut off by a failure) from the checkpoint of its last completed
    /// epoch at every party, instead of from zero; the other flags must be those of JOB
    /// (its seed is taken from JOB unless --seed is given). Logistic regression only.
    #[arg(long, value_name = "JOB")]
    pub resume: Option<String>,
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub gbdt: GbdtArgs,
}

/// The optimizer settings of `confide train` (logistic regression). Training runs until
/// the loss stops improving by the tolerance (or the validation AUC stops improving);
/// `--epochs` is only a cap.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Most passes over the data (training usually stops sooner: see --tolerance).
    #[arg(long, default_value_t = 200)]
    pub epochs: u32,
    /// Rows per step; a batch larger than the data is one full-batch step per epoch.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: u32,
    /// Step size (lr; default: automatic, min(1, sqrt(batch / rows)), or 0.1 for Adam,
    /// which takes at most 1), or the shrinkage η of boosted trees (gbdt; default 0.3).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Update rule on the shares (adam: secret-shared moments, secure inverse square root
    /// per weight and step; nesterov is the default, see training/ACCURACY.md).
    #[arg(long, default_value = "nesterov", value_parser = ["nesterov", "momentum", "sgd", "adam"])]
    pub optimizer: String,
    /// Penalty on the standardized weights (never the intercept).
    #[arg(long, default_value = "l2", value_parser = ["l2", "l1", "none"])]
    pub penalty: String,
    /// Inverse regularization strength, as scikit-learn's C: larger C, weaker penalty.
    #[arg(long = "C", default_value_t = 1.0)]
    pub c: f64,
    /// Row weights: `balanced` weighs each class by rows / (2 · rows of the class).
    #[arg(long, default_value = "none", value_parser = ["none", "balanced"])]
    pub class_weight: String,
    /// An epoch that lowers the loss by less than this fraction is a plateau: the step
    /// size halves; the fifth plateau ends training.
    #[arg(long, default_value_t = 3e-5)]
    pub tolerance: f64,
    /// Hold out this fraction of the common rows: training stops when their AUC has not
    /// improved for 3 epochs, and keeps the best epoch's weights (gbdt: see
    /// `--early-stopping-rounds`).
    #[arg(long, default_value_t = 0.0)]
    pub validation: f64,
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
    /// Fraction of the rows each tree is grown on, in (0, 1] (gbdt): drawn per tree from
    /// the job's public seed.
    #[arg(long, default_value_t = 1.0)]
    pub subsample: f64,
    /// Fraction of all columns (both parties') each tree may split on, in (0, 1] (gbdt):
    /// drawn per tree from the job's public seed, at least one column.
    #[arg(long, default_value_t = 1.0)]
    pub colsample_bytree: f64,
    /// Stop when the validation AUC (rows held out by `--validation`) has not improved for
    /// N trees, and keep the trees up to the best (gbdt; 0: never stop).
    #[arg(long, default_value_t = 0)]
    pub early_stopping_rounds: u32,
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
