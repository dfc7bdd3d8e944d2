//! The plugin asking tweedd for another block of a segment's subnets.
//!
//! The plugin never talks to the store, so when this node's blocks run
//! (nearly) full it leaves a request file, `<dir>/<name>.more`, beside the
//! segment's block file. tweedd claims another block, adds it to the block
//! file and removes the request; when no block is free it writes why into
//! the request instead, and the plugin reports that reason rather than
//! asking again. Data still flows one way through the store: only tweedd
//! claims.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The request file of segment `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.more"))
}

/// What a request file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Asked for; tweedd has not answered yet.
    Pending,
    /// tweedd could not claim another block, for this reason.
    Refused(String),
}

const REFUSED: &str = "refused: ";

/// Asks for another block of segment `name` (the plugin's side); a request
/// already there, pending or answered, is left as it is.
pub fn ask(dir: &Path, name: &str) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path(dir, name))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The request of segment `name`, if there is one.
pub fn read(dir: &Path, name: &str) -> io::Result<Option<Request>> {
    match fs::read_to_string(path(dir, name)) {
        Ok(text) => Ok(Some(match text.strip_prefix(REFUSED) {
            Some(reason) => Request::Refused(reason.trim().to_string()),
            None => Request::Pending,
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Answers the request with why no block could be claimed (tweedd's side;
/// the request stays, and tweedd tries again).
pub fn refuse(dir: &Path, name: &str, reason: &str) -> io::Result<()> {
    let file = path(dir, name);
    let tmp = file.with_extension("more.tmp");
    fs::write(&tmp, format!("{REFUSED}{}\n", reason.replace('\n', " ")))?;
    fs::rename(&tmp, &file).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Removes the request: answered with a block, or its segment is gone.
pub fn clear(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(path(dir, name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_asked_refused_and_cleared() {
        let dir = tempfile_dir();
        assert_eq!(read(&dir, "lab1").unwrap(), None);
        ask(&dir, "lab1").unwrap();
        assert_eq!(read(&dir, "lab1").unwrap(), Some(Request::Pending));
        refuse(&dir, "lab1", "all 16 blocks\nare claimed").unwrap();
        // Asking again does not hide the answer.
        ask(&dir, "lab1").unwrap();
        assert_eq!(
            read(&dir, "lab1").unwrap(),
            Some(Request::Refused("all 16 blocks are claimed".into()))
        );
        clear(&dir, "lab1").unwrap();
        clear(&dir, "lab1").unwrap();
        assert_eq!(read(&dir, "lab1").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tweed-more-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
