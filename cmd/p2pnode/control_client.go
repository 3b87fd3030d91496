package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/pflag"

	"github.com/bitvmx/go-bitvmx-p2p/control"
)

// The CLI side of the control API: how a command finds the running node
// and reaches its control socket.

// dialTimeout bounds reaching the control socket (not the call itself).
const dialTimeout = 5 * time.Second

// noNodeHint ends the error of a command that found no running node.
const noNodeHint = `start the node with "p2pnode run" (p2pnode run --help), or point at a running one with --api SOCKET, --data-dir DIR or --config FILE`

// nodeTarget is how a command finds the running node: --api names its
// socket, --data-dir its data directory, --config or --key its settings.
type nodeTarget struct {
	api, dataDir, config, key string
}

// bindNodeTarget defines --api, --data-dir and --config (and --key with
// withKey) on fs.
func bindNodeTarget(fs *pflag.FlagSet, t *nodeTarget, withKey bool) {
	fs.StringVar(&t.api, "api", "", "the running node's control `SOCKET` (default control.sock in its data directory)")
	fs.StringVar(&t.dataDir, "data-dir", "", "the running node's data `DIR`")
	fs.StringVar(&t.config, "config", "", "the running node's configuration `FILE`: its api, data_dir, or its key's default")
	if withKey {
		fs.StringVar(&t.key, "key", "", "the running node's identity key `FILE`: its default data directory")
	}
}

// socket is the control socket the target names. With nothing given it
// looks for the one node running under the default data directories.
func (t *nodeTarget) socket() (string, error) {
	if t.api != "" {
		return absPath(t.api), nil
	}
	var cfg runConfig
	if t.config != "" {
		var err error
		if cfg, err = loadConfigFile(t.config); err != nil {
			return "", err
		}
	}
	if t.dataDir != "" {
		cfg.DataDir = t.dataDir
	}
	if t.key != "" {
		cfg.Key = t.key
	}
	switch {
	case cfg.API == apiOff:
		return "", fmt.Errorf("%s turns the node's control socket off (api: off): give it one to use this command", t.config)
	case cfg.API != "":
		return absPath(cfg.API), nil
	case cfg.DataDir != "":
		return control.SocketPath(absPath(cfg.DataDir)), nil
	case cfg.Ephemeral:
		return "", fmt.Errorf("%s runs the node ephemeral, without a data directory: give it a control socket (api:) and use --api", t.config)
	case cfg.Key != "":
		dir, err := keyDataDir(cfg.Key)
		if err != nil {
			return "", err
		}
		return control.SocketPath(dir), nil
	}
	return findDefaultSocket()
}

// keyDataDir is the default data directory of the node with key file path.
func keyDataDir(path string) (string, error) {
	k, err := loadKey(path)
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", err
	}
	return defaultDataDir(id)
}

// findDefaultSocket looks for the control sockets of the nodes running
// with a default data directory; exactly one must answer.
func findDefaultSocket() (string, error) {
	root, err := defaultStateRoot()
	if err != nil {
		return "", err
	}
	paths, _ := filepath.Glob(filepath.Join(root, "*", control.SocketName))
	var live []string
	for _, p := range paths {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		c, err := control.Dial(ctx, p)
		cancel()
		if err == nil {
			live = append(live, c.Path())
			c.Close()
		}
	}
	switch len(live) {
	case 1:
		return live[0], nil
	case 0:
		return "", fmt.Errorf("%w: none under %s; %s", control.ErrNoNode, root, noNodeHint)
	}
	slices.Sort(live)
	return "", fmt.Errorf("%d nodes are running (%s): say which with --data-dir or --api", len(live), strings.Join(live, ", "))
}

// defaultStateRoot is the directory holding the default data directories.
func defaultStateRoot() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%w: no home directory to look in (%v); %s", control.ErrNoNode, err, noNodeHint)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "p2pnode"), nil
}

// dial finds the running node and opens a client on its socket. The error
// wraps control.ErrNoNode when no node runs there, and says how to start
// one.
func (t *nodeTarget) dial() (*control.Client, error) {
	path, err := t.socket()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := control.Dial(ctx, path)
	if errors.Is(err, control.ErrNoNode) {
		return nil, fmt.Errorf("%w; %s", err, noNodeHint)
	}
	return c, err
}

// given reports whether any target flag was set.
func (t *nodeTarget) given() bool {
	return t.api != "" || t.dataDir != "" || t.config != "" || t.key != ""
}
