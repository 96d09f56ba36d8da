import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { toStruct } from '../../../src/common/grpc/proto.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { opensslVerify } from '../../support/openssl.js';
import {
  dataSourceText,
  type DecodedSecret,
  envoyNode,
  pemBlocks,
  SECRET_TYPE_URL,
  secretsByName,
  SotwClient,
  spiffeTrustDomains,
} from '../../support/sds-client.js';
import { APP_A, APP_B, as, eventually, FOREIGN_TD, SELECTOR_A, SELECTOR_B, startSdsHarness, TD, trustDomainsForSuite } from './sds-harness.js';

function tlsCertificate(secret: DecodedSecret | undefined): { chainPem: string; keyPem: string } {
  const cert = secret?.tls_certificate;
  assert.ok(cert, 'secret is a tls_certificate');
  assert.equal(cert.password, undefined, 'no password');
  assert.equal(cert.certificate_chain?.specifier, 'inline_bytes');
  assert.equal(cert.private_key?.specifier, 'inline_bytes');
  return { chainPem: dataSourceText(cert.certificate_chain), keyPem: dataSourceText(cert.private_key) };
}

/** One sidecar's SDS material: default + ROOTCA from a SotW stream. */
async function sidecarMaterial(client: SotwClient): Promise<{ chainPem: string; keyPem: string; rootsPem: string }> {
  client.subscribe(['default', 'ROOTCA']);
  const secrets = secretsByName(await client.next());
  const { chainPem, keyPem } = tlsCertificate(secrets.get('default'));
  const [domain] = spiffeTrustDomains(secrets.get('ROOTCA')!);
  return { chainPem, keyPem, rootsPem: domain!.trustBundlePem };
}

describe('SDS secret content (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();
  const { withHarness } = suite;

  it('default and ROOTCA decode to a PEM tls_certificate and a SPIFFE validation context with bare trust domain names', async () => {
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const response = await client.next();
      assert.equal(response.type_url, SECRET_TYPE_URL);
      assert.ok(response.version_info, 'non-empty version_info');
      assert.ok(response.nonce, 'non-empty nonce');
      for (const r of response.resources ?? []) assert.equal(r.type_url, SECRET_TYPE_URL);
      const secrets = secretsByName(response);
      assert.deepEqual([...secrets.keys()].sort(), ['ROOTCA', 'default']);

      const svid = h.cache.svidOf(APP_A);
      const { chainPem, keyPem } = tlsCertificate(secrets.get('default'));
      const chain = pemBlocks(chainPem);
      assert.equal(chain.length, 2, 'leaf and intermediate, no root');
      assert.ok(chain[0]!.equals(svid.chain[0]!), 'leaf first');
      assert.ok(chain[1]!.equals(suite.ca.intermediateDer), 'then the intermediate');
      assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
      const leaf = new X509Certificate(chain[0]!);
      assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)), 'key matches the leaf');
      assert.equal(leaf.subjectAltName, `URI:${APP_A}`);

      const rootca = secrets.get('ROOTCA')!;
      const validator = rootca.validation_context?.custom_validator_config;
      assert.equal(validator?.name, 'envoy.tls.cert_validator.spiffe');
      assert.equal(validator?.typed_config?.type_url, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');
      assert.equal(rootca.validation_context?.trusted_ca, undefined);
      const domains = spiffeTrustDomains(rootca);
      assert.deepEqual(domains.map((d) => [d.name, d.specifier]), [[TD, 'inline_bytes']]);
      const roots = pemBlocks(domains[0]!.trustBundlePem);
      assert.equal(roots.length, 1);
      assert.ok(roots[0]!.equals(suite.ca.rootDer));

      // The served chain verifies against the served roots with an independent, strict verifier.
      const verdict = opensslVerify({ roots, intermediates: chain.slice(1), leaf: chain[0]!, purpose: 'sslclient' });
      assert.ok(verdict.ok, verdict.output);
      client.cancel();
    });
  });

  it('two sidecars complete an mTLS handshake with their SDS secrets and see each other\'s SPIFFE ID', async () => {
    const h = await startSdsHarness(suite.ca, (c) => {
      c.addEntry(SELECTOR_A, APP_A);
      c.addEntry(SELECTOR_B, APP_B);
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-sds-tls-'));
    const outsider = new TestCa(TD); // same trust domain name, different root: must not be trusted
    try {
      const frontend = new SotwClient(h.client, as(SELECTOR_A));
      const backend = new SotwClient(h.client, as(SELECTOR_B));
      const a = await sidecarMaterial(frontend);
      const b = await sidecarMaterial(backend);

      const seenByServer: string[] = [];
      const server = tls.createServer(
        { cert: b.chainPem, key: b.keyPem, ca: b.rootsPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
        (socket) => {
          seenByServer.push(socket.getPeerCertificate().subjectaltname ?? '');
          socket.end('hello from backend');
        },
      );
      server.on('tlsClientError', () => {});
      const socketPath = path.join(dir, 'backend.sock');
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));

      /** Connects as a client sidecar; settles with what the backend said, or the error that ended the exchange. */
      const connect = (cert: string, key: string): Promise<{ authorized: boolean; data: string; peer: string; error?: Error }> =>
        new Promise((resolve) => {
          const socket = tls.connect({
            path: socketPath,
            cert,
            key,
            ca: a.rootsPem,
            servername: 'backend',
            // SPIFFE authenticates the URI SAN, not a host name.
            checkServerIdentity: (_host, peer) =>
              peer.subjectaltname === `URI:${APP_B}` ? undefined : new Error(`unexpected peer ${peer.subjectaltname}`),
          });
          let data = '';
          const settle = (error?: Error): void =>
            resolve({ authorized: socket.authorized, data, peer: socket.getPeerCertificate()?.subjectaltname ?? '', ...(error ? { error } : {}) });
          socket.on('data', (d) => (data += d.toString()));
          socket.on('end', () => settle());
          socket.on('error', (e) => settle(e));
        });

      try {
        const ok = await connect(a.chainPem, a.keyPem);
        assert.equal(ok.error, undefined);
        assert.equal(ok.authorized, true);
        assert.equal(ok.peer, `URI:${APP_B}`);
        assert.equal(ok.data, 'hello from backend');
        assert.deepEqual(seenByServer, [`URI:${APP_A}`]);

        // A certificate from another root is refused by the backend: the handshake really checks the SDS roots.
        const stranger = outsider.issue(APP_A);
        const strangerChain = stranger.chain.map((d) => new X509Certificate(d).toString()).join('');
        const strangerKey = createPrivateKey({ key: stranger.privateKey, format: 'der', type: 'pkcs8' })
          .export({ type: 'pkcs8', format: 'pem' })
          .toString();
        const refused = await connect(strangerChain, strangerKey);
        assert.notEqual(refused.data, 'hello from backend');
        assert.deepEqual(seenByServer, [`URI:${APP_A}`], 'the backend never accepted the stranger');
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      frontend.cancel();
      backend.cancel();
    } finally {
      outsider.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
      await h.close();
    }
  });

  for (const [label, value] of [['bool true', true], ['string "true"', 'true']] as const) {
    it(`node metadata disable_spiffe_cert_validation (${label}) gives trusted_ca, and later pushes keep it`, async () => {
      await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
        const client = new SotwClient(h.client, as(SELECTOR_A));
        const node = envoyNode('opted-out', { metadata: toStruct({ disable_spiffe_cert_validation: value }) });
        client.subscribe(['ROOTCA'], node);
        const first = await client.next();
        const rootca = secretsByName(first).get('ROOTCA')!;
        assert.equal(rootca.validation_context?.custom_validator_config, undefined);
        assert.deepEqual(pemBlocks(dataSourceText(rootca.validation_context?.trusted_ca)), [suite.ca.rootDer]);

        // Envoy sends the node on the first request only; an update-triggered push must keep the same form.
        client.ack(first, ['ROOTCA']);
        await eventually(() => h.service.stats().acks === 1, 'the node-less ACK to be processed');
        h.cache.setOwnBundle({ ...suite.ca.bundle(2), x509Authorities: [suite.ca.rootDer, suite.foreign.rootDer] });
        const pushed = secretsByName(await client.next()).get('ROOTCA')!;
        assert.equal(pushed.validation_context?.custom_validator_config, undefined);
        assert.deepEqual(pemBlocks(dataSourceText(pushed.validation_context?.trusted_ca)), [suite.ca.rootDer, suite.foreign.rootDer]);
        client.cancel();
      });
    });
  }

  it('node metadata disable_spiffe_cert_validation false keeps the SPIFFE validator', async () => {
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['ROOTCA'], envoyNode('n', { metadata: toStruct({ disable_spiffe_cert_validation: 'false' }) }));
      const rootca = secretsByName(await client.next()).get('ROOTCA')!;
      assert.equal(spiffeTrustDomains(rootca).length, 1);
      client.cancel();
    });
  });

  it('the global disableSpiffeCertValidation option gives trusted_ca to every Envoy', async () => {
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['ROOTCA']);
      const rootca = secretsByName(await client.next()).get('ROOTCA')!;
      assert.equal(rootca.validation_context?.custom_validator_config, undefined);
      assert.deepEqual(pemBlocks(dataSourceText(rootca.validation_context?.trusted_ca)), [suite.ca.rootDer]);
      client.cancel();
    }, { disableSpiffeCertValidation: true });
  });

  it('a client that reports no Envoy build version gets the SPIFFE validator, as from SPIRE, unless the agent option is set', async () => {
    // SPIRE's supportsSPIFFEAuthExtension returns true without a build version ("Support as default").
    const notEnvoy = { id: 'grpcurl', user_agent_name: 'grpc-go' };
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['ROOTCA'], notEnvoy);
      const rootca = secretsByName(await client.next()).get('ROOTCA')!;
      assert.equal(rootca.validation_context?.trusted_ca, undefined);
      assert.deepEqual(spiffeTrustDomains(rootca).map((d) => d.name), [TD]);
      client.cancel();
    });
    await withHarness((c) => c.addEntry(SELECTOR_A, APP_A), async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['ROOTCA'], notEnvoy);
      const rootca = secretsByName(await client.next()).get('ROOTCA')!;
      assert.equal(rootca.validation_context?.custom_validator_config, undefined);
      assert.deepEqual(pemBlocks(dataSourceText(rootca.validation_context?.trusted_ca)), [suite.ca.rootDer]);
      client.cancel();
    }, { disableSpiffeCertValidation: true });
  });

  it('ALL holds own and federated trust domains sorted by name; spiffe://<td> names select one trust domain', async () => {
    await withHarness((c) => {
      c.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
      c.addEntry(SELECTOR_B, APP_B);
      c.setFederatedBundle(suite.foreign.bundle());
    }, async (h) => {
      const a = new SotwClient(h.client, as(SELECTOR_A));
      a.subscribe(['ALL', `spiffe://${FOREIGN_TD}`, `spiffe://${TD}`]);
      const secrets = secretsByName(await a.next());
      const all = spiffeTrustDomains(secrets.get('ALL')!);
      assert.deepEqual(all.map((d) => d.name), [TD, FOREIGN_TD].sort());
      for (const d of all) assert.deepEqual(pemBlocks(d.trustBundlePem), [d.name === TD ? suite.ca.rootDer : suite.foreign.rootDer]);
      assert.deepEqual(spiffeTrustDomains(secrets.get(`spiffe://${FOREIGN_TD}`)!).map((d) => d.name), [FOREIGN_TD]);
      assert.deepEqual(spiffeTrustDomains(secrets.get(`spiffe://${TD}`)!).map((d) => d.name), [TD]);

      // B does not federate: its ALL is the own domain only and the foreign bundle is not served to it.
      const b = new SotwClient(h.client, as(SELECTOR_B));
      b.subscribe(['ALL', `spiffe://${FOREIGN_TD}`]);
      const bSecrets = secretsByName(await b.next());
      assert.deepEqual([...bSecrets.keys()], ['ALL']);
      assert.deepEqual(spiffeTrustDomains(bSecrets.get('ALL')!).map((d) => d.name), [TD]);
      a.cancel();
      b.cancel();
    });
  });

  it('an identity the caller is not entitled to is never served, not even after it rotates', async () => {
    await withHarness((c) => {
      c.addEntry(SELECTOR_A, APP_A);
      c.addEntry(SELECTOR_B, APP_B);
    }, async (h) => {
      const a = new SotwClient(h.client, as(SELECTOR_A));
      a.subscribe([APP_B, APP_A]);
      const first = await a.next();
      assert.deepEqual([...secretsByName(first).keys()], [APP_A]);
      a.ack(first, [APP_B, APP_A]);
      h.cache.rotate(APP_B);
      h.cache.rotate(APP_A);
      const second = await a.next();
      assert.deepEqual([...secretsByName(second).keys()], [APP_A]);
      const bLeaf = h.cache.svidOf(APP_B).chain[0]!;
      for (const response of a.received) {
        for (const secret of secretsByName(response).values()) {
          if (secret.tls_certificate) assert.ok(!pemBlocks(dataSourceText(secret.tls_certificate.certificate_chain))[0]!.equals(bLeaf));
        }
      }
      a.cancel();
    });
  });
});
