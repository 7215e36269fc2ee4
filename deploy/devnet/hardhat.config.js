// Hardhat node of the devnet (the second node implementation next to anvil; EDR follows geth's
// semantics, e.g. `eth_call` runs with BASEFEE 0). Started by crates/devnet
// (`WB_DEVNET_NODE=hardhat`) as
//   node_modules/.bin/hardhat --config hardhat.config.js node --hostname 127.0.0.1 --port <p>
// It only serves JSON-RPC: nothing is compiled here (our contracts are built by compile.js), so
// Hardhat's own paths point at an empty scratch folder outside the repository.
'use strict';

const os = require('os');
const path = require('path');

const scratch = path.join(os.tmpdir(), 'wallet-balancer-hardhat');

module.exports = {
  // Osaka (Hardhat 2.29's latest); anvil 1.7 runs a later fork by default. Both are past
  // Cancun, which our contracts target (compile.js: evmVersion cancun).
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: 'osaka',
      // anvil's defaults: 30M block gas limit, 1 gwei initial base fee.
      blockGasLimit: 30_000_000,
      initialBaseFeePerGas: 1_000_000_000,
      // The same dev keys as anvil (`--mnemonic "test ... junk" --accounts 2`): the deployer is
      // account #0, the trader account #1 (crates/devnet: DEPLOYER_KEY, TRADER_KEY).
      accounts: {
        mnemonic: 'test test test test test test test test test test test junk',
        count: 2,
      },
      mining: { auto: true, interval: 0 },
      // Blocks mined within one second share its timestamp, as on anvil: otherwise the
      // deployment's ~60 automined blocks push the chain's clock a minute ahead of the wall
      // clock, and every deadline (chain time) would fall a minute late.
      allowBlocksWithSameTimestamp: true,
      // Every RPC call logged (and its traces decoded) costs time on 2 cores; the devnet log
      // still gets start-up and errors.
      loggingEnabled: false,
      allowUnlimitedContractSize: false,
    },
  },
  paths: {
    sources: path.join(scratch, 'sources'),
    cache: path.join(scratch, 'cache'),
    artifacts: path.join(scratch, 'artifacts'),
    tests: path.join(scratch, 'tests'),
  },
};
