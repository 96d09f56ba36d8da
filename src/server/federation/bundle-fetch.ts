import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { systemClock, type Clock } from '../../common/clock.js';
import { failedPrecondition, unavailable } from '../../common/errors.js';
import { federatedBundleFromSpiffeJson, type FederatedBundleDocument } from '../../common/spiffe/bundle.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import { certificatesToPem } from '../../common/x509/pem.js';
import { endpointTrustDomain, type FederationRelationship } from './relationship.js';
import { proxyFor, type EgressProxy } from './egress-proxy.js';
import { ProxyTunnelAgent } from './proxy-tunnel.js';

/** A bundle document is a few KB per key; this bounds what a misbehaving endpoint can make the server hold. */
const MAX_BODY_BYTES = 1 << 20;
const TIMEOUT_MS = 10_000;

/**
 * Fetches a federated trust domain's bundle from its endpoint (Trust Domain and Bundle §5) and reads it as a
 * partner's (federatedBundleFromSpiffeJson: keys meshid cannot use are left out and listed in `ignored`; what is left
 * may be nothing). https_spiffe trusts only `anchors` (the X.509 roots stored for
 * the endpoint SPIFFE ID's trust domain, endpointTrustDomain) and requires the endpoint's SVID to carry exactly the relationship's endpoint SPIFFE ID as its
 * URI SAN and to be an X509-SVID leaf (checkEndpointId); no host name is checked. https_web is ordinary HTTPS: the process's web PKI roots (NODE_EXTRA_CA_CERTS
 * adds some) and the URL's host name. Through `egress` (HTTPS_PROXY) unless NO_PROXY or loopback exempts the host: TLS runs
 * inside the proxy's CONNECT tunnel, authenticated as above. Throws MeshidError: unavailable for anything the endpoint or the network did,
 * including a document that is not a SPIFFE bundle at all; failed_precondition when https_spiffe has no root to
 * trust (no bundle stored yet, or a stored one without X.509 roots, as a partner's revocation leaves it).
 * `ownAnchors`: `anchors` are this server's own roots (an endpoint of its own trust domain), which no `bundle set`
 * seeds, so a chain they do not anchor is not told to be re-seeded.
 * `clock` times the whole fetch (timeoutMs, redirects included); the silence of one answer is on the system's timers.
 */
export function fetchFederatedBundle(
  rel: FederationRelationship, anchors: readonly Buffer[] | undefined, timeoutMs = TIMEOUT_MS, egress?: EgressProxy, ownAnchors = false,
  clock: Clock = systemClock,
): Promise<FederatedBundleDocument> {
  const where = `bundle endpoint ${rel.bundleEndpointUrl} of ${rel.trustDomain}`;
  let tls: https.RequestOptions = {};
  // Node trusts its own copy of Mozilla's roots, not the system's store that SPIRE (Go) reads, so an operator's CA
  // installed there is not trusted unless told.
  let unanchored =
    "the endpoint's certificate does not chain to a CA this server trusts for https_web (Node's web PKI roots): add a CA " +
    'of your own with NODE_EXTRA_CA_CERTS=ca.pem, or trust the system store with NODE_OPTIONS=--use-openssl-ca; if the ' +
    'endpoint presents an X509-SVID, its profile is https_spiffe; or it leaves out the intermediates its chain needs';
  if (rel.profile === 'https_spiffe') {
    const anchorDomain = endpointTrustDomain(rel);
    const reseed = `"meshid-server bundle set --trust-domain ${anchorDomain}"`;
    if (anchors === undefined) {
      return Promise.reject(failedPrecondition(`no bundle of ${anchorDomain} is stored to authenticate the ${where}: seed it once with ${reseed}`));
    }
    if (anchors.length === 0) {
      return Promise.reject(
        failedPrecondition(
          `the stored bundle of ${anchorDomain} has no X.509 roots (its endpoint revoked them), so nothing authenticates the ${where}: once ${anchorDomain} has new roots, seed them with ${reseed}`,
        ),
      );
    }
    // allowPartialTrustChain: every certificate of a bundle is a trust anchor, as go-spiffe and SPIRE (Go's verifier)
    // take it, self-signed or not (X509-SVID §6.1 asks for self-signed roots with a SHOULD only); OpenSSL would otherwise
    // insist on reaching a self-signed one, and a partner anchored on its PKI's intermediate could never be fetched.
    tls = {
      ca: certificatesToPem([...anchors]), allowPartialTrustChain: true,
      checkServerIdentity: (_host, cert) => checkEndpointId(cert, rel.endpointSpiffeId!),
    };
    // Federation §5.2.2.4: the latest stored bundle authenticates the endpoint. A partner that replaced its roots while
    // this server was not polling (down, or given an old seed) presents a chain nothing stored vouches for, which only
    // an operator can remedy; OpenSSL's own words ("unable to get local issuer certificate") do not say so.
    const roots = anchors.length === 1 ? 'the X.509 root' : `the ${anchors.length} X.509 roots`;
    unanchored = ownAnchors
      ? `the endpoint's certificate does not chain to this server's own X.509 roots (${anchorDomain} is its trust domain, so its CA's ` +
        `bundle authenticates the endpoint): the endpoint must present an SVID of this server's CA (${rel.endpointSpiffeId!}); or it leaves out the intermediates its chain needs`
      : `the endpoint's certificate does not chain to ${roots} stored for ${anchorDomain}: if ${anchorDomain} replaced its roots ` +
        `since they were stored, seed its current bundle with ${reseed}; or the endpoint leaves out the intermediates its chain needs`;
  }
  return get(rel, rel.bundleEndpointUrl, { tls, unanchored, egress }, where, { timeoutMs, endsAt: clock.now() + timeoutMs, clock }, MAX_REDIRECTS);
}

/**
 * OpenSSL's verification results (as Node's error codes) for a chain that does not end at a trusted root, or whose
 * signatures do not verify against it. An expired or not yet valid certificate is not among them: that is for the
 * endpoint's operator to fix, not a sign of roots missing here.
 */
const UNANCHORED_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_SIGNATURE_FAILURE',
]);

/** How to reach the endpoint: the TLS options, what to say when its chain does not verify, and the proxy, if any. */
interface Trust {
  readonly tls: https.RequestOptions;
  readonly unanchored: string;
  readonly egress: EgressProxy | undefined;
}

/**
 * Redirects followed (Bundle §5.2.1.4, §5.2.2.4: clients SHOULD follow them to a valid bundle endpoint URL), each to https
 * without userinfo and authenticated anew.
 */
const MAX_REDIRECTS = 3;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * One fetch's time, redirects included: a chain of slow hops would otherwise take MAX_REDIRECTS + 1 timeouts, and hold
 * its poll that long.
 */
interface Deadline {
  readonly timeoutMs: number;
  readonly endsAt: number;
  readonly clock: Clock;
}

function get(
  rel: FederationRelationship, url: string, trust: Trust, where: string, deadline: Deadline, redirectsLeft: number,
): Promise<FederatedBundleDocument> {
  return new Promise((resolve, reject) => {
    const fail = (reason: string, cause?: unknown): void => reject(unavailable(`${where}: ${reason}`, cause));
    const late = `no complete answer within ${deadline.timeoutMs / 1000} s`;
    const leftMs = deadline.endsAt - deadline.clock.now();
    if (leftMs <= 0) {
      fail(`${late}, redirects included`);
      return;
    }
    const target = new URL(url);
    // Each hop of a redirect is judged anew: NO_PROXY may exempt one host and not another.
    const proxy = proxyFor(trust.egress, target.hostname, target.port === '' ? 443 : Number(target.port));
    if (proxy instanceof Error) {
      fail(proxy.message);
      return;
    }
    // Ended with the request, however it ends: a CONNECT still unanswered then is for nothing.
    const ended = new AbortController();
    const agent = proxy === undefined ? false : new ProxyTunnelAgent(proxy, deadline.timeoutMs, ended.signal);
    const req = https.get(url, { ...trust.tls, agent, timeout: deadline.timeoutMs }, (res) => {
      const location = res.headers.location;
      if (res.statusCode !== undefined && REDIRECTS.has(res.statusCode) && location !== undefined) {
        res.resume();
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          fail(`answered HTTP ${res.statusCode} to "${location}", which is not a URL`);
          return;
        }
        if (next.protocol !== 'https:') fail(`answered HTTP ${res.statusCode} to ${next.href}, which is not https`);
        // §5.2.1.1, §5.2.2.1: a bundle endpoint URL carries no userinfo; following one would send it as Basic auth.
        // The URL is not quoted: what it carries may be a secret.
        else if (next.username !== '' || next.password !== '') fail(`answered HTTP ${res.statusCode} to a URL with userinfo, which no bundle endpoint URL may carry`);
        else if (redirectsLeft === 0) fail(`redirected more than ${MAX_REDIRECTS} times`);
        // The same trust (https_spiffe's anchors and endpoint ID, or the web PKI and the new host name) at the new URL.
        else get(rel, next.href, trust, where, deadline, redirectsLeft - 1).then(resolve, reject);
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        fail(`answered HTTP ${res.statusCode}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          req.destroy();
          fail(`the document is larger than ${MAX_BODY_BYTES} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        try {
          resolve(federatedBundleFromSpiffeJson(rel.trustDomain, Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          fail(`served a document that is not a SPIFFE bundle (${(err as Error).message})`, err);
        }
      });
      // Node's word for a body cut short (ECONNRESET "aborted") says nothing of where.
      res.on('error', (err) => fail(err.message === 'aborted' ? 'closed the connection before the document was complete' : err.message, err));
    });
    // `timeout` above only bounds silence; this bounds the whole fetch, redirects included, so a trickling endpoint
    // cannot hold a poll.
    const timer = deadline.clock.setTimer(() => {
      const err = new Error(redirectsLeft === MAX_REDIRECTS ? late : `${late}, redirects included`);
      // First the tunnel: a request still waiting for its socket (a CONNECT the proxy has not answered) is not ended
      // by destroy() until that socket comes, which a proxy that trickles its answer puts off as long as it likes.
      ended.abort(err);
      req.destroy(err);
    }, leftMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${deadline.timeoutMs / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      fail(UNANCHORED_CODES.has(err.code ?? '') ? `${trust.unanchored} (${err.message})` : err.message, err);
    });
    req.on('close', () => {
      timer.cancel();
      ended.abort();
    });
  });
}

/**
 * https_spiffe: the endpoint's leaf names exactly the expected SPIFFE ID, and no other URI, and is an X509-SVID leaf:
 * not a CA, neither keyCertSign nor cRLSign (X509-SVID §5.2), keyUsage present with digitalSignature (§4.3). OpenSSL's
 * own purpose check passes a CA certificate, or one with only keyAgreement, as a TLS server's.
 */
function checkEndpointId(cert: PeerCertificate, expected: string): Error | undefined {
  const uris = (cert.subjectaltname ?? '')
    .split(', ')
    .filter((san) => san.startsWith('URI:'))
    .map((san) => san.slice('URI:'.length));
  if (uris.length !== 1 || uris[0] !== expected) {
    return new Error(`the endpoint presented ${uris.length === 0 ? 'no SPIFFE ID' : uris.join(', ')}, not ${expected}`);
  }
  let leaf: ParsedCertificate;
  try {
    leaf = parseCertificate(cert.raw);
  } catch (err) {
    return new Error(`the endpoint's certificate for ${expected} cannot be read (${(err as Error).message})`);
  }
  const what = `the endpoint's certificate for ${expected}`;
  if (leaf.isCa) return new Error(`${what} is a CA certificate (basicConstraints cA is true), not an X509-SVID leaf`);
  if (leaf.keyUsage === undefined) return new Error(`${what} has no keyUsage extension; an X509-SVID leaf must set digitalSignature`);
  const signing = leaf.keyUsage.filter((usage) => usage === 'keyCertSign' || usage === 'cRLSign');
  if (signing.length > 0) return new Error(`${what} sets keyUsage ${signing.join(' and ')}, which an X509-SVID leaf must not`);
  if (!leaf.keyUsage.includes('digitalSignature')) return new Error(`${what} lacks keyUsage digitalSignature, which an X509-SVID leaf must set`);
  return undefined;
}
