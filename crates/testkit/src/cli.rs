//! The programs' command lines explain themselves: every argument of
//! every subcommand has help text and every subcommand says what it does.
//! Walks clap's `Command` (what `--help` prints at each level).

use clap::{Arg, Command};

/// Panics listing every argument and subcommand of `cmd` without help
/// text (and on clap's own consistency errors).
pub fn assert_documented(cmd: &Command) {
    cmd.clone().debug_assert();
    let missing = undocumented(cmd);
    assert!(
        missing.is_empty(),
        "without help text:\n{}",
        missing.join("\n")
    );
}

/// Each argument or subcommand of `cmd`, at any depth, that `--help`
/// would show without a word of explanation, as `tweedctl lab up --nodes`.
pub fn undocumented(cmd: &Command) -> Vec<String> {
    let mut cmd = cmd.clone();
    // Adds clap's own --help/--version, so they are walked like the rest.
    cmd.build();
    let mut missing = Vec::new();
    walk(&cmd, cmd.get_name().to_string(), &mut missing);
    missing
}

fn walk(cmd: &Command, path: String, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} {}", shown(arg)));
        }
    }
    // clap's own `help` subcommand mirrors the tree, taking its words.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(format!("{sub_path} (what the subcommand does)"));
        }
        walk(sub, sub_path, missing);
    }
}

/// The argument as `--help` shows it: `--flag` or `<VALUE>`.
fn shown(arg: &Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => format!("<{}>", arg.get_id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_arguments_and_subcommands_without_help() {
        let cmd = Command::new("t")
            .arg(Arg::new("loud").long("loud").help("Shout."))
            .arg(Arg::new("quiet").long("quiet"))
            .subcommand(
                Command::new("sub")
                    .about("Does sub things.")
                    .arg(Arg::new("target")),
            )
            .subcommand(Command::new("bare"));
        assert_eq!(
            undocumented(&cmd),
            [
                "t --quiet",
                "t sub <target>",
                "t bare (what the subcommand does)"
            ]
        );
    }
}
