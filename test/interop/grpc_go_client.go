// A SPIFFE Workload API client on grpc-go and Go's crypto/x509, for meshid's interop tests.
//
// grpc-go is the stack of go-spiffe, SPIRE and most Go services; crypto/x509 is the parser and verifier go-spiffe
// hands every X509-SVID to, stricter than OpenSSL about DER. Messages are protoc-gen-go's output for meshid's proto/
// (their field numbers are checked against the published definitions in test/unit/proto). Built in GOPATH mode from
// Debian's packaged sources by test/integration/grpc-go-client.test.ts.
//
// Usage: grpc_go_client <socket> <x509|jwt|without-header>. Prints one JSON object.
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	workload "meshidinterop/gen/workload"
)

const service = "/SpiffeWorkloadAPI/"

func main() {
	socket, scenario := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, "unix://"+socket, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(protoCodec{})))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	secured := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	var out interface{}
	switch scenario {
	case "x509":
		out, err = x509Svid(secured, conn)
	case "without-header":
		out, err = x509Svid(ctx, conn)
	case "jwt":
		out, err = jwt(secured, conn)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		if s, ok := status.FromError(err); ok {
			out = map[string]string{"error": s.Code().String(), "details": s.Message()}
		} else {
			fail(err)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// protoCodec is the codec of current grpc-go releases (google.golang.org/protobuf). Debian's grpc-go 1.33 still
// encodes through the old github.com/golang/protobuf tables, which cannot read protoc-gen-go 1.28's messages.
type protoCodec struct{}

func (protoCodec) Marshal(v interface{}) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (protoCodec) Unmarshal(data []byte, v interface{}) error {
	return proto.Unmarshal(data, v.(proto.Message))
}
func (protoCodec) Name() string { return "proto" }

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// firstMessage opens a server stream and returns its first message, then cancels the stream.
func firstMessage(ctx context.Context, conn *grpc.ClientConn, method string, req, resp interface{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, service+method)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(resp)
}

type svidReport struct {
	SpiffeID       string   `json:"spiffe_id"`
	URIs           []string `json:"uris"`
	IsCA           bool     `json:"leaf_is_ca"`
	LeafKeyUsageOK bool     `json:"leaf_key_usage_ok"`
	KeyMatchesLeaf bool     `json:"key_matches_leaf"`
	VerifiedChain  []string `json:"verified_chain_subjects"`
	Intermediates  int      `json:"intermediates"`
}

func x509Svid(ctx context.Context, conn *grpc.ClientConn) (interface{}, error) {
	resp := &workload.X509SVIDResponse{}
	if err := firstMessage(ctx, conn, "FetchX509SVID", &workload.X509SVIDRequest{}, resp); err != nil {
		return nil, err
	}
	reports := []svidReport{}
	for _, svid := range resp.Svids {
		// As go-spiffe reads an X509-SVID: concatenated DER chain, PKCS#8 key, concatenated DER bundle.
		chain, err := x509.ParseCertificates(svid.X509Svid)
		if err != nil {
			return nil, fmt.Errorf("x509_svid: %w", err)
		}
		roots, err := x509.ParseCertificates(svid.Bundle)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		key, err := x509.ParsePKCS8PrivateKey(svid.X509SvidKey)
		if err != nil {
			return nil, fmt.Errorf("x509_svid_key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("x509_svid_key is not a signing key")
		}
		leaf := chain[0]
		pool, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		// SPIFFE authenticates by URI SAN, not by extended key usage: go-spiffe verifies with ExtKeyUsageAny.
		verified, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		subjects := []string{}
		for _, c := range verified[0] {
			subjects = append(subjects, c.Subject.String())
		}
		uris := []string{}
		for _, u := range leaf.URIs {
			uris = append(uris, u.String())
		}
		pub, err := x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil {
			return nil, err
		}
		reports = append(reports, svidReport{
			SpiffeID: svid.SpiffeId,
			URIs:     uris,
			IsCA:     leaf.IsCA,
			// The X509-SVID spec (and go-spiffe's parser): digitalSignature set, keyCertSign and cRLSign not.
			LeafKeyUsageOK: leaf.KeyUsage&x509.KeyUsageDigitalSignature != 0 && leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) == 0,
			KeyMatchesLeaf: string(pub) == string(leaf.RawSubjectPublicKeyInfo),
			VerifiedChain:  subjects,
			Intermediates:  len(chain) - 1,
		})
	}
	return map[string]interface{}{"svids": reports}, nil
}

func jwt(ctx context.Context, conn *grpc.ClientConn) (interface{}, error) {
	fetched := &workload.JWTSVIDResponse{}
	if err := conn.Invoke(ctx, service+"FetchJWTSVID", &workload.JWTSVIDRequest{Audience: []string{"interop"}}, fetched); err != nil {
		return nil, err
	}
	token := fetched.Svids[0].Svid
	valid := &workload.ValidateJWTSVIDResponse{}
	if err := conn.Invoke(ctx, service+"ValidateJWTSVID", &workload.ValidateJWTSVIDRequest{Audience: "interop", Svid: token}, valid); err != nil {
		return nil, err
	}
	wrongAudience := "OK"
	err := conn.Invoke(ctx, service+"ValidateJWTSVID", &workload.ValidateJWTSVIDRequest{Audience: "someone-else", Svid: token}, &workload.ValidateJWTSVIDResponse{})
	if err != nil {
		wrongAudience = status.Code(err).String()
	}
	bundles := &workload.JWTBundlesResponse{}
	if err := firstMessage(ctx, conn, "FetchJWTBundles", &workload.JWTBundlesRequest{}, bundles); err != nil {
		return nil, err
	}
	tds := []string{}
	for td := range bundles.Bundles {
		tds = append(tds, td)
	}
	return map[string]interface{}{
		"svid_spiffe_id":      fetched.Svids[0].SpiffeId,
		"validated_spiffe_id": valid.SpiffeId,
		"sub_claim":           valid.Claims.GetFields()["sub"].GetStringValue(),
		"wrong_audience":      wrongAudience,
		"jwt_bundle_tds":      tds,
	}, nil
}
