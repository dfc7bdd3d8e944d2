//! `fake-kube-apiserver --listen ADDR [--token T]`: the fake API server as
//! a process, for labs (run inside the underlay namespace, as etcd is).
//! Prints `listening on ADDR` once it accepts connections; stops on
//! SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use fakekube::Shared;

fn usage() -> ExitCode {
    eprintln!("usage: fake-kube-apiserver --listen ADDR:PORT [--token TOKEN]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut listen: Option<SocketAddr> = None;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = Some(addr),
                Err(_) => return usage(),
            },
            ("--token", Some(v)) => token = Some(v),
            _ => return usage(),
        }
    }
    let Some(listen) = listen else {
        return usage();
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let addr = match fakekube::server::bind(listen, Shared::new(token)).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fake-kube-apiserver: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Not println!: a reader that went away must not end the server.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        ExitCode::SUCCESS
    })
}
