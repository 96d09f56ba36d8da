/**
 * A workload process for the entitlement model test (test/integration/entitlement-model.test.ts), run as a uid/gid
 * of the test's choosing: it holds a FetchX509SVID stream, a wildcard StreamSecrets stream and a StreamSecrets
 * stream asking for a fixed list of names, ACKing as Envoy does, and reopens any of them that ends (as go-spiffe's
 * watcher and Envoy do, after a short backoff). Every message is printed as one JSON line on stdout, reduced to what
 * it names (identities, digests of their leaf certificates and the URI SANs, trust domains and digests of bundles); a line `fetch <n>` on
 * stdin asks for a fresh FetchX509SVID, answered with `{"s":"fetch","n":<n>,…}`; `jwt <n> <audience>` for
 * FetchJWTSVID and `validate <n> <audience> <token>` for ValidateJWTSVID, answered likewise. It also holds
 * FetchX509Bundles and FetchJWTBundles streams, and a wildcard and an explicit DeltaSecrets stream, each printed as
 * the secrets it holds after applying the message (Envoy's view) with the names the message removed.
 *
 * Started as root, it takes the uid, gid and supplementary groups it is given before connecting: child_process
 * spawn's uid/gid options drop every supplementary group, and the model needs workloads that have some.
 *
 * Usage: node entitlement-workload.js <agent socket> <JSON list of SDS names> <uid> <gid> <comma-separated groups>
 */
import { createHash, X509Certificate } from 'node:crypto';
import readline from 'node:readline';
import { connectWorkloadApi, grpcCode } from '../../src/agent/cli/workload-client.js';
import type { X509SvidResponse } from '../../src/agent/workload/messages.js';
import { splitConcatenatedDer } from '../../src/common/x509/pem.js';
import { connectSds, decodeDeltaResources, decodeSecrets, DeltaClient, envoyNode, pemBlocks, SotwClient, spiffeTrustDomains, type DecodedSecret, type DiscoveryResponse } from './sds-client.js';

const [socketPath, namesJson, uid, gid, groups] = process.argv.slice(2);
const explicitNames = JSON.parse(namesJson!) as string[];
// Groups first: only root may set them, and setuid gives root up.
process.setgroups!(groups === undefined || groups === '' ? [] : groups.split(',').map(Number));
process.setgid!(Number(gid));
process.setuid!(Number(uid));
const REOPEN_MS = 100;

const digest = (der: Buffer): string => createHash('sha256').update(der).digest('hex').slice(0, 16);
const emit = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

/** What one X.509-SVID response names. */
function summarizeX509(m: X509SvidResponse): Record<string, unknown> {
  return {
    svids: m.svids.map((s) => {
      const leaf = new X509Certificate(splitConcatenatedDer(s.x509_svid)[0]!);
      const sans = (leaf.subjectAltName ?? '').split(', ');
      return {
        id: s.spiffe_id,
        ...(s.hint ? { hint: s.hint } : {}),
        leaf: digest(splitConcatenatedDer(s.x509_svid)[0]!),
        uris: sans.filter((n) => n.startsWith('URI:')).map((n) => n.slice(4)),
        dns: sans.filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4)).sort(),
        lifetime: Math.round((Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000),
        bundle: splitConcatenatedDer(s.bundle).map(digest).sort(),
      };
    }),
    federated: Object.fromEntries(
      Object.entries(m.federated_bundles ?? {}).map(([td, der]) => [td, splitConcatenatedDer(der).map(digest).sort()]),
    ),
  };
}

/** What one StreamSecrets response names: each secret's name, its certificate's URI SANs or its trust domains. */
function summarizeSds(m: DiscoveryResponse): Record<string, unknown> {
  return summarizeSecrets(decodeSecrets(m.resources));
}

function summarizeSecrets(decoded: readonly DecodedSecret[]): Record<string, unknown> {
  const secrets: Record<string, unknown> = {};
  for (const s of decoded) {
    if (s.tls_certificate !== undefined) {
      const chain = s.tls_certificate.certificate_chain;
      const pem = chain?.inline_bytes?.toString('utf8') ?? chain?.inline_string ?? '';
      const der = pemBlocks(pem)[0]!;
      const leaf = new X509Certificate(der);
      secrets[s.name!] = { leaf: digest(der), uris: (leaf.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:')).map((n) => n.slice(4)) };
    } else {
      secrets[s.name!] = {
        trustDomains: Object.fromEntries(spiffeTrustDomains(s).map((td) => [td.name, pemBlocks(td.trustBundlePem).map(digest).sort()])),
      };
    }
  }
  return secrets;
}

function watchX509(): void {
  const client = connectWorkloadApi(socketPath!, { timeoutMs: 60_000 });
  const watch = client.watchX509Svids();
  void (async () => {
    try {
      for await (const m of watch) emit({ s: 'x509', ...summarizeX509(m) });
      emit({ s: 'x509-end', code: 0 });
    } catch (err) {
      emit({ s: 'x509-end', code: grpcCode(err) ?? -1, message: (err as Error).message });
    }
    client.close();
    setTimeout(watchX509, REOPEN_MS);
  })();
}

/** FetchX509Bundles and FetchJWTBundles: each trust domain's roots (digests) or JWT key IDs. */
function watchBundles(stream: 'x509-bundles' | 'jwt-bundles'): void {
  const client = connectWorkloadApi(socketPath!, { timeoutMs: 60_000 });
  const watch = stream === 'x509-bundles' ? client.watchX509Bundles() : client.watchJwtBundles();
  void (async () => {
    try {
      for await (const m of watch) {
        const bundles = Object.fromEntries(
          Object.entries(m.bundles ?? {}).map(([td, bytes]) => [
            td,
            stream === 'x509-bundles'
              ? splitConcatenatedDer(bytes).map(digest).sort()
              : ((JSON.parse(bytes.toString('utf8')) as { keys?: Array<{ kid?: string }> }).keys ?? []).map((k) => k.kid ?? '').sort(),
          ]),
        );
        emit({ s: stream, bundles });
      }
      emit({ s: `${stream}-end`, code: 0 });
    } catch (err) {
      emit({ s: `${stream}-end`, code: grpcCode(err) ?? -1, message: (err as Error).message });
    }
    client.close();
    setTimeout(() => watchBundles(stream), REOPEN_MS);
  })();
}

function watchSds(stream: 'wildcard' | 'explicit', names: string[]): void {
  const client = connectSds(socketPath!);
  const sotw = new SotwClient(client);
  sotw.subscribe(names);
  void (async () => {
    for (;;) {
      let m: DiscoveryResponse;
      try {
        m = await sotw.next(3_600_000);
      } catch {
        break;
      }
      emit({ s: stream, version: m.version_info, secrets: summarizeSds(m) });
      sotw.ack(m, names);
    }
    const status = await sotw.status;
    emit({ s: `${stream}-end`, code: status.code, message: status.details });
    client.close();
    setTimeout(() => watchSds(stream, names), REOPEN_MS);
  })();
}

/**
 * DeltaSecrets as Envoy drives it: subscribe once (no names: wildcard), ACK every response, and keep the secrets
 * received until a response names them in removed_resources.
 */
function watchDelta(stream: 'delta-wildcard' | 'delta-explicit', names: string[]): void {
  const client = connectSds(socketPath!);
  const delta = new DeltaClient(client);
  delta.request({ node: envoyNode(), subscribe: names });
  const held = new Map<string, DecodedSecret>();
  void (async () => {
    for (;;) {
      let m;
      try {
        m = await delta.next(3_600_000);
      } catch {
        break;
      }
      for (const name of m.removed_resources ?? []) held.delete(name);
      for (const r of decodeDeltaResources(m)) held.set(r.name, { ...r.secret, name: r.name });
      emit({ s: stream, secrets: summarizeSecrets([...held.values()]), removed: m.removed_resources ?? [], got: (m.resources ?? []).map((r) => r.name) });
      delta.ack(m);
    }
    const status = await delta.status;
    emit({ s: `${stream}-end`, code: status.code, message: status.details });
    client.close();
    setTimeout(() => watchDelta(stream, names), REOPEN_MS);
  })();
}

/** FetchJWTSVID for one audience: each token's SPIFFE ID, hint, and its `sub` and `aud` claims (the token too, to validate elsewhere). */
async function fetchJwt(n: number, audience: string): Promise<void> {
  const client = connectWorkloadApi(socketPath!, { timeoutMs: 20_000 });
  try {
    const r = await client.fetchJwtSvid([audience]);
    const svids = r.svids.map((v) => {
      const claims = JSON.parse(Buffer.from(v.svid.split('.')[1]!, 'base64url').toString('utf8')) as { sub?: string; aud?: string | string[] };
      return { id: v.spiffe_id, ...(v.hint ? { hint: v.hint } : {}), sub: claims.sub, aud: claims.aud, token: v.svid };
    });
    emit({ s: 'jwt', n, svids });
  } catch (err) {
    emit({ s: 'jwt', n, code: grpcCode(err) ?? -1, message: (err as Error).message });
  } finally {
    client.close();
  }
}

/** ValidateJWTSVID of a token another workload was given. */
async function validateJwt(n: number, audience: string, token: string): Promise<void> {
  const client = connectWorkloadApi(socketPath!, { timeoutMs: 20_000 });
  try {
    const r = await client.validateJwtSvid(audience, token);
    emit({ s: 'validate', n, spiffeId: r.spiffeId, sub: r.claims['sub'] });
  } catch (err) {
    emit({ s: 'validate', n, code: grpcCode(err) ?? -1, message: (err as Error).message });
  } finally {
    client.close();
  }
}

async function fetchOnce(n: number): Promise<void> {
  const client = connectWorkloadApi(socketPath!, { timeoutMs: 20_000 });
  try {
    emit({ s: 'fetch', n, ...summarizeX509(await client.fetchX509Svid()) });
  } catch (err) {
    emit({ s: 'fetch', n, code: grpcCode(err) ?? -1, message: (err as Error).message });
  } finally {
    client.close();
  }
}

watchX509();
watchSds('wildcard', []);
watchSds('explicit', explicitNames);
watchDelta('delta-wildcard', []);
watchDelta('delta-explicit', explicitNames);
watchBundles('x509-bundles');
watchBundles('jwt-bundles');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = /^fetch (\d+)$/.exec(line);
  if (m) void fetchOnce(Number(m[1]));
  const jwt = /^jwt (\d+) (\S+)$/.exec(line);
  if (jwt) void fetchJwt(Number(jwt[1]), jwt[2]!);
  const validate = /^validate (\d+) (\S+) (\S+)$/.exec(line);
  if (validate) void validateJwt(Number(validate[1]), validate[2]!, validate[3]!);
});
process.stdin.on('end', () => process.exit(0));
