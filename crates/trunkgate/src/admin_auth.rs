//! The admin API's bearer token. Every state-changing call (any method but GET/HEAD) must
//! carry `Authorization: Bearer <token>` when a token is configured (`[admin] token_file`,
//! else `TRUNKGATE_ADMIN_TOKEN`); without one configured the API is open, which start-up
//! allows only on a loopback listener. A wrong or missing token gets 401, is counted
//! (`trunkgate_admin_unauthorized_total`) and logged at most once per source per minute.
//!
//! The token itself never reaches a log line, a metric, an answer or a diff: callers are
//! named by a token id (`token:` and 8 hex digits of a hash of it). Comparison takes the
//! same time wherever the first difference is.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable that holds the token when the policy names no file.
pub const TOKEN_ENV: &str = "TRUNKGATE_ADMIN_TOKEN";

/// How often one source's refusals are logged, at most.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most sources the refusal log remembers (then it starts over).
const LOG_SOURCES: usize = 1024;

/// A configured token.
#[derive(Clone)]
pub struct Token {
    secret: String,
    id: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("id", &self.id).finish()
    }
}

impl Token {
    pub fn new(secret: String) -> Token {
        let id = format!("token:{:08x}", fnv1a(secret.as_bytes()) >> 32);
        Token { secret, id }
    }

    /// `token:` and 8 hex digits: names the caller without revealing the token.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn matches(&self, offered: &[u8]) -> bool {
        constant_time_eq(self.secret.as_bytes(), offered)
    }
}

/// FNV-1a, 64 bits (also the policy hash).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Equal bytes? Looks at every byte of the longer input whatever it finds.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// The token the policy asks for: the first line of `token_file`, else
/// `TRUNKGATE_ADMIN_TOKEN`, else none. An unreadable or empty file is an error.
pub fn load_token(token_file: Option<&Path>) -> anyhow::Result<Option<Token>> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("admin.token_file {}: cannot read it: {e}", path.display())
        })?;
        let secret = text.lines().next().unwrap_or_default().trim().to_owned();
        if secret.is_empty() {
            anyhow::bail!(
                "admin.token_file {}: the file is empty; write the token on its first line",
                path.display()
            );
        }
        return Ok(Some(Token::new(secret)));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(Token::new))
}

/// Who made an admin call: a token id, or `local` (no token configured).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// The token in force (swapped by a reload that changes `token_file`) and the refusals.
#[derive(Debug, Default)]
pub struct AdminAuth {
    token: arc_swap::ArcSwapOption<Token>,
    unauthorized: AtomicU64,
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

impl AdminAuth {
    pub fn new(token: Option<Token>) -> AdminAuth {
        AdminAuth {
            token: arc_swap::ArcSwapOption::new(token.map(Arc::new)),
            ..AdminAuth::default()
        }
    }

    pub fn set_token(&self, token: Option<Token>) {
        self.token.store(token.map(Arc::new));
    }

    /// Refusals so far (`trunkgate_admin_unauthorized_total`).
    pub fn unauthorized(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// The caller of a request with this `Authorization` header, or `None`: refused.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<Caller> {
        let Some(token) = self.token.load_full() else {
            return Some(Caller("local".to_owned()));
        };
        let offered = authorization
            .and_then(|h| {
                h.strip_prefix(b"Bearer ")
                    .or_else(|| h.strip_prefix(b"bearer "))
            })
            .map(<[u8]>::trim_ascii)?;
        token
            .matches(offered)
            .then(|| Caller(token.id().to_owned()))
    }

    fn refused(&self, source: IpAddr, method: &Method, path: &str, missing: bool) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() >= LOG_SOURCES {
            logged.clear();
        }
        let due = logged
            .get(&source)
            .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY);
        if due {
            logged.insert(source, now);
            let why = if missing {
                "no bearer token"
            } else {
                "wrong token"
            };
            tracing::warn!(%source, %method, path, why, "admin API: refused (401); logged once per source per minute");
        }
    }
}

/// Exports `trunkgate_admin_unauthorized_total`.
#[derive(Debug)]
pub struct AuthCollector(pub Arc<AdminAuth>);

impl prometheus_client::collector::Collector for AuthCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let counter = prometheus_client::metrics::counter::ConstCounter::new(self.0.unauthorized());
        let metric = encoder.encode_descriptor(
            "trunkgate_admin_unauthorized",
            "Admin API calls refused with 401 (wrong or missing token)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// axum middleware: GET and HEAD pass; anything else needs the token.
pub async fn require_token(
    State(auth): State<Arc<AdminAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    match auth.check(header.as_deref()) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None if reading => {
            request.extensions_mut().insert(Caller("reader".to_owned()));
            next.run(request).await
        }
        None => {
            auth.refused(
                peer.ip(),
                request.method(),
                request.uri().path(),
                header.is_none(),
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({
                    "error": "unauthorized: this call changes state and needs the admin token \
                              (Authorization: Bearer …; see [admin] token_file)"
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_name_no_secret() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        let auth = AdminAuth::new(Some(Token::new("s3cret".into())));
        assert!(auth.check(None).is_none());
        assert!(auth.check(Some(b"Bearer nope")).is_none());
        let caller = auth.check(Some(b"Bearer s3cret")).unwrap();
        assert!(caller.0.starts_with("token:") && caller.0.len() == 14);
        assert!(!caller.0.contains("s3cret"));
        assert!(!format!("{:?}", Token::new("s3cret".into())).contains("s3cret"));
        let open = AdminAuth::new(None);
        assert_eq!(open.check(None).unwrap().0, "local");
    }
}
