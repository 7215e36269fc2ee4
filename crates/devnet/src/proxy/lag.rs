//! [`FaultKind::Lagging`](super::FaultKind::Lagging): serving reads as a node `blocks` behind
//! the head would, from the real node's answers. Pure: the caller fetches the head.

use serde_json::Value;

/// Calls whose block parameter ("latest", "pending" or missing) is pinned to the lagging
/// head, and that parameter's index.
const PINNED: [(&str, usize); 6] = [
    ("eth_getTransactionCount", 1),
    ("eth_getBalance", 1),
    ("eth_call", 1),
    ("eth_getCode", 1),
    ("eth_getStorageAt", 2),
    ("eth_getBlockByNumber", 0),
];

/// Calls whose answer is rewritten (besides the pinned ones).
const REWRITTEN: [&str; 4] = [
    "eth_blockNumber",
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
    "eth_getBlockByHash",
];

/// Whether a lagging node would answer a call of `method` differently.
pub(super) fn covers(method: &str) -> bool {
    REWRITTEN.contains(&method) || PINNED.iter().any(|(m, _)| *m == method)
}

/// Whether serving `method` lagged needs the node's head (all but `eth_blockNumber`, whose
/// own answer is the head).
pub(super) fn needs_head(method: &str) -> bool {
    method != "eth_blockNumber"
}

/// The lagging node's head.
pub(super) fn lagging_head(head: u64, blocks: u64) -> u64 {
    head.saturating_sub(blocks)
}

/// Pins the call's block parameter to `lag_head` when it says "latest" or "pending" or is
/// left out; an explicit number, "earliest", "safe", "finalized" or an EIP-1898 object stay.
pub(super) fn pin(call: &mut Value, lag_head: u64) {
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return;
    };
    let Some(&(_, index)) = PINNED.iter().find(|(m, _)| *m == method) else {
        return;
    };
    let Some(obj) = call.as_object_mut() else {
        return;
    };
    let params = obj
        .entry("params")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(params) = params.as_array_mut() else {
        return;
    };
    let pinned = Value::String(hex(lag_head));
    if params.len() == index {
        params.push(pinned);
    } else if let Some(p) = params.get_mut(index)
        && matches!(p.as_str(), Some("latest" | "pending"))
    {
        *p = pinned;
    }
}

/// Rewrites the node's response to a call of `method` as a node `blocks` behind (head
/// `lag_head`, when [`needs_head`]) would have answered. Errors pass through.
pub(super) fn answer(method: &str, blocks: u64, lag_head: u64, response: &mut Value) {
    let Some(result) = response.get_mut("result") else {
        return;
    };
    let beyond = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .and_then(parse_hex)
            .is_some_and(|n| n > lag_head)
    };
    match method {
        "eth_blockNumber" => {
            if let Some(head) = result.as_str().and_then(parse_hex) {
                *result = Value::String(hex(lagging_head(head, blocks)));
            }
        }
        // Mined in a block the lagging node has not seen: not found there.
        "eth_getTransactionReceipt" if beyond(result, "blockNumber") => *result = Value::Null,
        "eth_getBlockByNumber" | "eth_getBlockByHash" if beyond(result, "number") => {
            *result = Value::Null
        }
        // Known from the gossiped pool, not yet mined as far as it knows.
        "eth_getTransactionByHash" if beyond(result, "blockNumber") => {
            if let Some(tx) = result.as_object_mut() {
                for field in ["blockHash", "blockNumber", "transactionIndex"] {
                    tx.insert(field.to_string(), Value::Null);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    }

    #[test]
    fn latest_pending_and_missing_block_tags_are_pinned_others_stay() {
        let a = "0x00000000000000000000000000000000000000aa";
        let cases = [
            (
                call("eth_getTransactionCount", json!([a, "latest"])),
                json!([a, "0x62"]),
            ),
            (
                call("eth_getTransactionCount", json!([a, "pending"])),
                json!([a, "0x62"]),
            ),
            (call("eth_getBalance", json!([a])), json!([a, "0x62"])),
            (
                call("eth_call", json!([{"to": a}, "latest"])),
                json!([{"to": a}, "0x62"]),
            ),
            (
                call("eth_getStorageAt", json!([a, "0x0", "pending"])),
                json!([a, "0x0", "0x62"]),
            ),
            (
                call("eth_getBlockByNumber", json!(["latest", false])),
                json!(["0x62", false]),
            ),
            (
                call("eth_call", json!([{"to": a}, "0x10"])),
                json!([{"to": a}, "0x10"]),
            ),
            (
                call("eth_call", json!([{"to": a}, "finalized"])),
                json!([{"to": a}, "finalized"]),
            ),
            (
                call("eth_call", json!([{"to": a}, {"blockHash": "0x01"}])),
                json!([{"to": a}, {"blockHash": "0x01"}]),
            ),
            (call("eth_chainId", json!([])), json!([])),
        ];
        for (mut c, want) in cases {
            let before = c.clone();
            pin(&mut c, 0x62);
            assert_eq!(c["params"], want, "{before}");
        }
        // No params at all.
        let mut c = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getStorageAt"});
        pin(&mut c, 0x62);
        assert_eq!(c["params"], json!([]), "missing earlier params: left alone");
    }

    #[test]
    fn answers_are_those_of_the_lagging_node() {
        let mut r = json!({"id": 1, "result": "0x64"});
        answer("eth_blockNumber", 2, 0, &mut r);
        assert_eq!(r["result"], "0x62");
        let mut r = json!({"id": 1, "result": "0x1"});
        answer("eth_blockNumber", 5, 0, &mut r);
        assert_eq!(r["result"], "0x0", "saturates at genesis");

        let receipt =
            |block: &str| json!({"id": 1, "result": {"blockNumber": block, "status": "0x1"}});
        let mut r = receipt("0x63");
        answer("eth_getTransactionReceipt", 2, 0x62, &mut r);
        assert_eq!(r["result"], Value::Null, "mined after the lagging head");
        let mut r = receipt("0x62");
        answer("eth_getTransactionReceipt", 2, 0x62, &mut r);
        assert_eq!(r, receipt("0x62"), "mined at the lagging head: visible");

        let mut r = json!({"id": 1, "result": {"number": "0x63"}});
        answer("eth_getBlockByHash", 2, 0x62, &mut r);
        assert_eq!(r["result"], Value::Null);

        let mut r = json!({"id": 1, "result": {"hash": "0xab", "blockHash": "0x01", "blockNumber": "0x63", "transactionIndex": "0x0"}});
        answer("eth_getTransactionByHash", 2, 0x62, &mut r);
        assert_eq!(
            r["result"],
            json!({"hash": "0xab", "blockHash": null, "blockNumber": null, "transactionIndex": null})
        );

        let mut r = json!({"id": 1, "error": {"code": -32000, "message": "x"}});
        answer("eth_blockNumber", 2, 0, &mut r);
        assert_eq!(
            r,
            json!({"id": 1, "error": {"code": -32000, "message": "x"}})
        );
    }
}
