#!/usr/bin/env node
// Compiles deploy/devnet/contracts/*.sol with the pinned `solc` npm package (solc-js, no
// native compiler needed) into deploy/devnet/build/<ContractName>.json:
//   { contractName, sourceName, compiler, abi, bytecode: "0x..", deployedBytecode: "0x.." }
// Run via setup.sh (or `npm run compile`). Exits non-zero on any compiler error.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const ROOT = __dirname;
const SRC_DIR = path.join(ROOT, 'contracts');
const OUT_DIR = path.join(ROOT, 'build');
// Contracts whose *runtime* bytecode is injected with anvil_setCode: they must not rely on a
// constructor, so they may not have immutables.
const SETCODE_CONTRACTS = new Set(['Multicall3', 'ArbitrumMulticall3', 'OpGasPriceOracle']);

function main() {
  const files = fs
    .readdirSync(SRC_DIR)
    .filter((f) => f.endsWith('.sol'))
    .sort();
  if (files.length === 0) {
    throw new Error(`no .sol files in ${SRC_DIR}`);
  }

  const sources = {};
  for (const f of files) {
    sources[f] = { content: fs.readFileSync(path.join(SRC_DIR, f), 'utf8') };
  }

  const input = {
    language: 'Solidity',
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: 'cancun',
      // No metadata hash: builds are byte-for-byte reproducible across machines.
      metadata: { bytecodeHash: 'none' },
      outputSelection: {
        '*': {
          '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.deployedBytecode.immutableReferences'],
        },
      },
    },
  };

  console.log(`compile.js: solc ${solc.version()} compiling ${files.join(', ')}`);
  // Imports (`@openzeppelin/contracts/...`) resolve to the pinned npm packages in node_modules.
  const findImports = (importPath) => {
    const file = path.join(ROOT, 'node_modules', importPath);
    if (!file.startsWith(path.join(ROOT, 'node_modules') + path.sep) || !fs.existsSync(file)) {
      return { error: `import not found in node_modules: ${importPath}` };
    }
    return { contents: fs.readFileSync(file, 'utf8') };
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  let failed = false;
  for (const e of output.errors || []) {
    const msg = e.formattedMessage || e.message;
    if (e.severity === 'error') {
      failed = true;
      console.error(msg);
    } else {
      console.warn(msg);
    }
  }
  if (failed) {
    throw new Error('solc reported errors');
  }

  fs.mkdirSync(OUT_DIR, { recursive: true });
  let count = 0;
  for (const [sourceName, contracts] of Object.entries(output.contracts || {})) {
    if (!(sourceName in sources)) {
      continue; // imported from node_modules: only our own contracts get artifacts
    }
    for (const [name, c] of Object.entries(contracts)) {
      const bytecode = c.evm.bytecode.object;
      const deployed = c.evm.deployedBytecode.object;
      if (!bytecode || !deployed) {
        continue; // interfaces / abstract contracts
      }
      const immutables = Object.keys(c.evm.deployedBytecode.immutableReferences || {});
      if (SETCODE_CONTRACTS.has(name) && immutables.length > 0) {
        throw new Error(`${name} is installed with anvil_setCode and must not have immutables`);
      }
      const artifact = {
        contractName: name,
        sourceName: `contracts/${sourceName}`,
        compiler: `solc-js ${solc.version()}`,
        abi: c.abi,
        bytecode: `0x${bytecode}`,
        deployedBytecode: `0x${deployed}`,
      };
      const out = path.join(OUT_DIR, `${name}.json`);
      const tmp = `${out}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(artifact, null, 2) + '\n');
      fs.renameSync(tmp, out);
      console.log(`compile.js: wrote build/${name}.json (${deployed.length / 2} bytes runtime)`);
      count += 1;
    }
  }
  if (count === 0) {
    throw new Error('no contracts produced');
  }
}

try {
  main();
} catch (err) {
  console.error(`compile.js: ${err.message}`);
  process.exit(1);
}
