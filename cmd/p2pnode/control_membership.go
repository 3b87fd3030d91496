package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
)

// SubmitMembership implements control.Node: "p2pnode membership submit"
// hands the node's membership service a new version. The service applies
// it (and prints membership_applied) or refuses it; a refusal reaches the
// caller as ErrInvalid with the verification's reasons.
func (c *nodeControl) SubmitMembership(ctx context.Context, req *pb.SubmitMembershipRequest) (*pb.SubmitMembershipResponse, error) {
	mem := c.r.mem
	if mem == nil {
		return nil, fmt.Errorf("%w: not a membership node (start it with --membership FILE)", control.ErrUnsupported)
	}
	if c.r.ops.stopping.Load() {
		return nil, control.ErrStopping
	}
	d, err := membership.Decode(req.Document)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", control.ErrInvalid, err)
	}
	cur := mem.Current()
	rep, err := mem.SubmitReport(ctx, d)
	switch {
	case errors.Is(err, gossip.ErrClosed):
		return nil, fmt.Errorf("%w: %w", control.ErrStopping, err)
	case errors.Is(err, membership.ErrStale) && d.Hash() == cur.Hash():
		return nil, fmt.Errorf("%w: version %d (%s) is already in force", control.ErrInvalid, d.Version(), d.Hash())
	case isVerifyErr(err):
		return nil, fmt.Errorf("%w: %s", control.ErrInvalid, refusal(err, rep))
	case err != nil:
		return nil, err
	}
	res := &pb.SubmitMembershipResponse{Version: rep.Version, Hash: rep.Hash.String(), Needed: int32(rep.Threshold)}
	for _, id := range rep.Counted {
		res.Counted = append(res.Counted, id.String())
	}
	return res, nil
}

// isVerifyErr reports whether err says the document is not a valid next
// version (the submitter's fault), not that the node failed.
func isVerifyErr(err error) bool {
	for _, k := range []error{membership.ErrNotNext, membership.ErrBadLink, membership.ErrExpired,
		membership.ErrThreshold, membership.ErrInvalid, membership.ErrMalformed} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// refusal is the verification's error followed by the signatures that did
// not count, when some did not: why the threshold was missed.
func refusal(err error, rep membership.Report) string {
	msg := strings.TrimPrefix(err.Error(), "membership: ")
	if !errors.Is(err, membership.ErrThreshold) || len(rep.Rejected) == 0 {
		return msg
	}
	reasons := make([]string, len(rep.Rejected))
	for i, x := range rep.Rejected {
		reasons[i] = x.Err.Error()
	}
	return msg + " (not counted: " + strings.Join(reasons, "; ") + ")"
}
