package ocichain

import (
	"fmt"
	"os"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Keys are Nix's binary-cache keys (ed25519, "name:base64"), as made by
// `nix-store --generate-binary-cache-key NAME SECRET PUBLIC`; go-nix reads
// and writes them the way Nix does.

// LoadSecretKey reads a secret key file in Nix's format.
func LoadSecretKey(path string) (*signature.SecretKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := ParseSecretKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseSecretKey reads a secret key in Nix's format (a key file's
// contents).
func ParseSecretKey(s string) (*signature.SecretKey, error) {
	k, err := signature.LoadSecretKey(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &k, nil
}

// Trust says which signatures make a fetched chain usable.
type Trust struct {
	Keys []signature.PublicKey
	// NoCheckSigs accepts chains without a trusted signature (local
	// experiments); they are marked not verified.
	NoCheckSigs bool
}

// ParseTrust reads public keys ("name:base64", Nix's trusted-public-keys form).
func ParseTrust(keys []string, noCheckSigs bool) (Trust, error) {
	t := Trust{NoCheckSigs: noCheckSigs}
	for _, s := range keys {
		k, err := signature.ParsePublicKey(strings.TrimSpace(s))
		if err != nil {
			return t, fmt.Errorf("trusted layer key %q: %w", s, err)
		}
		t.Keys = append(t.Keys, k)
	}
	return t, nil
}

// fingerprint is what a signature covers: the config (which holds every
// record: keys, output paths, shell state, path maps, diff_ids) and every
// layer blob, by digest and media type.
func fingerprint(man *ocispec.Manifest) string {
	var b strings.Builder
	b.WriteString("nixlayer-chain-1;")
	b.WriteString(man.Config.MediaType + "@" + man.Config.Digest.String())
	for _, l := range man.Layers {
		b.WriteString(";" + l.MediaType + "@" + l.Digest.String())
	}
	return b.String()
}

func sign(man *ocispec.Manifest, key *signature.SecretKey) error {
	sig, err := key.Sign(nil, fingerprint(man))
	if err != nil {
		return fmt.Errorf("signing the chain: %w", err)
	}
	if man.Annotations == nil {
		man.Annotations = map[string]string{}
	}
	man.Annotations[annotationSignatures] = sig.String()
	return nil
}

// verify returns the name of a trusted key that signed the manifest, or
// why none did.
func (t Trust) verify(man *ocispec.Manifest) (string, error) {
	raw := strings.Fields(man.Annotations[annotationSignatures])
	if len(raw) == 0 {
		return "", fmt.Errorf("the chain is not signed")
	}
	fp := fingerprint(man)
	var names []string
	for _, s := range raw {
		sig, err := signature.ParseSignature(s)
		if err != nil {
			return "", fmt.Errorf("a signature of the chain is malformed: %w", err)
		}
		names = append(names, sig.Name)
		for _, k := range t.Keys {
			if k.Name != sig.Name {
				continue
			}
			if !k.Verify(fp, sig) {
				return "", fmt.Errorf("the signature by %s does not match the chain (tampered)", sig.Name)
			}
			return k.Name, nil
		}
	}
	return "", fmt.Errorf("signed by %s, which is not in trustedLayerKeys", strings.Join(names, ", "))
}
