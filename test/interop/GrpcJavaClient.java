// A SPIFFE Workload API client on grpc-java (Netty transport) and the JDK's certificate and key classes, for meshid's
// interop tests.
//
// grpc-java is the stack of java-spiffe; java.security.cert is what a Java workload hands an X509-SVID to (its PKIX
// validator is the one behind Java's TLS trust managers). Messages and stubs are protoc's and grpc-java's plugin's
// output for meshid's proto/ (no `package`, so they and this class live in the unnamed package). Built with javac
// against Debian's jars by test/integration/grpc-java-client.test.ts.
//
// java-spiffe dials the agent's Unix socket with Netty's epoll transport, whose JNI library Debian does not ship; this
// client therefore dials a TCP loopback address the test relays to the agent's socket.
//
// With a third argument, the agent socket's path, the channel is built as java-spiffe builds it
// (NettyChannelBuilder.forAddress(new DomainSocketAddress(path))), so its calls carry what java-spiffe's do, the
// path as :authority included; only the connection still goes to the TCP relay (RelayedChannel).
//
// Usage: GrpcJavaClient <host:port> <x509|x509-bundles|jwt|without-header|rotation> [socket path]. Prints one JSON
// object a line.

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import java.net.SocketAddress;
import java.io.ByteArrayInputStream;
import java.math.BigInteger;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertPath;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXCertPathValidatorResult;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.interfaces.ECPrivateKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

public final class GrpcJavaClient {
  private static final Gson GSON = new Gson();
  /** The Workload API's security header (SPIFFE Workload Endpoint §4): without it a call must fail InvalidArgument. */
  private static final Metadata.Key<String> SECURITY_HEADER = Metadata.Key.of("workload.spiffe.io", Metadata.ASCII_STRING_MARSHALLER);
  private static final int SAN_URI = 6;
  private static final int SAN_DNS = 2;

  public static void main(String[] args) throws Exception {
    String[] hostPort = args[0].split(":");
    String scenario = args[1];
    InetSocketAddress tcp = new InetSocketAddress(hostPort[0], Integer.parseInt(hostPort[1]));
    NioEventLoopGroup relayGroup = null;
    ManagedChannel channel;
    if (args.length > 2) {
      RelayedChannel.relay = tcp;
      relayGroup = new NioEventLoopGroup(1);
      channel = NettyChannelBuilder.forAddress(new DomainSocketAddress(args[2]))
          .channelType(RelayedChannel.class)
          .eventLoopGroup(relayGroup)
          .usePlaintext()
          .build();
    } else {
      channel = NettyChannelBuilder.forAddress(tcp).usePlaintext().build();
    }
    try {
      SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub plain = SpiffeWorkloadAPIGrpc.newBlockingStub(channel);
      SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub secured = plain.withInterceptors(new SecurityHeader());
      try {
        switch (scenario) {
          case "x509" -> print(x509(secured));
          case "without-header" -> print(x509(plain));
          case "x509-bundles" -> print(x509Bundles(secured));
          case "jwt" -> print(jwt(secured));
          case "rotation" -> rotation(secured);
          default -> throw new IllegalArgumentException("unknown scenario " + scenario);
        }
      } catch (StatusRuntimeException e) {
        print(Map.of("error", e.getStatus().getCode().name(), "details", String.valueOf(e.getStatus().getDescription())));
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      if (relayGroup != null) relayGroup.shutdownGracefully();
    }
  }

  /** A socket channel that connects to the TCP relay whatever address grpc-java hands it (a DomainSocketAddress). */
  public static final class RelayedChannel extends NioSocketChannel {
    static volatile InetSocketAddress relay;

    @Override
    protected boolean doConnect(SocketAddress remote, SocketAddress local) throws Exception {
      return super.doConnect(relay, local);
    }
  }

  /** Adds the security header to every call, as java-spiffe's client does. */
  static final class SecurityHeader implements ClientInterceptor {
    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          headers.put(SECURITY_HEADER, "true");
          super.start(listener, headers);
        }
      };
    }
  }

  private static SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub bounded(SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub stub) {
    return stub.withDeadlineAfter(20, TimeUnit.SECONDS);
  }

  /** The first message of FetchX509SVID; the channel's shutdown cancels the stream. */
  static Map<String, Object> x509(SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub stub) throws Exception {
    return x509Report(bounded(stub).fetchX509SVID(Workload.X509SVIDRequest.getDefaultInstance()).next());
  }

  /** Two messages of one FetchX509SVID stream: the test changes the entry after the first, so the agent pushes again. */
  static void rotation(SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub stub) throws Exception {
    Iterator<Workload.X509SVIDResponse> stream = bounded(stub).fetchX509SVID(Workload.X509SVIDRequest.getDefaultInstance());
    print(x509Report(stream.next()));
    print(x509Report(stream.next()));
  }

  static Map<String, Object> x509Report(Workload.X509SVIDResponse resp) throws Exception {
    List<Object> svids = new ArrayList<>();
    for (Workload.X509SVID svid : resp.getSvidsList()) {
      // As a Java workload reads an X509-SVID: concatenated DER chain and bundle, PKCS#8 key.
      List<X509Certificate> chain = certificates(svid.getX509Svid().toByteArray());
      List<X509Certificate> roots = certificates(svid.getBundle().toByteArray());
      X509Certificate leaf = chain.get(0);
      PrivateKey key = KeyFactory.getInstance("EC").generatePrivate(new PKCS8EncodedKeySpec(svid.getX509SvidKey().toByteArray()));
      Map<String, Object> r = new LinkedHashMap<>();
      r.put("spiffe_id", svid.getSpiffeId());
      r.put("uris", subjectAltNames(leaf, SAN_URI));
      r.put("dns_names", subjectAltNames(leaf, SAN_DNS));
      r.put("serial", leaf.getSerialNumber().toString(16));
      r.put("key_algorithm", key.getAlgorithm());
      r.put("key_curve_bits", ((ECPrivateKey) key).getParams().getCurve().getField().getFieldSize());
      r.put("key_matches_leaf", signsFor(key, leaf.getPublicKey()));
      r.put("leaf_is_ca", leaf.getBasicConstraints() != -1);
      boolean[] usage = leaf.getKeyUsage();
      // X509-SVID §4.3: digitalSignature set; keyCertSign and cRLSign not.
      r.put("leaf_key_usage_ok", usage != null && usage[0] && !usage[5] && !usage[6]);
      r.put("intermediates", chain.size() - 1);
      r.put("verified_chain_subjects", validate(chain, roots));
      r.put("bundle_sha256", fingerprints(roots));
      svids.add(r);
    }
    return Map.of("svids", svids);
  }

  static Map<String, Object> x509Bundles(SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub stub) throws Exception {
    Workload.X509BundlesResponse resp = bounded(stub).fetchX509Bundles(Workload.X509BundlesRequest.getDefaultInstance()).next();
    Map<String, Object> bundles = new TreeMap<>();
    for (Map.Entry<String, com.google.protobuf.ByteString> e : resp.getBundlesMap().entrySet()) {
      bundles.put(e.getKey(), fingerprints(certificates(e.getValue().toByteArray())));
    }
    return Map.of("bundles", bundles);
  }

  static Map<String, Object> jwt(SpiffeWorkloadAPIGrpc.SpiffeWorkloadAPIBlockingStub stub) throws Exception {
    Workload.JWTSVIDResponse fetched = bounded(stub).fetchJWTSVID(Workload.JWTSVIDRequest.newBuilder().addAudience("interop").build());
    Workload.JWTSVID svid = fetched.getSvids(0);
    String token = svid.getSvid();
    Workload.ValidateJWTSVIDResponse valid = bounded(stub).validateJWTSVID(
        Workload.ValidateJWTSVIDRequest.newBuilder().setAudience("interop").setSvid(token).build());
    String wrongAudience = "OK";
    try {
      bounded(stub).validateJWTSVID(Workload.ValidateJWTSVIDRequest.newBuilder().setAudience("someone-else").setSvid(token).build());
    } catch (StatusRuntimeException e) {
      wrongAudience = e.getStatus().getCode().name();
    }
    Workload.JWTBundlesResponse bundles = bounded(stub).fetchJWTBundles(Workload.JWTBundlesRequest.getDefaultInstance()).next();

    String[] parts = token.split("\\.");
    JsonObject header = JsonParser.parseString(new String(Base64.getUrlDecoder().decode(parts[0]), StandardCharsets.UTF_8)).getAsJsonObject();
    String kid = header.get("kid").getAsString();
    // Each bundle is an RFC 7517 JWK Set; the token's kid must name an EC key in its own trust domain's set that
    // verifies its ES256 signature (JWT-SVID §7).
    Map<String, Object> jwks = new TreeMap<>();
    Boolean signatureVerified = null;
    for (Map.Entry<String, com.google.protobuf.ByteString> e : bundles.getBundlesMap().entrySet()) {
      JsonObject set = JsonParser.parseString(e.getValue().toString(StandardCharsets.UTF_8)).getAsJsonObject();
      List<String> kids = new ArrayList<>();
      for (JsonElement k : set.getAsJsonArray("keys")) {
        JsonObject jwk = k.getAsJsonObject();
        kids.add(jwk.get("kid").getAsString());
        if (jwk.get("kid").getAsString().equals(kid)) {
          Signature verifier = Signature.getInstance("SHA256withECDSAinP1363Format");
          verifier.initVerify(ecPublicKey(jwk));
          verifier.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
          signatureVerified = verifier.verify(Base64.getUrlDecoder().decode(parts[2]));
        }
      }
      jwks.put(e.getKey(), kids);
    }
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("svid_spiffe_id", svid.getSpiffeId());
    r.put("validated_spiffe_id", valid.getSpiffeId());
    r.put("sub_claim", valid.getClaims().getFieldsOrThrow("sub").getStringValue());
    List<String> aud = new ArrayList<>();
    for (com.google.protobuf.Value v : valid.getClaims().getFieldsOrThrow("aud").getListValue().getValuesList()) aud.add(v.getStringValue());
    r.put("aud_claim", aud);
    r.put("exp_claim_kind", valid.getClaims().getFieldsOrThrow("exp").getKindCase().name());
    r.put("alg", header.get("alg").getAsString());
    r.put("wrong_audience", wrongAudience);
    r.put("jwks_kids", jwks);
    r.put("signature_verified_with_jwks", signatureVerified);
    return r;
  }

  static List<X509Certificate> certificates(byte[] der) throws Exception {
    List<X509Certificate> out = new ArrayList<>();
    for (java.security.cert.Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(der))) {
      out.add((X509Certificate) c);
    }
    if (out.isEmpty()) throw new IllegalStateException("no certificate in " + der.length + " bytes");
    return out;
  }

  /** PKIX validation of leaf + intermediates to the bundle's roots; returns the subjects, leaf first, anchor last. */
  static List<String> validate(List<X509Certificate> chain, List<X509Certificate> roots) throws Exception {
    java.util.Set<TrustAnchor> anchors = new java.util.HashSet<>();
    for (X509Certificate root : roots) anchors.add(new TrustAnchor(root, null));
    PKIXParameters params = new PKIXParameters(anchors);
    // SVIDs carry no CRL distribution points; revocation is by bundle and short TTLs.
    params.setRevocationEnabled(false);
    CertPath path = CertificateFactory.getInstance("X.509").generateCertPath(chain);
    PKIXCertPathValidatorResult result = (PKIXCertPathValidatorResult) CertPathValidator.getInstance("PKIX").validate(path, params);
    List<String> subjects = new ArrayList<>();
    for (X509Certificate c : chain) subjects.add(c.getSubjectX500Principal().getName());
    subjects.add(result.getTrustAnchor().getTrustedCert().getSubjectX500Principal().getName());
    return subjects;
  }

  static List<String> subjectAltNames(X509Certificate cert, int type) throws Exception {
    List<String> out = new ArrayList<>();
    if (cert.getSubjectAlternativeNames() == null) return out;
    for (List<?> san : cert.getSubjectAlternativeNames()) {
      if ((Integer) san.get(0) == type) out.add((String) san.get(1));
    }
    return out;
  }

  static boolean signsFor(PrivateKey key, PublicKey pub) throws Exception {
    byte[] challenge = "meshid interop".getBytes(StandardCharsets.US_ASCII);
    Signature signer = Signature.getInstance("SHA256withECDSA");
    signer.initSign(key);
    signer.update(challenge);
    byte[] sig = signer.sign();
    Signature verifier = Signature.getInstance("SHA256withECDSA");
    verifier.initVerify(pub);
    verifier.update(challenge);
    return verifier.verify(sig);
  }

  static PublicKey ecPublicKey(JsonObject jwk) throws Exception {
    if (!"EC".equals(jwk.get("kty").getAsString()) || !"P-256".equals(jwk.get("crv").getAsString())) {
      throw new IllegalArgumentException("not a P-256 key: " + jwk);
    }
    AlgorithmParameters p = AlgorithmParameters.getInstance("EC");
    p.init(new ECGenParameterSpec("secp256r1"));
    ECPoint w = new ECPoint(unsigned(jwk.get("x").getAsString()), unsigned(jwk.get("y").getAsString()));
    return KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(w, p.getParameterSpec(ECParameterSpec.class)));
  }

  private static BigInteger unsigned(String base64url) {
    return new BigInteger(1, Base64.getUrlDecoder().decode(base64url));
  }

  static List<String> fingerprints(List<X509Certificate> certs) throws Exception {
    List<String> out = new ArrayList<>();
    for (X509Certificate c : certs) {
      out.add(HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(c.getEncoded())));
    }
    return out;
  }

  private static void print(Object o) {
    System.out.println(GSON.toJson(o));
    System.out.flush();
  }
}
