// Compile the current Aave v3 market (npm @aave-dao/aave-v3-origin) and the test tokens with
// solc-js, offline. Settings from FIELD-NOTES.md ("Current Aave"): optimizer on, 200 runs,
// evmVersion shanghai, no metadata hash. Usage: node compile-origin.mjs OUT_DIR
// Writes OUT_DIR/<Contract>.json ({abi, bytecode, linkReferences}) and OUT_DIR/versions.json.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, 'node_modules');
const origin = path.join(modules, '@aave-dao', 'aave-v3-origin', 'src', 'contracts');
const out = process.argv[2];
if (!out) {
  console.error('usage: node compile-origin.mjs OUT_DIR');
  process.exit(2);
}

// Contracts the local market deploys (logic libraries come in through their imports).
const ENTRY = [
  'protocol/configuration/PoolAddressesProvider.sol',
  'protocol/configuration/ACLManager.sol',
  'instances/PoolInstance.sol',
  'instances/PoolConfiguratorInstance.sol',
  'instances/ATokenInstance.sol',
  'instances/VariableDebtTokenInstance.sol',
  'helpers/AaveProtocolDataProvider.sol',
  'misc/AaveOracle.sol',
  'misc/DefaultReserveInterestRateStrategyV2.sol',
  'mocks/tokens/MintableERC20.sol',
  'mocks/oracle/CLAggregators/MockAggregator.sol',
];
const LOCAL = ['contracts/Bytes32SymbolToken.sol'];
const REMAPS = [
  ['openzeppelin-contracts-upgradeable/contracts/', path.join(modules, '@openzeppelin', 'contracts-upgradeable') + '/'],
  ['openzeppelin-contracts/contracts/', path.join(modules, '@openzeppelin', 'contracts') + '/'],
];

function resolve(name) {
  for (const [prefix, target] of REMAPS) {
    if (name.startsWith(prefix)) return target + name.slice(prefix.length);
  }
  if (name.startsWith('origin/')) return path.join(origin, name.slice('origin/'.length));
  return path.join(here, name);
}

const sources = {};
for (const f of ENTRY) sources['origin/' + f] = { content: fs.readFileSync(path.join(origin, f), 'utf8') };
for (const f of LOCAL) sources[f] = { content: fs.readFileSync(path.join(here, f), 'utf8') };
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'shanghai',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.linkReferences'] } },
  },
};
const output = JSON.parse(
  solc.compile(JSON.stringify(input), {
    import: (name) => {
      try {
        return { contents: fs.readFileSync(resolve(name), 'utf8') };
      } catch (e) {
        return { error: `not found: ${name}` };
      }
    },
  }),
);
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
fs.mkdirSync(out, { recursive: true });
let count = 0;
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    const bytecode = c.evm.bytecode.object;
    if (!bytecode) continue; // interfaces and abstract contracts
    const art = { contractName: name, sourceName: file, abi: c.abi, bytecode: '0x' + bytecode, linkReferences: c.evm.bytecode.linkReferences };
    fs.writeFileSync(path.join(out, name + '.json'), JSON.stringify(art));
    count += 1;
  }
}
const originVersion = JSON.parse(fs.readFileSync(path.join(modules, '@aave-dao', 'aave-v3-origin', 'package.json'), 'utf8')).version;
fs.writeFileSync(path.join(out, 'versions.json'), JSON.stringify({ origin: originVersion, solc: solc.version(), contracts: count }));
console.log(`compiled ${count} contracts (aave-v3-origin ${originVersion}, solc ${solc.version()}) into ${out}`);
