//! Making tweed's conflist the one in force in the node's CNI conf dir.
//!
//! containerd and CRI-O read the files of the conf dir that end in
//! `.conf`, `.conflist` or `.json` (libcni's `ConfFiles`, directories
//! skipped) and use the first in byte order. On a node migrating from
//! flannel, `10-flannel.conflist` sorts before `10-tweed.conflist`, so new
//! pods would still get flannel's network. `--take-over NAME` sets such a
//! file aside once tweed's conflist is in place: it is renamed to
//! `NAME.tweed-replaced` (an ending the runtimes ignore), never deleted,
//! so the way back is renaming it back (or letting its installer write it
//! again).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::install_cni::InstallError;

/// What the runtimes append nothing to: the suffix of a set-aside file.
pub const SUFFIX: &str = ".tweed-replaced";
/// How many set-aside copies of one file may pile up (see [`set_aside`]).
const MAX_COPIES: u32 = 100;
/// The endings libcni reads in a conf dir.
const CONFIG_ENDINGS: [&str; 3] = [".conf", ".conflist", ".json"];

/// Checks a `--take-over` name before anything is installed: a plain file
/// name in the conf dir, and not tweed's own conflist `own`.
pub fn check_name(name: &str, own: &str) -> Result<(), InstallError> {
    let bad = |why: &str| InstallError::BadTakeOver {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(bad("must be a plain file name in --conf-dir"));
    }
    if name == own {
        return Err(bad("is tweed's own conflist (--conf-name)"));
    }
    Ok(())
}

/// What [`set_aside`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SetAside {
    /// Renamed to this path.
    Renamed(PathBuf),
    /// There was no such file (already set aside, or never there).
    Absent,
}

/// Renames `dir/name` to `dir/name.tweed-replaced`, atomically. A set-aside
/// copy from an earlier run is only replaced when it holds the same bytes
/// (nothing is lost); otherwise the file goes to the first free
/// `name.tweed-replaced.N`, so no version of it is ever overwritten.
pub fn set_aside(dir: &Path, name: &str) -> Result<SetAside, InstallError> {
    let from = dir.join(name);
    let current = match std::fs::read(&from) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(SetAside::Absent),
        Err(source) => return Err(InstallError::Io { path: from, source }),
    };
    for n in 0..MAX_COPIES {
        let to = match n {
            0 => dir.join(format!("{name}{SUFFIX}")),
            n => dir.join(format!("{name}{SUFFIX}.{n}")),
        };
        match rename_no_replace(&from, &to) {
            Ok(()) => return Ok(SetAside::Renamed(to)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if std::fs::read(&to).is_ok_and(|old| old == current) {
                    std::fs::rename(&from, &to).map_err(|source| InstallError::Io {
                        path: from.clone(),
                        source,
                    })?;
                    return Ok(SetAside::Renamed(to));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(SetAside::Absent),
            Err(source) => return Err(InstallError::Io { path: from, source }),
        }
    }
    Err(InstallError::BadTakeOver {
        name: name.to_string(),
        why: format!(
            "has {MAX_COPIES} set-aside copies ({name}{SUFFIX}*) already; remove old ones"
        ),
    })
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        // A file system without RENAME_NOREPLACE: check, then rename. Only
        // this tool writes `*.tweed-replaced` names, so nothing races it.
        Err(Errno::EINVAL) if to.symlink_metadata().is_ok() => Err(ErrorKind::AlreadyExists.into()),
        Err(Errno::EINVAL) => std::fs::rename(from, to),
        other => other.map_err(std::io::Error::from),
    }
}

/// The file the runtimes use: the first, in byte order, of the conf dir's
/// non-directory entries ending in `.conf`, `.conflist` or `.json`.
pub fn in_force(dir: &Path) -> Result<Option<String>, InstallError> {
    let io = |source| InstallError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if CONFIG_ENDINGS.iter().any(|e| extension_is(&name, e)) {
            names.push(name);
        }
    }
    Ok(names.into_iter().min())
}

/// Go's `filepath.Ext(name) == ending`: the ending starts at the last dot.
fn extension_is(name: &str, ending: &str) -> bool {
    name.rfind('.').is_some_and(|i| &name[i..] == ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_from_the_last_dot_as_libcni_reads_them() {
        assert!(extension_is("10-flannel.conflist", ".conflist"));
        assert!(extension_is("99-loopback.conf", ".conf"));
        assert!(!extension_is("10-flannel.conflist", ".conf"));
        assert!(!extension_is(
            "10-flannel.conflist.tweed-replaced",
            ".conflist"
        ));
        assert!(!extension_is("conflist", ".conflist"));
    }

    #[test]
    fn names_must_be_plain_and_not_tweeds_own() {
        let own = "10-tweed.conflist";
        check_name("10-flannel.conflist", own).unwrap();
        for bad in ["", ".", "..", "../10-flannel.conflist", "a/b", own] {
            assert!(check_name(bad, own).is_err(), "{bad:?}");
        }
    }
}
