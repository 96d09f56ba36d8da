import type { IdentitySnapshot } from '../cache/workload-cache.js';
import type { DiscoveryRequest } from './messages.js';
import {
  checkAllBundlesName,
  INITIAL_VALIDATION_CHOICE,
  nodeLabel,
  validationChoiceFor,
  type ValidationChoice,
} from './node-validation-mode.js';
import { checkResourceNames, isWildcardName } from './resource-names.js';
import { checkTypeUrl } from './secret-builder.js';
import { servedState } from './served-state.js';
import { NoncedResponse } from './nonced-response.js';
import { SecretStream } from './secret-stream.js';
import { awaitsSigning } from './signing-wait.js';
import { nameChars } from './subscription-budget.js';
import { NO_NAMES } from './waiting-names.js';

/**
 * One StreamSecrets (state-of-the-world) stream (SPEC-NOTES §10). Choices where the sources leave room:
 * - Every response carries ALL subscribed secrets that currently resolve (not only the changed ones), as SPIRE does;
 *   `version_info` is a digest of that full state, `nonce` a counter unique within the stream.
 * - A response is sent only when a subscribed secret's version differs from what was last sent, a secret last sent
 *   stopped resolving (a withdrawal: the response leaves it out, empty if nothing else resolves), a name was added
 *   to the subscription, including a name a wildcard had already delivered, or a new stream resumed with a version
 *   that is no longer the current one; an ACK, a NACK, a stale request and a change to secrets nobody here watches
 *   send nothing.
 * - NACK: logged and counted; what was sent counts as delivered, so the same content is never resent; a
 *   `resource_names` change carried by the NACK is honoured.
 * - Names that do not resolve (unknown, or an identity the caller is not entitled to) keep the stream open and are
 *   remembered: if the caller becomes entitled later (new entry, SVID issued), the secret is delivered then. Nothing
 *   about them is ever sent. The first response waits (a while) for a subscribed SVID of the caller's that is being
 *   signed right now, so it does not go out without it (signing-wait.ts); it never waits for any other name.
 * - The name `*`, or an empty `resource_names` while no request on the stream has named anything (the legacy
 *   wildcard), is a wildcard: every name that resolves for the caller (see entitledResourceNames), following
 *   entitlement changes. Once a request has named something, `*` included, an empty list means "no longer interested
 *   in anything" (xds_protocol).
 * - The node, and with it the validation-context form, comes from the first request and is kept. A stream with
 *   `trusted_ca` that asks for `ALL`, first or later, ends with FAILED_PRECONDITION (checkAllBundlesName); its
 *   wildcard does not include `ALL`.
 */
export class SotwStream extends SecretStream<DiscoveryRequest, NoncedResponse> {
  /** The validation-context form (and why) from the first request's node; kept for the stream's life. */
  private validation: ValidationChoice = INITIAL_VALIDATION_CHOICE;
  private wildcard = false;
  /** Whether any request has named a resource, `*` included: from then on an empty list unsubscribes everything. */
  private namedAnything = false;
  private names = new Set<string>();
  /**
   * name → version of every secret in the last response (whether it was ACKed or NACKed; RESEND for one named since,
   * which the client still holds). Usually the served state's own map, shared with the other streams in that state,
   * so it is replaced, never changed in place.
   */
  private sent: ReadonlyMap<string, string> = new Map();
  /** The resource_names of the last request that was applied (already checked). */
  private requested: readonly string[] | undefined;
  private nonceCounter = 0;
  private lastNonce = '';
  /** The response last NACKed: a client repeating that NACK costs no more log lines. */
  private nackedNonce = '';
  /** servedState's key for this stream's subscription; undefined after a subscription change. */
  private stateKey: string | undefined;
  /** The version a reconnecting client resumed with (its first request's version_info), until the first response. */
  private resumedFrom: string | undefined;
  /** The subscribed names that resolved to nothing in the last look at the state (ServedState.unresolved). */
  private unresolved: readonly string[] = NO_NAMES;

  protected handleRequest(request: DiscoveryRequest): boolean {
    checkTypeUrl(request.type_url);
    const requested = request.resource_names ?? [];
    const first = !this.started;
    if (first) {
      this.resumedFrom = request.version_info || undefined;
      this.validation = validationChoiceFor(request.node, this.ctx.options);
      const node = nodeLabel(request.node);
      this.ctx.waiting.setNode(node);
      this.ctx.log.debug({ ...node, mode: this.validation.mode, names: requested.length }, 'SDS StreamSecrets opened');
    } else {
      const nonce = request.response_nonce ?? '';
      // Only a request answering the latest response counts; an older one was overtaken by what we sent since.
      if (nonce !== this.lastNonce) {
        this.ctx.stats.staleRequests++;
        return false;
      }
      if (request.error_detail !== undefined) {
        if (nonce !== this.nackedNonce) this.logNack(request.error_detail, nonce, { versionInfo: request.version_info ?? '' });
        this.nackedNonce = nonce;
      } else if (nonce !== '') {
        this.ctx.stats.acks++;
      }
    }
    // An ACK repeats the subscription it answers: nothing to check or change, a thousand times per rotation.
    if (!first && sameList(requested, this.requested)) return false;
    checkResourceNames(requested);
    checkAllBundlesName(requested, this.validation, this.ctx.options);
    // The stream keeps these names for its life: counted against its uid before it takes them.
    this.ctx.names?.resize(nameChars(requested));
    this.requested = requested;
    return this.subscribe(requested) || first;
  }

  /** Returns whether the subscription changed. */
  private subscribe(requested: readonly string[]): boolean {
    const before = { wildcard: this.wildcard, names: this.names };
    this.stateKey = undefined;
    const explicit = requested.filter((n) => !isWildcardName(n));
    // The legacy wildcard: an empty list means `*` only while no request on the stream has named anything.
    this.wildcard = requested.some(isWildcardName) || (requested.length === 0 && !this.namedAnything);
    if (requested.length > 0) this.namedAnything = true;
    this.names = new Set(explicit);
    // A dropped name is forgotten, so subscribing to it again sends it again (SPEC-NOTES §10).
    if (!this.wildcard) this.sent = onlyNames(this.sent, (name) => this.names.has(name));
    // A name named now and not before is resent even if a wildcard delivered it: xds_protocol says the server must
    // resend newly requested resources "even if it previously sent those resources without having been asked".
    // Still held, not forgotten: if it stopped resolving before the next response, the client must hear it is gone.
    this.sent = toResend(this.sent, (name) => this.names.has(name) && !before.names.has(name));
    return before.wildcard !== this.wildcard || before.names.size !== this.names.size || [...this.names].some((n) => !before.names.has(n));
  }

  protected awaitsSigning(snapshot: IdentitySnapshot): boolean {
    return awaitsSigning(snapshot, this.names, this.wildcard, this.ctx.options);
  }

  protected unresolvedNames(): readonly string[] {
    return this.unresolved;
  }

  protected subscribes(name: string): boolean {
    return this.names.has(name);
  }

  protected nextResponse(snapshot: IdentitySnapshot): NoncedResponse | undefined {
    // JSON, not a separator: a resource name may contain any character, and two subscriptions must never share a key.
    this.stateKey ??= JSON.stringify([this.validation.mode, this.wildcard, ...this.names]);
    const state = servedState(snapshot, this.stateKey, this.names, this.wildcard, this.validation.mode, this.ctx.options);
    this.unresolved = state.unresolved;
    let changed = false;
    for (const [name, version] of state.versions) if (this.sent.get(name) !== version) changed = true;
    // A secret the client holds that stopped resolving (its entry deleted, its selectors or SPIFFE ID changed away,
    // a federation ended) is a change too: the full state without it, or the client's last response goes on
    // presenting a withdrawn SVID and key as current. It is sent again if it comes back.
    for (const name of this.sent.keys()) if (!state.versions.has(name)) changed = true;
    // A client that resumes with a version other than the current one holds secrets withdrawn while it was away; when
    // nothing it asks for resolves any more, only an empty response tells it.
    if (!changed && this.resumedFrom !== undefined && this.resumedFrom !== state.body().version_info) changed = true;
    this.resumedFrom = undefined;
    if (!changed) return undefined;

    this.sent = state.versions;
    this.lastNonce = String(++this.nonceCounter);
    return new NoncedResponse(state.body(), this.lastNonce);
  }
}

function sameList(a: readonly string[], b: readonly string[] | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** No secret's version is empty: a name `sent` maps to it is one the client holds and must be sent again. */
const RESEND = '';

/** `map` with the names `pick` chooses set to RESEND: the same object when it chooses none. */
function toResend(map: ReadonlyMap<string, string>, pick: (name: string) => boolean): ReadonlyMap<string, string> {
  for (const name of map.keys()) if (pick(name)) return new Map([...map].map(([n, v]) => [n, pick(n) ? RESEND : v]));
  return map;
}

/** `map` without the names `keep` rejects: the same object when it keeps them all. */
function onlyNames(map: ReadonlyMap<string, string>, keep: (name: string) => boolean): ReadonlyMap<string, string> {
  for (const name of map.keys()) if (!keep(name)) return new Map([...map].filter(([n]) => keep(n)));
  return map;
}
