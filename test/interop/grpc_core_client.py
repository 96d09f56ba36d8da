"""A SPIFFE Workload API and Envoy SDS client on Google's gRPC C-core (grpcio), for meshid's interop tests.

C-core is the stack py-spiffe runs on and Envoy's google_grpc client: its HTTP/2, framing, metadata, deadlines and
cancellation share nothing with grpc-js. Messages are protoc's Python output for meshid's proto/ (their field numbers
are checked against the published definitions in test/unit/proto); certificates and keys are read with
`cryptography`. Usage: grpc_core_client.py <protoc-python-dir> <socket> <scenario> [spiffe-id]. Prints JSON, one
object per line; scenario sds-stream also reads a line on stdin before it waits for the push.
"""
import json
import queue
import sys

GENERATED, SOCKET, SCENARIO = sys.argv[1:4]
SPIFFE_ID = sys.argv[4] if len(sys.argv) > 4 else ''
sys.path.insert(0, GENERATED)

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402
from workload import workload_pb2  # noqa: E402

SECURITY_HEADER = (('workload.spiffe.io', 'true'),)
WORKLOAD = '/SpiffeWorkloadAPI/'
SDS = '/envoy.service.secret.v3.SecretDiscoveryService/'
SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret'
NODE = base_pb2.Node(id='interop-envoy', cluster='interop')

channel = grpc.insecure_channel('unix://' + SOCKET)


def emit(obj):
    print(json.dumps(obj), flush=True)


def method(kind, path, response):
    return getattr(channel, kind)(path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response.FromString)


def first(call):
    message = next(call)
    call.cancel()
    return message


def split_der(blob):
    """Concatenated DER certificates (X509SVID.x509_svid, .bundle) into single ones."""
    out = []
    while blob:
        length, header = blob[1], 2
        if length & 0x80:
            n = length & 0x7F
            length, header = int.from_bytes(blob[2:2 + n], 'big'), 2 + n
        out.append(blob[:header + length])
        blob = blob[header + length:]
    return out


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def describe_svid(svid):
    chain = split_der(svid.x509_svid)
    leaf = x509.load_der_x509_certificate(chain[0])
    key = serialization.load_der_private_key(svid.x509_svid_key, password=None)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        'spiffe_id': svid.spiffe_id,
        'uri_sans': sans.get_values_for_type(x509.UniformResourceIdentifier),
        'key_matches_leaf': spki(key.public_key()) == spki(leaf.public_key()),
        'chain': [c.hex() for c in chain],
        'bundle': [c.hex() for c in split_der(svid.bundle)],
        'hint': svid.hint,
    }


def secret_summary(secret):
    kind = secret.WhichOneof('type')
    out = {'name': secret.name, 'type': kind}
    if kind == 'tls_certificate':
        out['certificate_chain'] = secret.tls_certificate.certificate_chain.inline_bytes.decode()
        out['private_key'] = secret.tls_certificate.private_key.inline_bytes.decode()
    elif kind == 'validation_context':
        out['trusted_ca'] = secret.validation_context.trusted_ca.inline_bytes.decode()
    return out


def unpack(any_message):
    secret = secret_pb2.Secret()
    if not any_message.Unpack(secret):
        raise SystemExit('resource is %s, not a Secret' % any_message.type_url)
    return secret_summary(secret)


def x509_svid(metadata=SECURITY_HEADER):
    fetch = method('unary_stream', WORKLOAD + 'FetchX509SVID', workload_pb2.X509SVIDResponse)
    response = first(fetch(workload_pb2.X509SVIDRequest(), metadata=metadata, timeout=10))
    emit({'svids': [describe_svid(s) for s in response.svids], 'federated': sorted(response.federated_bundles)})


def with_authority(authority, scenario):
    """`scenario` on a channel sending `authority` as :authority, as other gRPC stacks do over a Unix socket."""
    global channel
    channel = grpc.insecure_channel('unix://' + SOCKET, options=(('grpc.default_authority', authority),))
    scenario()


def x509_bundles():
    fetch = method('unary_stream', WORKLOAD + 'FetchX509Bundles', workload_pb2.X509BundlesResponse)
    response = first(fetch(workload_pb2.X509BundlesRequest(), metadata=SECURITY_HEADER, timeout=10))
    emit({'bundles': {td: [c.hex() for c in split_der(der)] for td, der in response.bundles.items()}})


def jwt():
    fetch = method('unary_unary', WORKLOAD + 'FetchJWTSVID', workload_pb2.JWTSVIDResponse)
    validate = method('unary_unary', WORKLOAD + 'ValidateJWTSVID', workload_pb2.ValidateJWTSVIDResponse)
    bundles = method('unary_stream', WORKLOAD + 'FetchJWTBundles', workload_pb2.JWTBundlesResponse)
    svids = fetch(workload_pb2.JWTSVIDRequest(audience=['interop']), metadata=SECURITY_HEADER, timeout=10).svids
    token = svids[0].svid
    valid = validate(workload_pb2.ValidateJWTSVIDRequest(audience='interop', svid=token), metadata=SECURITY_HEADER, timeout=10)
    try:
        validate(workload_pb2.ValidateJWTSVIDRequest(audience='someone-else', svid=token), metadata=SECURITY_HEADER, timeout=10)
        wrong_audience = 'OK'
    except grpc.RpcError as err:
        wrong_audience = err.code().name
    jwks = first(bundles(workload_pb2.JWTBundlesRequest(), metadata=SECURITY_HEADER, timeout=10)).bundles
    emit({
        'token': token,
        'svid_spiffe_id': svids[0].spiffe_id,
        'validated_spiffe_id': valid.spiffe_id,
        'claims': json_format.MessageToDict(valid.claims),
        'wrong_audience': wrong_audience,
        'jwks': {td: json.loads(doc) for td, doc in jwks.items()},
    })


def sds_stream():
    """StreamSecrets as Envoy drives it: request, ACK with version and nonce, then wait for the next push."""
    requests = queue.Queue()
    stream = method('stream_stream', SDS + 'StreamSecrets', discovery_pb2.DiscoveryResponse)(iter(requests.get, None), timeout=30)
    names = [SPIFFE_ID, 'ROOTCA']
    requests.put(discovery_pb2.DiscoveryRequest(node=NODE, resource_names=names, type_url=SECRET_TYPE))
    for round_ in range(2):
        response = next(stream)
        requests.put(discovery_pb2.DiscoveryRequest(
            version_info=response.version_info, response_nonce=response.nonce, resource_names=names, type_url=SECRET_TYPE))
        emit({'round': round_, 'version_info': response.version_info, 'nonce': response.nonce, 'type_url': response.type_url,
              'secrets': [unpack(r) for r in response.resources]})
        if round_ == 0:
            sys.stdin.readline()  # the test changes the entry, then lets us wait for the push
    requests.put(None)
    stream.cancel()


def sds_delta():
    requests = queue.Queue()
    stream = method('stream_stream', SDS + 'DeltaSecrets', discovery_pb2.DeltaDiscoveryResponse)(iter(requests.get, None), timeout=30)
    requests.put(discovery_pb2.DeltaDiscoveryRequest(node=NODE, type_url=SECRET_TYPE, resource_names_subscribe=[SPIFFE_ID, 'ROOTCA']))
    response = next(stream)
    requests.put(discovery_pb2.DeltaDiscoveryRequest(type_url=SECRET_TYPE, response_nonce=response.nonce))
    emit({'nonce': response.nonce, 'type_url': response.type_url,
          'resources': [dict(unpack(r.resource), version=r.version, resource_name=r.name) for r in response.resources]})
    requests.put(None)
    stream.cancel()


def fetch_secrets():
    fetch = method('unary_unary', SDS + 'FetchSecrets', discovery_pb2.DiscoveryResponse)
    response = fetch(discovery_pb2.DiscoveryRequest(node=NODE, resource_names=[SPIFFE_ID], type_url=SECRET_TYPE), timeout=10)
    emit({'version_info': response.version_info, 'secrets': [unpack(r) for r in response.resources]})


SCENARIOS = {
    'x509': x509_svid,
    'x509-without-header': lambda: x509_svid(metadata=()),
    # grpc-java (DomainSocketAddress, so java-spiffe): the socket's path; C-core since 1.57 (py-spiffe): its
    # percent-encoding. Debian's grpcio sends "localhost".
    'x509-path-authority': lambda: with_authority(SOCKET, x509_svid),
    'x509-encoded-path-authority': lambda: with_authority(SOCKET.replace('/', '%2F'), x509_svid),
    # Several calls on one connection: the later ones name :authority by its HPACK dynamic-table index.
    'jwt-path-authority': lambda: with_authority(SOCKET, jwt),
    'sds-stream-path-authority': lambda: with_authority(SOCKET, sds_stream),
    'x509-bundles': x509_bundles,
    'jwt': jwt,
    'sds-stream': sds_stream,
    'sds-delta': sds_delta,
    'fetch-secrets': fetch_secrets,
}

try:
    SCENARIOS[SCENARIO]()
except grpc.RpcError as err:
    emit({'error': err.code().name, 'details': err.details()})
