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

    pub fn record(&mut self, value: Usd) {
        self.entries.push_back((Instant::now(), value));
    }

    /// The window as the journal remembers it: conversions of `chain`
    /// confirmed during the last hour, valued at the oracle price of the
    /// ETH they brought. Survives restarts.
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
            let value = crate::money::value_usd(
                c.eth_out,
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
