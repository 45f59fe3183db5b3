//! What each CLI command does (`main` only parses arguments and prints the error): one
//! file per command family, all submitting jobs through [`submit`].

pub mod args;
pub mod audit;
pub mod daemon;
pub mod error;
pub mod init;
pub mod psi;
pub mod risk;
pub mod submit;
pub mod train;

use std::process::ExitCode;

use crate::kinds::netcheck;
use args::{Cli, Command};
pub use error::CliError;
use init::InitOptions;

/// Runs one CLI command.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let verbose = matches!(cli.command, Command::Serve(_));
    init_tracing(cli.log.as_deref(), verbose);
    match cli.command {
        Command::Init(a) => {
            if a.exist_ok && a.dir.join("ca.pem").exists() {
                println!(
                    "{} already holds an alliance; left as it is",
                    a.dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let opts = InitOptions {
                dir: a.dir.clone(),
                parties: a.parties,
                base_port: a.base_port,
                compute: a.compute,
                dealer: a.dealer,
                host: a.host,
                valid_days: a.valid_days,
                metrics_base_port: a.metrics_base_port,
            };
            init::run(&opts)?;
            println!(
                "wrote alliance of {} parties to {} (ca.pem, genesis.json, docker-compose.yml, and <party>/party.toml)",
                opts.parties.len(),
                a.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(c) => daemon::serve(&c.config).await,
        Command::Status {
            config,
            self_only,
            json,
        } => daemon::status(&config.config, self_only, json).await,
        Command::Jobs(c) => daemon::jobs(&c.config).await,
        Command::Cancel { config, job } => daemon::cancel(&config.config, job).await,
        Command::Netcheck {
            config,
            peers,
            rounds,
            size,
            interval_ms,
        } => {
            let opts = netcheck::Opts {
                rounds,
                size,
                interval_ms,
            };
            daemon::netcheck(&config.config, peers, opts).await
        }
        Command::Psi(a) => psi::psi(a).await,
        Command::Train(a) => train::train(a).await,
        Command::Predict(a) => train::predict(a).await,
        Command::Risk(c) => risk::risk(c).await,
        Command::Audit(c) => audit::audit(c).await,
        // `confide demo` sits above the CLI (it uses it): `main` dispatches it.
        Command::Demo(_) => Ok(ExitCode::FAILURE),
    }
}

pub fn init_tracing(filter: Option<&str>, verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "info" } else { "warn" };
    let filter = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
