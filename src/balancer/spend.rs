//! The hourly spend limit's rolling window, per chain: USD converted
//! during the last hour, rebuilt from the journal's events at start-up so
//! that a restart does not reset it.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{domain::ConversionState, journal::Journal, money::Usd};

/// The rolling window of the hourly spend limit.
const SPEND_WINDOW: Duration = Duration::from_secs(3600);

/// USD converted on a chain during the last hour.
#[derive(Default)]
pub struct SpendWindow {
    entries: VecDeque<(Instant, Usd)>,
}

impl SpendWindow {
    pub fn remaining(&mut self, limit: Usd) -> Usd {
        let now = Instant::now();
        while let Some((at, _)) = self.entries.front() {
            if now.duration_since(*at) > SPEND_WINDOW {
                self.entries.pop_front();
            } else {
                break;
            }
        }
        let spent = self
            .entries
            .iter()
            .fold(Usd::ZERO, |a, (_, v)| a.saturating_add(*v));
        limit.saturating_sub(spent)
    }

    /// How long until the window has freed enough for `requested` under
    /// `limit`: conversions leave it one hour after they confirmed, oldest
    /// first. `None` when `requested` alone exceeds `limit` (waiting never
    /// helps); zero when it fits already.
    pub fn frees_in(&mut self, limit: Usd, requested: Usd) -> Option<Duration> {
        if requested > limit {
            return None;
        }
        let allowed = limit.saturating_sub(requested);
        // Drops the entries older than the window first.
        self.remaining(limit);
        let mut spent = self
            .entries
            .iter()
            .fold(Usd::ZERO, |a, (_, v)| a.saturating_add(*v));
        if spent <= allowed {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        for (at, v) in &self.entries {
            spent = spent.saturating_sub(*v);
            if spent <= allowed {
                // `remaining` drops an entry once it is older than the
                // window: a second past it.
                return Some(
                    (*at + SPEND_WINDOW + Duration::from_secs(1)).saturating_duration_since(now),
                );
            }
        }
        Some(Duration::ZERO)
    }

    pub fn record(&mut self, value: Usd) {
        self.entries.push_back((Instant::now(), value));
    }

    /// The window as the journal remembers it: conversions of `chain`
    /// confirmed during the last hour, valued as they were planned (the
    /// planned ETH at the oracle price of the plan), as the live window
    /// counts them: never from what events show arrived. Survives restarts.
    pub fn from_journal(journal: &Journal, chain: &str) -> SpendWindow {
        let now_ms = crate::journal::now_ms();
        let since = now_ms.saturating_sub(SPEND_WINDOW.as_millis() as u64);
        let mut w = SpendWindow::default();
        let events = match journal.events_since(since) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(%chain, error = %e, "cannot read the spend window from the journal");
                return w;
            }
        };
        for e in events {
            if e.chain != chain || e.state != ConversionState::Confirmed {
                continue;
            }
            let c = &e.conversion;
            let planned = if c.planned_eth_out.is_zero() {
                c.eth_out
            } else {
                c.planned_eth_out
            };
            let value = crate::money::value_usd(
                planned,
                crate::money::ETH_DECIMALS,
                c.eth_price,
                crate::money::Rounding::Up,
            );
            let age = Duration::from_millis(now_ms.saturating_sub(e.time_ms));
            let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            w.entries.push_back((at, value));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};

    use super::*;
    use crate::{
        domain::{ConversionReport, VenueLabel},
        journal::ConversionRecord,
        money::Price,
    };

    fn confirmed(id: &str, planned_eth_out: U256, eth_out: U256) -> ConversionRecord {
        ConversionRecord {
            chain: "arbitrum".into(),
            request_id: id.into(),
            report: ConversionReport {
                id: id.into(),
                token_symbol: "USDC".into(),
                token_address: Address::ZERO,
                venue: VenueLabel::UniswapV3,
                venue_name: "v3".into(),
                fee_tier: 500,
                eth_out,
                planned_eth_out,
                max_amount_in: U256::ZERO,
                quoted_amount_in: U256::ZERO,
                amount_in: Some(U256::ZERO),
                token_price: Price {
                    answer: U256::from(100_000_000u64),
                    decimals: 8,
                },
                // $3000.
                eth_price: Price {
                    answer: U256::from(300_000_000_000u64),
                    decimals: 8,
                },
                state: ConversionState::Confirmed,
                tx_hash: None,
                approval_tx_hashes: Vec::new(),
                gas_used: 0,
                gas_cost_wei: U256::ZERO,
                block_number: 1,
                error: None,
            },
            txs: Vec::new(),
            tx_states: Default::default(),
        }
    }

    /// Rebuilt at start-up, the window counts what was planned, as the live
    /// window does: a receipt that showed less (an aeWETH unwrap read as 0
    /// ETH before burns were understood) does not shrink it.
    #[test]
    fn the_window_rebuilt_from_the_journal_counts_planned_values() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        let eth = U256::from(10u64).pow(U256::from(18));
        // 1 ETH planned, 0 seen arriving: $3000.
        journal
            .record_conversion(
                &confirmed("a#1/0", eth, U256::ZERO),
                Some((ConversionState::Confirmed, None)),
            )
            .unwrap();
        // A record from before `planned_eth_out`: its eth_out stands in ($1500).
        journal
            .record_conversion(
                &confirmed("b#1/0", U256::ZERO, eth / U256::from(2u64)),
                Some((ConversionState::Confirmed, None)),
            )
            .unwrap();
        let mut w = SpendWindow::from_journal(&journal, "arbitrum");
        assert_eq!(
            w.remaining(Usd::from_dollars(5_000)),
            Usd::from_dollars(500)
        );
        assert_eq!(
            SpendWindow::from_journal(&journal, "base").remaining(Usd::from_dollars(5_000)),
            Usd::from_dollars(5_000),
            "other chains' conversions do not count"
        );
    }

    #[test]
    fn frees_in_counts_the_oldest_spends_out_first() {
        let mut w = SpendWindow::default();
        let now = Instant::now();
        // $600 spent 50 minutes ago, $300 10 minutes ago; the limit is $1000.
        w.entries
            .push_back((now - Duration::from_secs(50 * 60), Usd::from_dollars(600)));
        w.entries
            .push_back((now - Duration::from_secs(10 * 60), Usd::from_dollars(300)));
        // $100 fits now.
        assert_eq!(
            w.frees_in(Usd::from_dollars(1000), Usd::from_dollars(100)),
            Some(Duration::ZERO)
        );
        // $500 fits once the $600 leaves: in about 10 minutes.
        let d = w
            .frees_in(Usd::from_dollars(1000), Usd::from_dollars(500))
            .unwrap();
        assert!(
            d > Duration::from_secs(9 * 60) && d <= Duration::from_secs(10 * 60 + 1),
            "{d:?}"
        );
        // $900 needs both gone: in about 50 minutes.
        let d = w
            .frees_in(Usd::from_dollars(1000), Usd::from_dollars(900))
            .unwrap();
        assert!(
            d > Duration::from_secs(49 * 60) && d <= Duration::from_secs(50 * 60 + 1),
            "{d:?}"
        );
        // More than the limit itself: never.
        assert_eq!(
            w.frees_in(Usd::from_dollars(1000), Usd::from_dollars(1001)),
            None
        );
    }
}
