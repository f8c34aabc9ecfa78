//! Dialogs that are not calls: the second 2xx of a forked INVITE, and subscriptions made by
//! an out-of-dialog SUBSCRIBE or REFER (RFC 3261 §12.1.2, RFC 6665 §4). Both are routed
//! like a call's dialog (same legs, same next-hop rule) but count as no session, have no
//! media and raise no events: they exist so that the ACK and BYE of an extra answer, and the
//! NOTIFYs of a subscription, reach the right UA instead of a 481 or the wrong one.

use super::Proxy;
use super::addressing::contact_uri;
use super::state::{Dialog, DialogKind, Leg, dialog_key, fork_key};
use super::timer::Timer;
use crate::message::{Method, SipMessage};
use crate::routing::Party;
use crate::transport::Flow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A subscription is forgotten this long after its `Expires` without a refresh or NOTIFY.
const SUBSCRIPTION_GRACE: Duration = Duration::from_secs(32);
/// `Expires` of a SUBSCRIBE without one (RFC 6665 leaves the default to the event
/// package; an hour is the common one) and of REFER's implicit subscription.
const SUBSCRIPTION_DEFAULT: Duration = Duration::from_secs(3600);
/// At most this many forks and subscriptions at once: they are not sessions, so no trunk
/// limit bounds them; past it new ones are not tracked (their in-dialog requests get 481).
pub(super) const MAX_SIDE_DIALOGS: usize = 100_000;

impl Proxy {
    /// The forked dialog `msg` belongs to (both tags known), and whether the caller sent it.
    pub(super) fn find_fork(&self, msg: &SipMessage) -> Option<(u64, bool)> {
        if self.fork_index.is_empty() {
            return None;
        }
        let (from, to) = (msg.from_tag()?, msg.to_tag()?);
        let call_id = msg.call_id();
        if let Some(&id) = self.fork_index.get(&fork_key(call_id, from, to)[..]) {
            return Some((id, true));
        }
        self.fork_index
            .get(&fork_key(call_id, to, from)[..])
            .map(|&id| (id, false))
    }

    /// A 2xx to the initial INVITE of dialog `main` from another callee (another To tag)
    /// than the one that answered: it gets a dialog of its own, so the caller's ACK and BYE
    /// for it go to that callee. `false`: not tracked (limit reached, no tag).
    pub(super) fn add_fork(
        &mut self,
        now: Instant,
        main: u64,
        msg: &SipMessage,
        flow: Flow,
        source: SocketAddr,
    ) -> bool {
        if self.side_dialogs >= MAX_SIDE_DIALOGS {
            return false;
        }
        let (Some(caller_tag), Some(callee_tag)) = (msg.from_tag(), msg.to_tag()) else {
            return false;
        };
        let key = fork_key(msg.call_id(), caller_tag, callee_tag).to_vec();
        if self.fork_index.contains_key(&key) {
            return true;
        }
        let Some(d) = self.dialogs.get(&main) else {
            return false;
        };
        let fork = Dialog {
            kind: DialogKind::Fork,
            idle_limit: None,
            index_key: key.clone(),
            callee_tag: Some(callee_tag.into()),
            confirmed: true,
            last_activity: now,
            direction: d.direction,
            metric_peer: d.metric_peer,
            trunk: None,
            account: None,
            test: d.test,
            counted: false,
            caller: d.caller.clone(),
            callee: Leg {
                party: d.callee.party,
                address: source,
                flow,
                contact: contact_uri(msg),
                cseq_offset: d.callee.cseq_offset,
            },
            media: None,
        };
        let id = self.next_id();
        tracing::debug!(
            call_id = %String::from_utf8_lossy(msg.call_id()),
            dialog = main,
            fork = id,
            "2xx from another fork: a dialog of its own"
        );
        self.fork_index.insert(key, id);
        self.dialogs.insert(id, fork);
        self.side_dialogs += 1;
        self.timers
            .arm(now + self.config.dialog_timeout, Timer::DialogExpire(id));
        true
    }

    /// An out-of-dialog SUBSCRIBE or REFER is being forwarded to `callee`: track the
    /// subscription it makes, so NOTIFYs (which may come before its 2xx) find the
    /// subscriber. `None`: not tracked.
    pub(super) fn open_subscription(
        &mut self,
        now: Instant,
        msg: &SipMessage,
        flow: Flow,
        source: SocketAddr,
        party: Party,
        callee: (Party, SocketAddr, Flow),
    ) -> Option<u64> {
        if !matches!(msg.method(), Some(Method::Subscribe | Method::Refer))
            || self.side_dialogs >= MAX_SIDE_DIALOGS
        {
            return None;
        }
        let caller_tag = msg.from_tag()?;
        let key = dialog_key(msg.call_id(), caller_tag).to_vec();
        if let Some(&old) = self.dialog_index.get(&key) {
            // A refresh sent as a new request, or a SUBSCRIBE reusing a call's Call-ID and
            // tag (a REFER inside a call is in-dialog and never gets here): keep the old.
            return Some(old);
        }
        let expires = msg
            .first_named(b"Expires")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(SUBSCRIPTION_DEFAULT, Duration::from_secs);
        let limit = (expires + SUBSCRIPTION_GRACE).min(self.config.dialog_timeout);
        let dialog = Dialog {
            kind: DialogKind::Subscription,
            idle_limit: Some(limit),
            index_key: key.clone(),
            callee_tag: None,
            confirmed: false,
            last_activity: now,
            direction: crate::Direction::Outbound,
            metric_peer: 0,
            trunk: None,
            account: None,
            test: false,
            counted: false,
            caller: Leg::caller(party, flow, source, contact_uri(msg)),
            callee: Leg {
                party: callee.0,
                address: callee.1,
                flow: callee.2,
                contact: None,
                cseq_offset: 0,
            },
            media: None,
        };
        let id = self.next_id();
        self.dialog_index.insert(key, id);
        self.dialogs.insert(id, dialog);
        self.side_dialogs += 1;
        self.timers.arm(now + limit, Timer::DialogExpire(id));
        Some(id)
    }

    /// A 2xx to a subscription's SUBSCRIBE/REFER: the notifier's tag and Contact.
    pub(super) fn subscription_answered(&mut self, dialog: u64, msg: &SipMessage) {
        let Some(d) = self.dialogs.get_mut(&dialog) else {
            return;
        };
        if d.kind != DialogKind::Subscription || d.confirmed {
            return;
        }
        d.confirmed = true;
        d.callee_tag = msg.to_tag().map(Into::into);
        if let Some(contact) = contact_uri(msg) {
            d.callee.contact = Some(contact);
        }
    }
}
