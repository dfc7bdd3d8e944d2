//! `tweedctl`: the operator's tool for tweed.

mod guest_args;
mod lab;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tweedctl", version, about = "The tweed operator's tool")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// An emulated multi-node cluster on this machine.
    Lab(lab::LabArgs),
    /// Print a guest's boot arguments (from the record the plugin wrote).
    GuestArgs(guest_args::GuestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Lab(args) => lab::run(args).map_err(|e| e.to_string()),
        Cmd::GuestArgs(args) => guest_args::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tweedctl: {e}");
            ExitCode::FAILURE
        }
    }
}
