//! [`trunkgate_sip::Admission`] on top of the control crate's [`AdmissionControl`]: the
//! core asks per datagram, per new call and per REGISTER; the governor buckets and bans
//! live in the control crate. A reload builds a new adapter around the rebuilt control
//! (which keeps the buckets of trunks that stay). A `cap=N` drill lowers a trunk's
//! `max_sessions` to N here (never raises it).

use crate::drills::DrillBoard;
use std::net::IpAddr;
use std::sync::Arc;
use trunkgate_control::admission::{AdmissionControl, DatagramVerdict, UnknownSource as Policy};
use trunkgate_control::{AccountId, DrillMode, Source, TrunkId};
use trunkgate_sip::{Admission, Party, RejectReason, TrunkLimits, UnknownSource, Verdict};

#[derive(Debug, Clone)]
pub struct PolicyAdmission {
    control: Arc<AdmissionControl>,
    drills: Arc<DrillBoard>,
}

impl PolicyAdmission {
    #[cfg(test)]
    pub fn new(control: Arc<AdmissionControl>) -> PolicyAdmission {
        PolicyAdmission::with_drills(control, Arc::new(DrillBoard::default()))
    }

    pub fn with_drills(control: Arc<AdmissionControl>, drills: Arc<DrillBoard>) -> PolicyAdmission {
        PolicyAdmission { control, drills }
    }

    pub fn control(&self) -> &Arc<AdmissionControl> {
        &self.control
    }
}

fn source(party: Party) -> Source {
    match party {
        Party::Pbx => Source::Pbx,
        Party::Trunk(i) => Source::Trunk(TrunkId(i)),
        Party::Unknown => Source::Unknown,
    }
}

impl Admission for PolicyAdmission {
    fn datagram(&self, ip: IpAddr, party: Party) -> Verdict {
        match self.control.datagram(ip, source(party)) {
            DatagramVerdict::Pass => Verdict::Pass,
            DatagramVerdict::DropBanned => Verdict::Drop(RejectReason::Flood),
            DatagramVerdict::DropUnknown => Verdict::Drop(RejectReason::UnknownSource),
        }
    }

    fn unknown_source(&self) -> UnknownSource {
        match self.control.unknown_source() {
            Policy::Drop => UnknownSource::Drop,
            Policy::Reject => UnknownSource::Reject,
        }
    }

    fn blocked_user_agent(&self, party: Party, user_agent: &[u8]) -> bool {
        self.control.blocked_user_agent(source(party), user_agent)
    }

    fn trunk_limits(&self, trunk: u16) -> TrunkLimits {
        let limits = self.control.trunk_limits(TrunkId(trunk));
        let max_sessions = match self.drills.mode(TrunkId(trunk)) {
            Some(DrillMode::Cap(n)) => Some(limits.max_sessions.map_or(n, |l| l.min(n))),
            _ => limits.max_sessions,
        };
        TrunkLimits {
            max_sessions,
            max_inbound: limits.max_inbound,
            max_outbound: limits.max_outbound,
        }
    }

    fn try_call_rate(&self, trunk: u16) -> bool {
        self.control.try_call_rate(TrunkId(trunk))
    }

    fn give_back_call_rate(&self, trunk: u16) {
        self.control.give_back_call_rate(TrunkId(trunk));
    }

    fn trunk_account(&self, trunk: u16) -> Option<trunkgate_sip::AccountId> {
        self.control.trunk_account(TrunkId(trunk)).map(|a| a.0)
    }

    fn account_limits(&self, account: trunkgate_sip::AccountId) -> TrunkLimits {
        let limits = self.control.account_limits(AccountId(account));
        TrunkLimits {
            max_sessions: limits.max_sessions,
            max_inbound: limits.max_inbound,
            max_outbound: limits.max_outbound,
        }
    }

    fn try_account_rate(&self, account: trunkgate_sip::AccountId) -> bool {
        self.control.try_account_rate(AccountId(account))
    }

    fn try_register(&self, party: Party) -> Option<u32> {
        self.control.try_register(source(party))
    }

    fn overflow_retry_after(&self) -> u32 {
        self.control.overflow_retry_after()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trunkgate_config::Policy as TomlPolicy;
    use trunkgate_control::RoutingTable;

    #[test]
    fn maps_the_control_decisions() {
        let policy = TomlPolicy::embedded_default().unwrap();
        let table = RoutingTable::new(
            &policy,
            &mut trunkgate_control::TrunkIds::default(),
            crate::startup::resolve,
        )
        .unwrap();
        let admission = PolicyAdmission::new(Arc::new(AdmissionControl::new(&policy, &table)));
        let pbx: IpAddr = "127.0.0.2".parse().unwrap();
        let stranger: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(admission.datagram(pbx, Party::Pbx), Verdict::Pass);
        assert_eq!(
            admission.datagram(stranger, Party::Unknown),
            Verdict::Drop(RejectReason::UnknownSource)
        );
        assert_eq!(admission.unknown_source(), UnknownSource::Drop);
        assert_eq!(admission.trunk_limits(0).max_sessions, Some(300));
        assert!(admission.blocked_user_agent(Party::Unknown, b"friendly-scanner"));
        assert!(!admission.blocked_user_agent(Party::Pbx, b"friendly-scanner"));
        assert_eq!(
            admission.trunk_account(0),
            None,
            "the default has no accounts"
        );
    }

    #[test]
    fn maps_accounts_and_their_buckets() {
        let text = trunkgate_config::EMBEDDED_DEFAULT.to_owned()
            + "\n[[account]]\nname = \"acme\"\ntrunks = [\"carrier-b\", \"carrier-a\"]\nmax_sessions = 10\nmax_outbound = 8\nmax_cps = 1\n";
        let policy = TomlPolicy::from_toml(&text, "t.toml").unwrap();
        let table = RoutingTable::new(
            &policy,
            &mut trunkgate_control::TrunkIds::default(),
            crate::startup::resolve,
        )
        .unwrap();
        let admission = PolicyAdmission::new(Arc::new(AdmissionControl::new(&policy, &table)));
        let acme = admission.trunk_account(0).unwrap();
        assert_eq!(admission.trunk_account(1), Some(acme));
        let limits = admission.account_limits(acme);
        assert_eq!(
            (limits.max_sessions, limits.max_inbound, limits.max_outbound),
            (Some(10), None, Some(8))
        );
        assert!(admission.try_account_rate(acme));
        assert!(!admission.try_account_rate(acme), "max_cps 1, burst 1");
        // carrier-a's own bucket (150/s, burst 150): a token given back is there again.
        let taken = (0..200).filter(|_| admission.try_call_rate(0)).count();
        admission.give_back_call_rate(0);
        assert!(admission.try_call_rate(0));
        assert!(taken >= 150);
    }

    #[test]
    fn a_cap_drill_lowers_max_sessions_and_never_raises_it() {
        let policy = TomlPolicy::embedded_default().unwrap();
        let table = RoutingTable::new(
            &policy,
            &mut trunkgate_control::TrunkIds::default(),
            crate::startup::resolve,
        )
        .unwrap();
        let drills = Arc::new(DrillBoard::default());
        let admission = PolicyAdmission::with_drills(
            Arc::new(AdmissionControl::new(&policy, &table)),
            drills.clone(),
        );
        for (n, expected) in [(5, 5), (1000, 300)] {
            let request = trunkgate_control::drill::DrillRequest {
                trunk: TrunkId(0),
                trunk_name: "carrier-a".into(),
                mode: DrillMode::Cap(n),
                duration: std::time::Duration::from_secs(20),
                started_by: "local".into(),
                max_duration: std::time::Duration::from_secs(60),
                state_before: None,
            };
            drills
                .with(|d| d.start(std::time::Instant::now(), 0, request).map(|_| ()))
                .unwrap();
            assert_eq!(admission.trunk_limits(0).max_sessions, Some(expected));
            assert_eq!(admission.trunk_limits(1).max_sessions, Some(300));
            drills.with(|d| d.stop(0, None));
        }
        assert_eq!(admission.trunk_limits(0).max_sessions, Some(300));
    }
}
