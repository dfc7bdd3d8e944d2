//! `tweedctl`: the operator's tool for tweed.
//!
//! Exit codes (docs/tweedctl.md): 0 done and nothing wrong, 1 the command
//! failed, 2 bad usage, 3 `status`, `lab status` or `lab check` ran and
//! found a problem.

#[macro_use]
mod out;

mod chain_version;
mod cleanup;
mod flannel_cleanup;
mod flannel_network;
mod guest_args;
mod install_cni;
mod lab;
mod lab_status;
mod status;
mod take_over;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tweedctl", version, about = "The tweed operator's tool")]
#[command(after_help = "Exit codes: 0 ok, 1 failed, 2 bad usage, 3 status/check found a problem.")]
// A flag given twice takes the last value, so scripts/demo.sh can pass
// `--nodes 3` and still let its caller say `--nodes 5`.
#[command(args_override_self = true)]
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
    /// This node's lease, agent and kernel state, with warnings.
    Status(status::StatusArgs),
    /// Install the plugin and its conflist into the node's CNI directories,
    /// atomically (the DaemonSet's init step).
    InstallCni(install_cni::InstallCniArgs),
    /// Remove everything tweed created on this node (dry run without --yes).
    NodeCleanup(cleanup::CleanupArgs),
    /// Remove what flannel left on this node after moving to tweed; keeps
    /// flannel.<VNI> and cni0, which tweed uses (dry run without --yes).
    FlannelCleanup(flannel_cleanup::FlannelCleanupArgs),
}

/// What a command that looks at state concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong (or a command that does not judge).
    Fine,
    /// It ran and found a problem (printed with the report): exit 3.
    Problems,
}

/// The exit code of `status`, `lab status` and `lab check` when they
/// found a problem, so scripts tell "unhealthy" from "could not look".
const EXIT_PROBLEMS: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fine = |()| Verdict::Fine;
    let result = match cli.command {
        Cmd::Lab(args) => lab::run(args).map_err(|e| e.to_string()),
        Cmd::GuestArgs(args) => guest_args::run(args).map(fine).map_err(|e| e.to_string()),
        Cmd::InstallCni(args) => install_cni::run(args).map(fine).map_err(|e| e.to_string()),
        Cmd::NodeCleanup(args) => cleanup::run(args).map(fine).map_err(|e| e.to_string()),
        Cmd::FlannelCleanup(args) => flannel_cleanup::run(args)
            .map(fine)
            .map_err(|e| e.to_string()),
        Cmd::Status(args) => status::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Err(e) => {
            eprintln!("tweedctl: {e}");
            ExitCode::FAILURE
        }
        // The report did not reach stdout (other than by the reader
        // leaving, which is not an error).
        Ok(_) if out::failed() => ExitCode::FAILURE,
        Ok(Verdict::Fine) => ExitCode::SUCCESS,
        Ok(Verdict::Problems) => ExitCode::from(EXIT_PROBLEMS),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_and_subcommand_has_help_text() {
        tweed_testkit::cli::assert_documented(&super::Cli::command());
    }
}
