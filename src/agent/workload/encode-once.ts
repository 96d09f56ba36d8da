import type { ServiceDefinition } from '@grpc/grpc-js';
import { serializeEachObjectOnce, withResponseSerializers } from '../../common/grpc/service.js';

/**
 * Response serializers that encode each response object once. The identity streams of many callers with the same
 * entitlements are handed the very same response object (x509SvidResponse shares them), so the protobuf encoding of
 * a message — a few KB of chains, keys and bundles — is done once per content change instead of once per stream
 * (WL-API §4.3: every stream open sends a full-state message). grpc-js copies the returned bytes into its own frame
 * buffer, so sharing them is safe; entries go when the response object is no longer referenced.
 */
export function encodeOnce(definition: ServiceDefinition, methods: readonly string[]): ServiceDefinition {
  return withResponseSerializers(definition, methods, serializeEachObjectOnce);
}
