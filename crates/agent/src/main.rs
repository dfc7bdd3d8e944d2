//! `tweedd`: the tweed node agent. Flags are documented in `--help` and in
//! docs/agent.md; their names are fixed (the lab, the tests and operators'
//! units use them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tweedd::agent::{self, AgentOptions};
use tweedd::config::NetConfig;
use tweedd::identity::IdentityOptions;
use tweedd::lease::LEASE_TTL;
use tweedd::net_conf_source::{self, DEFAULT_NET_CONF, Source};
use tweedd::store::any::AnyStore;
use tweedd::store::etcd::EtcdOptions;
use tweedd::store::etcd_tls_dir;
use tweedd::store::kube::KubeOptions;
use tweedd::store::kube::node::Networks;
use tweedd::store::retry;

#[derive(Parser, Debug)]
#[command(name = "tweedd", version, about = "The tweed node agent")]
struct Flags {
    /// Network configuration (a superset of flannel's net-conf.json)
    /// [default: /etc/tweed/net-conf.json; without that file and with an
    /// etcd store, flannel's <etcd-prefix>/config in etcd].
    #[arg(long)]
    net_conf: Option<PathBuf>,
    /// Lease store: file:///path, etcd://host:port[,host:port] (etcds:// or
    /// https://host:port,... for TLS), or kube (Node objects in the
    /// Kubernetes API).
    #[arg(
        long,
        env = "TWEED_STORE",
        default_value = "file:///var/lib/tweed/store"
    )]
    store: String,
    /// With --store kube: the kubeconfig to use (default: the pod's
    /// service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Key prefix in etcd (flannel's layout).
    #[arg(long, default_value = "/coreos.com/network")]
    etcd_prefix: String,
    /// CA bundle (PEM) that signed etcd's server certificate (TLS stores).
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth.
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
    /// A directory laid out as a Kubernetes TLS Secret (ca.crt, tls.crt,
    /// tls.key): the etcd TLS files not given by their own flags are taken
    /// from it when the store is etcd over TLS; ignored otherwise.
    #[arg(long)]
    etcd_tls_dir: Option<PathBuf>,
    /// etcd user, for clusters with authentication enabled.
    #[arg(long)]
    etcd_username: Option<String>,
    /// etcd password (better given in the environment).
    #[arg(long, env = "TWEED_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
    /// This node's name (default: the host name); with --store kube, the
    /// Kubernetes node name.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Underlay interface, by name or address; repeat to give fallbacks.
    #[arg(long)]
    iface: Vec<String>,
    /// Underlay interface name pattern; repeatable.
    #[arg(long)]
    iface_regex: Vec<String>,
    /// Use the interface the route to this address leaves through.
    #[arg(long)]
    iface_can_reach: Option<IpAddr>,
    /// Address to publish to peers instead of the interface's (NAT).
    #[arg(long)]
    public_ip: Option<Ipv4Addr>,
    /// IPv6 address to publish to peers instead of the interface's.
    #[arg(long)]
    public_ipv6: Option<Ipv6Addr>,
    /// Where the node lease file for the CNI plugin goes.
    #[arg(long, default_value = tweed_node::subnet_env::DEFAULT_PATH)]
    subnet_file: PathBuf,
    /// Also write flannel's lease file (FLANNEL_* keys) here.
    #[arg(long)]
    flannel_subnet_file: Option<PathBuf>,
    /// Masquerade pod traffic leaving the cluster network.
    #[arg(long)]
    ip_masq: bool,
    /// Take over a flannel node and live beside flannel nodes during a
    /// rolling migration: adopt flannel's VXLAN device `flannel.<VNI>` and
    /// its MAC and flannel's lease for this node's address, and (store
    /// kube) read and write flannel's node annotations too.
    #[arg(long, env = "TWEED_FLANNEL_COMPAT")]
    flannel_compat: bool,
    /// Enforce Kubernetes NetworkPolicies on this node's pods, with
    /// nftables (docs/network-policy.md). Needs the Kubernetes API, whatever
    /// the store: --kubeconfig, or the pod's service account.
    #[arg(long, env = "TWEED_NETWORK_POLICY")]
    network_policy: bool,
    /// Serve /healthz, /readyz and /metrics on this address.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Where the CNI plugin records pods' wires (its `wireDir`) and the
    /// agent reports on them.
    #[arg(long, default_value = tweed_wire::DEFAULT_DIR)]
    wire_dir: PathBuf,
    /// Where the agent writes each addressed segment's block (the plugin's
    /// `segmentDir`).
    #[arg(long, default_value = tweed_segment::block::DEFAULT_DIR)]
    segment_dir: PathBuf,
    /// Where `tweed urunc-hook` records the guests whose DHCP the agent
    /// answers (docs/urunc.md).
    #[arg(long, default_value = tweed_guest::dhcp::DEFAULT_DIR)]
    guest_dhcp_dir: PathBuf,
    /// Where the agent keeps what it must remember across restarts.
    #[arg(long, default_value = "/var/lib/tweed")]
    state_dir: PathBuf,
    /// Lease lifetime in seconds (flannel: 24 h).
    #[arg(long, default_value_t = LEASE_TTL.as_secs())]
    lease_ttl: u64,
    /// Seconds between lease renewals.
    #[arg(long, default_value_t = 3600)]
    renew_interval: u64,
    /// Seconds between full resyncs of store and kernel.
    #[arg(long, default_value_t = 60)]
    resync_interval: u64,
    /// Log lines as JSON objects instead of text.
    #[arg(long)]
    log_json: bool,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TWEED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr (what container runtimes and journald collect),
    // with colours only when a person is watching.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Opens the store, retrying while it is unreachable; a wrong URL or
/// options end the program.
async fn open_store(
    url: &str,
    etcd: EtcdOptions,
    kube: KubeOptions,
) -> Result<AnyStore, (ExitCode, String)> {
    retry::while_unavailable(|| AnyStore::open_with(url, etcd.clone(), Some(kube.clone())))
        .await
        .map_err(|e| (ExitCode::from(2), e.to_string()))
}

/// The kube store's options: it needs the configured networks to pick the
/// node's subnet out of its podCIDRs.
fn kube_options(flags: &Flags, node_name: &str, config: &NetConfig) -> KubeOptions {
    KubeOptions {
        node_name: node_name.to_string(),
        kubeconfig: flags.kubeconfig.clone(),
        flannel_compat: flags.flannel_compat,
        networks: Networks {
            ipv4: config.pools.ipv4.as_ref().map(|p| p.network),
            ipv6: config.pools.ipv6.as_ref().map(|p| p.network),
        },
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(flags.log_json);
    // A container started without NET_ADMIN can program nothing: say so
    // and stop, rather than lease a subnet and fail every request after.
    if let Err(e) = tweedd::capabilities::check() {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }

    // Configuration errors end the program before anything is programmed;
    // a file is read at once, etcd's key once the store answers.
    let default_net_conf = Path::new(DEFAULT_NET_CONF);
    let source = Source::choose(flags.net_conf.as_deref(), default_net_conf, &flags.store);
    let file_config = match &source {
        Source::File(path) => match net_conf_source::read_file(path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        },
        Source::Etcd => None,
    };
    if flags.renew_interval == 0 || flags.lease_ttl <= flags.renew_interval {
        tracing::error!("--renew-interval must be positive and shorter than --lease-ttl");
        return ExitCode::from(2);
    }
    let opts = AgentOptions {
        node_name: flags.node_name.clone().unwrap_or_else(hostname),
        identity: IdentityOptions {
            iface: flags.iface.clone(),
            iface_regex: flags.iface_regex.clone(),
            iface_can_reach: flags.iface_can_reach,
            public_ip: flags.public_ip,
            public_ipv6: flags.public_ipv6,
            need_ipv4: false,
            need_ipv6: false,
        },
        subnet_file: flags.subnet_file.clone(),
        flannel_subnet_file: flags.flannel_subnet_file.clone(),
        ip_masq: flags.ip_masq,
        flannel_compat: flags.flannel_compat,
        health_addr: flags.health_addr,
        state_dir: flags.state_dir.clone(),
        wire_dir: flags.wire_dir.clone(),
        segment_dir: flags.segment_dir.clone(),
        guest_dhcp_dir: flags.guest_dhcp_dir.clone(),
        lease_ttl: Duration::from_secs(flags.lease_ttl),
        renew_interval: Duration::from_secs(flags.renew_interval),
        resync_interval: Duration::from_secs(flags.resync_interval.max(1)),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut etcd = EtcdOptions {
        prefix: flags.etcd_prefix.clone(),
        ca_file: flags.etcd_cafile.clone(),
        cert_file: flags.etcd_certfile.clone(),
        key_file: flags.etcd_keyfile.clone(),
        username: flags.etcd_username.clone(),
        password: flags.etcd_password.clone(),
        ..EtcdOptions::default()
    };
    if let Some(dir) = &flags.etcd_tls_dir {
        etcd_tls_dir::fill(&mut etcd, &flags.store, dir);
    }
    if flags.kubeconfig.is_some() && flags.store != "kube" && !flags.network_policy {
        tracing::error!("--kubeconfig is only for --store kube or --network-policy");
        return ExitCode::from(2);
    }
    let result = runtime.block_on(async {
        let (store, config) = match file_config {
            Some(config) => {
                let kube = kube_options(&flags, &opts.node_name, &config);
                (open_store(&flags.store, etcd, kube).await?, config)
            }
            None => net_conf_source::open_etcd(&flags.store, etcd, default_net_conf)
                .await
                .map_err(|e| (ExitCode::from(2), e.to_string()))?,
        };
        if flags.network_policy {
            let client = tweedd::store::kube::client(flags.kubeconfig.as_deref())
                .await
                .map_err(|e| (ExitCode::from(2), format!("--network-policy: {e}")))?;
            tweedd::policy::spawn(client, opts.node_name.clone());
        } else {
            tweedd::policy::remove_stale();
        }
        agent::run(opts, config, store)
            .await
            .map_err(|e| (ExitCode::FAILURE, e.to_string()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            tracing::error!("{e}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_text() {
        tweed_testkit::cli::assert_documented(&super::Flags::command());
    }
}
