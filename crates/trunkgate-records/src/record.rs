//! One call record: what happened to one call attempt, from the INVITE to the end, with
//! every trunk tried. Built by the daemon from the proxy core's events; stored by
//! [`crate::store`]; read by the statistics. Times are wall clock, milliseconds since the
//! Unix epoch (UTC). No secret (password, token, digest answer) is ever part of a record.

use serde::{Deserialize, Serialize};

/// Which way a call went through Trunkgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a trunk to the PBX.
    Inbound,
    /// From the PBX to a trunk.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// One candidate tried for the call (a branch), in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Trunk (or PBX node) name.
    pub to: String,
    /// When the branch was sent, ms after the record's `start_ms`.
    pub offset_ms: u32,
    /// How long the branch lasted until its final (or timeout), ms.
    pub duration_ms: u32,
    /// `"200"`, `"503"`, …, `"timeout"`, `"try-timeout"`, `"transport"`, `"abandoned"`;
    /// `"up"` while the record is built and the branch has not ended.
    pub outcome: String,
    /// Post-dial delay of this branch: to its first provisional response, ms.
    pub first_provisional_ms: Option<u32>,
    /// The next candidate was tried after this one.
    pub failover: bool,
}

/// What the relay saw of one leg of one media stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaLeg {
    /// `"pbx"` or `"trunk"`: the side whose peer sent these packets.
    pub side: String,
    /// Codec name from the stream's first payload type (`"PCMU"`, `"PCMA"`, `"G722"`,
    /// `"G729"`, …; `"dynamic/<clock rate>"` for a dynamic type; `"?"` unknown).
    pub codec: String,
    /// Datagrams (RTP and RTCP) received from the peer, and their UDP payload bytes.
    pub packets: u64,
    pub bytes: u64,
    /// RTP packets lost (sequence gaps) and their share of the expected packets, %.
    pub lost: u64,
    pub loss_pct: f64,
    /// RFC 3550 interarrival jitter of the peer's RTP at the end of the call, ms (the
    /// relay keeps the running estimate, not a history: mean and maximum over the call are
    /// not recorded).
    pub jitter_ms: f64,
    /// Packets per second over the stream's life.
    pub packet_rate: f64,
    /// How long the stream existed (from its SDP offer), s.
    pub seconds: f64,
    /// How long this side's packets flowed (first to last, plus one interval), s.
    #[serde(default)]
    pub active_seconds: f64,
}

/// One call attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    /// INVITE arrived (ms since the epoch).
    pub start_ms: i64,
    /// 2xx relayed to the caller.
    pub answer_ms: Option<i64>,
    /// BYE, CANCEL, final failure, or the reject.
    pub end_ms: i64,
    pub direction: Direction,
    /// The trunk that carried the call: the one that answered, else the last one tried
    /// (outbound), or the one the call came from (inbound). For a reject for capacity, the
    /// trunk that had no room. `None`: no trunk was involved (no route).
    pub trunk: Option<String>,
    pub route: Option<String>,
    /// The PBX node the call came from or went to, when the policy names nodes.
    pub pbx_node: Option<String>,
    /// From user part and Request-URI user part (phone numbers, as the peers sent them).
    pub caller: String,
    pub callee: String,
    /// Final response code to the caller (200 when answered).
    pub code: u16,
    /// INVITE to the first provisional response relayed, ms.
    pub first_provisional_ms: Option<u32>,
    /// INVITE to answer, ms.
    pub setup_ms: Option<u32>,
    /// Answer to end, ms (0 when not answered).
    pub duration_ms: u32,
    pub attempts: Vec<Attempt>,
    /// `bye-caller`, `bye-callee`, `cancelled`, `rejected`, `media-timeout`, `expired`,
    /// `in-dialog-failure`, `replaced`, `shutdown`, `refused` (by Trunkgate, see `reject`).
    pub end_reason: String,
    /// Why Trunkgate itself refused the call: `sessions`, `account-sessions`, `cps`,
    /// `account-cps` (capacity), `no-route`, `shutting-down`, `media`, `unreachable`.
    pub reject: Option<String>,
    /// The INVITE carried Referred-By, Replaces or Diversion (a transfer or forward).
    pub transfer: bool,
    pub media: Vec<MediaLeg>,
}

impl CallRecord {
    /// Number of failovers: attempts that were followed by another one.
    pub fn failovers(&self) -> usize {
        self.attempts.iter().filter(|a| a.failover).count()
    }

    /// Refused by Trunkgate for lack of capacity (a session or call-rate limit).
    pub fn capacity_reject(&self) -> bool {
        matches!(
            self.reject.as_deref(),
            Some("sessions" | "account-sessions" | "cps" | "account-cps")
        )
    }

    /// The reject label for statistics: Trunkgate's own reason, else the final code of an
    /// unanswered call (`None` when answered).
    pub fn reject_label(&self) -> Option<String> {
        if let Some(r) = &self.reject {
            return Some(r.clone());
        }
        if self.answer_ms.is_some() {
            return None;
        }
        Some(match self.end_reason.as_str() {
            "cancelled" => "cancelled".to_owned(),
            _ => self.code.to_string(),
        })
    }
}
