//! The transaction state machine: one logical transaction is one nonce of
//! the wallet, with one or more signed attempts (a replacement is a new
//! attempt at the same nonce). [`next`] is pure: it takes what the chain
//! just said ([`Event`]) and decides the new [`TxState`] and what to do
//! ([`Effect`]). The engine (`tx.rs`) performs the effects and journals
//! every state change, in one place; recovery after a restart loads the
//! journaled state into the same machine.
//!
//! ```text
//! Signed --accepted / already known--> InPool --receipt--> Mined --depth--> Confirmed
//!   |  lost answer, "nonce too low",       ^                  |  receipt gone / block
//!   |  "replacement underpriced" (first    |                  |  no longer canonical
//!   |  attempt): unknown, keep watching    +--- rebroadcast --+  (reorg)
//!   +-- node forgot it: rebroadcast the same bytes
//! Signed --"replacement underpriced" on a first attempt--> Blocked: a
//!          transaction we did not sign holds the nonce; never outbid
//! InPool/Signed --stuck, caps allow--> Replace (a new attempt, same nonce)
//! InPool/Signed --stuck past the deadline, caps allow--> Cancel: a 0-value
//!                  self-transfer at the same nonce (a new attempt), so a
//!                  swap that can only revert does not hold the wallet's
//!                  nonce; a stuck cancellation is replaced like any attempt
//! InPool/Signed --stuck at the cap--> GiveUp: the caller is answered, the
//!                  transaction stays watched (a cancellation needs the same
//!                  10% more than the stuck attempt: at the cap there is none)
//! final: Confirmed; Reverted (a status-0 receipt of OUR hash);
//!        NonceTaken (our nonce used, none of our hashes has a receipt and
//!        none is known to the node, on several polls in a row: a node
//!        whose receipts lag is not enough)
//! ```
//!
//! Unknown is not failed: no error of a send or a read ever makes a
//! transaction FAILED; only a receipt of one of our own hashes, or another
//! transaction confirmed at our nonce, does.

use alloy::primitives::B256;

pub use crate::domain::TxState;

/// Polls in a row that must see our nonce used with no receipt of ours
/// before the nonce counts as taken by someone else (a load-balanced node
/// can answer the nonce before another node shows the receipt).
pub const FOREIGN_POLLS: u32 = 3;

/// What a node answered to the broadcast of one of our attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendResult {
    Accepted,
    AlreadyKnown,
    /// No answer, a timeout, a 5xx, a reset: the node may have it.
    Lost,
    /// The nonce is used: by one of our attempts, or by someone else.
    NonceTooLow,
    /// The pool has another transaction at this nonce that pays as much.
    ReplacementUnderpriced,
    /// The attempt's max fee is below the base fee.
    FeeTooLow,
}

/// A receipt of one of our attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub hash: B256,
    pub block: u64,
    pub block_hash: B256,
    pub success: bool,
}

/// One look at the chain: the receipts of all our attempts (newest first);
/// with one, the head; without, the wallet's nonce at `latest` and, when
/// that says our nonce is used (or every few polls), whether the node
/// knows any of our attempts. A read that failed is no poll at all (the
/// engine retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    pub head: u64,
    /// A receipt of one of our attempts at this nonce, if any.
    pub receipt: Option<Seen>,
    /// Transactions of the wallet mined at `latest` (the next nonce); read
    /// only when no receipt of ours was found.
    pub mined_nonce: Option<u64>,
    /// Whether the node knows any of our attempts at this nonce, pending
    /// or mined (`None`: not asked). Asked whenever our nonce is used and
    /// no receipt of ours was found, and every few polls otherwise.
    pub known: Option<bool>,
    /// The newest attempt waited longer than `replace_after`.
    pub stuck: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Broadcast(SendResult),
    Poll(Poll),
}

/// What the engine must know that is not in the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub nonce: u64,
    pub confirmations: u64,
    /// Attempts signed at this nonce so far.
    pub attempts: usize,
    /// A replacement within the fee caps is possible.
    pub can_bump: bool,
    /// The call is worthless once mined now (a swap past its deadline).
    pub past_deadline: bool,
    /// The newest attempt is a cancellation (a 0-value self-transfer).
    pub cancelling: bool,
    /// Polls in a row that saw our nonce used and no receipt of ours.
    pub foreign_polls: u32,
}

/// Why the engine stops waiting for the caller (the transaction is still
/// watched: it may mine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// Stuck, and the fee caps leave no room for a replacement.
    FeeCap,
    /// Stuck past its deadline: a replacement would only pay to revert.
    Deadline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Keep watching.
    Wait,
    /// Broadcast the newest attempt again, the same bytes.
    Rebroadcast,
    /// Sign a new attempt at the same nonce with higher fees.
    Replace,
    /// Sign a cancellation at the same nonce (a 0-value self-transfer) with
    /// higher fees: the call is worthless now.
    Cancel,
    /// Stop waiting for the caller; keep the transaction watched.
    GiveUp(GiveUp),
    /// The state is final.
    Done,
}

/// The transition: new state, what to do, and the foreign-poll count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub state: TxState,
    pub effect: Effect,
    pub foreign_polls: u32,
}

/// The state machine. Pure: no I/O, no clock.
pub fn next(state: &TxState, event: Event, ctx: Context) -> Transition {
    let stay = |effect| Transition {
        state: state.clone(),
        effect,
        foreign_polls: ctx.foreign_polls,
    };
    if state.is_final() {
        return stay(Effect::Done);
    }
    match event {
        Event::Broadcast(r) => match r {
            SendResult::Accepted | SendResult::AlreadyKnown => match state {
                TxState::Signed | TxState::Blocked => Transition {
                    state: TxState::InPool,
                    effect: Effect::Wait,
                    foreign_polls: 0,
                },
                _ => stay(Effect::Wait),
            },
            // Unknown: the polls decide (ours mined, or the nonce taken).
            SendResult::Lost | SendResult::NonceTooLow => stay(Effect::Wait),
            SendResult::ReplacementUnderpriced => {
                if ctx.attempts > 1 {
                    // An earlier attempt of ours holds the slot.
                    match state {
                        TxState::Signed => Transition {
                            state: TxState::InPool,
                            effect: Effect::Wait,
                            foreign_polls: 0,
                        },
                        _ => stay(Effect::Wait),
                    }
                } else {
                    // Something we did not sign (the executor's own trade?)
                    // holds our nonce: never outbid it. If it mines, the
                    // nonce is taken; the polls will say.
                    match state {
                        TxState::Signed => Transition {
                            state: TxState::Blocked,
                            effect: Effect::Wait,
                            foreign_polls: ctx.foreign_polls,
                        },
                        _ => stay(Effect::Wait),
                    }
                }
            }
            SendResult::FeeTooLow => stay(unmined(ctx)),
        },
        Event::Poll(p) => match p.receipt {
            Some(seen) => {
                let depth = (p.head + 1).saturating_sub(seen.block);
                let state = if depth >= ctx.confirmations.max(1) {
                    if seen.success {
                        TxState::Confirmed {
                            hash: seen.hash,
                            block: seen.block,
                            block_hash: seen.block_hash,
                        }
                    } else {
                        TxState::Reverted {
                            hash: seen.hash,
                            block: seen.block,
                        }
                    }
                } else {
                    TxState::Mined {
                        hash: seen.hash,
                        block: seen.block,
                        block_hash: seen.block_hash,
                        success: seen.success,
                    }
                };
                let effect = if state.is_final() {
                    Effect::Done
                } else {
                    Effect::Wait
                };
                Transition {
                    state,
                    effect,
                    foreign_polls: 0,
                }
            }
            None => {
                if let TxState::Mined { .. } = state {
                    // The receipt is gone: reorged out. The same bytes go
                    // back to the pool.
                    return Transition {
                        state: TxState::InPool,
                        effect: Effect::Rebroadcast,
                        foreign_polls: 0,
                    };
                }
                if p.mined_nonce.is_some_and(|n| n > ctx.nonce) {
                    if p.known != Some(false) {
                        // Ours is known (a node whose receipts lag), or we
                        // did not ask: no evidence of another sender.
                        return Transition {
                            state: state.clone(),
                            effect: Effect::Wait,
                            foreign_polls: 0,
                        };
                    }
                    let polls = ctx.foreign_polls + 1;
                    return Transition {
                        state: if polls >= FOREIGN_POLLS {
                            TxState::NonceTaken
                        } else {
                            state.clone()
                        },
                        effect: if polls >= FOREIGN_POLLS {
                            Effect::Done
                        } else {
                            Effect::Wait
                        },
                        foreign_polls: polls,
                    };
                }
                let fresh = |effect| Transition {
                    state: state.clone(),
                    effect,
                    foreign_polls: 0,
                };
                if p.known == Some(false) {
                    return fresh(Effect::Rebroadcast);
                }
                if *state == TxState::Blocked {
                    // Never outbid what we did not sign; give up waiting
                    // at the deadline.
                    return fresh(if ctx.past_deadline {
                        Effect::GiveUp(GiveUp::Deadline)
                    } else {
                        Effect::Wait
                    });
                }
                if p.stuck {
                    return fresh(unmined(ctx));
                }
                fresh(Effect::Wait)
            }
        },
    }
}

/// What to do with an attempt that is not getting mined (stuck, or below
/// the base fee): bump it within the caps; past its deadline, cancel it
/// (or bump the cancellation); at the cap, stop waiting for the caller.
fn unmined(ctx: Context) -> Effect {
    match (ctx.can_bump, ctx.past_deadline, ctx.cancelling) {
        (false, true, _) => Effect::GiveUp(GiveUp::Deadline),
        (false, false, _) => Effect::GiveUp(GiveUp::FeeCap),
        (true, true, false) => Effect::Cancel,
        (true, _, _) => Effect::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: B256 = B256::repeat_byte(1);
    const BH: B256 = B256::repeat_byte(0xbb);

    fn ctx() -> Context {
        Context {
            nonce: 7,
            confirmations: 2,
            attempts: 1,
            can_bump: true,
            past_deadline: false,
            cancelling: false,
            foreign_polls: 0,
        }
    }

    fn poll() -> Poll {
        Poll {
            head: 100,
            receipt: None,
            mined_nonce: Some(7),
            known: None,
            stuck: false,
        }
    }

    fn seen(block: u64, success: bool) -> Seen {
        Seen {
            hash: H1,
            block,
            block_hash: BH,
            success,
        }
    }

    #[test]
    fn an_accepted_send_is_in_the_pool() {
        for r in [SendResult::Accepted, SendResult::AlreadyKnown] {
            let t = next(&TxState::Signed, Event::Broadcast(r), ctx());
            assert_eq!((t.state, t.effect), (TxState::InPool, Effect::Wait));
        }
    }

    #[test]
    fn a_lost_answer_or_nonce_too_low_is_unknown_not_failed() {
        for r in [SendResult::Lost, SendResult::NonceTooLow] {
            let t = next(&TxState::Signed, Event::Broadcast(r), ctx());
            assert_eq!(
                (t.state, t.effect),
                (TxState::Signed, Effect::Wait),
                "{r:?}"
            );
        }
    }

    #[test]
    fn underpriced_on_a_first_send_never_outbids_a_foreign_transaction() {
        let t = next(
            &TxState::Signed,
            Event::Broadcast(SendResult::ReplacementUnderpriced),
            ctx(),
        );
        assert_eq!((t.state, t.effect), (TxState::Blocked, Effect::Wait));
        // Blocked, even stuck, it is never replaced.
        let stuck = Poll {
            stuck: true,
            ..poll()
        };
        let t = next(&TxState::Blocked, Event::Poll(stuck), ctx());
        assert_eq!((t.state, t.effect), (TxState::Blocked, Effect::Wait));
        let t = next(
            &TxState::Blocked,
            Event::Poll(stuck),
            Context {
                past_deadline: true,
                ..ctx()
            },
        );
        assert_eq!(t.effect, Effect::GiveUp(GiveUp::Deadline));
        // For a replacement, the slot holder is our own earlier attempt.
        let t = next(
            &TxState::Signed,
            Event::Broadcast(SendResult::ReplacementUnderpriced),
            Context {
                attempts: 2,
                ..ctx()
            },
        );
        assert_eq!(t.state, TxState::InPool);
    }

    #[test]
    fn a_fee_below_the_base_fee_is_bumped_within_the_caps() {
        let t = next(
            &TxState::Signed,
            Event::Broadcast(SendResult::FeeTooLow),
            ctx(),
        );
        assert_eq!(t.effect, Effect::Replace);
        let t = next(
            &TxState::Signed,
            Event::Broadcast(SendResult::FeeTooLow),
            Context {
                can_bump: false,
                ..ctx()
            },
        );
        assert_eq!(t.effect, Effect::GiveUp(GiveUp::FeeCap));
    }

    #[test]
    fn a_receipt_is_mined_then_confirmed_at_depth() {
        let p = Poll {
            receipt: Some(seen(100, true)),
            ..poll()
        };
        let t = next(&TxState::InPool, Event::Poll(p), ctx());
        assert!(matches!(t.state, TxState::Mined { block: 100, .. }));
        assert_eq!(t.effect, Effect::Wait);
        let t = next(&t.state, Event::Poll(Poll { head: 101, ..p }), ctx());
        assert_eq!(
            t.state,
            TxState::Confirmed {
                hash: H1,
                block: 100,
                block_hash: BH
            }
        );
        assert_eq!(t.effect, Effect::Done);
    }

    #[test]
    fn a_receipt_seen_while_the_send_answer_was_lost_is_ours() {
        let p = Poll {
            head: 105,
            receipt: Some(seen(100, true)),
            mined_nonce: Some(8),
            ..poll()
        };
        let t = next(&TxState::Signed, Event::Poll(p), ctx());
        assert!(matches!(t.state, TxState::Confirmed { .. }));
    }

    #[test]
    fn a_status_0_receipt_of_ours_is_reverted() {
        let p = Poll {
            head: 105,
            receipt: Some(seen(100, false)),
            ..poll()
        };
        let t = next(&TxState::InPool, Event::Poll(p), ctx());
        assert_eq!(
            t.state,
            TxState::Reverted {
                hash: H1,
                block: 100
            }
        );
    }

    #[test]
    fn a_reorged_receipt_goes_back_to_the_pool_with_the_same_bytes() {
        let mined = TxState::Mined {
            hash: H1,
            block: 100,
            block_hash: BH,
            success: true,
        };
        let t = next(&mined, Event::Poll(poll()), ctx());
        assert_eq!((t.state, t.effect), (TxState::InPool, Effect::Rebroadcast));
    }

    #[test]
    fn the_nonce_is_taken_only_after_several_polls_without_our_receipt() {
        let p = Poll {
            mined_nonce: Some(8),
            known: Some(false),
            ..poll()
        };
        // Known to the node (its receipt index lags): not taken.
        let t = next(
            &TxState::InPool,
            Event::Poll(Poll {
                known: Some(true),
                ..p
            }),
            ctx(),
        );
        assert_eq!((t.effect, t.foreign_polls), (Effect::Wait, 0));
        let mut c = ctx();
        let mut state = TxState::InPool;
        for i in 1..FOREIGN_POLLS {
            let t = next(&state, Event::Poll(p), c);
            assert_eq!(t.effect, Effect::Wait, "poll {i}");
            assert_eq!(t.foreign_polls, i);
            state = t.state;
            c.foreign_polls = t.foreign_polls;
        }
        let t = next(&state, Event::Poll(p), c);
        assert_eq!((t.state, t.effect), (TxState::NonceTaken, Effect::Done));
        // A receipt of ours in between resets the count: it was a lagging node.
        let t = next(
            &TxState::InPool,
            Event::Poll(Poll {
                receipt: Some(seen(100, true)),
                ..p
            }),
            Context {
                foreign_polls: 2,
                ..ctx()
            },
        );
        assert_eq!(t.foreign_polls, 0);
    }

    #[test]
    fn a_dropped_transaction_is_rebroadcast() {
        let t = next(
            &TxState::InPool,
            Event::Poll(Poll {
                known: Some(false),
                ..poll()
            }),
            ctx(),
        );
        assert_eq!(t.effect, Effect::Rebroadcast);
    }

    #[test]
    fn a_stuck_transaction_is_replaced_cancelled_or_given_up() {
        let stuck = Poll {
            stuck: true,
            ..poll()
        };
        let t = next(&TxState::InPool, Event::Poll(stuck), ctx());
        assert_eq!(t.effect, Effect::Replace);
        let t = next(
            &TxState::InPool,
            Event::Poll(stuck),
            Context {
                can_bump: false,
                ..ctx()
            },
        );
        assert_eq!(t.effect, Effect::GiveUp(GiveUp::FeeCap));
        // Past its deadline: cancelled at its nonce, never bumped.
        let past = Context {
            past_deadline: true,
            ..ctx()
        };
        let t = next(&TxState::InPool, Event::Poll(stuck), past);
        assert_eq!(t.effect, Effect::Cancel);
        assert_eq!(t.state, TxState::InPool, "still watched");
        // A stuck cancellation is bumped like any attempt.
        let t = next(
            &TxState::InPool,
            Event::Poll(stuck),
            Context {
                cancelling: true,
                ..past
            },
        );
        assert_eq!(t.effect, Effect::Replace);
        // Past the deadline at the cap: no cancellation fits (it needs 10%
        // more than the stuck attempt); the caller is answered, the
        // transaction stays watched.
        for cancelling in [false, true] {
            let t = next(
                &TxState::InPool,
                Event::Poll(stuck),
                Context {
                    can_bump: false,
                    cancelling,
                    ..past
                },
            );
            assert_eq!(t.effect, Effect::GiveUp(GiveUp::Deadline));
            assert_eq!(t.state, TxState::InPool, "still watched");
        }
    }

    #[test]
    fn a_mined_transaction_is_never_replaced_while_it_deepens() {
        let p = Poll {
            receipt: Some(seen(100, true)),
            stuck: true,
            ..poll()
        };
        let t = next(&TxState::InPool, Event::Poll(p), ctx());
        assert!(matches!(t.state, TxState::Mined { .. }));
        assert_eq!(t.effect, Effect::Wait, "stuck, but mined: not replaced");
    }

    #[test]
    fn final_states_stay_final() {
        for s in [
            TxState::NonceTaken,
            TxState::Reverted { hash: H1, block: 1 },
            TxState::Confirmed {
                hash: H1,
                block: 1,
                block_hash: BH,
            },
        ] {
            let t = next(&s, Event::Poll(poll()), ctx());
            assert_eq!((t.state, t.effect), (s.clone(), Effect::Done));
        }
    }
}
