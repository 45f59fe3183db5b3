//! What each CLI command does (`main` only parses arguments and prints the error): one
//! file per command family, all submitting jobs through [`submit`].

pub mod args;
pub mod audit;
pub mod ca;
pub mod daemon;
pub mod error;
pub mod init;
pub mod keys;
pub mod psi;
pub mod risk;
pub mod submit;
pub mod train;

use std::process::ExitCode;

use crate::kinds::netcheck;
use args::{CaCommand, Cli, Command, PeerCommand};
pub use error::CliError;
use init::InitOptions;

/// Runs one CLI command.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let verbose = matches!(cli.command, Command::Serve(_));
    init_tracing(cli.log.as_deref(), verbose);
    match cli.command {
        Command::Init(a) => {
            if a.exist_ok && a.dir.join("ca.pem").exists() {
                outln!(
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
            outln!(
                "wrote alliance of {} parties to {} (ca.pem, genesis.json, docker-compose.yml, and <party>/party.toml)",
                opts.parties.len(),
                a.dir.display()
            );
            outln!(
                "FOR DEMOS ONLY: this directory holds every member's private keys; a real deployment uses `confide keygen`, `confide ca` and `confide join`"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen(a) => {
            let req = keys::keygen(&a.dir, &a.name, &a.address)?;
            outln!(
                "wrote {}'s keys to {} (private, 0600) and its request {} for the alliance operator",
                a.name,
                a.dir.display(),
                req.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca(c) => ca_command(c),
        Command::Join(a) => {
            let opts = keys::JoinOptions {
                dir: a.dir,
                cert: a.cert,
                ca: a.ca,
                members: a.members,
                genesis: a.genesis,
                crl: a.crl,
                listen: a.listen,
                compute: a.compute,
                dealer: a.dealer,
            };
            let name = keys::join(&opts)?;
            outln!(
                "wrote {} for `{name}`",
                opts.dir.join("party.toml").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Peer(PeerCommand::Add {
            config,
            name,
            address,
        }) => {
            keys::peer_add(&config.config, &name, &address)?;
            outln!(
                "added peer `{name}` at {address} to {} (restart the daemon to use it)",
                config.config.display()
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

fn ca_command(c: CaCommand) -> Result<ExitCode, CliError> {
    match c {
        CaCommand::Init {
            dir,
            passphrase,
            valid_days,
        } => {
            let pass = ca::passphrase(passphrase.passphrase_file.as_deref())?;
            ca::init(&dir, &pass, valid_days)?;
            outln!(
                "wrote the alliance CA to {} (ca.pem; ca.key.enc, encrypted; members.json; crl.pem)",
                dir.display()
            );
        }
        CaCommand::Sign {
            ca: dir,
            request,
            out,
            passphrase,
            valid_days,
        } => {
            let pass = ca::passphrase(passphrase.passphrase_file.as_deref())?;
            let name = ca::sign(&dir, &request, &out, &pass, valid_days)?;
            outln!("issued `{name}`'s certificate to {}", out.display());
        }
        CaCommand::Genesis {
            ca: dir,
            out,
            sequencer,
        } => {
            let n = ca::genesis(&dir, &out, sequencer.as_deref())?;
            outln!("wrote the genesis of {n} members to {}", out.display());
        }
        CaCommand::Revoke {
            ca: dir,
            name,
            passphrase,
        } => {
            let pass = ca::passphrase(passphrase.passphrase_file.as_deref())?;
            let crl = ca::revoke(&dir, &name, &pass)?;
            outln!(
                "revoked `{name}`: hand {} to every member (their [tls] crl file)",
                crl.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
