//! The policy as written: serde structs that refuse unknown keys and keep every value's
//! location. Leaves are [`Field`]s (any TOML value plus where it came from) so that type
//! checks happen in `validate` and every problem is reported, not only the first.

use crate::error::At;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use toml::Spanned;

/// A leaf value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub value: Value,
    pub at: At,
}

/// The TOML value shapes the schema uses. Tables and date-times are never valid leaves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Field>),
    /// A table or a date-time: only named in "expected …" messages.
    Other,
}

impl Value {
    /// "a string", "an integer", … for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Other => "a table or date-time",
        }
    }
}

impl Field {
    /// Re-home this value (and its elements) to `at`; used for environment overrides.
    pub fn relocate(&mut self, at: &At) {
        self.at = at.clone();
        if let Value::Array(items) = &mut self.value {
            for item in items {
                item.relocate(at);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let at = At::Span(spanned.span());
        Ok(Field {
            value: spanned.into_inner(),
            at,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Field>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

/// A table header's location plus its contents.
pub(crate) type Table<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub listen: Table<RawListen>,
    pub sip: Table<RawSip>,
    pub admin: Table<RawAdmin>,
    pub pbx: Table<RawPbx>,
    pub security: Table<RawSecurity>,
    pub flood: Table<RawFlood>,
    pub register: Table<RawRegister>,
    pub media: Table<RawMedia>,
    pub health: Table<RawHealth>,
    pub limits: Table<RawLimits>,
    pub drill: Table<RawDrill>,
    pub dns: Table<RawDns>,
    pub records: Table<RawRecords>,
    pub validate: Table<RawValidate>,
    pub tls: Table<RawTls>,
    pub trunk: Option<Spanned<Vec<Spanned<RawTrunk>>>>,
    pub route: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    pub account: Option<Spanned<Vec<Spanned<RawAccount>>>>,
    pub test_call: Option<Spanned<Vec<Spanned<RawTestCall>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValidate {
    pub concurrency: Option<Field>,
    pub start_interval: Option<Field>,
    pub setup_timeout: Option<Field>,
    pub after_reload: Option<Field>,
    pub busy_hours: Option<Field>,
    pub keep_runs: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTestCall {
    pub name: Option<Field>,
    pub trunk: Option<Field>,
    pub direction: Option<Field>,
    pub to: Option<Field>,
    pub from: Option<Field>,
    pub duration: Option<Field>,
    pub codec: Option<Field>,
    pub expect: Option<Field>,
    pub echo: Option<Field>,
    pub max_pdd: Option<Field>,
    pub min_mos: Option<Field>,
    pub suites: Option<Field>,
    pub every: Option<Field>,
    pub count_limits: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub sip: Option<Field>,
    pub advertised: Option<Field>,
    pub dscp: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMedia {
    pub address: Option<Field>,
    pub advertised: Option<Field>,
    pub ports: Option<Field>,
    pub dscp: Option<Field>,
    pub latch: Option<Field>,
    pub timeout: Option<Field>,
    pub hold_timeout: Option<Field>,
    pub threads: Option<Field>,
    pub nice: Option<Field>,
    pub fastpath: Option<Field>,
    pub one_way_after: Option<Field>,
    pub quality_interval: Option<Field>,
    pub assumed_delay: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub connections_per_source: Option<Field>,
    pub sip_connections: Option<Field>,
    pub media_calls: Option<Field>,
    pub fd_margin: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkMedia {
    pub anchor: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSip {
    pub t1: Option<Field>,
    pub t2: Option<Field>,
    pub t4: Option<Field>,
    pub timer_c: Option<Field>,
    pub max_message_size: Option<Field>,
    pub tcp_idle_timeout: Option<Field>,
    pub tcp_header_timeout: Option<Field>,
    pub shutdown_grace: Option<Field>,
    pub max_headers: Option<Field>,
    pub max_via: Option<Field>,
    pub overflow_retry_after: Option<Field>,
    pub dialog_timeout: Option<Field>,
    pub nice: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<Field>,
    pub token_file: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrill {
    pub max_duration: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub certificate: Option<Field>,
    pub private_key: Option<Field>,
    pub ca_file: Option<Field>,
    pub require_client_certificate: Option<Field>,
    pub client_ca_file: Option<Field>,
    pub handshake_timeout: Option<Field>,
}

/// A trunk's or `[pbx]`'s `tls = { server_name, ca_file, certificate, private_key,
/// insecure_skip_verify }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeerTls {
    pub server_name: Option<Field>,
    pub ca_file: Option<Field>,
    pub certificate: Option<Field>,
    pub private_key: Option<Field>,
    pub insecure_skip_verify: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecords {
    pub enabled: Option<Field>,
    pub path: Option<Field>,
    pub keep: Option<Field>,
    pub max_size: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPbx {
    pub address: Option<Field>,
    pub transport: Option<Field>,
    pub allow: Option<Field>,
    /// Inbound failover between the nodes (as a route's keys).
    pub failover_on: Option<Field>,
    pub try_timeout: Option<Field>,
    pub max_attempts: Option<Field>,
    pub setup_timeout: Option<Field>,
    pub probe: Option<Spanned<RawProbe>>,
    pub tls: Option<Spanned<RawPeerTls>>,
    /// Further PBX nodes (`[[pbx.node]]`), tried after the first.
    pub node: Option<Spanned<Vec<Spanned<RawPbxNode>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPbxNode {
    pub name: Option<Field>,
    pub address: Option<Field>,
    pub transport: Option<Field>,
    pub allow: Option<Field>,
    pub dids: Option<Field>,
    pub probe: Option<Spanned<RawProbe>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunk {
    pub name: Option<Field>,
    pub address: Option<Field>,
    pub transport: Option<Field>,
    pub allow: Option<Field>,
    pub max_sessions: Option<Field>,
    pub max_cps: Option<Field>,
    pub max_inbound: Option<Field>,
    pub max_outbound: Option<Field>,
    pub cps_burst: Option<Field>,
    pub media: Option<Spanned<RawTrunkMedia>>,
    pub weight: Option<Field>,
    pub probe: Option<Spanned<RawProbe>>,
    pub auth: Option<Spanned<RawAuth>>,
    pub register: Option<Spanned<RawTrunkRegister>>,
    /// `[trunk.outbound]`: header normalisation of requests sent to the trunk.
    pub outbound: Option<Spanned<RawRules>>,
    /// `[trunk.inbound]`: of requests from the trunk to the PBX.
    pub inbound: Option<Spanned<RawRules>>,
    /// `topology_hiding = BOOL`: the trunk sees nothing of the inside.
    pub topology_hiding: Option<Field>,
    pub tls: Option<Spanned<RawPeerTls>>,
}

/// A trunk's header normalisation for one direction.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRules {
    pub called: Option<Field>,
    pub calling: Option<Field>,
    pub remove_headers: Option<Field>,
    pub keep_headers: Option<Field>,
    pub add_headers: Option<Field>,
    pub user_agent: Option<Field>,
}

/// A trunk's `register = { user, password_file | password_env, realm, expires,
/// contact_user, route_when_down }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkRegister {
    pub user: Option<Field>,
    pub password_file: Option<Field>,
    pub password_env: Option<Field>,
    pub realm: Option<Field>,
    pub expires: Option<Field>,
    pub contact_user: Option<Field>,
    pub route_when_down: Option<Field>,
}

/// A trunk's `auth = { user, password_file | password_env, realm }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub user: Option<Field>,
    pub password_file: Option<Field>,
    pub password_env: Option<Field>,
    pub realm: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub interval: Option<Field>,
    pub timeout: Option<Field>,
    pub down_after: Option<Field>,
    pub up_after: Option<Field>,
    pub ok_codes: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub breaker_failures: Option<Field>,
    pub breaker_window: Option<Field>,
    pub breaker_cooldown: Option<Field>,
    pub retry_after_max: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub servers: Option<Field>,
    pub timeout: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub unknown_source: Option<Field>,
    pub block_user_agents: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlood {
    pub rate: Option<Field>,
    pub burst: Option<Field>,
    pub ban: Option<Field>,
    pub exempt_peers: Option<Field>,
    pub exempt: Option<Field>,
    pub max_sources: Option<Field>,
    pub ipv6_prefix: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegister {
    pub max_rate: Option<Field>,
    pub burst: Option<Field>,
    pub retry_after_min: Option<Field>,
    pub retry_after_max: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<Field>,
    #[serde(rename = "match")]
    pub match_: Option<Spanned<RawMatch>>,
    pub trunks: Option<Field>,
    pub strategy: Option<Field>,
    pub failover_on: Option<Field>,
    pub try_timeout: Option<Field>,
    pub max_attempts: Option<Field>,
    pub setup_timeout: Option<Field>,
}

/// `[[account]]`: limits shared by several trunks of one provider account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub name: Option<Field>,
    pub trunks: Option<Field>,
    pub max_sessions: Option<Field>,
    pub max_inbound: Option<Field>,
    pub max_outbound: Option<Field>,
    pub max_cps: Option<Field>,
    pub cps_burst: Option<Field>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub to_prefix: Option<Field>,
}

/// The keys of each table, for "unknown key" hints and environment overrides.
pub(crate) const ROOT_KEYS: &[&str] = &[
    "listen",
    "sip",
    "admin",
    "pbx",
    "security",
    "flood",
    "register",
    "media",
    "health",
    "limits",
    "drill",
    "dns",
    "records",
    "validate",
    "tls",
    "trunk",
    "route",
    "account",
    "test_call",
];
pub(crate) const VALIDATE_KEYS: &[&str] = &[
    "concurrency",
    "start_interval",
    "setup_timeout",
    "after_reload",
    "busy_hours",
    "keep_runs",
];
pub(crate) const TEST_CALL_KEYS: &[&str] = &[
    "name",
    "trunk",
    "direction",
    "to",
    "from",
    "duration",
    "codec",
    "expect",
    "echo",
    "max_pdd",
    "min_mos",
    "suites",
    "every",
    "count_limits",
];
pub(crate) const TLS_KEYS: &[&str] = &[
    "certificate",
    "private_key",
    "ca_file",
    "require_client_certificate",
    "client_ca_file",
    "handshake_timeout",
];
pub(crate) const PEER_TLS_KEYS: &[&str] = &[
    "server_name",
    "ca_file",
    "certificate",
    "private_key",
    "insecure_skip_verify",
];
pub(crate) const DNS_KEYS: &[&str] = &["servers", "timeout"];
pub(crate) const RECORDS_KEYS: &[&str] = &["enabled", "path", "keep", "max_size"];
pub(crate) const LIMITS_KEYS: &[&str] = &[
    "connections_per_source",
    "sip_connections",
    "media_calls",
    "fd_margin",
];
pub(crate) const LISTEN_KEYS: &[&str] = &["sip", "advertised", "dscp"];
pub(crate) const MEDIA_KEYS: &[&str] = &[
    "address",
    "advertised",
    "ports",
    "dscp",
    "latch",
    "timeout",
    "hold_timeout",
    "threads",
    "nice",
    "fastpath",
    "one_way_after",
    "quality_interval",
    "assumed_delay",
];
pub(crate) const SIP_KEYS: &[&str] = &[
    "t1",
    "t2",
    "t4",
    "timer_c",
    "max_message_size",
    "tcp_idle_timeout",
    "tcp_header_timeout",
    "shutdown_grace",
    "max_headers",
    "max_via",
    "overflow_retry_after",
    "dialog_timeout",
    "nice",
];
pub(crate) const ADMIN_KEYS: &[&str] = &["listen", "token_file"];
pub(crate) const DRILL_KEYS: &[&str] = &["max_duration"];
pub(crate) const PBX_KEYS: &[&str] = &[
    "address",
    "transport",
    "allow",
    "failover_on",
    "try_timeout",
    "max_attempts",
    "setup_timeout",
    "probe",
    "tls",
    "node",
];
pub(crate) const SECURITY_KEYS: &[&str] = &["unknown_source", "block_user_agents"];
pub(crate) const FLOOD_KEYS: &[&str] = &[
    "rate",
    "burst",
    "ban",
    "exempt_peers",
    "exempt",
    "max_sources",
    "ipv6_prefix",
];
pub(crate) const REGISTER_KEYS: &[&str] =
    &["max_rate", "burst", "retry_after_min", "retry_after_max"];
pub(crate) const TRUNK_KEYS: &[&str] = &[
    "name",
    "address",
    "transport",
    "allow",
    "max_sessions",
    "max_cps",
    "max_inbound",
    "max_outbound",
    "cps_burst",
    "media",
    "weight",
    "probe",
    "auth",
    "register",
    "outbound",
    "inbound",
    "topology_hiding",
    "tls",
];
pub(crate) const RULES_KEYS: &[&str] = &[
    "called",
    "calling",
    "remove_headers",
    "keep_headers",
    "add_headers",
    "user_agent",
];
pub(crate) const TRUNK_REGISTER_KEYS: &[&str] = &[
    "user",
    "password_file",
    "password_env",
    "realm",
    "expires",
    "contact_user",
    "route_when_down",
];
pub(crate) const AUTH_KEYS: &[&str] = &["user", "password_file", "password_env", "realm"];
pub(crate) const TRUNK_MEDIA_KEYS: &[&str] = &["anchor"];
pub(crate) const PROBE_KEYS: &[&str] =
    &["interval", "timeout", "down_after", "up_after", "ok_codes"];
pub(crate) const HEALTH_KEYS: &[&str] = &[
    "breaker_failures",
    "breaker_window",
    "breaker_cooldown",
    "retry_after_max",
];
pub(crate) const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "trunks",
    "max_sessions",
    "max_inbound",
    "max_outbound",
    "max_cps",
    "cps_burst",
];
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "name",
    "match",
    "trunks",
    "strategy",
    "failover_on",
    "try_timeout",
    "max_attempts",
    "setup_timeout",
];

impl RawPolicy {
    /// Set `section.key` from an environment override.
    pub fn set(&mut self, section: &str, key: &str, field: Field) -> Result<(), UnknownName> {
        fn table<T: Default>(t: &mut Table<T>) -> &mut T {
            t.get_or_insert_with(|| Spanned::new(0..0, T::default()))
                .get_mut()
        }
        let slot = match section {
            "listen" => {
                let t = table(&mut self.listen);
                match key {
                    "sip" => &mut t.sip,
                    "advertised" => &mut t.advertised,
                    "dscp" => &mut t.dscp,
                    _ => return Err(UnknownName::Key(LISTEN_KEYS)),
                }
            }
            "media" => {
                let t = table(&mut self.media);
                match key {
                    "address" => &mut t.address,
                    "advertised" => &mut t.advertised,
                    "ports" => &mut t.ports,
                    "dscp" => &mut t.dscp,
                    "latch" => &mut t.latch,
                    "timeout" => &mut t.timeout,
                    "hold_timeout" => &mut t.hold_timeout,
                    "threads" => &mut t.threads,
                    "nice" => &mut t.nice,
                    "fastpath" => &mut t.fastpath,
                    "one_way_after" => &mut t.one_way_after,
                    "quality_interval" => &mut t.quality_interval,
                    "assumed_delay" => &mut t.assumed_delay,
                    _ => return Err(UnknownName::Key(MEDIA_KEYS)),
                }
            }
            "sip" => {
                let t = table(&mut self.sip);
                match key {
                    "t1" => &mut t.t1,
                    "t2" => &mut t.t2,
                    "t4" => &mut t.t4,
                    "timer_c" => &mut t.timer_c,
                    "max_message_size" => &mut t.max_message_size,
                    "tcp_idle_timeout" => &mut t.tcp_idle_timeout,
                    "tcp_header_timeout" => &mut t.tcp_header_timeout,
                    "shutdown_grace" => &mut t.shutdown_grace,
                    "max_headers" => &mut t.max_headers,
                    "max_via" => &mut t.max_via,
                    "overflow_retry_after" => &mut t.overflow_retry_after,
                    "dialog_timeout" => &mut t.dialog_timeout,
                    "nice" => &mut t.nice,
                    _ => return Err(UnknownName::Key(SIP_KEYS)),
                }
            }
            "limits" => {
                let t = table(&mut self.limits);
                match key {
                    "connections_per_source" => &mut t.connections_per_source,
                    "sip_connections" => &mut t.sip_connections,
                    "media_calls" => &mut t.media_calls,
                    "fd_margin" => &mut t.fd_margin,
                    _ => return Err(UnknownName::Key(LIMITS_KEYS)),
                }
            }
            "admin" => {
                let t = table(&mut self.admin);
                match key {
                    "listen" => &mut t.listen,
                    "token_file" => &mut t.token_file,
                    _ => return Err(UnknownName::Key(ADMIN_KEYS)),
                }
            }
            "drill" => {
                let t = table(&mut self.drill);
                match key {
                    "max_duration" => &mut t.max_duration,
                    _ => return Err(UnknownName::Key(DRILL_KEYS)),
                }
            }
            "records" => {
                let t = table(&mut self.records);
                match key {
                    "enabled" => &mut t.enabled,
                    "path" => &mut t.path,
                    "keep" => &mut t.keep,
                    "max_size" => &mut t.max_size,
                    _ => return Err(UnknownName::Key(RECORDS_KEYS)),
                }
            }
            "validate" => {
                let t = table(&mut self.validate);
                match key {
                    "concurrency" => &mut t.concurrency,
                    "start_interval" => &mut t.start_interval,
                    "setup_timeout" => &mut t.setup_timeout,
                    "after_reload" => &mut t.after_reload,
                    "busy_hours" => &mut t.busy_hours,
                    "keep_runs" => &mut t.keep_runs,
                    _ => return Err(UnknownName::Key(VALIDATE_KEYS)),
                }
            }
            "pbx" => {
                let t = table(&mut self.pbx);
                match key {
                    "address" => &mut t.address,
                    "transport" => &mut t.transport,
                    "allow" => &mut t.allow,
                    "failover_on" => &mut t.failover_on,
                    "try_timeout" => &mut t.try_timeout,
                    "max_attempts" => &mut t.max_attempts,
                    "setup_timeout" => &mut t.setup_timeout,
                    _ => return Err(UnknownName::Key(PBX_KEYS)),
                }
            }
            "security" => {
                let t = table(&mut self.security);
                match key {
                    "unknown_source" => &mut t.unknown_source,
                    "block_user_agents" => &mut t.block_user_agents,
                    _ => return Err(UnknownName::Key(SECURITY_KEYS)),
                }
            }
            "flood" => {
                let t = table(&mut self.flood);
                match key {
                    "rate" => &mut t.rate,
                    "burst" => &mut t.burst,
                    "ban" => &mut t.ban,
                    "exempt_peers" => &mut t.exempt_peers,
                    "exempt" => &mut t.exempt,
                    "max_sources" => &mut t.max_sources,
                    "ipv6_prefix" => &mut t.ipv6_prefix,
                    _ => return Err(UnknownName::Key(FLOOD_KEYS)),
                }
            }
            "register" => {
                let t = table(&mut self.register);
                match key {
                    "max_rate" => &mut t.max_rate,
                    "burst" => &mut t.burst,
                    "retry_after_min" => &mut t.retry_after_min,
                    "retry_after_max" => &mut t.retry_after_max,
                    _ => return Err(UnknownName::Key(REGISTER_KEYS)),
                }
            }
            "health" => {
                let t = table(&mut self.health);
                match key {
                    "breaker_failures" => &mut t.breaker_failures,
                    "breaker_window" => &mut t.breaker_window,
                    "breaker_cooldown" => &mut t.breaker_cooldown,
                    "retry_after_max" => &mut t.retry_after_max,
                    _ => return Err(UnknownName::Key(HEALTH_KEYS)),
                }
            }
            "dns" => {
                let t = table(&mut self.dns);
                match key {
                    "servers" => &mut t.servers,
                    "timeout" => &mut t.timeout,
                    _ => return Err(UnknownName::Key(DNS_KEYS)),
                }
            }
            "tls" => {
                let t = table(&mut self.tls);
                match key {
                    "certificate" => &mut t.certificate,
                    "private_key" => &mut t.private_key,
                    "ca_file" => &mut t.ca_file,
                    "require_client_certificate" => &mut t.require_client_certificate,
                    "client_ca_file" => &mut t.client_ca_file,
                    "handshake_timeout" => &mut t.handshake_timeout,
                    _ => return Err(UnknownName::Key(TLS_KEYS)),
                }
            }
            _ => return Err(UnknownName::Section),
        };
        *slot = Some(field);
        Ok(())
    }
}

/// Why an environment override names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnknownName {
    /// Not one of the single-table sections.
    Section,
    /// Not a key of that section; the valid keys.
    Key(&'static [&'static str]),
}

/// The sections that environment overrides reach.
pub(crate) const ENV_SECTIONS: &[&str] = &[
    "listen", "sip", "admin", "pbx", "security", "flood", "register", "media", "health", "limits",
    "drill", "dns", "records", "validate", "tls",
];

/// The valid name closest to `word` (edit distance at most 1/3 of its length, min 2).
pub(crate) fn closest<'k>(word: &str, candidates: &[&'k str]) -> Option<&'k str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("max_sesions", SIP_KEYS), None);
        assert_eq!(
            closest("max_sesions", &["max_sessions", "max_cps"]),
            Some("max_sessions")
        );
        assert_eq!(closest("adress", PBX_KEYS), Some("address"));
        assert_eq!(closest("zzz", PBX_KEYS), None);
    }
}
