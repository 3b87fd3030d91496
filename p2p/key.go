package p2p

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/internal/atomicfile"
)

// KeyType names an identity key algorithm.
type KeyType string

// Supported identity key types. Secp256k1 is the default: it is the curve
// BitVMX operators already hold keys on.
const (
	Secp256k1 KeyType = "secp256k1"
	Ed25519   KeyType = "ed25519"
)

// ErrKeyPermissions is returned by LoadKey for a key file that other users
// may read or write.
var ErrKeyPermissions = errors.New("key file is accessible by other users (want mode 0600)")

// GenerateKey creates a new identity key. The empty type means Secp256k1.
func GenerateKey(t KeyType) (crypto.PrivKey, error) {
	var (
		k   crypto.PrivKey
		err error
	)
	switch t {
	case Secp256k1, "":
		k, _, err = crypto.GenerateSecp256k1Key(rand.Reader)
	case Ed25519:
		k, _, err = crypto.GenerateEd25519Key(rand.Reader)
	default:
		return nil, fmt.Errorf("unknown key type %q (want secp256k1 or ed25519)", t)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", t, err)
	}
	return k, nil
}

// SaveKey writes k to path as libp2p's protobuf-marshalled private key, mode
// 0600, and returns once it is on disk. It refuses to overwrite an existing
// file (an error matching fs.ErrExist): losing an operator's identity key
// is not recoverable. The key is written whole under a temporary name in
// the same directory first, so that a crash never leaves an empty or
// partial file at path.
func SaveKey(path string, k crypto.PrivKey) error {
	return saveKey(path, k, nil)
}

// saveKey is SaveKey; beforeSync, if not nil, runs once the key's bytes
// are written to the temporary file and before they are synced, and an
// error from it fails the save as a failed write would (tests).
func saveKey(path string, k crypto.PrivKey, beforeSync func() error) error {
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	tmp := f.Name()
	// Once linked, the temporary name is a second name of the key: it
	// goes either way.
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil && beforeSync != nil {
		err = beforeSync()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	// link(2), unlike rename, never replaces path: an existing key (or
	// one another keygen wrote meanwhile) stays, and the caller gets
	// EEXIST, which matches fs.ErrExist.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	// Synced, file and directory entry, before the caller hands out the
	// key's peer ID: after a power loss the ID must still have its key.
	// The temporary name goes before the sync, so that the sync makes its
	// removal durable too.
	_ = os.Remove(tmp)
	if err := atomicfile.SyncDir(dir); err != nil {
		// The file is ours (the link made it): a key that may not
		// survive a power loss must not be taken for saved.
		_ = os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	return nil
}

// ErrNotKeyFile is returned by LoadKey for a path that is not a key file:
// a directory, or a file whose content is no key (an allowlist given as
// --key, say).
var ErrNotKeyFile = errors.New("not a key file")

// maxKeyFile bounds what LoadKey reads: a key file holds a few hundred
// bytes at most.
const maxKeyFile = 64 << 10

// LoadKey reads an identity key file written by SaveKey, or its hex form
// (see ParseKey). A path that is not a regular file holding a key is
// refused with ErrNotKeyFile; a key file that group or other users can
// access, with ErrKeyPermissions. The content is checked first: advice to
// chmod a file that is not a key at all would mislead.
func LoadKey(path string) (crypto.PrivKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if !st.Mode().IsRegular() {
		what := "not a regular file"
		if st.IsDir() {
			what = "a directory"
		}
		return nil, fmt.Errorf("load key %s: %w (%s)", path, ErrNotKeyFile, what)
	}
	if st.Size() > maxKeyFile {
		return nil, fmt.Errorf("load key %s: %w (%d bytes)", path, ErrNotKeyFile, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	k, err := ParseKey(b)
	if errors.Is(err, ErrInvalidKey) {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w: %v", path, ErrNotKeyFile, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load key %s (mode %#o): %w", path, st.Mode().Perm(), ErrKeyPermissions)
	}
	return k, nil
}

// ErrInvalidKey is returned by ParseKey and LoadKey for content that has
// the form of a key but holds none a node can use: a secp256k1 secret
// outside 1..n-1, an ed25519 key whose public half is not its seed's.
var ErrInvalidKey = errors.New("not a valid key")

// ParseKey decodes a private key from libp2p's protobuf encoding, from the
// hex form of that encoding (as BitVMX configuration files hold it, with or
// without a 0x prefix), or from 64 hex digits of a raw secp256k1 secret.
// A key no node can use is refused with ErrInvalidKey.
func ParseKey(b []byte) (crypto.PrivKey, error) {
	if k, err := crypto.UnmarshalPrivateKey(b); err == nil {
		return checkKey(k, b)
	}
	s := strings.TrimPrefix(string(bytes.TrimSpace(b)), "0x")
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not a libp2p private key, in binary or hex")
	}
	if k, err := crypto.UnmarshalPrivateKey(raw); err == nil {
		return checkKey(k, raw)
	}
	if len(raw) == 32 {
		if err := checkSecp256k1Secret(raw); err != nil {
			return nil, err
		}
		k, err := crypto.UnmarshalSecp256k1PrivateKey(raw)
		if err != nil {
			return nil, err
		}
		return checkKey(k, nil)
	}
	return nil, errors.New("hex does not hold a libp2p private key or a 32-byte secp256k1 secret")
}

// checkKey refuses a key that libp2p decoded from the protobuf encoding
// enc (nil for a raw secret, checked before) but no node can use. libp2p
// takes any 32 bytes as a secp256k1 secret, reducing them modulo n: 0 (or
// n) gives the point at infinity, whose peer ID no allowlist can hold and
// whose public key no peer can parse; n+1 silently becomes 1, another
// operator's key for all anyone can tell.
func checkKey(k crypto.PrivKey, enc []byte) (crypto.PrivKey, error) {
	if enc != nil {
		var m pb.PrivateKey
		if err := proto.Unmarshal(enc, &m); err != nil {
			// libp2p decoded it just now.
			return nil, fmt.Errorf("decode key: %w", err)
		}
		switch m.GetType() {
		case pb.KeyType_Secp256k1:
			if err := checkSecp256k1Secret(m.GetData()); err != nil {
				return nil, err
			}
		case pb.KeyType_Ed25519:
			if err := checkEd25519(m.GetData()); err != nil {
				return nil, err
			}
		}
	}
	if _, err := peer.IDFromPrivateKey(k); err != nil {
		return nil, fmt.Errorf("%w: no peer ID: %v", ErrInvalidKey, err)
	}
	if k.Type() == crypto.Secp256k1 || k.Type() == crypto.Ed25519 {
		// What id --json prints and peers parse in the handshake.
		if _, err := PubKeyHash(k.GetPublic()); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
	}
	return k, nil
}

// checkSecp256k1Secret refuses a secret outside 1..n-1, which libp2p
// would take and reduce.
func checkSecp256k1Secret(raw []byte) error {
	var s secp256k1.ModNScalar
	if len(raw) != secp256k1.PrivKeyBytesLen {
		return fmt.Errorf("%w: secp256k1 secret of %d bytes (want %d)", ErrInvalidKey, len(raw), secp256k1.PrivKeyBytesLen)
	}
	if s.SetByteSlice(raw) {
		return fmt.Errorf("%w: secp256k1 secret is not below the curve order n (want 1..n-1)", ErrInvalidKey)
	}
	if s.IsZero() {
		return fmt.Errorf("%w: secp256k1 secret is 0 (want 1..n-1)", ErrInvalidKey)
	}
	return nil
}

// checkEd25519 refuses an ed25519 key (seed and public key, as libp2p
// stores it) whose public half is not the seed's: its peer ID would name
// a key the node cannot sign for, and every handshake would fail.
func checkEd25519(data []byte) error {
	if len(data) < ed25519.PrivateKeySize {
		return nil // libp2p refused it already
	}
	want := ed25519.NewKeyFromSeed(data[:ed25519.SeedSize])
	if !bytes.Equal(want[ed25519.SeedSize:], data[ed25519.SeedSize:ed25519.PrivateKeySize]) {
		return fmt.Errorf("%w: ed25519 public key does not match its seed", ErrInvalidKey)
	}
	return nil
}

// PeerIDFromKeyFile loads a key file and returns the peer ID it stands for.
func PeerIDFromKeyFile(path string) (peer.ID, error) {
	k, err := LoadKey(path)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}

// PubKeyHash is the identifier the BitVMX broker and operator-comms libraries
// use for a peer: the lowercase hex SHA-256 of the public key's DER-encoded
// X.509 SubjectPublicKeyInfo. For secp256k1 the SPKI holds the algorithm
// id-ecPublicKey (1.2.840.10045.2.1) with the curve secp256k1
// (1.3.132.0.10) and the 65-byte uncompressed point; for ed25519 the
// algorithm id-Ed25519 (1.3.101.112) and the 32-byte key.
func PubKeyHash(pub crypto.PubKey) (string, error) {
	der, err := marshalSPKI(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.ObjectIdentifier `asn1:"optional"`
}

type subjectPublicKeyInfo struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

func marshalSPKI(pub crypto.PubKey) ([]byte, error) {
	raw, err := pub.Raw()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	var info subjectPublicKeyInfo
	switch pub.Type() {
	case crypto.Secp256k1:
		pk, err := secp256k1.ParsePubKey(raw)
		if err != nil {
			return nil, fmt.Errorf("secp256k1 public key: %w", err)
		}
		info.Algorithm = algorithmIdentifier{
			Algorithm:  asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1},
			Parameters: asn1.ObjectIdentifier{1, 3, 132, 0, 10},
		}
		raw = pk.SerializeUncompressed()
	case crypto.Ed25519:
		info.Algorithm = algorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}}
	default:
		return nil, fmt.Errorf("public key hash: unsupported key type %s", pub.Type())
	}
	info.PublicKey = asn1.BitString{Bytes: raw, BitLength: 8 * len(raw)}
	return asn1.Marshal(info)
}
