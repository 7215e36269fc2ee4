//! A scripted chain for the transaction engine's unit tests: a pool, mined
//! receipts, the wallet's nonce, and a script that decides what each
//! broadcast does (accepted, answer lost after the node took it, nonce too
//! low, ...) and what happens on the chain between polls (mine, drop,
//! reorg, another sender at our nonce). The engine runs against it exactly
//! as against a node; the devnet tests prove the same on real nodes.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use alloy::{
    consensus::{Transaction, TxEnvelope},
    eips::Decodable2718,
    primitives::{Address, B256, Bytes, U256},
};

use super::{
    ExecError,
    backend::Backend,
    machine::SendResult,
    tx::{Call, RawReceipt},
};
use crate::chain::ChainError;

/// What one broadcast does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSend {
    /// Into the pool; answered `Accepted`.
    Accept,
    /// Into the pool, but the answer is lost (a 503 on the way back).
    AcceptLoseAnswer,
    /// Not into the pool, answer lost (the request never arrived).
    Lose,
    /// Answered with this error, not into the pool.
    Answer(SendResult),
}

/// The chain's state.
#[derive(Default)]
pub struct State {
    /// Pool: hash -> (nonce, max fee).
    pub pool: HashMap<B256, (u64, u128)>,
    /// Mined receipts of our transactions.
    pub mined: HashMap<B256, RawReceipt>,
    /// Transactions of the wallet mined (ours or foreign).
    pub latest_nonce: u64,
    pub head: u64,
    /// Every broadcast, in order: (hash, nonce).
    pub sent: Vec<(B256, u64)>,
    /// Reverts when mined.
    pub revert: bool,
    /// Reads that fail next (a 429 burst).
    pub failing_reads: u32,
    /// The latest block header's base fee.
    pub base_fee: u128,
}

impl State {
    /// Mines the best-paying pool transaction at the next nonce.
    pub fn mine(&mut self) -> Option<B256> {
        let nonce = self.latest_nonce;
        let (hash, _) = self
            .pool
            .iter()
            .filter(|(_, (n, _))| *n == nonce)
            .max_by_key(|(_, (_, fee))| *fee)
            .map(|(h, v)| (*h, *v))?;
        self.pool.retain(|_, (n, _)| *n != nonce);
        self.head += 1;
        self.latest_nonce += 1;
        let receipt: RawReceipt = serde_json::from_value(serde_json::json!({
            "transactionHash": hash,
            "blockNumber": format!("{:#x}", self.head),
            "blockHash": B256::from(U256::from(self.head)),
            "status": if self.revert { "0x0" } else { "0x1" },
            "gasUsed": "0x5208",
            "effectiveGasPrice": "0x3b9aca00",
            "logs": [],
        }))
        .unwrap();
        self.mined.insert(hash, receipt);
        Some(hash)
    }

    /// Another sender's transaction mined at the next nonce.
    pub fn mine_foreign(&mut self) {
        let nonce = self.latest_nonce;
        self.pool.retain(|_, (n, _)| *n != nonce);
        self.head += 1;
        self.latest_nonce += 1;
    }

    /// The last `depth` blocks reorged out: their receipts are gone and
    /// their transactions are in no pool.
    pub fn reorg(&mut self, depth: u64) {
        let from = self.head.saturating_sub(depth);
        let gone: Vec<B256> = self
            .mined
            .iter()
            .filter(|(_, r)| r.block() > from)
            .map(|(h, _)| *h)
            .collect();
        for h in gone {
            self.mined.remove(&h);
            self.latest_nonce -= 1;
        }
        self.head = from;
    }
}

type Script = Box<dyn FnMut(&mut State, u32) + Send>;

/// The scripted chain. `on_poll` runs at each poll (the engine's first
/// read of it: a receipt lookup after any other call), with the poll's
/// index from 0.
pub struct Mock {
    pub state: Mutex<State>,
    pub sends: Mutex<VecDeque<OnSend>>,
    on_poll: Mutex<Script>,
    polls: Mutex<u32>,
    /// The next receipt lookup starts a poll.
    armed: Mutex<bool>,
}

impl Mock {
    pub fn new(sends: &[OnSend], on_poll: impl FnMut(&mut State, u32) + Send + 'static) -> Mock {
        Mock {
            state: Mutex::new(State::default()),
            sends: Mutex::new(sends.iter().copied().collect()),
            on_poll: Mutex::new(Box::new(on_poll)),
            polls: Mutex::new(0),
            armed: Mutex::new(true),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Any call but a receipt lookup: the next lookup starts a poll.
    fn arm(&self) {
        *self.armed.lock().unwrap() = true;
    }

    /// The chain moves first, once per poll.
    fn maybe_start_poll(&self) {
        let start = std::mem::replace(&mut *self.armed.lock().unwrap(), false);
        if start {
            let i = {
                let mut p = self.polls.lock().unwrap();
                *p += 1;
                *p - 1
            };
            let mut s = self.state.lock().unwrap();
            (self.on_poll.lock().unwrap())(&mut s, i);
        }
    }

    fn read(&self) -> Result<(), ExecError> {
        let mut s = self.state.lock().unwrap();
        if s.failing_reads > 0 {
            s.failing_reads -= 1;
            return Err(ExecError::Chain(ChainError::Unavailable {
                chain: "mock".into(),
                reason: "HTTP 429".into(),
            }));
        }
        Ok(())
    }
}

fn decode(raw: &Bytes) -> (B256, u64, u128) {
    let env = TxEnvelope::decode_2718(&mut &raw[..]).unwrap();
    (*env.tx_hash(), env.nonce(), env.max_fee_per_gas())
}

impl Backend for Mock {
    async fn estimate_gas(&self, _from: Address, _call: &Call) -> Result<u64, ExecError> {
        Ok(50_000)
    }

    async fn priority_fee(&self) -> Result<u128, ExecError> {
        Ok(1_000_000_000)
    }

    async fn base_fee(&self) -> Result<u128, ExecError> {
        Ok(self.with(|s| s.base_fee))
    }

    async fn send_raw(&self, raw: &Bytes) -> SendResult {
        self.arm();
        let (hash, nonce, fee) = decode(raw);
        let action = self
            .sends
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(OnSend::Accept);
        let mut s = self.state.lock().unwrap();
        s.sent.push((hash, nonce));
        match action {
            OnSend::Accept => {
                s.pool.insert(hash, (nonce, fee));
                SendResult::Accepted
            }
            OnSend::AcceptLoseAnswer => {
                s.pool.insert(hash, (nonce, fee));
                SendResult::Lost
            }
            OnSend::Lose => SendResult::Lost,
            OnSend::Answer(r) => r,
        }
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RawReceipt>, ExecError> {
        self.maybe_start_poll();
        self.read()?;
        Ok(self.with(|s| s.mined.get(&hash).cloned()))
    }

    async fn is_known(&self, hash: B256) -> Result<bool, ExecError> {
        self.arm();
        self.read()?;
        Ok(self.with(|s| s.pool.contains_key(&hash) || s.mined.contains_key(&hash)))
    }

    async fn nonce(&self, _wallet: Address, pending: bool) -> Result<u64, ExecError> {
        self.arm();
        self.read()?;
        Ok(self.with(|s| {
            if pending {
                s.latest_nonce
                    + s.pool
                        .values()
                        .filter(|(n, _)| *n >= s.latest_nonce)
                        .count() as u64
            } else {
                s.latest_nonce
            }
        }))
    }

    async fn head(&self) -> Result<u64, ExecError> {
        self.arm();
        self.read()?;
        Ok(self.with(|s| s.head))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alloy::primitives::{U256, address};

    use super::*;
    use crate::{
        chain::ChainClient,
        config::Config,
        domain::{ConversionReport, ConversionState, TxState, VenueLabel},
        exec::{machine::GiveUp, tx::TxSender},
        journal::{ConversionRecord, Journal, TxPurpose},
        keys::WalletKey,
        money::Price,
    };

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    struct World {
        chain: ChainClient,
        key: WalletKey,
        journal: Journal,
        _dir: tempfile::TempDir,
    }

    fn world(edit: impl FnOnce(&mut crate::config::ChainConfig)) -> World {
        let mut config = Config::from_toml(
            r#"
[chains.mock]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
weth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
eth_usd_feed = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
confirmations = 1
max_fee_per_gas_wei = "100000000000"
max_priority_fee_per_gas_wei = "2000000000"
"#,
        )
        .unwrap();
        let mut chain = config.chains.remove("mock").unwrap();
        chain.block_time = Duration::from_millis(1);
        edit(&mut chain);
        let key = WalletKey::parse(KEY).unwrap();
        let dir = tempfile::tempdir().unwrap();
        World {
            chain: ChainClient::new(chain, key.address()).unwrap(),
            journal: Journal::open(&dir.path().join("j.redb")).unwrap(),
            key,
            _dir: dir,
        }
    }

    fn record() -> ConversionRecord {
        ConversionRecord {
            chain: "mock".into(),
            request_id: "r".into(),
            report: ConversionReport {
                id: "r#1/0".into(),
                token_symbol: "USDC".into(),
                token_address: Address::ZERO,
                venue: VenueLabel::UniswapV2,
                venue_name: "v2".into(),
                fee_tier: 0,
                eth_out: U256::from(1u64),
                planned_eth_out: U256::from(1u64),
                max_amount_in: U256::from(1u64),
                quoted_amount_in: U256::from(1u64),
                amount_in: None,
                token_price: Price {
                    answer: U256::ZERO,
                    decimals: 8,
                },
                eth_price: Price {
                    answer: U256::ZERO,
                    decimals: 8,
                },
                state: ConversionState::Planned,
                tx_hash: None,
                approval_tx_hashes: Vec::new(),
                gas_used: 0,
                gas_cost_wei: U256::ZERO,
                block_number: 0,
                error: None,
            },
            txs: Vec::new(),
            tx_states: Default::default(),
        }
    }

    fn call() -> Call {
        Call {
            what: "swap USDC for ETH".into(),
            to: address!("0x00000000000000000000000000000000000000aa"),
            data: Bytes::from_static(&[1, 2, 3]),
        }
    }

    /// A sender on `w` over `mock`, at nonce 0, waiting for ever.
    fn sender<'a>(
        w: &'a World,
        mock: &'a Mock,
        replace_after: Duration,
        deadline: u64,
    ) -> TxSender<'a, Mock> {
        TxSender {
            chain: &w.chain,
            backend: mock,
            key: &w.key,
            journal: &w.journal,
            nonce: Some(0),
            replace_after,
            deadline,
            wait_until_ms: u64::MAX,
        }
    }

    /// Sends one swap through the engine against `mock` and follows it.
    async fn run(
        w: &World,
        mock: &Mock,
        replace_after: Duration,
        deadline: u64,
    ) -> (Result<RawReceipt, ExecError>, ConversionRecord) {
        let mut sender = sender(w, mock, replace_after, deadline);
        let mut rec = record();
        let base_fee = U256::from(10_000_000_000u64);
        let nonce = sender
            .send(&call(), TxPurpose::Swap, base_fee, &mut rec)
            .await
            .unwrap();
        let r = sender.confirm(nonce, &mut rec).await;
        (r, rec)
    }

    const LATER: u64 = u64::MAX;
    const LONG: Duration = Duration::from_secs(3600);

    fn signed_hashes(rec: &ConversionRecord) -> Vec<B256> {
        rec.txs.iter().map(|t| t.hash).collect()
    }

    #[tokio::test]
    async fn a_lost_send_answer_is_never_signed_again() {
        let w = world(|_| {});
        // The node took it; the answer was lost. It mines two polls later.
        let mock = Mock::new(&[OnSend::AcceptLoseAnswer], |s, i| {
            if i == 2 {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        let r = r.unwrap();
        assert_eq!(rec.txs.len(), 1, "one signature, never another");
        assert_eq!(r.transaction_hash, rec.txs[0].hash);
        assert!(matches!(rec.tx_state(0), TxState::Confirmed { .. }));
        // The journal has the same state.
        let stored = w.journal.get_conversion("r#1/0").unwrap().unwrap();
        assert_eq!(stored.tx_state(0), rec.tx_state(0));
    }

    #[tokio::test]
    async fn nonce_too_low_never_re_signs_at_a_new_nonce() {
        let w = world(|_| {});
        // Someone else used our nonce: "nonce too low". The intent is not
        // signed again at the next nonce (a new nonce is a new plan).
        let mock = Mock::new(&[OnSend::Answer(SendResult::NonceTooLow)], |s, i| {
            if i == 0 {
                s.mine_foreign();
            }
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        assert!(
            matches!(r, Err(ExecError::NonceTaken { nonce: 0, .. })),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 1);
        assert!(mock.with(|s| s.sent.iter().all(|(_, n)| *n == 0)));
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rebroadcast_with_the_same_bytes() {
        let w = world(|_| {});
        let mock = Mock::new(&[OnSend::Lose], |s, i| {
            // Mined once the node has it again.
            if i >= crate::exec::tx::DROP_CHECK_EVERY {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(rec.txs.len(), 1, "no new signature");
        let sent = mock.with(|s| s.sent.clone());
        assert_eq!(sent.len(), 2, "broadcast, then the same bytes again");
        assert_eq!(sent[0], sent[1]);
    }

    #[tokio::test]
    async fn read_errors_are_retried_never_failed() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |s, i| {
            if i == 0 {
                s.failing_reads = 5;
            }
            if i == 3 {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(rec.txs.len(), 1);
    }

    #[tokio::test]
    async fn a_foreign_transaction_at_our_nonce_fails_it_without_replacing_it() {
        let w = world(|_| {});
        // The executor's own trade holds our nonce: our broadcast hears
        // "replacement transaction underpriced"; then the trade mines.
        let mock = Mock::new(
            &[OnSend::Answer(SendResult::ReplacementUnderpriced)],
            |s, i| {
                if i == 1 {
                    s.mine_foreign();
                }
            },
        );
        // Even when stuck (replace_after 0) it is never outbid.
        let (r, rec) = run(&w, &mock, Duration::ZERO, LATER).await;
        assert!(
            matches!(r, Err(ExecError::NonceTaken { nonce: 0, .. })),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 1, "never replaced");
        assert_eq!(rec.tx_state(0), TxState::NonceTaken);
    }

    #[tokio::test]
    async fn a_stuck_transaction_is_bumped_within_the_caps() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |s, i| {
            if i == 2 {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, Duration::ZERO, LATER).await;
        let r = r.unwrap();
        assert!(rec.txs.len() >= 2, "replaced");
        let cap = w.chain.config().max_fee_per_gas_wei;
        for pair in rec.txs.windows(2) {
            assert!(pair[1].max_fee_per_gas * 100 >= pair[0].max_fee_per_gas * 110);
            assert!(pair[1].max_fee_per_gas <= cap);
            assert_eq!(pair[0].nonce, pair[1].nonce);
        }
        // The best-paying attempt mined, and that is what is reported.
        assert_eq!(Some(r.transaction_hash), rec.txs.last().map(|t| t.hash));
        assert_eq!(rec.report.state, ConversionState::Replaced);
    }

    /// The signer (a KMS) is down: nothing journaled, nothing sent, the
    /// nonce unused; the error says so with the KMS's code.
    #[tokio::test]
    async fn a_signing_failure_sends_and_journals_nothing() {
        let mut w = world(|_| {});
        w.key = WalletKey::failing_after(KEY, 0);
        let mock = Mock::new(&[], |_, _| {});
        let mut sender = sender(&w, &mock, LONG, LATER);
        let mut rec = record();
        let r = sender
            .send(
                &call(),
                TxPurpose::Swap,
                U256::from(10_000_000_000u64),
                &mut rec,
            )
            .await;
        let Err(ExecError::Signer(e)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(e.code, "DisabledException");
        assert!(e.to_string().contains("nothing was sent"), "{e}");
        assert!(rec.txs.is_empty() && rec.tx_states.is_empty());
        assert_eq!(sender.nonce, Some(0), "the nonce stays unused");
        assert!(mock.with(|s| s.sent.is_empty()), "nothing broadcast");
        assert!(w.journal.get_conversion("r#1/0").unwrap().is_none());
    }

    /// A stuck transaction whose fee bump the signer cannot sign stays in
    /// the pool, watched: it mines, and the conversion is not failed.
    #[tokio::test]
    async fn a_replacement_the_signer_cannot_sign_leaves_the_transaction_watched() {
        let mut w = world(|_| {});
        w.key = WalletKey::failing_after(KEY, 1);
        let mock = Mock::new(&[], |s, i| {
            if i == 3 {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, Duration::ZERO, LATER).await;
        let r = r.unwrap();
        assert_eq!(rec.txs.len(), 1, "no replacement signed");
        assert_eq!(r.transaction_hash, rec.txs[0].hash);
        assert!(matches!(rec.tx_state(0), TxState::Confirmed { .. }));
    }

    #[tokio::test]
    async fn at_the_fee_cap_the_caller_is_answered_and_the_transaction_stays_open() {
        // The cap is what the first attempt already pays: no room to bump.
        let w = world(|c| c.max_fee_per_gas_wei = 21_000_000_000);
        let mock = Mock::new(&[], |_, _| {});
        let (r, rec) = run(&w, &mock, Duration::ZERO, LATER).await;
        assert!(
            matches!(
                r,
                Err(ExecError::Pending {
                    why: GiveUp::FeeCap,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 1);
        assert!(!rec.tx_state(0).is_final());
        assert!(!rec.is_final(), "still open: watched, never called failed");
    }

    /// Past its deadline a stuck swap can only revert if mined: it is
    /// never bumped; a 0-value self-transfer at its nonce, paying 10% more,
    /// cancels it. Once that mines the conversion is over: nothing swapped.
    #[tokio::test]
    async fn past_its_deadline_a_stuck_swap_is_cancelled_not_bumped() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |s, i| {
            if i == 1 {
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, Duration::ZERO, 0).await;
        let cancel = rec.txs.last().unwrap();
        assert!(
            matches!(r, Err(ExecError::Cancelled { nonce: 0, tx_hash, .. }) if tx_hash == cancel.hash),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 2, "the swap, then its cancellation");
        let swap = &rec.txs[0];
        assert_eq!(swap.purpose, TxPurpose::Swap);
        assert_eq!(cancel.purpose, TxPurpose::Cancel);
        assert_eq!(cancel.nonce, swap.nonce);
        assert!(cancel.max_fee_per_gas * 100 >= swap.max_fee_per_gas * 110);
        assert!(cancel.max_fee_per_gas <= w.chain.config().max_fee_per_gas_wei);
        let env = TxEnvelope::decode_2718(&mut &cancel.raw[..]).unwrap();
        assert_eq!(env.to(), Some(w.key.address()), "to the wallet itself");
        assert_eq!(env.value(), U256::ZERO);
        assert!(env.input().is_empty());
        assert_eq!(env.gas_limit(), 21_000);
        // The conversion still names its swap; the nonce is final.
        assert_eq!(rec.report.tx_hash, Some(swap.hash));
        assert!(matches!(rec.tx_state(0), TxState::Confirmed { hash, .. } if hash == cancel.hash));
    }

    /// Past its deadline at the fee cap no cancellation fits (it must pay
    /// 10% more than the stuck attempt): the caller is answered and the
    /// swap stays watched, not bumped, not cancelled.
    #[tokio::test]
    async fn past_its_deadline_at_the_cap_nothing_is_signed_again() {
        let w = world(|c| c.max_fee_per_gas_wei = 21_000_000_000);
        let mock = Mock::new(&[], |_, _| {});
        let (r, rec) = run(&w, &mock, Duration::ZERO, 0).await;
        assert!(
            matches!(
                r,
                Err(ExecError::Pending {
                    why: GiveUp::Deadline,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 1, "not bumped, not cancelled");
        assert!(!rec.tx_state(0).is_final(), "still watched");
    }

    #[tokio::test]
    async fn a_revert_of_our_transaction_is_final() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |s, i| {
            if i == 1 {
                s.revert = true;
                s.mine();
            }
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        assert!(matches!(r, Err(ExecError::Reverted { .. })), "{r:?}");
        assert!(matches!(rec.tx_state(0), TxState::Reverted { .. }));
    }

    #[tokio::test]
    async fn a_reorged_receipt_is_rebroadcast_and_confirmed_again() {
        // Two confirmations: mined at poll 1, reorged out at poll 2 (the
        // node forgot it too), mined again once rebroadcast.
        let w = world(|c| c.confirmations = 2);
        let mock = Mock::new(&[], |s, i| match i {
            1 => {
                s.mine();
            }
            2 => s.reorg(1),
            3 => {
                s.mine();
                s.head += 1;
            }
            _ => {}
        });
        let (r, rec) = run(&w, &mock, LONG, LATER).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(rec.txs.len(), 1, "the same signature all along");
        let sent = mock.with(|s| s.sent.clone());
        assert_eq!(sent.len(), 2, "rebroadcast after the reorg");
        assert_eq!(sent[0], sent[1]);
        let hashes = signed_hashes(&rec);
        assert_eq!(hashes[0], sent[0].0);
    }

    #[tokio::test]
    async fn fees_come_from_the_block_header_not_the_snapshot() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |s, i| {
            if i == 0 {
                s.mine();
            }
        });
        // The snapshot (an eth_call on a geth-family node) says 0; the
        // header says 30 gwei.
        mock.with(|s| s.base_fee = 30_000_000_000);
        let sender = sender(&w, &mock, LONG, LATER);
        let prepared = mock.prepare(w.key.address(), &call(), false).await.unwrap();
        let (max_fee, tip) = sender.fees(U256::ZERO, &prepared).unwrap();
        assert_eq!(tip, 1_000_000_000);
        assert_eq!(max_fee, 61_000_000_000, "2 x the header's base fee + tip");
        // Above the cap (100 gwei): refused, nothing signed.
        mock.with(|s| s.base_fee = 150_000_000_000);
        let prepared = mock.prepare(w.key.address(), &call(), false).await.unwrap();
        let e = sender.fees(U256::ZERO, &prepared).unwrap_err();
        assert!(matches!(e, ExecError::FeeCapExceeded { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn recovery_never_bumps_a_swap_past_its_own_deadline() {
        // At the cap: past the deadline no cancellation fits either.
        let w = world(|c| c.max_fee_per_gas_wei = 21_000_000_000);
        let mock = Mock::new(&[OnSend::Lose], |_, _| {});
        let mut rec = record();
        // Signed by a process whose swap deadline has passed since.
        let mut first = sender(&w, &mock, Duration::ZERO, 1);
        let nonce = first
            .send(
                &call(),
                TxPurpose::Swap,
                U256::from(10_000_000_000u64),
                &mut rec,
            )
            .await
            .unwrap();
        // Recovery, with its own (later) window: still not bumped.
        let mut recovery = TxSender {
            deadline: LATER,
            ..first
        };
        let r = recovery.resume(nonce, &mut rec).await;
        assert!(
            matches!(
                r,
                Err(ExecError::Pending {
                    why: GiveUp::Deadline,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(rec.txs.len(), 1, "not bumped");
        assert_eq!(rec.txs[0].deadline, Some(1));
    }

    #[tokio::test]
    async fn a_brief_watch_takes_a_look_and_leaves_the_transaction_open() {
        let w = world(|_| {});
        let mock = Mock::new(&[], |_, _| {});
        let mut sender = TxSender {
            wait_until_ms: 0,
            ..sender(&w, &mock, LONG, LATER)
        };
        let mut rec = record();
        let nonce = sender
            .send(
                &call(),
                TxPurpose::Swap,
                U256::from(10_000_000_000u64),
                &mut rec,
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let r = sender.confirm(nonce, &mut rec).await;
        assert!(matches!(r, Err(ExecError::Pending { .. })), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "one look, not a wait"
        );
        assert_eq!(
            rec.tx_state(nonce),
            TxState::InPool,
            "still open, not failed"
        );
    }
}
