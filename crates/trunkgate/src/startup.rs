//! `trunkgate check` and `trunkgate run`: load the policy, resolve peers, bind every socket,
//! wire the core, the TCP tasks, the admin API and the signal handlers together, and wait for
//! the drain to finish.

use crate::account_metrics::AccountCollector;
use crate::admin::{self, AdminState, TrunksView};
use crate::admin_auth::{AdminAuth, Token, load_token};
use crate::drills::DrillCollector;
use crate::fd_budget::{BudgetCollector, BudgetView, FdBudget};
use crate::live::LivePolicy;
use crate::media_adapter::RelayAdapter;
use crate::media_metrics::MediaCollector;
use crate::metrics::{CoreStatus, PeerViews, ShellMetrics, SipCollector};
use crate::shell::admit::Admit;
use crate::shell::{self, Ended, SipShell, tcp, udp};
use crate::trunk_health::{TrunkCounts, TrunkHealthFeed, TrunkMetrics};
use anyhow::Context as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::mpsc;
use trunkgate_config::{
    Host, HostPort, ListenTransport, MediaFastPath, MediaLatch, Policy, PolicyErrors,
};
use trunkgate_media::{Event, Latch, MediaConfig, QualityConfig, Relay};
use trunkgate_sip::message::Limits;
use trunkgate_sip::{Flow, Proxy, ProxyConfig, ProxyMetrics, Routing, Timers, Transport};

/// `--config FILE`, or the embedded default.
fn load_policy(path: Option<&Path>) -> Result<Policy, PolicyErrors> {
    match path {
        Some(path) => Policy::load(path),
        None => Policy::embedded_default(),
    }
}

fn listener_list(policy: &Policy) -> String {
    let names: Vec<String> = policy
        .listen
        .sip
        .iter()
        .map(|l| {
            let t = match l.transport {
                ListenTransport::Udp => "udp",
                ListenTransport::Tcp => "tcp",
                ListenTransport::Tls => "tls",
            };
            format!("{t}:{}", l.address)
        })
        .collect();
    names.join(", ")
}

/// One line: what the policy holds. Host names are not resolved and nothing is bound.
pub fn summary(policy: &Policy) -> String {
    format!(
        "policy OK: {} trunks, {} routes, listening on {}",
        policy.trunks.len(),
        policy.routes.len(),
        listener_list(policy)
    )
}

pub fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    match load_policy(path) {
        Ok(policy) => {
            // Keys against their certificates, CA files against the TLS library: the
            // policy check reads the files but cannot tell without the crypto provider.
            if let Err(error) = crate::shell::tls::check(&policy) {
                eprintln!("TLS: {error:#}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{}", summary(&policy));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Resolve a peer address without [`crate::dns`]: IP literals directly, names with the
/// system resolver (A/AAAA at the policy's port, first address; no SRV). Tests and tools.
pub fn resolve(
    host: &HostPort,
    _transport: trunkgate_config::PeerTransport,
) -> std::io::Result<Vec<SocketAddr>> {
    if let Some(address) = host.to_socket_addr() {
        return Ok(vec![address]);
    }
    let Host::Name(name) = &host.host else {
        return Ok(Vec::new());
    };
    let first = (name.as_str(), host.port).to_socket_addrs()?.next();
    first.map(|a| vec![a]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"))
    })
}

/// Raise the soft open-files limit to the hard limit (sockets are file descriptors) and
/// return the soft limit in force afterwards (`None`: it could not be read).
fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-files limit");
                Some(hard)
            }
            Err(error) => {
                tracing::warn!(soft, hard, %error, "could not raise the open-files limit");
                Some(soft)
            }
        },
        Ok((soft, _)) => {
            tracing::debug!(limit = soft, "open-files limit already at its maximum");
            Some(soft)
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the open-files limit");
            None
        }
    }
}

/// The open-files limit assumed when it cannot be read (the usual default soft limit).
const ASSUMED_NOFILE: u64 = 1024;

fn timers(policy: &Policy) -> Timers {
    Timers {
        t1: policy.sip.t1,
        t2: policy.sip.t2,
        t4: policy.sip.t4,
        timer_c: policy.sip.timer_c,
    }
}

fn limits(policy: &Policy) -> Limits {
    Limits {
        max_message_size: policy.sip.max_message_size,
        max_headers: policy.sip.max_headers as usize,
        max_via: policy.sip.max_via as usize,
    }
}

/// The core's static configuration, with the listeners' actual bound addresses.
/// The core's configuration as `run` builds it, for tests that drive a core directly.
#[cfg(test)]
pub(crate) fn proxy_config_for_tests(policy: &Policy, listeners: Vec<Flow>) -> ProxyConfig {
    proxy_config(policy, listeners)
}

fn proxy_config(policy: &Policy, listeners: Vec<Flow>) -> ProxyConfig {
    let advertised = if policy.listen.advertised.is_empty() {
        listeners
            .first()
            .map(|f| f.local.ip().to_string())
            .unwrap_or_default()
    } else {
        policy.listen.advertised.clone()
    };
    warn_unadvertised_families(
        &advertised,
        policy.listen.advertised_alternate.as_deref(),
        &listeners,
    );
    ProxyConfig {
        advertised,
        advertised_alternate: policy.listen.advertised_alternate.clone(),
        listeners,
        timers: timers(policy),
        limits: limits(policy),
        server_name: format!("Trunkgate/{}", env!("CARGO_PKG_VERSION")),
        dialog_timeout: policy.sip.dialog_timeout,
    }
}

/// A listener on an unspecified address (`[::]`, `0.0.0.0`) writes the advertised host of
/// its own family into Via and Record-Route; without one (no IP literal of that family and
/// no name in `listen.advertised`) it writes the other family's, which its peers cannot
/// reach: say so at start.
fn warn_unadvertised_families(advertised: &str, alternate: Option<&str>, listeners: &[Flow]) {
    let hosts = std::iter::once(advertised).chain(alternate);
    for l in listeners.iter().filter(|l| l.local.ip().is_unspecified()) {
        let served = hosts.clone().any(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_ipv4() == l.local.is_ipv4(),
            Err(_) => !h.is_empty(),
        });
        if !served {
            let family = if l.local.is_ipv4() { "IPv4" } else { "IPv6" };
            tracing::warn!(
                listener = %l.local,
                advertised,
                "listen.advertised names no {family} address for this listener: its Via and \
                 Record-Route carry {advertised}; list one, e.g. advertised = [\"203.0.113.10\", \"2001:db8::10\"]"
            );
        }
    }
}

/// The relay's configuration from `[media]` and the media share of the descriptor budget.
fn media_config(policy: &Policy, budget: &FdBudget) -> MediaConfig {
    let m = &policy.media;
    MediaConfig {
        bind: m.address,
        advertised: m.advertised,
        alternate: m.alternate.map(|a| trunkgate_media::MediaAddress {
            bind: a.address,
            advertised: a.advertised,
        }),
        port_min: m.port_min,
        port_max: m.port_max,
        dscp: m.dscp,
        latch: match m.latch {
            MediaLatch::Auto => Latch::Auto,
            MediaLatch::Any => Latch::Any,
            MediaLatch::SdpIp => Latch::SdpIp,
            MediaLatch::Off => Latch::Off,
        },
        timeout: m.timeout,
        hold_timeout: m.hold_timeout,
        threads: m.threads as usize,
        quarantine: MEDIA_QUARANTINE,
        nice: m.nice,
        max_sockets: usize::try_from(budget.media_sockets()).unwrap_or(usize::MAX),
        quality: QualityConfig {
            one_way_after: m.one_way_after,
            interval: m.quality_interval,
            assumed_delay: m.assumed_delay,
        },
        fastpath: match m.fastpath {
            MediaFastPath::Auto => trunkgate_media::fastpath::FastPath::Auto,
            MediaFastPath::Kernel => trunkgate_media::fastpath::FastPath::Kernel,
            MediaFastPath::Userspace => trunkgate_media::fastpath::FastPath::Userspace,
        },
    }
}

/// A released media port pair is not reused for this long: late packets of the old call
/// (retransmitted re-INVITE answers, jitter buffers flushing) must not reach a new one.
const MEDIA_QUARANTINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-trunk metric slots beyond the trunks of the first policy: room for trunks that
/// reloads add (an id past them still routes; it is just not counted per trunk).
const TRUNK_SLOT_HEADROOM: usize = 64;

/// Refuse an admin listener that is reachable from other hosts without a token.
fn admin_exposure(policy: &Policy, token: Option<&Token>) -> anyhow::Result<()> {
    if token.is_none() && !policy.admin.listen.ip().is_loopback() {
        anyhow::bail!(
            "admin.listen {} is not a loopback address and no admin token is configured: \
             anyone who reaches it could reload the policy or start drills. Set \
             [admin] token_file (or {}) or listen on 127.0.0.1",
            policy.admin.listen,
            crate::admin_auth::TOKEN_ENV
        );
    }
    Ok(())
}

/// Name and `max_sessions` of each account id (dense; a gap, which a first build never has,
/// is labelled `#ID`).
fn account_slots(routing: &crate::routing_adapter::PolicyRouting) -> Vec<(String, Option<u32>)> {
    let accounts = routing.table().accounts();
    let slots = accounts
        .iter()
        .map(|a| usize::from(a.id.0) + 1)
        .max()
        .unwrap_or(0);
    (0..slots)
        .map(|i| {
            accounts
                .iter()
                .find(|a| usize::from(a.id.0) == i)
                .map_or((format!("#{i}"), None), |a| {
                    (a.name.clone(), a.max_sessions)
                })
        })
        .collect()
}

pub fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (policy, text) = match crate::live::read_policy(path) {
        Ok(read) => read,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("trunkgate: refusing to start with an invalid policy");
            return Ok(ExitCode::FAILURE);
        }
    };
    let nofile = raise_nofile_limit().unwrap_or(ASSUMED_NOFILE);
    let budget = FdBudget::plan(nofile, &policy.limits).context("sizing the descriptor budget")?;
    tracing::info!(
        limit = budget.limit,
        media_calls = budget.media_calls,
        media_sockets = budget.media_sockets(),
        sip_connections = budget.sip_connections,
        margin = budget.margin,
        "descriptor budget"
    );
    let token = load_token(policy.admin.token_file.as_deref())?;
    admin_exposure(&policy, token.as_ref())?;
    let first = crate::live::first(policy, text, path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("trunkgate")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(first, token, budget))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    (snapshot, shared, seed): (
        crate::live::Snapshot,
        crate::live::Shared,
        crate::live::BuilderSeed,
    ),
    token: Option<Token>,
    budget: FdBudget,
) -> anyhow::Result<()> {
    let policy = snapshot.policy.clone();
    let routing = snapshot.routing.clone();
    let policy_admission = snapshot.admission.clone();
    let shutdown = crate::shutdown::install().context("installing signal handlers")?;

    // SIP sockets carry `listen.dscp` (CS3 unless set) in their TOS byte.
    let sip_tos = policy.listen.dscp << 2;
    // Sockets first: a port in use stops the start before anything runs.
    let mut udp_listeners = Vec::new();
    let mut tcp_listeners = Vec::new();
    for listener in &policy.listen.sip {
        let address = listener.address;
        match listener.transport {
            ListenTransport::Udp => udp_listeners.push(
                udp::bind_std(address, sip_tos)
                    .with_context(|| format!("binding udp:{address}"))?,
            ),
            ListenTransport::Tcp => tcp_listeners.push(
                tcp::bind(address, sip_tos, Transport::Tcp)
                    .with_context(|| format!("binding tcp:{address}"))?,
            ),
            ListenTransport::Tls => tcp_listeners.push(
                tcp::bind(address, sip_tos, Transport::Tls)
                    .with_context(|| format!("binding tls:{address}"))?,
            ),
        }
    }
    let admin_listener = tokio::net::TcpListener::bind(policy.admin.listen)
        .await
        .with_context(|| format!("binding the admin API on {}", policy.admin.listen))?;

    let flows: Vec<Flow> = udp_listeners
        .iter()
        .map(|l| l.flow)
        .chain(tcp_listeners.iter().map(|(flow, _)| *flow))
        .collect();
    let slots = policy.trunks.len() + TRUNK_SLOT_HEADROOM;
    let proxy_metrics = Arc::new(ProxyMetrics::with_accounts(slots, policy.accounts.len()));
    let shell_metrics = Arc::new(ShellMetrics::default());
    let status = Arc::new(CoreStatus::default());
    // Media slots by trunk id, with room for trunks reloads add (unnamed until then).
    let mut trunk_names = crate::live::names_by_id(&routing);
    trunk_names.resize(slots, String::new());

    // The media relay: its own threads; dead-media reports reach the core as dialog ids.
    let (media_tx, media_rx) = mpsc::unbounded_channel::<(u64, std::time::Duration)>();
    let relay = Arc::new(
        Relay::start(
            media_config(&policy, &budget),
            trunk_names.clone(),
            Box::new(move |event| match event {
                Event::Timeout { call, idle, .. } => {
                    let _ = media_tx.send((call, idle));
                }
            }),
        )
        .context("starting the media relay")?,
    );
    if relay.steered() {
        tracing::info!(
            media_calls = budget.media_calls,
            "descriptor budget: the media share is not used — anchored calls hold no socket \
             (kernel fast path with sk_lookup); calls are bounded by media.ports instead"
        );
    }
    let views: PeerViews = Arc::new(arc_swap::ArcSwap::from_pointee(crate::live::peer_view(
        &routing,
        &policy_admission,
    )));
    let mut registry =
        SipCollector::with_view(proxy_metrics.clone(), shell_metrics.clone(), views.clone())
            .into_registry();
    registry.register_collector(Box::new(MediaCollector::new(relay.metrics())));
    registry.register_collector(Box::new(AccountCollector::new(
        proxy_metrics.clone(),
        account_slots(&routing),
    )));
    let trunk_metrics = TrunkMetrics::new();
    trunk_metrics.register(&mut registry);
    let registrations = crate::registration::Registrations::new(&policy, routing.table())?;
    registrations.register_metrics(&mut registry);
    routing.set_registration_gate(registrations.gate());
    let counts = Arc::new(TrunkCounts::new(slots));
    let health_feed = TrunkHealthFeed::new(routing.clone(), trunk_metrics.clone(), counts.clone());
    registry.register_collector(Box::new(DrillCollector(shared.drills.clone())));

    // Stream connections are judged at accept by the same routing table and admission as
    // datagrams in the core; their caps are the SIP share of the descriptor budget.
    let admit = Arc::new(Admit::new(
        routing.clone(),
        policy_admission.clone(),
        usize::try_from(budget.sip_connections).unwrap_or(usize::MAX),
        policy.limits.connections_per_source,
    ));
    let budget_view = Arc::new(BudgetView::new(budget, admit.clone(), relay.clone()));
    registry.register_collector(Box::new(BudgetCollector(budget_view.clone())));

    let listening: Vec<String> = flows
        .iter()
        .map(|f| format!("{}:{}", f.transport.name(), f.local))
        .collect();
    // Call records: a writer thread behind a bounded queue; the core only hands them over.
    let (records_writer, records_view) = match crate::records_api::start(&policy.records) {
        Some((writer, view)) => (Some(writer), Some(view)),
        None => (None, None),
    };
    let summaries = records_writer
        .as_ref()
        .map(|_| Arc::new(crate::records_feed::MediaSummaries::default()));
    let records_feed = records_writer.as_ref().map(|w| {
        let names = crate::records_feed::Names::of(&routing);
        crate::records_feed::RecordsFeed::new(w.sink(), names, summaries.clone())
    });
    if let Some(view) = &records_view {
        registry.register_collector(Box::new(crate::records_api::RecordsCollector(
            view.counters.clone(),
        )));
    }
    let core_routing: Arc<dyn Routing> = routing;
    let mut proxy = Proxy::new(
        proxy_config(&policy, flows),
        core_routing,
        proxy_metrics.clone(),
    )
    .with_admission(policy_admission)
    .with_media(Arc::new(
        RelayAdapter::new(relay.clone())
            .with_budget(budget_view.clone())
            .with_summaries(summaries),
    ));
    // Trunk ids follow policy order on this first build (`build_routing`).
    for (trunk, credentials) in crate::credentials::trunk_credentials(&policy)? {
        proxy.set_trunk_credentials(trunk, Some(credentials));
    }
    // Test calls: the agent runs in the core loop; its runs are kept for the admin API.
    let testcall_hub = crate::testcall::Hub::new(&mut registry, policy.validate.keep_runs);
    let testcall_agent = {
        let config = proxy_config(&policy, Vec::new());
        let port = udp_listeners
            .first()
            .map_or(trunkgate_config::DEFAULT_SIP_PORT, |l| l.flow.local.port());
        let host = if config.advertised.is_empty() {
            udp_listeners
                .first()
                .map(|l| l.flow.local.ip().to_string())
                .unwrap_or_else(|| "127.0.0.1".to_owned())
        } else {
            config.advertised.clone()
        };
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        // RTP endpoints of test calls: on the relay's address (its advertised one when the
        // relay listens on all addresses).
        let media_ip = if policy.media.address.is_unspecified() {
            policy.media.advertised
        } else {
            policy.media.address
        };
        crate::testcall::TestCalls::new(testcall_hub.clone(), host, media_ip)
    };
    let auth = Arc::new(AdminAuth::new(token));
    registry.register_collector(Box::new(crate::admin_auth::AuthCollector(auth.clone())));
    let (policy_tx, policy_rx) = mpsc::unbounded_channel();
    let tls = Arc::new(crate::shell::tls::TlsShared::new(
        crate::shell::tls::TlsProfiles::none(),
    ));
    let live = Arc::new(LivePolicy::new(
        snapshot,
        shared,
        seed,
        crate::live::Wiring {
            core: policy_tx,
            admit: admit.clone(),
            views,
            proxy: proxy_metrics.clone(),
            counts,
            auth: auth.clone(),
            trunk_metrics,
            relay: Some(relay.clone()),
            tls: tls.clone(),
        },
        &mut registry,
    ));
    live.set_testcalls(testcall_hub);
    crate::testcall_api::spawn_scheduler(live.clone());
    // Every second: flood limiter upkeep (forget idle sources, lift expired bans), load
    // samples (cps, peaks), drained trunks dropped.
    let upkeep = live.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            upkeep.tick();
        }
    });
    crate::shutdown::reload_on_sighup(live.clone()).context("installing the SIGHUP handler")?;
    // DNS names are re-resolved as their TTLs run out; changed addresses rebuild routing.
    let dns_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(dns) = live.dns() {
        let rebuild = live.clone();
        crate::dns::spawn_refresher(
            dns,
            Box::new(move || rebuild.rebuild_for_dns()),
            dns_stop.clone(),
        )
        .context("starting the DNS refresh thread")?;
    }
    let trunks_view = TrunksView {
        live: live.clone(),
        proxy: proxy_metrics,
    };

    let (events_tx, events_rx) = mpsc::channel(shell::EVENT_QUEUE);
    let tcp_shared = Arc::new(
        tcp::TcpShared::new(
            events_tx,
            shell_metrics,
            tcp::TcpSettings {
                limits: limits(&policy),
                idle_timeout: policy.sip.tcp_idle_timeout,
                header_timeout: policy.sip.tcp_header_timeout,
                tos: sip_tos,
            },
            admit,
        )
        .with_tls(tls),
    );
    for (flow, listener) in tcp_listeners {
        tokio::spawn(tcp::accept_loop(listener, flow, tcp_shared.clone()));
    }
    let admin_address = admin_listener.local_addr()?;
    let admin_state = AdminState {
        status: status.clone(),
        registry: Arc::new(registry),
        relay: Some(relay.clone()),
        trunks: Some(trunks_view),
        budget: Some(budget_view),
        live: Some(live),
        auth,
        records: records_view,
    };
    tokio::spawn(admin::serve(admin_listener, admin_state));

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        sip = %listening.join(", "),
        admin = %admin_address,
        trunks = policy.trunks.len(),
        media = %format!(
            "{}:{}-{} (advertised {}){}",
            policy.media.address, policy.media.port_min, policy.media.port_max, policy.media.advertised,
            policy.media.alternate.map_or_else(String::new, |a| format!(
                " and {} (advertised {})", a.address, a.advertised
            ))
        ),
        "trunkgate running"
    );
    // The core gets a thread of its own with a current-thread runtime: its UDP sockets are
    // registered with that thread's reactor, so a datagram wakes the thread that handles it
    // (no cross-thread wake-up per packet; measured: this halved CPU per call). TCP
    // connection tasks and the admin API stay on the multi-thread runtime.
    let spawner = tokio::runtime::Handle::current();
    let grace = policy.sip.shutdown_grace;
    let sip_nice = policy.sip.nice;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Answered calls start the relay's one-way audio check.
    let answered_relay = relay.clone();
    std::thread::Builder::new()
        .name("trunkgate-sip".into())
        .spawn(move || {
            // sip.nice: signaling ahead of other processes on the box when set (default 0:
            // it lowers the round trip under CPU contention but costs CPU per call, see
            // docs/performance.md).
            trunkgate_media::apply_nice("the SIP thread", "sip.nice", sip_nice);
            let result = (|| -> anyhow::Result<Ended> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the SIP core runtime")?;
                runtime.block_on(async move {
                    let udp = udp_listeners
                        .into_iter()
                        .map(udp::BoundUdp::register)
                        .collect::<std::io::Result<Vec<_>>>()
                        .context("registering UDP sockets")?;
                    let core =
                        SipShell::new(proxy, udp, events_rx, tcp_shared, status, grace, spawner)
                            .with_media_timeouts(media_rx)
                            .with_health(health_feed)
                            .with_registrations(registrations)
                            .with_answered(move |dialog| answered_relay.answered(dialog))
                            .with_control(policy_rx)
                            .with_records(records_feed)
                            .with_testcalls(testcall_agent);
                    Ok(core.run(shutdown).await)
                })
            })();
            let _ = done_tx.send(result);
        })
        .context("starting the SIP core thread")?;
    let ended = done_rx
        .await
        .context("the SIP core thread ended without a result")??;
    relay.shutdown();
    dns_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // The core's feed has handed over every record (calls still up end as `shutdown`):
    // store what is queued before exiting.
    if let Some(writer) = records_writer {
        tokio::task::block_in_place(|| writer.finish());
        tracing::info!("call records stored");
    }
    match ended {
        Ended::Drained => tracing::info!("drained: every dialog finished; exiting"),
        Ended::GraceExpired { dialogs } => {
            tracing::warn!(
                dialogs,
                "shutdown grace period over: exiting with dialogs still up"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_summary() {
        let policy = load_policy(None).unwrap();
        assert_eq!(
            summary(&policy),
            "policy OK: 2 trunks, 1 routes, listening on udp:127.0.0.1:5060, tcp:127.0.0.1:5060"
        );
    }

    #[test]
    fn proxy_config_follows_the_policy() {
        let policy = load_policy(None).unwrap();
        let flow = Flow {
            transport: trunkgate_sip::Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
        };
        let config = proxy_config(&policy, vec![flow]);
        assert_eq!(config.advertised, "127.0.0.1");
        assert_eq!(config.listeners, vec![flow]);
        assert_eq!(config.timers.t1, policy.sip.t1);
        assert_eq!(config.timers.timer_c, policy.sip.timer_c);
        assert_eq!(config.limits.max_message_size, policy.sip.max_message_size);
        assert!(config.server_name.starts_with("Trunkgate/"));
    }

    #[test]
    fn resolves_literals_and_names() {
        let udp = trunkgate_config::PeerTransport::Udp;
        let literal = HostPort {
            host: trunkgate_config::Host::Ip([127, 0, 0, 3].into()),
            port: 5060,
            port_given: true,
        };
        assert_eq!(
            resolve(&literal, udp).unwrap(),
            ["127.0.0.3:5060".parse().unwrap()]
        );
        let name = HostPort {
            host: trunkgate_config::Host::Name("localhost".into()),
            port: 5070,
            port_given: true,
        };
        let address = resolve(&name, udp).unwrap()[0];
        assert!(address.ip().is_loopback());
        assert_eq!(address.port(), 5070);
    }
}
