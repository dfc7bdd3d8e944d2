//! Packet captures with tcpdump inside a namespace: what crossed, as the
//! standard tool decodes it (802.1Q tags included, which a plain packet
//! socket does not show: the kernel moves them into metadata).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Capture {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Capture {
    /// Starts `tcpdump -e -nn` on `ifname` in `netns` for the first frame
    /// matching `filter`, and waits until it listens.
    pub fn start(netns: &str, ifname: &str, filter: &str) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", netns, "tcpdump", "-i", ifname, "-c", "1", "-e", "-nn", "-l",
                "-xx",
            ])
            .arg(filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/install-deps.sh installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let mut err = BufReader::new(stderr);
        // "verbose output suppressed..." comes first, then "listening on".
        let mut said = String::new();
        while !said.contains("listening on") {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("tcpdump in {netns} did not start: {said}");
            }
            said.push_str(&line);
        }
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
        });
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Capture { child, lines }
    }

    /// What tcpdump printed for the captured frame (header line and hex),
    /// or `None` if nothing matched within `timeout`.
    pub fn wait(self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => out.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        (!out.is_empty()).then(|| out.join("\n"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes tcpdump printed with `-xx` (lines `\t0x0010:  4500 0054 ...`).
pub fn frame_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((offset, hex)) = line.trim_start().split_once(':') else {
            continue;
        };
        if !offset.starts_with("0x") {
            continue;
        }
        for word in hex.split_whitespace() {
            for i in (0..word.len()).step_by(2) {
                out.push(u8::from_str_radix(&word[i..i + 2], 16).expect("hex byte"));
            }
        }
    }
    out
}
