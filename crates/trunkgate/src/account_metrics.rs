//! Provider accounts in `/metrics`: `trunkgate_account_sessions{account}` (the core's exact
//! per-account session counts, [`ProxyMetrics::accounts`], plain atomics) and
//! `trunkgate_account_sessions_limit{account}` (each account's `max_sessions`), read at
//! scrape time like [`crate::metrics::SipCollector`]'s families. Refusals because of an
//! account are in `trunkgate_rejects_total{trunk, reason="account_sessions"|"account_cps"}`
//! there, on the trunk that was skipped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use trunkgate_sip::ProxyMetrics;

#[derive(Debug)]
pub struct AccountCollector {
    proxy: Arc<ProxyMetrics>,
    /// By account id: the account's name and its `max_sessions`.
    accounts: Vec<(String, Option<u32>)>,
}

impl AccountCollector {
    /// `accounts`: name and `max_sessions` of each account id (0, 1, 2, …).
    pub fn new(
        proxy: Arc<ProxyMetrics>,
        accounts: impl IntoIterator<Item = (String, Option<u32>)>,
    ) -> AccountCollector {
        AccountCollector {
            proxy,
            accounts: accounts.into_iter().collect(),
        }
    }
}

impl Collector for AccountCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = enc.encode_descriptor(
                "trunkgate_account_sessions",
                "Sessions (calls) in progress on all trunks of each [[account]], both directions",
                None,
                MetricType::Gauge,
            )?;
            for (id, (name, _)) in self.accounts.iter().enumerate() {
                let v = self
                    .proxy
                    .accounts
                    .get(id)
                    .map_or(0, |g| g.load(Ordering::Relaxed));
                m.encode_family(&[("account", name.as_str())])?
                    .encode_gauge(&v)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "trunkgate_account_sessions_limit",
            "max_sessions per [[account]] (accounts without a limit are not listed)",
            None,
            MetricType::Gauge,
        )?;
        for (name, limit) in &self.accounts {
            if let Some(limit) = limit {
                m.encode_family(&[("account", name.as_str())])?
                    .encode_gauge(&i64::from(*limit))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn exports_sessions_and_limits_per_account() {
        let proxy = Arc::new(ProxyMetrics::with_accounts(2, 2));
        proxy.accounts[0].store(7, Ordering::Relaxed);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AccountCollector::new(
            proxy,
            [("acme".to_owned(), Some(10)), ("globex".to_owned(), None)],
        )));
        let text = crate::metrics::render(&registry).unwrap();
        assert!(
            text.contains("trunkgate_account_sessions{account=\"acme\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("trunkgate_account_sessions{account=\"globex\"} 0\n"));
        assert!(text.contains("trunkgate_account_sessions_limit{account=\"acme\"} 10\n"));
        assert!(!text.contains("trunkgate_account_sessions_limit{account=\"globex\"}"));
    }
}
