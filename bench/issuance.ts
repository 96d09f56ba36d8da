/**
 * P1 — X.509-SVID issuance throughput on the server path (CSR in → signed certificate out, batches of 100) on one
 * core, against raw ECDSA P-256 signing with node:crypto in the same process.
 */
import { sign } from 'node:crypto';
import { FakeClock } from '../src/common/clock.js';
import { generateKeyPair } from '../src/common/x509/keys.js';
import { createCsr, parseCsr } from '../src/common/x509/csr.js';
import { openTestCa, tempDir } from '../test/support/server-kit.js';
import { report, type BenchResult } from './report.js';

const BATCH = 100;

function rate(fn: () => void, minMs: number): number {
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minMs) {
    fn();
    n++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (n * 1000) / elapsed;
}

export async function benchIssuance(seconds: number): Promise<BenchResult[]> {
  const { dir, cleanup } = tempDir('meshid-bench-');
  const ca = await openTestCa(dir, {}, new FakeClock(Date.now()));
  try {
    const csrs: Buffer[] = [];
    for (let i = 0; i < BATCH; i++) {
      const { privateKey, publicKey } = generateKeyPair('ec-p256');
      csrs.push(await createCsr(privateKey, publicKey));
    }
    const { privateKey } = generateKeyPair('ec-p256');
    const tbs = Buffer.alloc(300, 7);
    const ms = (seconds * 1000) / 2;
    const baseline = rate(() => sign('sha256', tbs, privateKey), ms);
    const batches = rate(() => {
      for (const csr of csrs) {
        const { publicKey } = parseCsr(csr);
        ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/bench/workload', ttlMs: 24 * 3600e3 });
      }
    }, ms);
    const perSecond = batches * BATCH;
    const keys = csrs.map((csr) => parseCsr(csr).publicKey);
    const signOnly = rate(() => {
      for (const publicKey of keys) ca.ca.signX509Svid({ datacenter: 'east', publicKey, spiffeId: 'spiffe://example.org/bench/workload', ttlMs: 24 * 3600e3 });
    }, ms) * BATCH;
    return [
      { name: 'P1 baseline: crypto.sign ECDSA P-256', value: baseline, unit: 'sig/s' },
      { name: 'P1 X.509-SVID issuance (CSR → cert, batches of 100)', value: perSecond, unit: 'certs/s', ratio: perSecond / baseline, target: 'ratio ≥ 0.50' },
      { name: 'P1 certificate signing only (key already parsed)', value: signOnly, unit: 'certs/s', ratio: signOnly / baseline },
    ];
  } finally {
    await ca.close();
    cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  report(await benchIssuance(Number(process.env['BENCH_SECONDS'] ?? 4)));
}
