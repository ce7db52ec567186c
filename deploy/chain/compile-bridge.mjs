// Compile the local Hyperliquid bridge (contracts/HyperliquidBridge.sol) with solc-js, offline.
// Same settings as compile-origin.mjs. Usage: node compile-bridge.mjs OUT_DIR
// Writes OUT_DIR/HyperliquidBridge.json ({abi, bytecode}) and OUT_DIR/versions.json.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');
const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node compile-bridge.mjs OUT_DIR');
  process.exit(2);
}
const file = 'contracts/HyperliquidBridge.sol';
const input = {
  language: 'Solidity',
  sources: { [file]: { content: fs.readFileSync(path.join(here, file), 'utf8') } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'shanghai',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
fs.mkdirSync(out, { recursive: true });
const c = output.contracts[file].HyperliquidBridge;
fs.writeFileSync(
  path.join(out, 'HyperliquidBridge.json'),
  JSON.stringify({ contractName: 'HyperliquidBridge', sourceName: file, abi: c.abi, bytecode: '0x' + c.evm.bytecode.object }),
);
fs.writeFileSync(path.join(out, 'versions.json'), JSON.stringify({ solc: solc.version() }));
console.log(`compiled HyperliquidBridge (solc ${solc.version()}) into ${out}`);
