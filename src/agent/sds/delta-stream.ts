import { invalidArgument } from '../../common/errors.js';
import { MAX_SDS_RESOURCE_NAMES } from '../../common/grpc/repeated-limits.js';
import type { IdentitySnapshot } from '../cache/workload-cache.js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DeltaResource } from './messages.js';
import {
  checkAllBundlesName,
  INITIAL_VALIDATION_CHOICE,
  nodeLabel,
  validationChoiceFor,
  type ValidationChoice,
} from './node-validation-mode.js';
import { checkResourceNames, entitledResourceNames, isWildcardName, resolveResourceName } from './resource-names.js';
import { checkTypeUrl, SECRET_TYPE_URL, stateVersion } from './secret-builder.js';
import { sharedResourceVersion, sharedSecret } from './secret-memo.js';
import { deltaResourceBytes, DELTA_RESPONSE_BYTES, removedNameBytes } from './response-size.js';
import { SecretStream } from './secret-stream.js';
import { awaitsSigning } from './signing-wait.js';
import { nameChars } from './subscription-budget.js';
import { NO_NAMES } from './waiting-names.js';

/**
 * The version of a name the client holds but must be sent again (it subscribed to it again): no resource has it, so
 * the name is resent if it resolves and removed if it does not.
 */
const RESEND = '';

/**
 * How many unanswered responses beyond the parts of the stream's largest split keep their nonce: a NACK of one is
 * logged and counted, an answer to an older one is stale. Pushes are written one at a time, each computed from the
 * state when the last write completed, so 16 is far more than a client that answers lags behind. The parts of a
 * split come on top: a part ends when the next secret does not fit, so two parts in a row carry more than
 * DELTA_RESPONSE_BYTES, and the nonces a stream keeps for a client that never answers are bounded by what its
 * largest answer weighed (about two a MiB, plus 16), never by how long the stream lasts.
 */
const UNANSWERED_PUSHES = 16;

/**
 * One DeltaSecrets (incremental) stream (SPEC-NOTES §11):
 * - Per-resource versions are content-derived (resourceVersion, shared via secret-memo), equal across streams and reconnects.
 * - `initial_resource_versions` (first request only) seeds what the client holds: a listed name whose version still
 *   matches is not resent, a stale one is.
 * - A name in `resource_names_subscribe` is (re)sent even if the client holds it, except on the first request when
 *   it is declared in `initial_resource_versions` with the current version.
 * - A name the client holds (sent on this stream, or declared in `initial_resource_versions`) that stops resolving —
 *   entry removed, federation ended — goes once in `removed_resources`; if it resolves later it is sent again.
 * - A subscribed name the client does not hold and that does not resolve (SVID not issued yet, federated bundle not
 *   there yet, not entitled, unknown) is not answered, as in SotW, and is sent once it resolves. Envoy's SdsApi
 *   ignores the removal of a name it never got but marks its init target ready, so a listener would finish warming
 *   without its secret; unanswered, Envoy waits (initial_fetch_timeout). The first response waits (a while) for a
 *   subscribed SVID of the caller's that is being signed right now, as on StreamSecrets (signing-wait.ts).
 * - Unsubscribing sends nothing; unsubscribing an unknown name is ignored.
 * - An empty subscribe list on the first request (the legacy wildcard, whatever it unsubscribes) or subscribing `*`
 *   is a wildcard: every name that resolves for the caller; a name leaving that set is removed. Unsubscribing `*`
 *   ends it, and it never comes back but by subscribing `*`.
 * - ACK/NACK are per nonce; a NACK is logged and counted and nothing is resent until something changes. Every part
 *   of a split keeps its nonce until answered (UNANSWERED_PUSHES).
 *   Subscription changes are honoured whatever nonce the request carries.
 * - A name never appears twice in a response, nor in both `resources` and `removed_resources`.
 * - What is due goes in responses of at most DELTA_RESPONSE_BYTES (but one secret larger than that alone), written one
 *   after another without waiting for ACKs, so no client refuses one as larger than the 4 MiB it takes by default.
 * - The node of the first request chooses the validation-context form for the stream's life. With `trusted_ca`,
 *   subscribing `ALL` ends the stream with FAILED_PRECONDITION (checkAllBundlesName), and a wildcard never holds it.
 */
export class DeltaStream extends SecretStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  /** The validation-context form (and why) from the first request's node; kept for the stream's life. */
  private validation: ValidationChoice = INITIAL_VALIDATION_CHOICE;
  private wildcard = false;
  private subscribed = new Set<string>();
  /** What the client holds: name → version (RESEND for a name it subscribed to again). */
  private known = new Map<string, string>();
  private nonceCounter = 0;
  /** Nonces sent and not yet answered, oldest first; at most UNANSWERED_PUSHES + largestSplit of them. */
  private outstanding = new Set<string>();
  /** The parts of the split being sent: the responses written back to back since the last one that left nothing due. */
  private splitParts = 0;
  /** The most parts one split of this stream had (1 until a response is cut at DELTA_RESPONSE_BYTES). */
  private largestSplit = 1;
  /** The subscribed names that resolved to nothing in the last look at the state. */
  private unresolved: readonly string[] = NO_NAMES;

  protected handleRequest(request: DeltaDiscoveryRequest): boolean {
    checkTypeUrl(request.type_url);
    const subscribe = request.resource_names_subscribe ?? [];
    const unsubscribe = request.resource_names_unsubscribe ?? [];
    const options = this.ctx.options;
    checkResourceNames(subscribe, 'resource_names_subscribe');
    checkResourceNames(unsubscribe, 'resource_names_unsubscribe');
    const first = !this.started;
    const initial = first ? Object.entries(request.initial_resource_versions ?? {}) : [];
    checkResourceNames(initial.map(([name]) => name), 'initial_resource_versions');

    if (first) {
      this.validation = validationChoiceFor(request.node, options);
      // The legacy wildcard: nothing subscribed by name. Unsubscribing, even `*`, is applied after it, below.
      this.wildcard = subscribe.length === 0;
      // No resource of ours has an empty version: a name declared with one is not held from this agent.
      for (const [name, version] of initial) if (version !== '') this.known.set(name, version);
      const node = nodeLabel(request.node);
      this.ctx.waiting.setNode(node);
      this.ctx.log.debug({ ...node, mode: this.validation.mode, names: subscribe.length }, 'SDS DeltaSecrets opened');
    } else {
      this.acknowledge(request);
    }
    checkAllBundlesName(subscribe, this.validation, options);

    const declared = new Set(initial.map(([name]) => name));
    for (const name of subscribe) {
      if (isWildcardName(name)) {
        this.wildcard = true;
        continue;
      }
      this.subscribed.add(name);
      // Every subscribed name is (re)sent; only a version declared on the first request can spare it. Still held
      // until then, so a name that stopped resolving meanwhile is removed rather than left with the client.
      if (!declared.has(name) && this.known.has(name)) this.known.set(name, RESEND);
    }
    for (const name of unsubscribe) {
      if (isWildcardName(name)) {
        this.wildcard = false;
        continue;
      }
      this.subscribed.delete(name);
      // Under a wildcard the name is still wanted: forgetting it makes it resent, as the client dropped it.
      this.known.delete(name);
    }
    if (this.subscribed.size > MAX_SDS_RESOURCE_NAMES) {
      throw invalidArgument(`the stream subscribes ${this.subscribed.size} names; at most ${MAX_SDS_RESOURCE_NAMES} are accepted`);
    }
    // The stream keeps its subscription for its life: counted against its uid (a refusal ends the stream).
    if (subscribe.length > 0 || unsubscribe.length > 0) this.ctx.names?.resize(nameChars(this.subscribed));
    return first || subscribe.length > 0 || unsubscribe.length > 0;
  }

  private acknowledge(request: DeltaDiscoveryRequest): void {
    const nonce = request.response_nonce ?? '';
    if (nonce === '') return;
    if (!this.outstanding.delete(nonce)) {
      this.ctx.stats.staleRequests++;
      return;
    }
    if (request.error_detail !== undefined) this.logNack(request.error_detail, nonce, {});
    else this.ctx.stats.acks++;
  }

  protected awaitsSigning(snapshot: IdentitySnapshot): boolean {
    return awaitsSigning(snapshot, this.subscribed, this.wildcard, this.ctx.options);
  }

  protected unresolvedNames(): readonly string[] {
    return this.unresolved;
  }

  protected subscribes(name: string): boolean {
    return this.subscribed.has(name);
  }

  /** Declared in initial_resource_versions or sent, and (nothing to send) at the current version. */
  protected override holdsSecrets(): boolean {
    return this.known.size > 0;
  }

  protected nextResponse(snapshot: IdentitySnapshot): DeltaDiscoveryResponse | undefined {
    const options = this.ctx.options;
    const mode = this.validation.mode;
    const watched = new Set(this.subscribed);
    if (this.wildcard) {
      for (const name of entitledResourceNames(snapshot, options, mode)) watched.add(name);
      // Names the client holds through the wildcard: if they no longer resolve, they must be removed.
      for (const name of this.known.keys()) watched.add(name);
    }
    // Versions declared for names nobody watches mean nothing.
    for (const name of this.known.keys()) if (!watched.has(name)) this.known.delete(name);

    const resources: DeltaResource[] = [];
    const removed: string[] = [];
    let unresolved: string[] | undefined;
    // What goes in this response, in bytes: past DELTA_RESPONSE_BYTES the rest waits for the next one (left as the
    // client holds it, so that response finds it due again), sent as soon as this one is written.
    let bytes = 0;
    let deferred = false;
    const fits = (more: number): boolean => {
      if (deferred || (bytes > 0 && bytes + more > DELTA_RESPONSE_BYTES)) return !(deferred = true);
      bytes += more;
      return true;
    };
    for (const name of watched) {
      const resource = resolveResourceName(snapshot, name, options, mode);
      const held = this.known.get(name);
      if (resource === undefined && this.subscribed.has(name)) (unresolved ??= []).push(name);
      if (resource !== undefined) {
        const version = sharedResourceVersion(name, resource, mode);
        if (held === version) continue;
        // Once one is left for the next response, so is the rest: no secret is built for nothing.
        const secret = deferred ? undefined : sharedSecret(name, resource, mode);
        if (secret === undefined || !fits(deltaResourceBytes(name, version, secret))) continue;
        resources.push({ name, version, resource: secret });
        this.known.set(name, version);
      } else if (held !== undefined) {
        // Only a name the client holds: see the class comment for why a never-delivered name is not removed.
        if (!fits(removedNameBytes(name))) continue;
        removed.push(name);
        this.known.delete(name);
      }
    }
    this.unresolved = unresolved ?? NO_NAMES;
    // A response after one that left something due is the next part of that split, whatever else it carries.
    const part = this.splitParts + 1;
    this.splitParts = deferred ? part : 0;
    if (resources.length === 0 && removed.length === 0) return undefined;
    if (deferred) this.continueAfterWrite();
    if (part > this.largestSplit) this.largestSplit = part;

    const nonce = String(++this.nonceCounter);
    this.outstanding.add(nonce);
    // A client that never answers must not grow this set, so the oldest unanswered nonces are dropped; but not before
    // every part of a split can be answered, with room for pushes after it: the parts are written without waiting
    // for ACKs, and a NACK of the first part of a 40-part split arrives after the 40th is sent.
    while (this.outstanding.size > UNANSWERED_PUSHES + this.largestSplit) {
      this.outstanding.delete(this.outstanding.values().next().value as string);
    }
    // Every watched name was sent or removed above, or waits for the next response, which `known` holds as the client
    // does (a RESEND among them is one it holds): it is what the client holds.
    return { system_version_info: stateVersion(this.known), resources, type_url: SECRET_TYPE_URL, nonce, removed_resources: removed };
  }
}
