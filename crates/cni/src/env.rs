//! The `CNI_*` environment variables of one plugin call.
//!
//! The runtime passes the per-call parameters in the environment. They are validated here,
//! up front and per command, so that a bad call fails with code 4 naming the variable
//! before the plugin touches any state.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::args::CniArgs;
use crate::error::CniError;

/// Name of the variable holding the operation.
pub const CNI_COMMAND: &str = "CNI_COMMAND";
/// Name of the variable holding the container ID.
pub const CNI_CONTAINERID: &str = "CNI_CONTAINERID";
/// Name of the variable holding the network namespace path.
pub const CNI_NETNS: &str = "CNI_NETNS";
/// Name of the variable holding the interface name inside the container.
pub const CNI_IFNAME: &str = "CNI_IFNAME";
/// Name of the variable holding the `K=V;K=V` arguments.
pub const CNI_ARGS: &str = "CNI_ARGS";
/// Name of the variable holding the plugin search path.
pub const CNI_PATH: &str = "CNI_PATH";

/// Linux `IFNAMSIZ` minus the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

/// The operation requested through `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach; must succeed when things are already gone.
    Del,
    /// Verify the attachment against `prevResult` (0.4.0+).
    Check,
    /// Report whether the plugin can service `ADD` (1.1.0+).
    Status,
    /// Remove everything not in the valid-attachments list (1.1.0+).
    Gc,
    /// Report the supported versions.
    Version,
}

const ALL_COMMANDS: &str = "ADD, DEL, CHECK, STATUS, GC, VERSION";

impl Command {
    /// The spelling used in `CNI_COMMAND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Only `CNI_COMMAND`, read through `get` (code 4 when unset, empty or unknown).
    /// Useful to decide how to read stdin before validating the rest.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Command, CniError> {
        match get(CNI_COMMAND).filter(|v| !v.is_empty()) {
            Some(c) => c.parse(),
            None => Err(CniError::invalid_env(
                CNI_COMMAND,
                format!("not set; expected one of {ALL_COMMANDS}"),
            )),
        }
    }

    /// [`Command::from_vars`] over the process environment.
    pub fn from_process() -> Result<Command, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Whether the command concerns one container attachment (and so takes
    /// `CNI_CONTAINERID`, `CNI_IFNAME` and `CNI_ARGS`).
    pub fn is_per_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl FromStr for Command {
    type Err = CniError;

    /// Exact, upper-case match as the spec writes the commands.
    fn from_str(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => {
                return Err(CniError::invalid_env(
                    CNI_COMMAND,
                    format!("unknown command {s:?}; expected one of {ALL_COMMANDS}"),
                ));
            }
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated parameters of one call.
///
/// Per-container fields are `Some` exactly when the command uses them and the runtime set
/// them: always for `ADD`/`CHECK`, `netns` may be `None` for `DEL` (the namespace can be
/// gone), and all are `None` for `STATUS`, `GC` and `VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`, validated with [`validate_container_id`].
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`, validated with [`validate_ifname`].
    pub ifname: Option<String>,
    /// `CNI_ARGS`, parsed (empty for commands that do not take it).
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:` with empty entries dropped. Not required: tweed does not
    /// need to find other plugins for its own work.
    pub path: Vec<PathBuf>,
}

impl Environment {
    /// Reads and validates the variables through `get`, so tests need not touch the
    /// process environment. Empty values count as unset.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Environment, CniError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());

        let command = Command::from_vars(&get)?;
        let path = var(CNI_PATH)
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();

        let mut env = Environment {
            command,
            container_id: None,
            netns: None,
            ifname: None,
            args: CniArgs::default(),
            path,
        };
        if !command.is_per_container() {
            return Ok(env);
        }

        let container_id = var(CNI_CONTAINERID);
        let netns = var(CNI_NETNS);
        let ifname = var(CNI_IFNAME);
        let netns_required = command != Command::Del;

        let mut missing = Vec::new();
        if container_id.is_none() {
            missing.push(CNI_CONTAINERID);
        }
        if netns.is_none() && netns_required {
            missing.push(CNI_NETNS);
        }
        if ifname.is_none() {
            missing.push(CNI_IFNAME);
        }
        if !missing.is_empty() {
            return Err(CniError::invalid_env(
                &missing.join(", "),
                format!("required for {command} but not set"),
            ));
        }

        if let Some(id) = &container_id {
            validate_container_id(id)
                .map_err(|m| CniError::invalid_env(CNI_CONTAINERID, m.to_string()))?;
        }
        if let Some(name) = &ifname {
            validate_ifname(name).map_err(|m| CniError::invalid_env(CNI_IFNAME, m.to_string()))?;
        }
        env.args = CniArgs::parse(&var(CNI_ARGS).unwrap_or_default())?;
        env.container_id = container_id;
        env.netns = netns.map(PathBuf::from);
        env.ifname = ifname;
        Ok(env)
    }

    /// [`Environment::from_vars`] over the real process environment. Values that are not
    /// UTF-8 count as unset (and so fail where the variable is required).
    pub fn from_process() -> Result<Environment, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }
}

/// Why a name is refused. The text describes the problem without naming a
/// variable, so callers can prefix their own context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("interface name is empty")]
    EmptyIfname,
    #[error("name {0:?} is not a valid interface name")]
    Dots(String),
    #[error("name {name:?} is longer than {MAX_IFNAME_LEN} characters ({} bytes)", name.len())]
    TooLong { name: String },
    #[error("name {name:?} contains {c:?}; '/', ':' and whitespace are not allowed")]
    IfnameChar { name: String, c: char },
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} must start with an ASCII letter or digit")]
    Start { what: &'static str, name: String },
    #[error(
        "{what} {name:?} contains {c:?}; only ASCII letters, digits, '_', '.' and '-' are allowed"
    )]
    Char {
        what: &'static str,
        name: String,
        c: char,
    },
}

/// Checks an interface name the way the kernel does (`dev_valid_name`): not empty, not
/// `.` or `..`, at most 15 bytes, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::EmptyIfname);
    }
    if name == "." || name == ".." {
        return Err(InvalidName::Dots(name.into()));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(InvalidName::TooLong { name: name.into() });
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(InvalidName::IfnameChar {
            name: name.into(),
            c,
        });
    }
    Ok(())
}

/// Checks a container ID against the spec: an ASCII letter or digit, then letters,
/// digits, `_`, `.` or `-`. The same rule applies to network names.
pub fn validate_container_id(id: &str) -> Result<(), InvalidName> {
    validate_cni_name(id, "container ID")
}

/// The shared CNI name rule, with `what` naming the thing in the message.
pub(crate) fn validate_cni_name(name: &str, what: &'static str) -> Result<(), InvalidName> {
    let Some(first) = name.chars().next() else {
        return Err(InvalidName::Empty { what });
    };
    if !first.is_ascii_alphanumeric() {
        return Err(InvalidName::Start {
            what,
            name: name.into(),
        });
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(InvalidName::Char {
            what,
            name: name.into(),
            c,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<Environment, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_vars(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "f3a1b2c4d5e6"),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        k: &'static str,
        v: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<_> = base.iter().copied().filter(|(key, _)| *key != k).collect();
        out.push((k, v));
        out
    }

    fn assert_env_err(res: Result<Environment, CniError>, var: &str, what: &str) {
        let err = res.expect_err("expected an error");
        assert_eq!(err.code, code::INVALID_ENV, "{err}");
        assert!(
            err.msg.starts_with(var),
            "{:?} should start with {var}",
            err.msg
        );
        assert!(
            err.msg.contains(what),
            "{:?} should contain {what:?}",
            err.msg
        );
    }

    #[test]
    fn full_add() {
        let env = env_of(ADD).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id.as_deref(), Some("f3a1b2c4d5e6"));
        assert_eq!(env.netns, Some(PathBuf::from("/var/run/netns/cni-1234")));
        assert_eq!(env.ifname.as_deref(), Some("eth0"));
        assert!(env.args.ignore_unknown);
        assert_eq!(env.args.k8s_pod_name.as_deref(), Some("web-0"));
        assert_eq!(
            env.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn command_missing_or_unknown() {
        assert_env_err(env_of(&[]), "CNI_COMMAND", "not set");
        assert_env_err(env_of(&[("CNI_COMMAND", "")]), "CNI_COMMAND", "not set");
        assert_env_err(env_of(&[("CNI_COMMAND", "add")]), "CNI_COMMAND", "\"add\"");
        assert_env_err(env_of(&[("CNI_COMMAND", "FOO")]), "CNI_COMMAND", "ADD, DEL");
    }

    #[test]
    fn command_alone() {
        let get = |v: &'static str| move |k: &str| (k == "CNI_COMMAND").then(|| v.to_owned());
        assert_eq!(Command::from_vars(get("GC")).unwrap(), Command::Gc);
        assert_eq!(
            Command::from_vars(get("")).unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            Command::from_vars(|_| None).unwrap_err().code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn every_command_parses() {
        for (s, c) in [
            ("ADD", Command::Add),
            ("DEL", Command::Del),
            ("CHECK", Command::Check),
            ("STATUS", Command::Status),
            ("GC", Command::Gc),
            ("VERSION", Command::Version),
        ] {
            assert_eq!(s.parse::<Command>().unwrap(), c);
            assert_eq!(c.to_string(), s);
        }
    }

    #[test]
    fn add_and_check_need_id_netns_ifname() {
        for cmd in ["ADD", "CHECK"] {
            let base = with(ADD, "CNI_COMMAND", cmd);
            for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
                let missing: Vec<_> = base.iter().copied().filter(|(k, _)| *k != var).collect();
                assert_env_err(env_of(&missing), var, "required for");
                assert_env_err(env_of(&with(&base, var, "")), var, "not set");
            }
        }
    }

    #[test]
    fn missing_variables_are_all_named() {
        let err = env_of(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(
            err.msg,
            "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME: required for ADD but not set"
        );
    }

    #[test]
    fn cni_path_is_optional() {
        let env = env_of(&with(ADD, "CNI_PATH", "")).unwrap();
        assert!(env.path.is_empty());
    }

    #[test]
    fn del_allows_missing_netns() {
        let del: Vec<_> = with(ADD, "CNI_COMMAND", "DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let env = env_of(&del).unwrap();
        assert_eq!(env.netns, None);
        let env = env_of(&with(&del, "CNI_NETNS", "")).unwrap();
        assert_eq!(env.netns, None);
        let no_id: Vec<_> = del
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_CONTAINERID")
            .collect();
        assert_env_err(env_of(&no_id), "CNI_CONTAINERID", "required for DEL");
        let no_if: Vec<_> = del
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_IFNAME")
            .collect();
        assert_env_err(env_of(&no_if), "CNI_IFNAME", "required for DEL");
    }

    #[test]
    fn status_gc_version_need_nothing_per_container() {
        for cmd in ["STATUS", "GC", "VERSION"] {
            let env = env_of(&[("CNI_COMMAND", cmd)]).unwrap();
            assert_eq!(env.container_id, None);
            // Per-container variables are ignored, not validated, for these commands.
            let env = env_of(&[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", "-bad"),
                ("CNI_IFNAME", "way-too-long-interface"),
                ("CNI_ARGS", "garbage"),
            ])
            .unwrap();
            assert_eq!(env.ifname, None);
        }
    }

    #[test]
    fn bad_container_ids() {
        for (id, what) in [
            ("-abc", "must start"),
            ("_abc", "must start"),
            ("abc/def", "'/'"),
            ("abc def", "' '"),
            ("ab:c", "':'"),
        ] {
            assert_env_err(
                env_of(&with(ADD, "CNI_CONTAINERID", id)),
                "CNI_CONTAINERID",
                what,
            );
        }
        for id in ["a", "0", "abc_def.ghi-jkl", "A1"] {
            assert!(validate_container_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn bad_ifnames() {
        let long = "a234567890123456";
        let err = env_of(&with(ADD, "CNI_IFNAME", long)).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.starts_with(&format!(
            "CNI_IFNAME: name \"{long}\" is longer than 15 characters"
        )));
        for (name, what) in [
            (".", "not a valid"),
            ("..", "not a valid"),
            ("eth/0", "'/'"),
            ("eth:0", "':'"),
            ("eth 0", "' '"),
            ("eth\t0", "'\\t'"),
        ] {
            assert_env_err(env_of(&with(ADD, "CNI_IFNAME", name)), "CNI_IFNAME", what);
        }
        // Exactly 15 bytes is fine; multi-byte characters count as bytes.
        assert!(validate_ifname("a23456789012345").is_ok());
        assert!(validate_ifname("ééééééééé").is_err());
        assert!(validate_ifname("").is_err());
    }

    #[test]
    fn bad_cni_args_fail_the_call() {
        assert_env_err(
            env_of(&with(ADD, "CNI_ARGS", "IP=300.1.1.1")),
            "CNI_ARGS",
            "IP",
        );
    }
}
