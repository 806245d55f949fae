use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mlyexport::cli::Cli::parse();
    mlyexport::run(cli).into()
}
