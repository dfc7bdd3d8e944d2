//! `tweedctl`: the operator's tool for tweed.

mod chain_version;
mod cleanup;
mod flannel_cleanup;
mod flannel_network;
mod guest_args;
mod install_cni;
mod lab;
mod status;
mod take_over;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Lab(args) => lab::run(args).map_err(|e| e.to_string()),
        Cmd::GuestArgs(args) => guest_args::run(args).map_err(|e| e.to_string()),
        Cmd::InstallCni(args) => install_cni::run(args).map_err(|e| e.to_string()),
        Cmd::NodeCleanup(args) => cleanup::run(args),
        Cmd::FlannelCleanup(args) => flannel_cleanup::run(args).map_err(|e| e.to_string()),
        Cmd::Status(args) => status::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tweedctl: {e}");
            ExitCode::FAILURE
        }
    }
}
