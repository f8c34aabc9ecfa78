#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use governor::clock::FakeRelativeClock;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use trunkgate_config::HostPort;

const PBX: &str = "10.0.0.5";
const TRUNK_A: &str = "198.51.100.7";

/// A policy with the PBX on 10.0.0.0/24, carrier-a (max_cps 5, burst 3) and carrier-b (no
/// limits), plus `extra` TOML.
fn policy(extra: &str) -> Policy {
    let src = format!(
        r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "10.0.0.5:5060"
allow = ["10.0.0.0/24"]
[[trunk]]
name = "carrier-a"
address = "198.51.100.7:5060"
max_sessions = 10
max_inbound = 4
max_cps = 5
cps_burst = 3
[[trunk]]
name = "carrier-b"
address = "198.51.100.8:5060"
{extra}
"#
    );
    Policy::from_toml(&src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

struct Fixture {
    table: RoutingTable,
    admission: AdmissionControl<FakeRelativeClock>,
    clock: FakeRelativeClock,
}

fn fixture(extra: &str) -> Fixture {
    let policy = policy(extra);
    let table = RoutingTable::new(
        &policy,
        &mut crate::TrunkIds::default(),
        |hp: &HostPort, _| -> std::io::Result<Vec<SocketAddr>> {
            Err(std::io::Error::other(format!("no DNS: {hp}")))
        },
    )
    .unwrap();
    let clock = FakeRelativeClock::default();
    let admission = AdmissionControl::with_clock(&policy, &table, clock.clone());
    Fixture {
        table,
        admission,
        clock,
    }
}

impl Fixture {
    fn datagram(&self, ip: IpAddr) -> DatagramVerdict {
        self.admission.datagram(ip, self.table.classify(ip))
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn flood_bans_after_burst_then_unbans_after_maintain() {
    let f = fixture(
        "[security]\nunknown_source = \"reject\"\n[flood]\nrate = 10\nburst = 20\nban = \"1m\"",
    );
    let flooder = ip("192.0.2.9");
    for i in 0..20 {
        assert_eq!(f.datagram(flooder), DatagramVerdict::Pass, "request {i}");
    }
    assert_eq!(f.datagram(flooder), DatagramVerdict::DropBanned);
    assert_eq!(f.admission.banned_sources(), 1);
    // Banned: dropped even once the bucket has refilled, until the ban ends.
    f.clock.advance(Duration::from_secs(30));
    assert_eq!(f.datagram(flooder), DatagramVerdict::DropBanned);
    f.admission.maintain();
    assert_eq!(f.admission.banned_sources(), 1, "ban still running");
    // Another source is not affected.
    assert_eq!(f.datagram(ip("192.0.2.10")), DatagramVerdict::Pass);

    f.clock.advance(Duration::from_secs(31));
    f.admission.maintain();
    assert_eq!(f.admission.banned_sources(), 0);
    assert_eq!(f.datagram(flooder), DatagramVerdict::Pass);
}

#[test]
fn expired_ban_lets_traffic_through_before_maintain() {
    let f = fixture(
        "[security]\nunknown_source = \"reject\"\n[flood]\nrate = 1\nburst = 1\nban = \"10s\"",
    );
    let src = ip("192.0.2.9");
    assert_eq!(f.datagram(src), DatagramVerdict::Pass);
    assert_eq!(f.datagram(src), DatagramVerdict::DropBanned);
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(f.datagram(src), DatagramVerdict::Pass);
}

#[test]
fn exempt_pbx_and_trunks_are_never_limited() {
    let f = fixture("[flood]\nrate = 1\nburst = 1");
    for _ in 0..10_000 {
        assert_eq!(f.datagram(ip(PBX)), DatagramVerdict::Pass);
        assert_eq!(f.datagram(ip("10.0.0.77")), DatagramVerdict::Pass);
        assert_eq!(f.datagram(ip(TRUNK_A)), DatagramVerdict::Pass);
    }
    assert_eq!(f.admission.banned_sources(), 0);
    assert_eq!(f.admission.tracked_sources(), 0, "no limiter touched");
}

#[test]
fn exempt_peers_false_limits_the_pbx_too() {
    let f = fixture("[flood]\nrate = 1\nburst = 2\nexempt_peers = false");
    assert_eq!(f.datagram(ip(PBX)), DatagramVerdict::Pass);
    assert_eq!(f.datagram(ip(PBX)), DatagramVerdict::Pass);
    assert_eq!(f.datagram(ip(PBX)), DatagramVerdict::DropBanned);
    assert!(
        f.admission
            .blocked_user_agent(Source::Pbx, b"friendly-scanner")
    );
}

#[test]
fn exempt_networks_skip_the_limiter_but_not_the_allow_list() {
    let f = fixture("[flood]\nrate = 1\nburst = 1\nexempt = [\"192.0.2.0/28\", \"2001:db8::/32\"]");
    for _ in 0..1000 {
        assert_eq!(f.datagram(ip("192.0.2.3")), DatagramVerdict::DropUnknown);
        assert_eq!(
            f.datagram(ip("::ffff:192.0.2.4")),
            DatagramVerdict::DropUnknown
        );
        assert_eq!(f.datagram(ip("2001:db8::7")), DatagramVerdict::DropUnknown);
    }
    assert_eq!(f.admission.tracked_sources(), 0);
    assert_eq!(f.datagram(ip("192.0.2.16")), DatagramVerdict::DropUnknown);
    assert_eq!(f.datagram(ip("192.0.2.16")), DatagramVerdict::DropBanned);
}

#[test]
fn unknown_sources_follow_the_policy() {
    let drop = fixture("");
    assert_eq!(drop.admission.unknown_source(), UnknownSource::Drop);
    assert_eq!(
        drop.datagram(ip("203.0.113.1")),
        DatagramVerdict::DropUnknown
    );
    let reject = fixture("[security]\nunknown_source = \"reject\"");
    assert_eq!(reject.admission.unknown_source(), UnknownSource::Reject);
    assert_eq!(reject.datagram(ip("203.0.113.1")), DatagramVerdict::Pass);
}

#[test]
fn ipv6_sources_in_one_prefix_share_a_key() {
    let f = fixture("[security]\nunknown_source = \"reject\"\n[flood]\nrate = 1\nburst = 4");
    // Four addresses of one /64 use up its bucket together.
    for host in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::3",
        "2001:db8:1:2::4",
    ] {
        assert_eq!(f.datagram(ip(host)), DatagramVerdict::Pass, "{host}");
    }
    assert_eq!(f.admission.tracked_sources(), 1);
    assert_eq!(
        f.datagram(ip("2001:db8:1:2::99")),
        DatagramVerdict::DropBanned
    );
    assert_eq!(
        f.datagram(ip("2001:db8:1:2::5")),
        DatagramVerdict::DropBanned
    );
    // The next /64 is another source.
    assert_eq!(f.datagram(ip("2001:db8:1:3::1")), DatagramVerdict::Pass);
    assert_eq!(f.admission.banned_sources(), 1);

    let wide = fixture("[security]\nunknown_source = \"reject\"\n[flood]\nipv6_prefix = 48");
    wide.datagram(ip("2001:db8:1:2::1"));
    wide.datagram(ip("2001:db8:1:3::1"));
    assert_eq!(wide.admission.tracked_sources(), 1);
}

/// Resident set size of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn a_spray_of_sources_stays_bounded() {
    // 1,000,000 distinct sources, one request each, against the default max_sources.
    let sources: u32 = 1_000_000;
    let f = fixture("[security]\nunknown_source = \"reject\"");
    let before = rss();
    let mut passed = 0u32;
    for i in 0..sources {
        let src = IpAddr::V4(Ipv4Addr::from_bits(0x0b00_0000 + i));
        if f.datagram(src) == DatagramVerdict::Pass {
            passed += 1;
        }
    }
    let tracked = f.admission.tracked_sources();
    assert_eq!(tracked, 100_000, "flood.max_sources");
    // Untracked sources share the overflow bucket (rate 500/s, burst 1000) and are not
    // banned: the clock stands still, so exactly its burst passes.
    assert_eq!(passed, 100_000 + 1000);
    assert_eq!(f.admission.banned_sources(), 0);
    let growth = rss().saturating_sub(before);
    assert!(growth < 50 << 20, "RSS grew by {} MiB", growth >> 20);

    // Once the keys are idle (their buckets full again), maintain lets them go.
    f.clock.advance(Duration::from_secs(3));
    f.admission.maintain();
    assert_eq!(f.admission.tracked_sources(), 0);
    let again = IpAddr::V4(Ipv4Addr::from_bits(0x0b00_0000 + sources - 1));
    assert_eq!(f.datagram(again), DatagramVerdict::Pass);
    assert_eq!(
        f.admission.tracked_sources(),
        1,
        "tracked again after the sweep"
    );
}

#[test]
fn tracked_sources_keep_their_own_bucket_when_the_store_is_full() {
    let f = fixture(
        "[security]\nunknown_source = \"reject\"\n[flood]\nrate = 1\nburst = 2\nmax_sources = 2",
    );
    assert_eq!(f.datagram(ip("192.0.2.1")), DatagramVerdict::Pass);
    assert_eq!(f.datagram(ip("192.0.2.2")), DatagramVerdict::Pass);
    // Full: a third source goes to the overflow bucket (burst 20), unbanned.
    for _ in 0..20 {
        assert_eq!(f.datagram(ip("192.0.2.3")), DatagramVerdict::Pass);
    }
    assert_eq!(f.datagram(ip("192.0.2.3")), DatagramVerdict::DropBanned);
    assert_eq!(f.admission.banned_sources(), 0);
    assert_eq!(f.admission.tracked_sources(), 2);
    // A tracked source is still judged, and banned, by its own bucket.
    assert_eq!(f.datagram(ip("192.0.2.1")), DatagramVerdict::Pass);
    assert_eq!(f.datagram(ip("192.0.2.1")), DatagramVerdict::DropBanned);
    assert_eq!(f.admission.banned_sources(), 1);
}

#[test]
fn user_agents_are_blocked_case_insensitively_for_non_exempt_sources() {
    let f = fixture("");
    let a = &f.admission;
    assert!(a.blocked_user_agent(Source::Unknown, b"friendly-scanner"));
    assert!(a.blocked_user_agent(Source::Unknown, b"SIPVicious 0.3.4"));
    assert!(a.blocked_user_agent(Source::Unknown, b"x FRIENDLY-SCANNER y"));
    assert!(a.blocked_user_agent(Source::Unknown, b"portsip voip sdk 11.2.3"));
    assert!(!a.blocked_user_agent(Source::Unknown, b"Yealink SIP-T46S 66.86"));
    assert!(!a.blocked_user_agent(Source::Unknown, b""));
    assert!(!a.blocked_user_agent(Source::Pbx, b"friendly-scanner"));
    assert!(!a.blocked_user_agent(Source::Trunk(TrunkId(0)), b"sipvicious"));
    let none = fixture("[security]\nblock_user_agents = []");
    assert!(
        !none
            .admission
            .blocked_user_agent(Source::Unknown, b"friendly-scanner")
    );
    let own = fixture("[security]\nblock_user_agents = [\"Evil Dialer\"]");
    assert!(
        own.admission
            .blocked_user_agent(Source::Unknown, b"evil dialer/2.0")
    );
    assert!(
        !own.admission
            .blocked_user_agent(Source::Unknown, b"friendly-scanner")
    );
}

#[test]
fn trunk_limits_come_from_the_policy() {
    let f = fixture("");
    assert_eq!(
        f.admission.trunk_limits(TrunkId(0)),
        TrunkLimits {
            max_sessions: Some(10),
            max_inbound: Some(4),
            max_outbound: None
        }
    );
    assert_eq!(f.admission.trunk_limits(TrunkId(1)), TrunkLimits::default());
    assert_eq!(
        f.admission.trunk_limits(TrunkId(99)),
        TrunkLimits::default()
    );
}

#[test]
fn call_rate_allows_the_burst_then_refuses_then_refills() {
    let f = fixture("");
    let a = &f.admission;
    for i in 0..3 {
        assert!(a.try_call_rate(TrunkId(0)), "call {i} within cps_burst 3");
    }
    assert!(!a.try_call_rate(TrunkId(0)));
    assert!(
        !a.try_call_rate(TrunkId(0)),
        "a refusal takes no token and gives none"
    );
    // max_cps 5: one token every 200 ms.
    f.clock.advance(Duration::from_millis(200));
    assert!(a.try_call_rate(TrunkId(0)));
    assert!(!a.try_call_rate(TrunkId(0)));
    // No max_cps, or no such trunk: no limit.
    assert!((0..10_000).all(|_| a.try_call_rate(TrunkId(1))));
    assert!(a.try_call_rate(TrunkId(42)));
}

#[test]
fn cps_burst_defaults_to_max_cps() {
    let f = fixture("[[trunk]]\nname = \"carrier-c\"\naddress = \"198.51.100.9\"\nmax_cps = 4");
    let a = &f.admission;
    assert_eq!((0..100).filter(|_| a.try_call_rate(TrunkId(2))).count(), 4);
}

#[test]
fn register_storm_gets_randomised_retry_after_within_the_window() {
    let f = fixture(
        "[register]\nmax_rate = 2\nburst = 5\nretry_after_min = \"30s\"\nretry_after_max = \"120s\"",
    );
    let a = &f.admission;
    for _ in 0..5 {
        assert_eq!(a.try_register(Source::Pbx), None);
    }
    let retries: Vec<u32> = (0..200)
        .map(|_| a.try_register(Source::Pbx).expect("over the rate"))
        .collect();
    assert!(
        retries.iter().all(|r| (30..=120).contains(r)),
        "{retries:?}"
    );
    let distinct: HashSet<u32> = retries.iter().copied().collect();
    assert!(distinct.len() > 20, "not spread out: {distinct:?}");
    f.clock.advance(Duration::from_millis(500));
    assert_eq!(a.try_register(Source::Pbx), None, "refilled at 2/s");

    let fixed = fixture(
        "[register]\nmax_rate = 1\nburst = 1\nretry_after_min = \"7s\"\nretry_after_max = \"7s\"",
    );
    assert_eq!(fixed.admission.try_register(Source::Pbx), None);
    assert_eq!(fixed.admission.try_register(Source::Pbx), Some(7));
}

#[test]
fn overflow_retry_after_in_seconds() {
    assert_eq!(fixture("").admission.overflow_retry_after(), 10);
    let f = fixture("[sip]\noverflow_retry_after = \"2m\"");
    assert_eq!(f.admission.overflow_retry_after(), 120);
}

#[test]
fn shared_between_threads() {
    fn is_sync<T: Send + Sync>() {}
    is_sync::<AdmissionControl>();
    let f = fixture("[security]\nunknown_source = \"reject\"\n[flood]\nburst = 1000000");
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..200 {
                f.admission.maintain();
            }
        });
        for i in 0..20_000u32 {
            f.datagram(IpAddr::V6(Ipv6Addr::from_bits(u128::from(i) << 64)));
        }
    });
    assert!(f.admission.tracked_sources() <= 20_000);
}

/// carrier-a (cps 5, burst 3) and carrier-b in account "acme" (10 sessions, 4 inbound,
/// 2 calls/s, burst 2); carrier-c alone.
const ACME: &str = "[[trunk]]\nname = \"carrier-c\"\naddress = \"198.51.100.9\"\n\
    [[account]]\nname = \"acme\"\ntrunks = [\"carrier-a\", \"carrier-b\"]\n\
    max_sessions = 10\nmax_inbound = 4\nmax_cps = 2\n";

#[test]
fn accounts_map_their_trunks_and_limits() {
    let f = fixture(ACME);
    let a = &f.admission;
    let acme = a.trunk_account(TrunkId(0)).expect("carrier-a is in acme");
    assert_eq!(a.trunk_account(TrunkId(1)), Some(acme));
    assert_eq!(
        a.trunk_account(TrunkId(2)),
        None,
        "carrier-c is in no account"
    );
    assert_eq!(a.trunk_account(TrunkId(99)), None);
    assert_eq!(
        a.account_limits(acme),
        TrunkLimits {
            max_sessions: Some(10),
            max_inbound: Some(4),
            max_outbound: None
        }
    );
    assert_eq!(a.account_limits(AccountId(7)), TrunkLimits::default());
    let entry = f.table.account(acme).unwrap();
    assert_eq!(entry.name, "acme");
    assert_eq!(entry.trunks, vec![TrunkId(0), TrunkId(1)]);
    assert_eq!((entry.max_cps, entry.cps_burst), (Some(2), Some(2)));
    assert_eq!(f.table.trunk(TrunkId(1)).unwrap().account, Some(acme));
}

#[test]
fn the_account_rate_is_shared_and_refills() {
    let f = fixture(ACME);
    let a = &f.admission;
    let acme = a.trunk_account(TrunkId(1)).unwrap();
    assert!(a.try_account_rate(acme));
    assert!(a.try_account_rate(acme));
    assert!(!a.try_account_rate(acme), "burst 2, whichever trunk asks");
    f.clock.advance(Duration::from_millis(500));
    assert!(a.try_account_rate(acme), "2/s: one more every 500 ms");
    assert!(!a.try_account_rate(acme));
    assert!(
        a.try_account_rate(AccountId(9)),
        "no such account: no limit"
    );
}

#[test]
fn a_trunk_token_given_back_is_not_spent() {
    let f = fixture("");
    let a = &f.admission;
    for _ in 0..3 {
        assert!(a.try_call_rate(TrunkId(0)));
    }
    assert!(!a.try_call_rate(TrunkId(0)), "burst 3 spent");
    a.give_back_call_rate(TrunkId(0));
    assert!(
        a.try_call_rate(TrunkId(0)),
        "the token given back is there again"
    );
    assert!(!a.try_call_rate(TrunkId(0)));
    // Giving back never fills the bucket past its burst.
    f.clock.advance(Duration::from_secs(10));
    for _ in 0..5 {
        a.give_back_call_rate(TrunkId(0));
    }
    assert_eq!((0..10).filter(|_| a.try_call_rate(TrunkId(0))).count(), 3);
    // Trunks without max_cps (or unknown ids) ignore it.
    a.give_back_call_rate(TrunkId(1));
    a.give_back_call_rate(TrunkId(42));
}

#[test]
fn account_ids_survive_a_rebuild_by_name() {
    let mut ids = crate::TrunkIds::default();
    let no_dns = |hp: &HostPort, _| -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other(format!("no DNS: {hp}")))
    };
    let extra = "[[account]]\nname = \"zeta\"\ntrunks = [\"carrier-c\"]\n";
    let first = RoutingTable::new(&policy(&format!("{extra}{ACME}")), &mut ids, no_dns).unwrap();
    let zeta = first.trunk(TrunkId(2)).and_then(|t| t.account);
    // A later policy drops zeta and writes acme first: acme keeps its id, zeta's is not reused.
    let second = RoutingTable::new(&policy(ACME), &mut ids, no_dns).unwrap();
    let acme = second.accounts()[0].id;
    assert_eq!(first.accounts()[1].id, acme);
    assert_ne!(Some(acme), zeta);
    assert_eq!(ids.account("acme"), Some(acme));
}

#[test]
fn a_rebuild_keeps_the_buckets_of_unchanged_trunks() {
    let f = fixture("");
    for _ in 0..3 {
        assert!(f.admission.try_call_rate(TrunkId(0)));
    }
    assert!(!f.admission.try_call_rate(TrunkId(0)));
    // The same limits under a new snapshot: carrier-a's bucket is still empty.
    let kept = AdmissionControl::rebuild(&policy(""), &f.table, &f.admission);
    assert!(
        !kept.try_call_rate(TrunkId(0)),
        "the empty bucket carried over"
    );
    // A changed limit starts a fresh bucket.
    let src = policy("").clone();
    let mut changed = src.clone();
    changed.trunks[0].max_cps = Some(50);
    changed.trunks[0].cps_burst = Some(50);
    let ids = &mut crate::TrunkIds::default();
    let table =
        RoutingTable::new(&changed, ids, |_, _| Err(std::io::Error::other("no DNS"))).unwrap();
    let fresh = AdmissionControl::rebuild(&changed, &table, &f.admission);
    assert!(fresh.try_call_rate(TrunkId(0)));
}
