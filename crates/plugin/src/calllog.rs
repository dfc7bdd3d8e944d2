//! The per-call log: one JSON line per CNI invocation.
//!
//! Runtimes often swallow a plugin's stderr, so the plugin keeps its own
//! record with microsecond timestamps. Writing it must never fail the call:
//! every error here is ignored.

mod rotation;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

pub use rotation::{DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, LogFile};

pub const DEFAULT_LOG_FILE: &str = "/var/log/tweed/cni.log";

/// What one call did, filled in as the call goes.
#[derive(Debug, Default, Clone)]
pub struct CallRecord {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub network: Option<String>,
    /// Addresses handed out or released.
    pub ips: Vec<String>,
    pub error: Option<(u32, String)>,
}

impl CallRecord {
    /// Appends the record to the log (creating its directory, rotating a
    /// full file). An empty path turns logging off.
    pub fn append(&self, log: &LogFile, started: SystemTime, took: Duration) {
        if log.path.as_os_str().is_empty() {
            return;
        }
        let line = self.to_line(started, took);
        let file = match open_for_append(&log.path) {
            Ok(f) if log.is_full(&f) => {
                log.rotate(f);
                open_for_append(&log.path)
            }
            other => other,
        };
        if let Ok(mut f) = file {
            // One write call per line: appends of this size land whole even
            // when many plugin processes log at once.
            let _ = f.write_all(line.as_bytes());
        }
    }

    fn to_line(&self, started: SystemTime, took: Duration) -> String {
        let mut m = Map::new();
        m.insert("ts".into(), json!(rfc3339_micros(started)));
        m.insert("cmd".into(), json!(self.command));
        let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        };
        opt(&mut m, "containerID", &self.container_id);
        opt(&mut m, "netns", &self.netns);
        opt(&mut m, "ifname", &self.ifname);
        opt(&mut m, "network", &self.network);
        if !self.ips.is_empty() {
            m.insert("ips".into(), json!(self.ips));
        }
        match &self.error {
            None => {
                m.insert("result".into(), json!("ok"));
            }
            Some((code, msg)) => {
                m.insert("result".into(), json!("error"));
                m.insert("code".into(), json!(code));
                m.insert("msg".into(), json!(msg));
            }
        }
        m.insert("durationUs".into(), json!(took.as_micros() as u64));
        m.insert("pid".into(), json!(std::process::id()));
        let mut line = Value::Object(m).to_string();
        line.push('\n');
        line
    }
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    // The directory usually exists: only create it when opening fails.
    open().or_else(|_| {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        open()
    })
}

/// The log to use before the configuration could be read.
pub fn default_log() -> LogFile {
    LogFile::at(PathBuf::from(DEFAULT_LOG_FILE))
}

/// `2026-11-22T06:01:02.123456Z`.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds() {
        let t = UNIX_EPOCH + Duration::new(1_795_327_262, 123_456_789);
        assert_eq!(rfc3339_micros(t), "2026-11-22T06:01:02.123456Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_micros(leap)[..10], "2000-02-29");
    }

    #[test]
    fn a_line_is_one_json_object() {
        let r = CallRecord {
            command: "ADD".into(),
            container_id: Some("abc".into()),
            ifname: Some("eth0".into()),
            ips: vec!["10.244.1.2/24".into()],
            error: Some((7, "mtu: bad".into())),
            ..Default::default()
        };
        let line = r.to_line(UNIX_EPOCH, Duration::from_micros(1234));
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["code"], 7);
        assert_eq!(v["durationUs"], 1234);
        assert_eq!(v["result"], "error");
    }

    #[test]
    fn unwritable_log_is_ignored() {
        let r = CallRecord::default();
        r.append(
            &LogFile::at("/proc/tweed-cannot-write/cni.log".into()),
            SystemTime::now(),
            Duration::ZERO,
        );
    }
}
