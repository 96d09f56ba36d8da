import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { toStruct } from '../../../src/common/grpc/proto.js';
import { isMeshidError } from '../../../src/common/errors.js';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import type { IdentitySnapshot, WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import { checkResourceNames, entitledResourceNames, resolveResourceName } from '../../../src/agent/sds/resource-names.js';
import { resolveSdsOptions, type ResolvedSdsOptions } from '../../../src/agent/sds/sds-options.js';
import { checkTypeUrl, resourceVersion, SECRET_TYPE_URL, stateVersion } from '../../../src/agent/sds/secret-builder.js';
import { checkAllBundlesName, validationChoiceFor } from '../../../src/agent/sds/node-validation-mode.js';
import { servedSnapshot } from '../../support/fake-workload-cache.js';

const options = resolveSdsOptions();

function svid(spiffeId: string, leaf: string): WorkloadSvid {
  return {
    entryId: spiffeId,
    spiffeId,
    hint: '',
    chain: [Buffer.from(leaf), Buffer.from('intermediate')],
    privateKey: Buffer.from('key'),
    notBefore: 0,
    notAfter: 1,
    version: leaf,
  };
}

function bundle(trustDomain: string, roots: string[] = [`${trustDomain} root`]): TrustBundle {
  return { trustDomain, x509Authorities: roots.map((r) => Buffer.from(r)), jwtAuthorities: [], sequence: 1 };
}

function snapshot(overrides: Partial<IdentitySnapshot> = {}): IdentitySnapshot {
  const svids = [svid('spiffe://example.org/a', 'leaf-a'), svid('spiffe://example.org/b', 'leaf-b')];
  return servedSnapshot(svids, bundle('example.org'), [bundle('zeta.example'), bundle('alpha.example')], overrides);
}

function describeResource(name: string, snap = snapshot(), mode: 'spiffe' | 'trusted_ca' = 'spiffe'): string | undefined {
  const r = resolveResourceName(snap, name, options, mode);
  if (r === undefined) return undefined;
  return r.kind === 'tls_certificate' ? `svid ${r.svid.spiffeId}` : `bundles ${r.bundles.map((b) => b.trustDomain).join(',')}`;
}

function code(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    return isMeshidError(err) ? err.code : 'other';
  }
  return 'ok';
}

describe('SDS resource names', () => {
  const cases: Array<[string, string | undefined]> = [
    ['default', 'svid spiffe://example.org/a'],
    ['spiffe://example.org/b', 'svid spiffe://example.org/b'],
    ['ROOTCA', 'bundles example.org'],
    ['spiffe://example.org', 'bundles example.org'],
    ['ALL', 'bundles alpha.example,example.org,zeta.example'],
    ['spiffe://zeta.example', 'bundles zeta.example'],
    ['spiffe://example.org/c', undefined],
    ['spiffe://example.org/A', undefined],
    ['spiffe://other.example', undefined],
    ['rootca', undefined],
    ['*', undefined],
  ];
  for (const [name, expected] of cases) {
    it(`"${name}" resolves to ${expected ?? 'nothing'}`, () => {
      assert.equal(describeResource(name), expected);
    });
  }

  it('an SVID resolves only by its exact SPIFFE ID, never by a name it begins with', () => {
    const snap = snapshot({ svids: [svid('spiffe://example.org/web-admin', 'leaf-admin'), svid('spiffe://example.org/web/x', 'leaf-x')] });
    assert.equal(describeResource('spiffe://example.org/web', snap), undefined);
    assert.equal(describeResource('spiffe://example.org/web-admin', snap), 'svid spiffe://example.org/web-admin');
  });

  it('nothing resolves for a caller that is not entitled', () => {
    const snap = snapshot({ entitled: false });
    for (const [name] of cases) assert.equal(describeResource(name, snap), undefined);
    assert.deepEqual(entitledResourceNames(snap, options, 'spiffe'), []);
  });

  it('default is the default identity once its SVID is issued, whether or not its siblings have theirs', () => {
    // A third entry still waits for its SVID: `default` is served all the same.
    assert.equal(describeResource('default', snapshot({ complete: false })), 'svid spiffe://example.org/a');
    // The default's own SVID is missing: svids[0] is another identity, so `default` names nothing.
    const waiting = snapshot({ complete: false, defaultSvid: undefined });
    assert.equal(describeResource('default', waiting), undefined);
    assert.equal(describeResource('spiffe://example.org/a', waiting), 'svid spiffe://example.org/a');
    assert.equal(describeResource('spiffe://example.org/b', waiting), 'svid spiffe://example.org/b');
  });

  it('a trust domain without X.509 roots is left out, and a context with none left does not resolve', () => {
    const snap = snapshot({ federatedBundles: [bundle('empty.example', [])], bundle: bundle('example.org', []) });
    assert.equal(describeResource('ROOTCA', snap), undefined);
    assert.equal(describeResource('ALL', snap), undefined);
    assert.equal(describeResource('spiffe://empty.example', snap), undefined);
  });

  it('the wildcard set is every name that resolves, SVIDs first', () => {
    assert.deepEqual(entitledResourceNames(snapshot(), options, 'spiffe'), [
      'default',
      'spiffe://example.org/a',
      'spiffe://example.org/b',
      'ROOTCA',
      'ALL',
      'spiffe://example.org',
      'spiffe://zeta.example',
      'spiffe://alpha.example',
    ]);
  });

  it('under trusted_ca, ALL resolves to nothing and the wildcard set leaves it out; one trust domain still resolves', () => {
    assert.equal(describeResource('ALL', snapshot(), 'trusted_ca'), undefined);
    assert.equal(describeResource('ROOTCA', snapshot(), 'trusted_ca'), 'bundles example.org');
    assert.equal(describeResource('spiffe://zeta.example', snapshot(), 'trusted_ca'), 'bundles zeta.example');
    assert.deepEqual(entitledResourceNames(snapshot(), options, 'trusted_ca'), [
      'default',
      'spiffe://example.org/a',
      'spiffe://example.org/b',
      'ROOTCA',
      'spiffe://example.org',
      'spiffe://zeta.example',
      'spiffe://alpha.example',
    ]);
  });

  it('configured aliases replace the defaults', () => {
    const custom = resolveSdsOptions({ defaultSvidName: 'my-cert', defaultBundleName: 'my-ca', defaultAllBundlesName: 'every-ca' });
    assert.equal(resolveResourceName(snapshot(), 'default', custom, 'spiffe'), undefined);
    assert.equal(resolveResourceName(snapshot(), 'my-cert', custom, 'spiffe')?.kind, 'tls_certificate');
    assert.equal(resolveResourceName(snapshot(), 'my-ca', custom, 'spiffe')?.kind, 'validation_context');
    assert.equal(resolveResourceName(snapshot(), 'every-ca', custom, 'spiffe')?.kind, 'validation_context');
  });

  it('options that would make names ambiguous are refused', () => {
    assert.equal(code(() => resolveSdsOptions({ defaultSvidName: '' })), 'invalid_argument');
    assert.equal(code(() => resolveSdsOptions({ defaultSvidName: 'ALL' })), 'invalid_argument');
    assert.equal(code(() => resolveSdsOptions({ defaultBundleName: 'spiffe://example.org' })), 'invalid_argument');
    assert.equal(code(() => resolveSdsOptions({ defaultAllBundlesName: '*' })), 'invalid_argument');
    assert.ok(Object.isFrozen(resolveSdsOptions()));
  });

  it('request names are checked: count limit, empty, too long, malformed SPIFFE ID', () => {
    assert.equal(code(() => checkResourceNames(Array.from({ length: 1000 }, (_, i) => `n${i}`))), 'ok');
    assert.equal(code(() => checkResourceNames(Array.from({ length: 1001 }, (_, i) => `n${i}`))), 'invalid_argument');
    assert.equal(code(() => checkResourceNames([''])), 'invalid_argument');
    assert.equal(code(() => checkResourceNames(['x'.repeat(2049)])), 'invalid_argument');
    assert.equal(code(() => checkResourceNames(['spiffe://example.org/a?b'])), 'invalid_argument');
    assert.equal(code(() => checkResourceNames(['spiffe://example.org/ok', 'anything-else', '*'])), 'ok');
  });

  it('type URLs: empty or the Secret URL are accepted, anything else is invalid_argument', () => {
    assert.equal(code(() => checkTypeUrl(undefined)), 'ok');
    assert.equal(code(() => checkTypeUrl('')), 'ok');
    assert.equal(code(() => checkTypeUrl(SECRET_TYPE_URL)), 'ok');
    assert.equal(code(() => checkTypeUrl('type.googleapis.com/envoy.config.cluster.v3.Cluster')), 'invalid_argument');
    assert.equal(code(() => checkTypeUrl('type.googleapis.com/envoy.api.v2.auth.Secret')), 'invalid_argument');
  });
});

describe('SDS versions', () => {
  it('are equal for equal content and differ when the content or the validation form differs', () => {
    const a1 = resolveResourceName(snapshot(), 'spiffe://example.org/a', options, 'spiffe')!;
    const a2 = resolveResourceName(snapshot(), 'default', options, 'spiffe')!;
    const b = resolveResourceName(snapshot(), 'spiffe://example.org/b', options, 'spiffe')!;
    assert.equal(resourceVersion(a1, 'spiffe'), resourceVersion(a2, 'spiffe'));
    assert.notEqual(resourceVersion(a1, 'spiffe'), resourceVersion(b, 'spiffe'));
    const roots = resolveResourceName(snapshot(), 'ROOTCA', options, 'spiffe')!;
    assert.notEqual(resourceVersion(roots, 'spiffe'), resourceVersion(roots, 'trusted_ca'));
    const moreRoots = resolveResourceName(snapshot({ bundle: bundle('example.org', ['r1', 'r2']) }), 'ROOTCA', options, 'spiffe')!;
    assert.notEqual(resourceVersion(roots, 'spiffe'), resourceVersion(moreRoots, 'spiffe'));
  });

  it('a state version ignores insertion order and is never empty', () => {
    assert.equal(stateVersion(new Map([['a', '1'], ['b', '2']])), stateVersion(new Map([['b', '2'], ['a', '1']])));
    assert.notEqual(stateVersion(new Map([['a', '1']])), stateVersion(new Map([['a', '2']])));
    assert.ok(stateVersion(new Map()).length > 0);
  });
});

describe('SDS validation-context form from the Envoy node (as SPIRE decides it)', () => {
  const envoy = (major: number, minor: number, metadata?: Record<string, unknown>) => ({
    id: 'n',
    user_agent_build_version: { version: { major_number: major, minor_number: minor } },
    ...(metadata === undefined ? {} : { metadata: toStruct(metadata) }),
  });
  const optOut = (value: unknown) => envoy(1, 31, { disable_spiffe_cert_validation: value });
  const cases: Array<[string, object | undefined, 'spiffe' | 'trusted_ca']> = [
    // SPIRE's supportsSPIFFEAuthExtension: "Support as default"; only a reported Envoy older than 1.18 opts out.
    ['no node', undefined, 'spiffe'],
    ['no build version (not an Envoy, or one that does not say)', { id: 'n' }, 'spiffe'],
    ['a build version without its version', { id: 'n', user_agent_build_version: {} }, 'spiffe'],
    ['Envoy 1.17', envoy(1, 17), 'trusted_ca'],
    ['Envoy 1.18', envoy(1, 18), 'spiffe'],
    ['Envoy 1.31', envoy(1, 31), 'spiffe'],
    ['Envoy 2.0', envoy(2, 0), 'spiffe'],
    ['bool true', optOut(true), 'trusted_ca'],
    ['bool false', optOut(false), 'spiffe'],
    ['string "true"', optOut('true'), 'trusted_ca'],
    ['string "True"', optOut('True'), 'trusted_ca'],
    ['string "1"', optOut('1'), 'trusted_ca'],
    ['string "yes" (not a Go bool: ignored)', optOut('yes'), 'spiffe'],
    ['number 1 (ignored)', optOut(1), 'spiffe'],
    ['metadata false on Envoy 1.17', envoy(1, 17, { disable_spiffe_cert_validation: false }), 'trusted_ca'],
  ];
  for (const [label, node, expected] of cases) {
    it(`${label} → ${expected}`, () => {
      assert.equal(validationChoiceFor(node as never, options).mode, expected);
    });
  }

  it('the global option disables the validator unless the node metadata says otherwise, either way', () => {
    const disabled = resolveSdsOptions({ disableSpiffeCertValidation: true });
    assert.equal(validationChoiceFor(envoy(1, 31) as never, disabled).mode, 'trusted_ca');
    assert.equal(validationChoiceFor(optOut(false) as never, disabled).mode, 'spiffe');
    assert.equal(validationChoiceFor(optOut('F') as never, disabled).mode, 'spiffe');
    assert.equal(validationChoiceFor(optOut('yes') as never, disabled).mode, 'trusted_ca', 'an unreadable value leaves the global option');
    assert.equal(validationChoiceFor(undefined, disabled).mode, 'trusted_ca', 'no node: nothing overrides the option');
    assert.equal(validationChoiceFor({ id: 'n' }, disabled).mode, 'trusted_ca', 'no build version: the option still applies');
  });

  it('ALL is refused (failed_precondition) without the SPIFFE validator, with why and what to change in the message', () => {
    const refusal = (node: object | undefined, names: string[], opts = options): string => {
      try {
        checkAllBundlesName(names, validationChoiceFor(node as never, opts), opts);
      } catch (err) {
        assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
        return err.message;
      }
      return 'served';
    };
    assert.equal(refusal(envoy(1, 31), ['ALL', 'ROOTCA']), 'served');
    assert.equal(refusal(undefined, ['ALL']), 'served', 'no node: the SPIFFE validator, as from SPIRE');
    assert.equal(refusal({ id: 'n' }, ['ALL']), 'served', 'no build version: the SPIFFE validator, as from SPIRE');
    assert.equal(refusal(optOut(true), ['ROOTCA', 'default', 'spiffe://zeta.example']), 'served', 'other names are not affected');
    const cases: Array<[string, object | undefined, RegExp, RegExp, ResolvedSdsOptions?]> = [
      ['metadata', optOut('true'), /node metadata sets disable_spiffe_cert_validation to "true"/, /remove disable_spiffe_cert_validation from the node metadata or set it to false/],
      ['old Envoy', envoy(1, 17), /reports Envoy 1\.17, which has no SPIFFE certificate validator/, /upgrade Envoy to 1\.18 or later/],
      ['no node, agent option', undefined, /agent option sds\.disable_spiffe_cert_validation is set/, /unset that option/, resolveSdsOptions({ disableSpiffeCertValidation: true })],
      ['agent option', envoy(1, 31), /agent option sds\.disable_spiffe_cert_validation is set/, /disable_spiffe_cert_validation: false in this Envoy's node metadata/, resolveSdsOptions({ disableSpiffeCertValidation: true })],
    ];
    for (const [label, node, why, fix, opts] of cases) {
      const message = refusal(node, ['ROOTCA', 'ALL'], opts);
      assert.match(message, /^"ALL" \(every trust domain's roots in one validation context\) is served only with Envoy's SPIFFE certificate validator/, label);
      assert.match(message, why, label);
      assert.match(message, fix, label);
      assert.match(message, /a federated root could vouch for any SPIFFE ID/, label);
      assert.match(message, /ask for "ROOTCA" instead$/, label);
    }
    const both = refusal(envoy(1, 17, { disable_spiffe_cert_validation: true }), ['ALL']);
    assert.match(both, /sets disable_spiffe_cert_validation to true and the node reports Envoy 1\.17/, 'every reason is named');
    assert.match(both, /set it to false; upgrade Envoy/);
    const custom = resolveSdsOptions({ defaultAllBundlesName: 'every-ca', disableSpiffeCertValidation: true });
    assert.equal(refusal(envoy(1, 31), ['ALL'], custom), 'served', 'only the configured all-bundles alias is refused');
    assert.match(refusal(envoy(1, 31), ['every-ca'], custom), /^"every-ca" /);
  });
});
