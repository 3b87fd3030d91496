package p2p_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

func TestKeyFileRoundTrip(t *testing.T) {
	for _, typ := range []p2p.KeyType{p2p.Secp256k1, p2p.Ed25519, ""} {
		t.Run(string(typ), func(t *testing.T) {
			k, err := p2p.GenerateKey(typ)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "node.key")
			if err := p2p.SaveKey(path, k); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v", st.Mode())
			}
			got, err := p2p.LoadKey(path)
			if err != nil || !got.Equals(k) {
				t.Fatalf("loaded %v, %v", got, err)
			}
			want, _ := peer.IDFromPrivateKey(k)
			if id, err := p2p.PeerIDFromKeyFile(path); err != nil || id != want {
				t.Fatalf("id %s, %v", id, err)
			}
			// An identity key is never overwritten.
			if err := p2p.SaveKey(path, k); !errors.Is(err, os.ErrExist) {
				t.Fatalf("overwrite: %v", err)
			}
		})
	}
	if _, err := p2p.GenerateKey("rsa"); err == nil {
		t.Fatal("rsa accepted")
	}
}

func TestLoadKeyRefusesOpenPermissions(t *testing.T) {
	k, _ := p2p.GenerateKey(p2p.Secp256k1)
	path := filepath.Join(t.TempDir(), "node.key")
	if err := p2p.SaveKey(path, k); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o666} {
		os.Chmod(path, mode)
		if _, err := p2p.LoadKey(path); !errors.Is(err, p2p.ErrKeyPermissions) {
			t.Errorf("mode %#o: %v", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := p2p.LoadKey(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestParseKeyForms(t *testing.T) {
	k, _ := p2p.GenerateKey(p2p.Secp256k1)
	pb, _ := crypto.MarshalPrivateKey(k)
	raw, _ := k.Raw()
	forms := map[string]string{
		"protobuf":          string(pb),
		"hex":               hex.EncodeToString(pb),
		"0x hex with space": "  0x" + hex.EncodeToString(pb) + "\n",
		"raw secp256k1":     hex.EncodeToString(raw),
	}
	for name, in := range forms {
		got, err := p2p.ParseKey([]byte(in))
		if err != nil || !got.Equals(k) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "zz", "0x1234", "not a key at all"} {
		if _, err := p2p.ParseKey([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestPubKeyHashKnownAnswers checks the hash against independent
// implementations: OpenSSL for secp256k1 and Go's x509 for ed25519.
func TestPubKeyHashKnownAnswers(t *testing.T) {
	// openssl ecparam -name secp256k1 -genkey | openssl ec -pubout -outform DER | sha256sum
	secret, _ := hex.DecodeString("c181cf343a9d3cff8a20df6baf7f7ca4db0ad0588e3dc1642535d62a2ea284bf")
	k, err := crypto.UnmarshalSecp256k1PrivateKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p2p.PubKeyHash(k.GetPublic())
	if want := "9ee89d963807580eafeefd75fa78e2959e5ba7b07d32627b5597d8d92d0d3abd"; err != nil || got != want {
		t.Fatalf("secp256k1: %s, %v; want %s", got, err, want)
	}

	ek, _ := p2p.GenerateKey(p2p.Ed25519)
	raw, _ := ek.GetPublic().Raw()
	der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(raw))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if got, err := p2p.PubKeyHash(ek.GetPublic()); err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("ed25519: %s, %v", got, err)
	}
}

// A save that fails, or a crash, before the key is on disk leaves nothing
// at the key's path: an empty or partial file there would make the next
// keygen refuse to overwrite it, and LoadKey refuse it as no key. Written
// in place, the file exists from before its bytes are written until they
// are synced.
func TestSaveKeyFailedWriteLeavesNoFile(t *testing.T) {
	k, _ := p2p.GenerateKey(p2p.Secp256k1)
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	boom := errors.New("disk failed")
	err := p2p.SaveKeyHooked(path, k, func() error {
		// A crash here, the bytes written and not yet synced.
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists before the key is synced (%v): a crash now leaves it empty or partial", path, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("save: %v, want %v", err, boom)
	}
	assertDir(t, dir)
	// And nothing is in the way of trying again.
	if err := p2p.SaveKey(path, k); err != nil {
		t.Fatal(err)
	}
	assertDir(t, dir, "node.key")
	if got, err := p2p.LoadKey(path); err != nil || !got.Equals(k) {
		t.Fatalf("loaded %v, %v", got, err)
	}
}

// An existing file is never replaced, whether it was there before SaveKey
// began or appeared while SaveKey wrote (another keygen writing the same
// path): SaveKey fails with fs.ErrExist and leaves it as it was.
func TestSaveKeyNeverReplaces(t *testing.T) {
	k, _ := p2p.GenerateKey(p2p.Secp256k1)
	const other = "another operator's key"
	t.Run("before", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "node.key")
		if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p2p.SaveKey(path, k); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("save over an existing file: %v", err)
		}
		assertContent(t, path, other)
		assertDir(t, dir, "node.key")
	})
	t.Run("meanwhile", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "node.key")
		err := p2p.SaveKeyHooked(path, k, func() error {
			// As the other keygen would: never over an existing file.
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Errorf("the path is taken before the key is on disk: %v", err)
				return nil
			}
			_, err = f.WriteString(other)
			return errors.Join(err, f.Close())
		})
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("save over a file written meanwhile: %v", err)
		}
		assertContent(t, path, other)
		assertDir(t, dir, "node.key")
	})
}

func assertContent(t *testing.T, path, want string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != want {
		t.Fatalf("%s holds %q, %v; want %q", path, b, err, want)
	}
}

// assertDir fails unless dir holds exactly names: no temporary file left.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

// TestParseKeyRefusesUnusableKeys: libp2p takes any 32 bytes as a
// secp256k1 secret, reducing them modulo n, so 0 gave a node whose peer
// ID no allowlist can hold and n+1 gave key 1 under another name.
func TestParseKeyRefusesUnusableKeys(t *testing.T) {
	const n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
	secrets := map[string]string{
		"zero":  strings.Repeat("0", 64),
		"n":     n,
		"n+1":   n[:63] + "2",
		"all f": strings.Repeat("f", 64),
	}
	pbSecp := func(secret []byte) []byte {
		b, err := proto.Marshal(&cryptopb.PrivateKey{Type: cryptopb.KeyType_Secp256k1.Enum(), Data: secret})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, s := range secrets {
		secret, _ := hex.DecodeString(s)
		forms := map[string][]byte{
			"raw hex":      []byte(s),
			"protobuf":     pbSecp(secret),
			"protobuf hex": []byte(hex.EncodeToString(pbSecp(secret))),
		}
		for form, in := range forms {
			if _, err := p2p.ParseKey(in); !errors.Is(err, p2p.ErrInvalidKey) {
				t.Errorf("%s as %s: %v (want ErrInvalidKey)", name, form, err)
			}
		}
	}
	// The largest secret there is, n-1, is a key.
	if _, err := p2p.ParseKey([]byte(n[:63] + "0")); err != nil {
		t.Errorf("n-1: %v", err)
	}

	// An ed25519 key whose public half is not its seed's.
	_, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	mixed := append(append([]byte{}, priv.Seed()...), other.Public().(ed25519.PublicKey)...)
	b, _ := proto.Marshal(&cryptopb.PrivateKey{Type: cryptopb.KeyType_Ed25519.Enum(), Data: mixed})
	if _, err := p2p.ParseKey(b); !errors.Is(err, p2p.ErrInvalidKey) {
		t.Errorf("mismatched ed25519: %v", err)
	}
}

// TestLoadKeyNamesFileOfUnusableKey: the refusal names the file, for
// run, config check and id alike (they all load through LoadKey).
func TestLoadKeyNamesFileOfUnusableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zero.key")
	if err := os.WriteFile(path, []byte(strings.Repeat("0", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := p2p.LoadKey(path)
	if !errors.Is(err, p2p.ErrInvalidKey) || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadKey: %v (want ErrInvalidKey naming %s)", err, path)
	}
	if _, err := p2p.PeerIDFromKeyFile(path); !errors.Is(err, p2p.ErrInvalidKey) {
		t.Fatalf("PeerIDFromKeyFile: %v", err)
	}
}
