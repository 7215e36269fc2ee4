//! Reconciliation of one unfinished conversion, from what the journal holds
//! of it: each of its transactions is loaded into the same state machine
//! as a live one (`TxSender::resume`): mined -> the receipt is recorded;
//! pending -> watched; dropped, or signed but never known to have reached
//! a node -> the same signed bytes are broadcast; stuck -> replaced. One
//! still pending at the end of the window stays open. A conversion whose
//! swap was never signed ends FAILED (nothing swapped).

use super::{ExecError, finish_confirmed, tx::TxSender};
use crate::{
    domain::ConversionState,
    journal::{ConversionRecord, TxPurpose},
};

pub(super) async fn reconcile(
    sender: &mut TxSender<'_>,
    rec: &mut ConversionRecord,
) -> Result<(), ExecError> {
    let journal_err = |e: crate::journal::JournalError| ExecError::Journal(e.to_string());
    let mut swap_confirmed = None;
    for nonce in rec.nonces() {
        // Every attempt abandoned (an older version re-signed elsewhere).
        let last = rec
            .txs
            .iter()
            .rfind(|t| t.nonce == nonce && !t.replaced)
            .cloned();
        let Some(last) = last else { continue };
        match sender.resume(nonce, rec).await {
            Ok(receipt) => {
                if last.purpose == TxPurpose::Swap {
                    swap_confirmed = Some(receipt);
                } else if !rec
                    .report
                    .approval_tx_hashes
                    .contains(&receipt.transaction_hash)
                {
                    rec.report.approval_tx_hashes.push(receipt.transaction_hash);
                }
            }
            Err(e @ ExecError::Chain(_)) => return Err(e),
            Err(e @ ExecError::Pending { .. }) => {
                // May still mine: stays open, watched again later.
                tracing::warn!(chain = sender.chain.name(), conversion = %rec.report.id, error = %e, "still pending after the recovery window");
                return Ok(());
            }
            Err(e) => {
                rec.report.state = ConversionState::Failed;
                rec.report.error = Some(format!("after restart: {e}"));
                sender
                    .journal
                    .record_conversion(rec, Some((ConversionState::Failed, rec.report.tx_hash)))
                    .map_err(journal_err)?;
                return Ok(());
            }
        }
    }
    match swap_confirmed {
        Some(receipt) => {
            finish_confirmed(sender.chain, rec, &receipt, &[]).await?;
            sender
                .journal
                .record_conversion(rec, Some((ConversionState::Confirmed, rec.report.tx_hash)))
                .map_err(journal_err)?;
            tracing::info!(chain = sender.chain.name(), conversion = %rec.report.id, "reconciled: confirmed");
        }
        None => {
            rec.report.state = ConversionState::Failed;
            rec.report.error = Some(
                "ended before its swap was signed (a restart, or its approval not mined in time): nothing was swapped; a retry plans anew".into(),
            );
            sender
                .journal
                .record_conversion(rec, Some((ConversionState::Failed, None)))
                .map_err(journal_err)?;
            tracing::info!(chain = sender.chain.name(), conversion = %rec.report.id, "reconciled: failed before the swap");
        }
    }
    Ok(())
}
