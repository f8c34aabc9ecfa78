//! The question the proxy asks of routing policy, as a trait: who is this source, and where
//! does a new request from it go. Implemented by the binary on top of `trunkgate-control`,
//! and by simple fakes in tests, so the SIP core does not depend on the policy crates.

use crate::transport::Transport;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A trunk's stable identity: assigned by the policy layer from the trunk's name and never
/// reused, so a reload that adds, removes or reorders trunks does not move a live call's
/// counts to another trunk. Ids are dense (0, 1, 2, …) so per-trunk tables are vectors.
pub type TrunkId = u16;

/// Which side of Trunkgate a peer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The PBX (inside).
    Pbx,
    /// A trunk, by its stable id.
    Trunk(TrunkId),
    /// In no allow list: gets no dialog and no forwarding.
    Unknown,
}

impl Party {
    /// Index for per-peer metric arrays: 0 = Trunkgate itself, 1 = PBX, 2.. = trunks.
    pub fn metric_index(self) -> usize {
        match self {
            Party::Unknown => 0,
            Party::Pbx => 1,
            Party::Trunk(i) => 2 + i as usize,
        }
    }
}

/// A destination for a new out-of-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub party: Party,
    pub address: SocketAddr,
    /// `None`: use the transport the request arrived on.
    pub transport: Option<Transport>,
    /// Host (and port) to write into the Request-URI, e.g. `"127.0.0.3:5060"` or
    /// `"sip.carrier-a.example"`.
    pub uri_host: String,
    /// Answer a branch to this target here with this final code instead of sending it, as
    /// if the target had (a `reject-503` failover drill: the real failover path runs).
    pub local_answer: Option<u16>,
}

/// A set of final response codes (300–699), as a bitmap: `Copy`, no allocation per call.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CodeSet([u64; 7]);

impl CodeSet {
    pub const EMPTY: CodeSet = CodeSet([0; 7]);

    pub fn from_codes(codes: impl IntoIterator<Item = u16>) -> CodeSet {
        let mut set = CodeSet::EMPTY;
        for code in codes {
            set.insert(code);
        }
        set
    }

    /// Add `code`; codes outside 300–699 are ignored.
    pub fn insert(&mut self, code: u16) {
        if let Some(bit) = code.checked_sub(300).filter(|b| *b < 400) {
            if let Some(word) = self.0.get_mut(usize::from(bit / 64)) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    pub fn contains(&self, code: u16) -> bool {
        code.checked_sub(300).filter(|b| *b < 400).and_then(|bit| {
            self.0
                .get(usize::from(bit / 64))
                .map(|w| w >> (bit % 64) & 1)
        }) == Some(1)
    }
}

impl std::fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((300..700).filter(|c| self.contains(*c)))
            .finish()
    }
}

/// How a new request moves on to its next candidate when a branch fails (`[[route]]`
/// `failover_on`, `try_timeout`, `max_attempts`, `setup_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Final responses that try the next candidate (timeouts and transport errors always
    /// do, while attempts and time remain).
    pub failover_on: CodeSet,
    /// No provisional response from a candidate in this long: try the next one.
    pub try_timeout: Option<Duration>,
    /// Candidates tried per request, at most (1: no failover).
    pub max_attempts: u8,
    /// Total time from the request's arrival in which new candidates are still tried;
    /// a branch that has not even sent a provisional response by then is given up.
    pub setup_timeout: Duration,
}

impl FailoverPolicy {
    /// One attempt, no try-timeout: the candidate's answer is the answer.
    pub const NONE: FailoverPolicy = FailoverPolicy {
        failover_on: CodeSet::EMPTY,
        try_timeout: None,
        max_attempts: 1,
        setup_timeout: Duration::from_secs(3600),
    };

    /// The policy default: 408, 480, 500, 502, 503, 504; 3 s; 3 attempts; 30 s.
    pub fn standard() -> FailoverPolicy {
        FailoverPolicy {
            failover_on: CodeSet::from_codes([408, 480, 500, 502, 503, 504]),
            try_timeout: Some(Duration::from_secs(3)),
            max_attempts: 3,
            setup_timeout: Duration::from_secs(30),
        }
    }
}

/// What routing decided for a new request besides its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChoice {
    /// The route taken (an index the routing layer can name in metrics), if any.
    pub route: Option<u16>,
    pub failover: FailoverPolicy,
}

impl Default for RouteChoice {
    fn default() -> Self {
        RouteChoice {
            route: None,
            failover: FailoverPolicy::NONE,
        }
    }
}

/// The core's exact session counts, for strategies that balance by load.
pub trait TrunkLoad {
    /// Sessions in progress on `trunk` (both directions).
    fn sessions(&self, trunk: TrunkId) -> u32;
}

pub trait Routing: Send + Sync {
    /// Classify a request's source IP address.
    fn classify(&self, source: IpAddr) -> Party;
    /// Classify a source by IP and port: the port decides between peers that share one IP
    /// (their `address`es differ only in port). Default: by IP alone.
    fn classify_at(&self, source: std::net::SocketAddr) -> Party {
        self.classify(source.ip())
    }
    /// Candidates for a new out-of-dialog request (INVITE, OPTIONS, MESSAGE, ...) from `from`,
    /// best first, written into `out` (cleared by the caller). `request_user` is the
    /// Request-URI user part (digits for a phone number), if any. Empty: no route.
    /// Candidates that are down or cooling down are left out; limits (sessions, call
    /// rate) are the core's to check.
    fn candidates(
        &self,
        now: Instant,
        from: Party,
        request_user: Option<&[u8]>,
        load: &dyn TrunkLoad,
        out: &mut Vec<Target>,
    ) -> RouteChoice;
    /// Candidates of trunk `trunk` alone, for a test call of a trunk that is on no route for
    /// its number: left out when it is down, drilled out or cooling down, as in
    /// [`Routing::candidates`]. Default: none.
    fn trunk_candidates(&self, now: Instant, trunk: TrunkId, out: &mut Vec<Target>) {
        let _ = (now, trunk, out);
    }

    /// Does trunk `trunk` have its calls' media anchored (`media.anchor`, default true)?
    /// Header normalisation of requests Trunkgate sends to trunk `trunk` (`toward_trunk`)
    /// or from it to the PBX; `None`: forwarded as the proxy builds them.
    fn normalise(
        &self,
        _trunk: TrunkId,
        _toward_trunk: bool,
    ) -> Option<&crate::normalise::Normalise> {
        None
    }

    fn anchor_media(&self, trunk: u16) -> bool {
        let _ = trunk;
        true
    }

    /// Is trunk `trunk`'s view of the inside hidden (`topology_hiding`, default false)?
    fn topology_hiding(&self, trunk: TrunkId) -> bool {
        let _ = trunk;
        false
    }

    /// Does any trunk hide the topology? Asked for every message sent: keep it cheap.
    fn any_topology_hiding(&self) -> bool {
        false
    }
}
