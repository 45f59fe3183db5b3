//! `confide`: thin entry point (clap → command → exit code).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = confide::cli::args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async move {
        match cli.command {
            confide::cli::args::Command::Demo(a) => {
                confide::cli::init_tracing(cli.log.as_deref(), false);
                confide::demo::run(a).await
            }
            _ => confide::cli::run(cli).await,
        }
    };
    match runtime.block_on(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", confide::base::error::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
