// Test-only: drives the chain server with ethers.js v6 (pinned in package.json), as an
// ordinary Ethereum client would; run by tests/test_rpc_ethers.py.
//
//   node drive.mjs RPC_URL CONTRACT_ADDRESS ARTIFACT_JSON   (the platform's key in JL_KEY)
//
// View calls, contract.on (eth_newFilter / eth_getFilterChanges), a transaction populated,
// signed and sent by ethers, an estimate at a nonce ahead of the account's, queryFilter
// (eth_getLogs). Prints one line "RESULT <json>" and exits 0; any failure exits non-zero
// (an unhandled rejection ends Node 20 with status 1, as it ended the client in issue 14).
import { readFileSync } from "node:fs";
import { Contract, JsonRpcProvider, Wallet, hexlify, id, randomBytes } from "ethers";

const [url, address, artifactPath] = process.argv.slice(2);
const key = process.env.JL_KEY;
if (!url || !address || !artifactPath || !key) {
  console.error("usage: JL_KEY=0x... node drive.mjs RPC_URL CONTRACT_ADDRESS ARTIFACT_JSON");
  process.exit(2);
}
const LIMIT_MS = 30_000;
const watchdog = setTimeout(() => {
  console.error(`ethers harness: not done within ${LIMIT_MS} ms`);
  process.exit(3);
}, LIMIT_MS);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ``promise``, or an error after ``ms``; the timer is cleared so that it keeps nothing alive.
async function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const { abi } = JSON.parse(readFileSync(artifactPath, "utf8"));
const provider = new JsonRpcProvider(url, undefined, { pollingInterval: 100 });
const wallet = new Wallet(key, provider);
const contract = new Contract(address, abi, wallet);
const result = {};

// View calls (eth_call).
result.threshold = (await contract.threshold()).toString();
result.members = (await contract.members()).length;

// contract.on: ethers installs a filter and polls eth_getFilterChanges on every new block.
const logId = hexlify(randomBytes(32));
const delivered = new Promise((resolve) => {
  // With a topic filter ethers passes only the event payload; its args are decoded.
  contract.on(contract.filters.CheckpointAnchored(logId), (...args) => {
    const event = args[args.length - 1];
    resolve({
      name: event.log.eventName,
      logId: event.args[0],
      treeSize: event.args[2].toString(),
      transactionHash: event.log.transactionHash,
    });
  });
});
await sleep(500); // the subscription's eth_newFilter is sent when contract.on starts it

// A transaction populated (nonce, gas estimate, fees, chain id), signed and sent by ethers.
const request = await contract.anchorCheckpoint.populateTransaction(
  logId, 7, id("root"), 1700000000, "0x5167",
);
const populated = await wallet.populateTransaction(request);
result.populated = {
  nonce: populated.nonce,
  gasLimit: populated.gasLimit.toString(),
  chainId: populated.chainId.toString(),
  type: populated.type,
};
// An estimate at a nonce ahead of the account's (a client queueing transactions does this).
result.estimateAheadOfNonce = (
  await provider.estimateGas({ ...populated, from: wallet.address, nonce: populated.nonce + 1 })
).toString();
const signed = await wallet.signTransaction(populated);
const sent = await provider.broadcastTransaction(signed);
const receipt = await within(sent.wait(), 10_000, "receipt");
result.transactionHash = receipt.hash;
result.status = receipt.status;
result.blockNumber = receipt.blockNumber;

result.event = await within(delivered, 10_000, "contract.on event");
await contract.removeAllListeners();

// queryFilter (eth_getLogs) over the block range the event is in.
const logs = await contract.queryFilter(
  contract.filters.CheckpointAnchored(logId), receipt.blockNumber - 5, "latest",
);
result.queried = logs.map((log) => ({
  transactionHash: log.transactionHash,
  treeSize: log.args[2].toString(),
}));
result.checkpointCount = (await contract.checkpointCount(logId)).toString();

provider.destroy();
clearTimeout(watchdog);
console.log("RESULT " + JSON.stringify(result));
